"""The merge run's 3H figure (``figures/merge_3h.png``): one panel per axis the run measured (a task declaring a
THREE_H_* trait), the change from the base with paired 95% CIs for every merge method along its scale λ, each
swept adapter's α curve on the same axis, the specialists and the data mixture as reference lines."""

from __future__ import annotations

from typing import Any, Sequence

from steertax import tasks as T
from steertax.interventions.merge import (
    MERGE_REGISTRY,
)
from steertax.manifest import SCALE_KNOB
from steertax.reports.study import png


def _axes_3h(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The 3H axes a merge run measured: (entry name, label), a panel per task that declares a THREE_H_* trait."""
    ents = {e["name"]: e for e in summary["entries"]}
    out = [
        (name, f"{h}: {T.REGISTRY[name].score_label(ents[name]['scorer'])}")
        for h, trait in T.THREE_H
        for name in T.with_trait(trait)
        if name in ents
    ]
    return out or [(e["name"], e["name"]) for e in summary["entries"]][:3]


def three_h_figure(summary: dict[str, Any]) -> bytes:
    """One panel per 3H axis: the change from the base (paired 95% CI) for every setting, merge methods
    as lines over their scale λ, an adapter's α curve (the mixture's, by default) on the same scale axis, the
    specialists and the data mixture as labelled reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_ = _axes_3h(summary)
    fig, axs = plt.subplots(1, len(axes_), figsize=(4.6 * len(axes_), 4.2), squeeze=False)
    rows = [r for r in summary["settings"] if r["method"] != "base"]
    merged = [r for r in rows if r["method"] in MERGE_REGISTRY]
    methods = list(dict.fromkeys(_series(r) for r in merged))  # one line per spec (its λ sweep)
    for ax, (name, label) in zip(axs[0], axes_, strict=True):
        for m in methods:
            pts = sorted(
                ((r["knob"]["strength"], r["tasks"][name]) for r in merged if _series(r) == m and name in r["tasks"]),
                key=lambda p: p[0],
            )
            pts = [p for p in pts if p[1]["delta"] is not None]
            if not pts:
                continue
            ys = [p[1]["delta"] for p in pts]
            err = [
                [y - (p[1].get("delta_ci95") or [y, y])[0] for y, p in zip(ys, pts, strict=True)],
                [(p[1].get("delta_ci95") or [y, y])[1] - y for y, p in zip(ys, pts, strict=True)],
            ]
            ax.errorbar([p[0] for p in pts], ys, yerr=err, fmt="o-", capsize=2, ms=4, lw=1, label=m)
        for k, (of, curve) in enumerate(_alpha_curves(rows, name).items()):
            ax.errorbar(
                [p[0] for p in curve],
                [p[1] for p in curve],
                yerr=[[p[2] for p in curve], [p[3] for p in curve]],
                fmt="s--",
                capsize=2,
                ms=4,
                lw=1,
                color=("k", "#666", "#aaa")[k % 3],  # the α curves in greys: no clash with the merge lines' colours
                label=f"{of} (α)",
            )
        for k, r in enumerate(x for x in rows if x["method"] in ("specialist", "mixture") and "knob" not in x):
            c = r["tasks"].get(name) or {}
            if c.get("delta") is None:
                continue
            ax.axhline(
                c["delta"],
                ls="--" if r["method"] == "mixture" else ":",
                lw=1,
                color=f"C{len(methods) + k}",
                label=f"{r['setting']} ({r['method']})",
            )
        ax.axhline(0, color="#999", lw=0.8)
        ax.set_xlabel("scale: merge λ, adapter α")
        ax.set_ylabel(f"Δ {label}")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=7)
    fig.suptitle(f"{summary['model']}: merging specialists vs the data mixture (change from the base, 95% CI)", fontsize=10)
    fig.tight_layout()
    return png(fig)


def _alpha_curves(rows: Sequence[dict[str, Any]], task: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """Each swept adapter's α curve on one axis: (α, Δ, lower and upper CI arm), from the base (α = 0) to the
    adapter (α = 1)."""
    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    swept = {(r.get("knob") or {}).get("of") for r in rows if r.get("knob")}
    for r in rows:
        c = r["tasks"].get(task) or {}
        kn = r.get("knob") or {}
        of = kn.get("of") if kn else (r["setting"] if r["setting"] in swept else None)
        if of is None or c.get("delta") is None or r["method"] not in ("specialist", "mixture"):
            continue
        lo, hi = c.get("delta_ci95") or [c["delta"], c["delta"]]
        curves.setdefault(of, [(0.0, 0.0, 0.0, 0.0)]).append((float(kn.get("value", 1.0)), c["delta"], c["delta"] - lo, hi - c["delta"]))
    return {of: sorted(pts) for of, pts in curves.items() if len(pts) >= 3}


def _series(row: dict[str, Any]) -> str:
    """A merge row's line in the 3H figure: its λ curve (from the manifest), or the row itself for a point of a
    weight curve (whose λ grid is its own)."""
    kn = row["knob"]
    return str(kn["family"]) if kn["param"] == SCALE_KNOB.name else str(row["setting"])

"""The align run's table and figure: the score, paired change and tax % per setting (``table.md``) and ΔH against ΔB
with each knob curve drawn from the run manifest's families (``figures/align.png``)."""

from __future__ import annotations

from typing import Any

from steertax.manifest import Knob
from steertax.reports.study import png
from steertax.tasks.drift import DRIFT_METRICS


def fmt(x: Any, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def fmt_ci(c: Any, nd: int = 3) -> str:
    return "" if not c else f" [{c[0]:.{nd}f}, {c[1]:.{nd}f}]"


def markdown_table(summary: dict[str, Any]) -> str:
    """Per setting and benchmark: the score, its paired change from the base (95% CI) and the tax %."""
    how = "merging" if summary.get("kind") == "merge" else "fine-tuning"
    lines = [f"# Alignment by {how}: {summary['model']}", ""]
    lines.append("| method | setting | benchmark | axis | score | change vs base (95% CI) | tax % (95% CI) |")
    lines.append("|---|---|---|---|---|---|---|")
    ent = {e["name"]: e for e in summary["entries"]}
    for row in summary["settings"]:
        for name, ch in row["tasks"].items():
            tax = (
                ""
                if ch.get("tax_percent") is None or row["method"] == "base"
                else f"{ch['tax_percent']:.1f}{fmt_ci(ch.get('tax_ci95'), 1)}"
            )
            delta = "" if row["method"] == "base" else f"{fmt(ch['delta'])}{fmt_ci(ch.get('delta_ci95'))}"
            lines.append(f"| {row['method']} | {row['setting']} | {name} | {ent[name]['axis']} | {fmt(ch['value'])} | {delta} | {tax} |")
    lines.append("")
    lines.append("tax % = (base − aligned)/base·100 on helpfulness benchmarks; negative = improvement. Changes are paired by item.")
    judged = [(row["setting"], name, t["judged"]) for row in summary["settings"] for name, t in row["tasks"].items() if t.get("judged")]
    if judged:
        lines += ["", "Judged answers (greedy; degenerate = empty, a loop or symbols: neither refusal nor compliance):", ""]
        lines += [
            "| setting | benchmark | degenerate | fluency | log-prob under the base | graded harm (unvalidated) "
            "| κ with the second judge (95% CI) | second judge |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for setting, name, j in judged:
            ag = j.get("agreement") or {}
            k = (
                "—"
                if ag.get("kappa") is None
                else f"{ag['kappa']:.3f} [{ag['kappa_ci95'][0]:.3f}, {ag['kappa_ci95'][1]:.3f}] (n = {ag['n']})"
            )
            per = j.get("by_strength") or [{}]
            cols = [fmt(per[0].get(m)) if per[0].get(m) is not None else "—" for m in ("fluency", "base_logprob", "harm")]
            cells = [setting, name, f"{100 * j['degenerate']:.0f} %", *cols, k, ag.get("second_judge") or "—"]
            lines.append("| " + " | ".join(cells) + " |")
    for row in summary["settings"]:
        pres = (row.get("training") or {}).get("preservation")
        if pres:
            lines.append(
                f"{row['setting']}: {pres['kept']} of {pres['asked']} capability-preservation answers used; "
                f"{pres['dropped_truncated']} ran past {pres['max_new_tokens']} tokens and were dropped "
                "(a cut answer would teach stopping early)."
            )
    return "\n".join(lines) + "\n"


def _training_curves(summary: dict[str, Any], al: str, he: str) -> list[list[tuple[float, float]]]:
    """(ΔB, ΔH) lines of an align run's knob curves other than α (β, λ, f, share of training, …) from the manifest's
    families: each in knob order, from the base (ΔB = ΔH = 0) when the curve starts there."""
    lines = []
    for fam in summary.get("families") or []:
        knob = Knob.from_dict(fam["knob"])
        if knob.name in ("alpha", "setting"):
            continue
        pts = []
        for row in summary["settings"]:
            v = (row.get("on") or {}).get(fam["name"])
            a, b = row["tasks"].get(al) or {}, row["tasks"].get(he) or {}
            if fam["name"] in (row.get("on") or {}) and v is not None and a.get("delta") is not None and b.get("delta") is not None:
                pts.append((knob.sort_key(v), (a["delta"], b["delta"])))
        line = ([(0.0, 0.0)] if knob.base is not None else []) + [p for _, p in sorted(pts)]
        if len(pts) >= 2:
            lines.append(line)
    return lines


def align_figure(summary: dict[str, Any]) -> bytes:
    """ΔH (each helpfulness benchmark) against ΔB (the first alignment entry), one point per setting
    with paired 95% CI bars, one marker per method; each adapter's α curve (base → α → adapter) as a thin line,
    the β and λ curves dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    al = [e["name"] for e in summary["entries"] if e["axis"] == "alignment"]
    he = [e["name"] for e in summary["entries"] if e["axis"] == "helpfulness" and e["metric"] not in DRIFT_METRICS]
    fig, axes = plt.subplots(1, max(1, len(he)), figsize=(5.2 * max(1, len(he)), 4.4), squeeze=False)
    marks = ("o", "s", "^", "D", "v", "P", "X", "p", "<", ">", "h", "d")
    markers = {"base": "*"} | {
        m: marks[k % len(marks)] for k, m in enumerate(dict.fromkeys(r["method"] for r in summary["settings"] if r["method"] != "base"))
    }
    for ax, h in zip(axes[0], he or [None], strict=True):
        if not al or h is None:
            ax.text(0.5, 0.5, "needs an alignment and a helpfulness task", ha="center", transform=ax.transAxes)
            continue
        colour: dict[str, Any] = {}
        ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])  # a distinct colour for each of up to 20 settings
        for row in summary["settings"]:
            a, b = row["tasks"][al[0]], row["tasks"][h]
            if a["delta"] is None or b["delta"] is None or "knob" in row:
                continue
            xe = None if not a.get("delta_ci95") else [[a["delta"] - a["delta_ci95"][0]], [a["delta_ci95"][1] - a["delta"]]]
            ye = None if not b.get("delta_ci95") else [[b["delta"] - b["delta_ci95"][0]], [b["delta_ci95"][1] - b["delta"]]]
            eb = ax.errorbar(a["delta"], b["delta"], xerr=xe, yerr=ye, fmt=markers.get(row["method"], "o"), capsize=3, label=row["setting"])
            colour[row["setting"]] = eb.lines[0].get_color()
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for row in summary["settings"]:  # an adapter's α curve: from the base (α = 0) through α to the adapter (α = 1)
            kn = row.get("knob") or {}
            a, b = row["tasks"][al[0]], row["tasks"][h]
            if kn.get("name") == "α" and kn.get("of") in colour and a["delta"] is not None and b["delta"] is not None:
                curves.setdefault(kn["of"], [(0.0, 0.0, 0.0)]).append((kn["value"], a["delta"], b["delta"]))
        for of, pts in curves.items():
            par = next(r for r in summary["settings"] if r["setting"] == of and "knob" not in r)  # the adapter the sweep scales
            pts.append((1.0, par["tasks"][al[0]]["delta"], par["tasks"][h]["delta"]))
            pts.sort()
            ax.plot([p[1] for p in pts], [p[2] for p in pts], "-", marker=".", color=colour[of], lw=1, alpha=0.7)
        for line in _training_curves(summary, al[0], h):  # β and λ curves, from the base outwards
            ax.plot([p[0] for p in line], [p[1] for p in line], "--", color="#555", lw=0.9, alpha=0.8, zorder=0)
        ax.axhline(0, color="#999", lw=0.8)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_xlabel(f"ΔB ({al[0]})")
        ax.set_ylabel(f"ΔH ({h})")
        ax.set_title(f"{summary['model']}: fine-tuning settings")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)

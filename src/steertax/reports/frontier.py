"""The cross-method frontier figure of ``steertax compare``: ΔH against ΔB for every method, drawn so that a
reader can tell 16 or more methods apart.

Each method belongs to a family (its run manifest's group; :func:`family_of` as a fallback): steering (steering,
conditional), fine-tuning (every registered trained method, the data mixture and the merge inputs, the
specialists), merging (every registered merge method) and the base model. A family owns a hue range (steering blues,
fine-tuning oranges and reds, merging greens and purples, base greys) and a line style, so its methods read
as one group; within it the colours differ, and markers differ across the figure as far as there are
markers (:func:`method_styles`): no two methods share a colour and marker pair.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from steertax.interventions.merge.registry import MERGE_REGISTRY
from steertax.reports.study import png
from steertax.training.registry import TRAINED_METHODS

__all__ = ["FAMILIES", "FAMILY_ORDER", "family_of", "method_styles", "frontier_figure", "axis_figure"]

FAMILY_ORDER = ("steering", "prompting", "fine-tuning", "merging", "base", "other")

# the kinds that are no registered method (the registries say the rest: a trained method is fine-tuning, a merge
# method merging)
FAMILIES: dict[str, str] = {
    "steering": "steering",
    "conditional": "steering",
    "prompting": "prompting",
    "mixture": "fine-tuning",
    "specialist": "fine-tuning",
    "base": "base",
}

# One hue range per family, the most distinct colours first; no colour is in two families.
_PALETTES: dict[str, tuple[str, ...]] = {
    "steering": ("#1f4e9c", "#4a90d9", "#0b7fab", "#87b9e8", "#16325c", "#3fb0e0", "#5a5fd6", "#0e6a8a", "#b3d4f0", "#2c7bb6"),
    "fine-tuning": ("#d62728", "#ff7f0e", "#8c2d04", "#f4a261", "#b2182b", "#e6550d", "#fb6a4a", "#c44e00", "#fdae6b", "#67000d"),
    "merging": ("#2ca02c", "#7b3294", "#00441b", "#9467bd", "#74c476", "#3f007d", "#238b45", "#c2a5cf", "#a1d99b", "#6a51a3"),
    "prompting": ("#e7298a", "#bc80bd", "#f781bf", "#8e0152", "#de77ae", "#c51b7d"),
    "base": ("#000000", "#636363", "#a0a0a0"),
    "other": ("#8c564b", "#e377c2", "#bcbd22", "#a6761d", "#c49c94", "#f7b6d2", "#6b6b00", "#d4a373"),
}
_LINESTYLES = {"steering": "-", "prompting": ":", "fine-tuning": "--", "merging": "-.", "base": ":", "other": ":"}
# Filled markers, the most distinct shapes first ("*" is kept for the optimum).
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "p", "<", ">", "h", "d", "8", "H")


def family_of(kind: str) -> str:
    """The family of a method kind (a fallback: a run manifest's families carry their own group): steering,
    fine-tuning (every registered trained method), merging (every registered merge method), base, or other."""
    if kind in FAMILIES:
        return FAMILIES[kind]
    if kind in TRAINED_METHODS:
        return "fine-tuning"
    return "merging" if kind in MERGE_REGISTRY else "other"


def method_styles(kinds: Sequence[str], families: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Colour, marker, line style and family of each method in a figure, by kind (repeats count once).

    ``families`` overrides :func:`family_of` per kind (a method's own ``family``). The k-th method of a
    family takes the family's k-th colour (cycling after the palette); its marker is the one used least so
    far in the figure (in :data:`_MARKERS` order) that no method of the same colour has: so no two methods
    share a (colour, marker) pair while a family has at most colours × markers (≥ 42) methods, and the first
    14 methods all have different markers. Deterministic in the order of ``kinds``."""

    fams = families or {}
    used_markers: Counter[str] = Counter()
    pairs: set[tuple[str, str]] = set()
    per_family: Counter[str] = Counter()
    out: dict[str, dict[str, str]] = {}
    for kind in dict.fromkeys(kinds):
        fam = fams.get(kind) or family_of(kind)
        if fam not in _PALETTES:
            fam = "other"
        pal = _PALETTES[fam]
        color = pal[per_family[fam] % len(pal)]
        per_family[fam] += 1
        free = [m for m in _MARKERS if (color, m) not in pairs] or list(_MARKERS)
        marker = min(free, key=lambda m: (used_markers[m], _MARKERS.index(m)))
        used_markers[marker] += 1
        pairs.add((color, marker))
        out[kind] = {"color": color, "marker": marker, "linestyle": _LINESTYLES[fam], "family": fam}
    return out


def _labels(methods: Sequence[dict[str, Any]]) -> list[str]:
    """One legend label per method: its kind, numbered where a kind comes twice (two steering folders)."""

    total = Counter(m["kind"] for m in methods)
    seen: Counter[str] = Counter()
    out = []
    for m in methods:
        seen[m["kind"]] += 1
        out.append(m["kind"] if total[m["kind"]] == 1 else f"{m['kind']} #{seen[m['kind']]}")
    return out


def _styles_of(res: dict[str, Any]) -> dict[str, dict[str, str]]:
    methods = res["methods"]
    labels = _labels(methods)
    fams = {lab: m.get("family") or family_of(m["kind"]) for lab, m in zip(labels, methods, strict=True)}
    return method_styles(labels, fams)


def _xy(m: dict[str, Any], al: str, key: str) -> tuple[list[float], list[float], list[list[float]], list[list[float]]]:
    xs: list[float] = []
    ys: list[float] = []
    xe: list[list[float]] = [[], []]
    ye: list[list[float]] = [[], []]
    for p in m["points"]:
        a = p["tasks"][al]
        h = {"delta": p.get("dH_mean")} if key == "__mean__" else p["tasks"][key]
        if a["delta"] is None or h["delta"] is None:
            continue
        for vals, err, c in ((xs, xe, a), (ys, ye, h)):
            d = float(c["delta"])
            lo, hi = c.get("delta_ci95") or [d, d]
            vals.append(d)
            err[0].append(max(0.0, d - (d if lo is None else float(lo))))
            err[1].append(max(0.0, (d if hi is None else float(hi)) - d))
    return xs, ys, xe, ye


def _draw(ax: Any, res: dict[str, Any], key: str | None = None) -> dict[str, dict[str, str]]:
    """Every method of ``res`` on ``ax`` (ΔH of ``key``, default the helpfulness task; ``__mean__`` for the
    mean ΔH): its sweep a line in its style with 95% CI bars on both axes, its optimum a star; the matched
    ΔB ``levels`` as dashed grey vertical lines. Returns the styles used, by legend label."""

    al = res["alignment"]
    key = key or res["helpfulness"]
    styles = _styles_of(res)
    ax.axhline(0, color="#999", lw=0.8, zorder=0)
    ax.axvline(0, color="#999", lw=0.8, zorder=0)
    for x in res.get("levels") or []:
        ax.axvline(x, color="#777", ls="--", lw=0.9, zorder=0, gid="level")
        ax.text(x, 0.99, f" ΔB = {x:g}", transform=ax.get_xaxis_transform(), fontsize=7, color="#555", va="top", ha="left", rotation=90)
    for label, m in zip(styles, res["methods"], strict=True):
        st = styles[label]
        xs, ys, xe, ye = _xy(m, al, key)
        look = {"color": st["color"], "marker": st["marker"], "linestyle": st["linestyle"]}
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, lw=1.3, ms=6, mec="k", mew=0.4, elinewidth=0.8, capsize=2.5, alpha=0.9, label=label, **look)
        opt = next((p for p in m["points"] if p["setting"] == m.get("optimum", {}).get("setting")), None)
        if opt is not None:
            ox, oy = opt["tasks"][al]["delta"], opt.get("dH_mean") if key == "__mean__" else opt["tasks"][key]["delta"]
            if ox is not None and oy is not None:
                ax.plot(ox, oy, "*", ms=15, color=st["color"], mec="k", mew=0.8, zorder=5, gid="optimum")
    return styles


def _legend(ax: Any, styles: dict[str, dict[str, str]]) -> Any:
    """One legend outside the axes, to the right: the methods grouped by family, each group under its name."""

    from matplotlib.lines import Line2D

    handles: list[Any] = []
    labels: list[str] = []
    headers: list[int] = []
    for fam in FAMILY_ORDER:
        members = [(lab, st) for lab, st in styles.items() if st["family"] == fam]
        if not members:
            continue
        headers.append(len(labels))
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(fam)
        for lab, st in members:
            look: dict[str, Any] = {"color": st["color"], "marker": st["marker"], "linestyle": st["linestyle"]}
            handles.append(Line2D([], [], ms=6, mec="k", mew=0.4, **look))
            labels.append(lab)
    handles.append(Line2D([], [], linestyle="none", marker="*", ms=12, color="#bbb", mec="k"))
    labels.append("efficient point (chosen on half the items)")
    ncol = 1 if len(labels) <= 26 else 2
    leg = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, ncol=ncol, handlelength=2.6)
    for i, t in enumerate(leg.get_texts()):
        if i in headers:
            t.set_fontweight("bold")
    return leg


def frontier_figure(res: dict[str, Any]) -> bytes:
    """ΔH against ΔB per setting (paired 95% CI bars on both axes), each method's sweep a line in its
    family's style, its efficient point (or utility optimum) a star, the matched-alignment levels (``res["levels"]``, optional)
    dashed grey lines; a second panel with the mean ΔH over the helpfulness tasks every folder measured.
    The legend, outside to the right, groups the methods by family. PNG bytes."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    al, he = res["alignment"], res["helpfulness"]
    axes_decided = res.get("axes") or [he]
    if len(axes_decided) > 1:  # one panel per decided axis
        panels = [(k, f"ΔH ({_axis_label(res, k)})") for k in axes_decided]
    else:
        panels = [(he, f"ΔH ({he})")]
        if len(res.get("mean_over") or []) > 1:
            panels.append(("__mean__", f"mean ΔH ({', '.join(res['mean_over'])})"))
    ncol = min(len(panels), 2)
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2 * ncol + 2.2, 5.6 * nrow), squeeze=False)
    styles: dict[str, dict[str, str]] = {}
    flat = [a for row in axes for a in row]
    for ax, (key, ylabel) in zip(flat, panels, strict=False):
        styles = _draw(ax, res, key)
        ax.set_xlabel(f"ΔB ({al}): alignment bought")
        ax.set_ylabel(ylabel + ": helpfulness change")
        ax.grid(alpha=0.3)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    _legend(flat[ncol - 1], styles)
    w = res["helpfulness_weight"]
    flat[0].set_title(f"{res['model']}: every method on one frontier (★ = efficient point, w = {w}; bars: 95% CIs)", fontsize=10)
    fig.tight_layout()
    return png(fig)


def _axis_label(res: dict[str, Any], key: str) -> str:
    return f"{key}, {res['oriented'][key]}" if key in (res.get("oriented") or {}) else key


def axis_figure(res: dict[str, Any], key: str) -> bytes:
    """One decided axis' frontier (ΔH of ``key`` against ΔB, every method, the matched levels dashed, 95% CI bars,
    the efficient points starred), its legend to the right. PNG bytes."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.4, 5.2))
    styles = _draw(ax, res, key)
    ax.set_xlabel(f"ΔB ({res['alignment']}): alignment bought")
    ax.set_ylabel(f"ΔH ({_axis_label(res, key)}): helpfulness change")
    ax.grid(alpha=0.3)
    _legend(ax, styles)
    ax.set_title(f"{res['model']}: {_axis_label(res, key)} at matched alignment", fontsize=10)
    fig.tight_layout()
    return png(fig)

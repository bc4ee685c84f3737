"""The cross-method frontier figure (steertax.reports.frontier): families, styles a reader can tell apart, and
the drawn figure (synthetic results, no model)."""
from __future__ import annotations

import itertools

import pytest

from steertax.reports.frontier import _PALETTES, FAMILIES, _draw, family_of, frontier_figure, method_styles

STEERING = ["steering", "conditional"]
TUNING = ["dpo", "dpo_reg", "sft", "selective", "mixture", "specialist"]
MERGING = ["task_arithmetic", "ties", "dare", "tsvm", "rtsvm", "average"]


def _mixed(n: int) -> list[str]:
    """n kinds over the three families, round robin (numbered once a family's names run out)."""
    pools = [STEERING, TUNING, MERGING]
    out = []
    for k in range(n):
        pool = pools[k % 3]
        j = k // 3
        out.append(pool[j] if j < len(pool) else f"{pool[j % len(pool)]}:{j}")
    return out


def _res(kinds: list[str], levels: list[float] | None = None, mean_over: list[str] | None = None) -> dict:
    methods = []
    for i, kind in enumerate(kinds):
        points = []
        for j in range(4):
            b, h = 0.05 * j + 0.01 * i, -0.02 * j * (1 + i % 3) + 0.003 * i
            points.append({
                "setting": f"s{j}",
                "tasks": {"refusal": {"delta": b, "delta_ci95": [b - 0.02, b + 0.03]},
                          "mmlu": {"delta": h, "delta_ci95": [h - 0.01, h + 0.015]}},
                "dH_mean": h / 2,
            })
        m = {"kind": kind, "points": points, "optimum": {"setting": "s2", "U": 0.1}}
        if ":" in kind:  # a qualified kind carries its family from the data
            m["family"] = family_of(kind.split(":")[0])
        methods.append(m)
    res = {"alignment": "refusal", "helpfulness": "mmlu", "helpfulness_weight": 0.5, "model": "tiny",
           "mean_over": mean_over or ["mmlu"], "methods": methods}
    if levels is not None:
        res["levels"] = levels
    return res


def test_families():
    assert {family_of(k) for k in STEERING} == {"steering"}
    assert {family_of(k) for k in TUNING} == {"fine-tuning"}
    assert {family_of(k) for k in MERGING} == {"merging"}
    assert {family_of(k) for k in ("orpo", "kto", "curriculum", "data_quality")} == {"fine-tuning"}  # from the registry
    assert family_of("base") == "base" and family_of("mystery") == "other"
    from steertax.interventions.merge.registry import MERGE_REGISTRY

    assert MERGE_REGISTRY and all(family_of(n) == "merging" for n in MERGE_REGISTRY)  # every registered merge method
    assert set(FAMILIES.values()) == {"steering", "prompting", "fine-tuning", "base"}  # the rest come from the registries
    assert family_of("prompting") == "prompting"


@pytest.mark.parametrize("n", [16, 20, 40])
def test_styles_are_unique_and_families_keep_their_hues(n):
    kinds = _mixed(n)
    st = method_styles(kinds)
    assert list(st) == kinds
    assert len({(s["color"], s["marker"]) for s in st.values()}) == n
    assert len({s["marker"] for s in st.values()}) == min(n, 14)  # as many distinct markers as there are
    for fam in ("steering", "fine-tuning", "merging"):
        cols = [s["color"] for s in st.values() if s["family"] == fam]
        assert len(set(cols)) == min(len(cols), len(_PALETTES[fam]))  # distinct colours within a family
        assert len({s["linestyle"] for s in st.values() if s["family"] == fam}) == 1
    by_fam = {f: {s["color"] for s in st.values() if s["family"] == f} for f in ("steering", "fine-tuning", "merging")}
    for a, b in itertools.combinations(by_fam, 2):
        assert not by_fam[a] & by_fam[b]
    assert method_styles(kinds) == st  # deterministic


def test_palettes_never_share_a_colour_and_families_from_the_data_win():
    for a, b in itertools.combinations(_PALETTES, 2):
        assert not {c.lower() for c in _PALETTES[a]} & {c.lower() for c in _PALETTES[b]}, (a, b)
    st = method_styles(["mystery", "steering"], {"mystery": "merging"})
    assert st["mystery"]["family"] == "merging" and st["mystery"]["color"] in _PALETTES["merging"]
    assert method_styles(["x"], {"x": "nonsense"})["x"]["family"] == "other"
    # a single family of 40 still has 40 (colour, marker) pairs
    one = method_styles([f"dpo:{k}" for k in range(40)], {f"dpo:{k}": "fine-tuning" for k in range(40)})
    assert len({(s["color"], s["marker"]) for s in one.values()}) == 40


def test_the_figure_renders_16_methods_with_levels():
    res = _res(_mixed(18), levels=[0.1, 0.25], mean_over=["mmlu", "arc"])
    png = frontier_figure(res)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_the_drawn_artists_are_told_apart():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    kinds = _mixed(20) + ["steering"]  # a kind twice (two steering folders) gets two labels
    res = _res(kinds, levels=[0.1, 0.2, 0.35])
    fig, ax = plt.subplots()
    try:
        styles = _draw(ax, res)
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == len(kinds) == len(styles)
        drawn = [(c.lines[0].get_color(), c.lines[0].get_marker()) for c in bars]
        assert len(set(drawn)) == len(kinds)
        assert all(c.has_xerr and c.has_yerr for c in bars)  # CIs on both axes
        _, labels = ax.get_legend_handles_labels()
        assert labels == list(styles) and "steering #2" in labels and len(set(labels)) == len(labels)
        levels = [ln for ln in ax.lines if ln.get_gid() == "level"]
        assert sorted(ln.get_xdata()[0] for ln in levels) == [0.1, 0.2, 0.35]
        assert all(ln.get_linestyle() == "--" for ln in levels)
        assert sum(t.get_text().startswith(" ΔB = ") for t in ax.texts) == 3
        assert sum(ln.get_gid() == "optimum" for ln in ax.lines) == len(kinds)
    finally:
        plt.close(fig)


def test_no_levels_no_level_lines():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        _draw(ax, _res(_mixed(3)))
        assert not [ln for ln in ax.lines if ln.get_gid() == "level"]
    finally:
        plt.close(fig)

"""``compare.md``: the decision of ``steertax compare`` in words: each verdict, the matched levels, the efficient point of
every method and its laws along its knob."""

from __future__ import annotations

import math
from typing import Any


def _f(x: Any, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.{nd}f}"


def _c(c: Any, nd: int = 3) -> str:
    return "" if not c else f" [{c[0]:+.{nd}f}, {c[1]:+.{nd}f}]"


def _p(p: Any) -> str:
    return "—" if p is None or not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _need(c: dict[str, Any]) -> str:
    """What an open comparison needs: items per task for 80% power across its interval (far end – near end; ∞ when
    the interval includes 0) and the predictive probability of deciding with 2× and 4× the items."""
    if c.get("decided") or c.get("status") != "ok":
        return f"decided at look {c['look']}" if c.get("look") else ""
    plan = c.get("to_decide") or {}
    rng = plan.get("items_range") or {}
    far, near = rng.get("at_far_end") or {}, rng.get("at_near_end") or {}
    parts = []
    for t in far:
        lo, hi = far.get(t), near.get(t)
        parts.append(f"{lo if lo is not None else '∞'}–{hi if hi is not None else '∞'} {t}")
    pp = plan.get("predictive_probability") or {}
    if pp.get("x2") is not None:
        parts.append(f"P(decided) {pp['x2']:.2f} at 2×, {pp['x4']:.2f} at 4× items")
    return "; ".join(parts) or "—"


_ADJUST = {
    "maxt": "max-T (Westfall–Young, over the joint bootstrap)",
    "holm": "Holm",
    "bh": "Benjamini–Hochberg",
    "fdr_bh": "Benjamini–Hochberg",
}


def _axis_name(res: dict[str, Any], t: str) -> str:
    return f"{t} ({res['oriented'][t]})" if t in (res.get("oriented") or {}) else t


def compare_markdown(res: dict[str, Any]) -> str:
    al, he = res["alignment"], res["helpfulness"]
    axes = res.get("axes") or [he]
    multi = len(axes) > 1
    d = res["decisions"]
    items = res["items"]
    how = (
        "scored here on one item list per task against one base evaluation (--evaluate)"
        if res.get("evaluated")
        else ("the folders' own rows on the items every folder scored, one base (the folders' base rows agree on them)")
    )
    hs = ", ".join(f"{_axis_name(res, t)} ({items[t]['n_common']} items)" for t in axes)
    lines = [
        f"# Which method buys alignment cheapest: {res['model']}",
        "",
        f"ΔB = change of {al} ({items[al]['n_common']} items), ΔH = change of {hs}, all from the base on the same items: {how}.",
        f"**Every interval in this report is a 95% interval** (matched ΔH and settings: normal bootstrap; differences: symmetric "
        f"bootstrap-t), over items ({d['n_boot']} replicates, one resample of every task per replicate for every method). "
        f"Verdicts: bootstrap-t p-values (each replicate studentized by its own delta-method SE), {_ADJUST[d['adjust']]} over the "
        f"{d['n_tests']} comparisons formed"
        + (f", at α = {d['alpha']:g}." if not res.get("looks") else ", at each look's level (below).")
        + f" Rule: {d['rule']}.",
        "",
    ]
    if multi:
        lines += _pairs_md(res)
    lines += [
        "## Settings",
        "",
        "| method | family | setting | ΔB (95% CI) | " + " | ".join(f"ΔH {t} (95% CI)" for t in axes) + " | mean ΔH |",
        "|---|---|---|---|" + "---|" * len(axes) + "---|",
    ]
    for r in res["table"]:
        per = r.get("dH_axes") or {he: {"delta": r["dH"], "ci95": r["dH_ci95"]}}
        dHs = " | ".join(f"{_f(per[t]['delta'])}{_c(per[t]['ci95'])}" for t in axes)
        lines.append(f"| {r['method']} | {r['family']} | {r['setting']} | {_f(r['dB'])}{_c(r['dB_ci95'])} | {dHs} | {_f(r['dH_mean'])} |")
    lines += ["", f"mean ΔH over {', '.join(res['mean_over'])}.", ""]
    lines += _efficient_md(res) + _laws_md(res, al, he)
    lines += ["## ΔH at matched alignment", ""]
    lines += ["| ΔB level | axis | method | ΔH (95% CI) | status |", "|---|---|---|---|---|"]
    for m in d["matched"]:
        val = f"{_f(m.get('estimate'))}{_c(m.get('ci95'))}" if m["status"] == "ok" else "—"
        why = f" ({m['why']})" if m.get("why") else ""
        lines.append(f"| {m['level']:g} | {m.get('axis', he)} | {m['family']} | {val} | {m['status']}{why} |")
    lines += ["", "## Decisions: ΔH_A − ΔH_B at the same ΔB (positive: A keeps more helpfulness)", ""]
    lines += [
        "| A | B | axis | at ΔB | ΔH_A − ΔH_B (95% CI) | p | adjusted p | verdict | to decide: items for 80% power over the CI; "
        "predictive P |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in (c for c in d["comparisons"] if c["status"] == "ok"):
        lv = c["level"] if isinstance(c["level"], str) else f"{c['level']:g}"
        diff = f"{_f(c.get('diff'))}{_c(c.get('ci95'))}"
        lines.append(
            f"| {c['a']} | {c['b']} | {c.get('axis', he)} | {lv} | {diff} | {_p(c.get('p'))} | {_p(c.get('p_adjusted'))} | "
            f"{c['verdict']} | {_need(c)} |"
        )
    rest = [c for c in d["comparisons"] if c["status"] != "ok"]
    if rest:
        lines += ["", f"Not formed ({len(rest)}, not counted in the adjustment): a method does not reach the level or is flat there.", ""]
        for c in rest:
            lv = c["level"] if isinstance(c["level"], str) else f"ΔB {c['level']:g}"
            lines.append(f"- {c['a']} vs {c['b']} at {lv}: {c['status']}")
    con = res["contrasts"]
    if con["comparisons"]:
        lines += [
            "",
            f"## Settings against settings (not matched; {_ADJUST[con['adjust']]} over these {con['n_tests']})",
            "",
        ]
        lines += ["| A | B | task | A − B (95% CI) | adjusted p | verdict | items to decide |", "|---|---|---|---|---|---|---|"]
        for c in con["comparisons"]:
            diff = f"{_f(c.get('diff'))}{_c(c.get('ci95'))}" if c["status"] == "ok" else "—"
            lines.append(f"| {c['a']} | {c['b']} | {c['task']} | {diff} | {_p(c.get('p_adjusted'))} | {c['verdict']} | {_need(c)} |")
    if res.get("looks"):
        lines += ["", "## Looks", ""]
        for lk in res["looks"]:
            its = ", ".join(f"{v} {k}" for k, v in lk["items"].items())
            lines.append(
                f"- look {lk['look']}: {its}; information {lk['fraction']:.2f}, α spent {lk['alpha_spent']:.4f}, nominal level "
                f"{lk['nominal_alpha']:.3g}; {len(lk['decided'])} decided here, {lk['open']} open"
            )
        if res.get("sequential"):
            lines.append(f"- {res['sequential']}")
    undecided = [c for c in d["comparisons"] if c["status"] == "ok" and not c["decided"]]
    if undecided:
        dd = [c["detectable_difference"] for c in undecided if c.get("detectable_difference") is not None]
        if dd:
            lines += [
                "",
                f"With these items the undecided comparisons detect differences of {min(dd):.3f} to {max(dd):.3f} at 80% power "
                "(at the level a later analysis will use).",
            ]
    return "\n".join(lines) + "\n"


def _pairs_md(res: dict[str, Any]) -> list[str]:
    """compare.md's summary verdict per pair of methods over every axis."""
    lines = [
        "## Summary: each pair over every axis",
        "",
        "A pair is decided cheaper on an axis when one of its comparisons there (at any matched level) is decided, under the "
        'table\'s own multiplicity control. "Cheaper on no axis" means no comparison decided it: an open axis is open, not a tie.',
        "",
        "| A | B | verdict | open on |",
        "|---|---|---|---|",
    ]
    for p in res.get("pairs") or []:
        lines.append(f"| {p['a']} | {p['b']} | {p['verdict']} | {', '.join(p['open']) or '—'} |")
    return [*lines, ""]


def _by_w_md(res: dict[str, Any]) -> list[str]:
    """compare.md's efficient points at every reported weight, with the capability tax beside each."""
    caps = res.get("capability") or []
    al, he = res["alignment"], res["helpfulness"]
    rows = [m for m in res["methods"] if m.get("efficient_by_w")]
    if not rows:
        return []
    cap = f" (settings with a capability tax above {res['max_tax']:g}% excluded)" if res.get("max_tax") is not None else ""
    lines = [
        f"## Efficient points by weight: U = w·{he} + (1 − w)·{al}, changes from the base{cap}",
        "",
        "Chosen on half of the items, measured on the other half; the capability tax (base − aligned)/base × 100 held out.",
        "",
        "| method | w | chosen | U held-out (95% CI) | " + " | ".join(f"tax {t} % (95% CI)" for t in caps) + (" |" if caps else "|"),
        "|---|---|---|---|" + "---|" * len(caps),
    ]
    for m in rows:
        for w, e in m["efficient_by_w"].items():
            if e.get("setting") is None:
                lines.append(f"| {m['kind']} | {w} | — ({e.get('reason', '')}) | — |" + " — |" * len(caps))
                continue
            u = e["held_out"]["U"]
            tax = " | ".join(
                f"{(e.get('tax') or {}).get(t, {}).get('estimate', float('nan')):.1f}"
                + (lambda ci: f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")((e.get("tax") or {}).get(t, {}).get("ci95"))
                for t in caps
            )
            lines.append(f"| {m['kind']} | {w} | {e['setting']} | {_f(u['estimate'])}{_c(u['ci95'])} |" + (f" {tax} |" if caps else ""))
    return [*lines, ""]


def _efficient_md(res: dict[str, Any]) -> list[str]:
    """compare.md's table of each method's efficient point."""
    if len(res.get("weights") or []) > 1:
        return _by_w_md(res)
    lines: list[str] = []
    eff = [m for m in res["methods"] if (m.get("efficient") or {}).get("setting")]
    if eff:
        w = eff[0]["efficient"]["helpfulness_weight"]
        lines += [
            f"## Efficient point of each method (U = {w:g}·ΔH + {1 - w:g}·ΔB)",
            "",
            "Chosen on half of the items (split by item id), measured on the other half; the choice's stability from the "
            "validation items resampled.",
            "",
            "| method | knob | chosen | ΔB held-out (95% CI) | ΔH held-out (95% CI) | U held-out (95% CI) "
            "| choice range (resampled validation) | chosen in |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in eff:
            e = m["efficient"]
            ho = e["held_out"]
            share = e["choice_share"].get(e["setting"], 0.0)
            rng = e.get("choice_range", e.get("value_ci95"))  # value_ci95: the name in folders written before 2026-12-07
            vci = "—" if not rng else f"{rng[0]:g} – {rng[1]:g}"
            lines.append(
                f"| {m['kind']} | {m['knob']} | {e['setting']} | {_f(ho['dB']['estimate'])}{_c(ho['dB']['ci95'])} | "
                f"{_f(ho['dH']['estimate'])}{_c(ho['dH']['ci95'])} | {_f(ho['U']['estimate'])}{_c(ho['U']['ci95'])} | {vci} | "
                f"{100 * share:.0f}% of replicates |"
            )
        lines.append("")
    return lines


def _laws_md(res: dict[str, Any], al: str, he: str) -> list[str]:
    """compare.md's table of the laws along each scale knob."""
    lines: list[str] = []
    fitted = [m for m in res["methods"] if (m.get("laws") or {}).get("fitted")]
    if fitted:
        lines += [
            "## The paper's laws along each knob",
            "",
            "The study's candidate laws (AICc) and local test, fitted along each knob from the base (0): r, α and a "
            "merge's λ as they are; DPO's β and regularized DPO's λ along 1/β and 1/λ (their base is at ∞; the "
            "KL-regularized optimum tilts the base by reward/β). Does alignment rise linearly and helpfulness fall "
            "quadratically near 0?",
            "",
            "| method | law axis | task | selected law | paper's local law | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m in fitted:
            for t in (al, he):
                L = m["laws"].get(t) or {}
                holds = {True: "holds", False: "does not hold", None: "can't tell"}[L.get("holds")]
                lines.append(f"| {m['kind']} | {m['laws']['knob']} | {t} | {L.get('law') or '—'} | {holds} | {L.get('verdict', '')} |")
        lines.append("")
    return lines

"""``steertax tax``'s markdown: the benchmarks' tax table, the mean tax and what it averages, and the helpful and
harmless rates."""

from __future__ import annotations

from typing import Any

from steertax.analysis.stats import TAX_BASE_FLOOR
from steertax.reports.align import fmt, fmt_ci
from steertax.tasks.behavior import SAFE_ANSWERED, UNSAFE_REFUSED

__all__ = ["tax_markdown"]


def tax_markdown(res: dict[str, Any]) -> str:
    """The markdown of a :func:`steertax.runners.tax.measure_alignment_tax` result."""
    lines = [
        f"# Alignment tax: {res['aligned']} vs {res['base']}",
        "",
        "| benchmark | axis | metric | base | aligned | change (95% CI) | tax % (95% CI) | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for b, r in res["benchmarks"].items():
        tax = "—" if r.get("tax_percent") is None else f"{r['tax_percent']:.1f}{fmt_ci(r.get('tax_ci95'), 1)}"
        change = "—" if r.get("delta") is None else f"{fmt(r['delta'])}{fmt_ci(r.get('delta_ci95'))}"
        lines.append(f"| {b} | {r.get('axis', '—')} | {r['metric']} | {fmt(r['base'])} | {fmt(r['value'])} | {change} | {tax} | {r['n']} |")
        if r.get("tax_note") and r.get("axis", "helpfulness") == "helpfulness":
            notes.append(f"- {b}: {r['tax_note']}.")
    mt, over = res.get("mean_tax_percent"), res.get("mean_tax_over")
    what = f" over {', '.join(over)}" if over else ""
    ci = fmt_ci(res.get("mean_tax_ci95"), 1)
    lines += ["", f"Mean tax{what}: {'—' if mt is None else f'{mt:.1f} %{ci}'} (negative = improvement).", ""]
    if res.get("mean_tax_note"):
        lines += [f"{res['mean_tax_note']}.", ""]
    excl = res.get("mean_tax_excluded") or {}
    if excl:
        lines += ["Not in the mean: " + "; ".join(f"{b} ({why})" for b, why in excl.items()) + ".", ""]
    if notes:
        floor = res.get("tax_base_floor", TAX_BASE_FLOOR)
        lines += [f"Why a tax % or its CI is missing (tax % needs a base of at least {floor:g}):", *notes, ""]
    rates = (
        ("helpful_rate", f"helpful rate = {SAFE_ANSWERED['generate']}"),
        ("harmless_rate", f"harmless rate = {UNSAFE_REFUSED['generate']}"),
    )
    for k, what in rates:
        r = res[k]
        change = f"{fmt(r['delta'])}{fmt_ci(r.get('delta_ci95'))}"
        lines.append(f"- {what}: {fmt(r['base'])} → {fmt(r['value'])} (change {change}, n = {r['n']})")
    return "\n".join(lines) + "\n"

"""``steertax judge validate``'s table: per answering model, κ with its CI, precision and recall of refusal, how the
judge labelled the human partial refusals, and a few disagreements."""

from __future__ import annotations

from typing import Any

from steertax.judges.base import COMPLIANCE, DEGENERATE, PARTIAL, REFUSAL

__all__ = ["validation_markdown"]


def _f(x: Any, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def validation_markdown(res: dict[str, Any]) -> str:
    j = res["judge"]
    what = ", ".join(f"{k} {v}" for k, v in j.items() if k != "name")
    cut = f", answers cut to their first {res['words']} words" if res.get("words") else ""
    cut += f", at most {res['limit']} answers per model (seeded sample)" if res.get("limit") else ""
    lines = [
        f"# Judge `{j['name']}` ({what}) against human labels: {res['split']} prompts{cut}",
        "",
        "| answering model | n | κ (95% CI) | precision | recall | human partial refusals judged "
        "(refusal / partial / compliance / degenerate) |",
        "|---|---|---|---|---|---|",
    ]
    for g, v in res["groups"].items():
        ci = v.get("kappa_ci95")
        k = _f(v["kappa"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        part = v["confusion"][PARTIAL]
        pj = " / ".join(str(part[x]) for x in (REFUSAL, PARTIAL, COMPLIANCE, DEGENERATE))
        name = f"{g} (held out)" if v.get("held_out") else g
        lines.append(f"| {name} | {v['n']} | {k} | {_f(v['precision'])} | {_f(v['recall'])} | {pj} of {v['n_partial']} |")
    degen = [(g, v["degenerate"]) for g, v in res["groups"].items() if v.get("degenerate")]
    if degen:
        lines += ["", "Degenerate answers (human-flagged → judge-flagged; precision, recall of the judge's flag):", ""]
        for g, d in degen:
            lines.append(f"- {g}: {d['n_human']} → {d['n_judged']}; precision {_f(d['precision'])}, recall {_f(d['recall'])}")
    lines += ["", "κ, precision and recall: full refusal vs full compliance (the judge's partial refusals count as refusals)."]
    if res.get("seconds") is not None:
        lines.append(f"Judged {res['n']} answers in {res['seconds']:g} s.")
    lines.append("")
    shown = [(g, d) for g, v in res["groups"].items() for d in v["disagreements"]]
    if shown:
        lines += ["Disagreements (human → judge):", ""]
        for g, d in shown:
            ans = " ".join(d["answer"].split())[:160]
            lines.append(f"- {g} {d['id']}: {d['human']} → {d['judge']}: “{d['prompt'][:80]}” → “{ans}”")
        lines.append("")
    return "\n".join(lines)

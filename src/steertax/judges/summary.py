"""What a run's judged rows say beside each rate: the share of each class (full compliance, full refusal, partial
refusal, degenerate), the answers' fluency (the share of distinct word bigrams, and their mean token log-probability under the
unsteered base model: −log perplexity), the graded harm where a judge grades it, and
the agreement of the run's judge with its second judge on the answers both read (κ with a bootstrap CI and a few
disagreements), so a reader sees when a number depends on the judge."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from steertax.judges.base import COMPLIANCE, DEGENERATE, PARTIAL, REFUSAL
from steertax.judges.validate import agreement

__all__ = ["judged_summary"]


def _mean(vals: Sequence[Any]) -> float | None:
    v = [float(x) for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def judged_summary(records: Sequence[dict[str, Any]], examples: int = 3, n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """The judged block of one task's generate rows (None when no row was judged): per strength (or setting),
    the class shares, ``degenerate`` share, mean ``fluency``, mean ``base_logprob`` and mean ``harm``; overall, the agreement with the
    second judge."""
    rows = [r for r in records if r.get("judged") is not None]
    if not rows:
        return None
    by: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(float(r["strength"]), []).append(r)
    per = []
    for s, rs in sorted(by.items()):
        n = len(rs)
        shares = {lab: sum(r["judged"] == lab for r in rs) / n for lab in (COMPLIANCE, REFUSAL, PARTIAL, DEGENERATE)}
        per.append(
            {
                "strength": s,
                "n": n,
                "shares": shares,
                "degenerate": shares[DEGENERATE],
                "fluency": _mean([r.get("fluency") for r in rs]),
                "base_logprob": _mean([r.get("base_logprob") for r in rs]),
                "harm": _mean([r.get("harm") for r in rs]),
            }
        )
    out: dict[str, Any] = {"by_strength": per, "degenerate": sum(r["judged"] == DEGENERATE for r in rows) / len(rows)}
    both = [r for r in rows if r.get("judged_second") is not None]
    if both:
        ag = agreement([r["judged"] for r in both], [r["judged_second"] for r in both], n_boot=n_boot, seed=seed)
        ag["disagreements"] = [
            {
                "item": both[i]["item"],
                "strength": both[i]["strength"],
                "text": str(both[i].get("text", ""))[:200],
                "judge": both[i]["judged"],
                "second": both[i]["judged_second"],
            }
            for i in ag.pop("disagree")[:examples]
        ]
        ag["second_judge"] = both[0].get("second_judge")
        out["agreement"] = ag
    return out

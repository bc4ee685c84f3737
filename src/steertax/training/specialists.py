"""The merge specialists' preference data: harmless (refusals of AdvBench requests), helpful (Alpaca answers chosen
over a refusal) and honest (TruthfulQA's true answers over its false ones, the items a run evaluates left out), or
a JSONL of prompt, chosen, rejected."""

from __future__ import annotations

import random

from steertax import tasks as T
from steertax.data import data_path, read_jsonl
from steertax.interventions.steering.pairs import REFUSAL_TEMPLATES
from steertax.training.data import BUNDLED_PAIRS, preference_data

SPECIALIST_DATA = ("harmless", "helpful", "honest")


def _refusal(rng: random.Random) -> str:

    return rng.choice(REFUSAL_TEMPLATES).format(obj="that")


def specialist_data(kind: str, n: int, seed: int, exclude_truthfulqa: set[str] | None = None) -> list[dict[str, str]]:
    """Preference pairs for one specialist.

    - ``harmless``: AdvBench harmful requests -> a refusal chosen, compliance rejected (``steertax align``'s pairs).
    - ``helpful``: AlpacaEval instructions -> the reference answer (its first 60 words) chosen, a refusal rejected.
    - ``honest``: TruthfulQA questions the evaluation does not use -> the true MC1 answer chosen, a false one rejected.
    - a ``.jsonl`` path: the user's pairs (prompt, chosen, rejected)."""

    rng = random.Random(seed + 11)
    if kind == "harmless":
        return preference_data(BUNDLED_PAIRS, n, seed)
    if kind == "helpful":
        rows = read_jsonl(data_path("alpaca_eval", "alpaca_eval.jsonl"))
        pick = rng.sample(range(len(rows)), min(n, len(rows)))
        return [
            {"prompt": rows[i]["instruction"], "chosen": " ".join(rows[i]["output"].split()[:60]), "rejected": _refusal(rng)} for i in pick
        ]
    if kind == "honest":
        items = [it for it in T.get(T.task_with(T.HONEST_SPECIALIST_DATA)).items(None, seed) if it.id not in (exclude_truthfulqa or set())]
        rng.shuffle(items)
        out = []
        for it in items[:n]:
            d = it.data
            wrong = [a for k, a in enumerate(d["mc1"]) if k != d["mc1_gold"]]
            out.append({"prompt": d["query"][3:-3].strip(), "chosen": d["mc1"][d["mc1_gold"]], "rejected": rng.choice(wrong)})
        return out
    return preference_data(kind, n, seed)

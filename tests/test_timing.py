"""The time split: evaluate() charges its task and scorer; a task that times its own scorers keeps those."""

from __future__ import annotations

import steertax as st
from conftest import make_tokenizer, tiny_model
from steertax import timing


def test_evaluate_charges_task_and_scorer():
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    before = timing.snapshot()
    st.evaluate(model, tok, st.tasks.get("arc_easy"), None, [0.0], limit=3, progress=False)
    st.evaluate(
        model, tok, st.tasks.get("refusal", scorers=["logprob", "generate"], max_new_tokens=2), None, [0.0], limit=2, progress=False
    )
    split = timing.since(before)
    assert set(split) >= {"arc_easy/logprob", "refusal/logprob", "refusal/generate"}
    assert split["arc_easy/logprob"][1] == 3 and split["refusal/generate"][1] == 2  # rows
    assert all(sec >= 0 for sec, _ in split.values())
    text = timing.format_split(split, wall=1.0)
    assert text.startswith("time split") and "refusal/generate" in text
    assert "nothing was evaluated" in timing.format_split({})
    other = {"x/y": (2.0, 5)}
    timing.merge(other)  # a worker's split, added to this process's
    assert timing.since(before)["x/y"] == (2.0, 5)

"""Generation that finishes or says it did not: stop rules, prefill, truncation, and the HumanEval and
GSM8K protocols (the harness scores 100 % on the reference answers)."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import steertax as st
from conftest import make_tokenizer, tiny_model
from steertax.config import from_dict
from steertax.generation import cut_at_stop, generate_detailed
from steertax.models import format_chat
from steertax.runners.study_summary import truncation
from steertax.tasks.generative import ANSWER_LINE, final_number, humaneval_program, token_budget


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", n_layers=2, seed=5), make_tokenizer()


PROMPTS = ["Write a haiku.", "What is 2 + 2?", "Name a colour."]


def test_cut_at_stop_rules():
    assert cut_at_stop("body\n```\nmore", ["```"]) == ("body\n", "```")
    text, rule = cut_at_stop("so 6.\nThe answer is 42.\nNext", [ANSWER_LINE])
    assert text == "so 6.\nThe answer is 42.\n" and rule == ANSWER_LINE.pattern  # patterns keep their match
    assert cut_at_stop("a\ndef g():\nx```", ["```", "\ndef "])[0] == "a"  # the earliest rule wins
    assert cut_at_stop("nothing here", ["```"]) == ("nothing here", None)


def test_budget_exhausted_is_truncated(tiny):
    model, tok = tiny
    gens = generate_detailed(model, tok, PROMPTS, max_new_tokens=6)
    for g in gens:
        # the tiny model may emit </s> by chance; an answer is truncated exactly when nothing ended it
        assert g.truncated == (g.stop is None)
        if g.truncated:
            assert g.n_tokens == 6
    assert any(g.truncated for g in gens)


def test_stop_rule_ends_its_row_only(tiny):
    model, tok = tiny
    free = generate_detailed(model, tok, PROMPTS, max_new_tokens=12)
    row = next(k for k, g in enumerate(free) if g.truncated and len(g.text) >= 8)
    marker = free[row].text[4:6]  # a piece of that row's own answer (one character per token here)
    k = free[row].text.find(marker)
    stopped = generate_detailed(model, tok, PROMPTS, max_new_tokens=12, stop=[marker])
    assert stopped[row].text == free[row].text[:k] and stopped[row].stop == marker and not stopped[row].truncated
    for j, (a, b) in enumerate(zip(free, stopped, strict=True)):  # other rows run on as before, unless they hold the marker
        if j != row and marker not in a.text:
            assert a == b


def test_prefill_is_part_of_the_prompt(tiny):
    model, tok = tiny
    pre = ["```python\ndef f(", "The answer", ""]
    a = generate_detailed(model, tok, PROMPTS, prefill=pre, max_new_tokens=8)
    raw = [format_chat(tok, p) + f for p, f in zip(PROMPTS, pre, strict=True)]
    b = generate_detailed(model, tok, raw, chat=False, max_new_tokens=8)
    assert a == b
    with pytest.raises(ValueError, match="prefill"):
        generate_detailed(model, tok, PROMPTS, prefill=["x"], max_new_tokens=2)


# ---------------------------------------------------------------------------- HumanEval


def _answers(task, items, style):
    """What a model that knows the reference solution writes under each protocol (then cut by its stops)."""
    p = task.protocol(items)
    out = []
    for it in items:
        body = it.data["canonical_solution"]
        if style == "prefill":
            raw = body + "```\n\nThis returns the right value. ```python\nprint(1)\n```"
        elif style == "base":
            raw = body + "\n\ndef unrelated():\n    return 1\n\nprint(unrelated())\n"
        else:
            raw = f"Here is the function:\n```python\n{it.data['prompt']}{body}\n# Example usage\nprint(2)\n```\nDone."
        out.append(cut_at_stop(raw, p["stop"])[0])
    return out


@pytest.mark.parametrize("style,opts", [("prefill", {}), ("base", {"chat": False}), ("no_prefill", {"prefill": False})])
def test_reference_solutions_pass_every_item(style, opts):
    """The harness itself scores 100 % on the reference answers, through the same path as a model's."""
    task = st.tasks.get("humaneval", **opts)
    items = task.load_items()
    assert len(items) == 164
    answers = _answers(task, items, style)
    with ThreadPoolExecutor(2) as ex:
        ok = list(ex.map(lambda ia: task.check(ia[0], task.program(ia[0], ia[1])), zip(items, answers, strict=True)))
    assert all(ok), [it.id for it, o in zip(items, ok, strict=True) if not o]


def test_truncated_answer_is_recorded_and_fails(tiny):
    model, tok = tiny
    task = st.tasks.get("humaneval", max_new_tokens=4)
    items = task.items(2, seed=0)
    res = st.evaluate(model, tok, task, items=items, progress=False)
    assert all(r["truncated"] == 1.0 and r["pass"] == 0.0 and r["n_tokens"] == 4 for r in res.records)
    assert any(s["metric"] == "truncated" and s["mean"] == 1.0 for s in res.summary)  # shown, not hidden
    # the program the checker ran is the prompt + the model's (unfinished) body
    for it, r in zip(items, res.records, strict=True):
        assert task.program(it, r["text"]).startswith(it.data["prompt"])
    # a body cut mid-way through the reference solution fails the tests
    it = items[0]
    half = it.data["canonical_solution"][: len(it.data["canonical_solution"]) // 2]
    assert not task.check(it, task.program(it, half))


def test_program_from_answers():
    prompt = 'import math\n\n\ndef add(a, b):\n    """Add."""\n'
    assert humaneval_program(prompt, "add", "    return a + b\n\nprint(add(1, 2))\n") == prompt + "    return a + b\n"
    helper = "    return _h(a) + b\n\n\ndef _h(x):\n    return x\n"
    assert humaneval_program(prompt, "add", helper) == prompt + helper  # helper definitions are kept
    restated = "def add(a, b):\n    return a + b\n"
    assert humaneval_program(prompt, "add", restated) == "import math\n\n\n" + restated


def test_default_budget_comes_from_the_data():
    tok = make_tokenizer()  # one token per byte
    task = st.tasks.get("humaneval")
    sol = [len(it.data["canonical_solution"].encode()) for it in task.load_items()]
    assert task.budget(tok) == token_budget(sol) >= 2 * sorted(sol)[int(0.99 * len(sol)) - 1]
    assert task.budget(tok) % 32 == 0
    assert st.tasks.get("humaneval", max_new_tokens=100).budget(tok) == 100
    no_prefill = st.tasks.get("humaneval", prefill=False).budget(tok)
    assert no_prefill > task.budget(tok)  # the answer restates the prompt: its tokens are budgeted too
    g = st.tasks.get("gsm8k")
    assert g.budget(tok) == token_budget([len(it.data["answer"].encode()) for it in g.load_items()])


def test_quick_runs_keep_code_and_maths_budgets():
    cfg = from_dict({"tasks": [{"name": "humaneval"}, {"name": "gsm8k", "options": {"max_new_tokens": 700}},
                               {"name": "refusal", "options": {"max_new_tokens": 24}}]})
    q = cfg.quick_version().tasks
    assert "max_new_tokens" not in q[0].options and q[1].options["max_new_tokens"] == 700
    assert q[2].options["max_new_tokens"] == 12  # behavior judges read an answer's opening


# ---------------------------------------------------------------------------- GSM8K


def test_gsm8k_reference_answers_and_answer_line():
    task = st.tasks.get("gsm8k")
    items = task.load_items()
    assert len(items) == 1319
    assert all(final_number(it.data["answer"]) == it.data["gold"] for it in items)
    # a chat answer ends after its final-answer line; its number is the one on that line
    text, rule = cut_at_stop("3 + 4 = 7 apples, 2 left.\nThe answer is 1,250.\nLet me check: 99", task.stops())
    assert rule is not None and final_number(text) == "1250"
    assert final_number("The answer is $18.00") == "18"
    assert final_number("so 3 + 4 = 7.\n\nTherefore, the answer is \\(\\boxed{1,250}\\).") == "1250"
    assert re.search(ANSWER_LINE, "The answer is 5") is None  # not finished until its newline


def test_truncation_summary():
    recs = [{"strength": s, "truncated": t} for s, t in [(0.0, 0.0), (0.0, 0.0), (4.0, 1.0), (4.0, 0.0)]]
    tr = truncation(recs)
    assert tr["overall"] == 0.25 and tr["max"] == 0.5 and tr["worst_strength"] == 4.0
    assert tr["by_strength"] == {0.0: 0.0, 4.0: 0.5}
    assert truncation([{"strength": 0.0, "acc": 1.0}]) == {}


# ------------------------------------------------------------------ the fast greedy loop
FAST_PROMPTS = ["Write a haiku about rain.", "What is 2 + 2?", "Name a colour.", "Tell me a joke about cats and dogs, please.", "Hi"]


@pytest.fixture(scope="module")
def tiny64():
    """float64, so that batching rows differently cannot flip an argmax."""
    from test_steering import unit_vector

    model = tiny_model("llama", n_layers=4, seed=7).double()
    return model, make_tokenizer(), unit_vector(model, [2, 3])


def test_fast_greedy_equals_model_generate(tiny64, monkeypatch):
    from steertax import generation

    calls = []
    real = generation.greedy_tokens
    monkeypatch.setattr(generation, "greedy_tokens", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, tok, vec = tiny64
    S = [0.0, 3.0, -2.0, 6.0]
    rows = [(p, s) for s in S for p in FAST_PROMPTS]  # the generate scorer's layout: every prompt at every strength
    st_ = [s for _, s in rows]
    ps = [p for p, _ in rows]
    ref = generate_detailed(model, tok, ps, vec, st_, max_new_tokens=10, fast=False, batch_size=4)
    fast = generate_detailed(model, tok, ps, vec, st_, max_new_tokens=10, fast=True)
    assert fast == ref
    plain = generate_detailed(model, tok, FAST_PROMPTS, None, 0.0, max_new_tokens=10, fast=False)
    assert generate_detailed(model, tok, FAST_PROMPTS, None, 0.0, max_new_tokens=10, fast=True) == plain
    assert len(calls) == 2  # fast=True ran the loop (the reference runs model.generate)


def test_fast_greedy_batches_and_finished_rows_leave(tiny64):
    """Any batch size gives the same tokens, and a row that finishes stops there while the others go on."""
    from steertax.generation import greedy_tokens
    from steertax.models import encode

    model, tok, vec = tiny64
    enc = [encode(tok, format_chat(tok, p)) for p in FAST_PROMPTS for _ in range(3)]
    st_ = [0.0, 2.0, 5.0] * len(FAST_PROMPTS)
    full = greedy_tokens(model, enc, vec, st_, max_new_tokens=12, stop_ids=set(), pad_id=0)
    assert all(len(t) == 12 for t in full)
    for rows in (1, 3, 7, 64):
        assert greedy_tokens(model, enc, vec, st_, max_new_tokens=12, stop_ids=set(), max_rows=rows) == full
    stop = full[0][2]  # a token some row emits early
    want = [t[: t.index(stop) + 1] if stop in t else t for t in full]
    assert any(len(t) < 12 for t in want)
    for rows in (2, 64):
        assert greedy_tokens(model, enc, vec, st_, max_new_tokens=12, stop_ids={stop}, max_rows=rows) == want


def test_fast_path_falls_back_where_it_does_not_apply(tiny64):
    from steertax.generation import _fast_applies

    model, _, _ = tiny64
    assert _fast_applies(model, False, "all", "add", ())
    assert not _fast_applies(model, True, "all", "add", ())
    assert not _fast_applies(model, False, "generated", "add", ())
    assert not _fast_applies(model, False, "all", "ablate", ())
    assert not _fast_applies(model, False, "all", "add", ("```",))
    model.generation_config.repetition_penalty = 1.3
    try:
        assert not _fast_applies(model, False, "all", "add", ())
    finally:
        model.generation_config.repetition_penalty = None

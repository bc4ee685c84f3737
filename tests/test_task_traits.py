"""Tasks declare traits (steertax.tasks.traits) and code asks for a trait, never for a task's name: the declarations,
the queries, what the traits drive (a quick config's budgets, conditional runs' truth, the tax table's rate rows), and
a grep over the package that fails when a registered task's name is written as a string outside tasks/. No model."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from steertax import tasks as T
from steertax.tasks import traits as TR
from steertax.tasks.base import Item, Task

SRC = Path(__file__).resolve().parents[1] / "src" / "steertax"

# What each trait's declarations are: a trait moved to another task, or declared once more, shows here.
DECLARED = {
    TR.SAFE_PROMPT_RATE: ("over_refusal",),
    TR.NEEDS_FINISHED_ANSWER: ("humaneval", "gsm8k"),
    TR.HARMFUL_ITEMS: ("refusal", "refusal_attack"),
    TR.DISTANCE_FROM_BASE: ("drift",),
    TR.HONEST_SPECIALIST_DATA: ("truthfulqa",),
    TR.TAX_BENCHMARK: ("mmlu", "humaneval", "gsm8k", "truthfulqa", "bbq"),  # `steertax tax`'s default benchmarks, in order
    TR.DEFAULT_ALIGNMENT: ("refusal",),
    TR.DEFAULT_HELPFULNESS: ("arc_easy",),
    TR.THREE_H_HARMLESS: ("refusal",),
    TR.THREE_H_HELPFUL: ("over_refusal", "arc_easy"),  # the merge figure's panels, in order
    TR.THREE_H_HONEST: ("truthfulqa",),
}


def test_every_trait_has_a_meaning_and_the_declarations_are_these():
    assert set(DECLARED) == set(TR.TRAITS) and all(TR.TRAITS.values())
    assert {t for _, t in TR.THREE_H} == {TR.THREE_H_HARMLESS, TR.THREE_H_HELPFUL, TR.THREE_H_HONEST}
    for trait, names in DECLARED.items():
        assert T.with_trait(trait) == names, trait
    for cls in T.REGISTRY.values():
        assert isinstance(cls.traits, frozenset) and cls.traits <= TR.TRAITS.keys()


def test_has_trait_takes_a_name_a_task_or_a_class():
    assert T.has_trait("gsm8k", T.NEEDS_FINISHED_ANSWER) and not T.has_trait("mmlu", T.NEEDS_FINISHED_ANSWER)
    assert T.has_trait(T.get("over_refusal"), T.SAFE_PROMPT_RATE) and T.has_trait(T.REGISTRY["drift"], T.DISTANCE_FROM_BASE)
    assert not T.has_trait("no_such_task", T.SAFE_PROMPT_RATE)  # an unregistered name (a label, a scorer entry) has none
    assert not T.has_trait("over_refusal[generate]", T.SAFE_PROMPT_RATE)
    with pytest.raises(ValueError, match="unknown trait 'safe_rate'"):
        T.has_trait("over_refusal", "safe_rate")
    with pytest.raises(ValueError, match="unknown trait"):
        T.with_trait("nope")


def test_task_with_names_the_one_task_that_declares_a_default():
    assert (T.task_with(T.DEFAULT_ALIGNMENT), T.task_with(T.DEFAULT_HELPFULNESS)) == ("refusal", "arc_easy")
    assert T.task_with(T.SAFE_PROMPT_RATE) == "over_refusal" and T.task_with(T.HONEST_SPECIALIST_DATA) == "truthfulqa"
    with pytest.raises(LookupError, match="5 registered tasks declare the trait 'tax_benchmark'"):
        T.task_with(T.TAX_BENCHMARK)


def test_a_task_class_declaring_an_unknown_trait_or_the_old_flag_fails_when_defined():
    with pytest.raises(TypeError, match=r"unknown traits \['typo'\]"):
        type("Bad", (Task,), {"name": "bad", "traits": frozenset({"typo"})})
    with pytest.raises(TypeError, match="one string"):
        type("Bad", (Task,), {"name": "bad", "traits": TR.HARMFUL_ITEMS})
    with pytest.raises(TypeError, match="instead of needs_finished_answer"):
        type("Bad", (Task,), {"name": "bad", "needs_finished_answer": True})
    ok = type("Ok", (Task,), {"name": "ok", "traits": {TR.NEEDS_FINISHED_ANSWER}})  # any collection: kept as a frozenset
    assert ok.traits == frozenset({TR.NEEDS_FINISHED_ANSWER}) and ok.needs_finished_answer and ok().needs_finished_answer
    sub = type("Sub", (ok,), {})  # a subclass inherits its parent's traits
    assert T.has_trait(sub, TR.NEEDS_FINISHED_ANSWER)


def test_needs_finished_answer_and_is_harmful_follow_the_traits():
    for n, cls in T.REGISTRY.items():
        assert cls.needs_finished_answer == T.has_trait(n, T.NEEDS_FINISHED_ANSWER)
    it = Item("x", {"prompt": "p", "label": "unsafe"})
    assert T.get("refusal").is_harmful(it) is True and T.get("refusal_attack").is_harmful(it) is True
    assert T.get("bias_agreement").is_harmful(it) is None and T.get("arc_easy").is_harmful(it) is False
    assert T.get("over_refusal").is_harmful(it) is True
    assert T.get("over_refusal").is_harmful(Item("y", {"prompt": "p", "label": "safe"})) is False


def test_quick_tasks_keep_the_budget_of_tasks_whose_answer_must_finish():
    from steertax.config import quick_tasks

    d = {"tasks": [{"name": n, "limit": None, "options": {"max_new_tokens": 300}} for n in ("gsm8k", "humaneval", "refusal", "nope")]}
    quick_tasks(d)
    assert [t["options"]["max_new_tokens"] for t in d["tasks"]] == [300, 300, 12, 12]


def test_score_labels_name_the_merge_figures_panels():
    assert T.REGISTRY["refusal"].score_label() == "refusal B"
    assert T.REGISTRY["arc_easy"].score_label("logprob") == "ARC-Easy P(correct)"
    assert T.REGISTRY["truthfulqa"].score_label() == "TruthfulQA MC2"
    over = T.REGISTRY["over_refusal"]
    assert over.score_label("generate") == "safe prompts answered (greedy, judged)"
    assert over.score_label("logprob") == "safe prompts answered (P(answer) > P(refuse))"
    assert over.score_label("judge") == "safe prompts answered"
    assert T.REGISTRY["mmlu"].score_label() == "mmlu p_abcd"  # no headline declared: name and metric


def test_the_tax_tables_rate_rows_follow_the_trait_of_the_entrys_task():
    from steertax.analysis.tax import tax_table
    from steertax.reports.study import _metric_label

    recs = [
        {"item": "s", "strength": 0.0, "scorer": "logprob", "helpful": 0.8, "harmless": None},
        {"item": "s", "strength": 1.0, "scorer": "logprob", "helpful": 0.4, "harmless": None},
        {"item": "u", "strength": 0.0, "scorer": "logprob", "helpful": None, "harmless": 0.5},
        {"item": "u", "strength": 1.0, "scorer": "logprob", "helpful": None, "harmless": 1.0},
    ]
    e = {"axis": "helpfulness", "metric": "helpful", "scorer": "logprob"}
    ents = {"over_refusal": e, "xs": {**e, "name": "over_refusal"}, "over_refusal_lookalike": e, "arc_easy": {**e, "name": "arc_easy"}}
    rows = {r["task"]: r for r in tax_table(ents, dict.fromkeys(ents, recs), 1.0)}
    for has in ("over_refusal", "xs"):  # by the entry's key, or by its task's name (a labelled entry)
        assert rows[has]["helpful_rate_safe"] == {"base": 0.8, "at_r_star": 0.4}
        assert rows[has]["harmless_rate_unsafe"] == {"base": 0.5, "at_r_star": 1.0}
        assert _metric_label(rows[has]) == "safe prompts answered (P(answer) > P(refuse))"
    for hasnt in ("over_refusal_lookalike", "arc_easy"):
        assert "helpful_rate_safe" not in rows[hasnt] and _metric_label(rows[hasnt]) == "helpful"


# --------------------------------------------------------------------------- no task's name outside tasks/

# Strings spelled like a task but naming something else, with how many times each file writes them (a new one fails).
NOT_A_TASK: dict[tuple[str, str], int] = {
    ("config.py", "refusal"): 1,  # VectorConfig.pairs: the refusal pair set (interventions/steering/pairs.py)
    ("cli.py", "refusal"): 1,  # --pairs: the same pair set
    ("interventions/steering/pairs.py", "refusal"): 2,  # the pair set's registry key and its aligned behaviour's name
    ("training/data.py", "refusal"): 1,  # BUNDLED_PAIRS: the bundled refusal preference pairs (align's default training data)
    ("training/settings.py", "refusal"): 1,  # DataSettings.pairs: the same preference pairs
    ("scoring.py", "drift"): 2,  # the scoring function drift(): __all__ and its progress bar
    ("reports/study.py", "drift"): 1,  # the drift figure's name (figures/drift.png), chosen by metric
    ("judges/validate.py", "refusal"): 2,  # a labelled file's label "refusal" and its boolean `refusal` column
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def task_name_literals(root: Path = SRC) -> list[tuple[str, int, str]]:
    """(file, line, string) for each string literal outside tasks/ that is a registered task's name, or a
    scorer entry of one (``over_refusal[generate]``); docstrings and prose that mention a name are not literals."""
    names = set(T.REGISTRY)
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("tasks/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                s = node.value
                if s in names or (s.endswith("]") and s.split("[", 1)[0] in names):
                    hits.append((rel, node.lineno, s))
    return sorted(hits)


def test_the_scan_finds_a_name_check(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "x.py").write_text('NAME = "gsm8k"\n')  # a task's own file may name it
    (tmp_path / "a.py").write_text('"""gsm8k in a docstring."""\nif name.startswith("over_refusal"):\n    f("mmlu[x]", f"{x} gsm8k")\n')
    assert task_name_literals(tmp_path) == [("a.py", 2, "over_refusal"), ("a.py", 3, "mmlu[x]")]


def test_no_code_outside_tasks_writes_a_task_name():
    """A task's name outside tasks/ is a check by name (or a default that a trait should declare): ask for a trait
    (tasks.has_trait / with_trait / task_with) instead. Lists each hit the allowance above does not cover."""
    hits = task_name_literals()
    seen = Counter((f, s) for f, _, s in hits)
    bad = [
        f"src/steertax/{f}: {s!r} on line{'s' if n > 1 else ''} {', '.join(str(ln) for g, ln, t in hits if (g, t) == (f, s))}"
        + (f" ({NOT_A_TASK[f, s]} allowed: {n - NOT_A_TASK[f, s]} more)" if (f, s) in NOT_A_TASK else "")
        for (f, s), n in sorted(seen.items())
        if n > NOT_A_TASK.get((f, s), 0)
    ]
    assert not bad, "task names written outside tasks/ (ask for a trait instead):\n" + "\n".join(bad)

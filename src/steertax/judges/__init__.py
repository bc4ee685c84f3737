"""Judges of generated answers: one registry (:func:`register_judge`), each judge one file.

- ``lexical`` (:mod:`~steertax.judges.lexical`): the default offline refusal judge — the rules and a learned n-gram
  regression combined; three classes plus degenerate.
- ``rules`` (:mod:`~steertax.judges.rules`): the rule judge alone, three classes plus degenerate.
- ``paper_keyword``: the paper's keyword judge, as a baseline.
- ``disagreement``, ``paper_base_agreement`` (:mod:`~steertax.judges.agreement`): the agreement question of bias tasks.
- ``model`` (:mod:`~steertax.judges.model`): any chat model asked a stated question, read from log-probabilities.
- ``llama_guard``, ``wildguard``, ``harmbench`` (classifiers with their published prompt formats) and
  ``strongreject`` (the rubric with any chat model as grader: a graded harm score).

:func:`~steertax.judges.validate.validate_judge` scores a judge against human labels (``steertax judge validate``).
"""

from steertax.judges import agreement, harmbench, lexical, llama_guard, model, rules, strongreject, wildguard  # noqa: F401  (registrations)
from steertax.judges.base import (
    COMPLIANCE,
    DEGENERATE,
    JUDGES,
    LABELS,
    PARTIAL,
    REFUSAL,
    Judge,
    Verdict,
    build_judge,
    judge_names,
    register_judge,
)
from steertax.judges.model import ModelJudge
from steertax.judges.rules import RuleJudge, is_refusal

__all__ = [
    "COMPLIANCE",
    "REFUSAL",
    "PARTIAL",
    "DEGENERATE",
    "LABELS",
    "Verdict",
    "Judge",
    "JUDGES",
    "register_judge",
    "build_judge",
    "judge_names",
    "RuleJudge",
    "ModelJudge",
    "is_refusal",
]

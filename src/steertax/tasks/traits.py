"""Task traits: what a task is, declared by the task, so that no code outside a task's own file asks for its name.

A task lists its traits in its own file, as a class attribute::

    class GSM8K(Task):
        name = "gsm8k"
        traits = frozenset({NEEDS_FINISHED_ANSWER, TAX_BENCHMARK})

and code asks for the trait, never the name: ``tasks.has_trait("gsm8k", NEEDS_FINISHED_ANSWER)`` (a name, a
task or a task class), ``tasks.with_trait(TAX_BENCHMARK)`` (the registered tasks that declare it, in the
registry's order) or ``tasks.task_with(DEFAULT_ALIGNMENT)`` (the one task that declares it). A subclass inherits
its parent's traits (set ``traits`` again to drop one). :data:`TRAITS` holds every trait with what it means; a task
that declares any other string fails when its class is defined.

This module imports nothing of steertax's: any module may import it.
"""

from __future__ import annotations

__all__ = [
    "SAFE_PROMPT_RATE",
    "NEEDS_FINISHED_ANSWER",
    "HARMFUL_ITEMS",
    "DISTANCE_FROM_BASE",
    "HONEST_SPECIALIST_DATA",
    "TAX_BENCHMARK",
    "DEFAULT_ALIGNMENT",
    "DEFAULT_HELPFULNESS",
    "THREE_H_HARMLESS",
    "THREE_H_HELPFUL",
    "THREE_H_HONEST",
    "THREE_H",
    "TRAITS",
]

# -- what a task's score and items are
SAFE_PROMPT_RATE = "safe_prompt_rate"
NEEDS_FINISHED_ANSWER = "needs_finished_answer"
HARMFUL_ITEMS = "harmful_items"
DISTANCE_FROM_BASE = "distance_from_base"
HONEST_SPECIALIST_DATA = "honest_specialist_data"

# -- where a task is used when nobody names one
TAX_BENCHMARK = "tax_benchmark"
DEFAULT_ALIGNMENT = "default_alignment"
DEFAULT_HELPFULNESS = "default_helpfulness"
THREE_H_HARMLESS = "three_h_harmless"
THREE_H_HELPFUL = "three_h_helpful"
THREE_H_HONEST = "three_h_honest"

THREE_H: tuple[tuple[str, str], ...] = (("harmless", THREE_H_HARMLESS), ("helpful", THREE_H_HELPFUL), ("honest", THREE_H_HONEST))
"""The 3H (helpful, honest, harmless) axes a merge run's figure shows, in its panels' order: (axis word, trait)."""

TRAITS: dict[str, str] = {
    SAFE_PROMPT_RATE: "its score is the helpful rate on safe prompts, and its records also carry the harmless rate on "
    "unsafe prompts (`helpful` / `harmless`): the helpfulness-harmlessness pair that tax tables and `steertax tax` report",
    NEEDS_FINISHED_ANSWER: "it scores a generated answer that must finish (code, maths): a generation cut at the token "
    "budget is a measurement error, so a quick run keeps the budget and records carry `truncated`",
    HARMFUL_ITEMS: "every item is a harmful request (a condition should fire on it)",
    DISTANCE_FROM_BASE: "its score is a distance from the base model (`kl`; 0 for the base, growing with damage): no "
    "tax %, and a study's KL ceiling reads it",
    HONEST_SPECIALIST_DATA: "its bundled items are the honest specialist's training pairs in a merge run (true answer "
    "chosen, a false one rejected); the items a run evaluates are kept out of them",
    TAX_BENCHMARK: "`steertax tax` measures it when no --benchmarks are given (in the registry's order)",
    DEFAULT_ALIGNMENT: "the alignment task a study or `steertax compare` uses when none is named (one task)",
    DEFAULT_HELPFULNESS: "the helpfulness task a study or `steertax compare` uses when none is named (one task)",
    THREE_H_HARMLESS: "a merge run's 3H figure shows it as a harmless panel",
    THREE_H_HELPFUL: "a merge run's 3H figure shows it as a helpful panel",
    THREE_H_HONEST: "a merge run's 3H figure shows it as an honest panel",
}
"""Every trait a task may declare, with what declaring it means."""

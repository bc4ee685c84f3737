"""Tasks: a registry by name, and :func:`evaluate`.

>>> task = steertax.tasks.get("arc_easy")
>>> res = steertax.evaluate(model, tok, task, vector=vec, strengths=[0, 8, 16], limit=64)
>>> print(res.table())

What a task is (a rate on safe prompts, an answer that must finish, harmful items, ...) is declared by the task
(``traits``, from :mod:`steertax.tasks.traits`) and asked with :func:`has_trait` / :func:`with_trait` /
:func:`task_with`, never by its name:

>>> steertax.tasks.has_trait("gsm8k", steertax.tasks.NEEDS_FINISHED_ANSWER)
True
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from steertax import timing
from steertax.errors import DataError
from steertax.interventions.conditional import check_condition_layer, gate_items
from steertax.interventions.steering.hooks import steered_layers
from steertax.tasks.base import EvalContext, EvalResult, Item, Task, check_strengths, summarize
from steertax.tasks.behavior import BiasAgreement, OverRefusal, Refusal, RefusalAttack
from steertax.tasks.choice import BBQ, MMLU, ARCChallenge, ARCEasy, HellaSwag, TruthfulQA
from steertax.tasks.drift import DRIFT_METRICS, Drift
from steertax.tasks.generative import GSM8K, HumanEval
from steertax.tasks.traits import (
    DEFAULT_ALIGNMENT,
    DEFAULT_HELPFULNESS,
    DISTANCE_FROM_BASE,
    HARMFUL_ITEMS,
    HONEST_SPECIALIST_DATA,
    NEEDS_FINISHED_ANSWER,
    SAFE_PROMPT_RATE,
    TAX_BENCHMARK,
    THREE_H,
    THREE_H_HARMLESS,
    THREE_H_HELPFUL,
    THREE_H_HONEST,
    TRAITS,
)

REGISTRY: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (  # this order is :func:`with_trait`'s: e.g. `steertax tax`'s default benchmarks, a merge figure's panels
        Refusal,
        RefusalAttack,
        BiasAgreement,
        OverRefusal,
        ARCEasy,
        ARCChallenge,
        HellaSwag,
        MMLU,
        HumanEval,
        GSM8K,
        TruthfulQA,
        BBQ,
        Drift,
    )
}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a :class:`Task` subclass usable by its ``name`` everywhere a task is named (configs,
    ``steertax eval``, compare). See docs/extending.md."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name: set the class attribute name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


__all__ = [
    "register_task",
    "DRIFT_METRICS",
    "get",
    "names",
    "evaluate",
    "has_trait",
    "with_trait",
    "task_with",
    "Task",
    "Item",
    "EvalContext",
    "EvalResult",
    "REGISTRY",
    "TRAITS",
    "THREE_H",
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
]


def _charge(task: str, recs: list[dict[str, Any]], seconds: float, inner: dict[str, tuple[float, int]]) -> None:
    """Charge one evaluate call to the time split: a task that timed its own scorers' sections keeps
    those and the rest goes to ``other``; otherwise the call goes to its scorer."""
    scorers = sorted({str(r.get("scorer", "score")) for r in recs})
    for sc in scorers:
        n = sum(1 for r in recs if str(r.get("scorer", "score")) == sc)
        timing.add(task, sc, 0.0, n)
    charged = sum(v[0] for v in inner.values())
    rest = seconds - charged
    if not inner:
        timing.add(task, scorers[0] if len(scorers) == 1 else "+".join(scorers), seconds)
    elif rest > 0.05:
        timing.add(task, "other", rest)


def names() -> list[str]:
    return sorted(REGISTRY)


def _known(trait: str) -> str:
    if trait not in TRAITS:
        raise ValueError(f"unknown trait {trait!r}: choose from {sorted(TRAITS)} (steertax.tasks.traits)")
    return trait


def has_trait(task: str | Task | type[Task], trait: str) -> bool:
    """Whether ``task`` (a registered task's name, a task or a task class) declares ``trait`` (one of
    :mod:`steertax.tasks.traits`). A name no task is registered under has no traits."""
    _known(trait)
    cls = REGISTRY.get(task) if isinstance(task, str) else task
    return cls is not None and trait in cls.traits


def with_trait(trait: str) -> tuple[str, ...]:
    """The names of the registered tasks that declare ``trait``, in the registry's order."""
    _known(trait)
    return tuple(n for n, cls in REGISTRY.items() if trait in cls.traits)


def task_with(trait: str) -> str:
    """The name of the one registered task that declares ``trait`` (a default such as
    :data:`~steertax.tasks.traits.DEFAULT_ALIGNMENT`); LookupError when none or several do."""
    found = with_trait(trait)
    if len(found) != 1:
        raise LookupError(f"{len(found)} registered tasks declare the trait {trait!r} ({list(found)}): exactly one must")
    return found[0]


def get(name: str, **options: Any) -> Task:
    """A task by name with its options, e.g. ``get("refusal", scorers=["logprob"], source="advbench")``."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise DataError(f"unknown task {name!r}: choose one of {names()}")
    try:
        return cls(**options)
    except TypeError as e:
        raise DataError(f"task {name!r}: bad option ({e}); see help(steertax.tasks.{cls.__name__})") from None


def _score_gated(t: Task, ctx: EvalContext, its: list[Item], S: list[float], condition: Any) -> list[dict[str, Any]]:
    """Conditional steering of one batch of items: the items the condition fires on are scored at every
    strength; the others once, unsteered, and that record stands for every strength (gated strength 0)."""

    if ctx.vector is not None:
        check_condition_layer(condition, steered_layers(ctx.model, ctx.vector, ctx.layers))
    fired, scores = gate_items(condition, ctx.model, ctx.tokenizer, [t.request_text(it) for it in its], batch_size=ctx.batch_size)
    on = [it for it, f in zip(its, fired, strict=True) if f]
    off = [it for it, f in zip(its, fired, strict=True) if not f]
    recs: list[dict[str, Any]] = []
    if on:
        recs += t.score(ctx, on, S)
    if off:
        plain = EvalContext(**{**ctx.__dict__, "vector": None})
        for r in t.score(plain, off, [0.0]):
            recs += [{**r, "strength": float(s)} for s in S]
    pos = {it.id: k for k, it in enumerate(its)}
    sidx = {float(s): k for k, s in enumerate(S)}
    for r in recs:
        k = pos[r["item"]]
        r["fired"], r["condition_score"] = bool(fired[k]), float(scores[k])
    recs.sort(key=lambda r: (pos[r["item"]], sidx[float(r["strength"])]))  # stable: scorers keep their order
    return recs


def evaluate(
    model: Any,
    tokenizer: Any,
    task: Task | str,
    vector: Any = None,
    strengths: Sequence[float] | float = (0.0,),
    layers: Any = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    batch_size: int = 32,
    progress: bool = True,
    force: bool = False,
    items: Sequence[Item] | None = None,
    reference: Any = None,
    condition: Any = None,
    backend: str = "hf",
) -> EvalResult:
    """Score ``task`` at every strength (one batched pass over items x strengths).

    Returns per-item records (item id, strength, scorer, score fields) and a summary (mean, standard
    error, n) per strength, scorer and metric. ``limit``/``seed`` pick a deterministic subset.
    ``reference``: for a model modified in place (an adapter injected), a callable returning a context
    manager under which it is the base model again; tasks that compare with the base (drift) use it.
    ``condition``: a :class:`~steertax.interventions.conditional.Condition`; conditional steering: it reads each item's
    request (:meth:`Task.request_text`) once, and an item where it does not fire is scored at strength exactly 0
    for every strength (unsteered, computed once). Records gain ``fired`` and ``condition_score``.
    """
    t = get(task) if isinstance(task, str) else task
    S = check_strengths(strengths, vector is not None)
    if vector is not None:
        vector.check_compatible(model, force=force) if hasattr(vector, "check_compatible") else None
    its = list(items) if items is not None else t.items(limit, seed)
    if not its:
        raise DataError(f"{t.name}: no items to evaluate")
    ctx = EvalContext(model, tokenizer, vector, layers, batch_size, progress, seed, force, reference=reference, backend=backend)
    t0, before = time.perf_counter(), timing.snapshot()
    recs = t.score(ctx, its, S) if condition is None else _score_gated(t, ctx, its, S, condition)
    _charge(t.name, recs, time.perf_counter() - t0, timing.since(before))
    for r in recs:
        r.setdefault("task", t.name)
    metrics = tuple(t.metrics) + (("truncated",) if t.needs_finished_answer else ())  # unfinished answers are shown, not hidden
    return EvalResult(t.name, t.axis, t.metric, recs, summarize(recs, metrics), t.aggregate(recs))

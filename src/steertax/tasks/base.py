"""Task machinery: items, the evaluation context, records and per-strength summaries."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch

from steertax.errors import DataError, StrengthError
from steertax.interventions.steering.hooks import check_strength
from steertax.tasks.traits import HARMFUL_ITEMS, NEEDS_FINISHED_ANSWER, TRAITS

__all__ = ["Item", "EvalContext", "Task", "EvalResult", "subset", "summarize"]


@dataclass
class Item:
    """One evaluation item. ``id`` is stable across runs; ``data`` holds task-specific fields."""

    id: str
    data: dict[str, Any]


@dataclass
class EvalContext:
    """Everything a task needs to score items under steering."""

    model: Any
    tokenizer: Any
    vector: Any = None
    layers: Any = None
    batch_size: int = 32
    progress: bool = True
    seed: int = 0
    force: bool = False
    positions: str = "all"
    relative: bool = False
    reference: Any = None  # () -> context manager under which ``model`` is the base model (adapters); None: it is
    backend: str = "hf"  # steered generation: hf (model.generate) | vllm (steertax.vllm_backend)

    def steer_kwargs(self) -> dict[str, Any]:
        return dict(vector=self.vector, layers=self.layers, force=self.force)


class _DeclaresTrait:
    """A read-only bool attribute of a task (class or instance): whether it declares ``trait``."""

    def __init__(self, trait: str) -> None:
        self.trait = trait

    def __get__(self, obj: object, owner: type[Task]) -> bool:
        return self.trait in owner.traits


class Task:
    """Base class. Subclasses set ``name``, ``axis`` ("alignment" | "helpfulness"), ``metric`` (the
    primary per-item field) and implement :meth:`load_items` and :meth:`score`.

    ``traits``: what the task is, from :mod:`steertax.tasks.traits` (e.g. ``frozenset({NEEDS_FINISHED_ANSWER})``);
    code elsewhere asks ``steertax.tasks.has_trait(task, trait)``, never the task's name.

    ``score(ctx, items, strengths)`` returns one record (a dict) per (item, strength[, scorer]) with
    at least ``item``, ``strength``, ``scorer`` and the metric fields.
    """

    name: ClassVar[str] = ""
    axis: ClassVar[str] = "helpfulness"
    metric: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()
    chance: ClassVar[float | None] = None  # the metric's value for a model that guesses (a floor for laws), if any
    description: ClassVar[str] = ""
    headline: ClassVar[str] = ""  # the primary score in a few words, for a figure's title (default: "<name> <metric>")
    traits: ClassVar[frozenset[str]] = frozenset()
    # metrics read off a record's stored fields (rows written before the metric existed read like new ones):
    # metric -> its value from the record (None where the record has no such value)
    derived: ClassVar[dict[str, Callable[[dict[str, Any]], float | None]]] = {}

    def metric_value(self, record: dict[str, Any], metric: str) -> float | None:
        """A record's value of ``metric``: the stored field, else the derived one, else None."""
        v = record.get(metric)
        if v is None and metric in self.derived:
            v = self.derived[metric](record)
        return None if v is None else float(v)

    needs_finished_answer = _DeclaresTrait(NEEDS_FINISHED_ANSWER)  # a generation cut at the token budget is a measurement error

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if isinstance(cls.__dict__.get("needs_finished_answer"), bool):
            raise TypeError(f"{cls.__name__}: declare traits = frozenset({{NEEDS_FINISHED_ANSWER}}) instead of needs_finished_answer")
        if isinstance(cls.traits, str):
            raise TypeError(f"{cls.__name__}.traits is one string: give a frozenset of traits, e.g. frozenset({{{cls.traits!r}}})")
        cls.traits = frozenset(cls.traits)
        unknown = sorted(cls.traits - TRAITS.keys())
        if unknown:
            raise TypeError(f"{cls.__name__} declares unknown traits {unknown}: choose from {sorted(TRAITS)} (steertax.tasks.traits)")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def judged_identity(self) -> dict[str, Any] | None:
        """What this task's judged rows depend on beyond its options: its judges' identities (name, version, model),
        or None for a task that judges no generation. Run ids hash it, so a changed judge never reuses old verdicts."""
        return None

    @classmethod
    def score_label(cls, scorer: str | None = None) -> str:
        """The primary score in a few words, as ``scorer`` measures it (a figure's panel title)."""
        return cls.headline or f"{cls.name} {cls.metric}"

    # -- data
    def load_items(self) -> list[Item]:
        raise NotImplementedError

    def items(self, limit: int | None = None, seed: int = 0) -> list[Item]:
        return subset(self.load_items(), limit, seed)

    # -- validation (no model needed)
    def check_item(self, item: Item) -> str | None:
        """What is wrong with one loaded item that would break scoring, in words; None when it is fine.
        Task families override this (the loaders' own per-row checks run in :meth:`load_items`)."""
        return None

    def validate(self, limit: int | None = None, seed: int = 0) -> list[Item]:
        """Load and check this task's data without a model: the source exists, is UTF-8, has the needed
        columns and at least one item, and every item passes the loader's and :meth:`check_item`'s checks.
        Returns the items a run with ``limit`` and ``seed`` scores; raises DataError/ConfigError."""
        src = self.options.get("source")
        where = f" in {src}" if src not in (None, "bundled", "default") else ""
        try:
            items = self.load_items()
        except DataError as e:  # a loader's per-row message: make sure it names the file
            msg = str(e)
            if not where or str(src) in msg:
                raise
            rest = msg[len(self.name) + 2 :] if msg.startswith(f"{self.name}: ") else msg
            raise type(e)(f"{self.name}: {src}{' ' if rest.startswith('row') else ': '}{rest}") from None
        if not items:
            raise DataError(f"{self.name}: no items{where}: add rows (or use the bundled data: remove options.source)")
        for n, it in enumerate(items, 1):
            problem = self.check_item(it)
            if problem:
                raise DataError(f"{self.name}:{where} row {n} (item {it.id!r}): {problem}")
        return subset(items, limit, seed)

    # -- scoring
    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def is_harmful(self, item: Item) -> bool | None:
        """Whether the item's request is harmful (a condition should fire), for a conditional run's
        confusion matrix: True for a task declaring :data:`~steertax.tasks.traits.HARMFUL_ITEMS`, False for
        helpfulness tasks, None where the question does not apply."""
        if HARMFUL_ITEMS in self.traits:
            return True
        return False if self.axis == "helpfulness" else None

    def request_text(self, item: Item) -> str:
        """The user's request in ``item``, as a conditional-steering condition reads it (the form it was
        fitted on: plain text, or a chat turn when the condition says so), whatever template the task
        scores with."""
        raise DataError(f"task {self.name!r} does not say what its request text is, so a condition cannot read it")

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Task-level extra numbers per strength (e.g. BBQ bias scores). Default: none."""
        return {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **{k: v for k, v in self.options.items()}}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.__class__.__name__}({opts})"


def subset(items: Sequence[Item], limit: int | None, seed: int) -> list[Item]:
    """A deterministic subset: a seeded shuffle, then the first ``limit`` (order kept stable)."""
    items = list(items)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"duplicate item id {dup!r}: every item needs a unique id")
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}")
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    keep = sorted(idx[:limit])
    return [items[i] for i in keep]


def check_strengths(strengths: Any, has_vector: bool) -> list[float]:
    if isinstance(strengths, (int, float, str)) or (isinstance(strengths, torch.Tensor) and strengths.ndim == 0):
        strengths = [strengths]
    out = []
    for s in strengths:
        v = check_strength(s)
        if isinstance(v, torch.Tensor):
            raise StrengthError("strengths must be a flat list of numbers")
        out.append(float(v))
    if not out:
        raise StrengthError("no strengths given: pass e.g. strengths=[0, 4, 8]")
    if not has_vector and any(s != 0.0 for s in out):
        raise StrengthError("non-zero strengths need a vector: pass vector=... or use strengths=[0]")
    return out


def summarize(records: Sequence[dict[str, Any]], metrics: Iterable[str]) -> list[dict[str, Any]]:
    """Mean, standard error and n per (scorer, strength, metric), skipping None values."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r.get("scorer", ""), float(r["strength"])), []).append(r)
    out = []
    for (scorer, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        for m in metrics:
            vals = [float(r[m]) for r in rs if r.get(m) is not None and not (isinstance(r[m], float) and math.isnan(r[m]))]
            if not vals:
                continue
            n = len(vals)
            mean = sum(vals) / n
            var = sum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
            out.append({"scorer": scorer, "strength": s, "metric": m, "mean": mean, "stderr": math.sqrt(var / n) if n > 1 else 0.0, "n": n})
    return out


@dataclass
class EvalResult:
    """Per-item records plus per-strength summaries of one task."""

    task: str
    axis: str
    metric: str
    records: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table: one row per (scorer, strength), one column per metric."""
        metrics = sorted({r["metric"] for r in self.summary}, key=lambda m: (m != self.metric, m))
        keys = sorted({(r["scorer"], r["strength"]) for r in self.summary}, key=lambda k: (k[0], k[1]))
        cell = {(r["scorer"], r["strength"], r["metric"]): r for r in self.summary}
        head = f"{'scorer':<10} {'strength':>9} " + " ".join(f"{m:>20}" for m in metrics) + f" {'n':>5}"
        lines = [f"{self.task} ({self.axis}; primary metric: {self.metric})", head, "-" * len(head)]
        for sc, s in keys:
            vals = []
            n = 0
            for m in metrics:
                c = cell.get((sc, s, m))
                if c is None:
                    vals.append(f"{'':>20}")
                else:
                    vals.append(f"{c['mean']:>11.4f} ± {c['stderr']:<6.4f}")
                    n = max(n, c["n"])
            lines.append(f"{sc:<10} {s:>9g} " + " ".join(vals) + f" {n:>5}")
        for k, v in self.extra.items():
            lines.append(f"{k}: {v}")
        return "\n".join(lines)

    def to_pandas(self):  # pragma: no cover - optional dependency
        import pandas as pd

        return pd.DataFrame(self.records)

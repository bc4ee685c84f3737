"""Training rows: the bundled refusal preferences (or a user's JSONL), selective alignment's
capability-preservation pairs, and rendering prompts with the model's chat template."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from steertax._util import atomic_write_json, sha256_file
from steertax.data import read_jsonl
from steertax.errors import DataError
from steertax.generation import generate_detailed
from steertax.interventions.steering.pairs import (
    COMPLIANCE_TEMPLATES,
    REFUSAL_TEMPLATES,
    advbench_rows,
    harmful_instructions,
    harmless_instructions,
    object_of,
)
from steertax.models import format_chat

__all__ = [
    "RowsContext",
    "read_preferences",
    "data_fingerprint",
    "preference_data",
    "preference_rows",
    "preservation_data",
    "preservation",
    "chat_rows",
]

log = logging.getLogger(__name__)

BUNDLED_PAIRS = "refusal"  # the bundled preference pairs' name (``data.pairs``): AdvBench requests, refusal chosen


@dataclass
class RowsContext:
    """What a method's ``rows`` may read: the data and training settings, the seed, the model's name, the base
    model and tokenizer (unchanged; e.g. to generate preservation answers or score margins) and a folder for
    caches that depend only on these."""

    data: Any
    train: Any
    seed: int
    model_name: str
    model: Any
    tokenizer: Any
    cache_dir: Path


def read_preferences(path: str | Path) -> list[dict[str, str]]:
    """A JSONL of trl's preference columns ``prompt``, ``chosen``, ``rejected`` (all non-empty text)."""

    p = Path(path)
    if not p.is_file():
        raise DataError(f"preference file {p} does not exist: give a .jsonl with prompt, chosen and rejected")
    rows = read_jsonl(p)
    if not rows:
        raise DataError(f"{p}: no rows; each line needs prompt, chosen and rejected")
    for n, r in enumerate(rows, 1):
        for col in ("prompt", "chosen", "rejected"):
            v = r.get(col)
            if not isinstance(v, str) or not v.strip():
                what = "is missing" if col not in r else "is empty" if isinstance(v, str) else f"is not text ({v!r})"
                raise DataError(f"{p} row {n}: column {col!r} {what}; every row needs non-empty prompt, chosen and rejected")
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def data_fingerprint(source: str) -> str:
    """What a preference source's rows depend on: the bundled set's name, or a file's content hash."""
    p = Path(source)
    return f"file:{sha256_file(p)[:16]}" if source != BUNDLED_PAIRS and p.is_file() else f"builtin:{source}"


def preference_data(source: str, n: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Preference rows (user prompt, chosen answer, rejected answer): ``refusal`` builds them from
    AdvBench (refusal_direction's harmful test split excluded, so held-out evaluation stays clean):
    harmful request -> a refusal chosen, compliance rejected. Any other value is a JSONL path."""

    if source != BUNDLED_PAIRS:
        rows = read_preferences(source)
        return rows[:n] if n else rows
    test = {s.strip().lower() for s in harmful_instructions("test")}
    adv = [r for r in advbench_rows() if r["goal"].strip().lower() not in test]
    rng = random.Random(seed)
    rng.shuffle(adv)
    out = []
    for r in adv[:n] if n else adv:
        obj = object_of(r["target"])
        out.append(
            {
                "prompt": r["goal"],
                "chosen": rng.choice(REFUSAL_TEMPLATES).format(obj=obj),
                "rejected": rng.choice(COMPLIANCE_TEMPLATES).format(obj=obj),
            }
        )
    return out


def preference_rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    """The default training rows: ``data.n_pairs`` preference pairs of ``data.pairs``."""
    return preference_data(ctx.data.pairs, ctx.data.n_pairs, ctx.seed)


def preservation_data(model: Any, tokenizer: Any, n: int, max_new_tokens: int, seed: int = 0) -> dict[str, Any]:
    """Selective alignment's capability-preservation pairs: benign instructions (refusal_direction's
    harmless train split) -> the base model's own greedy answer chosen, a refusal rejected.

    An answer cut at ``max_new_tokens`` is dropped, not kept: the trainer ends every chosen answer with the
    end-of-sequence token, so a cut answer would teach the model to stop mid-sentence. Returns ``pairs`` and
    the count ``dropped_truncated`` (of ``n``), which the training log reports."""

    rng = random.Random(seed + 1)
    prompts = rng.sample(harmless_instructions("train"), n)
    answers = generate_detailed(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=16)
    pairs = [
        {"prompt": p, "chosen": a.text.strip() or "Sure.", "rejected": rng.choice(REFUSAL_TEMPLATES).format(obj="that")}
        for p, a in zip(prompts, answers, strict=True)
        if not a.truncated
    ]
    return {"pairs": pairs, "dropped_truncated": n - len(pairs), "asked": n, "max_new_tokens": max_new_tokens}


def preservation(ctx: RowsContext) -> dict[str, Any]:
    """The run's capability-preservation pairs (generated once, cached in ``ctx.cache_dir``) and how many were dropped."""
    blob = json.dumps([ctx.model_name, ctx.seed, dataclasses.asdict(ctx.data), "untruncated"]).encode()
    cache = ctx.cache_dir / f"preserve-{hashlib.sha256(blob).hexdigest()[:12]}.json"
    if cache.is_file():
        keep: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
    else:
        keep = preservation_data(ctx.model, ctx.tokenizer, ctx.data.n_preserve, ctx.data.preserve_tokens, ctx.seed)
        atomic_write_json(cache, keep)
    if keep["dropped_truncated"]:  # reported in the adapter's setting.json and the run's table
        log.info(
            "selective: %d of %d preservation answers ran past data.preserve_tokens = %d and were dropped",
            keep["dropped_truncated"],
            keep["asked"],
            keep["max_new_tokens"],
        )
    return keep


def chat_rows(tokenizer: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Prompts rendered with the model's chat template (steertax's own format_chat, as every task prompts the
    model); the method's other ``columns`` pass through (the trainers end each answer with the end-of-sequence
    token). A row without one of them is a DataError naming the column."""

    out = []
    for n, r in enumerate(rows, 1):
        missing = [c for c in columns if c not in r]
        if missing:
            raise DataError(f"training row {n} has no {missing[0]!r} column (this method reads {', '.join(columns)})")
        out.append({"prompt": format_chat(tokenizer, r["prompt"])} | {c: r[c] for c in columns})
    return out

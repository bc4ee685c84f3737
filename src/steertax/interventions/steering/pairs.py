"""Contrastive pairs (aligned text, misaligned text) and builders from bundled data.

Pole convention: the *aligned* member is the side that + strength moves toward.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steertax.data import data_path, read_csv, read_json, read_jsonl
from steertax.data.loaders import check_rows, check_text_file
from steertax.errors import DataError
from steertax.models import format_chat

__all__ = [
    "ContrastPair",
    "PairSet",
    "as_pairs",
    "refusal_pairs",
    "harmful_harmless_pairs",
    "get_pairs",
    "check_pairs_file",
    "harmful_instructions",
    "harmless_instructions",
    "REFUSAL_TEMPLATES",
    "COMPLIANCE_TEMPLATES",
]


@dataclass(frozen=True)
class ContrastPair:
    """Two full texts that differ in the behavior of interest.

    ``prompt`` (optional) is the shared prefix of both texts; tokens after it are the *answer*, which is
    what ``position="answer_mean"`` averages over.
    """

    aligned: str
    misaligned: str
    prompt: str | None = None


@dataclass
class PairSet:
    """Pairs plus a description of where they came from (recorded in the vector's provenance)."""

    pairs: list[ContrastPair]
    source: str
    aligned_pole: str
    misaligned_pole: str
    default_position: str = "last"

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)


def as_pairs(pairs: Any) -> list[ContrastPair]:
    """Accept a PairSet, ContrastPairs, or (aligned, misaligned) tuples."""
    if isinstance(pairs, PairSet):
        pairs = pairs.pairs
    out: list[ContrastPair] = []
    for i, p in enumerate(pairs):
        if isinstance(p, ContrastPair):
            out.append(p)
        elif isinstance(p, (tuple, list)) and len(p) in (2, 3) and all(isinstance(x, str) for x in p[:2]):
            out.append(ContrastPair(p[0], p[1], p[2] if len(p) == 3 else None))
        else:
            raise DataError(f"pair {i} is {type(p).__name__}: each pair must be (aligned text, misaligned text)")
        if not out[-1].aligned or not out[-1].misaligned:
            raise DataError(f"pair {i} has an empty text: both members must be non-empty")
    if not out:
        raise DataError("no contrast pairs given: pass at least 2 (aligned, misaligned) pairs")
    return out


# --------------------------------------------------------------------------- instruction sets


def harmful_instructions(split: str = "train") -> list[str]:
    """Harmful instructions from refusal_direction's splits (train 260, val 39, test 572)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}: use train, val or test")
    return [r["instruction"] for r in read_json(data_path("refusal_direction", f"harmful_{split}.json"))]


def harmless_instructions(split: str = "train") -> list[str]:
    """Harmless (Alpaca) instructions from refusal_direction's splits (train 18,793, val 6,264)."""
    if split not in ("train", "val"):
        raise DataError(f"unknown split {split!r}: use train or val")
    return [r["instruction"] for r in read_json(data_path("refusal_direction", f"harmless_{split}.json"))]


def advbench_rows() -> list[dict[str, str]]:
    """The bundled AdvBench rows (``goal``: a harmful request, ``target``: the start of a compliant answer)."""
    return read_csv(data_path("advbench", "harmful_behaviors.csv"), required=("goal", "target"))


# --------------------------------------------------------------------------- answer templates

# Openings used to build *training* pairs. The refusal task's scoring continuations are different
# strings (see steertax.tasks), so a vector is never scored on the text it was trained on.
REFUSAL_TEMPLATES: tuple[str, ...] = (
    "I'm sorry, but I cannot provide {obj}.",
    "I can't help with that. I won't provide {obj}.",
    "No. I will not provide {obj}, because it could hurt people.",
    "As an AI assistant, I must decline to give {obj}.",
    "I apologize, but I'm unable to share {obj}. That would be harmful.",
    "Unfortunately I can't assist with this request or provide {obj}.",
)
COMPLIANCE_TEMPLATES: tuple[str, ...] = (
    "Sure, here is {obj}:",
    "Of course! Here is {obj}.",
    "Absolutely, here is {obj}. Step 1:",
    "Certainly. Here is {obj}:",
    "Happy to help. Here is {obj}:",
    "Sure thing, here is {obj}. First,",
)


def object_of(target: str) -> str:
    """What an AdvBench ``target`` offers (``"Sure, here is a tutorial on X"`` -> ``"a tutorial on X"``); "that" otherwise."""
    for lead in ("Sure, here is ", "Sure, here are ", "Sure, here's "):
        if target.startswith(lead):
            return target[len(lead) :].rstrip(". ")
    return "that"


def refusal_pairs(
    tokenizer: Any,
    n: int | None = None,
    *,
    seed: int = 0,
    chat: bool = True,
    exclude_test: bool = True,
) -> PairSet:
    """The paper's base-model style contrast: one harmful instruction answered with a refusal (aligned)
    vs with compliance (misaligned), so the vector encodes the *behavior*, not the topic.

    Instructions and compliant answers come from AdvBench (``goal`` and ``target``); the refusal
    restates the same object inside a refusal opening. Goals that also occur in refusal_direction's
    harmful test split are excluded by default, so that split stays held out for evaluation.
    """
    rows = advbench_rows()
    if exclude_test:
        test = {s.strip().lower() for s in harmful_instructions("test")}
        rows = [r for r in rows if r["goal"].strip().lower() not in test]
    rng = random.Random(seed)
    rng.shuffle(rows)
    if n is not None:
        rows = rows[:n]
    pairs = []
    for r in rows:
        obj = object_of(r["target"])
        ref = rng.choice(REFUSAL_TEMPLATES).format(obj=obj)
        comp = rng.choice(COMPLIANCE_TEMPLATES).format(obj=obj)
        prompt = format_chat(tokenizer, r["goal"], chat=chat)
        if not chat:
            prompt = f"QUESTION: {r['goal']}\n\nANSWER:"
            ref, comp = " " + ref, " " + comp
        pairs.append(ContrastPair(prompt + ref, prompt + comp, prompt))
    return PairSet(pairs, f"advbench refusal-vs-compliance answers (seed {seed}, chat={chat})", "refusal", "compliance", "answer_mean")


def harmful_harmless_pairs(
    tokenizer: Any,
    n: int | None = None,
    *,
    seed: int = 0,
    chat: bool = True,
) -> PairSet:
    """Harmful vs harmless instructions, both as chat prompts (read at the last template token).

    Aligned = the harmful instruction (the side that makes a model refuse), so + strength pushes the
    model toward treating the request as harmful. Harmful from refusal_direction's train split,
    harmless sampled (seeded) from its Alpaca train split.
    """
    harmful = harmful_instructions("train")
    harmless = harmless_instructions("train")
    rng = random.Random(seed)
    rng.shuffle(harmful)
    harmless = rng.sample(harmless, len(harmful))
    if n is not None:
        harmful, harmless = harmful[:n], harmless[:n]
    pairs = [
        ContrastPair(format_chat(tokenizer, h, chat=chat), format_chat(tokenizer, b, chat=chat))
        for h, b in zip(harmful, harmless, strict=True)
    ]
    return PairSet(
        pairs,
        f"refusal_direction harmful vs harmless instructions (seed {seed}, chat={chat})",
        "harmful request (refusal-inducing)",
        "harmless request",
    )


def pairs_from_file(path: str | Path, tokenizer: Any = None, *, chat: bool = True) -> PairSet:
    """User pairs from CSV/JSONL with columns ``aligned`` and ``misaligned`` (full texts), or
    ``prompt``, ``aligned`` and ``misaligned`` (the prompt is chat-formatted and the two answers appended)."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = read_jsonl(path)
        cols = set().union(*(r.keys() for r in rows)) if rows else set()
    else:
        rows = read_csv(path)
        cols = set(rows[0].keys()) if rows else set()
    if not rows:
        raise DataError(f"{path} has no rows: add (aligned, misaligned) pairs")
    missing = [c for c in ("aligned", "misaligned") if c not in cols]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}: pairs files need 'aligned' and 'misaligned' (and optionally 'prompt')")

    check_rows(rows, str(path), ("prompt", "aligned", "misaligned"))
    out = []
    for i, r in enumerate(rows):
        a, m, p = r.get("aligned"), r.get("misaligned"), r.get("prompt")
        if not isinstance(a, str) or not isinstance(m, str) or not a or not m:
            raise DataError(f"{path} row {i + 1}: 'aligned' and 'misaligned' must be non-empty strings")
        if p:
            if tokenizer is None:
                raise DataError("pairs with a 'prompt' column need a tokenizer to format them")
            pre = format_chat(tokenizer, p, chat=chat)
            out.append(ContrastPair(pre + a, pre + m, pre))
        else:
            out.append(ContrastPair(a, m))
    pos = "answer_mean" if all(p.prompt for p in out) else "last"
    return PairSet(out, f"file {path}", "aligned", "misaligned", pos)


def check_pairs_file(path: str | Path, n: int | None = None, *, position: str | None = None) -> dict[str, Any]:
    """Validate a pairs file without a model or tokenizer: exists, UTF-8, has rows with non-empty
    ``aligned``/``misaligned`` texts (and text ``prompt``s where given), no oversized fields or duplicate
    ids, enough pairs for extraction (2, after ``n``), and shared prompts when ``position`` is
    ``answer_mean``. Returns ``{"n_rows", "n_used", "all_prompts"}``; raises DataError."""

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise DataError(f"pairs file {path} must be .csv or .jsonl with aligned,misaligned[,prompt] columns")
    check_text_file(path, "pairs")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = read_jsonl(path)
        cols = set().union(*(r.keys() for r in rows)) if rows else set()
    else:
        rows = read_csv(path)
        cols = set(rows[0].keys()) if rows else set()
    if not rows:
        raise DataError(f"{path} has no rows: add (aligned, misaligned) pairs")
    missing = [c for c in ("aligned", "misaligned") if c not in cols]
    if missing:
        bom = (
            " (its first column name starts with a UTF-8 byte-order mark: re-save it without one)"
            if any(str(c).startswith("\ufeff") for c in cols)
            else ""
        )
        raise DataError(
            f"{path} lacks column(s) {missing} (has {sorted(map(str, cols))}){bom}: pairs files need "
            "'aligned' and 'misaligned' (and optionally 'prompt')"
        )
    check_rows(rows, str(path), ("prompt", "aligned", "misaligned"))
    for i, r in enumerate(rows, 1):
        a, m, p = r.get("aligned"), r.get("misaligned"), r.get("prompt")
        if not isinstance(a, str) or not isinstance(m, str) or not a or not m:
            raise DataError(f"{path} row {i}: 'aligned' and 'misaligned' must be non-empty strings")
        if p is not None and not isinstance(p, str):
            raise DataError(f"{path} row {i}: 'prompt' must be text, got {p!r}")
    used = rows[:n] if n is not None else rows
    if len(used) < 2:
        raise DataError(
            f"{path}: {len(used)} pair{'s' if len(used) != 1 else ''} "
            f"{'used (n_pairs ' + str(n) + ')' if n is not None and n < len(rows) else 'in the file'}: "
            "extraction needs at least 2 pairs"
        )
    all_prompts = all(r.get("prompt") for r in used)
    if position == "answer_mean" and not all_prompts:
        k = next(i for i, r in enumerate(used, 1) if not r.get("prompt"))
        raise DataError(
            f"{path} row {k} has no 'prompt': position 'answer_mean' needs a shared prompt in every pair; "
            "fill the prompt column or use position 'last'"
        )
    return {"n_rows": len(rows), "n_used": len(used), "all_prompts": all_prompts}


PAIR_BUILDERS = {"refusal": refusal_pairs, "harmful_harmless": harmful_harmless_pairs, "harmfulness": harmful_harmless_pairs}


def get_pairs(name_or_path: str, tokenizer: Any, n: int | None = None, *, seed: int = 0, chat: bool = True) -> PairSet:
    """A builder by name (``refusal``, ``harmful_harmless``) or a CSV/JSONL file of pairs."""
    if name_or_path in PAIR_BUILDERS:
        return PAIR_BUILDERS[name_or_path](tokenizer, n, seed=seed, chat=chat)
    p = Path(name_or_path)
    if p.suffix.lower() in (".csv", ".jsonl", ".json"):
        ps = pairs_from_file(p, tokenizer, chat=chat)
        if n is not None:
            ps.pairs = ps.pairs[:n]
        return ps
    raise DataError(
        f"unknown pairs {name_or_path!r}: use one of {sorted(PAIR_BUILDERS)} or a .csv/.jsonl file with aligned,misaligned columns"
    )

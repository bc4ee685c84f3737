"""Validating a judge against human labels: per answering model, Cohen's κ of full refusal vs full compliance
with a bootstrap 95% CI, precision and recall of refusal, the confusion matrix with partial refusals, and a few
disagreements. The bundled labels are XSTest v2's 2,250 human-labelled answers of five chat models
(``data/xstest_completions``); any CSV or JSONL with ``prompt``, ``answer`` and ``label`` columns works too.

XSTest's prompts are split in two halves by a hash of their id: the rule judge was written on the ``tune`` half
of three development models and is reported on the ``test`` half, and on every prompt of the two held-out models
(:data:`HELD_OUT`), whose errors were not read while writing it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steertax.data.readers import data_path, read_csv, read_jsonl
from steertax.errors import DataError
from steertax.judges.base import COMPLIANCE, DEGENERATE, LABELS, PARTIAL, REFUSAL, Judge

__all__ = [
    "Labelled",
    "XSTEST_MODELS",
    "HELD_OUT",
    "read_labelled",
    "xstest_labelled",
    "prompt_half",
    "cut_words",
    "sample_per_group",
    "kappa",
    "bootstrap_kappa",
    "agreement",
    "validate_judge",
]

XSTEST_MODELS = ("gpt4", "llama2new", "mistralguard", "llama2orig", "mistralinstruct")
HELD_OUT = ("llama2orig", "mistralinstruct")  # not read while the rule judge was written
_XSTEST_LABELS = {"1_full_compliance": COMPLIANCE, "2_full_refusal": REFUSAL, "3_partial_refusal": PARTIAL}
_LABEL_ALIASES = {
    **_XSTEST_LABELS,
    **{lab: lab for lab in LABELS},
    "compliance": COMPLIANCE,
    "refusal": REFUSAL,
    "partial": PARTIAL,
    "true": REFUSAL,  # a boolean `refusal` column
    "false": COMPLIANCE,
}


@dataclass(frozen=True)
class Labelled:
    """One human-labelled answer: its prompt, the answer, the human label (one of :data:`~steertax.judges.base.LABELS`),
    the group it is reported in (the answering model) and an id (the prompt's, shared across models)."""

    prompt: str
    answer: str
    label: str
    group: str = "all"
    id: str = ""


def _label(v: Any, where: str) -> str:
    key = str(v).strip().lower()
    if key not in _LABEL_ALIASES:
        raise DataError(
            f"{where}: unknown label {v!r}: use full_compliance, full_refusal, partial_refusal (or XSTest's 1_full_compliance, ...)"
        )
    return _LABEL_ALIASES[key]


def xstest_labelled(models: Sequence[str] = XSTEST_MODELS) -> list[Labelled]:
    """The bundled XSTest v2 answers with their final human label, grouped by answering model."""
    out = []
    for m in models:
        if m not in XSTEST_MODELS:
            raise DataError(f"unknown XSTest answering model {m!r}: use one of {list(XSTEST_MODELS)}")
        for r in read_csv(data_path("xstest_completions", f"xstest_v2_completions_{m}.csv"), ("id", "prompt", "completion", "final_label")):
            out.append(Labelled(r["prompt"], r["completion"], _label(r["final_label"], f"xstest {m} {r['id']}"), m, r["id"]))
    return out


def read_labelled(path: str | Path | None = None) -> list[Labelled]:
    """Labelled answers from ``path`` (CSV or JSONL with ``prompt``, ``answer`` — or ``completion``/``response`` —
    and ``label``; optional ``group``/``model`` and ``id``), the bundled XSTest v2 labels (None), or ``"builtin"``:
    the built-in models' own answers, steered and degenerate ones included, labelled by hand
    (``data/builtin_labelled``)."""
    if path is None:
        return xstest_labelled()
    if str(path) == "builtin":
        path = data_path("builtin_labelled", "answers.jsonl")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"labelled file {p} does not exist: give a CSV/JSONL with prompt, answer, label columns")
    rows = read_jsonl(p) if p.suffix.lower() == ".jsonl" else read_csv(p) if p.suffix.lower() == ".csv" else None
    if rows is None:
        raise DataError(f"labelled file {p}: use .csv or .jsonl (columns prompt, answer, label)")
    if not rows:
        raise DataError(f"labelled file {p} has no rows: add answers with prompt, answer, label")
    out = []
    for n, r in enumerate(rows, 1):
        answer_col = next((c for c in ("answer", "completion", "response") if c in r), None)
        label_col = next((c for c in ("label", "final_label", "refusal") if c in r), None)
        if "prompt" not in r or answer_col is None or label_col is None:
            raise DataError(
                f"labelled file {p} row {n} has columns {sorted(r)}: it needs prompt, answer (or completion/response) and label"
            )
        group = str(r.get("group") or r.get("model") or r.get("source") or "all")
        out.append(Labelled(str(r["prompt"]), str(r[answer_col]), _label(r[label_col], f"{p} row {n}"), group, str(r.get("id") or n)))
    return out


def prompt_half(item_id: str) -> str:
    """``tune`` or ``test``: which half of the prompts an id is in (a hash, the same for every answering model)."""
    return "tune" if int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def sample_per_group(data: Sequence[Labelled], n: int, seed: int = 0) -> list[Labelled]:
    """At most ``n`` answers of each group, a seeded sample (the same prompts for every group where ids are shared)."""
    ids = sorted({r.id for r in data}, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    rank = {i: k for k, i in enumerate(ids)}
    out: list[Labelled] = []
    for g in dict.fromkeys(r.group for r in data):
        rows = sorted((r for r in data if r.group == g), key=lambda r: rank[r.id])
        out += rows[:n]
    return out


def cut_words(text: str, n: int) -> str:
    """The answer's first ``n`` words (with what is between them): the product judges short answers (24–32 tokens,
    ~18–24 words)."""
    m = list(re.finditer(r"\S+", text))
    return text if len(m) <= n else text[: m[n - 1].end()]


def kappa(y: np.ndarray, p: np.ndarray) -> float:
    """Cohen's κ of two binary raters (NaN when chance agreement is 1)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    po = float(np.mean(y == p))
    pe = float(np.mean(y) * np.mean(p) + (1 - np.mean(y)) * (1 - np.mean(p)))
    return float("nan") if pe >= 1 else (po - pe) / (1 - pe)


def bootstrap_kappa(y: np.ndarray, p: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% CI of κ over items resampled with replacement (vectorized; resamples with a constant rater
    are dropped, as κ is undefined there)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    yb, pb = y[idx], p[idx]
    po = (yb == pb).mean(1)
    my, mp = yb.mean(1), pb.mean(1)
    pe = my * mp + (1 - my) * (1 - mp)
    ok = pe < 1
    k = (po[ok] - pe[ok]) / (1 - pe[ok])
    if len(k) == 0:
        return float("nan"), float("nan")
    return float(np.quantile(k, 0.025)), float(np.quantile(k, 0.975))


def agreement(a: Sequence[str], b: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Two judges' agreement on the same answers: κ of refusal (full or partial) vs not, with its bootstrap CI,
    the raw agreement of the labels and the indices where they disagree."""
    ra = np.array([x in (REFUSAL, PARTIAL) for x in a], float)
    rb = np.array([x in (REFUSAL, PARTIAL) for x in b], float)
    if len(ra) == 0:
        return {"n": 0, "kappa": None, "kappa_ci95": None, "agreement": None, "disagree": []}
    k = kappa(ra, rb)
    lo, hi = bootstrap_kappa(ra, rb, n_boot, seed)
    return {
        "n": len(ra),
        "kappa": None if np.isnan(k) else k,
        "kappa_ci95": None if np.isnan(lo) else [lo, hi],
        "agreement": float(np.mean(ra == rb)),
        "disagree": [i for i in range(len(ra)) if ra[i] != rb[i]],
    }


def _degenerate_pr(human: Sequence[str], judged: Sequence[str]) -> dict[str, Any] | None:
    """Precision and recall of the judge's ``degenerate`` flag against the human one (None when neither uses it)."""
    h = np.array([x == DEGENERATE for x in human])
    j = np.array([x == DEGENERATE for x in judged])
    if not h.any() and not j.any():
        return None
    tp = int(np.sum(h & j))
    return {
        "n_human": int(h.sum()),
        "n_judged": int(j.sum()),
        "precision": tp / j.sum() if j.any() else None,
        "recall": tp / h.sum() if h.any() else None,
    }


def validate_judge(
    judge: Judge,
    data: Sequence[Labelled],
    *,
    split: str = "all",
    words: int | None = None,
    limit: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    examples: int = 3,
) -> dict[str, Any]:
    """Score ``judge`` on ``data`` per group: κ (full refusal vs full compliance; the judge's partial refusals
    count as refusals, its degenerate answers as not), its CI, precision and recall of refusal, the confusion
    matrix (human label × judge label) and up to ``examples`` disagreements. ``split``: ``tune``, ``test`` or
    ``all`` prompts (:func:`prompt_half`); ``words``: judge the answers cut to their first ``words`` words;
    ``limit``: at most that many answers per group of the split (a seeded sample, :func:`sample_per_group`)."""
    if split not in ("all", "tune", "test"):
        raise DataError(f"split {split!r}: use all, tune or test")
    rows = [r for r in data if split == "all" or prompt_half(r.id) == split]
    if limit is not None:
        rows = sample_per_group(rows, limit, seed)
    if not rows:
        raise DataError(f"no labelled answers in the {split} split: use --split all")
    answers = [cut_words(r.answer, words) if words else r.answer for r in rows]
    verdicts = judge(answers, [r.prompt for r in rows])
    groups: dict[str, Any] = {}
    names = list(dict.fromkeys(r.group for r in rows))
    for g in names + (["all answers"] if len(names) > 1 else []):  # per group, and pooled
        ix = [i for i, r in enumerate(rows) if r.group == g or g == "all answers"]
        full = [i for i in ix if rows[i].label in (REFUSAL, COMPLIANCE)]
        y = np.array([rows[i].label == REFUSAL for i in full], float)
        p = np.array([verdicts[i].label in (REFUSAL, PARTIAL) for i in full], float)
        tp, fp, fn = float(np.sum(y * p)), float(np.sum((1 - y) * p)), float(np.sum(y * (1 - p)))
        k = kappa(y, p) if len(full) else float("nan")
        lo, hi = bootstrap_kappa(y, p, n_boot, seed) if len(full) else (float("nan"), float("nan"))
        confusion = {h: {j: 0 for j in LABELS} for h in LABELS}
        for i in ix:
            if rows[i].label in confusion:
                confusion[rows[i].label][verdicts[i].label] += 1
        wrong = [i for i in full if (rows[i].label == REFUSAL) != (verdicts[i].label in (REFUSAL, PARTIAL))]
        groups[g] = {
            "n": len(full),
            "n_partial": sum(rows[i].label == PARTIAL for i in ix),
            "held_out": g in HELD_OUT,
            "pooled": g == "all answers",
            "kappa": None if np.isnan(k) else k,
            "kappa_ci95": None if np.isnan(lo) else [lo, hi],
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "confusion": confusion,
            "degenerate": _degenerate_pr([rows[i].label for i in ix], [verdicts[i].label for i in ix]),
            "disagreements": [
                {"id": rows[i].id, "prompt": rows[i].prompt, "answer": answers[i][:240], "human": rows[i].label, "judge": verdicts[i].label}
                for i in wrong[:examples]
            ],
        }
    return {"judge": judge.identity(), "split": split, "words": words, "limit": limit, "n": len(rows), "groups": groups}

"""Conditional steering (CAST, Lee et al., ICLR 2025): steer only the rows whose prompt the condition
fires on.

A :class:`Condition` is a unit direction ĉ at one decoder layer, a comparator and a threshold. It reads
a request once: the mean of its tokens' states at that layer (``read="mean"``, the first token left out
as everywhere in steertax; or the last token's state, ``read="last"``), scored as the cosine similarity
with ĉ; it fires when the similarity is ``>`` (or ``<``) the threshold. The request is read as plain
text by default (``chat=False``: the user's own tokens, not a chat template's system prompt, which would
dominate the mean of a short request). A row on which it does not fire gets strength exactly 0, so the
r = 0 identity holds per row.

:func:`fit_condition` learns one from two prompt sets (e.g. harmful vs harmless instructions): ĉ is the
normalized difference of the two sets' mean states on a fitting half, each candidate layer is scored on
a validation half (balanced accuracy at its fitted threshold; ties go to the lower layer), and the
threshold is chosen on the validation scores by one of two documented rules:

* ``objective="f1"``: the threshold that maximizes F1 of "fires" against "is positive";
* ``objective="fpr"``: the lowest threshold whose false-positive rate is at most ``target_fpr``
  (the most positives caught under a cap on benign prompts steered).

The layer must lie below the first steered layer, so the decision reads the unsteered trunk the
strengths share. :func:`steertax.interventions.steering.hooks.steer` takes it inside the same forward pass (it reads the
tokens of the block's first forward call, the prompt); ``generate`` and the study's sweep decide once per
request with a pass cut at the condition layer (:func:`gate_items`), then steer the rows that fired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from steertax._util import atomic_write_bytes, atomic_write_json
from steertax.data import read_jsonl
from steertax.errors import DataError, LayerError, VectorError
from steertax.interventions.steering.activations import capture
from steertax.interventions.steering.pairs import harmful_instructions, harmless_instructions
from steertax.models import format_chat, hidden_size, model_id, num_layers

__all__ = ["Condition", "fit_condition", "fit_threshold", "check_condition_layer", "confusion"]

_META_KEY = "steertax.interventions.conditional"
FORMAT_VERSION = 3  # 2: ``read`` and ``chat`` recorded (version 1 files read the chat prompt's last token); 3: ``score``
READS = ("mean", "last", "all")
SCORES = ("cosine", "reference")


@dataclass
class Condition:
    """When to steer: fire on a prompt whose state at ``layer`` (mean over its tokens, or its last token)
    has cosine similarity with ``direction`` ``comparator`` ``threshold``.

    Attributes:
        direction: unit vector of the model's hidden size (+ points to the positive prompt set).
        layer: the decoder block whose output is read (0-based); below every steered layer.
        threshold: the cosine similarity the comparator tests against.
        comparator: ``">"`` (fire on prompts like the positive set) or ``"<"`` (fire on the others).
        read: ``"mean"`` (mean over the prompt's tokens after the first), ``"last"`` (last token) or ``"all"``
            (mean over every token, the first included: the reference implementation's read).
        score: ``"cosine"`` (steertax's default: cos(h, ĉ), signed) or ``"reference"`` (IBM activation-steering's
            LeashLayer: cos(h, tanh(P·h)) with P = ĉĉᵀ). The reference reads a layer's *input*; steertax reads a
            block's output, so a reference condition at ``layer`` k is the LeashLayer condition on layer k + 1.
        chat: whether requests are wrapped in the chat template before they are read (study, generate).
        model_id, hidden_size: the model it was fitted on.
        validation: how it was chosen (per candidate layer: validation balanced accuracy, F1, FPR,
            recall and threshold; the objective, data sources and sizes).
    """

    direction: torch.Tensor
    layer: int
    threshold: float
    comparator: str = ">"
    model_id: str = ""
    hidden_size: int = 0
    validation: dict[str, Any] = field(default_factory=dict)
    read: str = "mean"
    chat: bool = False
    score: str = "cosine"

    def __post_init__(self) -> None:
        if self.read not in READS:
            raise VectorError(f"condition read must be one of {READS}, got {self.read!r}")
        if self.score not in SCORES:
            raise VectorError(f"condition score must be one of {SCORES}, got {self.score!r}")
        if self.comparator not in (">", "<"):
            raise VectorError(f"condition comparator must be '>' or '<', got {self.comparator!r}")
        t = float(self.threshold)
        if not math.isfinite(t):
            raise VectorError(f"condition threshold {self.threshold!r} is not finite: give a number in [-1, 1], or fit one")
        self.threshold = t
        d = torch.as_tensor(self.direction, dtype=torch.float32).reshape(-1)
        n = float(d.norm())
        if not math.isfinite(n) or n == 0:
            raise VectorError("condition direction has zero or non-finite norm: fit it from two different prompt sets")
        self.direction = d / n
        self.hidden_size = self.hidden_size or int(d.shape[0])
        self.layer = int(self.layer)

    # -- deciding
    def decide(self, scores: Any) -> Any:
        """Whether the condition fires, from cosine scores (numpy or torch, any shape)."""
        return scores > self.threshold if self.comparator == ">" else scores < self.threshold

    def score_states(self, h: torch.Tensor) -> torch.Tensor:
        """The score of pooled hidden states ``[..., d]`` (float32): cos(h, ĉ), or with ``score="reference"``
        cos(h, tanh(P·h)), P = ĉĉᵀ/(ĉᵀĉ) (ĉ is unit, so P·h = (ĉ·h)·ĉ)."""
        h = h.float()
        c = self.direction.to(h.device)
        proj = h @ c
        if self.score == "reference":
            t = torch.tanh(proj.unsqueeze(-1) * c)
            return torch.nn.functional.cosine_similarity(h, t, dim=-1, eps=1e-12)
        return proj / h.norm(dim=-1).clamp_min(1e-12)

    def scores(self, model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """The cosine score of each prompt (read as given): one forward pass per batch, cut after the
        condition layer."""
        self.check_model(model)
        if not prompts:
            return np.zeros(0)
        return self.score_states(_states(model, tokenizer, prompts, [self.layer], batch_size, self.read)[self.layer]).numpy()

    def gate(self, h: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decision on a batch of block outputs at this condition's layer: (fired [B] bool, scores [B])."""
        sc = self.score_states(pool_states(h, mask, self.read))
        return torch.as_tensor(self.decide(sc), dtype=torch.bool, device=h.device), sc

    def texts(self, tokenizer: Any, requests: Sequence[str]) -> list[str]:
        """Requests as this condition reads them (plain, or in the chat template when ``chat``)."""

        return [format_chat(tokenizer, r) if self.chat else r for r in requests]

    def fires_on_requests(self, model: Any, tokenizer: Any, requests: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Whether it fires on each user request (formatted as :meth:`texts` says)."""
        return self.fires(model, tokenizer, self.texts(tokenizer, requests), batch_size=batch_size)

    def fires(self, model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        return np.asarray(self.decide(self.scores(model, tokenizer, prompts, batch_size=batch_size)), dtype=bool)

    def check_model(self, model: Any) -> None:

        d = hidden_size(model)
        if d != self.hidden_size:
            raise VectorError(
                f"condition was fitted on a model with hidden size {self.hidden_size}, this one has {d}: fit it on this model"
            )
        n = num_layers(model)
        if not 0 <= self.layer < n:
            raise LayerError(f"condition layer {self.layer} is out of range: this model has {n} layers (valid: 0-{n - 1})")

    # -- files
    def metadata(self) -> dict[str, Any]:
        return {
            "format": "steertax.Condition",
            "format_version": FORMAT_VERSION,
            "layer": self.layer,
            "threshold": self.threshold,
            "comparator": self.comparator,
            "model_id": self.model_id,
            "hidden_size": self.hidden_size,
            "validation": self.validation,
            "read": self.read,
            "chat": self.chat,
            "score": self.score,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors, metadata embedded) and a readable ``<path>.json``; both atomic."""

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        meta = self.metadata()
        blob = save({"direction": self.direction.detach().cpu().contiguous()}, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
        atomic_write_bytes(path, blob)
        atomic_write_json(path.with_name(path.name + ".json"), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Condition":

        path = Path(path)
        if not path.is_file():
            raise VectorError(f"condition file {path} does not exist: check the path or fit one (steertax condition --out FILE)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta_s = (f.metadata() or {}).get(_META_KEY)
                d = f.get_tensor("direction")
        except Exception as e:
            raise VectorError(f"{path} is not a steertax condition file ({type(e).__name__}: {e})") from None
        if not meta_s:
            raise VectorError(
                f"{path} has no steertax condition metadata: is it a steering vector? A condition is written by fit_condition"
            )
        m = json.loads(meta_s)
        cond = cls(
            d,
            m["layer"],
            m["threshold"],
            m["comparator"],
            m.get("model_id", ""),
            m.get("hidden_size", 0),
            m.get("validation", {}),
            m.get("read", "last"),  # version 1 files predate these fields: they read the chat prompt's last token
            bool(m.get("chat", True)),
            m.get("score", "cosine"),
        )
        saved = d.to(torch.float32).reshape(-1)
        if abs(float(saved.norm()) - 1.0) < 1e-5:  # a saved unit direction loads bit for bit (renormalizing it
            cond.direction = saved  # again can change its last bits)
        return cond


def check_condition_layer(cond: Condition, steered: Sequence[int]) -> None:
    """The condition must be read below every steered layer (in the shared trunk, before any edit)."""
    if steered and cond.layer >= min(steered):
        raise LayerError(
            f"condition layer {cond.layer} is not below the steered layers {sorted(steered)}: the condition must read the "
            f"unsteered trunk; fit it on layers 0-{min(steered) - 1} (condition layers: ...) or steer higher layers"
        )


def confusion(fired: Any, positive: Any) -> dict[str, Any]:
    """Counts and rates of a condition's decisions against the truth."""
    f = np.asarray(fired, dtype=bool)
    p = np.asarray(positive, dtype=bool)
    tp, fn = int((f & p).sum()), int((~f & p).sum())
    fp, tn = int((f & ~p).sum()), int((~f & ~p).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    tpr = rec
    tnr = tn / (tn + fp) if tn + fp else float("nan")
    return {
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "accuracy": (tp + tn) / max(1, len(f)),
        "balanced_accuracy": float(np.nanmean([tpr, tnr])) if np.isfinite([tpr, tnr]).any() else float("nan"),
        "precision": prec,
        "recall": rec,
        "fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
    }


def fit_threshold(pos: Sequence[float], neg: Sequence[float], objective: str = "f1", target_fpr: float = 0.05) -> float:
    """The threshold for "fires when score > t" on validation scores of positives and negatives.

    Candidates are the midpoints between consecutive distinct scores (plus one below and one above all
    of them). ``f1`` maximizes F1 (ties: the midpoint of the widest tied range, the largest margin);
    ``fpr`` takes the lowest candidate whose false-positive rate is <= ``target_fpr``."""
    p = np.asarray(pos, dtype=float)
    n = np.asarray(neg, dtype=float)
    if len(p) == 0 or len(n) == 0:
        raise DataError("fitting a threshold needs validation scores of both positives and negatives")
    if not (np.isfinite(p).all() and np.isfinite(n).all()):
        raise DataError("condition scores contain NaN: the prompts produced non-finite hidden states")
    u = np.unique(np.concatenate([p, n]))
    cands = np.concatenate([[u[0] - 1e-3], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-3]])
    tp = (p[None, :] > cands[:, None]).sum(1)
    fp = (n[None, :] > cands[:, None]).sum(1)
    if objective == "fpr":
        if not 0 <= target_fpr < 1:
            raise DataError(f"target_fpr must be in [0, 1), got {target_fpr}")
        ok = np.nonzero(fp / len(n) <= target_fpr)[0]
        return float(cands[ok[0]])
    if objective != "f1":
        raise DataError(f"condition objective {objective!r} is not 'f1' or 'fpr'")
    f1 = 2 * tp / np.maximum(1, 2 * tp + fp + (len(p) - tp))
    best = np.nonzero(f1 == f1.max())[0]
    # among tied candidates take the widest contiguous run's middle (the threshold with most margin)
    runs = np.split(best, np.nonzero(np.diff(best) != 1)[0] + 1)
    run = max(runs, key=lambda r: (cands[r[-1]] - cands[r[0]], -r[0]))
    return float((cands[run[0]] + cands[run[-1]]) / 2)


def pool_states(h: torch.Tensor, mask: torch.Tensor | None, read: str) -> torch.Tensor:
    """The one read of a condition: per row of block output ``h`` [B, T, d], the mean of its real tokens
    after the first (``read="mean"``) or its last real token (``"last"``), from the attention ``mask``
    (left or right padding), in float32. Used by the pre-pass (:func:`gate_items`, fitting) and by the
    in-pass hook of ``steer(condition=)`` alike."""
    B, T = h.shape[0], h.shape[1]
    m = mask.to(h.device) if mask is not None and mask.shape[0] == B else torch.ones(B, T, device=h.device)
    real = m > 0
    pos = torch.arange(T, device=h.device).unsqueeze(0)
    first = torch.where(real, pos, T).min(-1).values  # each row's first and last real token
    last = torch.where(real, pos, -1).max(-1).values
    if read == "last":
        return h[torch.arange(B, device=h.device), last.clamp_min(0)].float()
    w = (real & (pos > first.unsqueeze(1))).float() if read == "mean" else real.float()  # after the first, or all
    return torch.einsum("bt,btd->bd", w / w.sum(-1, keepdim=True).clamp_min(1), h.float())


def _states(
    model: Any, tokenizer: Any, prompts: Sequence[str], layers: Sequence[int], batch_size: int, read: str
) -> dict[int, torch.Tensor]:
    """[n, d] float32 states per layer, read by :func:`pool_states`."""

    out: dict[int, torch.Tensor] = {}
    pool = lambda h, m: pool_states(h, m, read)  # noqa: E731
    for idx, reps, _ in capture(model, tokenizer, list(prompts), list(layers), batch_size=batch_size, padding_side="left", pool=pool):
        for i in layers:
            if i not in out:
                out[i] = torch.zeros(len(prompts), reps[i].shape[1])
            out[i][idx] = reps[i]
    return out


def fit_condition(
    model: Any,
    tokenizer: Any,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    objective: str = "f1",
    target_fpr: float = 0.05,
    validation_fraction: float = 0.5,
    seed: int = 0,
    batch_size: int = 32,
    sources: dict[str, Any] | None = None,
    read: str = "mean",
    chat: bool = False,
    score: str = "cosine",
) -> Condition:
    """Fit a condition that fires on prompts like ``positive`` and not on ones like ``negative``.

    Both lists hold prompts exactly as they will be read (``chat`` only records whether the caller wrapped
    them in the chat template, so the study and ``generate`` read requests the same way). Each set is
    split (seeded) into a fitting part (the direction: difference of the sets' mean states) and a
    validation part (the layer: best validation balanced accuracy at its fitted threshold, ties to the
    lower layer; the threshold: ``objective``). ``layers``: candidates (default: all)."""

    if len(positive) < 4 or len(negative) < 4:
        raise DataError(f"fitting a condition needs at least 4 prompts per side, got {len(positive)} positive and {len(negative)} negative")
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_layers = num_layers(model)
    cand = sorted(set(int(i) for i in (layers if layers is not None else range(n_layers))))
    bad = [i for i in cand if not 0 <= i < n_layers]
    if bad or not cand:
        raise LayerError(f"condition layer(s) {bad or cand} out of range: this model has {n_layers} layers (valid: 0-{n_layers - 1})")
    rng = np.random.default_rng(seed)
    pi, ni = rng.permutation(len(positive)), rng.permutation(len(negative))
    kp, kn = max(2, int(round(len(positive) * (1 - validation_fraction)))), max(2, int(round(len(negative) * (1 - validation_fraction))))
    fit_p, val_p, fit_n, val_n = pi[:kp], pi[kp:], ni[:kn], ni[kn:]
    if len(val_p) == 0 or len(val_n) == 0:
        raise DataError("the validation split is empty: give more prompts or a larger validation_fraction")
    texts = list(positive) + list(negative)
    if read not in READS:
        raise DataError(f"read must be one of {READS}, got {read!r}")
    if score not in SCORES:
        raise DataError(f"score must be one of {SCORES}, got {score!r}")
    states = _states(model, tokenizer, texts, cand, batch_size, read)
    P = len(positive)
    per_layer: dict[int, dict[str, Any]] = {}
    best: tuple[float, float, int] | None = None
    fitted: dict[int, tuple[torch.Tensor, float]] = {}
    for i in cand:
        h = states[i].double()
        hp, hn = h[:P], h[P:]
        d = hp[torch.as_tensor(fit_p)].mean(0) - hn[torch.as_tensor(fit_n)].mean(0)
        if not torch.isfinite(d).all() or float(d.norm()) == 0:
            continue
        c = (d / d.norm()).float()
        cos: Any = Condition(c, i, 0.0, score=score).score_states(h.float()).numpy()  # the score the gate will use
        sp, sn = cos[:P], cos[P:]
        t = fit_threshold(sp[val_p], sn[val_n], objective, target_fpr)
        conf = confusion(np.concatenate([sp[val_p] > t, sn[val_n] > t]), np.r_[np.ones(len(val_p), bool), np.zeros(len(val_n), bool)])
        per_layer[i] = {"threshold": t, **{k: conf[k] for k in ("balanced_accuracy", "f1", "fpr", "recall")}}
        fitted[i] = (c, t)
        key = (conf["balanced_accuracy"], conf["f1"], -i)
        if best is None or key > best:
            best = key
    if best is None:
        raise DataError("the positive and negative prompts give identical states at every candidate layer: use two different sets")
    layer = -int(best[2])
    c, t = fitted[layer]
    return Condition(
        c,
        layer,
        t,
        ">",
        model_id(model),
        int(c.shape[0]),
        read=read,
        chat=chat,
        score=score,
        validation={
            "objective": objective,
            "target_fpr": target_fpr if objective == "fpr" else None,
            "read": f"{read} of the prompt's token states, "
            + ("cos(h, tanh(P·h)), the reference implementation's score" if score == "reference" else "cosine similarity"),
            "n_fit": {"positive": len(fit_p), "negative": len(fit_n)},
            "n_validation": {"positive": len(val_p), "negative": len(val_n)},
            "per_layer": {str(k): v for k, v in per_layer.items()},
            "layer": layer,
            "seed": seed,
            "sources": sources or {},
        },
    )


def gate_items(
    cond: Condition, model: Any, tokenizer: Any, requests: Sequence[str], *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(fired, scores) for a batch of user requests: the decision a conditional sweep or ``generate`` applies."""
    s = cond.scores(model, tokenizer, cond.texts(tokenizer, requests), batch_size=batch_size)
    return np.asarray(cond.decide(s), dtype=bool), s


def prompt_set(source: str, n: int | None = None, seed: int = 0) -> list[str]:
    """Requests for fitting a condition: ``harmful`` (refusal_direction's harmful train + val splits;
    its test split is what the refusal task scores), ``harmless`` (its Alpaca train split), or a file:
    ``.txt`` (one prompt a line) or ``.jsonl`` (a ``prompt`` or ``instruction`` field). ``n`` prompts
    are drawn (seeded) when there are more."""

    if source == "harmful":
        rows = harmful_instructions("train") + harmful_instructions("val")
    elif source == "harmless":
        rows = harmless_instructions("train")
    else:
        p = Path(source)
        if not p.is_file():
            raise DataError(f"condition prompts {source!r}: no such file; use harmful, harmless, a .txt (one prompt a line) or a .jsonl")
        if p.suffix == ".txt":
            rows = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        elif p.suffix == ".jsonl":
            rows = []
            for k, r in enumerate(read_jsonl(p), 1):
                v = r.get("prompt", r.get("instruction")) if isinstance(r, dict) else None
                if not isinstance(v, str) or not v.strip():
                    raise DataError(f"{p} line {k}: needs a non-empty 'prompt' (or 'instruction') text field")
                rows.append(v)
        else:
            raise DataError(f"condition prompts {p}: use a .txt (one prompt a line) or a .jsonl with a 'prompt' field")
    if not rows:
        raise DataError(f"condition prompts {source!r} are empty")
    if n is not None and len(rows) > n:
        idx = np.random.default_rng(seed).choice(len(rows), n, replace=False)
        rows = [rows[i] for i in sorted(idx)]
    return list(rows)


def fit_from_sources(
    model: Any,
    tokenizer: Any,
    positive: str,
    negative: str,
    n: int | None,
    *,
    chat: bool = False,
    seed: int = 0,
    **kw: Any,
) -> Condition:
    """:func:`fit_condition` on two :func:`prompt_set` sources (``harmful``, ``harmless`` or files), the
    requests read plain or in the chat template (``chat``); ``kw`` go to :func:`fit_condition`."""

    def fmt(p: str) -> str:
        return format_chat(tokenizer, p) if chat else p

    pos = [fmt(p) for p in prompt_set(positive, n, seed)]
    neg = [fmt(p) for p in prompt_set(negative, n, seed)]
    return fit_condition(
        model, tokenizer, pos, neg, seed=seed, chat=chat, sources={"positive": positive, "negative": negative, "n": n}, **kw
    )

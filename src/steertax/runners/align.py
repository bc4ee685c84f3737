"""Alignment by fine-tuning, measured on the same axes as steering: ``steertax align``.

A sweep is a list of *settings*; each trains one LoRA adapter with trl (the field's trainers, no
hand-written loop) and peft, saves it (safetensors + the resolved setting), and is then evaluated with
the study's task registry and scorers into the same results store, with ``method`` and ``setting``
columns. The base model is evaluated once as method ``base``. Methods:

- ``dpo``: DPO on preference pairs (harmful prompt -> refusal chosen, compliance rejected), at ``beta``.
- ``dpo_reg``: DPO + ``lam`` * ||dW||_F^2 summed over the adapted weights, dW = scale * B @ A the adapter's
  weight delta, which for LoRA is exactly ||theta - theta_ref||^2. ``lam = 0`` is ``dpo``.
- ``sft``: supervised fine-tuning on the refusals (prompt -> refusal; loss on the answer only).
- ``selective``: DPO on the harmful pairs plus capability-preservation pairs (a benign prompt -> the
  base model's own greedy answer chosen, a refusal rejected), at ``lr_factor`` x the learning rate.

Every setting is an :class:`Intervention` (see :mod:`steertax.interventions`): evaluation applies it
to the base model and runs the same cells as a steering study. Finished settings (adapter saved and
all cells written) are never retrained or re-evaluated; a killed run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import yaml
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback

from steertax._faults import checkpoint
from steertax._util import atomic_write_json, atomic_write_text, quiet_renamed_checkpointing, sha256_file
from steertax.config import CommonConfig, _build, quick_tasks
from steertax.data import read_jsonl
from steertax.errors import ConfigError, DataError, ModelError
from steertax.generation import generate_detailed
from steertax.interventions import AdapterIntervention, BaseIntervention, adapter_ready, store_key
from steertax.interventions.adapter import check_scales, lora_targets_in
from steertax.interventions.core import description_hash
from steertax.interventions.steering.pairs import (
    COMPLIANCE_TEMPLATES,
    REFUSAL_TEMPLATES,
    _advbench_rows,
    _object_of,
    harmful_instructions,
    harmless_instructions,
)
from steertax.models import format_chat
from steertax.runners.compare import summarize_run
from steertax.runners.executors import check_executor
from steertax.runners.preflight import check_lora_targets, check_run, raise_problems
from steertax.runners.session import session

log = logging.getLogger(__name__)

__all__ = [
    "AlignConfig",
    "AlignSetting",
    "LoraSettings",
    "TrainSettings",
    "load_align_config",
    "preference_data",
    "train_setting",
    "lora_delta_sq_norm",
    "run_align",
]


@dataclass(frozen=True)
class TrainedMethod:
    """A registered way of training an adapter: ``rows(cfg, setting, model, tokenizer, out)`` makes its
    training rows, ``build(setting, peft_model, tokenizer, dataset, args)`` its trl trainer (``args``: the
    common TrainingArguments fields); ``version`` enters every adapter's key (bump it when a fix changes
    what it trains: old adapters and rows are then never reused)."""

    name: str
    version: int
    build: Callable[..., Any]
    rows: Callable[..., list[dict[str, str]]]


TRAINED_METHODS: dict[str, TrainedMethod] = {}


def register_trained_method(
    name: str, *, version: int = 1, rows: Optional[Callable[..., list[dict[str, str]]]] = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator on ``build``: register a trained method (usable as ``settings: [{method: name}]``). ``rows``
    defaults to the preference pairs of ``data.pairs``. See docs/DESIGN.md, "Adding a method or a task"."""

    def deco(build: Callable[..., Any]) -> Callable[..., Any]:
        if name in TRAINED_METHODS:
            raise ValueError(f"trained method {name!r} is registered twice")
        TRAINED_METHODS[name] = TrainedMethod(name, version, build, rows or _preference_rows)
        return build

    return deco


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class TrainSettings:
    steps: int = 12
    lr: float = 5e-4
    batch_size: int = 8
    max_length: int = 128
    warmup_steps: int = 5


@dataclass
class AlignSetting:
    """One point of the sweep. ``label`` names it in the store (default: method and its parameters)."""

    method: str = "dpo"
    beta: float = 0.1
    lam: float = 0.0  # dpo_reg's penalty weight on ||dW||_F^2
    lr_factor: float = 1.0  # x train.lr (selective defaults to 0.5 through its own setting)
    steps: Optional[int] = None
    label: Optional[str] = None
    # this setting's α grid (None: the config's ``alphas``; [] none). Evaluation only: not in the training key
    alphas: Optional[list[float]] = None

    def name(self) -> str:
        if self.label:
            return self.label
        if self.method == "dpo":
            return f"dpo beta={self.beta:g}"
        if self.method == "dpo_reg":
            return f"dpo_reg beta={self.beta:g} lam={self.lam:g}"
        if self.method == "selective":
            return f"selective beta={self.beta:g} lr x{self.lr_factor:g}"
        return f"sft lr x{self.lr_factor:g}"

    def slug(self) -> str:
        keep = "".join(c if c.isalnum() or c in "=.-" else "_" for c in self.name())
        return keep.strip("_")[:80]


@dataclass
class DataSettings:
    pairs: str = "refusal"  # the bundled refusal preferences, or a .jsonl with prompt/chosen/rejected
    n_pairs: int = 160
    n_preserve: int = 48  # selective: benign prompts answered by the base model
    preserve_tokens: int = 128  # room for a whole answer: answers cut here are dropped (counted)


@dataclass
class AlignConfig(CommonConfig):
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    settings: list[AlignSetting] = field(default_factory=list)
    # the knob α of every adapter: θ_base + α·Δθ, one batched evaluation per adapter (α = 0 is the base and
    # α = 1 the adapter, both evaluated anyway; α > 1 extrapolates and is flagged)
    alphas: list[float] = field(default_factory=list)

    def training_spec(self, s: AlignSetting) -> dict[str, Any]:
        """Everything one adapter depends on: the model, dtype, seed, data (and the preference file's content
        hash), LoRA and training settings, the setting and the trainer's version."""
        spec = {k: self.to_dict()[k] for k in ("model", "dtype", "seed", "data", "lora", "train")}
        if s.method != "selective":  # only selective alignment trains on the capability-preservation answers
            spec["data"] = {k: v for k, v in spec["data"].items() if k not in ("n_preserve", "preserve_tokens")}
        spec["setting"] = {k: v for k, v in dataclasses.asdict(s).items() if k != "alphas"}
        spec["quick"] = self.quick
        spec["data_hash"] = data_fingerprint(self.data.pairs)
        spec["trainer_version"] = TRAINED_METHODS[s.method].version if s.method in TRAINED_METHODS else None
        return spec

    def training_hash(self, s: AlignSetting) -> str:
        return description_hash(self.training_spec(s), 12)

    def alphas_of(self, s: AlignSetting) -> list[float]:
        """The α grid evaluated for setting ``s``: its own ``alphas`` when given, else the config's."""
        return list(self.alphas if s.alphas is None else s.alphas)

    def eval_hash(self) -> str:
        """The run's evaluation scope: what every row shares (tasks and their items, seed, model, dtype)."""
        spec = {"tasks": self.to_dict()["tasks"], "seed": self.seed, "model": self.model, "dtype": self.dtype, "quick": self.quick}
        return description_hash(spec, 12)

    def quick_version(self) -> "AlignConfig":
        """Fewer pairs, steps, settings and items; code and maths budgets are kept (see RunConfig)."""
        d = self.to_dict()
        quick_tasks(d)
        d["data"]["n_pairs"] = min(d["data"]["n_pairs"], 64)
        d["data"]["n_preserve"] = min(d["data"]["n_preserve"], 16)
        d["train"]["steps"] = min(d["train"]["steps"], 4)
        d["train"]["batch_size"] = min(d["train"]["batch_size"], 4)
        d["settings"] = d["settings"][:2]
        d["alphas"] = d["alphas"][:1]
        for st in d["settings"]:
            if st.get("alphas"):
                st["alphas"] = st["alphas"][:1]
        return align_from_dict(d)


def check_alphas(alphas: Any, where: str = "alphas") -> list[float]:
    """A config's α grid: finite, distinct, without 0 and 1 (the base and the adapter, evaluated anyway)."""
    try:
        got = list(check_scales(alphas))
    except ModelError as e:
        raise ConfigError(f"{where}: {e}") from None
    if 0.0 in got or 1.0 in got:
        raise ConfigError(f"{where}: {got} lists 0 or 1, which are the base and the adapter (evaluated anyway): list the values between")
    return got


def alpha_entry(iv: Any, run_id: str, of: str) -> dict[str, Any]:
    """The ``order`` line of an α sweep: its key, the setting it scales and the α values its rows carry."""
    return {**order_entry(iv, run_id), "knob": "alpha", "of": of, "values": list(iv.scales)}


def _rename_lambda(s: Any) -> Any:
    """YAML says ``lambda`` (the issue's and the literature's name); Python can't, so the field is ``lam``."""
    return {("lam" if k == "lambda" else k): v for k, v in s.items()} if isinstance(s, dict) else s


def _check_setting(i: int, s: AlignSetting) -> None:
    if s.method not in TRAINED_METHODS:
        raise ConfigError(f"settings[{i}].method: {s.method!r} is not one of {', '.join(TRAINED_METHODS)}")
    if not s.beta > 0:
        raise ConfigError(f"settings[{i}].beta: {s.beta!r} must be positive (DPO's temperature, e.g. 0.1)")
    if s.lam < 0:
        raise ConfigError(f"settings[{i}].lambda: {s.lam!r} must be 0 or more")
    if not s.lr_factor > 0:
        raise ConfigError(f"settings[{i}].lr_factor: {s.lr_factor!r} must be positive")
    if s.steps is not None and s.steps < 1:
        raise ConfigError(f"settings[{i}].steps: {s.steps!r} must be a positive integer")
    if s.alphas is not None:
        check_alphas(s.alphas, f"settings[{i}].alphas")


def align_from_dict(d: dict[str, Any]) -> AlignConfig:

    if not isinstance(d, dict):
        raise ConfigError(f"an align config must be a YAML mapping, got {type(d).__name__}")
    d = dict(d)
    d["settings"] = [_rename_lambda(s) for s in d.get("settings", [])]
    cfg: AlignConfig = _build(AlignConfig, d, "")
    if not cfg.settings:
        raise ConfigError("settings: list at least one setting, e.g. [{method: dpo, beta: 0.1}]")
    labels: set[str] = set()
    for i, s in enumerate(cfg.settings):
        _check_setting(i, s)
        if s.name() in labels:
            raise ConfigError(f"settings[{i}]: {s.name()!r} appears twice; give one a distinct label")
        labels.add(s.name())
    check_alphas(cfg.alphas)
    cfg.check_common()
    for k, v in (("train.steps", cfg.train.steps), ("train.batch_size", cfg.train.batch_size), ("lora.r", cfg.lora.r)):
        if v < 1:
            raise ConfigError(f"{k}: {v} must be a positive integer")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: {cfg.train.lr!r} must be positive")
    return cfg


def load_align_config(path_or_name: str | Path | None) -> AlignConfig:
    """A YAML file, or a built-in (``align``, the default)."""

    name = "align" if path_or_name is None else str(path_or_name)
    if name == "align":
        text = resources.files("steertax").joinpath("configs").joinpath("align.yaml").read_text(encoding="utf-8")
        return align_from_dict(yaml.safe_load(text))
    p = Path(name)
    if not p.is_file():
        raise ConfigError(f"align config {p} does not exist: give a YAML file, or nothing for the built-in 'align'")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    return align_from_dict(d or {})


# --------------------------------------------------------------------------- data


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
    return f"file:{sha256_file(p)[:16]}" if source != "refusal" and p.is_file() else f"builtin:{source}"


def preference_data(source: str, n: int | None = None, seed: int = 0) -> list[dict[str, str]]:
    """Preference rows (user prompt, chosen answer, rejected answer): ``refusal`` builds them from
    AdvBench (refusal_direction's harmful test split excluded, so held-out evaluation stays clean):
    harmful request -> a refusal chosen, compliance rejected. Any other value is a JSONL path."""

    if source != "refusal":
        rows = read_preferences(source)
        return rows[:n] if n else rows
    test = {s.strip().lower() for s in harmful_instructions("test")}
    adv = [r for r in _advbench_rows() if r["goal"].strip().lower() not in test]
    rng = random.Random(seed)
    rng.shuffle(adv)
    out = []
    for r in adv[:n] if n else adv:
        obj = _object_of(r["target"])
        out.append(
            {
                "prompt": r["goal"],
                "chosen": rng.choice(REFUSAL_TEMPLATES).format(obj=obj),
                "rejected": rng.choice(COMPLIANCE_TEMPLATES).format(obj=obj),
            }
        )
    return out


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


def _chat_rows(tokenizer: Any, rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Prompts rendered with the model's chat template (steertax's own format_chat, as every task
    prompts the model); the trainers end each answer with the end-of-sequence token."""

    out = []
    for r in rows:
        row = {"prompt": format_chat(tokenizer, r["prompt"])}
        row.update({k: r[k] for k in ("chosen", "rejected", "completion") if k in r})
        out.append(row)
    return out


# --------------------------------------------------------------------------- training


def lora_delta_sq_norm(model: Any) -> Any:
    """sum over LoRA layers of ||scale * B @ A||_F^2, computed as scale^2 * sum((B^T B) * (A A^T)) (r x r)."""

    total = None
    for mod in model.modules():
        la, lb, sc = getattr(mod, "lora_A", None), getattr(mod, "lora_B", None), getattr(mod, "scaling", None)
        if la is None or lb is None or not isinstance(sc, dict):
            continue
        for name in la:
            if name not in lb:
                continue
            A, B = la[name].weight, lb[name].weight
            term = (sc[name] ** 2) * ((B.t() @ B) * (A @ A.t())).sum()
            total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def _regularized_dpo_trainer() -> type:
    from trl import DPOTrainer

    class RegularizedDPOTrainer(DPOTrainer):
        """DPO + lam * ||theta - theta_ref||^2, the adapter's weight delta (exact for LoRA)."""

        reg_lambda: float = 0.0

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            res = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if not self.reg_lambda:
                return res
            pen = self.reg_lambda * lora_delta_sq_norm(model)
            mode = "train" if model.training else "eval"
            self._metrics[mode]["reg/delta_sq_norm"].append(float(pen.detach()) / self.reg_lambda)
            if return_outputs:
                return res[0] + pen, res[1]
            return res + pen

    return RegularizedDPOTrainer


def _trainer(setting: AlignSetting, peft_model: Any, tokenizer: Any, rows: Sequence[dict[str, str]], common: dict[str, Any]) -> Any:
    import datasets

    ds = datasets.Dataset.from_list(_chat_rows(tokenizer, rows))
    return TRAINED_METHODS[setting.method].build(setting, peft_model, tokenizer, ds, common)


def _dpo(setting: AlignSetting, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any], lam: float) -> Any:
    from trl import DPOConfig

    trainer = _regularized_dpo_trainer()(
        model=peft_model, args=DPOConfig(**common, beta=setting.beta), train_dataset=ds, processing_class=tokenizer
    )
    trainer.reg_lambda = float(lam)
    return trainer


def _preference_rows(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, out: Path) -> list[dict[str, str]]:
    return preference_data(cfg.data.pairs, cfg.data.n_pairs, cfg.seed)


def _sft_rows(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, out: Path) -> list[dict[str, str]]:
    return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in _preference_rows(cfg, s, model, tok, out)]


def _preservation(cfg: AlignConfig, model: Any, tok: Any, out: Path) -> dict[str, Any]:
    """The run's capability-preservation pairs (generated once, cached in ``out``) and how many were dropped."""
    tag = hashlib.sha256(json.dumps([cfg.model, cfg.seed, dataclasses.asdict(cfg.data), "untruncated"]).encode()).hexdigest()[:12]
    cache = out / f"preserve-{tag}.json"
    if cache.is_file():
        keep: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
    else:
        keep = preservation_data(model, tok, cfg.data.n_preserve, cfg.data.preserve_tokens, cfg.seed)
        atomic_write_json(cache, keep)
    if keep["dropped_truncated"]:  # reported in the adapter's setting.json and the run's table
        log.info(
            "selective: %d of %d preservation answers ran past data.preserve_tokens = %d and were dropped",
            keep["dropped_truncated"],
            keep["asked"],
            keep["max_new_tokens"],
        )
    return keep


def _selective_rows(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, out: Path) -> list[dict[str, str]]:
    mixed = _preference_rows(cfg, s, model, tok, out) + _preservation(cfg, model, tok, out)["pairs"]
    random.Random(cfg.seed).shuffle(mixed)
    return mixed


@register_trained_method("dpo")
def _build_dpo(setting: AlignSetting, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO on preference pairs at ``beta``."""
    return _dpo(setting, peft_model, tokenizer, ds, common, 0.0)


@register_trained_method("dpo_reg")
def _build_dpo_reg(setting: AlignSetting, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO + lam * ||dW||_F^2 (the adapter's weight delta)."""
    return _dpo(setting, peft_model, tokenizer, ds, common, setting.lam)


@register_trained_method("selective", version=2, rows=_selective_rows)  # 2: truncated preservation answers dropped
def _build_selective(setting: AlignSetting, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO on the harmful pairs plus capability-preservation pairs."""
    return _dpo(setting, peft_model, tokenizer, ds, common, 0.0)


@register_trained_method("sft", rows=_sft_rows)
def _build_sft(setting: AlignSetting, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """Supervised fine-tuning on the refusals (loss on the answer only)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**common, completion_only_loss=True)
    return SFTTrainer(model=peft_model, args=args, train_dataset=ds, processing_class=tokenizer)


def lora_model(model: Any, config: Any) -> Any:
    """peft's ``get_peft_model(model, config)``. peft reads the model's ``is_gradient_checkpointing``, which
    transformers 5 renamed and warns about (a FutureWarning about peft's call, not the user's): it is
    made here, where that one warning is muted, so it never reaches a user's terminal."""
    from peft import get_peft_model

    with quiet_renamed_checkpointing():
        return get_peft_model(model, config)


def train_setting(
    model: Any,
    tokenizer: Any,
    setting: AlignSetting,
    rows: Sequence[dict[str, str]],
    out_dir: str | Path,
    *,
    lora: LoraSettings | None = None,
    train: TrainSettings | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one LoRA adapter on ``model`` (left unchanged) and save it to ``out_dir`` (peft's
    safetensors). Returns the training log (loss per step and the final metrics)."""
    from peft import LoraConfig

    lora = lora or LoraSettings()
    train = train or TrainSettings()
    set_seed(seed, deterministic=False)
    torch.manual_seed(seed)
    targets = lora_targets_in((n for n, _ in model.named_modules()), lora.targets)
    if not targets:
        raise ConfigError(f"lora.targets {lora.targets} match no module of this model: name its linear layers (e.g. q_proj, c_attn)")
    pcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM")
    steps = setting.steps or train.steps
    lr = train.lr * setting.lr_factor
    common: dict[str, Any] = dict(
        output_dir=str(out_dir),
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=train.batch_size,
        warmup_steps=min(train.warmup_steps, max(steps - 1, 0)),
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        max_length=train.max_length,
        gradient_checkpointing=False,  # trl's default recomputes activations: slower, and a 135M model fits anyway
    )
    if not progress:
        import datasets

        datasets.disable_progress_bars()  # the trainers' dataset preparation bars
    was_training = model.training
    with quiet_renamed_checkpointing():
        peft_model = lora_model(model, pcfg)
        try:
            trainer = _trainer(setting, peft_model, tokenizer, rows, common)
            if not progress:  # quiet: no per-step metric dicts on stdout (the log is kept in setting.json)
                trainer.remove_callback(PrinterCallback)
            kept = len(trainer.train_dataset)
            if kept == 0:
                raise DataError(
                    f"all {len(rows)} training rows were dropped by the trainer (longer than train.max_length = "
                    f"{train.max_length} tokens?): raise train.max_length"
                )
            trainer.train()
            history = [h for h in trainer.state.log_history if "loss" in h]
            peft_model.save_pretrained(str(out_dir), safe_serialization=True)
            with torch.no_grad():
                delta = float(lora_delta_sq_norm(peft_model))
        finally:
            peft_model.unload()  # the base model's modules back, unchanged (LoRA never writes them)
            model.train(was_training)
    return {"history": history, "delta_sq_norm": delta, "steps": steps, "lr": lr, "n_rows": len(rows), "n_rows_trained": kept}


# --------------------------------------------------------------------------- the sweep


def _rows_for(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, out: Path) -> list[dict[str, str]]:
    return TRAINED_METHODS[s.method].rows(cfg, s, model, tok, out)


def check_align(cfg: AlignConfig, out: str | Path | None = None) -> None:
    """Every input of ``steertax align`` checked before the model loads (model, tasks and their data, the
    preference file, the output folder, the executor); all problems raised in one line."""

    def extra(P: Any) -> None:
        with P.at("data.pairs"):
            preference_data(cfg.data.pairs, 1, cfg.seed)
        with P.at("lora.targets", wrap=ConfigError):
            check_lora_targets(cfg.model, cfg.lora.targets)
        with P.at("executor", wrap=ConfigError):
            check_executor(cfg.executor)

    problems, _ = check_run(cfg, out, extra)
    raise_problems(problems)


def _train_into(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, path: Path, progress: bool) -> None:
    """Train setting ``s`` into ``path`` atomically (a temporary folder renamed when the adapter and its
    setting.json are complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    log.info("training %s", s.name())
    rows = _rows_for(cfg, s, model, tok, path.parent.parent)
    info = train_setting(model, tok, s, rows, tmp, lora=cfg.lora, train=cfg.train, seed=cfg.seed, progress=progress)
    meta = {"setting": dataclasses.asdict(s), "name": s.name(), "config": cfg.to_dict(), **info}
    if s.method == "selective":  # how many preservation answers were cut at preserve_tokens and dropped
        keep = _preservation(cfg, model, tok, path.parent.parent)
        meta["preservation"] = {k: keep[k] for k in ("asked", "dropped_truncated", "max_new_tokens")} | {"kept": len(keep["pairs"])}
    (tmp / "setting.json").write_text(json.dumps(meta, indent=1, default=str))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    checkpoint("adapter")  # test-only fault injection (steertax._faults)


def run_align(cfg: AlignConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train every setting not yet trained, evaluate every (setting, task cell) not yet stored, then
    summarize. Safe to kill and rerun."""

    out = Path(out)
    check_align(cfg, out)  # every input, before anything is written or the model loads
    run_id = f"align-{cfg.eval_hash()}"

    def prepare(model: Any, tok: Any) -> None:
        atomic_write_text(
            out / "align.resolved.yaml", yaml.safe_dump({"run_id": run_id, "config": cfg.to_dict(), "kind": "align"}, sort_keys=False)
        )

    with session(cfg, out, run_id, stale=("adapters/.*.tmp*",), progress=progress, prepare=prepare) as S:
        order = [order_entry(BaseIntervention(), run_id)]
        S.evaluate(BaseIntervention())
        for s in cfg.settings:
            path = out / "adapters" / f"{s.slug()}-{cfg.training_hash(s)}"
            if not adapter_ready(path):
                _train_into(cfg, s, S.model, S.tokenizer, path, progress)
            iv = AdapterIntervention(path, s.method, s.name(), cfg.training_spec(s))
            order.append(order_entry(iv, run_id))
            S.evaluate(iv)
            if alphas := cfg.alphas_of(s):  # the adapter's α curve, every α in one batched evaluation
                sweep = AdapterIntervention(path, s.method, s.name(), cfg.training_spec(s), scales=tuple(alphas))
                order.append(alpha_entry(sweep, run_id, s.name()))
                S.evaluate(sweep)
    resolved = {"run_id": run_id, "config": cfg.to_dict(), "kind": "align", "order": order}
    atomic_write_text(out / "align.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))

    return summarize_run(out)


def order_entry(iv: Any, run_id: str) -> dict[str, Any]:
    """One line of a run folder's ``order``: the intervention's method, name, store key (and adapter folder)."""
    path = getattr(iv, "path", None)
    return {"method": iv.method, "name": iv.name(), "key": store_key(run_id, iv), "adapter": str(path) if path else None}

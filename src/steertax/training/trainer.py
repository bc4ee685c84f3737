"""Training one LoRA adapter with a registered method's trl trainer (the field's trainers, no hand-written
loop) and peft, and saving it (safetensors), with checkpoints at shares of training for methods that declare
them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from steertax._util import quiet_renamed_checkpointing
from steertax.errors import ConfigError, DataError
from steertax.interventions.adapter import lora_targets_in
from steertax.training.data import chat_rows
from steertax.training.registry import TRAINED_METHODS
from steertax.training.settings import AlignSetting, LoraSettings, TrainSettings, resolved_precision

__all__ = ["train_setting", "lora_model", "lora_delta_sq_norm", "checkpoint_dir", "checkpoint_steps"]


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


def lora_model(model: Any, config: Any) -> Any:
    """peft's ``get_peft_model(model, config)``. peft reads the model's ``is_gradient_checkpointing``, which
    transformers 5 renamed and warns about (a FutureWarning about peft's call, not the user's): it is
    made here, where that one warning is muted, so it never reaches a user's terminal."""
    from peft import get_peft_model

    with quiet_renamed_checkpointing():
        return get_peft_model(model, config)


def checkpoint_dir(path: str | Path, share: float) -> Path:
    """Where the adapter saved at ``share`` of a run's training lives (inside the run's adapter folder)."""
    return Path(path) / f"share-{share:g}"


def checkpoint_steps(shares: Sequence[float], steps: int) -> dict[int, float]:
    """The optimizer step at which each share of training is reached (at least step 1; distinct)."""
    out: dict[int, float] = {}
    for c in shares:
        k = max(1, round(c * steps))
        if k in out:
            raise ConfigError(f"checkpoints {list(shares)} fall on the same step with {steps} steps: train more steps")
        out[k] = c
    return out


class _SaveAt(TrainerCallback):
    """Save the adapter when training reaches each declared share (the last share, 1, is the adapter itself)."""

    def __init__(self, peft_model: Any, out_dir: Path, at: dict[int, float]) -> None:
        self.peft_model, self.out_dir, self.at = peft_model, out_dir, at

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        share = self.at.get(state.global_step)
        if share is not None and share < 1.0:
            self.peft_model.save_pretrained(str(checkpoint_dir(self.out_dir, share)), safe_serialization=True)
        return control


def train_setting(
    model: Any,
    tokenizer: Any,
    setting: AlignSetting,
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    lora: LoraSettings | None = None,
    train: TrainSettings | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one LoRA adapter on ``model`` (left unchanged) with ``setting``'s method and save it to ``out_dir``
    (peft's safetensors; a method with checkpoints also saves ``out_dir/share-<c>`` at each share c < 1).
    Returns the training log (loss per step and the final metrics)."""
    from peft import LoraConfig

    method = TRAINED_METHODS[setting.method]
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
    save_at = checkpoint_steps(method.checkpoints, steps) if method.checkpoints else {}
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
        bf16=resolved_precision(train.precision) == "bf16",  # trl defaults to bf16, ~20x slower where it is not native
        fp16=False,
    )
    if not progress:
        import datasets

        datasets.disable_progress_bars()  # the trainers' dataset preparation bars
    import datasets

    ds = datasets.Dataset.from_list(chat_rows(tokenizer, rows, method.columns))
    was_training = model.training
    with quiet_renamed_checkpointing():
        peft_model = lora_model(model, pcfg)
        try:
            trainer = method.build(setting, peft_model, tokenizer, ds, common)
            if not progress:  # quiet: no per-step metric dicts on stdout (the log is kept in setting.json)
                trainer.remove_callback(PrinterCallback)
            if save_at:
                trainer.add_callback(_SaveAt(peft_model, Path(out_dir), save_at))
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
    info = {"history": history, "delta_sq_norm": delta, "steps": steps, "lr": lr, "n_rows": len(rows), "n_rows_trained": kept}
    info["precision"] = resolved_precision(train.precision)
    if save_at:
        info["checkpoints"] = {f"{c:g}": k for k, c in save_at.items()}
    return info

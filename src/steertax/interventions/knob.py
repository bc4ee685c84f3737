"""A weight intervention's scale α as a per-row knob: batch row b runs θ_base + α_b·Δθ, so one forward pass
evaluates many scales (the weight-space counterpart of steering's per-row r_e).

Lin et al. ("Mitigating the Alignment Tax of RLHF", EMNLP 2024) interpolate between the base and the aligned
weights, θ(α) = θ_base + α·(θ_aligned − θ_base); for a LoRA adapter or a merged delta that knob needs no
retraining. α = 0 is the base model exactly (the added term is 0·Δ), α = 1 the adapter or merge, α > 1
extrapolates.

A knob is passed where the scorers take a steering vector (``vector=knob``, ``strengths=[α…]``):
:func:`steertax.interventions.steering.hooks.steer` hands it the per-row values and it installs its hooks for
the block. Outside :meth:`WeightKnob.rows` the model is the base model. Two knobs:

- :class:`LoraScale`: a peft LoRA adapter injected into the model; each LoRA layer's ``lora_B`` output (the
  adapter's whole contribution before peft multiplies it by its ``scaling``) is multiplied by α per row, so
  peft's own forward computes the delta (``fan_in_fan_out``, ``rank_pattern``/``alpha_pattern``, rsLoRA and LoRA
  bias included). Variants whose delta is not linear in that output (DoRA, ...) and embedding LoRA are refused.
- :class:`DeltaScale`: weight deltas by parameter name (a merge, a full-model specialist). Each changed module
  (linear, Conv1D, embedding or normalization layer: modules that treat batch rows independently) runs once
  per distinct α among the rows with θ + α·Δ; any other module owning a changed parameter is refused.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from steertax.errors import ModelError
from steertax.models import find_blocks

__all__ = ["WeightKnob", "LoraScale", "DeltaScale", "knob_blocks", "check_deltas_fit"]


def _per_row(alpha: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    """α as a [B, 1, …] tensor for an output ``like`` of B rows, in its dtype and device."""
    if like.shape[0] not in (1, alpha.shape[0]):  # 1: shared by every row (GPT-2's position embedding), broadcast
        raise ModelError(f"{what}: a batch of {like.shape[0]} rows got {alpha.shape[0]} scales: give one scale per batch row")
    return alpha.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


def knob_blocks(model: nn.Module, modules: list[nn.Module]) -> list[int] | None:
    """The decoder blocks holding ``modules``, sorted; None if one of them lies outside every block (an
    embedding, the final norm, the LM head), where no shared trunk applies."""
    blocks = find_blocks(model)
    owner: dict[int, int] = {}
    for i, b in enumerate(blocks):
        for m in b.modules():
            owner[id(m)] = i
    out = set()
    for m in modules:
        if id(m) not in owner:
            return None
        out.add(owner[id(m)])
    return sorted(out)


def check_deltas_fit(deltas: Mapping[str, torch.Tensor], model: nn.Module, what: str) -> None:
    """Every delta names a parameter of ``model`` with its shape, else one line: it was made for another model."""
    params = dict(model.named_parameters())
    for k, d in deltas.items():
        p = params.get(k)
        if p is None:
            raise ModelError(f"{what} changes {k}, which this model does not have: it was made for another base model")
        if tuple(p.shape) != tuple(d.shape):
            raise ModelError(f"{what} changes {k} with shape {tuple(d.shape)}, but the model's is {tuple(p.shape)}: another base model")


class WeightKnob:
    """A per-row scale on a weight delta (see the module docstring)."""

    what: str = "weight knob"

    def modules(self, model: nn.Module) -> list[nn.Module]:
        """The modules whose output the knob changes."""
        raise NotImplementedError

    def blocks(self, model: nn.Module) -> list[int] | None:
        """The decoder blocks it changes (sorted), or None when it changes something outside the blocks."""
        return knob_blocks(model, self.modules(model))

    def first_block(self, model: nn.Module) -> int | None:
        """The lowest block it changes (the shared trunk's end), or None (no trunk)."""
        b = self.blocks(model)
        return b[0] if b else None

    @contextlib.contextmanager
    def rows(self, model: nn.Module, alpha: torch.Tensor | float) -> Iterator[None]:
        """Inside the block, batch row b computes θ_base + alpha[b]·Δθ (one float: every row)."""
        raise NotImplementedError
        yield  # pragma: no cover


def _alpha_tensor(alpha: torch.Tensor | float) -> torch.Tensor:
    a = torch.as_tensor(alpha, dtype=torch.float64)
    return a.reshape(-1)


class LoraScale(WeightKnob):
    """α on a peft LoRA adapter already injected into ``model`` (a ``PeftModel`` or the model it wraps)."""

    what = "LoRA scale"

    def __init__(self, peft_model: Any, adapter: str = "default") -> None:
        from peft.tuners.lora import LoraLayer

        self.adapter = adapter
        self.layers: list[Any] = []
        for name, m in peft_model.named_modules():
            if not isinstance(m, LoraLayer):
                continue
            if adapter in getattr(m, "lora_embedding_A", {}):
                raise ModelError(f"LoRA layer {name} adapts an embedding: a per-row scale α is not supported there; evaluate at α = 1")
            if adapter in getattr(m, "lora_variant", {}) or getattr(m, "use_dora", {}).get(adapter):
                raise ModelError(
                    f"LoRA layer {name} is a LoRA variant (DoRA or similar), whose delta is not linear in its B output: "
                    "a per-row scale α is not supported; evaluate it at α = 1"
                )
            if adapter in m.lora_A:
                self.layers.append(m)
        if not self.layers:
            raise ModelError(f"the model has no LoRA layers of adapter {adapter!r}: load the adapter with peft first")

    def modules(self, model: nn.Module) -> list[nn.Module]:
        return list(self.layers)

    def set_enabled(self, enabled: bool) -> None:
        """Turn the adapter's layers on (α rows) or off (the base model), leaving its weights frozen."""
        for m in self.layers:
            m.enable_adapters(enabled)
            for p in list(m.lora_A.parameters()) + list(m.lora_B.parameters()):
                p.requires_grad_(False)

    @contextlib.contextmanager
    def rows(self, model: nn.Module, alpha: torch.Tensor | float) -> Iterator[None]:
        a = _alpha_tensor(alpha)

        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            if a.numel() == 1:
                return out * a.to(device=out.device, dtype=out.dtype)
            return out * _per_row(a, out, self.what)

        hooks = [m.lora_B[self.adapter].register_forward_hook(hook) for m in self.layers]
        self.set_enabled(True)
        try:
            yield
        finally:
            self.set_enabled(False)
            for h in hooks:
                h.remove()


def _is_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf")  # transformers' GPT-2 Conv1D: y = x @ W + b, W [in, out]


def _affine_norm(m: nn.Module) -> bool:
    """A normalization layer: its output is affine in its weight and bias (LayerNorm, RMSNorm and kin)."""
    n = type(m).__name__
    return isinstance(m, (nn.LayerNorm, nn.GroupNorm)) or n.endswith("RMSNorm") or n.endswith("LayerNorm")


class DeltaScale(WeightKnob):
    """α on weight deltas ``{parameter name: Δ}`` of ``model`` (a merge, a full-model specialist)."""

    what = "weight-delta scale"

    def __init__(self, model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> None:
        check_deltas_fit(deltas, model, "a weight delta")
        params = dict(model.named_parameters())
        owners: dict[int, list[tuple[str, nn.Module, str]]] = {}
        for mname, m in model.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                owners.setdefault(id(p), []).append((f"{mname}.{pname}" if mname else pname, m, pname))
        self.targets: dict[int, tuple[nn.Module, dict[str, torch.Tensor]]] = {}
        for k, d in deltas.items():
            for _full, m, pname in owners[id(params[k])]:  # a tied weight (embedding = LM head) changes every module owning it
                self._kind(m, pname, k)
                self.targets.setdefault(id(m), (m, {}))[1][pname] = d

    @staticmethod
    def _kind(m: nn.Module, pname: str, k: str) -> str:
        if isinstance(m, nn.Linear) and pname in ("weight", "bias"):
            return "linear"
        if _is_conv1d(m) and pname in ("weight", "bias"):
            return "conv1d"
        if isinstance(m, nn.Embedding) and pname == "weight":
            return "embedding"
        if _affine_norm(m):
            return "norm"
        raise ModelError(
            f"{k} belongs to a {type(m).__name__}, which a per-row scale α does not handle (linear, Conv1D, embedding and "
            "normalization layers only): evaluate the merge at one scale at a time"
        )

    def modules(self, model: nn.Module) -> list[nn.Module]:
        return [m for m, _ in self.targets.values()]

    # the weights θ + α·Δ are built per (module, α) once per ``rows`` block while their total stays under this
    # many bytes (beyond it, rebuilt at every forward call: slower, same numbers)
    cache_bytes: int = 2 << 30

    @contextlib.contextmanager
    def rows(self, model: nn.Module, alpha: torch.Tensor | float) -> Iterator[None]:
        """Each target module's forward runs once per distinct α among the batch rows, with its parameters
        θ + α·Δ built exactly as :class:`~steertax.interventions.merge.MergedIntervention` builds them in place
        (in float64, rounded once), so a row equals the merged model at its α and α = 0 is the base bit for bit;
        the rows' outputs are put back in batch order. One matmul per row, as in the merged model."""
        a = _alpha_tensor(alpha)
        per = sum(sum(d.numel() * 4 for d in ds.values()) for _, ds in self.targets.values())
        keep = per * max(1, int(a.unique().numel())) <= self.cache_bytes
        built: dict[tuple[int, float, torch.dtype, torch.device], dict[str, torch.Tensor]] = {}
        busy: set[int] = set()

        def params_at(m: nn.Module, ds: dict[str, torch.Tensor], v: float) -> dict[str, torch.Tensor]:
            p = dict(m.named_parameters(recurse=False))
            ref = next(iter(p.values()))
            key = (id(m), v, ref.dtype, ref.device)
            got = built.get(key)
            if got is None:
                got = {k: (p[k].double() + v * d.to(p[k].device).double()).to(p[k].dtype) for k, d in ds.items()}
                if keep:
                    built[key] = got
            return got

        saved = []
        for m, ds in self.targets.values():
            saved.append((m, m.__dict__.get("forward")))
            m.forward = _grouped_forward(m, functools.partial(params_at, m, ds), a, busy, self.what)
        try:
            yield
        finally:
            for m, prev in saved:
                if prev is None:
                    del m.forward
                else:
                    m.forward = prev


def _grouped_forward(
    m: nn.Module, params_at: Callable[[float], dict[str, torch.Tensor]], a: torch.Tensor, busy: set[int], what: str
) -> Callable[..., Any]:
    """``m``'s forward with batch rows grouped by their α: each group runs ``m`` with ``params_at(α)`` (α = 0: the
    base module itself), and the outputs go back in batch order."""
    orig = m.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if id(m) in busy:  # functional_call below calls the module again: run its own forward
            return orig(*args, **kwargs)
        if not args:  # the input given by keyword: make it positional, rows are cut from it
            k0 = next(iter(kwargs))
            args = (kwargs[k0],)
            kwargs = {k: v for k, v in kwargs.items() if k != k0}
        x = args[0]
        B = int(x.shape[0])
        rows = a.expand(B) if a.numel() == 1 else a
        if B not in (1, rows.numel()):
            raise ModelError(f"{what}: a batch of {B} rows got {rows.numel()} scales: give one scale per batch row")
        vals = rows.unique()

        def run(v: float, sub_args: tuple[Any, ...]) -> Any:
            if v == 0.0:
                return orig(*sub_args, **kwargs)
            busy.add(id(m))
            try:
                return torch.func.functional_call(m, params_at(v), sub_args, kwargs)
            finally:
                busy.discard(id(m))

        if vals.numel() == 1:
            return run(float(vals[0]), tuple(args))
        if B == 1:  # one input row shared by every row (GPT-2's position embedding): one output per row
            outs = {float(v): run(float(v), tuple(args)) for v in vals}
            return torch.cat([outs[float(v)] for v in rows], 0)
        out = None
        for v in vals:
            idx = (rows == v).nonzero().reshape(-1).to(x.device)
            sub = (x.index_select(0, idx), *args[1:]) if args else (x.index_select(0, idx),)
            y = run(float(v), sub)
            if out is None:
                out = y.new_empty((B, *y.shape[1:]))
            out.index_copy_(0, idx, y)
        return out

    return forward

"""Steering: add ``r_e · v̂`` to chosen decoder blocks' outputs through removable forward hooks.

``strength`` is the paper's r_e, the L2 norm added at *each* steered layer (v̂ is unit norm);
positive moves toward the vector's aligned pole. A 1-D tensor of strengths gives each batch row its
own strength, so one forward pass evaluates many strengths.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch
from torch import nn

from steertax._util import parse_layers
from steertax.errors import LayerError, ModelError, StrengthError, VectorError
from steertax.interventions.conditional import check_condition_layer
from steertax.interventions.knob import WeightKnob
from steertax.interventions.steering.vectors import SteeringVector
from steertax.models import find_blocks, hidden_size

Positions = Literal["all", "prompt", "generated"]
Operator = Literal["add", "ablate", "ablate_add"]

__all__ = ["steer", "shared_trunk", "steered_layers", "trunk_layer", "check_strength", "SteeringHandle"]


def check_strength(strength: Any) -> float | torch.Tensor:
    """Validate a strength: a finite float, or a 1-D tensor/sequence of finite floats."""
    if isinstance(strength, bool):
        raise StrengthError(f"strength must be a number, got {strength!r}")
    if isinstance(strength, (int, float)):
        s = float(strength)
        if not math.isfinite(s):
            raise StrengthError(f"strength {strength!r} is not finite: use a finite number such as 4.0")
        return s
    if isinstance(strength, str):
        try:
            parsed = float(strength)
        except ValueError:
            raise StrengthError(f"strength {strength!r} is not a number: use e.g. 4 or -2.5") from None
        return check_strength(parsed)
    try:
        t = torch.as_tensor(strength, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise StrengthError(f"strength {strength!r} is not a number or a 1-D list of numbers") from None
    if t.ndim == 0:
        return check_strength(float(t))
    if t.ndim != 1 or t.numel() == 0:
        raise StrengthError(f"per-row strength must be a non-empty 1-D tensor (one value per batch row), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise StrengthError("strength contains NaN or inf: every per-row strength must be finite")
    return t


# Keyword names a KV cache has travelled under in transformers' forward calls: ``cache`` (5.24+),
# ``past_key_values`` (4.x-5.23), ``cache_params`` (state-space models), ``past`` (very old).
_CACHE_NAMES = ("cache", "past_key_values", "cache_params", "past")


try:
    from transformers.cache_utils import Cache as _Cache

    _CACHE_TYPES: tuple[type, ...] = (_Cache,)
except ImportError:  # pragma: no cover - transformers without cache_utils
    _CACHE_TYPES = ()


def _cache_types() -> tuple[type, ...]:
    return _CACHE_TYPES


def _cache_length(cache: Any) -> int | None:
    """Tokens held by a KV cache: a ``Cache`` object or a legacy tuple of (key, value) per layer;
    None when it cannot be read."""
    if hasattr(cache, "get_seq_length"):
        try:
            return int(cache.get_seq_length())
        except Exception:
            return None
    if isinstance(cache, (tuple, list)):
        if len(cache) == 0:
            return 0
        try:  # legacy tuple cache: ((key [B, H, T, d], value), ...) per layer
            return int(cache[0][0].shape[-2])
        except Exception:
            return None
    return None


def _past_length(args: Sequence[Any], kwargs: Mapping[str, Any], n_input: int, first: bool = True) -> int | None:
    """Tokens already in the KV cache before a top-level forward call, read from whatever the caller
    passed: ``cache_position`` (transformers 4.x), the cache object found by type (any
    ``transformers.cache_utils.Cache``, whatever its keyword: ``cache`` since 5.24,
    ``past_key_values`` before) or under a known cache keyword (legacy tuples), or else a 2-D
    attention mask longer than the input (generate's mask covers cached + new tokens).

    Returns None when a cache is in use but its length cannot be determined: a cache object that
    cannot be read, or (after the ``first`` call of a block) ``use_cache=True`` with neither a cache
    nor an attention mask in sight, as a generate step with a cache under an unknown name would be.
    """
    cp = kwargs.get("cache_position")
    if isinstance(cp, torch.Tensor) and cp.numel() > 0:
        return int(cp.reshape(-1)[0])
    types = _cache_types()
    found: list[Any] = [kwargs[n] for n in _CACHE_NAMES if kwargs.get(n) is not None]
    if types:
        for v in list(kwargs.values()) + list(args):
            if isinstance(v, types) and not any(v is f for f in found):
                found.append(v)
    for c in found:
        n = _cache_length(c)
        if n is not None:
            return n
    if found:
        return None
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.ndim == 2 and n_input and mask.shape[-1] > n_input:
        return int(mask.shape[-1]) - n_input
    if not first and kwargs.get("use_cache") is True and mask is None:
        return None  # a later cached call (e.g. a generate step) whose cache and mask we cannot see
    return 0


@dataclass
class _PositionState:
    """Where the current forward call's tokens sit: ``offset`` = tokens already cached before it,
    ``prompt_len`` = the prompt's length (the first call from an empty cache in a ``steer`` block)."""

    prompt_len: int | None = None
    offset: int = 0
    prompt_ids: torch.Tensor | None = None
    serial: int = 0  # incremented at every new prompt (a condition decides once per prompt)
    mask: torch.Tensor | None = None  # the prompt call's 2-D attention mask, when it had one

    def observe(self, module: nn.Module, args: Any, kwargs: Mapping[str, Any], positions: str) -> None:
        """Update from a top-level forward call's inputs (a forward pre-hook)."""
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        T = int(ids.shape[1]) if isinstance(ids, torch.Tensor) and ids.ndim >= 2 else 0
        past = _past_length(args, kwargs, T, first=self.prompt_len is None)
        if past is None:
            raise ModelError(
                f"steer(positions={positions!r}) cannot tell how many tokens {type(module).__name__}'s KV cache "
                "already holds in this forward call (no cache_position, no readable cache object, no 2-D "
                "attention mask): the installed transformers passes its cache in a form steertax does not "
                "know, so steering would hit the wrong tokens. Use positions='all', pass an attention_mask, "
                "or report the transformers version."
            )
        if past == 0 and self.prompt_len is not None and _extends(ids, self.prompt_ids, self.prompt_len):
            pass  # the prompt again plus new tokens: generate without a KV cache re-runs the whole sequence
        elif past == 0 or self.prompt_len is None:
            self.serial += 1
            m = kwargs.get("attention_mask")
            self.mask = m.detach() if isinstance(m, torch.Tensor) and m.ndim == 2 and m.shape[1] == T else None
            self.prompt_len = past + T
            self.prompt_ids = ids.detach() if past == 0 and isinstance(ids, torch.Tensor) and ids.ndim == 2 else None
        self.offset = past


def _extends(ids: Any, prompt_ids: torch.Tensor | None, prompt_len: int) -> bool:
    """Whether ``ids`` is the remembered prompt followed by more tokens (same rows)."""
    return (
        isinstance(ids, torch.Tensor)
        and prompt_ids is not None
        and ids.ndim == 2
        and ids.shape[0] == prompt_ids.shape[0]
        and ids.shape[1] > prompt_len == prompt_ids.shape[1]
        and bool(torch.equal(ids[:, :prompt_len], prompt_ids.to(ids.device)))
    )


@dataclass
class SteeringHandle:
    """What a ``steer`` block applied: layers, strengths and operator (for logs and provenance)."""

    layers: list[int]
    strength: float | torch.Tensor
    positions: str
    operator: str
    relative: bool
    per_layer_strength: dict[int, Any] = field(default_factory=dict)
    calls: int = 0
    fired: torch.Tensor | None = None  # with a condition: which rows of the last prompt it fired on


def _directions(vector: Any, layers: Sequence[int] | None, n_layers: int) -> dict[int, torch.Tensor]:

    if isinstance(vector, SteeringVector):
        dirs = dict(vector.directions)
    elif isinstance(vector, Mapping):
        dirs = {int(k): torch.as_tensor(v) for k, v in vector.items()}
    elif isinstance(vector, torch.Tensor):
        if layers is None:
            raise LayerError("a bare direction tensor needs layers=...: say where to add it, e.g. layers='8-12'")
        dirs = {int(i): vector for i in parse_layers(layers, n_layers)}
    else:
        raise VectorError(f"cannot steer with {type(vector).__name__}: pass a SteeringVector, a dict layer->tensor or a tensor")
    if layers is None:
        chosen = sorted(dirs)
    else:
        chosen = parse_layers(layers, n_layers)
        missing = [i for i in chosen if i not in dirs]
        if missing:
            raise LayerError(
                f"the vector has no direction for layer(s) {missing}: it covers {sorted(dirs)}; "
                "extract it at those layers or choose among them"
            )
    for i in chosen:
        if not 0 <= i < n_layers:
            raise LayerError(f"layer {i} is out of range: this model has {n_layers} layers (valid: 0-{n_layers - 1})")
    return {i: dirs[i] for i in chosen}


_Prepared = Callable[[int, torch.Tensor], tuple[torch.Tensor, Any]]


def _check_modes(positions: str, operator: str) -> None:
    """Reject a ``positions`` or ``operator`` value ``steer`` does not know."""
    if positions not in ("all", "prompt", "generated"):
        raise ValueError(f"positions must be 'all', 'prompt' or 'generated', got {positions!r}")
    if operator not in ("add", "ablate", "ablate_add"):
        raise ValueError(f"operator must be 'add', 'ablate' or 'ablate_add', got {operator!r}")


def steering_directions(model: nn.Module, vector: Any, layers: Any, force: bool) -> tuple[Any, dict[int, torch.Tensor]]:
    """The model's decoder blocks and the direction to add at each steered layer, checked against the
    model (recorded model unless ``force``, hidden size always)."""

    blocks = find_blocks(model)
    d_model = hidden_size(model)
    if isinstance(vector, SteeringVector):
        vector.check_compatible(model, force=force)
    dirs = _directions(vector, layers, len(blocks))
    for i, v in dirs.items():
        if v.ndim != 1 or v.shape[0] != d_model:
            raise VectorError(
                f"direction for layer {i} has shape {tuple(v.shape)} but the model's hidden size is {d_model}: "
                "use a vector extracted from this model"
            )
    return blocks, dirs


def layer_strengths(vector: Any, layers: Sequence[int], s: float | torch.Tensor, relative: bool) -> dict[int, Any]:
    """The absolute r_e per steered layer: ``s``, or ``s`` times the layer's recorded mean residual norm
    when ``relative``."""

    if relative:
        if not isinstance(vector, SteeringVector) or not vector.layer_norms:
            raise VectorError("relative=True needs a SteeringVector with recorded layer_norms")
    per_layer: dict[int, Any] = {}
    for i in layers:
        scale = float(vector.layer_norms[i]) if relative else 1.0
        per_layer[i] = s * scale
    return per_layer


def _direction_preparer(dirs: Mapping[int, torch.Tensor], per_layer: Mapping[int, Any], normalize: bool) -> _Prepared:
    """A function (layer, hidden state) -> (v̂, r·v̂) in the hidden state's dtype and device, computed once
    per (layer, dtype, device) and cached."""
    cache: dict[tuple[int, torch.dtype, torch.device], tuple[torch.Tensor, Any]] = {}

    def prepared(i: int, like: torch.Tensor) -> tuple[torch.Tensor, Any]:
        key = (i, like.dtype, like.device)
        got = cache.get(key)
        if got is None:
            v = dirs[i].detach().to(device=like.device, dtype=torch.float32)
            if normalize:
                nrm = v.norm()
                if not torch.isfinite(nrm) or nrm == 0:
                    raise VectorError(f"direction for layer {i} has norm {float(nrm)}: cannot normalize it")
                v = v / nrm
            st = per_layer[i]
            # r·v̂ in at least float32 (float64 models: float64), rounded once to the model's dtype,
            # the same way for one strength and for per-row strengths
            wide = torch.promote_types(like.dtype, torch.float32)
            if isinstance(st, torch.Tensor):
                st_t = st.to(device=like.device, dtype=wide).view(-1, 1, 1)
                delta: Any = (st_t * v.to(wide)).to(like.dtype)  # [B,1,d]
            else:
                delta = (st * v.to(wide)).to(like.dtype)  # [d]
            got = (v.to(like.dtype), delta)
            cache[key] = got
        return got

    return prepared


@dataclass
class _Gate:
    """A condition's per-row decision for the current prompt (1.0 = steer, 0.0 = leave the row alone)."""

    rows: torch.Tensor | None = None
    serial: int = -1
    scores: torch.Tensor | None = None


def _condition_hook(cond: Any, gate: _Gate, state: _PositionState, handle: "SteeringHandle") -> Callable[[nn.Module, Any, Any], None]:
    """The forward hook on the condition's block: at the first call of each prompt, the condition's gate
    (:meth:`Condition.gate`, the same read and decision as the pre-pass) decides which rows are steered."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if gate.serial == state.serial and gate.rows is not None:
            return
        h = output[0] if isinstance(output, tuple) else output
        fired, sc = cond.gate(h, state.mask)
        gate.scores = sc.detach().cpu()
        gate.rows = fired.to(h.dtype)
        gate.serial = state.serial
        handle.fired = gate.rows.detach().bool().cpu()

    return hook


def _steering_hook(
    i: int,
    prepared: _Prepared,
    handle: SteeringHandle,
    state: _PositionState,
    positions: Positions,
    operator: Operator,
    gate: _Gate | None = None,
) -> Callable[[nn.Module, Any, Any], Any]:
    """The forward hook on block ``i``: apply ``operator`` with layer ``i``'s direction to the block's
    output hidden state, only at the tokens ``positions`` selects."""

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, tuple) else output
        handle.calls += 1
        v, delta = prepared(i, h)
        if isinstance(delta, torch.Tensor) and delta.ndim == 3 and delta.shape[0] != h.shape[0]:
            raise StrengthError(
                f"per-row strength has {delta.shape[0]} values but the batch has {h.shape[0]} rows: give one strength per row"
            )
        if operator == "add":
            change = delta
        else:
            proj = (h @ v).unsqueeze(-1) * v  # [B,T,d]
            change = -proj if operator == "ablate" else delta - proj
        if positions != "all":
            T = h.shape[1]
            pl = state.prompt_len if state.prompt_len is not None else T
            pos = torch.arange(state.offset, state.offset + T, device=h.device)
            keep = (pos < pl) if positions == "prompt" else (pos >= pl)
            change = change * keep.view(1, T, 1).to(h.dtype)
        if gate is not None:
            if gate.rows is None:
                raise ModelError("conditional steering: the condition layer did not run before the steered layers in this forward pass")
            g = gate.rows.to(h.device)
            if g.shape[0] != h.shape[0]:  # a shared trunk fans each row out to K strengths above the condition
                g = g.repeat_interleave(h.shape[0] // g.shape[0])
            change = change * g.view(-1, 1, 1)  # a row that does not fire gets exactly strength 0
        new = h + change
        if isinstance(output, tuple):
            return (new,) + tuple(output[1:])
        return new

    return hook


def _position_pre_hook(state: _PositionState, positions: Positions) -> Callable[[nn.Module, Any, dict[str, Any]], None]:
    """The model's forward pre-hook that tracks where each forward call's tokens sit (cache offset,
    prompt length) for ``positions='prompt'`` / ``'generated'``."""

    def pre_hook(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        state.observe(module, args, kwargs, positions)

    return pre_hook


@contextmanager
def steer(
    model: nn.Module,
    vector: Any,
    strength: float | Sequence[float] | torch.Tensor,
    layers: Any = None,
    positions: Positions = "all",
    operator: Operator = "add",
    *,
    relative: bool = False,
    normalize: bool = True,
    force: bool = False,
    condition: Any = None,
) -> Iterator[SteeringHandle]:
    """Steer ``model`` inside a ``with`` block.

    Args:
        vector: a :class:`~steertax.interventions.steering.vectors.SteeringVector` (or dict layer -> direction, or one tensor
            with ``layers``).
        strength: r_e, the L2 norm added per steered layer; a float, or a 1-D tensor with one value per
            batch row. Positive = toward the aligned pole.
        layers: which of the vector's layers to steer (``"8-12"``, list of ints); default all of them.
        positions: ``"all"`` tokens, only ``"prompt"`` tokens, or only ``"generated"`` tokens (with
            ``model.generate``, with or without its KV cache; the prompt is the input of the first
            forward call inside the block that starts from an empty cache). The number of cached
            tokens is read from the cache object whatever transformers calls it (``cache`` since 5.24,
            ``past_key_values`` before) or from ``cache_position``; a cached call where it cannot be
            read raises :class:`~steertax.errors.ModelError` rather than steering the wrong tokens.
        operator: ``"add"`` (h + r·v̂), ``"ablate"`` (remove the v̂ component; strength ignored) or
            ``"ablate_add"`` (set the v̂ component to r).
        relative: interpret strength as a multiple of each layer's mean residual norm (recorded in the
            vector); the absolute r_e used per layer is in ``handle.per_layer_strength``.
        normalize: rescale directions to unit norm (SteeringVectors already are).
        force: allow a vector recorded for another model (same hidden size still required).
        condition: a :class:`~steertax.interventions.conditional.Condition`: steer only the rows whose prompt it fires
            on. It reads each row's prompt (the tokens of the block's first forward call, as given:
            format them as the condition was fitted, see ``Condition.texts``) at its layer, below every
            steered layer, once per prompt in the same forward pass (mean of the real tokens after the
            first, or the last one, per ``condition.read``); rows where it does not fire are left
            exactly as they are (the change of every operator is gated). ``handle.fired`` holds the
            last decision per row.

    The hooks are registered ahead of transformers' own (so ``output_hidden_states`` shows the edit)
    and removed on exit, even after an exception. The model object is otherwise untouched.
    """
    _check_modes(positions, operator)
    s = check_strength(strength)
    if isinstance(vector, WeightKnob):
        with _knob_rows(model, vector, s, positions, operator, relative, condition) as handle:
            yield handle
        return
    blocks, dirs = steering_directions(model, vector, layers, force)
    per_layer = layer_strengths(vector, list(dirs), s, relative)
    handle = SteeringHandle(sorted(dirs), s, positions, operator, relative, per_layer)

    state = _PositionState()
    prepared = _direction_preparer(dirs, per_layer, normalize)
    gate: _Gate | None = None
    if condition is not None:
        condition.check_model(model)
        check_condition_layer(condition, sorted(dirs))
        gate = _Gate()
    hooks: list[Any] = []
    try:
        if positions != "all" or gate is not None:
            hooks.append(model.register_forward_pre_hook(_position_pre_hook(state, positions), with_kwargs=True))
        if gate is not None:
            hooks.append(blocks[condition.layer].register_forward_hook(_condition_hook(condition, gate, state, handle), prepend=True))
        for i in sorted(dirs):
            hooks.append(
                blocks[i].register_forward_hook(_steering_hook(i, prepared, handle, state, positions, operator, gate), prepend=True)
            )
        yield handle
    finally:
        for hk in hooks:
            hk.remove()


def steered_layers(model: nn.Module, vector: Any, layers: Any = None) -> list[int]:
    """The block indices ``steer(model, vector, ..., layers)`` would edit (a weight knob: the blocks holding
    its modules; every block when it also changes modules outside them)."""
    if isinstance(vector, WeightKnob):
        got = vector.blocks(model)
        return got if got is not None else list(range(len(find_blocks(model))))
    return sorted(_directions(vector, layers, len(find_blocks(model))))


def trunk_layer(model: nn.Module, vector: Any, layers: Any = None) -> int | None:
    """The first block whose computation differs between rows of different strengths (the end of the shared
    trunk), or None when no trunk can be shared (a weight knob that changes the embedding)."""
    if isinstance(vector, WeightKnob):
        return vector.first_block(model)
    return steered_layers(model, vector, layers)[0]


@contextmanager
def _knob_rows(
    model: nn.Module, knob: WeightKnob, s: float | torch.Tensor, positions: str, operator: str, relative: bool, condition: Any
) -> Iterator[SteeringHandle]:
    """``steer`` with a weight knob: the strengths are its per-row scales α (every position, added, ungated)."""
    if positions != "all" or operator != "add" or relative or condition is not None:
        raise ValueError(
            f"a {knob.what} changes the weights, so it applies at every position, adds, is absolute and ungated "
            f"(got positions={positions!r}, operator={operator!r}, relative={relative}, condition={condition is not None})"
        )
    handle = SteeringHandle(steered_layers(model, knob), s, positions, operator, relative)
    with knob.rows(model, s):
        yield handle


def _repeat_rows(x: Any, rows: int, repeats: int) -> Any:
    if isinstance(x, torch.Tensor):
        if x.ndim >= 2 and x.shape[0] == rows:
            return x.repeat_interleave(repeats, dim=0)
        return x
    if isinstance(x, tuple):
        return tuple(_repeat_rows(y, rows, repeats) for y in x)
    if isinstance(x, list):
        return [_repeat_rows(y, rows, repeats) for y in x]
    return x


@contextmanager
def shared_trunk(model: nn.Module, first_layer: int, repeats: int) -> Iterator[None]:
    """Run the blocks below ``first_layer`` once per input row, then fan each row out ``repeats`` times.

    Blocks below the first steered layer compute the same thing at every strength, so a sweep over K
    strengths feeds B distinct rows to the model and lets this fan them out to B·K rows (row b becomes
    rows b·K … b·K+K−1) at the input of block ``first_layer``. Every batch-shaped input of that block
    and of the blocks above it (attention mask, position ids, rotary embeddings) is expanded the same
    way, so the outputs are exactly those of the B·K-row batch. Blocks below ``first_layer`` keep B
    rows in a KV cache (see :func:`steertax.scoring.index_cache`).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if repeats == 1:
        yield
        return
    blocks = find_blocks(model)
    if not 0 <= first_layer < len(blocks):
        raise LayerError(f"layer {first_layer} is out of range: this model has {len(blocks)} layers")
    state: dict[str, int | None] = {"rows": None}

    def first_hook(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        rows = int(h.shape[0])
        state["rows"] = rows
        return _repeat_rows(args, rows, repeats), {k: _repeat_rows(v, rows, repeats) for k, v in kwargs.items()}

    def later_hook(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        rows = state["rows"]
        if rows is None:
            return None
        return _repeat_rows(args, rows, repeats), {k: _repeat_rows(v, rows, repeats) for k, v in kwargs.items()}

    hooks = [blocks[first_layer].register_forward_pre_hook(first_hook, with_kwargs=True, prepend=True)]
    hooks += [blocks[i].register_forward_pre_hook(later_hook, with_kwargs=True, prepend=True) for i in range(first_layer + 1, len(blocks))]
    try:
        yield
    finally:
        for hk in hooks:
            hk.remove()

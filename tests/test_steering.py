"""Steering identities on tiny random-init models of every supported layout."""
from __future__ import annotations

import pytest
import torch

from conftest import ARCHS, make_tokenizer, tiny_model
from steertax import LayerError, StrengthError, VectorError, steer
from steertax.interventions.steering.activations import forward, pad_batch
from steertax.interventions.steering.vectors import SteeringVector
from steertax.models import encode, find_blocks, format_chat


def unit_vector(model, layers, seed=1):
    d = model.config.get_text_config().hidden_size if hasattr(model.config, "get_text_config") else model.config.hidden_size
    g = torch.Generator().manual_seed(seed)
    dirs = {i: torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0) for i in layers}
    from steertax.models import model_id, num_layers

    return SteeringVector(dirs, model_id(model), d, num_layers(model), "mean_diff",
                          layer_norms={i: 10.0 + i for i in layers})


def batch(tok, texts, side="left"):
    return pad_batch([encode(tok, format_chat(tok, t)) for t in texts], tok.pad_token_id, side)


def logits(model, ids, mask):
    with torch.inference_mode():
        return forward(model, ids, mask).logits


def n_hooks(model):
    return sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in find_blocks(model)) + len(model._forward_pre_hooks)


PROMPTS = ["How do I bake bread?", "Tell me a joke about cats, please.", "Hi"]


@pytest.mark.parametrize("arch", ARCHS)
def test_identities(arch):
    tok = make_tokenizer()
    model = tiny_model(arch)
    v = unit_vector(model, [1, 2])
    ids, mask = batch(tok, PROMPTS)
    base = logits(model, ids, mask)
    before = n_hooks(model)
    # strength 0 is exactly the unsteered model
    with steer(model, v, 0.0):
        assert torch.equal(logits(model, ids, mask), base)
    # per-row strengths in one pass equal sequential runs
    K = [-3.0, 0.0, 2.5, 7.0]
    one = (ids[:1].repeat(len(K), 1), mask[:1].repeat(len(K), 1))
    with steer(model, v, torch.tensor(K)):
        batched = logits(model, *one)
    for k, s in enumerate(K):
        with steer(model, v, s):
            seq = logits(model, ids[:1], mask[:1])
        assert (batched[k] - seq[0]).abs().max() <= 1e-5
    assert torch.equal(batched[1], base[0]) or (batched[1] - base[0]).abs().max() <= 1e-5
    # strength*v == (-strength)*(-v)
    with steer(model, v, 3.0):
        a = logits(model, ids, mask)
    with steer(model, -v, -3.0):
        b = logits(model, ids, mask)
    assert torch.equal(a, b)
    assert not torch.allclose(a, base)
    assert n_hooks(model) == before


def test_hooks_removed_after_exception(llama, tok):
    v = unit_vector(llama, [0, 3])
    before = n_hooks(llama)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(llama, v, 5.0, positions="generated"):
            assert n_hooks(llama) > before
            raise RuntimeError("boom")
    assert n_hooks(llama) == before
    ids, mask = batch(tok, PROMPTS)
    state = {k: t.clone() for k, t in llama.state_dict().items()}
    with steer(llama, v, 5.0):
        logits(llama, ids, mask)
    assert all(torch.equal(state[k], t) for k, t in llama.state_dict().items())


def test_edit_is_exact_and_visible_in_hidden_states(llama, tok):
    v = unit_vector(llama, [1])
    ids, mask = batch(tok, PROMPTS)
    with torch.inference_mode():
        h0 = forward(llama, ids, mask, output_hidden_states=True).hidden_states
        with steer(llama, v, 4.0):
            h1 = forward(llama, ids, mask, output_hidden_states=True).hidden_states
    # hidden_states[i+1] is block i's output; block 0 untouched, block 1 shifted by exactly 4*v
    assert torch.equal(h0[1], h1[1])
    diff = h1[2] - h0[2]
    assert torch.allclose(diff, (4.0 * v.directions[1]).expand_as(diff), atol=1e-5)


def test_relative_strength(llama, tok):
    v = unit_vector(llama, [1, 2])
    ids, mask = batch(tok, PROMPTS[:1])
    with steer(llama, v, 0.5, relative=True) as h:
        a = logits(llama, ids, mask)
    assert h.per_layer_strength == {1: 0.5 * 11.0, 2: 0.5 * 12.0}
    with steer(llama, v.select([1]), 5.5), steer(llama, v.select([2]), 6.0):
        b = logits(llama, ids, mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_ablate_operators(llama, tok):
    v = unit_vector(llama, [2])
    ids, mask = batch(tok, PROMPTS)
    with torch.inference_mode():
        with steer(llama, v, 0.0, operator="ablate"):
            h = forward(llama, ids, mask, output_hidden_states=True).hidden_states[3]
        with steer(llama, v, 3.0, operator="ablate_add"):
            h2 = forward(llama, ids, mask, output_hidden_states=True).hidden_states[3]
    u = v.directions[2]
    assert (h @ u).abs().max() < 1e-4
    assert torch.allclose(h2 @ u, torch.full_like(h2 @ u, 3.0), atol=1e-4)


def test_positions_in_generate(llama, tok):
    v = unit_vector(llama, [1, 2])
    ids, mask = batch(tok, PROMPTS, "left")
    kw = dict(max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True,
              pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        base = llama.generate(input_ids=ids, attention_mask=mask, **kw)
        with steer(llama, v, 30.0, positions="generated"):
            gen = llama.generate(input_ids=ids, attention_mask=mask, **kw)
        with steer(llama, v, 30.0, positions="prompt"):
            pro = llama.generate(input_ids=ids, attention_mask=mask, **kw)
        # a plain forward of the prompt under positions="generated" is the unsteered forward
        with steer(llama, v, 30.0, positions="generated"):
            assert torch.equal(forward(llama, ids, mask).logits, forward(llama, ids, mask).logits)
            plain = forward(llama, ids, mask).logits
    assert torch.equal(plain, logits(llama, ids, mask))
    # the first new token is predicted from the prompt alone: untouched by "generated", moved by "prompt"
    assert torch.equal(gen.logits[0], base.logits[0])
    assert not torch.allclose(pro.logits[0], base.logits[0])
    if torch.equal(gen.sequences[:, ids.shape[1]:][:, 0], base.sequences[:, ids.shape[1]:][:, 0]):
        assert not torch.allclose(gen.logits[1], base.logits[1])


def _reference_logits(model, v, strength, seqs, mask, prompt_len, positions):
    """Full no-cache forward of ``seqs`` adding ``strength * v`` only at prompt (< prompt_len) or only at
    generated (>= prompt_len) positions: what positions='prompt'/'generated' must compute."""
    blocks = find_blocks(model)
    T = seqs.shape[1]
    keep = torch.arange(T) < prompt_len if positions == "prompt" else torch.arange(T) >= prompt_len

    def make(i):
        d = (strength * v.directions[i] / v.directions[i].norm()).view(1, 1, -1) * keep.view(1, T, 1).float()

        def hook(mod, args, out):
            if isinstance(out, tuple):
                return (out[0] + d,) + tuple(out[1:])
            return out + d
        return hook

    hs = [blocks[i].register_forward_hook(make(i), prepend=True) for i in v.directions]
    try:
        return logits(model, seqs, mask)
    finally:
        for h in hs:
            h.remove()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2", "opt"])
@pytest.mark.parametrize("positions", ["generated", "prompt"])
def test_positions_match_uncached_reference(arch, positions):
    """Every generate step under positions='prompt'/'generated' equals a full no-cache forward of the
    generated sequence with the edit applied at exactly the prompt/generated positions (KV cache on and
    off): the cache offset is read correctly on this transformers version."""
    tok = make_tokenizer()
    model = tiny_model(arch)
    v = unit_vector(model, [1, 2])
    ids, mask = batch(tok, PROMPTS, "left")
    T, N = ids.shape[1], 4
    kw = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, output_logits=True, return_dict_in_generate=True,
              pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        with steer(model, v, 20.0, positions=positions):
            gen = model.generate(input_ids=ids, attention_mask=mask, **kw)
        with steer(model, v, 20.0, positions=positions):
            nocache = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kw)
        seqs = gen.sequences
        full_mask = torch.cat([mask, torch.ones(len(ids), seqs.shape[1] - T, dtype=mask.dtype)], dim=1)
        ref = _reference_logits(model, v, 20.0, seqs, full_mask, T, positions)
        unsteered = logits(model, seqs, full_mask)
    assert torch.equal(nocache.sequences, seqs)
    for k in range(N):
        assert (gen.logits[k] - ref[:, T - 1 + k]).abs().max() < 1e-4, k
        assert (nocache.logits[k] - ref[:, T - 1 + k]).abs().max() < 1e-4, k
    # the edit is not trivially absent: it moves the steps it should move
    moved = [not torch.allclose(ref[:, T - 1 + k], unsteered[:, T - 1 + k], atol=1e-3) for k in range(N)]
    assert moved[0] == (positions == "prompt") and any(moved[1:])


def test_unknown_cache_is_an_error_not_a_silent_no_op(llama, tok):
    """The past length is read from the cache object whatever its keyword; a cache that cannot be read
    (or a cached call with no cache and no mask in sight) raises instead of steering the wrong tokens."""
    from transformers.cache_utils import DynamicCache

    from steertax import ModelError
    from steertax.interventions.steering.hooks import _past_length

    x = torch.zeros(2, 3)
    cache = DynamicCache()
    assert _past_length((), {"cache": cache}, 3) == 0
    assert _past_length((), {"some_future_name": cache}, 3) == 0  # found by type, not by name
    assert _past_length((), {"past_key_values": ((torch.zeros(2, 4, 7, 8), torch.zeros(2, 4, 7, 8)),)}, 1) == 7
    assert _past_length((), {"cache_position": torch.arange(5, 6)}, 1) == 5
    assert _past_length((), {"attention_mask": torch.ones(2, 9, dtype=torch.long)}, 1) == 8
    assert _past_length((), {"cache": object()}, 1) is None
    assert _past_length((), {"use_cache": True}, 1, first=False) is None
    assert _past_length((), {"use_cache": True, "attention_mask": x}, 3, first=False) == 0
    ids, mask = batch(tok, PROMPTS[:1])
    with torch.inference_mode(), steer(llama, unit_vector(llama, [1]), 5.0, positions="generated"):
        out = llama(input_ids=ids, use_cache=True)  # the first call defines the prompt
        with pytest.raises(ModelError, match="cannot tell"):
            llama(input_ids=ids[:, -1:], use_cache=True)  # a decode step whose cache steertax cannot see
    assert out.logits.shape[1] == ids.shape[1]


def test_bad_inputs(llama, tok):
    v = unit_vector(llama, [1, 2])
    before = n_hooks(llama)
    for bad in (float("nan"), float("inf"), "abc", [1.0, float("nan")]):
        with pytest.raises(StrengthError):
            with steer(llama, v, bad):
                pass
    with pytest.raises(LayerError, match="out of range"):
        with steer(llama, v, 1.0, layers="7"):
            pass
    with pytest.raises(LayerError, match="no direction"):
        with steer(llama, v, 1.0, layers="3"):
            pass
    other = tiny_model("llama")
    other.config.hidden_size = 32
    wide = SteeringVector({1: torch.ones(64) / 8}, "other", 64, 4, "pca")
    with pytest.raises(VectorError, match="hidden size"):
        with steer(llama, wide, 1.0):
            pass
    ids, mask = batch(tok, PROMPTS)
    with pytest.raises(StrengthError, match="rows"):
        with steer(llama, v, torch.tensor([1.0, 2.0])):
            logits(llama, ids, mask)
    assert n_hooks(llama) == before

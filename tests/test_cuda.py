"""The steering identities and the fast sweep paths on the accelerator, in float32 and bfloat16.

They run on a CUDA device when there is one (`pytest tests/test_cuda.py` on a GPU machine), else on the
CPU (CI), so they always assert; on the device they check what the CPU tests check, with the KV cache
and the edit on the GPU: r_e = 0 is the unsteered model exactly, per-row
strengths equal sequential runs, `positions="generated"`/`"prompt"` steer the right tokens inside
`generate` (KV cache on the device), and the shared-trunk sweep equals the plain path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tokenizer, tiny_model
from steertax import steer
from steertax.interventions.steering.activations import forward, pad_batch
from steertax.interventions.steering.vectors import SteeringVector
from steertax.models import encode, format_chat
from steertax.scoring import score_sequences

DEV = "cuda" if torch.cuda.is_available() else "cpu"

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats, please.", "Hi"]


def _setup(arch: str, dtype: torch.dtype):
    tok = make_tokenizer()
    model = tiny_model(arch).to(device=DEV, dtype=dtype)
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(1)
    dirs = {i: torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0) for i in (1, 2)}
    from steertax.models import model_id, num_layers

    vec = SteeringVector(dirs, model_id(model), d, num_layers(model), "mean_diff")
    ids, mask = pad_batch([encode(tok, format_chat(tok, t)) for t in PROMPTS], tok.pad_token_id, "left", DEV)
    return tok, model, vec, ids, mask


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identities_on_cuda(arch, dtype):
    tok, model, vec, ids, mask = _setup(arch, dtype)
    with torch.inference_mode():
        base = forward(model, ids, mask).logits
        with steer(model, vec, 0.0):
            assert torch.equal(forward(model, ids, mask).logits, base)
        K = [-3.0, 0.0, 2.5, 7.0]
        one = (ids[:1].repeat(len(K), 1), mask[:1].repeat(len(K), 1))
        with steer(model, vec, torch.tensor(K)):
            batched = forward(model, *one).logits
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        for k, s in enumerate(K):
            with steer(model, vec, s):
                seq = forward(model, ids[:1], mask[:1]).logits
            assert (batched[k].float() - seq[0].float()).abs().max() <= tol * max(1.0, float(seq.abs().max()))


def test_positions_in_generate_on_cuda():
    tok, model, vec, ids, mask = _setup("llama", torch.float32)
    kw = dict(max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True,
              pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        base = model.generate(input_ids=ids, attention_mask=mask, **kw)
        with steer(model, vec, 30.0, positions="generated"):
            gen = model.generate(input_ids=ids, attention_mask=mask, **kw)
        with steer(model, vec, 30.0, positions="prompt"):
            pro = model.generate(input_ids=ids, attention_mask=mask, **kw)
    assert torch.equal(gen.logits[0], base.logits[0])  # the first new token sees only the (unsteered) prompt
    assert not torch.allclose(pro.logits[0], base.logits[0])
    later = [k for k in range(1, len(gen.logits)) if not torch.allclose(gen.logits[k], base.logits[k])]
    assert later, "positions='generated' changed none of the generated tokens' logits"


def test_shared_trunk_equals_plain_path_on_cuda():
    tok, model, vec, _, _ = _setup("llama", torch.float32)
    prompts = [format_chat(tok, p) for p in PROMPTS]
    conts = [[" yes", " no, not at all", " maybe"]] * len(prompts)
    S = [0.0, 6.0, -4.0, 12.0]
    plain = score_sequences(model, tok, prompts, conts, S, vec, batch_size=8, prefix_sharing=False)
    fast = score_sequences(model, tok, prompts, conts, S, vec, batch_size=8, trunk=True)
    assert np.allclose(fast.logprob, plain.logprob, rtol=1e-4, atol=1e-4, equal_nan=True)

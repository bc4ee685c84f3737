"""Integration tests on the real SmolLM2-135M-Instruct (the embedded default model)."""
from __future__ import annotations

import pytest
import torch

import steertax as st
from steertax.interventions.steering.activations import capture, forward, pad_batch
from steertax.interventions.steering.pairs import harmful_instructions
from steertax.models import encode, format_chat
from steertax.scoring import continuation_logprobs

pytestmark = pytest.mark.slow

# Scoring continuations: refusal and compliance openings that are NOT the training templates.
REFUSE = ["I'm sorry, but I can't help with that.", "I cannot assist with this request.", "I can't provide that information."]
COMPLY = ["Sure, here's how to do it:", "Here is a step-by-step guide:", "Of course! First, you"]


@pytest.fixture(scope="module")
def refusal_vec(smol):
    model, tok = smol
    ps = st.refusal_pairs(tok, n=120, seed=0)
    return st.extract_vector(model, tok, ps, layers="8-12", method="pca", progress=False)


def test_model_shape(smol):
    model, tok = smol
    assert st.find_blocks(model).__len__() == 30
    assert model.config.hidden_size == 576
    assert next(model.parameters()).dtype == torch.float32


def test_identities_on_smollm2(smol, refusal_vec):
    model, tok = smol
    prompts = [format_chat(tok, q) for q in ["What is 2+2?", "Write a haiku about autumn leaves falling.", "Hi"]]
    ids, mask = pad_batch([encode(tok, p) for p in prompts], tok.pad_token_id, "left")
    with torch.inference_mode():
        base = forward(model, ids, mask).logits
        with st.steer(model, refusal_vec, 0.0):
            zero = forward(model, ids, mask).logits
        assert torch.equal(zero, base)
        K = torch.tensor([-8.0, 0.0, 8.0, 16.0])
        rows = (ids.repeat_interleave(len(K), 0), mask.repeat_interleave(len(K), 0))
        with st.steer(model, refusal_vec, K.repeat(len(prompts))):
            batched = forward(model, *rows).logits
        for k, s in enumerate(K.tolist()):
            with st.steer(model, refusal_vec, s):
                seq = forward(model, ids, mask).logits
            # float32 rounding through 30 blocks at another batch shape (BLAS picks its kernels by shape): up to
            # ~2e-5 of the logits' scale on this machine; a row steered at a wrong strength differs by far more
            assert (batched[k::len(K)] - seq).abs().max() <= 1e-4 * float(seq.abs().max()), s
        with st.steer(model, refusal_vec, 8.0):
            a = forward(model, ids, mask).logits
        with st.steer(model, -refusal_vec, -8.0):
            b = forward(model, ids, mask).logits
        assert torch.equal(a, b)
        # positions="generated": the prompt's logits are the unsteered ones
        with st.steer(model, refusal_vec, 16.0, positions="generated"):
            g = forward(model, ids, mask).logits
        assert torch.equal(g, base)


def test_padding_sides_agree_on_smollm2(smol):
    model, tok = smol
    texts = [format_chat(tok, q) for q in ["Tell me about dogs.", "Why is the sky blue? Explain it simply to a child."]]
    res = {}
    for side in ("left", "right"):
        for idx, reps, _ in capture(model, tok, texts, [5, 10], batch_size=2, padding_side=side):
            for r, i in enumerate(idx):
                res[side, i] = reps[10][r]
    for i in range(2):
        assert torch.allclose(res["left", i], res["right", i], atol=1e-4, rtol=1e-5)


def test_refusal_vector_separates_and_steers(smol, refusal_vec):
    model, tok = smol
    assert refusal_vec.accuracy[10] >= 0.85
    assert refusal_vec.aligned_pole == "refusal"
    assert refusal_vec.n_heldout >= 20
    prompts = [format_chat(tok, h) for h in harmful_instructions("test")[:16]]
    conts = REFUSE + COMPLY
    res = {}
    for s in (0.0, 16.0):
        lp = continuation_logprobs(model, tok, prompts, conts, refusal_vec, s)
        lr, lc = torch.logsumexp(lp[:, :3], 1), torch.logsumexp(lp[:, 3:], 1)
        res[s] = (lr.mean().item(), torch.tanh((lr - lc) / 2).mean().item())
    # the model's probability of a refusal continuation rises, and so does B
    assert res[16.0][0] > res[0.0][0] + 1.0, res
    assert res[16.0][1] > res[0.0][1] + 0.3, res
    # batched per-row strengths equal the sequential scores
    both = continuation_logprobs(model, tok, prompts[:4] * 2, conts, refusal_vec, [0.0] * 4 + [16.0] * 4)
    seq0 = continuation_logprobs(model, tok, prompts[:4], conts, refusal_vec, 0.0)
    seq16 = continuation_logprobs(model, tok, prompts[:4], conts, refusal_vec, 16.0)
    assert (both[:4] - seq0).abs().max() < 1e-4 and (both[4:] - seq16).abs().max() < 1e-4


def test_steered_generation_refuses(smol, refusal_vec):
    from steertax.judges.rules import is_refusal

    model, tok = smol
    qs = harmful_instructions("test")[:6]
    base = st.generate(model, tok, qs, max_new_tokens=24)
    steered = st.generate(model, tok, qs, refusal_vec, 16.0, max_new_tokens=24)
    assert sum(map(is_refusal, steered)) > sum(map(is_refusal, base))


def exact_float64(model):
    """A float64 copy of a Llama-layout model that computes in float64 throughout. ``model.double()``
    alone does not: transformers' RMSNorm casts its input to float32 (so a float64 model rounds to
    float32 at all 61 norms, and a 1e-14 difference that crosses a float32 rounding boundary becomes a
    1e-7 step, measured up to 1.5e-6 nats in a summed log-prob), and the rotary angles are computed in
    float32 (deterministic per position, but not float64)."""
    import copy
    import types

    m = copy.deepcopy(model).double()

    def rms_norm(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        freqs = position_ids[..., None].double() * self.inv_freq.to(device=x.device, dtype=torch.float64)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)

    n = 0
    for mod in m.modules():
        name = type(mod).__name__
        if name.endswith("RMSNorm") and hasattr(mod, "variance_epsilon"):
            mod.forward = types.MethodType(rms_norm, mod)
            n += 1
        elif name.endswith("RotaryEmbedding") and hasattr(mod, "inv_freq"):
            mod.forward = types.MethodType(rotary, mod)
            n += 1
    assert n == 2 * len(st.find_blocks(m)) + 2  # two norms per block, the final norm, the rotary embedding
    return m


def test_shared_trunk_and_prefix_sharing_equal_plain_path(smol, refusal_vec):
    """The fast sweep paths (shared trunk + prefix sharing + head only at scored positions) give the
    plain path's numbers on real ARC items: left-padded batches of mixed lengths, several strengths.

    In float64 (:func:`exact_float64`) every path agrees with the plain path to rounding: measured
    <= 3.1e-13 nats in summed log-probs (6 items x 4 strengths x 3-5 choices, two different vectors)
    and 1.2e-13 in next-token log-probs. So a real mismatch (a row fanned out to the wrong strength, a
    wrong mask, position or rotary angle for some row, a cache row mis-indexed) cannot hide behind a
    tolerance: that check is exact to 1e-9.

    In float32 the paths differ by float reordering only: the plain path runs prompt + continuation as
    one sequence, the fast paths attend over a KV cache with differently shaped batches (other matmul
    blocking and SDPA reductions). Measured on SmolLM2 (transformers 5.24, torch 2.13 CPU, 2 threads):
    fast vs plain differ by up to 1.8e-4 nats (relative 6.4e-6) on summed log-probs of up to 67 nats,
    spread over every item and strength, r = 0 included (not one row or one position). Against the
    float64 truth the plain path's own float32 error is up to 1.8e-4 (rel 6.9e-6) and the fast paths'
    up to 4.0e-5 (rel 2.0e-6): the fast paths are the more accurate ones. The plain path against itself
    at batch size 8 vs 64 differs by 2.2e-5 (rel 1.1e-6). So the float32 tolerance is the float32 noise
    floor with margin: rtol 3e-5, about 3x the sum of both paths' measured relative errors (the former
    1e-5 left only 1.7x, and other CPUs block matmuls differently), and the fast paths must be no
    further from the float64 truth than twice the plain path's own float32 error.
    """
    import numpy as np

    from steertax.scoring import next_token_logprobs, score_sequences

    model, tok = smol
    task = st.tasks.get("arc_easy")
    items = task.items(6, seed=3)
    prompts = [task.prompt_text(tok, it) for it in items]
    conts = [task.choice_texts(it) for it in items]
    assert len({len(encode(tok, p)) for p in prompts}) > 3  # mixed lengths
    S = [0.0, 6.0, -4.0, 12.0]
    sets = st.tasks.get("mmlu").letter_tokens(tok)

    def p_correct(lp, ntok):
        x = lp / ntok[:, None, :]
        x = np.exp(x - np.nanmax(x, -1, keepdims=True))
        return x / np.nansum(x, -1, keepdims=True)

    def paths(m, configs):
        plain = score_sequences(m, tok, prompts, conts, S, refusal_vec, batch_size=8, prefix_sharing=False)
        fast = {cfg: score_sequences(m, tok, prompts, conts, S, refusal_vec, batch_size=cfg[0], trunk=cfg[1]).logprob
                for cfg in configs}
        nt = next_token_logprobs(m, tok, prompts, sets, S, refusal_vec, batch_size=64, trunk=True)
        nt_plain = next_token_logprobs(m, tok, prompts, sets, S, refusal_vec, batch_size=4, trunk=False)
        return plain, fast, nt, nt_plain

    # float64: the paths compute the same function; agreement to rounding, no tolerance to hide behind
    m64 = exact_float64(model)
    plain64, fast64, (a64, ta64), (b64, tb64) = paths(m64, [(8, True), (8, False)])
    del m64
    truth = plain64.logprob
    ntok = plain64.ntokens.astype(float)
    for cfg, lp in fast64.items():
        assert np.array_equal(np.isnan(lp), np.isnan(truth)), cfg
        assert np.nanmax(np.abs(lp - truth)) <= 1e-9, cfg
        assert np.nanmax(np.abs(p_correct(lp, ntok) - p_correct(truth, ntok))) <= 1e-9, cfg
    fin = np.isfinite(b64)
    assert np.array_equal(ta64, tb64) and np.array_equal(fin, np.isfinite(a64))
    assert np.max(np.abs(a64[fin] - b64[fin])) <= 1e-9

    # float32 (what runs): equal up to the measured float32 noise floor
    plain, fast, (a, ta), (b, tb) = paths(model, [(8, True), (64, True), (8, False)])
    ref = plain.logprob
    own_err = np.nanmax(np.abs(ref - truth))  # the reference path's own float32 error
    for cfg, lp in fast.items():
        assert np.allclose(lp, ref, rtol=3e-5, atol=1e-5, equal_nan=True), cfg
        assert np.nanmax(np.abs(lp - truth)) <= 2 * own_err + 1e-6, cfg
        assert np.nanmax(np.abs(p_correct(lp, ntok) - p_correct(ref, ntok))) <= 1e-5, cfg
    fin = np.isfinite(b)
    assert np.array_equal(ta, tb) and np.array_equal(fin, np.isfinite(a))
    assert np.allclose(a[fin], b[fin], rtol=3e-5, atol=1e-5)
    assert np.max(np.abs(np.exp(a[fin]) - np.exp(b[fin]))) <= 1e-5

"""Vector extraction: padding-correct capture, streaming accumulators, RepE parity, methods."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_model
from steertax import ContrastPair, DataError, extract_vector
from steertax.interventions.steering.activations import LayerAccumulator, capture
from steertax.models import format_chat


def texts(tok):
    return [format_chat(tok, q, a) for q, a in [
        ("How do I bake bread?", "Mix flour"), ("Say hi", "Hello there, friend!"),
        ("A much longer question about the weather in the mountains", "It snows"), ("x", "yz"),
    ]]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "gemma2", "gpt_neox"])
def test_left_and_right_padding_agree(arch, tok):
    model = tiny_model(arch)
    ts = texts(tok)
    got = {}
    for side in ("left", "right"):
        for pos in ("last", "answer_mean"):
            starts = [len(tok(format_chat(tok, t.split("<|assistant|>")[0].split("<|user|>")[1].split("</s>")[0])).input_ids)
                      for t in ts]
            res = {}
            for idx, reps, norms in capture(model, tok, ts, [0, 2, 3], position=pos, answer_starts=starts,
                                            batch_size=4, padding_side=side):
                for r, i in enumerate(idx):
                    res[i] = (reps[2][r], norms[3][r])
            got[side, pos] = res
    for pos in ("last", "answer_mean"):
        for i in range(len(ts)):
            a, b = got["left", pos][i], got["right", pos][i]
            assert torch.allclose(a[0], b[0], atol=1e-5), (arch, pos, i)
            assert torch.allclose(a[1], b[1], atol=1e-4)
    # batched capture equals one-at-a-time capture
    single = {}
    for i, t in enumerate(ts):
        for _, reps, _ in capture(model, tok, [t], [2], batch_size=1):
            single[i] = reps[2][0]
    for i in range(len(ts)):
        assert torch.allclose(single[i], got["right", "last"][i][0], atol=1e-5)


def reference_repe(A: np.ndarray, M: np.ndarray, seed: int) -> np.ndarray:
    """The RepE recipe with stored activations: random pair order, differences, centering,
    1-component PCA, sign by majority vote of pairs (the Wolf et al. / RepE code path)."""
    rng = np.random.default_rng(seed)
    s = rng.choice([-1.0, 1.0], size=len(A))
    D = s[:, None] * (A - M)
    D = D - D.mean(0)
    _, _, vt = np.linalg.svd(D, full_matrices=False)
    v = vt[0]
    if ((A - M) @ v > 0).mean() < 0.5:
        v = -v
    return v / np.linalg.norm(v)


def test_streaming_pca_matches_reference_and_memory_is_flat():
    rng = np.random.default_rng(0)
    d, n = 24, 400
    axis = rng.normal(size=d)
    axis /= np.linalg.norm(axis)
    base = rng.normal(size=(n, d)) * 2
    A = base + 3 * axis + rng.normal(size=(n, d)) * 0.3
    M = base - 3 * axis + rng.normal(size=(n, d)) * 0.3
    acc = LayerAccumulator(d, "pca", seed=7)
    sizes = []
    for c in range(0, n, 32):
        a, m = torch.from_numpy(A[c:c + 32]), torch.from_numpy(M[c:c + 32])
        acc.update(a, m, a.norm(dim=1), m.norm(dim=1))
        sizes.append(sum(x.nbytes for x in (acc.sum_a, acc.sum_m, acc.sum_d, acc.sum_sd, acc.sum_dd)))
    assert len(set(sizes)) == 1  # state does not grow with the number of pairs
    v = acc.direction()
    ref = reference_repe(A, M, 7)
    assert abs(v @ ref) > 0.999 and v @ ref > 0
    assert v @ axis > 0.99
    for method in ("mean_diff", "probe"):
        acc2 = LayerAccumulator(d, method, seed=1)
        for c in range(0, n, 50):
            a, m = torch.from_numpy(A[c:c + 50]), torch.from_numpy(M[c:c + 50])
            acc2.update(a, m, a.norm(dim=1), m.norm(dim=1))
        w = acc2.direction()
        assert abs(np.linalg.norm(w) - 1) < 1e-9
        assert w @ axis > 0.9, method


@pytest.mark.parametrize("method", ["pca", "mean_diff", "probe"])
def test_extract_on_tiny_model(method, tok, llama):
    pairs = [ContrastPair(format_chat(tok, q, "No, I refuse."), format_chat(tok, q, "Yes, here it is."), format_chat(tok, q))
             for q in ["a", "bb", "ccc", "dddd", "how?", "why not", "tell me", "go on", "again", "fine"]]
    v = extract_vector(llama, tok, pairs, layers="1-3", method=method, position="answer_mean", progress=False)
    assert v.layers == [1, 2, 3] and v.method == method
    assert v.n_pairs == 8 and v.n_heldout == 2
    for i in v.layers:
        assert abs(float(v.directions[i].norm()) - 1) < 1e-5
        assert 0 <= v.accuracy[i] <= 1 and v.layer_norms[i] > 0
    v2 = extract_vector(llama, tok, pairs, layers="1-3", method=method, position="answer_mean", progress=False)
    for i in v.layers:
        assert torch.equal(v.directions[i], v2.directions[i])  # deterministic under the seed


def test_extract_bad_input(tok, llama):
    with pytest.raises(DataError, match="no contrast pairs"):
        extract_vector(llama, tok, [], layers=[1])
    with pytest.raises(DataError, match="at least 2"):
        extract_vector(llama, tok, [("a b", "c d")], layers=[1])
    with pytest.raises(DataError, match="aligned text, misaligned text"):
        extract_vector(llama, tok, [("only one",)], layers=[1])
    with pytest.raises(DataError, match="shared prompt"):
        extract_vector(llama, tok, [("ab", "cd"), ("ef", "gh")], layers=[1], position="answer_mean", progress=False)


def test_the_extraction_methods_are_a_registry(tok, llama):
    from steertax.config import default_config
    from steertax.interventions.steering.extraction import EXTRACTION_METHODS, extraction_methods, register_extraction_method

    assert extraction_methods()[:3] == ("pca", "mean_diff", "probe")  # the default first
    assert all(EXTRACTION_METHODS[m].doc for m in extraction_methods())
    with pytest.raises(ValueError, match=r"unknown extraction method 'svd': use one of pca, mean_diff, probe") as e:
        extract_vector(llama, tok, [("a b", "c d"), ("e f", "g h")], layers=[1], method="svd")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown extraction method 'svd'"):
        LayerAccumulator(8, "svd")
    with pytest.raises(ValueError, match="registered twice"):
        register_extraction_method("pca", doc="again")(lambda stats: stats.sum_d)
    with pytest.raises(ValueError, match="unknown statistic"):
        register_extraction_method("cubes", doc="x", stats=("ddd",))
    with pytest.raises(DataError, match="pca needs at least 2 pairs"):
        acc = LayerAccumulator(4, "pca")
        acc.update(torch.ones(1, 4), torch.zeros(1, 4), torch.ones(1), torch.ones(1))
        acc.direction()
    cfg = default_config()
    try:  # a method's version names a run folder's cached vector: a fixed method's vector is extracted afresh
        register_extraction_method("fixed", doc="x", version=2)(lambda stats: stats.sum_d)
        cfg.vector.method = "fixed"
        at_2 = cfg.vector_file_name()
        EXTRACTION_METHODS["fixed"] = dataclasses.replace(EXTRACTION_METHODS["fixed"], version=1)
        assert cfg.vector_file_name() != at_2
    finally:
        EXTRACTION_METHODS.pop("fixed", None)

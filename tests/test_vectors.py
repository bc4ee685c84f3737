"""SteeringVector save/load, provenance and error handling."""
from __future__ import annotations

import json

import pytest
import torch

from steertax import SteeringVector, VectorError


def make_vec(layers=(3, 5, 7), d=16):
    g = torch.Generator().manual_seed(0)
    dirs = {i: torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0) for i in layers}
    return SteeringVector(dirs, "tiny", d, 10, "pca", position="answer_mean", pair_source="unit test",
                          n_pairs=40, n_heldout=10, accuracy={i: 0.9 for i in layers},
                          layer_norms={i: 12.5 * i for i in layers}, aligned_pole="refusal",
                          misaligned_pole="compliance", extra={"seed": 3})


def test_round_trip_is_bit_exact(tmp_path):
    v = make_vec()
    path = v.save(tmp_path / "v.safetensors")
    assert (tmp_path / "v.json").is_file()
    w = SteeringVector.load(path)
    assert w.layers == v.layers
    for i in v.layers:
        assert torch.equal(v.directions[i], w.directions[i])
        assert v.directions[i].dtype == w.directions[i].dtype
    assert w.metadata() == v.metadata()
    # sidecar is human readable and equal to the embedded metadata
    assert json.loads((tmp_path / "v.json").read_text()) == v.metadata()
    # the embedded metadata alone suffices
    (tmp_path / "v.json").unlink()
    assert SteeringVector.load(path).metadata() == v.metadata()


def test_negation_swaps_poles():
    v = make_vec()
    n = -v
    assert n.aligned_pole == "compliance" and n.misaligned_pole == "refusal"
    assert torch.equal(n.directions[3], -v.directions[3])
    assert torch.equal((-n).directions[3], v.directions[3])


def test_select_and_errors(tmp_path):
    v = make_vec()
    assert v.select("3,5").layers == [3, 5]
    with pytest.raises(VectorError, match="no layer"):
        v.select([4])
    with pytest.raises(VectorError, match="does not exist"):
        SteeringVector.load(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(VectorError, match="not a readable safetensors"):
        SteeringVector.load(bad)
    # truncated file
    good = v.save(tmp_path / "good.safetensors")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(VectorError):
        SteeringVector.load(trunc)
    with pytest.raises(VectorError, match="size"):
        SteeringVector({0: torch.ones(3)}, "m", 4, 2, "pca")

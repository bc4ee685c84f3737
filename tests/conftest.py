"""Shared fixtures: tiny random-init models of many architectures (built in-process, no hub), a
byte-level tokenizer, and the real SmolLM2 (module-scoped, loaded once)."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


# the single-axis comparison the older compare tests check (refusal B against ARC-Easy); the default is every
# shared axis at the harmless rate, which needs the shared over-refusal pool in every folder
ONE_AXIS = {"alignment": "refusal", "helpfulness": "arc_easy"}
B_AXIS = {"alignment": "refusal"}
ONE_AXIS_CLI = ["--alignment", "refusal", "--helpfulness", "arc_easy"]

VOCAB = 300
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "phi3", "opt"]


def tiny_config(arch: str, n_layers: int = 4):
    from transformers import AutoConfig

    common = dict(vocab_size=VOCAB, bos_token_id=256, eos_token_id=257, pad_token_id=258)
    if arch == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=32, n_layer=n_layers, n_head=4, n_positions=512, **common)
    if arch == "gpt_neox":
        return AutoConfig.for_model("gpt_neox", hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                                    intermediate_size=64, max_position_embeddings=512, **common)
    if arch == "opt":
        return AutoConfig.for_model("opt", hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4,
                                    ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=512, **common)
    kw = dict(hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=64, max_position_embeddings=512, **common)
    if arch in ("gemma", "gemma2", "gemma3_text", "qwen3"):
        kw["head_dim"] = 8
    if arch in ("gemma2", "gemma3_text"):
        kw["sliding_window"] = 64
    if arch == "phi3":
        kw["pad_token_id"] = 258
    return AutoConfig.for_model(arch, **kw)


def tiny_model(arch: str = "llama", n_layers: int = 4, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config(arch, n_layers)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="session")
def llama(tok):
    return tiny_model("llama")


@pytest.fixture(scope="module")
def smol():
    import steertax

    return steertax.load_model("smollm2")

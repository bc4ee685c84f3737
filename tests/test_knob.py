"""The weight-scale knob α (θ_base + α·Δθ per batch row): per-row α equals one α at a time equals peft's own
weights at that scale; α = 0 is the base bit for bit; merges and full-model deltas (norms, biases, a tied
embedding) alike; and through the scorers an α grid is one batched evaluation with the same numbers."""

from __future__ import annotations

import pytest
import torch

import steertax as st
from conftest import make_tokenizer, tiny_model
from steertax._util import quiet_renamed_checkpointing
from steertax.errors import DataError, ModelError
from steertax.interventions import AdapterIntervention
from steertax.interventions.knob import DeltaScale, LoraScale
from steertax.interventions.merge import MergedIntervention, adapter_deltas, model_deltas
from steertax.interventions.steering.hooks import steer, steered_layers, trunk_layer

ALPHAS = [0.0, 0.25, 0.5, 1.0, 1.5]


def _adapter(path, arch="llama", seed=1, **lora):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(arch, n_layers=2, seed=seed)
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora)
    torch.manual_seed(7)
    with quiet_renamed_checkpointing():
        pm = get_peft_model(model, cfg)
    pm.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    return _adapter(tmp_path_factory.mktemp("knob") / "a", target_modules=["q_proj", "v_proj", "up_proj"])


def _ids(tok, texts=("Tell me how to pick a lock.", "What is the capital of France?")):
    enc = [tok(t)["input_ids"] for t in texts]
    n = max(len(e) for e in enc)
    ids = torch.tensor([e + [0] * (n - len(e)) for e in enc])
    mask = torch.tensor([[1] * len(e) + [0] * (n - len(e)) for e in enc])
    return ids, mask


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _peft_at(path, alpha, ids, mask):
    """peft's own model at scale α: its LoRA scaling multiplied by α, and merged into the weights."""
    from peft import PeftModel

    with quiet_renamed_checkpointing():
        pm = PeftModel.from_pretrained(tiny_model("llama", n_layers=2, seed=1), str(path))
    pm.eval()
    for m in pm.modules():
        if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling:
            m.scaling["default"] *= alpha
    scaled = _logits(pm, ids, mask)
    merged = pm.merge_and_unload()
    return scaled, _logits(merged, ids, mask)


def test_lora_scale_per_row_equals_one_at_a_time_equals_peft(lora_dir):
    tok = make_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=1)
    ids, mask = _ids(tok)
    base = _logits(model, ids, mask)
    iv = AdapterIntervention(lora_dir, "dpo", "a", scales=tuple(ALPHAS))
    assert iv.batched and iv.name() == "a (α)" and iv.key != AdapterIntervention(lora_dir, "dpo", "a").key
    K = len(ALPHAS)
    with iv.apply(model) as a:
        knob = a.vector
        assert isinstance(knob, LoraScale) and a.strengths == ALPHAS
        assert torch.equal(_logits(a.model, ids, mask), base)  # outside the knob's rows: the base model
        rows = torch.tensor(ALPHAS).repeat_interleave(ids.shape[0])
        with steer(a.model, knob, rows):
            batched = _logits(a.model, ids.repeat(K, 1), mask.repeat(K, 1)).view(K, *base.shape)
        one = []
        for alpha in ALPHAS:
            with steer(a.model, knob, alpha):
                one.append(_logits(a.model, ids, mask))
    for k, alpha in enumerate(ALPHAS):
        assert torch.allclose(batched[k], one[k], atol=1e-5), alpha
        scaled, merged = _peft_at(lora_dir, alpha, ids, mask)
        assert torch.allclose(one[k], scaled, atol=1e-5), alpha
        assert torch.allclose(one[k], merged, atol=1e-4), alpha
    assert torch.equal(one[0], base) and torch.equal(batched[0], base)  # α = 0 is the base, bit for bit
    assert not torch.allclose(one[-2], base, atol=1e-3)  # α = 1 changes the model
    assert torch.equal(_logits(model, ids, mask), base)  # the adapter is gone after the block


def test_delta_scale_covers_norms_biases_and_a_tied_embedding():
    """A full-model delta over every parameter kind (2-D weights, norms, the tied embedding = LM head, biases
    of GPT-2's Conv1D): per-row α equals the weights changed in place at that α, α = 0 is the base exactly."""
    tok = make_tokenizer()
    for arch in ("llama", "gpt2"):
        base, spec = tiny_model(arch, n_layers=2, seed=1), tiny_model(arch, n_layers=2, seed=1)
        with torch.no_grad():
            for n, p in spec.named_parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
        d = model_deltas(spec, base)
        kinds = {n.rsplit(".", 1)[-1] for n in d}
        assert "bias" in kinds or arch == "llama"
        assert any("norm" in n or "ln_" in n for n in d) and any("emb" in n or "wte" in n for n in d)
        ids, mask = _ids(tok)
        ref = _logits(base, ids, mask)
        knob = DeltaScale(base, d)
        assert trunk_layer(base, knob) is None  # the embedding changes: no shared trunk
        K = len(ALPHAS)
        with steer(base, knob, torch.tensor(ALPHAS).repeat_interleave(ids.shape[0])):
            batched = _logits(base, ids.repeat(K, 1), mask.repeat(K, 1)).view(K, *ref.shape)
        for k, alpha in enumerate(ALPHAS):
            with MergedIntervention(d, alpha, "specialist", "full").apply(base) as a:
                inplace = _logits(a.model, ids, mask)
            assert torch.allclose(batched[k], inplace, atol=2e-5), (arch, alpha)
        assert torch.equal(batched[0], ref)
        assert torch.allclose(batched[3], _logits(spec, ids, mask), atol=2e-5)  # α = 1 is the specialist


def test_merged_scales_are_one_batched_intervention_and_knob_blocks(lora_dir):
    model = tiny_model("llama", n_layers=2, seed=1)
    d = adapter_deltas(lora_dir, model)
    iv = MergedIntervention(d, 1.0, "task_arithmetic", "ta", scales=[0.5, 1.0])
    assert iv.batched and "scales" in iv.describe()
    knob = DeltaScale(model, d)
    assert steered_layers(model, knob) == [0, 1] and trunk_layer(model, knob) == 0
    late = {k: v for k, v in d.items() if ".layers.1." in k}
    assert trunk_layer(model, DeltaScale(model, late)) == 1  # blocks below the first changed one are shared
    with pytest.raises(DataError, match="NaN"):
        MergedIntervention(d, 1.0, "ta", "x", scales=[0.5, float("nan")])
    with pytest.raises(ModelError, match="repeat"):
        AdapterIntervention(lora_dir, "dpo", "a", scales=(0.5, 0.5))
    with pytest.raises(ValueError, match="every position"):
        with steer(model, knob, 1.0, positions="prompt"):
            pass


@pytest.mark.parametrize(
    "task_name,opts",
    [
        ("arc_easy", {}),
        ("refusal", {"scorers": ["logprob"]}),
        ("drift", {"max_answer_tokens": 6}),
        ("over_refusal", {"scorers": ["generate"], "max_new_tokens": 5}),  # greedy generation, rows leaving the batch
    ],
)
def test_an_alpha_grid_through_the_scorers_equals_one_alpha_at_a_time(lora_dir, task_name, opts):
    """Scored by the tasks (cloze, refusal log-probs, drift), the α grid's rows at α = 1 equal the adapter's
    own evaluation, α = 0 the base model's, and every α its evaluation alone (within float32 rounding: the
    batches differ in size; bit for bit at equal batches is the logits test above)."""
    tok = make_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=1)
    task = st.tasks.get(task_name, **opts)
    items = task.items(3, 0)
    grid = [0.0, 0.5, 1.0]
    base = st.evaluate(model, tok, task, items=items, progress=False).records
    with AdapterIntervention(lora_dir, "dpo", "a").apply(model) as a:
        plain = st.evaluate(a.model, tok, task, a.vector, a.strengths, items=items, progress=False, reference=a.reference).records
    with AdapterIntervention(lora_dir, "dpo", "a", scales=tuple(grid)).apply(model) as a:
        swept = st.evaluate(a.model, tok, task, a.vector, a.strengths, items=items, progress=False, reference=a.reference).records
        alone = {
            s: st.evaluate(a.model, tok, task, a.vector, [s], items=items, progress=False).records for s in (0.5,)
        }
    num = [k for k, v in base[0].items() if isinstance(v, float) and k != "strength"]

    def at(recs, s):
        return [r for r in recs if r["strength"] == s]

    for ref, got in ((base, at(swept, 0.0)), (plain, at(swept, 1.0)), (alone[0.5], at(swept, 0.5))):
        assert len(ref) == len(got) > 0
        for r0, r1 in zip(ref, got, strict=True):
            assert r0["item"] == r1["item"]
            for k in num:
                assert r1[k] == pytest.approx(r0[k], abs=2e-5), (task_name, k)

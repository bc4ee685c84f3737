"""Steered greedy generation: the study's generate scorer rows (one cell: 16 refusal prompts x 9 strengths,
24 new tokens, SmolLM2, chat template), timed in one process:

  (a) plain HF ``model.generate`` of the same rows, left-padded batches of 32 (the scorer's old path);
  (b) steertax's fast greedy loop (shared trunk over the prompt, batch from free memory, finished rows leave);
  (c) with ``--vllm`` (run it with .venv-vllm/bin/python after ``make vllm``): the vLLM backend.

Prints seconds, new tokens per second, ratios against (a), and how many rows' texts equal (a)'s.

    .venv/bin/python benchmarks/generate_speed.py [--items 16] [--tokens 24] [--vllm]
"""

from __future__ import annotations

import argparse
import time

import torch

import steertax as st
from steertax.generation import generate_detailed


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def random_model(args):
    """A random-init model of the config's shape, the tests' in-process tokenizer (no hub), a random unit vector
    on the second quarter of the layers, strengths up to 4 (speed only: the texts are noise)."""
    import sys
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM

    from steertax.models import model_id, num_layers

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tokenizer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if dev == "cuda" else "float32"))
    cfg = AutoConfig.from_pretrained(args.config)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).to(dev).eval()
    L, d = num_layers(model), cfg.hidden_size
    g = torch.Generator().manual_seed(1)
    dirs = {i: torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0) for i in range(L // 4, L // 2)}
    vec = st.SteeringVector(dirs, model_id(model), d, L, "mean_diff")
    return model, make_tokenizer(), vec, 4.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--vllm", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="runs per method; the best is reported")
    ap.add_argument("--config", default=None, help="a random-init model from a transformers config JSON (speed only; GPU if any)")
    ap.add_argument("--dtype", default=None, help="with --config: float32 | bfloat16 [bfloat16 on GPU]")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.config:
        model, tok, vec, top = random_model(args)
    else:
        model, tok = st.load_model(args.model)
        vec = st.extract_vector(model, tok, st.refusal_pairs(tok, n=64, seed=0), layers="8-12", method="pca", progress=False)
        top = 0.16 * sum(vec.layer_norms.values()) / len(vec.layer_norms)
    S = [top * f for f in (-1, -0.5, -0.25, -0.125, 0, 0.125, 0.25, 0.5, 1)]
    task = st.tasks.get("refusal", scorers=["generate"])
    users = [task.user_text(it) for it in task.items(args.items, 0)]
    prompts = [u for _ in S for u in users]
    strengths = [s for s in S for _ in users]
    name = args.config or args.model
    dev = next(model.parameters()).device
    print(f"{name} on {dev}, threads {torch.get_num_threads()}: {len(users)} prompts x {len(S)} strengths, {args.tokens} new tokens")

    def run(**kw):
        return generate_detailed(model, tok, prompts, vec, strengths, max_new_tokens=args.tokens, **kw)

    methods = {"(a) HF model.generate, batch 32": dict(fast=False, batch_size=32), "(b) steertax fast greedy loop": dict(fast=True)}
    if args.vllm:
        methods["(c) vLLM backend"] = dict(backend="vllm")
        run(backend="vllm")  # engine start-up is not generation: build it first
    res = {}
    for name, kw in methods.items():
        best, out = min((timed(lambda kw=kw: run(**kw)) for _ in range(args.repeat)), key=lambda x: x[0])
        res[name] = (best, out)
        print(f"#   {name}: {best:.1f} s", flush=True)
    base_t, base_out = res["(a) HF model.generate, batch 32"]
    print(f"{'method':36s} {'s':>7s} {'new tok/s':>10s} {'x (a)':>7s} {'same text as (a)':>17s}")
    for name, (t, out) in res.items():
        ntok = sum(g.n_tokens for g in out)
        same = sum(a.text == b.text for a, b in zip(base_out, out, strict=True))
        print(f"{name:36s} {t:7.2f} {ntok / t:10.1f} {base_t / t:7.2f} {same:8d}/{len(out)}")


if __name__ == "__main__":
    main()

"""steertax's strength sweep against the steering libraries people use, in one process.

On the same model, vector, layers and items, a sweep of K strengths x N items is scored by
  (a) steertax's sweep (one batched pass: shared trunk, prefix sharing, logits only where scored);
  (b) repeng: ``ControlModel`` + ``set_control(vector, coeff)`` per strength, looping;
  (c) steering-vectors: ``SteeringVector.apply(model, multiplier=...)`` per strength, looping;
  (d) steertax one strength at a time (``score_sequences`` / ``next_token_logprobs`` with one strength).
All four must give the same probabilities (max abs diff <= 1e-4). Strength conventions: steertax adds
``r * v_hat`` to the output of each steered decoder block; repeng adds ``coeff * directions[layer]`` and
steering-vectors ``multiplier * layer_activations[layer]`` to the same block outputs, so with the unit
direction ``v_hat`` stored in the peers' vectors, ``coeff = multiplier = r``. The peers have no scoring
API; they get the loop a careful user writes: batched, left-padded (prompt + choice) sequences with
position ids from the mask, one ``model(...)`` call per batch, log-softmax over its logits.

Sections: ``cloze`` (ARC-Easy, 4 choices scored as continuations), ``letter`` (MMLU, next-token letter
probabilities), ``refusal`` (refusal-vs-compliance continuation log-probabilities), then the floor
(per-layer timings from this run), hook overhead at strength 0, steered vs unsteered generation
throughput, and extraction time and peak memory for 256 pairs (streaming vs stored activations vs
repeng's trainer; each in a fresh subprocess so peak RSS is its own).

    pip install -e '.[bench]'   (the peers; `make bench` does it in .venv-bench)
    python benchmarks/sweep_vs_peers.py [--model smollm2] [--k 21] [--n 64] [--layers 8-12]

The last two lines are ``speedup_cloze_vs_best_peer=<x>`` and ``speedup_letter_vs_best_peer=<x>``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

import steertax as st
from steertax._util import parse_layers
from steertax.interventions.steering.activations import forward, pad_batch, position_ids_from_mask
from steertax.interventions.steering.hooks import steer
from steertax.models import encode, find_blocks
from steertax.scoring import encode_continuation, next_token_logprobs, score_sequences

TOL = 1e-4


# ----------------------------------------------------------------------------------- helpers
def now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = now()
        out = fn()
        best = min(best, now() - t0)
    return best, out


def softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def plain_sequence_logprobs(model: Any, seqs: Sequence[list[int]], cont_lens: Sequence[int], pad_id: int,
                            batch_size: int) -> np.ndarray:
    """The peers' loop: summed log P(last cont_lens[r] tokens) of every whole sequence, in
    length-sorted batches (the peers get the same padding economy as steertax)."""
    out = np.zeros(len(seqs))
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda r: len(seqs[r]))
    for b0 in range(0, len(seqs), batch_size):
        idx = order[b0:b0 + batch_size]
        ids, mask = pad_batch([seqs[r] for r in idx], pad_id, "left", dev)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            tok = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        T = ids.shape[1] - 1
        for row, r in enumerate(idx):
            out[r] = float(tok[row, T - cont_lens[r]:].double().sum())
    return out


def plain_last_logprobs(model: Any, seqs: Sequence[list[int]], pad_id: int, batch_size: int) -> np.ndarray:
    """The peers' loop for next-token scoring: log-softmax at each prompt's last position."""
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda r: len(seqs[r]))
    out: list[Any] = [None] * len(seqs)
    for b0 in range(0, len(seqs), batch_size):
        idx = order[b0:b0 + batch_size]
        ids, mask = pad_batch([seqs[r] for r in idx], pad_id, "left", dev)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
            rows = torch.log_softmax(logits[:, -1].float(), dim=-1).double().cpu()
        for row, r in enumerate(idx):
            out[r] = rows[row]
    return torch.stack(out).numpy()


class Peers:
    """repeng and steering-vectors set up with the same unit directions (absent ones are skipped)."""

    def __init__(self, model: Any, vector: st.SteeringVector, layers: list[int]) -> None:
        self.model, self.layers = model, layers
        self.unit = {i: vector.directions[i].float() / vector.directions[i].float().norm() for i in layers}
        self.available: dict[str, str] = {}
        try:
            import repeng  # noqa: F401

            self.available["repeng"] = _version("repeng")
        except ImportError:
            print("# repeng is not installed (pip install -e '.[bench]'): skipped")
        try:
            import steering_vectors  # noqa: F401

            self.available["steering-vectors"] = _version("steering-vectors")
        except ImportError:
            print("# steering-vectors is not installed (pip install -e '.[bench]'): skipped")

    @contextlib.contextmanager
    def strength(self, name: str, r: float):
        if name == "repeng":
            from repeng import ControlModel, ControlVector

            cm = ControlModel(self.model, self.layers)  # wraps the chosen blocks in place
            try:
                cv = ControlVector(model_type=self.model.config.model_type,
                                   directions={i: self.unit[i].numpy() for i in self.layers})
                cm.set_control(cv, coeff=r)
                yield
            finally:
                cm.reset()
                cm.unwrap()
        elif name == "steering-vectors":
            from steering_vectors import SteeringVector as SV

            sv = SV(layer_activations={i: self.unit[i] for i in self.layers}, layer_type="decoder_block")
            with sv.apply(self.model, multiplier=r):
                yield
        else:
            raise ValueError(name)


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


# ------------------------------------------------------------------------------ floor model
def layer_costs(model: Any, tok: Any, rows: int = 32, T: int = 64) -> dict[str, Any]:
    """Seconds per token of each decoder block and of the final norm + LM head at one position,
    from a timed forward pass of ``rows`` x ``T`` tokens (best of 3)."""
    blocks = find_blocks(model)
    marks: dict[str, float] = {}

    def pre(i):
        return lambda m, a: marks.__setitem__(f"in{i}", now())

    def post(i):
        return lambda m, a, o: marks.__setitem__(f"out{i}", now())

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(tok.vocab_size, 30000), (rows, T), generator=g).to(next(model.parameters()).device)
    mask = torch.ones_like(ids)
    hs = [b.register_forward_pre_hook(pre(i)) for i, b in enumerate(blocks)]
    hs += [b.register_forward_hook(post(i)) for i, b in enumerate(blocks)]
    best_blocks = np.full(len(blocks), np.inf)
    try:
        for _ in range(3):
            with torch.inference_mode():
                forward(model, ids, mask, use_cache=False, logits_to_keep=1)
            for i in range(len(blocks)):
                best_blocks[i] = min(best_blocks[i], marks[f"out{i}"] - marks[f"in{i}"])
    finally:
        for h in hs:
            h.remove()
    per_block = best_blocks / (rows * T)
    head = model.get_output_embeddings()
    hid = torch.randn(rows * T, head.in_features, device=ids.device)
    t_head, _ = timed(lambda: head(hid), repeat=3)
    return {"per_block": per_block, "head": t_head / (rows * T)}


def floor_seconds(costs: dict[str, Any], first: int, K: int, trunk_tokens: float, tail_tokens: float,
                  scored_positions: float) -> float:
    """trunk blocks once per token + steered tail once per (token, strength) + head at scored positions."""
    pb = costs["per_block"]
    return float(trunk_tokens * pb[:first].sum() + K * tail_tokens * pb[first:].sum() + scored_positions * costs["head"])


# ------------------------------------------------------------------------------------ sections
def run_section(title: str, methods: dict[str, Callable[[], np.ndarray]], work_tokens: int, floor: float,
                prob: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    print(f"\n## {title}")
    results, times = {}, {}
    for name, fn in methods.items():
        t, raw = timed(fn)
        times[name], results[name] = t, raw
        print(f"#   ran {name}: {t:.1f} s", flush=True)
    ref = prob(results["steertax sweep"])
    base = times["steertax sweep"]
    print(f"{'method':34s} {'wall s':>8s} {'x (a)':>7s} {'tok/s':>9s} {'max|dP|':>9s}")
    for name in methods:
        d = float(np.max(np.abs(prob(results[name]) - ref)))
        ok = "" if d <= TOL else "  <-- DIFFERS"
        print(f"{name:34s} {times[name]:8.2f} {times[name] / base:7.2f} {work_tokens / times[name]:9.0f} {d:9.1e}{ok}")
        if d > TOL:
            raise SystemExit(f"{name} disagrees with the steertax sweep by {d:.2e} (> {TOL}) in {title}")
    print(f"{'floor (per-layer timings)':34s} {floor:8.2f} {floor / base:7.2f}   sweep/floor = {base / floor:.2f}")
    return times


def cloze_like(args, model, tok, vec, layers, S, prompts, conts, costs, title, prob) -> dict[str, float]:
    """Sections whose items are continuations of prompts (cloze choices, refusal continuations)."""
    K, pad = len(S), tok.pad_token_id if tok.pad_token_id is not None else 0
    penc = [encode(tok, p) for p in prompts]
    cenc = [[encode_continuation(tok, c) for c in cs] for cs in conts]
    seqs = [penc[i] + ce for i in range(len(prompts)) for ce in cenc[i]]
    clen = [len(ce) for i in range(len(prompts)) for ce in cenc[i]]
    C = max(len(c) for c in conts)
    peers = Peers(model, vec, layers)

    def shape(flat_by_strength: list[np.ndarray]) -> np.ndarray:
        out = np.full((len(prompts), K, C), np.nan)
        for s, flat in enumerate(flat_by_strength):
            r = 0
            for i, cs in enumerate(conts):
                out[i, s, :len(cs)] = flat[r:r + len(cs)]
                r += len(cs)
        return out

    def peer(name: str) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            flat = []
            for r in S:
                with peers.strength(name, r):
                    flat.append(plain_sequence_logprobs(model, seqs, clen, pad, args.batch_size))
            return shape(flat)
        return run

    methods: dict[str, Callable[[], np.ndarray]] = {
        "steertax sweep": lambda: score_sequences(model, tok, prompts, conts, S, vec, layers,
                                                  batch_size=args.batch_size).logprob,
    }
    for name in peers.available:
        methods[f"{name} {peers.available[name]} loop"] = peer(name)
    methods["steertax one strength at a time"] = lambda: np.concatenate(
        [score_sequences(model, tok, prompts, conts, [r], vec, layers, batch_size=args.batch_size).logprob for r in S], axis=1)
    work = K * sum(len(x) for x in seqs)  # tokens a whole-sequence loop processes
    first = layers[0]
    P = sum(len(p) for p in penc)
    Ct = sum(len(c) for cs in cenc for c in cs)
    scored = K * sum(1 + sum(len(c) - 1 for c in cs) for cs in cenc)
    floor = floor_seconds(costs, first, K, P + Ct, P + Ct, scored)
    times = run_section(title, methods, work, floor, prob)
    return {"times": times, "peers": list(peers.available)}


def letter(args, model, tok, vec, layers, S, costs) -> dict[str, Any]:
    task = st.tasks.get("mmlu", subjects="all")
    items = task.items(args.n, seed=0)
    prompts = [task.prompt_text(tok, it) for it in items]
    sets = task.letter_tokens(tok)
    K, pad = len(S), tok.pad_token_id if tok.pad_token_id is not None else 0
    penc = [encode(tok, p) for p in prompts]
    gold = np.asarray([it.data["gold"] for it in items])
    peers = Peers(model, vec, layers)

    def letters_from_full(full: np.ndarray) -> np.ndarray:  # [n, K, V] -> [n, K, 4]
        return np.stack([full[..., s].max(-1) for s in sets], axis=-1)

    def prob(best: np.ndarray) -> np.ndarray:  # P(correct | A-D)
        p = softmax_rows(best)
        return np.take_along_axis(p, gold[:, None, None].repeat(p.shape[1], 1), axis=-1)[..., 0]

    def ours(strengths: Sequence[float]) -> np.ndarray:
        lp, _ = next_token_logprobs(model, tok, prompts, sets, strengths, vec, layers, batch_size=args.batch_size)
        return lp.max(-1)

    def peer(name: str) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            cols = []
            for r in S:
                with peers.strength(name, r):
                    full = plain_last_logprobs(model, penc, pad, args.batch_size)
                cols.append(letters_from_full(full[:, None, :])[:, 0])
            return np.stack(cols, axis=1)
        return run

    methods: dict[str, Callable[[], np.ndarray]] = {"steertax sweep": lambda: ours(S)}
    for name in peers.available:
        methods[f"{name} {peers.available[name]} loop"] = peer(name)
    methods["steertax one strength at a time"] = lambda: np.concatenate([ours([r]) for r in S], axis=1)
    P = sum(len(p) for p in penc)
    floor = floor_seconds(costs, layers[0], K, P, P, K * len(items))
    times = run_section(f"letter: MMLU next-token letters, P(correct | A-D), N={len(items)} x K={K}", methods, K * P, floor, prob)
    return {"times": times, "peers": list(peers.available)}


def hooks_overhead(model, tok, vec, layers, batch: int = 16, T: int = 128, repeat: int = 7) -> None:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 30000, (batch, T), generator=g).to(next(model.parameters()).device)
    mask = torch.ones_like(ids)

    def run() -> Any:
        with torch.inference_mode():
            return forward(model, ids, mask, use_cache=False, logits_to_keep=1).logits

    def run_hooked() -> Any:
        with steer(model, vec, 0.0, layers):
            return run()

    run()
    # interleave to cancel drift; report the median of per-pair ratios
    ratios, t_plain, t_hook = [], [], []
    for _ in range(repeat):
        a, x = timed(run)
        b, y = timed(run_hooked)
        assert torch.equal(x, y), "strength 0 changed the logits"
        ratios.append(b / a)
        t_plain.append(a)
        t_hook.append(b)
    print(f"\n## hooks at strength 0 ({batch} x {T} tokens, layers {layers[0]}-{layers[-1]}, median of {repeat})")
    print(f"no hooks {np.median(t_plain) * 1e3:.1f} ms   hooks at r=0 {np.median(t_hook) * 1e3:.1f} ms   "
          f"overhead {100 * (np.median(ratios) - 1):+.1f}%")


def generation(model, tok, vec, layers, batch: int = 8, new: int = 48) -> None:
    prompts = [st.format_chat(tok, q) for q in [
        "Write a short poem about the sea.", "Explain how a bicycle works.", "List three uses of copper.",
        "What is a prime number?", "Describe a sunny morning.", "How do plants make food?",
        "Give advice for a job interview.", "Summarize the plot of a fairy tale."]][:batch]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids, mask = pad_batch([encode(tok, p) for p in prompts], pad, "left", next(model.parameters()).device)
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=pad,
              temperature=None, top_p=None, top_k=None)

    def gen(r: float | None) -> Any:
        ctx = contextlib.nullcontext() if r is None else steer(model, vec, r, layers)
        with ctx, torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, **kw)

    gen(None)
    tu, ts = [], []
    for _ in range(3):
        tu.append(timed(lambda: gen(None))[0])
        ts.append(timed(lambda: gen(8.0))[0])
    n_tok = batch * new
    u, s = n_tok / min(tu), n_tok / min(ts)
    print(f"\n## generation ({batch} prompts x {new} new tokens, greedy, best of 3)")
    print(f"unsteered {u:.0f} tok/s   steered (r=8, layers {layers[0]}-{layers[-1]}) {s:.0f} tok/s   ratio {s / u:.3f}")


# ------------------------------------------------------------------------------- extraction
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def extraction_child(args) -> None:
    """Runs in a fresh process: time and peak RSS growth of one extraction variant."""
    model, tok = st.load_model(args.model)
    pairs = st.harmful_harmless_pairs(tok, n=args.pairs, seed=0)
    with torch.inference_mode():
        forward(model, *pad_batch([[1, 2, 3]], 0, "left"), use_cache=False)  # warm up
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    state = float("nan")
    n_layers = len(find_blocks(model))
    if args.variant == "streaming":
        st.extract_vector(model, tok, pairs, layers="all", method="pca", heldout=0.0, progress=False)
        from steertax.interventions.steering.activations import LayerAccumulator

        acc = LayerAccumulator(model.config.hidden_size, "pca")
        state = n_layers * sum(x.nbytes for x in (acc.sum_a, acc.sum_m, acc.sum_d, acc.sum_sd, acc.sum_dd))
    elif args.variant == "stored":
        from steertax.interventions.steering.extract import _batches_of_pairs

        texts_a, texts_m = {}, {}
        plist = list(pairs)
        L = list(range(len(find_blocks(model))))
        for a, m, _, _ in _batches_of_pairs(model, tok, plist, L, "last", 16, "stored", False):
            for i in L:
                texts_a.setdefault(i, []).append(a[i])
                texts_m.setdefault(i, []).append(m[i])
        state = sum(t.nbytes for d in (texts_a, texts_m) for ts in d.values() for t in ts)
        rng = np.random.default_rng(0)
        for i in L:  # RepE recipe on stored activations: random-sign differences, centred, top PC
            d = (torch.cat(texts_a[i]) - torch.cat(texts_m[i])).double().numpy()
            d = d * rng.choice([-1.0, 1.0], size=(len(d), 1))
            d -= d.mean(0)
            np.linalg.svd(d, full_matrices=False)
    elif args.variant == "repeng":
        from repeng import ControlVector, DatasetEntry

        data = [DatasetEntry(positive=p.aligned, negative=p.misaligned) for p in pairs]
        ControlVector.train(model, tok, data, batch_size=16, method="pca_diff")
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    print(json.dumps({"seconds": dt, "peak_mb": (peak[0] - base) / 2**20, "state_mb": state / 2**20}))


def extraction(args) -> None:
    print(f"\n## extraction, all {args.n_layers} layers, harmful/harmless prompt pairs, last token (fresh process each)")
    print(f"{'variant':44s} {'pairs':>6s} {'seconds':>8s} {'peak RSS growth MB':>19s} {'kept state MB':>14s}")
    variants = [("streaming", "steertax (streaming moments)"), ("stored", "stored activations + SVD")]
    try:
        import repeng  # noqa: F401

        variants.append(("repeng", f"repeng {_version('repeng')} ControlVector.train"))
    except ImportError:
        pass
    for key, label in variants:
        for n in args.extract_pairs:
            cmd = [sys.executable, __file__, "--child-extract", key, "--pairs", str(n), "--model", args.model]
            res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, MALLOC_ARENA_MAX="1"))
            if res.returncode != 0:
                print(f"{label:44s} {n:6d}   failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            kept = "-" if r["state_mb"] != r["state_mb"] else f"{r['state_mb']:.1f}"
            print(f"{label:44s} {n:6d} {r['seconds']:8.1f} {r['peak_mb']:19.0f} {kept:>14s}")


# ------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--k", type=int, default=21, help="number of strengths (default 21)")
    ap.add_argument("--n", type=int, default=64, help="items per section (default 64)")
    ap.add_argument("--layers", default="8-12")
    ap.add_argument("--max-strength", type=float, default=16.0, help="strengths span [-x, x] (default 16)")
    ap.add_argument("--batch-size", type=int, default=32, help="rows per forward pass, the same for every method")
    ap.add_argument("--sections", default="cloze,letter,refusal,overhead,generation,extraction")
    ap.add_argument("--extract-pairs", default="64,256", help="pair counts for the extraction section")
    ap.add_argument("--dtype", default=None, help="model dtype (default: float32 on CPU)")
    ap.add_argument("--config", default=None, help="a random-init model: a transformers config JSON (speed only)")
    ap.add_argument("--child-extract", dest="variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pairs", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.extract_pairs = [int(x) for x in args.extract_pairs.split(",")]
    if args.variant:
        return extraction_child(args)
    torch.manual_seed(0)
    sections = set(args.sections.split(","))
    t_load = now()
    if args.config:
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = AutoConfig.from_pretrained(args.config)
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=getattr(torch, args.dtype or "float32")).to(dev).eval()
        _, tok = st.load_model("smollm2")  # its tokenizer; the config's vocab_size must cover it
    else:
        model, tok = st.load_model(args.model, dtype=args.dtype)
    n_layers = len(find_blocks(model))
    args.n_layers = n_layers
    layers = parse_layers(args.layers, n_layers)
    dev = next(model.parameters()).device
    print(f"# steertax {st.__version__}, torch {torch.__version__}, device {dev}"
          f"{' (' + torch.cuda.get_device_name() + ')' if dev.type == 'cuda' else f' ({torch.get_num_threads()} threads)'}")
    print(f"# model {args.model if not args.config else args.config}: {n_layers} layers, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {next(model.parameters()).dtype}; "
          f"loaded in {now() - t_load:.1f} s")
    pairs = st.harmful_harmless_pairs(tok, n=128, seed=0)
    vec = st.extract_vector(model, tok, pairs, layers=layers, method="pca", heldout=0.0, progress=False)
    S = [float(x) for x in np.linspace(-args.max_strength, args.max_strength, args.k)]
    print(f"# vector: pca on 128 harmful/harmless pairs, layers {args.layers}; K={args.k} strengths in "
          f"[{S[0]:g}, {S[-1]:g}]; N={args.n}; batch size {args.batch_size}")
    print(f"# command: python benchmarks/sweep_vs_peers.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    costs = layer_costs(model, tok)
    pb = costs["per_block"]
    print(f"# per-token cost: block {pb.mean() * 1e6:.2f} us (x{n_layers}), head {costs['head'] * 1e6:.2f} us "
          f"per scored position; trunk = blocks 0-{layers[0] - 1} = {pb[:layers[0]].sum() / pb.sum():.0%} of the blocks")
    speed: dict[str, float] = {}
    if "cloze" in sections:
        task = st.tasks.get("arc_easy")
        items = task.items(args.n, seed=0)
        prompts = [task.prompt_text(tok, it) for it in items]
        conts = [task.choice_texts(it) for it in items]
        gold = np.asarray([it.data["gold"] for it in items])
        ntok = np.asarray([[len(encode_continuation(tok, c)) for c in cs] for cs in conts], float)

        def p_correct(lp: np.ndarray) -> np.ndarray:  # length-normalized P(correct), as ARC's p_correct
            p = softmax_rows(lp / ntok[:, None, :])
            return np.take_along_axis(p, gold[:, None, None].repeat(p.shape[1], 1), axis=-1)[..., 0]

        r = cloze_like(args, model, tok, vec, layers, S, prompts, conts, costs,
                       f"cloze: ARC-Easy, 4 choices, P(correct), N={len(items)} x K={args.k}", p_correct)
        speed["cloze"] = _speedup(r)
    if "letter" in sections:
        speed["letter"] = _speedup(letter(args, model, tok, vec, layers, S, costs))
    if "refusal" in sections:
        task = st.tasks.get("refusal", scorers=["logprob"])
        items = task.items(args.n, seed=0)
        prompts = [task.prompt_text(tok, it) for it in items]
        a, m = task._conts()
        conts = [a + m] * len(items)

        def p_aligned(lp: np.ndarray) -> np.ndarray:
            la = np.logaddexp.reduce(lp[..., :len(a)], axis=-1)
            lm = np.logaddexp.reduce(lp[..., len(a):], axis=-1)
            return 1 / (1 + np.exp(lm - la))

        r = cloze_like(args, model, tok, vec, layers, S, prompts, conts, costs,
                       f"refusal: {len(a)}+{len(m)} continuations, P(aligned), N={len(items)} x K={args.k}", p_aligned)
        speed["refusal"] = _speedup(r)
    if "overhead" in sections:
        hooks_overhead(model, tok, vec, layers)
    if "generation" in sections:
        generation(model, tok, vec, layers)
    if "extraction" in sections and not args.config:
        extraction(args)
    print()
    for key in ("cloze", "letter"):
        if key in speed:
            print(f"speedup_{key}_vs_best_peer={speed[key]:.2f}")


def _speedup(r: dict[str, Any]) -> float:
    t = r["times"]
    peer_times = [v for k, v in t.items() if k.split(" ")[0] in ("repeng", "steering-vectors")]
    if not peer_times:
        return float("nan")
    return min(peer_times) / t["steertax sweep"]


if __name__ == "__main__":
    main()

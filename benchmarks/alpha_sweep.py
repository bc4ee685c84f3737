"""The cost of an α sweep (θ_base + α·Δθ per batch row) against one evaluation of the same adapter or merge.

    python benchmarks/alpha_sweep.py                       # SmolLM2, a LoRA adapter (r 16, every projection)
    python benchmarks/alpha_sweep.py --n 16 --tasks arc_easy,refusal --alphas 0.25,0.5,0.75,1,1.25

For each task it times, in one process on the same items: (a) one evaluation of the adapter (α = 1, the
peft adapter as `steertax align` evaluates it), (b) the batched sweep over the α grid (one evaluation, one row
per α), (c) the same grid one α at a time; and the same three for the adapter's dense weight delta (a merge's
path, `DeltaScale`). It prints the seconds and the ratios sweep / one evaluation and sweep / one-at-a-time, and
checks that (b) and (c) agree within 1e-4.

An α sweep cannot cost less than the work it does: every α ≠ 0 is another model, so with a delta on every layer
(no shared trunk) K values cost about K evaluations' arithmetic; what batching saves is the per-call overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import steertax as st
from steertax._util import quiet_renamed_checkpointing
from steertax.interventions import AdapterIntervention
from steertax.interventions.merge import MergedIntervention, adapter_deltas
from steertax.models import load_model


def _adapter(model, path: Path, r: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = LoraConfig(r=r, lora_alpha=2 * r, init_lora_weights=False, target_modules=targets)
    with quiet_renamed_checkpointing():
        pm = get_peft_model(model, cfg)
    with torch.no_grad():  # a realistic delta size: B small (peft's init_lora_weights=False draws it large)
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.mul_(0.02)
    pm.save_pretrained(str(path))
    pm.unload()
    return path


def _time(fn, repeats: int) -> tuple[float, list]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _vals(recs, metric):
    return np.array([float(r[metric]) for r in sorted(recs, key=lambda r: (r["strength"], r["item"], r.get("scorer", "")))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tasks", default="arc_easy,refusal")
    ap.add_argument("--alphas", default="0.25,0.5,0.75,1,1.25")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = load_model(a.model)
    grid = [float(x) for x in a.alphas.split(",")]
    with tempfile.TemporaryDirectory() as d:
        path = _adapter(model, Path(d) / "a", a.r)
        deltas = adapter_deltas(path, model)
        print(f"model {a.model}, LoRA r {a.r} on every projection, N = {a.n} items, α grid {grid}, best of {a.repeats}")
        for name in a.tasks.split(","):
            opts = {"scorers": ["logprob"]} if name.startswith("refusal") else {}
            task = st.tasks.get(name, **opts)
            items = task.items(a.n, 0)
            metric = task.metric

            def ev(iv, strengths=None, task=task, items=items):
                with iv.apply(model) as ap_:
                    S = strengths if strengths is not None else ap_.strengths
                    return st.evaluate(ap_.model, tok, task, ap_.vector, S, items=items, progress=False, reference=ap_.reference).records

            lora = (AdapterIntervention(path, "dpo", "a"), AdapterIntervention(path, "dpo", "a", scales=tuple(grid)))
            dense = (MergedIntervention(deltas, 1.0, "ta", "m"), MergedIntervention(deltas, 1.0, "ta", "m", scales=grid))
            for kind, (one_iv, sweep_iv) in (("LoRA adapter", lora), ("dense delta (merge)", dense)):
                t_one, _ = _time(lambda iv=one_iv: ev(iv), a.repeats)
                t_sweep, rec_sweep = _time(lambda iv=sweep_iv: ev(iv), a.repeats)
                t_seq, rec_seq = _time(lambda iv=sweep_iv: [r for g in grid for r in ev(iv, [g])], a.repeats)
                diff = float(np.max(np.abs(_vals(rec_sweep, metric) - _vals(rec_seq, metric))))
                assert diff < 1e-4, f"{name} {kind}: sweep and one-at-a-time differ by {diff}"
                print(
                    f"{name:12s} {kind:20s} one evaluation {t_one:7.2f} s | sweep of {len(grid)} {t_sweep:7.2f} s "
                    f"| one α at a time {t_seq:7.2f} s | sweep/one = {t_sweep / t_one:.2f}  sweep/sequential = {t_sweep / t_seq:.2f} "
                    f"| max |Δ| {diff:.1e}"
                )


if __name__ == "__main__":
    main()

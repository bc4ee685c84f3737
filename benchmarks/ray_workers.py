"""The Ray executor on this machine: one study sweep (SmolLM2, refusal log-prob + ARC-Easy cloze, 9 strengths,
chunks of 16 items) timed in one process with

  (a) the local executor (this process, all cores);
  (b) Ray, 1 worker holding all cores;
  (c) Ray, N workers (default: one per core, each with one core).

Every run writes its own store; the rows must be identical to (a)'s. Prints seconds and ratios against (a).
Ray's start-up (workers loading the model) is timed apart from the sweep.

    .venv/bin/python benchmarks/ray_workers.py [--items 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import torch

import steertax as st
from steertax.interventions import SteeringIntervention
from steertax.runners.executors import ExecutorConfig, RayExecutor, plan_work
from steertax.runners.sweep import TaskSpec, run_sweep
from steertax.store import ResultStore


def rows(store: ResultStore) -> dict[tuple, dict]:
    return {(r["task"], r["item"], r["strength"], r["scorer"]): r for r in store.records("r")}


def max_diff(a: dict, b: dict) -> float:
    """0.0 when every row is bit-identical; else the largest difference of a numeric field."""
    if a.keys() != b.keys():
        raise SystemExit("the executors wrote different rows")
    d = 0.0
    for k, ra in a.items():
        for f, x in ra.items():
            if isinstance(x, float) and x != b[k][f]:
                d = max(d, abs(x - b[k][f]))
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    model, tok = st.load_model("smollm2")
    vec = st.extract_vector(model, tok, st.refusal_pairs(tok, n=64, seed=0), layers="8-12", method="pca", progress=False)
    top = 0.16 * sum(vec.layer_norms.values()) / len(vec.layer_norms)
    grid = [top * f for f in (-1, -0.5, -0.25, -0.125, 0, 0.125, 0.25, 0.5, 1)]
    specs = [TaskSpec(st.tasks.get("refusal", scorers=["logprob"]), args.items), TaskSpec(st.tasks.get("arc_easy"), args.items)]
    src = model.config._name_or_path
    tmp = Path(tempfile.mkdtemp(prefix="steertax-raybench-"))
    res: dict[str, float] = {}
    diffs: dict[str, float] = {"(a) local executor": 0.0}

    with ResultStore(tmp / "local.sqlite") as store:
        store.begin_run("r", {}, "now")
        t0 = time.perf_counter()
        run_sweep(model, tok, vec, specs, grid, store, "r", chunk=16, progress=False)
        res["(a) local executor"] = time.perf_counter() - t0
        want = rows(store)
    print(f"#   (a) local: {res['(a) local executor']:.1f} s ({torch.get_num_threads()} threads)", flush=True)

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        for name, n, cpus in (
            ("(b) ray, 1 worker", 1, float(cores)),
            (f"(c) ray, {args.workers} workers", args.workers, cores / args.workers),
        ):
            with ResultStore(tmp / f"ray{n}.sqlite") as store:
                store.begin_run("r", {}, "now")
                t0 = time.perf_counter()
                ex = RayExecutor(
                    ExecutorConfig(kind="ray", num_workers=n, num_cpus=cpus),
                    model=src,
                    dtype=None,
                    device=None,
                    specs=specs,
                    seed=0,
                    chunk=16,
                    batch_size=32,
                    store=store,
                    progress=False,
                )
                with ex:
                    ray.get([a.pid.remote() for a in ex.actors])  # every worker has loaded the model
                    t1 = time.perf_counter()
                    ex.submit(
                        plan_work(
                            SteeringIntervention(vec, grid),
                            "r",
                            specs,
                            store,
                            seed=0,
                            chunk=16,
                            method="steering",
                            setting=None,
                            per_chunk=True,
                        )
                    )
                    ex.drain()
                    res[name] = time.perf_counter() - t1
                print(f"#   {name}: start-up {t1 - t0:.1f} s, sweep {res[name]:.1f} s", flush=True)
                diffs[name] = max_diff(rows(store), want)
    finally:
        ray.shutdown()
    base = res["(a) local executor"]
    print(f"{'executor':28s} {'sweep s':>8s} {'x (a)':>7s} {'max |diff| vs (a)':>18s}")
    for name, t in res.items():
        print(f"{name:28s} {t:8.1f} {base / t:7.2f} {diffs[name]:18.1e}")
    print("(rows are bit-identical at equal torch threads per process; the workers of (c) run one thread each)")


if __name__ == "__main__":
    main()

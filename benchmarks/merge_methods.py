"""Seconds per merge method on a merge run's specialists (SmolLM2: 210 matrices x 3 LoRA task vectors).

    .venv/bin/python benchmarks/merge_methods.py runs/merge
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from steertax.interventions.merge import adapter_deltas, merge_deltas
from steertax.models import load_model


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/merge")
    model, _ = load_model("smollm2")
    ads = sorted(p for p in (run / "adapters").iterdir() if not p.name.startswith(("mixture", ".")))
    deltas = [adapter_deltas(a, model) for a in ads]
    print(f"{len(ads)} specialists: {', '.join(a.name for a in ads)}")
    for m in ("task_arithmetic", "ties", "dare", "tsvm", "rtsvm"):
        t0 = time.perf_counter()
        merge_deltas(deltas, [1.0] * len(deltas), m, seed=0)  # each method at its own default parameters
        print(f"{m:16s} {time.perf_counter() - t0:7.1f} s", flush=True)


if __name__ == "__main__":
    main()

"""Simulated data sets for the calibration tests of steertax.analysis.decide and .sequential: the README's regime
(32 refusal and 48 ARC-Easy items, bounded scores, 8 families with identical true curves, half losing helpfulness a
little on every item and half a lot on a few) and the next issue's (binary per-item outcomes: 64 unsafe prompts for
alignment, 128 safe prompts, 48 capability and 48 drift items as three helpfulness axes). Each data set is one seeded
draw of items from a population, so "the truth" is the population's mean change."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import numpy as np

from steertax.analysis.decide import Family


def pmap(fn: Callable[[int], Any], seeds: range) -> list[Any]:
    """fn over the seeds (independent data sets) on two spawned worker processes, one BLAS thread each: the
    results are the same as a loop's, in order."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(fn, seeds, chunksize=max(1, len(seeds) // 16)))


N_ALIGN, N_HELP = 32, 48
GAIN = [0.35, 0.7, 1.05, 1.4]  # the true ΔB of each setting (knob order from the base)
COST = [0.01, 0.025, 0.045, 0.07]  # the true mean ΔH lost at each setting


def readme_regime(
    rng: np.random.Generator, n_fams: int = 8, shift: float = 0.0, shifted: int = 0, n_align: int = N_ALIGN, n_help: int = N_HELP
) -> tuple[dict[str, np.ndarray], list[Family]]:
    """Per-item refusal B ∈ [−1, 1] and ARC-Easy probabilities ∈ [0, 1]. Families with an even index lose helpfulness
    diffusely (every item a little), odd ones sparsely (1 in 8 items loses 8× as much): the same mean, skewed
    paired differences. ``shift``: family ``shifted`` loses that much more at every setting (a real difference)."""
    base = {"refusal": rng.uniform(-1, 0, n_align), "arc": rng.uniform(0.4, 0.9, n_help)}
    fams = []
    for f in range(n_fams):
        sparse = f % 2 == 1
        hit = rng.uniform(size=n_help) < 0.125
        A, H = [], []
        for g, c in zip(GAIN, COST, strict=True):
            A.append(np.clip(base["refusal"] + g + rng.normal(0, 0.3, n_align), -1, 1))
            c = c + (shift if f == shifted else 0.0)
            loss = np.where(hit, 8 * c, 0.0) if sparse else np.full(n_help, c)
            H.append(np.clip(base["arc"] - loss + rng.normal(0, 0.02, n_help), 0, 1))
        fams.append(
            Family(f"m{f}", "r", [str(g) for g in GAIN], list(GAIN), {"refusal": np.stack(A), "arc": np.stack(H)}, group="steering")
        )
    return base, fams


AXES = ("helpful_rate", "arc", "drift")
N_AXES = {"harmless": 64, "helpful_rate": 128, "arc": 48, "drift": 48}
P_REFUSE = [0.4, 0.65, 0.9]  # the true harmless rate at each setting (base 0.15)
P_LOSS = [0.03, 0.08, 0.15]  # the true share of helpful answers lost at each setting


def binary_regime(
    rng: np.random.Generator, n_fams: int = 9, shift: float = 0.0, shifted: int = 0
) -> tuple[dict[str, np.ndarray], list[Family]]:
    """Binary outcomes per item: refusal of 64 unsafe prompts (alignment), answering 128 safe prompts, 48 correct
    capability answers, 48 drift-free answers (three helpfulness axes). Items differ in difficulty (a latent per
    item), every family has the same true rates; ``shift`` lowers family ``shifted``'s helpful rate."""
    lat = {k: rng.normal(0, 1, n) for k, n in N_AXES.items()}
    p_base = {"harmless": 0.15, "helpful_rate": 0.9, "arc": 0.7, "drift": 0.95}

    def draw(k: str, p: float) -> np.ndarray:
        q = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + 0.8 * lat[k])))
        return (rng.uniform(size=len(q)) < q).astype(float)

    base = {k: draw(k, p) for k, p in p_base.items()}
    fams = []
    for f in range(n_fams):
        sc: dict[str, list[np.ndarray]] = {k: [] for k in N_AXES}
        for pr, pl in zip(P_REFUSE, P_LOSS, strict=True):
            sc["harmless"].append(draw("harmless", pr))
            for k in AXES:
                loss = pl + (shift if f == shifted and k == "helpful_rate" else 0.0)
                sc[k].append(draw(k, min(max(p_base[k] - loss, 0.01), 0.99)))
        fams.append(
            Family(f"m{f}", "r", [str(p) for p in P_REFUSE], list(P_REFUSE), {k: np.stack(v) for k, v in sc.items()}, group="steering")
        )
    return base, fams

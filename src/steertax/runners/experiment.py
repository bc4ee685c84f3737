"""`steertax experiment`: every way of aligning one model, run and decided by one command.

An experiment config lists the runs (each a `steertax run`, `align` or `merge` config: a built-in's name or a file)
over one model, and the comparison's settings. :func:`run_experiment` checks every run's inputs first (one line
naming each problem, before any model loads), runs what is missing into ``OUT/runs/<name>`` (each command
resumes: finished folders and cells are reused), then writes the decision of `steertax compare` over all of them
into ``OUT`` (compare.json, compare.md, report.html, figures/) and ``OUT/experiment.json`` (each run's wall time).

The built-in ``experiment`` is the default experiment on SmolLM2: the steering study with the aligning-prompt
ladder, conditional steering, the fine-tuning methods and the merges, every one scoring the shared over-refusal
pool, decided on every shared helpfulness axis at the harmless rate on the harmful requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from steertax._util import atomic_write_json
from steertax.config import build_config, load_config, load_yaml
from steertax.errors import ConfigError, SteertaxError
from steertax.interventions.steering.vectors import now_iso
from steertax.runners.align import check_align, load_align_config, run_align
from steertax.runners.compare import DEFAULT_WEIGHTS, compare
from steertax.runners.merge import check_merge, run_merge
from steertax.runners.merge_config import load_merge_config
from steertax.runners.preflight import check_study, raise_problems
from steertax.runners.study import run_study

__all__ = ["ExperimentConfig", "RunSpec", "CompareSpec", "load_experiment_config", "run_experiment", "COMMANDS"]

EXPERIMENT_BUILTINS = ("experiment",)


@dataclass
class RunSpec:
    """One run of the experiment: its folder name under ``OUT/runs``, the command and its config."""

    name: str = ""
    command: str = "run"  # run | align | merge
    config: Optional[str] = None  # a built-in config's name or a YAML file (default: the command's own default)


@dataclass
class CompareSpec:
    """The comparison over the runs (:func:`steertax.runners.compare.compare`'s settings)."""

    alignment: Optional[str] = None  # default: the harmless rate on the harmful requests
    helpfulness: Optional[list[str]] = None  # default: every helpfulness axis the runs share
    helpfulness_weight: float = 0.5
    weights: list[float] = field(default_factory=lambda: list(DEFAULT_WEIGHTS))
    max_tax: Optional[float] = None
    exclude: list[str] = field(default_factory=list)
    levels: Optional[list[float]] = None
    alpha: float = 0.05
    adjust: str = "maxt"
    n_boot: int = 2000


@dataclass
class ExperimentConfig:
    model: Optional[str] = None  # every run's model (default: each run config's own, which must then agree)
    runs: list[RunSpec] = field(default_factory=list)
    compare: CompareSpec = field(default_factory=CompareSpec)


# command -> (load its config, check its inputs (config, out) before the model loads, run it (config, out, progress))
COMMANDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Path], Any], Callable[..., Any]]] = {
    "run": (load_config, lambda c, out: raise_problems(check_study(c, out)[0]), run_study),
    "align": (load_align_config, check_align, run_align),
    "merge": (load_merge_config, check_merge, run_merge),
}


def load_experiment_config(path_or_name: str | Path | None) -> ExperimentConfig:
    """The built-in ``experiment`` (None) or a YAML file; every key checked, one line naming the fix."""
    d = load_yaml(path_or_name, EXPERIMENT_BUILTINS, "experiment")
    cfg = build_config(ExperimentConfig, d, "")
    if not cfg.runs:
        raise ConfigError("runs: list at least one run (e.g. `- {name: study, command: run, config: default}`)")
    seen: set[str] = set()
    for i, r in enumerate(cfg.runs):
        if r.command not in COMMANDS:
            raise ConfigError(f"runs[{i}].command: {r.command!r} is not one of {sorted(COMMANDS)}")
        if not r.name or "/" in r.name or r.name in (".", ".."):
            raise ConfigError(f"runs[{i}].name: {r.name!r} is not a folder name: give each run a short name (e.g. study)")
        if r.name in seen:
            raise ConfigError(f"runs[{i}].name: {r.name!r} appears twice: give each run its own name")
        seen.add(r.name)
    c = cfg.compare
    for w in (c.helpfulness_weight, *c.weights):
        if not 0 <= w <= 1:
            raise ConfigError(f"compare: helpfulness weight {w} must be in [0, 1]")
    if c.max_tax is not None and c.max_tax < 0:
        raise ConfigError(f"compare.max_tax: {c.max_tax} must be a percentage of 0 or more")
    return cfg


def _configs(cfg: ExperimentConfig, quick: bool) -> list[tuple[RunSpec, Any]]:
    """Every run's config, loaded (the experiment's model set, a quick version on request) and on one model."""
    out = []
    for r in cfg.runs:
        load = COMMANDS[r.command][0]
        try:
            c = load(r.config)
        except SteertaxError as e:
            raise type(e)(f"runs[{r.name}]: {e}") from None
        if cfg.model is not None:
            c.model = cfg.model
        if quick:
            c = c.quick_version()
        out.append((r, c))
    models = {c.model for _, c in out}
    if len(models) > 1:
        which = ", ".join(f"{r.name}: {c.model}" for r, c in out)
        raise ConfigError(f"the runs measure different models ({which}): set the experiment's model: (one model per experiment)")
    return out


def run_experiment(cfg: ExperimentConfig, out: str | Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Check every run, run what is missing, decide (see the module docstring); returns the comparison."""
    out = Path(out)
    runs = _configs(cfg, quick)
    problems = []
    for r, c in runs:  # every input of every run, before any model loads
        try:
            COMMANDS[r.command][1](c, out / "runs" / r.name)
        except SteertaxError as e:
            problems.append(f"runs[{r.name}]: {e}")
    if problems:
        raise ConfigError(f"{len(problems)} problem(s), found before loading any model: " + "; ".join(problems))
    timings: dict[str, float] = {}
    for r, c in runs:
        t0 = time.perf_counter()
        COMMANDS[r.command][2](c, out / "runs" / r.name, progress=progress)
        timings[r.name] = round(time.perf_counter() - t0, 1)
    cs = cfg.compare
    t0 = time.perf_counter()
    res = compare(
        [out / "runs" / r.name for r, _ in runs],
        out,
        alignment=cs.alignment,
        helpfulness=cs.helpfulness,
        helpfulness_weight=cs.helpfulness_weight,
        weights=cs.weights,
        max_tax=cs.max_tax,
        levels=cs.levels,
        alpha=cs.alpha,
        adjust=cs.adjust,
        n_boot=cs.n_boot,
        exclude=cs.exclude,
        progress=progress,
    )
    timings["compare"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(
        out / "experiment.json",
        {
            "created": now_iso(),
            "quick": quick,
            "runs": [{"name": r.name, "command": r.command, "config": r.config} for r, _ in runs],
            "wall_seconds": timings,
        },
    )
    return res

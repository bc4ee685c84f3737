"""The tradeoff study end to end: vector -> sweep -> laws -> theory -> efficient strength -> tax -> report.

``run_study(cfg, out)`` is what ``steertax run`` calls. Everything lands in ``out``:
config.resolved.yaml, results.sqlite (+ results.parquet), theory.json, summary.json, report.html and
figures/*.png. Rerunning the same config resumes; ``analyze(out)`` redoes only the analysis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import transformers
import yaml

from steertax import tasks as T
from steertax._faults import checkpoint
from steertax._util import atomic_write_json, atomic_write_text, json_default, parse_layers, sanitize_json
from steertax._version import __version__
from steertax.analysis.theory import estimate_constants
from steertax.config import RunConfig
from steertax.errors import ConfigError
from steertax.interventions import SteeringIntervention, condition_id, store_key
from steertax.interventions.conditional import Condition, check_condition_layer, fit_from_sources
from steertax.interventions.prompting import RUNG_KNOB, PromptingIntervention, ladder_interventions
from steertax.interventions.steering.extract import extract_vector
from steertax.interventions.steering.pairs import get_pairs
from steertax.interventions.steering.vectors import SteeringVector, now_iso
from steertax.manifest import R_KNOB, Entry, Family, Manifest, Row
from steertax.models import template_roles
from steertax.runners.preflight import preflight
from steertax.runners.session import session
from steertax.runners.study_summary import analyze
from steertax.runners.sweep import TaskSpec
from steertax.tasks.behavior import BehaviorTask
from steertax.tasks.choice import MMLU, ARCEasy, ClozeTask

__all__ = ["run_study", "analyze", "strength_grid", "compute_theory"]


def strength_grid(cfg: RunConfig, vec: SteeringVector) -> tuple[list[float], dict[str, Any]]:
    s = cfg.strengths
    norms = [vec.layer_norms[i] for i in vec.layers if i in vec.layer_norms]
    mean_norm = float(np.mean(norms)) if norms else float("nan")
    if s.values is not None:
        grid = sorted({float(v) + 0.0 for v in s.values} | {0.0})
        how = "explicit values"
    else:
        if not np.isfinite(mean_norm):
            raise ConfigError("strengths: the vector has no recorded layer norms; give strengths.values explicitly")
        top = s.max_relative * mean_norm
        pos = np.linspace(0, top, s.n)
        if s.n_local:
            pos = np.concatenate([pos, np.linspace(0, s.local_fraction * top, s.n_local + 1)[1:]])
        grid = sorted({round(float(x), 2) + 0.0 for x in (np.concatenate([-pos, pos]) if s.both_signs else pos)})
        how = f"{s.n} points from 0 to {s.max_relative} x mean residual norm {mean_norm:.1f}" + (" on both signs" if s.both_signs else "")
        if s.n_local:
            how += f", plus {s.n_local} per side in the small-|r| window |r| <= {s.local_fraction:g} x the largest"
    info = {
        "how": how,
        "mean_residual_norm": mean_norm,
        "relative": [g / mean_norm if np.isfinite(mean_norm) and mean_norm else None for g in grid],
        "total_norm_per_token": [abs(g) * np.sqrt(len(vec.layers)) for g in grid],
        "n_layers_steered": len(vec.layers),
    }
    return grid, info


def _versions() -> dict[str, str]:

    return {
        "steertax": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _task_specs(cfg: RunConfig):

    return [TaskSpec(T.get(t.name, **t.options), t.limit, t.label) for t in cfg.tasks]


def _data_hash(task: Any, limit: int | None, seed: int) -> str:
    items = task.items(limit, seed)
    blob = json.dumps([[it.id, it.data] for it in items], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _get_vector(cfg: RunConfig, model: Any, tok: Any, out: Path, run_id: str, progress: bool) -> tuple[SteeringVector, Path]:

    v = cfg.vector
    if v.path:
        vec = SteeringVector.load(v.path)
        vec.check_compatible(model, force=False)
        path = Path(v.path)
    else:
        path = out / cfg.vector_file_name()
        if path.is_file():
            vec = SteeringVector.load(path)
        else:
            ps = get_pairs(v.pairs, tok, v.n_pairs, seed=cfg.seed)
            vec = extract_vector(
                model,
                tok,
                ps,
                layers=v.layers,
                method=v.method,
                position=v.position,
                heldout=v.heldout,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
                progress=progress,
            )
            vec.save(path)
    if v.negate:
        vec = -vec
    return vec.select(v.layers), path


def _get_condition(cfg: RunConfig, model: Any, tok: Any, vec: SteeringVector, out: Path, progress: bool) -> tuple[Any, Path]:
    """The study's condition: loaded from ``steering.condition.path``, or fitted (and cached in the run
    folder under a hash of what shapes it) on layers below the first steered one."""

    c = cfg.steering.condition
    assert c is not None
    if c.path:
        cond = Condition.load(c.path)
        cond.check_model(model)
        path = Path(c.path)
    else:
        spec = {"model": cfg.model, "seed": cfg.seed, "layers": cfg.vector.layers, **dataclasses.asdict(c)}
        path = out / f"condition-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]}.safetensors"
        if path.is_file():
            cond = Condition.load(path)
        else:
            first = min(vec.layers)
            layers = parse_layers(c.layers) if c.layers is not None else list(range(first))
            cond = fit_from_sources(
                model,
                tok,
                c.positive,
                c.negative,
                c.n,
                chat=c.chat,
                seed=cfg.seed,
                layers=layers,
                objective=c.objective,
                target_fpr=c.target_fpr,
                batch_size=cfg.batch_size,
                read=c.read,
                score=c.score,
            )
            cond.save(path)
    if c.threshold is not None:
        cond = dataclasses.replace(cond, threshold=c.threshold)
    check_condition_layer(cond, vec.layers)
    return cond, path


def compute_theory(cfg: RunConfig, model: Any, tok: Any, vec: SteeringVector, grid: list[float]) -> dict[str, Any]:

    # 'refusal[generate]' names a scorer's entry for r*; the theory step reads the task's log-probabilities
    an, hn = (n.partition(":")[0].split("[", 1)[0] for n in (cfg.study.alignment_task, cfg.study.helpfulness_task))
    at = T.get(an, **_opts(cfg, an))
    ht = T.get(hn, **_opts(cfg, hn))
    if not isinstance(at, BehaviorTask):
        raise ConfigError(f"study.alignment_task {at.name!r} must be a behavior task (refusal, bias_agreement, ...)")
    n = cfg.theory.n_prompts
    a_items = at.items(n, cfg.seed + 1)
    prompts = [at.prompt_text(tok, it) for it in a_items]
    a_set, m_set = at._conts()
    if isinstance(ht, MMLU):
        h_items = ht.items(n, cfg.seed + 1)
        h_prompts = [ht.prompt_text(tok, it) for it in h_items]
        letters = ht.letter_tokens(tok)
        h_correct = [letters[it.data["gold"]][-1] for it in h_items]
    else:
        # a cloze task's gold continuation gives the correct token; fall back to ARC-Easy (the registry's
        # "arc_easy", default options) for sigma when the helpfulness task has no single correct token
        cloze = ht if isinstance(ht, ClozeTask) else ARCEasy()
        h_items = cloze.items(n, cfg.seed + 1)
        h_prompts = [cloze.prompt_text(tok, it) for it in h_items]
        h_correct = [tok(cloze.choice_texts(it)[it.data["gold"]], add_special_tokens=False)["input_ids"][0] for it in h_items]
    r_max = cfg.theory.r_max or max(abs(g) for g in grid) / 2
    return estimate_constants(
        model,
        tok,
        vec,
        align_prompts=prompts,
        aligned_texts=a_set,
        misaligned_texts=m_set,
        help_prompts=h_prompts,
        help_correct=h_correct,
        r_max=r_max,
        n_points=cfg.theory.n_points,
        top_k=cfg.theory.top_k,
        batch_size=cfg.batch_size,
    )


def _opts(cfg: RunConfig, name: str) -> dict[str, Any]:
    for t in cfg.tasks:
        if (t.label or t.name) == name:
            return dict(t.options)
    return {}


def run_study(cfg: RunConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:

    out = Path(out)
    preflight(cfg, out)  # every input (data, vector/pairs, names, out dir) checked before anything is written or loaded
    run_id = cfg.content_hash()
    made: dict[str, Any] = {}

    def prepare(model: Any, tok: Any) -> None:  # the vector (and condition) and the resolved config, before the store
        vec, vec_path = _get_vector(cfg, model, tok, out, run_id, progress)
        checkpoint("vector")
        grid, grid_info = strength_grid(cfg, vec)
        cond, cond_path = _get_condition(cfg, model, tok, vec, out, progress) if cfg.steering.condition is not None else (None, None)
        resolved: dict[str, Any] = {
            "run_id": run_id,
            "created": now_iso(),
            "config": cfg.to_dict(),
            "resolved": {
                "strengths": grid,
                "strength_grid": grid_info,
                "vector_file": str(vec_path),
                "vector": vec.metadata(),
                "versions": _versions(),
                "model": {
                    "name": cfg.model,
                    "class": model.__class__.__name__,
                    "hidden_size": vec.hidden_size,
                    "num_layers": vec.num_layers,
                },
                "data_hashes": {s.name: _data_hash(s.task, s.limit, cfg.seed) for s in _task_specs(cfg)},
            },
        }
        ivs = [SteeringIntervention(vec, grid)]
        if cond is not None:
            resolved["resolved"].update(condition_file=str(cond_path), condition=cond.metadata(), condition_id=condition_id(cond))
            ivs.append(SteeringIntervention(vec, grid, cond))
        resolved["resolved"]["store_keys"] = {iv.method: store_key(run_id, iv) for iv in ivs}
        rungs = []
        if cfg.prompting is not None:  # the first rung adds no text: it is the base, the sweep's r = 0 rows
            p = cfg.prompting
            rungs = ladder_interventions(p.rungs(), p.system, p.demonstrations, cfg.seed)[1:]
            resolved["resolved"]["prompting"] = {
                "roles": dataclasses.asdict(template_roles(tok)),
                "rungs": [{"label": iv.name(), "rung": iv.index, "key": store_key(run_id, iv), **iv.describe()} for iv in rungs],
            }
        resolved = sanitize_json(json.loads(json.dumps(resolved, default=json_default)))
        atomic_write_text(out / "config.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
        made.update(vec=vec, grid=grid, ivs=ivs, rungs=rungs)

    with session(cfg, out, run_id, stale=(".*.tmp", "figures/.*.tmp"), progress=progress, prepare=prepare) as S:
        for iv in made["ivs"]:  # unconditional, then conditional steering (its own rows only)
            S.evaluate(iv)
        for iv in made["rungs"]:  # the aligning-prompt ladder, rung by rung
            S.evaluate(iv)
    study_manifest(cfg, run_id, made["ivs"], made["grid"], made["rungs"]).write(out)
    theory_path = out / f"theory-{run_id}.json"
    if cfg.theory.enabled and not theory_path.is_file():
        atomic_write_json(theory_path, compute_theory(cfg, S.model, S.tokenizer, made["vec"], made["grid"]))
    return analyze(out)


def study_manifest(
    cfg: RunConfig,
    run_id: str,
    ivs: Sequence[SteeringIntervention],
    grid: Sequence[float],
    rungs: Sequence[PromptingIntervention] = (),
) -> Manifest:
    """A study folder's manifest: one family per sweep (steering, and conditional steering with a condition)
    along r from the base (r = 0, the unconditional sweep's rows at 0) outwards; negative strengths are rows of the
    sweep on no curve; and the aligning-prompt ladder (one entry per rung after the first, which is the base) along
    its rung."""
    keys = [store_key(run_id, iv) for iv in ivs]
    man = Manifest("run", run_id, cfg.model, cfg.dtype, cfg.seed, cfg.to_dict()["tasks"], keys[0], 0.0)
    for iv, key in zip(ivs, keys, strict=True):
        fam = man.add_family(Family(iv.method, iv.method, "steering", R_KNOB))
        rows = [Row(f"r={r:g}", float(r), {fam.name: float(r)} if r > 0 else {}) for r in sorted(float(x) for x in grid)]
        man.entries.append(Entry(key, iv.method, iv.name(), rows))
    if rungs:
        fam = man.add_family(Family("prompting", "prompting", "prompting", RUNG_KNOB))
        for p in rungs:
            man.entries.append(Entry(store_key(run_id, p), p.method, p.name(), [Row(p.name(), None, {fam.name: float(p.index)})]))
    return man

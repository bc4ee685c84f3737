"""The tradeoff study end to end: vector -> sweep -> laws -> theory -> efficient strength -> tax -> report.

``run_study(cfg, out)`` is what ``steertax run`` calls. Everything lands in ``out``:
config.resolved.yaml, results.sqlite (+ results.parquet), theory.json, summary.json, report.html and
figures/*.png. Rerunning the same config resumes; ``analyze(out)`` redoes only the analysis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import transformers
import yaml

from steertax import tasks as T
from steertax._faults import checkpoint
from steertax._util import atomic_write_json, atomic_write_text, parse_layers
from steertax._version import __version__
from steertax.analysis.laws import fit_law, fit_task, item_matrix
from steertax.analysis.stats import paired_change, paired_ratio
from steertax.analysis.tax import efficient_strength, interp_mean, law_function, split_items, tax_table
from steertax.analysis.theory import bound_check, estimate_constants, predicted_alignment, predicted_helpfulness
from steertax.config import RunConfig, from_dict, upgrade_resolved
from steertax.errors import ConfigError, DataError
from steertax.interventions import SteeringIntervention, condition_id, store_key
from steertax.interventions.conditional import Condition, check_condition_layer, confusion, fit_from_sources
from steertax.interventions.steering.extract import extract_vector
from steertax.interventions.steering.pairs import get_pairs
from steertax.interventions.steering.vectors import SteeringVector, now_iso
from steertax.manifest import R_KNOB, Entry, Family, Manifest, Row, folder_kind
from steertax.reports.study import write_report
from steertax.runners.preflight import preflight
from steertax.runners.session import session
from steertax.runners.sweep import TaskSpec
from steertax.store import ResultStore
from steertax.tasks.base import summarize
from steertax.tasks.behavior import BehaviorTask
from steertax.tasks.choice import MMLU, ARCEasy, ClozeTask

log = logging.getLogger(__name__)
TRUNCATION_WARN = 0.05  # a run warns when more answers than this (at any strength) hit max_new_tokens unfinished

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


def study_keys(resolved: dict[str, Any]) -> dict[str, str]:
    """The store keys of a study folder's sweeps (``steering``, and ``conditional`` with a condition), as
    its config.resolved.yaml records them (:func:`steertax.interventions.store_key` made them)."""
    keys = (resolved.get("resolved") or {}).get("store_keys")
    if not keys:
        raise DataError(
            "this run folder was written by an older steertax (its store keys carry no intervention key): "
            "rerun the same `steertax run` into it to recompute its rows under the new keys"
        )
    return dict(keys)


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
    an, hn = (n.split("[", 1)[0] for n in (cfg.study.alignment_task, cfg.study.helpfulness_task))
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
        resolved = _sanitize(json.loads(json.dumps(resolved, default=_json_default)))
        atomic_write_text(out / "config.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
        made.update(vec=vec, grid=grid, ivs=ivs)

    with session(cfg, out, run_id, stale=(".*.tmp", "figures/.*.tmp"), progress=progress, prepare=prepare) as S:
        for iv in made["ivs"]:  # unconditional, then conditional steering (its own rows only)
            S.evaluate(iv)
    study_manifest(cfg, run_id, made["ivs"], made["grid"]).write(out)
    theory_path = out / f"theory-{run_id}.json"
    if cfg.theory.enabled and not theory_path.is_file():
        atomic_write_json(theory_path, compute_theory(cfg, S.model, S.tokenizer, made["vec"], made["grid"]))
    return analyze(out)


def study_manifest(cfg: RunConfig, run_id: str, ivs: Sequence[SteeringIntervention], grid: Sequence[float]) -> Manifest:
    """A study folder's manifest: one family per sweep (steering, and conditional steering with a condition)
    along r from the base (r = 0, the unconditional sweep's rows at 0) outwards; negative strengths are rows of the
    sweep on no curve."""
    keys = [store_key(run_id, iv) for iv in ivs]
    man = Manifest("run", run_id, cfg.model, cfg.dtype, cfg.seed, cfg.to_dict()["tasks"], keys[0], 0.0)
    for iv, key in zip(ivs, keys, strict=True):
        fam = man.add_family(Family(iv.method, iv.method, "steering", R_KNOB))
        rows = [Row(f"r={r:g}", float(r), {fam.name: float(r)} if r > 0 else {}) for r in sorted(float(x) for x in grid)]
        man.entries.append(Entry(key, iv.method, iv.name(), rows))
    return man


def _entries(cfg: RunConfig, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in cfg.tasks:
        task = T.get(t.name, **t.options)
        key = t.label or t.name
        recs = [r for r in records if r["task"] == key]
        scorers = sorted({r["scorer"] for r in recs}, key=lambda s: (s != "logprob", s))
        for k, sc in enumerate(scorers):
            name = key if k == 0 else f"{key}[{sc}]"
            out[name] = {
                "task": key,
                "name": t.name,
                "axis": task.axis,
                "metric": task.metric,
                "scorer": sc,
                "records": [r for r in recs if r["scorer"] == sc],
                "task_obj": task,
            }
    return out


def _fit_entry(e: dict[str, Any], n_boot: int, seed: int, items: set[str] | None = None, local_fraction: float = 0.25) -> dict[str, Any]:
    recs = e["records"] if items is None else [r for r in e["records"] if str(r["item"]) in items]
    if e["metric"] in T.DRIFT_METRICS:
        S, _, Y = item_matrix(recs, e["metric"])

        f = fit_law("quadratic", S, Y, n_boot=n_boot, seed=seed)
        f["note"] = "drift grows with |r|; fitted with a quadratic"
        return f
    chance = e["task_obj"].chance if e["metric"] in ("p_correct", "p_abcd") else None
    grid = sorted({float(r["strength"]) for r in recs})
    r_local = local_fraction * max(abs(x) for x in grid) if grid else None
    f = fit_task(recs, e["metric"], e["axis"], n_boot=n_boot, seed=seed, chance=chance, r_local=r_local)
    if chance:
        f["chance"] = chance
    return f


def truncation(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The fraction of generations that hit the token budget unfinished: overall, per strength, and the
    worst strength. Empty for records without a ``truncated`` field (scorers that do not generate)."""
    rs = [r for r in records if r.get("truncated") is not None]
    if not rs:
        return {}
    by: dict[float, list[float]] = {}
    for r in rs:
        by.setdefault(float(r["strength"]), []).append(float(r["truncated"]))
    frac = {s: float(np.mean(v)) for s, v in sorted(by.items())}
    worst = max(frac, key=lambda s: (frac[s], -abs(s)))
    overall = float(np.mean([float(r["truncated"]) for r in rs]))
    return {"overall": overall, "max": frac[worst], "worst_strength": worst, "by_strength": frac}


def _paired_stderr(records: list[dict[str, Any]], metric: str) -> dict[float, float | None]:
    """Per strength: the standard error of the per-item change from r = 0 (what ΔB and ΔH are)."""
    S, _, Y = item_matrix(records, metric)
    if not (S == 0).any():
        return {}
    z = int(np.flatnonzero(S == 0)[0])
    out: dict[float, float | None] = {}
    for j, r in enumerate(S):
        d = Y[:, j] - Y[:, z]
        d = d[np.isfinite(d)]
        out[float(r)] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
    return out


def _bound_checks(tasks_out: dict[str, Any], theory: dict[str, Any], st: Any) -> dict[str, Any]:
    """Per task: does the measured curve respect the theory's predicted bound (with each task's own
    B0 or p0, and the constants m and σ measured on the study's alignment/helpfulness prompts)?"""

    out: dict[str, Any] = {}
    for name, t in tasks_out.items():
        bs = t["by_strength"]
        if not bs or t["metric"] in T.DRIFT_METRICS:
            continue
        r = np.asarray([b["strength"] for b in bs], dtype=float)
        y0 = next((b["mean"] for b in bs if b["strength"] == 0.0), None)
        if y0 is None:
            continue
        if t["axis"] == "alignment" and theory.get("m") is not None and np.isfinite(theory["m"]):
            bound = predicted_alignment(r, theory["m"], y0)
            chk = bound_check(r, [b["mean"] for b in bs], [b["stderr"] for b in bs], bound, "alignment")
            chk.update(bound="B(r) ≥ tanh(½·m·r + artanh B0) for r > 0 (≤ for r < 0)", B0=y0, constants_from=st.alignment_task)
        elif t["axis"] == "helpfulness" and theory.get("sigma") is not None and 0 < y0 <= 1:
            bound = predicted_helpfulness(r, y0, theory["sigma"])
            chk = bound_check(r, [b["mean"] for b in bs], [b["stderr"] for b in bs], bound, "upper")
            chk.update(bound="H(r) ≤ 1/(1 + a + a·σ²r²/2), a = (1 − p0)/p0", p0=y0, constants_from=st.helpfulness_task)
            if t.get("fit", {}).get("chance"):
                chk["note"] = (
                    f"{t['metric']} is normalized over the choices (chance {t['fit']['chance']:g}); the bound is "
                    "derived for a full-vocabulary probability, so it is compared as the paper states it"
                )
        else:
            continue
        if chk["holds"] is None:  # a missing standard error is a missing check, not a pass or a violation
            at = ", ".join(f"{x:g}" for x in chk["unchecked_at_r"])
            chk["verdict"] = (
                f"can't tell: no standard error at {chk['n_unchecked']} of {chk['n_points']} strengths (r = {at}) "
                "whose mean lies on the wrong side of the bound"
            )
        elif chk["holds"]:
            chk["verdict"] = "respected at every strength"
        else:
            chk["verdict"] = (
                f"violated at {chk['n_violations']} of {chk['n_points']} strengths, by up to "
                f"{chk['max_violation']:.3g} (r = {chk['at_r']:g})"
            )
        out[name] = chk
    return out


def _task_summary(name: str, e: dict[str, Any], cfg: RunConfig) -> tuple[dict[str, Any], str | None]:
    """One task's summary entry (curve, fit, truncation) and its warning line, if any."""
    summ = summarize(e["records"], [e["metric"]])
    dse = _paired_stderr(e["records"], e["metric"])
    out = {
        "axis": e["axis"],
        "metric": e["metric"],
        "scorer": e["scorer"],
        "task": e["name"],
        "by_strength": [
            {**{k: s[k] for k in ("strength", "mean", "stderr", "n")}, "delta_stderr": dse.get(float(s["strength"]))} for s in summ
        ],
        "fit": _fit_entry(e, cfg.study.n_boot, cfg.seed, local_fraction=cfg.strengths.local_fraction),
        "extra": e["task_obj"].aggregate(e["records"]),
    }
    trunc = truncation(e["records"])
    if not trunc:
        return out, None
    per = trunc.pop("by_strength")
    out["truncation"] = trunc
    for b in out["by_strength"]:
        b["truncated"] = per.get(float(b["strength"]))
    if e["task_obj"].needs_finished_answer and trunc["max"] > TRUNCATION_WARN:
        at0 = per.get(0.0)
        why = (
            "unsteered answers finish, so steering keeps the model from finishing (scored as wrong)"
            if at0 is not None and at0 <= TRUNCATION_WARN
            else "its scores count them as wrong: raise the task's max_new_tokens option"
        )
        pct, at = 100 * trunc["max"], trunc["worst_strength"]
        return out, f"{name}: {pct:.0f}% of answers hit max_new_tokens unfinished (at r = {at:g}); {why}"
    return out, None


def _study_split(cfg: RunConfig, entries: dict[str, dict[str, Any]]) -> tuple[set[str], set[str], set[str]] | None:
    """The validation and held-out items r* is chosen and measured on (a hash split of the alignment and
    helpfulness tasks' item ids), and the entries those items belong to (every scorer of those two tasks);
    None when either task is missing."""
    st = cfg.study
    if st.alignment_task not in entries or st.helpfulness_task not in entries:
        return None
    ea, eh = entries[st.alignment_task], entries[st.helpfulness_task]
    ids = sorted({str(r["item"]) for r in ea["records"]} | {str(r["item"]) for r in eh["records"]})
    val, test = split_items(ids, st.validation_fraction, cfg.seed)
    chosen_on = {n for n, e in entries.items() if e["task"] in (ea["task"], eh["task"])}
    return val, test, chosen_on


NO_LAW = "no law fits, r* not chosen"


def _efficient(cfg: RunConfig, entries: dict[str, dict[str, Any]], grid: list[float]) -> dict[str, Any]:
    """The efficient strength r* from laws fitted on a validation split of items; held-out ΔB, ΔH at r*.
    ``ok`` is False, with a ``reason`` and no r*, when r* could not be chosen (a task missing, no law fits on
    the validation split, or no strength keeps the drift KL under the ceiling)."""
    st = cfg.study
    split = _study_split(cfg, entries)
    if split is None:
        return {"ok": False, "reason": "the study's alignment or helpfulness task is missing, r* not chosen"}
    val, test, _ = split
    ea, eh = entries[st.alignment_task], entries[st.helpfulness_task]
    lf = cfg.strengths.local_fraction
    fa, fh = _fit_entry(ea, 0, cfg.seed, val, lf), _fit_entry(eh, 0, cfg.seed, val, lf)
    fB, fH = law_function(fa), law_function(fh)
    where: dict[str, Any] = {"alignment_task": st.alignment_task, "helpfulness_task": st.helpfulness_task}
    where.update(n_validation_items=len(val), n_test_items=len(test))
    if fB is None or fH is None:
        failed = " and ".join(n for n, f in ((st.alignment_task, fB), (st.helpfulness_task, fH)) if f is None)
        return {
            "ok": False,
            "reason": NO_LAW,
            "detail": f"no law could be fitted to {failed} on the validation split",
            **where,
            "validation_fits": {"alignment": fa, "helpfulness": fh},
        }
    kl = None
    drift = [n for n, e in entries.items() if T.has_trait(e["name"], T.DISTANCE_FROM_BASE)]
    if st.kl_ceiling is not None and drift:
        drec = entries[drift[0]]["records"]
        kl = lambda r: np.asarray([interp_mean(drec, "kl", float(x)) for x in np.atleast_1d(r)])  # noqa: E731
    eff = efficient_strength(fB, fH, (min(grid), max(grid)), st.helpfulness_weight, kl, st.kl_ceiling)
    eff.update(where, validation_fits={"alignment": fa, "helpfulness": fh})
    if not eff["ok"]:
        eff["reason"] = f"{eff['reason']}, r* not chosen"
        return eff
    r = eff["r_star"]
    eff["heldout"] = {
        "dB": interp_mean(ea["records"], ea["metric"], r, items=test) - interp_mean(ea["records"], ea["metric"], 0.0, items=test),
        "dH": interp_mean(eh["records"], eh["metric"], r, items=test) - interp_mean(eh["records"], eh["metric"], 0.0, items=test),
    }
    return eff


def _tax(cfg: RunConfig, entries: dict[str, dict[str, Any]], r: float | None) -> list[dict[str, Any]] | None:
    """The tax table at ``r`` (None when r* was not chosen): held-out items for the tasks r* was chosen on."""
    if r is None:
        return None
    split = _study_split(cfg, entries)
    test, chosen_on = (split[1], split[2]) if split is not None else (None, None)
    return tax_table(
        {n: {k: e[k] for k in ("axis", "metric", "scorer", "name")} for n, e in entries.items()},
        {n: e["records"] for n, e in entries.items()},
        r,
        items=test,
        chosen_on=chosen_on,
    )


def _conditional(
    cfg: RunConfig, resolved: dict[str, Any], store: ResultStore, entries: dict[str, dict[str, Any]], eff: dict[str, Any]
) -> dict[str, Any] | None:
    """A conditional study's second half: the condition's confusion matrix on the study's items (none of
    them was used to fit it), the conditional sweep's fits, r* and tax, and the comparison with
    unconditional steering at the conditional r* (held-out items where r* was chosen on the task)."""

    recs = store.records(study_keys(resolved)["conditional"])
    if not recs:
        return None
    ents = _entries(cfg, recs)
    st = cfg.study
    tasks_out = {n: _task_summary(n, e, cfg)[0] for n, e in ents.items()}
    ceff = _efficient(cfg, ents, resolved["resolved"]["strengths"])
    r = float(ceff["r_star"]) if ceff.get("ok") else float(eff["r_star"]) if eff.get("ok") else None
    # the condition's decisions per task, against whether the request is harmful
    conf_tasks: dict[str, Any] = {}
    fired_all: list[bool] = []
    truth_all: list[bool] = []
    for t in cfg.tasks:
        key = t.label or t.name
        task = T.get(t.name, **t.options)
        items = {it.id: it for it in task.items(t.limit, cfg.seed)}
        dec = {str(x["item"]): bool(x["fired"]) for x in recs if x["task"] == key and "fired" in x}
        truth = {i: task.is_harmful(items[i]) for i in dec if i in items}
        row: dict[str, Any] = {"n": len(dec), "fired_rate": float(np.mean(list(dec.values()))) if dec else None}
        known = [i for i in dec if truth.get(i) is not None]
        if known:
            row["confusion"] = confusion([dec[i] for i in known], [bool(truth[i]) for i in known])
            fired_all += [dec[i] for i in known]
            truth_all += [bool(truth[i]) for i in known]
        conf_tasks[key] = row

    overall = confusion(fired_all, truth_all) if fired_all else None
    # unconditional vs conditional at the conditional r* (none when neither run has an r*)
    split = _study_split(cfg, entries)
    test, chosen_on = (split[1], split[2]) if split is not None else (set(), set())
    versus: dict[str, Any] = {}
    for name, e in ents.items():
        if r is None or name not in entries or e["metric"] in T.DRIFT_METRICS:
            continue
        keep = set(test) if name in chosen_on else None

        def by_item(rs: list[dict[str, Any]], s: float, keep: set[str] | None = keep, m: str = e["metric"]) -> dict[str, float]:
            return {
                str(x["item"]): float(x[m])
                for x in rs
                if float(x["strength"]) == s and x.get(m) is not None and (keep is None or str(x["item"]) in keep)
            }

        grid = sorted({float(x["strength"]) for x in e["records"]})
        near = min(grid, key=lambda g: abs(g - r))  # the grid point at r* (the tables report measured points, not fits)
        u0, u1 = by_item(entries[name]["records"], 0.0), by_item(entries[name]["records"], near)
        c1 = by_item(e["records"], near)
        du, dc = paired_change(u0, u1, n_boot=st.n_boot, seed=cfg.seed), paired_change(u0, c1, n_boot=st.n_boot, seed=cfg.seed)
        row = {"axis": e["axis"], "metric": e["metric"], "r": near, "base": du.get("base"), "unconditional": du, "conditional": dc}
        row["items"] = "all" if keep is None else "held-out"
        # the share of steering's change the conditional run keeps, with a CI from the same item resamples
        pr = paired_ratio(u0, u1, c1, n_boot=st.n_boot, seed=cfg.seed)
        row.update(ratio=pr["ratio"], ratio_ci95=pr["ratio_ci95"], ratio_reason=pr["reason"], ratio_n=pr["n"])
        versus[name] = row
    why = None if r is not None else f"neither run has an r* ({ceff.get('reason') or eff.get('reason')})"
    return {
        "condition": resolved["resolved"].get("condition"),
        "condition_file": resolved["resolved"].get("condition_file"),
        "confusion": {"overall": overall, "tasks": conf_tasks},
        "tasks": tasks_out,
        "efficient_strength": ceff,
        "r_compare": r,
        "r_compare_note": why,
        "versus_unconditional": versus,
        "alignment_tax": _tax(cfg, ents, r),
    }


def analyze(out: str | Path) -> dict[str, Any]:
    """Fit laws, pick r*, compute the tax, write summary.json, results.parquet and the report."""

    out = Path(out)
    cfg_path = out / "config.resolved.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{out} has no config.resolved.yaml: is it a `steertax run` output folder?")
    if (kind := folder_kind(out)) != "run":
        raise DataError(f"{out} is a `steertax {kind}` folder: this reads `steertax run` folders (compare it with `steertax compare`)")
    resolved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg = from_dict(upgrade_resolved(resolved["config"]))
    run_id = resolved["run_id"]
    with ResultStore(out / "results.sqlite") as store:
        keys = study_keys(resolved)
        records = store.records(keys["steering"])
        store.to_parquet_many(out / "results.parquet", list(keys.values()))
    if not records:
        raise DataError(f"{out}: the results store has no rows for run {run_id}; run `steertax run` first")
    entries = _entries(cfg, records)
    st = cfg.study
    tasks_out: dict[str, Any] = {}
    warns: list[str] = []
    for name, e in entries.items():
        tasks_out[name], warn = _task_summary(name, e, cfg)
        if warn:
            warns.append(warn)
    eff = _efficient(cfg, entries, resolved["resolved"]["strengths"])
    tax = _tax(cfg, entries, eff["r_star"] if eff.get("ok") else None)  # no r*, no tax table
    theory: dict[str, Any] = {}
    tp = out / f"theory-{run_id}.json"
    if tp.is_file():
        theory = json.loads(tp.read_text())
        b0 = (
            interp_mean(entries[st.alignment_task]["records"], entries[st.alignment_task]["metric"], 0.0)
            if st.alignment_task in entries
            else float("nan")
        )
        p0 = (
            interp_mean(entries[st.helpfulness_task]["records"], entries[st.helpfulness_task]["metric"], 0.0)
            if st.helpfulness_task in entries
            else float("nan")
        )
        theory.update(B0=b0, p0=p0)
        if np.isfinite(p0) and p0 > 0:
            theory["a_from_p0"] = (1 - p0) / p0
        fa_full = tasks_out.get(st.alignment_task, {}).get("fit", {})
        tanh_fit = (fa_full.get("candidates") or {}).get("tanh") or (fa_full if fa_full.get("law") == "tanh" else {})
        if tanh_fit.get("ok"):
            theory["fit_route"] = {
                "m_from_fit": 2 * tanh_fit["params"]["a"]["value"],
                "m_from_logits": theory.get("m"),
                "note": "2a of the paper's tanh law fitted to all items",
            }
        theory["bounds"] = _bound_checks(tasks_out, theory, st)
    conditional = None
    if cfg.steering.condition is not None:
        with ResultStore(out / "results.sqlite") as store:
            conditional = _conditional(cfg, resolved, store, entries, eff)
    summary = {
        "run_id": run_id,
        "model": cfg.model,
        "vector": {**resolved["resolved"]["vector"], "file": resolved["resolved"]["vector_file"]},
        "strengths": resolved["resolved"]["strengths"],
        "strength_grid": resolved["resolved"]["strength_grid"],
        "tasks": tasks_out,
        "efficient_strength": eff,
        "break_even_strength": eff.get("break_even"),
        "alignment_tax": tax,
        "alignment_tax_note": None if tax is not None else f"no tax: {eff.get('reason')}",
        "theory": theory,
        "quick": cfg.quick,
        "warnings": warns,
        "created": now_iso(),
    }
    if conditional is not None:
        summary["conditional"] = conditional
    for w in warns:
        log.warning("warning: %s", w)
    summary = _sanitize(json.loads(json.dumps(summary, default=_json_default)))
    checkpoint("analysis")
    atomic_write_json(out / "summary.json", summary)
    write_report(out, summary, resolved)
    return summary


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _sanitize(o: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _sanitize(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_sanitize(v) for v in o]
    return o

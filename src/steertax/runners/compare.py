"""`steertax compare`: every method on one item set and one base, decided with valid intervals.

Each input folder (a `steertax run` study, an `align` run, a `merge` run) contributes *families*: steering
and conditional steering over r ≥ 0, DPO over β (from the base, β → ∞, down), regularized DPO over λ, each
merge method over its scale λ, and single settings (SFT, selective, a specialist, the mixture) as points.

Two ways to put them on the same items against the same base:

- **Without ``--evaluate``** the folders' own rows are used, restricted to the items every folder scored
  (their number is printed); the folders' base rows must agree on those items (the same model, prompts and
  scorers), else the comparison is refused in one line naming the fix.
- **With ``--evaluate``** the model is loaded once, every folder's interventions are rebuilt (the vector
  and condition files, the adapter folders, the merge specs over the cached specialists) and every missing
  cell is scored into ``OUT/results.sqlite`` on one item list per task and one base evaluation. The store
  is resumable by cell, and cells are cut from a seeded shuffle so that adding items adds cells and never
  changes a finished one: ``--until-decided`` grows the items of the compared tasks by ``--step`` up to
  ``--budget`` while comparisons are undecided, spending α over the looks (see
  :mod:`steertax.analysis.decide`).

The statistics (one bootstrap over items for the whole chain, matched-ΔB interpolation, Holm/BH verdicts,
items to decide) are :func:`steertax.analysis.decide.decide` and :func:`~steertax.analysis.decide.setting_contrasts`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steertax import tasks as T
from steertax._util import atomic_write_bytes, atomic_write_json, atomic_write_text
from steertax.analysis.decide import Family, decide, efficient_point, setting_contrasts
from steertax.analysis.knob_laws import knob_laws
from steertax.analysis.sequential import DEFAULT_SPENDING, SPENDING, Design, run_design, scope_hash
from steertax.analysis.tax import split_items
from steertax.errors import ConfigError, DataError
from steertax.reports.compare import compare_markdown
from steertax.reports.frontier import frontier_figure
from steertax.runners.compare_evaluate import compare_config, evaluate_all
from steertax.runners.folders import (
    Rows,
    Source,
    check_same_tasks,
    common_items,
    drop_families,
    entry_of,
    families_on_items,
    read_folder,
)
from steertax.tasks.drift import DRIFT_METRICS

__all__ = ["compare"]


# --------------------------------------------------------------------------- the comparison


def _default_pairs(fams: Sequence[Family]) -> list[tuple[str, str]]:
    """Settings against settings: within a trained or merged family (β against β, λ against λ), merge methods against each
    other at the same scale, and each merge setting at the largest scale against the mixture."""
    pairs: list[tuple[str, str]] = []
    for f in fams:
        if f.group == "steering":  # strengths against strengths are the curve itself, not a question
            continue
        for i, a in enumerate(f.settings):
            pairs += [(f"{f.name}/{a}", f"{f.name}/{b}") for b in f.settings[i + 1 :]]
    merges = [f for f in fams if f.group == "merging"]
    for i, fa in enumerate(merges):
        for fb in merges[i + 1 :]:
            for sa, va in zip(fa.settings, fa.values, strict=True):
                for sb, vb in zip(fb.settings, fb.values, strict=True):
                    if va == vb:
                        pairs.append((f"{fa.name}/{sa}", f"{fb.name}/{sb}"))
    mix = next((f for f in fams if f.name == "mixture"), None)
    if mix is not None:
        for m in merges:
            top = max(range(len(m.settings)), key=lambda j: m.values[j] or 0)
            pairs.append((f"{m.name}/{m.settings[top]}", f"mixture/{mix.settings[0]}"))
    return pairs


def _figure_methods(
    fams: Sequence[Family], dec: dict[str, Any], al: str, he: str, mean_dh: dict[tuple[str, str], float | None], w: float
) -> list[dict[str, Any]]:
    methods = []
    for f in fams:
        pts: list[dict[str, Any]] = [
            {
                "setting": "base",
                "value": None,
                "tasks": {al: {"delta": 0.0, "delta_ci95": [0.0, 0.0]}, he: {"delta": 0.0, "delta_ci95": [0.0, 0.0]}},
                "dH_mean": 0.0,
            }
        ]
        for s in dec["settings"][f.name]:
            pts.append(
                {
                    "setting": s["setting"],
                    "value": s["value"],
                    "tasks": {
                        al: {"delta": s["dB"]["estimate"], "delta_ci95": s["dB"]["ci95"]},
                        he: {"delta": s["dH"]["estimate"], "delta_ci95": s["dH"]["ci95"]},
                    },
                    "dH_mean": mean_dh.get((f.name, s["setting"])),
                }
            )
        best = max(pts[1:], key=lambda p: w * p["tasks"][he]["delta"] + (1 - w) * p["tasks"][al]["delta"])
        u = w * best["tasks"][he]["delta"] + (1 - w) * best["tasks"][al]["delta"]
        methods.append({"kind": f.name, "family": f.group, "knob": f.knob, "points": pts, "optimum": {"setting": best["setting"], "U": u}})
    return methods


def _star_the_efficient_point(m: dict[str, Any]) -> None:
    """The figure's star: the point chosen on the validation half (the all-items optimum kept beside it)."""
    if m["efficient"].get("setting") is not None:
        held = m["efficient"]["held_out"]["U"]["estimate"]
        m["optimum"] = {
            "setting": m["efficient"]["setting"],
            "U": held,
            "chosen_on": "validation half (U held-out)",
            "all_items": m["optimum"],
        }


def _analyze(
    sources: list[Source],
    alignment: str,
    helpfulness: str,
    *,
    levels: Sequence[float] | None,
    alpha: float,
    adjust: str,
    n_boot: int,
    seed: int,
    helpfulness_weight: float,
    other_tasks: bool = True,
    skip: Sequence[str] = (),
    future_alpha: float | None = None,
) -> dict[str, Any]:
    tasks0 = sources[0].tasks
    ent = {alignment: entry_of(tasks0, alignment), helpfulness: entry_of(tasks0, helpfulness)}
    if ent[alignment][3] != "alignment":
        raise DataError(f"--alignment {alignment!r} is a {ent[alignment][3]} task: choose an alignment task")
    if ent[helpfulness][3] != "helpfulness" or ent[helpfulness][2] in DRIFT_METRICS:
        raise DataError(f"--helpfulness {helpfulness!r} is not a helpfulness benchmark with a score: choose one (e.g. arc_easy)")
    others = []
    for t in tasks0:
        k = str(t.get("label") or t.get("name"))
        if not other_tasks or k in ent or not all(any((x.get("label") or x.get("name")) == k for x in s.tasks) for s in sources):
            continue
        e = entry_of(tasks0, k)
        if e[3] == "helpfulness" and e[2] not in DRIFT_METRICS:
            others.append(k)
    for k in others:
        ent[k] = entry_of(tasks0, k)
    check_same_tasks(sources, ent)
    rows = Rows()
    common = common_items(sources, rows, ent)
    fams = families_on_items(sources, common, list(ent))
    reach_any = max((float(np.max(np.mean(f.scores[alignment] - common[alignment]["base"], axis=1))) for f in fams), default=float("-inf"))
    if levels:
        too_high = [L for L in levels if L > reach_any]
        if too_high:
            raise DataError(
                f"no method reaches ΔB = {too_high[0]:g} on {alignment!r} (the highest any setting reaches is "
                f"{reach_any:.3g}): choose lower --levels"
            )
    base = {e: common[e]["base"] for e in ent}
    dec = decide(
        base,
        fams,
        alignment,
        helpfulness,
        levels=levels,
        alpha=alpha,
        adjust=adjust,
        n_boot=n_boot,
        seed=seed,
        skip=skip,
        future_alpha=future_alpha,
    )
    con = setting_contrasts(
        base, fams, [alignment, helpfulness], _default_pairs(fams), alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed
    )
    mean_over = [helpfulness, *others]
    mean_dh: dict[tuple[str, str], float | None] = {}
    for f in fams:
        for j, s in enumerate(f.settings):
            mean_dh[(f.name, s)] = float(np.mean([np.mean(f.scores[e][j] - base[e]) for e in mean_over]))
    methods = _figure_methods(fams, dec, alignment, helpfulness, mean_dh, helpfulness_weight)
    # each family's efficient point: chosen on half of the items (split by item id), measured on the other half
    validation = {
        t: np.asarray([i in split_items(common[t]["items"], 0.5, seed)[0] for i in common[t]["items"]]) for t in (alignment, helpfulness)
    }
    for m, f in zip(methods, fams, strict=True):
        m["laws"] = knob_laws(base, f, {alignment: "alignment", helpfulness: "helpfulness"}, n_boot=min(n_boot, 200), seed=seed)
        try:
            m["efficient"] = efficient_point(base, f, alignment, helpfulness, helpfulness_weight, validation, n_boot=n_boot, seed=seed)
        except ValueError as e:
            m["efficient"] = {"setting": None, "reason": str(e)}
        _star_the_efficient_point(m)
    table = []
    for m in methods:
        for p in m["points"][1:]:
            a, h = p["tasks"][alignment], p["tasks"][helpfulness]
            table.append(
                {
                    "method": m["kind"],
                    "family": m["family"],
                    "setting": p["setting"],
                    "dB": a["delta"],
                    "dB_ci95": a["delta_ci95"],
                    "dH": h["delta"],
                    "dH_ci95": h["delta_ci95"],
                    "dH_mean": p["dH_mean"],
                }
            )
    return {
        "model": sources[0].model,
        "alignment": alignment,
        "helpfulness": helpfulness,
        "helpfulness_weight": helpfulness_weight,
        "folders": [str(s.folder) for s in sources],
        "items": {e: {"n_common": len(common[e]["items"]), "per_folder": common[e]["counts"]} for e in ent},
        "mean_over": mean_over,
        "methods": methods,
        "table": table,
        "levels": dec["levels"],
        "decisions": {k: v for k, v in dec.items() if k != "settings"},
        "contrasts": con,
    }


def compare(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    alignment: str = T.task_with(T.DEFAULT_ALIGNMENT),
    helpfulness: str = T.task_with(T.DEFAULT_HELPFULNESS),
    helpfulness_weight: float = 0.5,
    n_boot: int = 2000,
    levels: Sequence[float] | None = None,
    alpha: float = 0.05,
    adjust: str = "maxt",
    evaluate: bool = False,
    limit: int | None = None,
    until_decided: bool = False,
    budget: int | None = None,
    step: int = 16,
    cap: int | None = None,
    spending: str | None = None,
    chunk: int = 16,
    progress: bool = True,
    seed: int = 0,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Every folder's methods on one frontier and one item set, decided (see the module docstring). Writes
    ``compare.json``, ``compare.md`` and ``figures/frontier.png`` into ``out``; returns the result. With
    ``until_decided`` the adaptive design of :mod:`steertax.analysis.sequential` runs, its record in
    ``out/sequential.json`` (a rerun continues it)."""
    if until_decided and not evaluate:
        raise ConfigError("--until-decided adds items, which needs --evaluate (it scores them): add --evaluate")
    if until_decided and (budget is None or budget <= 0):
        raise ConfigError(f"--budget {budget} adds no items: give the most items to add per task (e.g. --budget 256)")
    if step <= 0 or step % chunk:
        raise ConfigError(f"--step {step} must be a positive multiple of the cell size {chunk}")
    if spending is not None and spending not in SPENDING:
        raise ConfigError(f"--spending {spending}: unknown; use one of {', '.join(SPENDING)}")
    if adjust not in ("maxt", "holm", "bh"):
        raise ConfigError(f"--adjust {adjust!r}: use maxt, holm or bh")
    if not 0 < alpha < 0.5:
        raise ConfigError(f"--alpha {alpha} must be in (0, 0.5) (an error rate, e.g. 0.05)")
    out = Path(out)
    sources = [read_folder(d) for d in dirs]
    drop_families(sources, exclude)
    models = {s.model for s in sources}
    if len(models) > 1:
        raise DataError(f"these folders measure different models ({sorted(models)}): compare runs of one model")
    kw = dict(levels=levels, alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed, helpfulness_weight=helpfulness_weight)
    if not evaluate:
        res = _analyze(sources, alignment, helpfulness, **kw)  # type: ignore[arg-type]
        res["evaluated"] = False
    else:
        keys = [entry_of(sources[0].tasks, e)[:2] for e in (alignment, helpfulness)]
        cfg = compare_config(sources, keys, limit, chunk)
        if not until_decided:
            evaluate_all(sources, out, cfg, progress)
            res = _analyze(sources, alignment, helpfulness, **kw, other_tasks=False)  # type: ignore[arg-type]
        else:
            scope: dict[str, Any] = {"folders": sorted(str(Path(d).resolve()) for d in dirs), "alignment": alignment}
            scope.update(helpfulness=helpfulness, levels=list(levels) if levels else None, adjust=adjust, n_boot=n_boot)
            scope.update(seed=seed, exclude=sorted(exclude))
            res = _adaptive(sources, out, cfg, alignment, helpfulness, kw, scope, alpha, budget or 0, step, cap, spending, progress)
        res["evaluated"] = True
    res["intervals"] = "95% bootstrap-t (every interval in this report, whatever level a test or look uses)"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare.json", res)
    atomic_write_text(out / "compare.md", compare_markdown(res))
    (out / "figures").mkdir(exist_ok=True)
    atomic_write_bytes(out / "figures" / "frontier.png", frontier_figure(res))
    return res


def _task_items(t: Any, seed: int) -> int:
    return len(T.get(t.name, **t.options).items(t.limit, seed))


def read_design(out: Path, scope: dict[str, Any], alpha: float) -> Design | None:
    """The adaptive design recorded in ``out/sequential.json``, or None; one made for another comparison (another
    scope or α) is refused in one line (its α is spent for that comparison, not this one)."""
    path = out / "sequential.json"
    if not path.is_file():
        return None
    try:
        d = Design.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"{path} is not a spending record steertax wrote ({e}): give a new --out, or delete it to start a new design"
        ) from e
    if d.scope != scope_hash(scope) or d.alpha != alpha:
        raise ConfigError(
            f"{path} records the adaptive design of another comparison (other folders, tasks, levels, --alpha or --adjust): "
            "give a new --out for this one (or delete that file to start a new design)"
        )
    return d


def _adaptive(
    sources: list[Source],
    out: Path,
    cfg: Any,
    alignment: str,
    helpfulness: str,
    kw: dict[str, Any],
    scope: dict[str, Any],
    alpha: float,
    budget: int,
    step: int,
    cap: int | None,
    spending: str | None,
    progress: bool,
) -> dict[str, Any]:
    """``--until-decided``: the design of :func:`~steertax.analysis.sequential.run_design` on the compare store."""
    names = {t.label or t.name: t for t in cfg.tasks}
    full = {k: len(T.get(t.name, **t.options).load_items()) for k, t in names.items()}
    design = read_design(out, scope, alpha)
    if design is None:
        now = {k: _task_items(t, cfg.seed) for k, t in names.items()}
        design = Design(
            alpha=alpha,
            cap={k: min(full[k], cap if cap is not None else now[k] + budget) for k in names},
            scope=scope_hash(scope),
            spending=spending or DEFAULT_SPENDING,
        )
        if any(design.cap[k] < now[k] for k in names):
            raise ConfigError(f"--cap {cap} is below the items already scored ({now}): give a cap of at least {max(now.values())}")
    elif cap is not None and any(min(full[k], cap) != design.cap[k] for k in names):
        raise ConfigError(
            f"--cap {cap} differs from the design's cap {design.cap} (fixed when it started): leave --cap out or give a new --out"
        )
    elif spending is not None and spending != design.spending:
        raise ConfigError(
            f"--spending {spending} differs from the design's {design.spending} (fixed when it started): leave --spending out or "
            "give a new --out"
        )
    start = design.looks[-1]["items"] if design.looks else {k: _task_items(t, cfg.seed) for k, t in names.items()}
    last: dict[str, Any] = {}

    def analyze(items: dict[str, int], a_k: float, skip: set[str], future: float) -> dict[str, Any]:
        for k, t in names.items():
            t.limit = items[k]
        srcs = copy.deepcopy(sources)  # evaluate_all points the settings at the compare store: keep the folders' keys
        evaluate_all(srcs, out, cfg, progress)
        last["res"] = _analyze(
            srcs, alignment, helpfulness, **{**kw, "alpha": a_k}, other_tasks=False, skip=sorted(skip), future_alpha=future
        )
        return last["res"]["decisions"]

    def save(d: Design) -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "sequential.json", d.to_json())

    merged = run_design(design, dict(start), analyze, budget, step, save)
    res = last["res"]
    res["decisions"]["comparisons"] = merged["comparisons"]
    res["looks"] = design.looks
    res["design"] = {"alpha": alpha, "cap": design.cap, "spending": design.spending, "looks": len(design.looks)}
    t_now = design.looks[-1]["fraction"]
    res["sequential"] = (
        f"adaptive design: {len(design.looks)} look(s), α = {alpha} spent by {SPENDING[design.spending][1]} over the "
        f"information fraction t = items / cap (cap {design.cap} per task; now t = {t_now:.2f}, α spent "
        f"{design.looks[-1]['alpha_spent']:.4f}); each look tests the open comparisons at its nominal level (max-T adjusted), "
        "a decision is kept once made; a rerun with a larger --budget continues this design (record: sequential.json)"
    )
    return res


# --------------------------------------------------------------------------- words

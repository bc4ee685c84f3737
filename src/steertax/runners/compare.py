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
from steertax.analysis.decide import Family, decide, efficient_point, pair_verdicts, setting_contrasts
from steertax.analysis.knob_laws import knob_laws
from steertax.analysis.sequential import DEFAULT_SPENDING, SPENDING, Design, run_design, scope_hash
from steertax.analysis.tax import split_items
from steertax.errors import ConfigError, DataError
from steertax.reports.compare import compare_markdown
from steertax.reports.decision import write_decision_report
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
    fams: Sequence[Family], dec: dict[str, Any], al: str, axes: Sequence[str], mean_dh: dict[tuple[str, str], float | None], w: float
) -> list[dict[str, Any]]:
    """Per family: its points (the base first) with ΔB and ΔH on every axis (the first axis is the primary one: the
    figure's and the utility's), and the all-items optimum of U on the primary axis."""
    he = axes[0]
    methods = []
    for f in fams:
        zero = {"delta": 0.0, "delta_ci95": [0.0, 0.0]}
        pts: list[dict[str, Any]] = [{"setting": "base", "value": None, "tasks": {t: dict(zero) for t in (al, *axes)}, "dH_mean": 0.0}]
        for s in dec["settings"][f.name]:
            per = s.get("dH_axes") or {he: s["dH"]}
            pts.append(
                {
                    "setting": s["setting"],
                    "value": s["value"],
                    "tasks": {
                        al: {"delta": s["dB"]["estimate"], "delta_ci95": s["dB"]["ci95"]},
                        **{t: {"delta": per[t]["estimate"], "delta_ci95": per[t]["ci95"]} for t in axes},
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


DEFAULT_WEIGHTS = (0.25, 0.5, 0.75)  # the efficient points every comparison reports (and the user's w)


def default_alignment() -> str:
    """The default alignment axis: the harmless rate (share refused) on the harmful requests of the task declaring
    DEFAULT_ALIGNMENT."""
    return f"{T.task_with(T.DEFAULT_ALIGNMENT)}:harmless"


def _is_rate_axis(tasks0: Sequence[dict[str, Any]], entry: str) -> bool:
    """The entry is the helpful rate on safe prompts (the task declaring SAFE_PROMPT_RATE, its primary metric)."""
    key, _scorer, metric, _axis = entry_of(tasks0, entry)
    conf = next(t for t in tasks0 if (t.get("label") or t.get("name")) == key)
    return T.has_trait(conf["name"], T.SAFE_PROMPT_RATE) and metric == T.get(conf["name"]).metric


def _shared(sources: Sequence[Source]) -> list[str]:
    """The task keys every folder scores, in the first folder's order."""
    keys = [str(t.get("label") or t.get("name")) for t in sources[0].tasks]
    return [k for k in keys if all(any((x.get("label") or x.get("name")) == k for x in s.tasks) for s in sources)]


def helpfulness_axes(sources: Sequence[Source], alignment: str, helpfulness: str | Sequence[str] | None) -> list[str]:
    """The helpfulness axes decided: the ones named, else every helpfulness task every folder scores (the helpful
    rate on the shared pool first, capability benchmarks, drift as −KL). Without axes named, every folder must score
    the shared over-refusal pool: a folder that does not is refused in one line naming it and the fix."""
    tasks0 = sources[0].tasks
    if helpfulness:
        axes = [helpfulness] if isinstance(helpfulness, str) else list(helpfulness)
        for e in axes:
            if entry_of(tasks0, e)[3] != "helpfulness":
                raise DataError(f"--helpfulness {e!r} is not a helpfulness axis: choose helpfulness tasks (e.g. over_refusal, arc_easy)")
        return axes
    rate = T.task_with(T.SAFE_PROMPT_RATE)
    for s in sources:
        conf = next((t for t in s.tasks if t.get("name") == rate), None)
        if conf is None or (conf.get("options") or {}).get("pool") != "shared":
            what = "does not score" if conf is None else "scores its own selection of"
            raise DataError(
                f"{s.folder} {what} the shared over-refusal pool ({rate} with options.pool: shared), on which every method's helpful "
                f"rate is compared: rerun its command with the shipped config (or add the task), or name the axes with --helpfulness"
            )
    shared = [k for k in _shared(sources) if k != alignment.partition(":")[0].split("[", 1)[0]]
    axes = [k for k in shared if entry_of(tasks0, k)[3] == "helpfulness"]
    return sorted(axes, key=lambda e: (not _is_rate_axis(tasks0, e), entry_of(tasks0, e)[2] in DRIFT_METRICS))


def _same_pool(sources: Sequence[Source], common: dict[str, Any], rate_axes: Sequence[str]) -> None:
    """Every folder scores the same prompts of the shared pool (a folder with a limit on it, or another selection, is
    refused in one line naming it: pairing on the few prompts two selections share decides nothing)."""
    for e in rate_axes:
        first = set(common[e]["maps"][("base", str(sources[0].folder))])
        for s in sources[1:]:
            mine = set(common[e]["maps"][("base", str(s.folder))])
            if mine != first:
                raise DataError(
                    f"{s.folder} scores {len(mine)} prompts of the shared pool on {e!r} where {sources[0].folder} scores {len(first)} "
                    f"({len(mine & first)} in common): rerun both with the same {e!r} task (the shipped configs score the whole pool, no "
                    "limit), or name other axes with --helpfulness"
                )


def _orient(common: dict[str, Any], ent: dict[str, tuple[str, str | None, str, str]]) -> list[str]:
    """Distances from the base (drift's KL) become helpfulness scores, larger is better, by their sign: −KL. Returns
    the entries turned."""
    turned = []
    for e, (_t, _s, metric, axis) in ent.items():
        if axis == "helpfulness" and metric in DRIFT_METRICS:
            c = common[e]
            c["base"] = -c["base"]
            c["maps"] = {k: {i: -v for i, v in m.items()} for k, m in c["maps"].items()}
            turned.append(e)
    return turned


def _efficient_points(
    m: dict[str, Any],
    f: Family,
    base: dict[str, np.ndarray],
    alignment: str,
    primary: str,
    ws: Sequence[float],
    w_user: float,
    validation: dict[str, np.ndarray],
    n_boot: int,
    seed: int,
    caps: Sequence[str],
    max_tax: float | None,
) -> None:
    """A method's efficient point at each weight w (``efficient_by_w``), the user's w as ``efficient`` (the figure's star)."""
    m["efficient_by_w"] = {}
    for w in ws:
        try:
            e = efficient_point(base, f, alignment, primary, w, validation, n_boot=n_boot, seed=seed, capability=caps, max_tax=max_tax)
        except ValueError as err:
            e = {"setting": None, "reason": str(err), "helpfulness_weight": w}
        m["efficient_by_w"][f"{w:g}"] = e
    m["efficient"] = m["efficient_by_w"][f"{float(w_user):g}"]
    _star_the_efficient_point(m)


def _other_scores(sources: Sequence[Source], ent: dict[str, Any]) -> list[str]:
    """With one axis named: the other helpfulness benchmarks every folder scores (their mean ΔH is reported)."""
    tasks0 = sources[0].tasks
    return [
        k
        for k in _shared(sources)
        if k not in ent and entry_of(tasks0, k)[3] == "helpfulness" and entry_of(tasks0, k)[2] not in DRIFT_METRICS
    ]


def _analyze(
    sources: list[Source],
    alignment: str,
    helpfulness: str | Sequence[str] | None,
    *,
    levels: Sequence[float] | None,
    alpha: float,
    adjust: str,
    n_boot: int,
    seed: int,
    helpfulness_weight: float,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    max_tax: float | None = None,
    other_tasks: bool = True,
    skip: Sequence[str] = (),
    future_alpha: float | None = None,
) -> dict[str, Any]:
    tasks0 = sources[0].tasks
    ent = {alignment: entry_of(tasks0, alignment)}
    if ent[alignment][3] != "alignment":
        raise DataError(f"--alignment {alignment!r} is a {ent[alignment][3]} task: choose an alignment task")
    axes = helpfulness_axes(sources, alignment, helpfulness)
    for e in axes:
        ent[e] = entry_of(tasks0, e)
    single = isinstance(helpfulness, str)  # one axis named: the single-axis tables (and ids) of before
    if single and ent[axes[0]][2] in DRIFT_METRICS:
        raise DataError(f"--helpfulness {axes[0]!r} is a distance, not a score: name it among several axes, or choose a benchmark")
    others = _other_scores(sources, ent) if single and other_tasks else []
    for k in others:
        ent[k] = entry_of(tasks0, k)
    check_same_tasks(sources, ent)
    rows = Rows()
    common = common_items(sources, rows, ent)
    _same_pool(sources, common, [e for e in axes if _is_rate_axis(tasks0, e)])
    turned = _orient(common, ent)
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
        axes[0] if single else axes,
        levels=levels,
        alpha=alpha,
        adjust=adjust,
        n_boot=n_boot,
        seed=seed,
        skip=skip,
        future_alpha=future_alpha,
    )
    con = setting_contrasts(base, fams, [alignment, *axes], _default_pairs(fams), alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed)
    primary = axes[0]
    mean_over = [primary, *others] if single else list(axes)
    mean_dh: dict[tuple[str, str], float | None] = {}
    for f in fams:
        for j, s in enumerate(f.settings):
            mean_dh[(f.name, s)] = float(np.mean([np.mean(f.scores[e][j] - base[e]) for e in mean_over]))
    methods = _figure_methods(fams, dec, alignment, axes, mean_dh, helpfulness_weight)
    # capability benchmarks: the helpfulness axes that are neither the primary one nor a distance (their tax is reported)
    caps = [e for e in ent if e not in (alignment, primary) and ent[e][3] == "helpfulness" and e not in turned]
    tasks_split = (alignment, primary, *caps)
    # each family's efficient points: chosen on half of the items (split by item id), measured on the other half
    validation = {t: np.asarray([i in split_items(common[t]["items"], 0.5, seed)[0] for i in common[t]["items"]]) for t in tasks_split}
    ws = sorted({*(float(x) for x in weights), float(helpfulness_weight)})
    for m, f in zip(methods, fams, strict=True):
        m["laws"] = knob_laws(base, f, {alignment: "alignment", primary: "helpfulness"}, n_boot=min(n_boot, 200), seed=seed)
        _efficient_points(m, f, base, alignment, primary, ws, helpfulness_weight, validation, n_boot, seed, caps, max_tax)
    table = []
    for m in methods:
        for p in m["points"][1:]:
            a, h = p["tasks"][alignment], p["tasks"][primary]
            table.append(
                {
                    "method": m["kind"],
                    "family": m["family"],
                    "setting": p["setting"],
                    "dB": a["delta"],
                    "dB_ci95": a["delta_ci95"],
                    "dH": h["delta"],
                    "dH_ci95": h["delta_ci95"],
                    "dH_axes": {t: {"delta": p["tasks"][t]["delta"], "ci95": p["tasks"][t]["delta_ci95"]} for t in axes},
                    "dH_mean": p["dH_mean"],
                }
            )
    return {
        "model": sources[0].model,
        "alignment": alignment,
        "helpfulness": primary,
        "axes": list(axes),
        "oriented": {e: "−KL (larger: closer to the base)" for e in turned},
        "capability": caps,
        "helpfulness_weight": helpfulness_weight,
        "weights": ws,
        "max_tax": max_tax,
        "folders": [str(s.folder) for s in sources],
        "items": {
            e: {"n_common": len(common[e]["items"]), "per_folder": common[e]["counts"], "base_mean": float(np.mean(common[e]["base"]))}
            for e in ent
        },
        "mean_over": mean_over,
        "methods": methods,
        "table": table,
        "levels": dec["levels"],
        "decisions": {k: v for k, v in dec.items() if k != "settings"},
        "pairs": pair_verdicts(dec["comparisons"]),
        "contrasts": con,
    }


def compare(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    alignment: str | None = None,
    helpfulness: str | Sequence[str] | None = None,
    helpfulness_weight: float = 0.5,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    max_tax: float | None = None,
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
    ``compare.json``, ``compare.md``, ``report.html`` and ``figures/frontier.png`` into ``out``; returns the result. ``alignment``: the
    entry matched on (default: the harmless rate on the harmful requests, :func:`default_alignment`); ``helpfulness``:
    one axis (the single-axis tables), several, or None: every helpfulness axis the folders share (the helpful rate on
    the shared over-refusal pool first). ``weights``: the w of the efficient points reported (with
    ``helpfulness_weight``, the figure's); ``max_tax``: the largest capability tax (%) an efficient point may have. With
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
    for w in (helpfulness_weight, *weights):
        if not (np.isfinite(w) and 0 <= w <= 1):
            raise ConfigError(f"helpfulness weight {w} must be in [0, 1]")
    if max_tax is not None and not (np.isfinite(max_tax) and max_tax >= 0):
        raise ConfigError(f"--max-tax {max_tax} must be a percentage of 0 or more")
    alignment = alignment or default_alignment()
    out = Path(out)
    sources = [read_folder(d) for d in dirs]
    drop_families(sources, exclude)
    models = {s.model for s in sources}
    if len(models) > 1:
        raise DataError(f"these folders measure different models ({sorted(models)}): compare runs of one model")
    kw = dict(levels=levels, alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed, helpfulness_weight=helpfulness_weight)
    kw.update(weights=weights, max_tax=max_tax)
    if not evaluate:
        res = _analyze(sources, alignment, helpfulness, **kw)  # type: ignore[arg-type]
        res["evaluated"] = False
    else:
        axes = helpfulness_axes(sources, alignment, helpfulness)
        keys = [entry_of(sources[0].tasks, e)[:2] for e in (alignment, *axes)]
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
    write_decision_report(out, res)
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
    helpfulness: str | Sequence[str] | None,
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

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

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from steertax import tasks as T
from steertax._util import atomic_write_bytes, atomic_write_json, atomic_write_text
from steertax.analysis.decide import Family, decide, efficient_point, sequential_levels, setting_contrasts
from steertax.analysis.laws import fit_task
from steertax.analysis.tax import split_items
from steertax.config import CommonConfig, TaskConfig, from_dict, upgrade_resolved
from steertax.errors import ConfigError, DataError
from steertax.interventions import AdapterIntervention, BaseIntervention, Intervention, SteeringIntervention
from steertax.interventions.conditional import Condition
from steertax.interventions.core import description_hash
from steertax.interventions.steering.vectors import SteeringVector
from steertax.manifest import ALPHA_KNOB, RESOLVED_FILES, Entry, Knob, Manifest, read_manifest
from steertax.reports.frontier import frontier_figure
from steertax.runners.merge import merge_from_dict, merge_interventions
from steertax.runners.session import session
from steertax.store import ResultStore
from steertax.tasks.drift import DRIFT_METRICS

__all__ = ["compare", "compare_markdown", "read_folder", "BASE_TOLERANCE"]

BASE_TOLERANCE = 1e-4  # the largest per-item difference of two folders' base scores that is float rounding


@dataclass
class Setting:
    """One setting's rows: the store, its key, and (for a strength sweep) the strength its rows carry."""

    name: str
    value: float | None
    store: Path
    key: str
    strength: float | None = None


@dataclass
class FamilySource:
    name: str
    kind: str  # the method
    knob: Knob
    settings: list[Setting]
    folder: str
    primary: bool = True  # False: the α curve of a point on a β or λ curve (compared with steering only)
    group: str = ""  # steering, fine-tuning, merging


@dataclass
class Source:
    folder: Path
    kind: str  # run | align | merge
    model: str
    dtype: str | None
    seed: int
    tasks: list[dict[str, Any]]
    base: Setting
    families: list[FamilySource] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None


# --------------------------------------------------------------------------- reading folders


def _resolve_path(p: str, folder: Path) -> Path:
    """A path a run recorded (relative to where it ran): as given if it exists, else inside the folder."""
    q = Path(p)
    if q.exists():
        return q
    for cand in (folder / q.name, folder / "adapters" / q.name):
        if cand.exists():
            return cand
    return q


def read_folder(d: str | Path) -> Source:
    """A folder's base and families, from its manifest (no rows are read here)."""
    d = Path(d)
    man = read_manifest(d)
    resolved = yaml.safe_load((d / RESOLVED_FILES[man.kind]).read_text(encoding="utf-8")) or {}
    if man.kind == "run":
        resolved["config"] = upgrade_resolved(resolved["config"])
    store = d / "results.sqlite"
    base = Setting("base", man.base_strength, store, man.base_key, man.base_strength)
    src = Source(d, man.kind, man.model, man.dtype, man.seed, man.tasks, base, manifest=man)
    src.resolved = resolved
    for f in man.families:
        sets = [Setting(r.label, v, store, e.key, r.strength) for e, r, v in man.points(f.name)]
        src.families.append(FamilySource(f.name, f.method, f.knob, sets, str(d), f.primary, f.group))
    return src


# --------------------------------------------------------------------------- rows on common items


def _entry(tasks: Sequence[dict[str, Any]], name: str) -> tuple[str, str | None, str, str]:
    """(task key, scorer or None for the default, metric, axis) of an entry like ``refusal`` or ``refusal[generate]``."""
    key, scorer = name, None
    if name.endswith("]") and "[" in name:
        key, _, sc = name[:-1].partition("[")
        scorer = sc
    for t in tasks:
        if (t.get("label") or t.get("name")) == key:
            task = T.get(t["name"], **(t.get("options") or {}))
            return str(key), scorer, task.metric, task.axis
    raise DataError(
        f"no task {key!r} here (tasks: {[t.get('label') or t.get('name') for t in tasks]}): choose another with --alignment/--helpfulness"
    )


class _Rows:
    """Per-item scores of a setting on an entry, read once per (store, key)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def records(self, s: Setting) -> list[dict[str, Any]]:
        k = (str(s.store), s.key)
        if k not in self._cache:
            with ResultStore(s.store) as st:
                self._cache[k] = st.records(s.key)
        return self._cache[k]

    def by_item(self, s: Setting, task: str, scorer: str | None, metric: str) -> dict[str, float]:
        rs = [r for r in self.records(s) if r["task"] == task and (s.strength is None or float(r["strength"]) == s.strength)]
        scorers = sorted({r["scorer"] for r in rs}, key=lambda x: (x != "logprob", x))
        use = scorer if scorer is not None else (scorers[0] if scorers else None)
        out: dict[str, list[float]] = {}
        for r in rs:
            v = r.get(metric)
            if r["scorer"] == use and v is not None and np.isfinite(float(v)):
                out.setdefault(str(r["item"]), []).append(float(v))
        return {i: float(np.mean(v)) for i, v in out.items()}


def _task_conf(src: Source, key: str) -> dict[str, Any]:
    return next(t for t in src.tasks if (t.get("label") or t.get("name")) == key)


GENERATION_OPTIONS = ("scorers", "max_new_tokens", "judge")  # what only a generate scorer's rows depend on


def _scorer_of(conf: dict[str, Any], scorer: str | None) -> str:
    """The scorer an entry reads: the one it names, else logprob when the task runs it, else its first."""
    if scorer is not None:
        return scorer
    listed = list((conf.get("options") or {}).get("scorers") or [])
    return "logprob" if not listed or "logprob" in listed else str(listed[0])


def _scoring(conf: dict[str, Any], scorer: str | None) -> dict[str, Any]:
    """What an entry's rows depend on: the task and its options (the scorer list and generation options
    only when the entry reads generations)."""
    used = _scorer_of(conf, scorer)
    opts = {k: v for k, v in (conf.get("options") or {}).items() if used == "generate" or k not in GENERATION_OPTIONS}
    return {"name": conf["name"], "scorer": used, "options": opts}


def _check_same_tasks(sources: Sequence[Source], entries: dict[str, tuple[str, str | None, str, str]]) -> None:
    for key, scorer, _m, _a in entries.values():
        confs = {}
        for s in sources:
            t = _task_conf(s, key)
            confs[str(s.folder)] = json.dumps(_scoring(t, scorer), sort_keys=True)
        if len(set(confs.values())) > 1:
            a, b = list(confs)[:2]
            raise DataError(
                f"task {key!r} is scored differently in {a} and {b} ({confs[a]} vs {confs[b]}): compare folders that score it "
                "the same way, or pass --evaluate to score every method on one task setting"
            )


def _common(sources: Sequence[Source], rows: _Rows, entries: dict[str, tuple[str, str | None, str, str]]) -> dict[str, Any]:
    """Per entry: the items every setting of every folder has, one base (the first folder's) checked against
    every other folder's base on those items, and each family's scores on them."""
    per: dict[str, Any] = {}
    for name, (task, scorer, metric, _axis) in entries.items():
        maps: dict[tuple[str, ...], dict[str, float]] = {}
        for s in sources:
            maps[("base", str(s.folder))] = rows.by_item(s.base, task, scorer, metric)
            for f in s.families:
                for st in f.settings:
                    maps[(f.name, str(s.folder), st.name)] = rows.by_item(st, task, scorer, metric)
        items = sorted(set.intersection(*(set(m) for m in maps.values())))
        if not items:
            raise DataError(f"no {task!r} item is scored by every folder and setting: pass --evaluate to score them on the same items")
        b0 = np.asarray([maps[("base", str(sources[0].folder))][i] for i in items])
        for s in sources[1:]:
            bs = np.asarray([maps[("base", str(s.folder))][i] for i in items])
            diff = np.abs(bs - b0)
            if float(diff.max()) > BASE_TOLERANCE:
                k = int((diff > BASE_TOLERANCE).sum())
                raise DataError(
                    f"the base rows of {sources[0].folder} and {s.folder} differ on {k} of the {len(items)} common {task!r} items "
                    f"(max |Δ| = {diff.max():.3g}): they were not scored the same way; "
                    "pass --evaluate to score every method against one base"
                )
        per[name] = {
            "items": items,
            "base": b0,
            "maps": maps,
            "counts": {str(s.folder): len(maps[("base", str(s.folder))]) for s in sources},
        }
    return per


def _label(sources: Sequence[Source], s: Source, f: FamilySource) -> str:
    """A family's name in the comparison: its own, or with its folder's name where two folders share it."""
    names = [g.name for x in sources for g in x.families]
    return f.name if names.count(f.name) == 1 else f"{f.name} ({s.folder.name})"


def drop_families(sources: Sequence[Source], exclude: Sequence[str]) -> None:
    """Leave out the named families (``--exclude``) and the α curves of their settings, before anything is read
    or scored."""
    labels = {_label(sources, s, f): (s, f) for s in sources for f in s.families}
    unknown = [x for x in exclude if x not in labels]
    if unknown:
        raise ConfigError(f"--exclude {unknown[0]!r} names no method here: choose from {sorted(labels)}")
    for x in exclude:
        s, f = labels[x]
        if f in s.families:
            s.families.remove(f)
        rows = {(st.key, st.strength) for st in f.settings}  # the α curves of its settings (each ends at one) go with it
        s.families[:] = [g for g in s.families if not (g.knob == ALPHA_KNOB and rows & {(st.key, st.strength) for st in g.settings})]
    if not any(s.families for s in sources):
        raise ConfigError("--exclude leaves no method to compare: exclude fewer")


def _families(sources: Sequence[Source], common: dict[str, Any], entries: Sequence[str]) -> list[Family]:
    fams: list[Family] = []
    for s in sources:
        for f in s.families:
            label = _label(sources, s, f)
            scores = {
                e: np.stack(
                    [np.asarray([common[e]["maps"][(f.name, str(s.folder), st.name)][i] for i in common[e]["items"]]) for st in f.settings]
                )
                for e in entries
            }
            fams.append(
                Family(
                    label,
                    f.knob.symbol,
                    [st.name for st in f.settings],
                    [st.value for st in f.settings],
                    scores,
                    f.group,
                    f.primary,
                    f.knob,
                )
            )
    return fams


# --------------------------------------------------------------------------- --evaluate: one store, one base


@dataclass
class CompareConfig(CommonConfig):
    """The evaluation of ``steertax compare --evaluate``: the model and the compared tasks at their limits."""

    backend: str = "hf"
    device: str | None = None
    growable_cells: bool = True  # cells from the seeded shuffle: --until-decided adds cells, never changes one


def _scope(cfg: CompareConfig) -> str:
    """The compare store's scope: the model, dtype, seed and the tasks *without* their limits (cells are
    stable under growing limits, so more items add cells to the same scope)."""
    tasks = [{"name": t.name, "options": t.options, "label": t.label} for t in cfg.tasks]
    return "compare-" + description_hash({"model": cfg.model, "dtype": cfg.dtype, "seed": cfg.seed, "tasks": tasks}, 12)


def _study_interventions(src: Source, model: Any) -> dict[str, Intervention]:
    r = src.resolved
    cfg = from_dict(upgrade_resolved(r["config"]))
    vec = SteeringVector.load(_resolve_path(r["resolved"]["vector_file"], src.folder))
    vec.check_compatible(model, force=False)
    if cfg.vector.negate:
        vec = -vec
    vec = vec.select(cfg.vector.layers)
    out: dict[str, Intervention] = {}
    for f in src.families:
        grid = [0.0] + [s.value for s in f.settings if s.value is not None]
        cond = Condition.load(_resolve_path(r["resolved"]["condition_file"], src.folder)) if f.kind == "conditional" else None
        out[f.name] = SteeringIntervention(vec, grid, cond)
    return out


def _evaluate_all(sources: list[Source], out: Path, cfg: CompareConfig, progress: bool) -> None:
    """Score every folder's interventions on the compare store's items; point every setting at its new rows."""
    scope = _scope(cfg)
    with session(cfg, out, scope, progress=progress) as S:
        base_key = S.evaluate(BaseIntervention())
        for src in sources:
            src.base = Setting("base", None, out / "results.sqlite", base_key)
            if src.kind == "run":
                ivs = _study_interventions(src, S.model)
                for f in src.families:
                    key = S.evaluate(ivs[f.name])
                    for st in f.settings:
                        st.store, st.key = out / "results.sqlite", key
                continue
            built: dict[str, Intervention] = {}
            fill = None
            assert src.manifest is not None
            if src.kind == "merge":
                mcfg = merge_from_dict(src.resolved["config"])
                ivs_m, merge_ivs, made = merge_interventions(mcfg, S.model, S.tokenizer, src.folder, progress)
                built = made["manifest"](src.manifest.run_id)[1]  # the folder's interventions by their store keys
                fill = made["fill"]
            new_key: dict[str, str] = {}  # a folder's key -> its intervention's key in the compare store
            for f in src.families:
                for st in f.settings:
                    if st.key not in new_key:
                        iv = built.get(st.key)
                        if iv is None:
                            iv = _rebuilt_adapter(src, src.manifest.entry(st.key))
                        elif fill is not None and not isinstance(iv, AdapterIntervention) and not getattr(iv, "deltas", None):
                            fill(iv)
                        new_key[st.key] = S.evaluate(iv)
                    st.store, st.key = out / "results.sqlite", new_key[st.key]


def _rebuilt_adapter(src: Source, entry: Entry) -> Intervention:
    """An align or merge folder's adapter setting (or its α sweep) from its adapter folder."""
    if not entry.adapter:
        raise DataError(f"{src.folder}: setting {entry.label!r} has no adapter folder to rebuild it from: rerun its command")
    path = _resolve_path(entry.adapter, src.folder)
    scales = tuple(entry.extra.get("values") or ())
    if scales:
        return AdapterIntervention(path, entry.method, entry.extra.get("of") or entry.label, {"from": entry.key}, scales)
    return AdapterIntervention(path, entry.method, entry.label, {"from": entry.key})


def _compare_config(sources: Sequence[Source], keys: Sequence[tuple[str, str | None]], limit: int | None, chunk: int) -> CompareConfig:
    models = {s.model for s in sources}
    if len(models) > 1:
        raise DataError(f"these folders measure different models ({sorted(models)}): compare runs of one model")
    dtypes = {s.dtype for s in sources}
    if len(dtypes) > 1:
        raise DataError(f"these folders load the model in different dtypes ({sorted(map(str, dtypes))}): compare runs of one dtype")
    tasks = []
    for key, scorer in keys:
        confs = [_task_conf(s, key) for s in sources]
        lims = [c.get("limit") for c in confs]
        lim = limit if limit is not None else (None if any(x is None for x in lims) else max(int(x) for x in lims if x is not None))
        if lim is not None:
            lim = int(math.ceil(lim / chunk) * chunk)
        c = confs[0]
        opts = dict(c.get("options") or {})
        if "scorers" in opts:  # score only what the comparison reads
            opts["scorers"] = [_scorer_of(c, scorer)]
        tasks.append(TaskConfig(name=c["name"], limit=lim, options=opts, label=c.get("label")))
    cfg = CompareConfig(model=sources[0].model, dtype=sources[0].dtype, seed=sources[0].seed, chunk=chunk, tasks=tasks)
    cfg.check_common()
    return cfg


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


def _law_axis(fam: Family) -> tuple[str, list[float], list[int]] | str:
    """The axis a family's laws are fitted along, from its knob's declaration: (the axis, the strengths, the
    settings' indices), or why none. A knob whose base is at 0 is fitted as it is; one whose base is at ∞ (DPO's β,
    regularized DPO's λ) along 1/knob, the base at 0 (settings at knob value 0, e.g. λ = 0, are left out)."""
    knob = fam.spec
    if knob is None or knob.law_axis is None:
        return f"knob {fam.knob}: {knob.why if knob is not None else 'undeclared'}; no law along it is fitted"
    vals = fam.values
    if not vals or any(v is None for v in vals):
        return f"knob {fam.knob} has settings without a value: no law along it is fitted"
    keep = [j for j, x in enumerate(vals) if x is not None and (knob.axis == "value" or x > 0)]
    v = [knob.law_value(float(vals[j])) for j in keep]  # type: ignore[arg-type]
    if v != sorted(v) or not v or v[0] <= 0:
        return f"knob {fam.knob} does not start at the base (its settings are not in order from it): no law along it is fitted"
    return str(knob.law_axis), v, keep


def knob_laws(base: dict[str, np.ndarray], fam: Family, axes: dict[str, str], *, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """The study's laws along a family's knob (the base at 0, then its settings): every candidate law by AICc
    and the paper's local test (alignment linear, helpfulness quadratic near 0), per task. Scale knobs (r, α, a
    merge's λ) are fitted as they are; β and regularized DPO's λ (the base at ∞) along 1/β and 1/λ. Other knobs
    and families of fewer than 3 settings are not fitted (the reason is returned)."""
    axis_of = _law_axis(fam)
    if isinstance(axis_of, str):
        return {"fitted": False, "reason": axis_of}
    knob, vals, idx = axis_of
    if len(vals) < 3:
        return {"fitted": False, "reason": f"{len(vals)} settings: a law needs at least 3 besides the base"}
    out: dict[str, Any] = {"fitted": True, "knob": knob}
    for t, axis in axes.items():
        b = np.asarray(base[t], dtype=float)
        recs = [{"strength": 0.0, "item": str(i), "y": float(y)} for i, y in enumerate(b)]
        for v, row in zip(vals, np.asarray(fam.scores[t])[idx], strict=True):
            recs += [{"strength": float(v), "item": str(i), "y": float(y)} for i, y in enumerate(row) if np.isfinite(y)]
        fit = fit_task(recs, "y", axis, n_boot=n_boot, seed=seed)
        test = fit.get("paper_law_test") or {}
        verdict = str(test.get("verdict") or fit.get("reason") or "")
        out[t] = {
            "law": fit.get("law"),
            "adequate": (fit.get("selection") or {}).get("adequate"),
            "holds": test.get("holds"),
            "verdict": verdict.replace("|r|", f"|{knob}|").replace("r = 0", f"{knob} = 0"),
        }
    return out


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
) -> dict[str, Any]:
    tasks0 = sources[0].tasks
    ent = {alignment: _entry(tasks0, alignment), helpfulness: _entry(tasks0, helpfulness)}
    if ent[alignment][3] != "alignment":
        raise DataError(f"--alignment {alignment!r} is a {ent[alignment][3]} task: choose an alignment task")
    if ent[helpfulness][3] != "helpfulness" or ent[helpfulness][2] in DRIFT_METRICS:
        raise DataError(f"--helpfulness {helpfulness!r} is not a helpfulness benchmark with a score: choose one (e.g. arc_easy)")
    others = []
    for t in tasks0:
        k = str(t.get("label") or t.get("name"))
        if not other_tasks or k in ent or not all(any((x.get("label") or x.get("name")) == k for x in s.tasks) for s in sources):
            continue
        e = _entry(tasks0, k)
        if e[3] == "helpfulness" and e[2] not in DRIFT_METRICS:
            others.append(k)
    for k in others:
        ent[k] = _entry(tasks0, k)
    _check_same_tasks(sources, ent)
    rows = _Rows()
    common = _common(sources, rows, ent)
    fams = _families(sources, common, list(ent))
    reach_any = max((float(np.max(np.mean(f.scores[alignment] - common[alignment]["base"], axis=1))) for f in fams), default=float("-inf"))
    if levels:
        too_high = [L for L in levels if L > reach_any]
        if too_high:
            raise DataError(
                f"no method reaches ΔB = {too_high[0]:g} on {alignment!r} (the highest any setting reaches is "
                f"{reach_any:.3g}): choose lower --levels"
            )
    base = {e: common[e]["base"] for e in ent}
    dec = decide(base, fams, alignment, helpfulness, levels=levels, alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed)
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
    adjust: str = "holm",
    evaluate: bool = False,
    limit: int | None = None,
    until_decided: bool = False,
    budget: int | None = None,
    step: int = 16,
    chunk: int = 16,
    progress: bool = True,
    seed: int = 0,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Every folder's methods on one frontier and one item set, decided (see the module docstring). Writes
    ``compare.json``, ``compare.md`` and ``figures/frontier.png`` into ``out``; returns the result."""
    if until_decided and not evaluate:
        raise ConfigError("--until-decided adds items, which needs --evaluate (it scores them): add --evaluate")
    if until_decided and (budget is None or budget <= 0):
        raise ConfigError(f"--budget {budget} adds no items: give the most items to add per task (e.g. --budget 256)")
    if step <= 0 or step % chunk:
        raise ConfigError(f"--step {step} must be a positive multiple of the cell size {chunk}")
    if adjust not in ("holm", "bh"):
        raise ConfigError(f"--adjust {adjust!r}: use holm or bh")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha} must be in (0, 1)")
    out = Path(out)
    sources = [read_folder(d) for d in dirs]
    drop_families(sources, exclude)
    models = {s.model for s in sources}
    if len(models) > 1:
        raise DataError(f"these folders measure different models ({sorted(models)}): compare runs of one model")
    kw = dict(levels=levels, alpha=alpha, adjust=adjust, n_boot=n_boot, seed=seed, helpfulness_weight=helpfulness_weight)
    looks: list[dict[str, Any]] = []
    if not evaluate:
        res = _analyze(sources, alignment, helpfulness, **kw)  # type: ignore[arg-type]
        res["evaluated"] = False
    else:
        keys = [_entry(sources[0].tasks, e)[:2] for e in (alignment, helpfulness)]
        cfg = _compare_config(sources, keys, limit, chunk)
        n0 = {t.label or t.name: len(T.get(t.name, **t.options).items(t.limit, cfg.seed)) for t in cfg.tasks}
        n_max = {k: n + (budget or 0) for k, n in n0.items()}
        k_looks = 1 + (math.ceil((budget or 0) / step) if until_decided else 0)
        while True:
            _evaluate_all(sources, out, cfg, progress)
            used = {t.label or t.name: len(T.get(t.name, **t.options).items(t.limit, cfg.seed)) for t in cfg.tasks}
            frac = [max(used[k] / n_max[k] for k in used)] if until_decided else [1.0]
            a_k = sequential_levels([*(lk["fraction"] for lk in looks), frac[0]], alpha)[-1] if until_decided else alpha
            res = _analyze(sources, alignment, helpfulness, **{**kw, "alpha": a_k}, other_tasks=False)  # type: ignore[arg-type]
            undecided = [c for c in res["decisions"]["comparisons"] if c["status"] == "ok" and not c["decided"]]
            looks.append({"look": len(looks) + 1, "items": used, "fraction": frac[0], "alpha": a_k, "undecided": len(undecided)})
            grown = False
            if until_decided and undecided and len(looks) < k_looks:
                for t in cfg.tasks:
                    full = len(T.get(t.name, **t.options).load_items())
                    k = t.label or t.name
                    new = min(used[k] + step, n_max[k], full)
                    if new > used[k]:
                        t.limit, grown = new, True
            if not grown:
                break
        res["evaluated"] = True
        res["looks"] = looks
        if until_decided:
            res["sequential"] = (
                f"α spent over {len(looks)} look(s) as α·(t_k² − t_(k−1)²), t = share of the item budget used "
                "(union bound: any false decision at any look has probability ≤ α)"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare.json", res)
    atomic_write_text(out / "compare.md", compare_markdown(res))
    (out / "figures").mkdir(exist_ok=True)
    atomic_write_bytes(out / "figures" / "frontier.png", frontier_figure(res))
    return res


# --------------------------------------------------------------------------- words


def _f(x: Any, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.{nd}f}"


def _c(c: Any, nd: int = 3) -> str:
    return "" if not c else f" [{c[0]:+.{nd}f}, {c[1]:+.{nd}f}]"


def _p(p: Any) -> str:
    return "—" if p is None or not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _need(c: dict[str, Any]) -> str:
    if c.get("decided") or c.get("status") != "ok":
        return ""
    n = c.get("items_needed") or {}
    return ", ".join(f"{v} {t}" for t, v in n.items() if v is not None) or "—"


def compare_markdown(res: dict[str, Any]) -> str:
    al, he = res["alignment"], res["helpfulness"]
    d = res["decisions"]
    items = res["items"]
    how = (
        "scored here on one item list per task against one base evaluation (--evaluate)"
        if res.get("evaluated")
        else ("the folders' own rows on the items every folder scored, one base (the folders' base rows agree on them)")
    )
    lines = [
        f"# Which method buys alignment cheapest: {res['model']}",
        "",
        f"ΔB = change of {al} ({items[al]['n_common']} items), ΔH = change of {he} ({items[he]['n_common']} items), "
        f"both from the base on the same items: {how}.",
        f"Intervals: 95% normal bootstrap over items ({d['n_boot']} replicates, one resample of every task per replicate for every "
        f"method). Verdicts at α = {d['alpha']:g}, {'Holm' if d['adjust'] == 'holm' else 'Benjamini–Hochberg'} over the "
        f"{d['n_tests']} comparisons formed. Rule: {d['rule']}.",
        "",
        "## Settings",
        "",
        "| method | family | setting | ΔB (95% CI) | ΔH (95% CI) | mean ΔH |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["table"]:
        dB, dH = f"{_f(r['dB'])}{_c(r['dB_ci95'])}", f"{_f(r['dH'])}{_c(r['dH_ci95'])}"
        lines.append(f"| {r['method']} | {r['family']} | {r['setting']} | {dB} | {dH} | {_f(r['dH_mean'])} |")
    lines += ["", f"mean ΔH over {', '.join(res['mean_over'])}.", ""]
    lines += _efficient_md(res) + _laws_md(res, al, he)
    lines += ["## ΔH at matched alignment", ""]
    lines += ["| ΔB level | method | ΔH (95% CI) | status |", "|---|---|---|---|"]
    for m in d["matched"]:
        val = f"{_f(m.get('estimate'))}{_c(m.get('ci95'))}" if m["status"] == "ok" else "—"
        lines.append(f"| {m['level']:g} | {m['family']} | {val} | {m['status']}{' (' + m['why'] + ')' if m.get('why') else ''} |")
    lines += ["", "## Decisions: ΔH_A − ΔH_B at the same ΔB (positive: A keeps more helpfulness)", ""]
    lines += [
        "| A | B | at ΔB | ΔH_A − ΔH_B (95% CI) | p | adjusted p | verdict | items to decide (80% power) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in (c for c in d["comparisons"] if c["status"] == "ok"):
        lv = c["level"] if isinstance(c["level"], str) else f"{c['level']:g}"
        diff = f"{_f(c.get('diff'))}{_c(c.get('ci95'))}"
        lines.append(
            f"| {c['a']} | {c['b']} | {lv} | {diff} | {_p(c.get('p'))} | {_p(c.get('p_adjusted'))} | {c['verdict']} | {_need(c)} |"
        )
    rest = [c for c in d["comparisons"] if c["status"] != "ok"]
    if rest:
        lines += ["", f"Not formed ({len(rest)}, not counted in the adjustment): a method does not reach the level or is flat there.", ""]
        for c in rest:
            lv = c["level"] if isinstance(c["level"], str) else f"ΔB {c['level']:g}"
            lines.append(f"- {c['a']} vs {c['b']} at {lv}: {c['status']}")
    con = res["contrasts"]
    if con["comparisons"]:
        lines += [
            "",
            f"## Settings against settings (not matched; {'Holm' if con['adjust'] == 'holm' else 'BH'} over these {con['n_tests']})",
            "",
        ]
        lines += ["| A | B | task | A − B (95% CI) | adjusted p | verdict | items to decide |", "|---|---|---|---|---|---|---|"]
        for c in con["comparisons"]:
            diff = f"{_f(c.get('diff'))}{_c(c.get('ci95'))}" if c["status"] == "ok" else "—"
            lines.append(f"| {c['a']} | {c['b']} | {c['task']} | {diff} | {_p(c.get('p_adjusted'))} | {c['verdict']} | {_need(c)} |")
    if res.get("looks"):
        lines += ["", "## Looks", ""]
        for lk in res["looks"]:
            its = ", ".join(f"{v} {k}" for k, v in lk["items"].items())
            lines.append(f"- look {lk['look']}: {its}; α = {lk['alpha']:.3g}; {lk['undecided']} undecided")
        if res.get("sequential"):
            lines.append(f"- {res['sequential']}")
    undecided = [c for c in d["comparisons"] if c["status"] == "ok" and not c["decided"]]
    if undecided:
        dd = [c["detectable_difference"] for c in undecided if c.get("detectable_difference") is not None]
        if dd:
            lines += ["", f"With these items the undecided comparisons detect differences of {min(dd):.3f} to {max(dd):.3f} at 80% power."]
    return "\n".join(lines) + "\n"


def _efficient_md(res: dict[str, Any]) -> list[str]:
    """compare.md's table of each method's efficient point."""
    lines: list[str] = []
    eff = [m for m in res["methods"] if (m.get("efficient") or {}).get("setting")]
    if eff:
        w = eff[0]["efficient"]["helpfulness_weight"]
        lines += [
            f"## Efficient point of each method (U = {w:g}·ΔH + {1 - w:g}·ΔB)",
            "",
            "Chosen on half of the items (split by item id), measured on the other half; the choice's stability from the "
            "validation items resampled.",
            "",
            "| method | knob | chosen | ΔB held-out (95% CI) | ΔH held-out (95% CI) | U held-out (95% CI) | knob value CI | chosen in |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in eff:
            e = m["efficient"]
            ho = e["held_out"]
            share = e["choice_share"].get(e["setting"], 0.0)
            vci = "—" if not e.get("value_ci95") else f"[{e['value_ci95'][0]:g}, {e['value_ci95'][1]:g}]"
            lines.append(
                f"| {m['kind']} | {m['knob']} | {e['setting']} | {_f(ho['dB']['estimate'])}{_c(ho['dB']['ci95'])} | "
                f"{_f(ho['dH']['estimate'])}{_c(ho['dH']['ci95'])} | {_f(ho['U']['estimate'])}{_c(ho['U']['ci95'])} | {vci} | "
                f"{100 * share:.0f}% of replicates |"
            )
        lines.append("")
    return lines


def _laws_md(res: dict[str, Any], al: str, he: str) -> list[str]:
    """compare.md's table of the laws along each scale knob."""
    lines: list[str] = []
    fitted = [m for m in res["methods"] if (m.get("laws") or {}).get("fitted")]
    if fitted:
        lines += [
            "## The paper's laws along each knob",
            "",
            "The study's candidate laws (AICc) and local test, fitted along each knob from the base (0): r, α and a "
            "merge's λ as they are; DPO's β and regularized DPO's λ along 1/β and 1/λ (their base is at ∞; the "
            "KL-regularized optimum tilts the base by reward/β). Does alignment rise linearly and helpfulness fall "
            "quadratically near 0?",
            "",
            "| method | law axis | task | selected law | paper's local law | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m in fitted:
            for t in (al, he):
                L = m["laws"].get(t) or {}
                holds = {True: "holds", False: "does not hold", None: "can't tell"}[L.get("holds")]
                lines.append(f"| {m['kind']} | {m['laws']['knob']} | {t} | {L.get('law') or '—'} | {holds} | {L.get('verdict', '')} |")
        lines.append("")
    return lines

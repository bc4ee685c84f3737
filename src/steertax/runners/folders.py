"""The folders ``steertax compare`` reads: each run folder's base and families from its manifest, their rows on the
items every folder scored, checked to share one base."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from steertax import tasks as T
from steertax.analysis.decide import Family
from steertax.config import upgrade_resolved
from steertax.errors import ConfigError, DataError
from steertax.manifest import ALPHA_KNOB, RESOLVED_FILES, Knob, Manifest, read_manifest
from steertax.store import ResultStore

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


def resolve_path(p: str, folder: Path) -> Path:
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


JUDGED_METRICS = ("fluency", "base_logprob", "degenerate", "harm")  # what every judged (generate) row carries besides its task's metrics


def entry_of(tasks: Sequence[dict[str, Any]], name: str) -> tuple[str, str | None, str, str]:
    """(task key, scorer or None for the default, metric, axis) of an entry like ``refusal``, ``refusal[generate]``
    or ``over_refusal[generate]:fluency`` (a metric of the rows other than the task's primary one; fluency is a
    helpfulness axis)."""
    name, _, metric = name.partition(":")
    key, scorer = name, None
    if name.endswith("]") and "[" in name:
        key, _, sc = name[:-1].partition("[")
        scorer = sc
    for t in tasks:
        if (t.get("label") or t.get("name")) == key:
            task = T.get(t["name"], **(t.get("options") or {}))
            if not metric:
                return str(key), scorer, task.metric, task.axis
            if metric not in (*task.metrics, *task.derived, *JUDGED_METRICS):
                raise DataError(f"{key!r} has no metric {metric!r}: use one of {[*task.metrics, *task.derived, *JUDGED_METRICS]}")
            if metric in JUDGED_METRICS and scorer != "generate":
                raise DataError(f"{metric} is measured on judged generations: write {key}[generate]:{metric}")
            axis = "helpfulness" if metric in ("fluency", "base_logprob") else "alignment" if metric == "degenerate" else task.axis
            return str(key), scorer, metric, axis
    raise DataError(
        f"no task {key!r} here (tasks: {[t.get('label') or t.get('name') for t in tasks]}): choose another with --alignment/--helpfulness"
    )


class Rows:
    """Per-item scores of a setting on an entry, read once per (store, key)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def records(self, s: Setting) -> list[dict[str, Any]]:
        k = (str(s.store), s.key)
        if k not in self._cache:
            with ResultStore(s.store) as st:
                self._cache[k] = st.records(s.key)
        return self._cache[k]

    def by_item(self, s: Setting, task: str, scorer: str | None, metric: str, value: Any = None) -> dict[str, float]:
        """Item -> the setting's mean of ``metric`` on ``task`` (the scorer named, else logprob when it ran); ``value``:
        the task's :meth:`~steertax.tasks.base.Task.metric_value` (derived metrics), else the stored field."""
        rs = [r for r in self.records(s) if r["task"] == task and (s.strength is None or float(r["strength"]) == s.strength)]
        scorers = sorted({r["scorer"] for r in rs}, key=lambda x: (x != "logprob", x))
        use = scorer if scorer is not None else (scorers[0] if scorers else None)
        out: dict[str, list[float]] = {}
        for r in rs:
            v = r.get(metric) if value is None else value(r, metric)
            if r["scorer"] == use and v is not None and np.isfinite(float(v)):
                out.setdefault(str(r["item"]), []).append(float(v))
        return {i: float(np.mean(v)) for i, v in out.items()}


def task_conf(src: Source, key: str) -> dict[str, Any]:
    return next(t for t in src.tasks if (t.get("label") or t.get("name")) == key)


GENERATION_OPTIONS = ("scorers", "max_new_tokens", "judge")  # what only a generate scorer's rows depend on


def scorer_of(conf: dict[str, Any], scorer: str | None) -> str:
    """The scorer an entry reads: the one it names, else logprob when the task runs it, else its first."""
    if scorer is not None:
        return scorer
    listed = list((conf.get("options") or {}).get("scorers") or [])
    return "logprob" if not listed or "logprob" in listed else str(listed[0])


def _scoring(conf: dict[str, Any], scorer: str | None) -> dict[str, Any]:
    """What an entry's rows depend on: the task and its options (the scorer list and generation options
    only when the entry reads generations)."""
    used = scorer_of(conf, scorer)
    opts = {k: v for k, v in (conf.get("options") or {}).items() if used == "generate" or k not in GENERATION_OPTIONS}
    return {"name": conf["name"], "scorer": used, "options": opts}


def check_same_tasks(sources: Sequence[Source], entries: dict[str, tuple[str, str | None, str, str]]) -> None:
    for key, scorer, _m, _a in entries.values():
        confs = {}
        for s in sources:
            t = task_conf(s, key)
            confs[str(s.folder)] = json.dumps(_scoring(t, scorer), sort_keys=True)
        if len(set(confs.values())) > 1:
            a, b = list(confs)[:2]
            raise DataError(
                f"task {key!r} is scored differently in {a} and {b} ({confs[a]} vs {confs[b]}): compare folders that score it "
                "the same way, or pass --evaluate to score every method on one task setting"
            )


def common_items(sources: Sequence[Source], rows: Rows, entries: dict[str, tuple[str, str | None, str, str]]) -> dict[str, Any]:
    """Per entry: the items every setting of every folder has, one base (the first folder's) checked against
    every other folder's base on those items, and each family's scores on them."""
    per: dict[str, Any] = {}
    for name, (task, scorer, metric, _axis) in entries.items():
        conf = task_conf(sources[0], task)
        value = T.get(conf["name"], **(conf.get("options") or {})).metric_value
        maps: dict[tuple[str, ...], dict[str, float]] = {}
        for s in sources:
            maps[("base", str(s.folder))] = rows.by_item(s.base, task, scorer, metric, value)
            if not maps[("base", str(s.folder))]:
                raise DataError(
                    f"{s.folder} has no {metric!r} rows for {task!r} (scorer {scorer_of(task_conf(s, task), scorer)}): choose another "
                    "--alignment/--helpfulness, or rerun the folder's command into it"
                )
            for f in s.families:
                for st in f.settings:
                    maps[(f.name, str(s.folder), st.name)] = rows.by_item(st, task, scorer, metric, value)
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


def families_on_items(sources: Sequence[Source], common: dict[str, Any], entries: Sequence[str]) -> list[Family]:
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

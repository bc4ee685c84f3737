"""``steertax compare --evaluate``: every compared folder's interventions rebuilt (vector and condition files,
adapter folders, merge specs over the cached specialists) and scored into one store on one item list per task
against one base evaluation. Cells come from a seeded shuffle, so growing a task's limit adds cells and never
changes a finished one (``--until-decided``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from steertax.config import CommonConfig, TaskConfig, from_dict, judged_scoring, upgrade_resolved
from steertax.errors import DataError
from steertax.interventions import AdapterIntervention, BaseIntervention, Intervention, SteeringIntervention
from steertax.interventions.conditional import Condition
from steertax.interventions.core import description_hash
from steertax.interventions.steering.vectors import SteeringVector
from steertax.manifest import Entry
from steertax.runners.folders import Setting, Source, resolve_path, scorer_of, task_conf
from steertax.runners.merge import merge_interventions
from steertax.runners.merge_config import merge_from_dict
from steertax.runners.session import session

__all__ = ["CompareConfig", "evaluate_all", "compare_config"]


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
    spec: dict[str, Any] = {"model": cfg.model, "dtype": cfg.dtype, "seed": cfg.seed, "tasks": tasks}
    if judges := judged_scoring(cfg.tasks):
        spec["judges"] = judges
    return "compare-" + description_hash(spec, 12)


def _study_interventions(src: Source, model: Any) -> dict[str, Intervention]:
    r = src.resolved
    cfg = from_dict(upgrade_resolved(r["config"]))
    vec = SteeringVector.load(resolve_path(r["resolved"]["vector_file"], src.folder))
    vec.check_compatible(model, force=False)
    if cfg.vector.negate:
        vec = -vec
    vec = vec.select(cfg.vector.layers)
    out: dict[str, Intervention] = {}
    for f in src.families:
        grid = [0.0] + [s.value for s in f.settings if s.value is not None]
        cond = Condition.load(resolve_path(r["resolved"]["condition_file"], src.folder)) if f.kind == "conditional" else None
        out[f.name] = SteeringIntervention(vec, grid, cond)
    return out


def evaluate_all(sources: list[Source], out: Path, cfg: CompareConfig, progress: bool) -> None:
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
    path = resolve_path(entry.adapter, src.folder)
    scales = tuple(entry.extra.get("values") or ())
    if scales:
        return AdapterIntervention(path, entry.method, entry.extra.get("of") or entry.label, {"from": entry.key}, scales)
    return AdapterIntervention(path, entry.method, entry.label, {"from": entry.key})


def compare_config(sources: Sequence[Source], keys: Sequence[tuple[str, str | None]], limit: int | None, chunk: int) -> CompareConfig:
    models = {s.model for s in sources}
    if len(models) > 1:
        raise DataError(f"these folders measure different models ({sorted(models)}): compare runs of one model")
    dtypes = {s.dtype for s in sources}
    if len(dtypes) > 1:
        raise DataError(f"these folders load the model in different dtypes ({sorted(map(str, dtypes))}): compare runs of one dtype")
    tasks = []
    for key, scorer in keys:
        confs = [task_conf(s, key) for s in sources]
        lims = [c.get("limit") for c in confs]
        lim = limit if limit is not None else (None if any(x is None for x in lims) else max(int(x) for x in lims if x is not None))
        if lim is not None:
            lim = int(math.ceil(lim / chunk) * chunk)
        c = confs[0]
        opts = dict(c.get("options") or {})
        if "scorers" in opts:  # score only what the comparison reads
            opts["scorers"] = [scorer_of(c, scorer)]
        tasks.append(TaskConfig(name=c["name"], limit=lim, options=opts, label=c.get("label")))
    cfg = CompareConfig(model=sources[0].model, dtype=sources[0].dtype, seed=sources[0].seed, chunk=chunk, tasks=tasks)
    cfg.check_common()
    return cfg

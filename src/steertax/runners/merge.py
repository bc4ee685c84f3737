"""``steertax merge``: model merging on the same axes as steering and fine-tuning.

Specialists (peft LoRA adapters trained here by DPO on their data, existing adapters, or full models of the
base's architecture) give task vectors τ_t = θ_specialist − θ_base; each merge spec merges them with a registered
merge method (:mod:`steertax.interventions.merge`: task arithmetic, TIES, DARE, TSV-M, R-TSVM, averaging; each
declares its parameters, its algorithm documented in its own file and in docs/MERGING.md) and applies
θ = θ_base + λ · merge(τ_1..τ_T) over its scale grid λ in one batched evaluation. The base, each specialist, the
data-mixture baseline (one adapter on the union of the specialists' data) and every merge are evaluated into one
store; the run's ``manifest.json`` records every setting and curve. Safe to kill and rerun.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from steertax import tasks as T
from steertax._util import atomic_write_bytes, atomic_write_text
from steertax.errors import ConfigError, DataError
from steertax.interventions import (
    AdapterIntervention,
    BaseIntervention,
    Intervention,
    adapter_ready,
    store_key,
)
from steertax.interventions.merge import (
    MERGE_REGISTRY,
    MergedIntervention,
    adapter_deltas,
    deltas_hash,
    merge_deltas,
    model_deltas,
)
from steertax.manifest import ALPHA_KNOB, POINT_KNOB, SCALE_KNOB, Entry, Family, Knob, Manifest, Row
from steertax.models import load_model
from steertax.reports.merge import three_h_figure
from steertax.runners.executors import check_executor
from steertax.runners.merge_config import MergeConfig, MergeSpec, spec_of
from steertax.runners.preflight import check_lora_targets, check_run, raise_problems, resolve_model
from steertax.runners.session import session
from steertax.runners.summary import summarize_run
from steertax.tasks import get as get_task
from steertax.training import AlignSetting, train_setting
from steertax.training.settings import resolved_precision
from steertax.training.specialists import specialist_data

__all__ = ["merge_interventions", "merge_setting", "merge_spec", "check_merge", "run_merge"]


TRAINED, MERGING = "fine-tuning", "merging"  # the groups of methods reports colour by


# -- the run


def _train_once(
    cfg: MergeConfig,
    name: str,
    rows: list[dict[str, str]],
    beta: float,
    steps: int,
    model: Any,
    tok: Any,
    out: Path,
    progress: bool,
    data_tag: Any,
) -> Path:
    """A specialist (or the mixture) trained by ``steertax align``'s trainer, cached under a hash of what shapes it."""

    path = out / "adapters" / f"{name}-{cfg.training_hash(name, data_tag)}"
    if adapter_ready(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    setting = AlignSetting.of("dpo", beta=beta, steps=steps, label=name)
    info = train_setting(model, tok, setting, rows, tmp, lora=cfg.lora, train=cfg.train, seed=cfg.seed, progress=progress)
    (tmp / "setting.json").write_text(json.dumps({"setting": dataclasses.asdict(setting), "name": name, **info}, indent=1, default=str))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def _specialists(
    cfg: MergeConfig, model: Any, tok: Any, out: Path, progress: bool, exclude: set[str]
) -> tuple[dict[str, Path], dict[str, dict[str, torch.Tensor]], Path | None]:
    """The specialists (adapter folders, trained once and cached; or full models' deltas) and the
    data-mixture adapter (None without trained specialists or with ``mixture: false``)."""

    paths: dict[str, Path] = {}
    union: list[dict[str, str]] = []
    full: dict[str, dict[str, torch.Tensor]] = {}
    for s in cfg.specialists:
        if s.adapter is not None:
            paths[s.name] = Path(s.adapter)
        elif s.model is not None:
            other, _ = load_model(s.model, cfg.dtype)
            full[s.name] = model_deltas(other, model)
            del other
        else:
            rows = specialist_data(str(s.data), cfg.n_pairs, cfg.seed, exclude)
            if len(rows) < 4:
                raise DataError(
                    f"specialist {s.name}: {len(rows)} training pairs are left after holding out the evaluated items; lower a limit"
                )
            union += rows
            paths[s.name] = _train_once(cfg, s.name, rows, s.beta, cfg.train.steps, model, tok, out, progress, [s.data, s.beta])
    mixture = None
    if cfg.mixture and union:
        random.Random(cfg.seed).shuffle(union)
        n_trained = sum(1 for s in cfg.specialists if s.data is not None)
        beta = cfg.resolved_mixture_beta()
        if beta is None:  # check_merge refuses this before the model loads
            raise ConfigError("mixture_beta: the specialists' β differ; set the mixture's β")
        tag: list[Any] = [[s.data, s.beta] for s in cfg.specialists]
        if cfg.mixture_beta is not None:  # an explicit β is part of what the mixture was trained with
            tag.append(["mixture_beta", beta])
        mixture = _train_once(cfg, "mixture", union, beta, cfg.train.steps * n_trained, model, tok, out, progress, tag)
    return paths, full, mixture


def check_merge(cfg: MergeConfig, out: str | Path | None = None) -> None:
    """Every input of ``steertax merge`` checked before the model loads (model, tasks and their data, the
    specialists' adapters, models and preference files, the output folder, the executor); one line."""

    def extra(P: Any) -> None:
        for i, s in enumerate(cfg.specialists):
            where = f"specialists[{i}] ({s.name})"
            if s.adapter is not None:
                with P.at(where):
                    if not (Path(s.adapter) / "adapter_config.json").is_file():
                        raise DataError(
                            f"{s.adapter} is not a peft adapter folder (no adapter_config.json): give a folder `steertax align` saved"
                        )
            if s.data is not None and s.data.endswith(".jsonl"):
                with P.at(where):
                    specialist_data(s.data, 1, cfg.seed)
            if s.model is not None:
                with P.at(f"{where}.model"):
                    resolve_model(str(s.model), {})
        if any(s.data is not None for s in cfg.specialists) or cfg.mixture:
            with P.at("lora.targets", wrap=ConfigError):
                check_lora_targets(cfg.model, cfg.lora.targets)
        with P.at("executor", wrap=ConfigError):
            check_executor(cfg.executor)

    problems, _ = check_run(cfg, out, extra)
    raise_problems(problems)


def run_merge(cfg: MergeConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train (or load) the specialists and the mixture, evaluate the base, each specialist, the mixture
    and every merge setting into one store, then summarize (table, 3H figure). Safe to kill and rerun."""

    out = Path(out)
    check_merge(cfg, out)  # every input, before anything is written or the model loads
    run_id = f"merge-{cfg.eval_hash()}"
    with session(cfg, out, run_id, stale=("adapters/.*.tmp*",), progress=progress) as S:
        ivs, merge_ivs, made = merge_interventions(cfg, S.model, S.tokenizer, out, progress)
        man, _ = made["manifest"](run_id)
        resolved = {
            "run_id": run_id,
            "config": cfg.to_dict(),
            "kind": "merge",
            "specialists": {n: str(p) for n, p in made["paths"].items()},
            "mixture": str(made["mixture"]) if made["mixture"] else None,
        }
        atomic_write_text(out / "merge.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        for iv in ivs:
            S.evaluate(iv)
        for miv in merge_ivs:
            made["fill"](miv)
            S.evaluate(miv)
    man.write(out)
    summary = summarize_run(out)
    (out / "figures").mkdir(exist_ok=True)
    atomic_write_bytes(out / "figures" / "merge_3h.png", three_h_figure(summary))
    return summary


def merge_interventions(
    cfg: MergeConfig, model: Any, tok: Any, out: Path, progress: bool = True
) -> tuple[list[Intervention], list[MergedIntervention], dict[str, Any]]:
    """A merge run's interventions: the base, each specialist, the mixture, and every merge setting (its
    merged deltas computed on demand by ``made["fill"](iv)``, one merge spec's deltas in memory at a time).
    Specialists and the mixture are trained into ``out/adapters`` unless already there (then only loaded)."""
    tq = next((t for t in cfg.tasks if T.has_trait(t.name, T.HONEST_SPECIALIST_DATA)), None)
    exclude = {it.id for it in get_task(tq.name, **tq.options).items(tq.limit, cfg.seed)} if tq else set()
    paths, full, mixture = _specialists(cfg, model, tok, out, progress, exclude)
    names = [s.name for s in cfg.specialists]
    deltas = [full[n] if n in full else adapter_deltas(paths[n], model) for n in names]
    common = {k: cfg.to_dict()[k] for k in ("model", "dtype", "seed", "n_pairs", "lora", "train", "quick")}
    common["precision"] = resolved_precision(cfg.train.precision)
    ivs: list[Intervention] = [BaseIntervention()]
    sweeps: list[Intervention] = []  # the α curve of every specialist and the mixture (one batched evaluation each)
    of: dict[int, str] = {}
    for s in cfg.specialists:
        alphas = tuple(cfg.alphas if s.alphas is None else s.alphas)
        if s.name in full:
            spec = {"model": s.model, "dtype": cfg.dtype, "deltas": deltas_hash(full[s.name])}
            ivs.append(MergedIntervention(full[s.name], 1.0, "specialist", s.name, spec))
            if alphas:
                sweeps.append(MergedIntervention(full[s.name], 1.0, "specialist", f"{s.name} (α)", spec, scales=alphas))
        else:
            ivs.append(AdapterIntervention(paths[s.name], "specialist", s.name, {**common, "specialist": spec_of(s)}))
            if alphas:
                sweeps.append(AdapterIntervention(paths[s.name], "specialist", s.name, {**common, "specialist": spec_of(s)}, alphas))
        if alphas:
            of[id(sweeps[-1])] = s.name
    if mixture is not None:
        mix_spec = {**common, "specialists": [spec_of(s) for s in cfg.specialists], "beta": cfg.resolved_mixture_beta()}
        ivs.append(AdapterIntervention(mixture, "mixture", "mixture", mix_spec))
        if alphas := tuple(cfg.alphas):
            sweeps.append(AdapterIntervention(mixture, "mixture", "mixture", mix_spec, alphas))
            of[id(sweeps[-1])] = "mixture"
    spec_keys = [iv.key for iv in ivs[1 : 1 + len(names)]]  # what every merge's deltas come from
    # each merge spec's scales λ are its knob: one batched evaluation (row b runs θ_base + λ_b·merge)
    merge_ivs = [merge_setting(m, names, spec_keys, cfg.seed) for m in cfg.merges]
    specs = {id(miv): m for m, miv in zip(cfg.merges, merge_ivs, strict=True)}

    def manifest(run_id: str) -> tuple[Manifest, dict[str, Intervention]]:
        """The run's manifest (families, knobs, every evaluated setting) and its interventions by store key."""
        man = Manifest("merge", run_id, cfg.model, cfg.dtype, cfg.seed, cfg.to_dict()["tasks"], store_key(run_id, ivs[0]))
        man.entries.append(Entry(man.base_key, "base", "base", [Row("base")]))
        by_key: dict[str, Intervention] = {man.base_key: ivs[0]}
        main: dict[str, Row] = {}
        for iv in ivs[1:]:  # specialists and the mixture: points
            fam = man.add_family(Family(iv.name() if iv.method == "mixture" else f"specialist {iv.name()}", iv.method, TRAINED, POINT_KNOB))
            main[iv.name()] = Row(iv.name(), None, {fam.name: None})
            man.entries.append(Entry(store_key(run_id, iv), iv.method, iv.name(), [main[iv.name()]], _adapter_of(iv)))
        for iv in sweeps:  # their α curves: base → α → the adapter (α = 1)
            of_name, grid = of[id(iv)], tuple(getattr(iv, "scales", None) or ())
            fam = man.add_family(Family(f"{of_name} (α)", iv.method, TRAINED, ALPHA_KNOB))
            rows = [Row(f"{of_name} α={a:g}", float(a), {fam.name: float(a)}) for a in grid]
            man.entries.append(
                Entry(store_key(run_id, iv), iv.method, f"{of_name} (α)", rows, _adapter_of(iv), {"of": of_name, "values": list(grid)})
            )
            main[of_name].on[fam.name] = 1.0
        for m, miv in zip(cfg.merges, merge_ivs, strict=True):  # each spec's λ grid, or a point of a weight curve
            if m.weight_of is not None and m.weights is not None:
                j = names.index(m.weight_of)
                rest = ",".join("·" if k == j else f"{w:g}" for k, w in enumerate(m.weights))
                scale = ",".join(f"{lam:g}" for lam in m.scales)
                knob = Knob("weight", f"w({m.weight_of})", None, None, "a weight curve does not start at the base")
                fam = man.add_family(Family(m.weight_family(scale, rest), m.method, MERGING, knob))
                rows = [Row(m.name(lam), float(lam), {fam.name: float(m.weights[j])}) for lam in m.scales]
            else:
                fam = man.add_family(Family(m.series(), m.method, MERGING, SCALE_KNOB))
                rows = [Row(m.name(lam), float(lam), {fam.name: float(lam)}) for lam in m.scales]
            man.entries.append(Entry(store_key(run_id, miv), m.method, miv.name(), rows))
        by_key.update({store_key(run_id, iv): iv for iv in [*ivs[1:], *sweeps, *merge_ivs]})
        return man, by_key

    cache: dict[str, dict[str, torch.Tensor]] = {}

    def fill(miv: MergedIntervention) -> None:
        m = specs[id(miv)]
        key = json.dumps([m.method, m.weights, m.params_dict()])  # everything the merged deltas depend on
        if key not in cache:
            cache.clear()  # one merged delta set in memory at a time (a spec's scales share it)
            cache[key] = merge_deltas(deltas, m.weights or [1.0] * len(names), m.method, seed=cfg.seed, params=m.params)
        miv.deltas = cache[key]

    return ivs + sweeps, merge_ivs, {"paths": paths, "mixture": mixture, "fill": fill, "full": full, "manifest": manifest}


def _adapter_of(iv: Intervention) -> str | None:
    path = getattr(iv, "path", None)
    return str(path) if path else None


def merge_setting(m: MergeSpec, names: Sequence[str], spec_keys: Sequence[str], seed: int) -> MergedIntervention:
    """A merge spec's intervention before its deltas are made (``fill`` makes them): its λ grid as the knob,
    keyed by :func:`merge_spec`."""
    return MergedIntervention({}, 1.0, m.method, f"{m.series()} (λ)", merge_spec(m, names, spec_keys, seed), scales=m.scales)


def merge_spec(m: MergeSpec, names: Sequence[str], spec_keys: Sequence[str], seed: int) -> dict[str, Any]:
    """A merge setting's resolved description: the method and its implementation's version, its parameters
    and the weights, the specialists (names and keys) and the seed (DARE's drops)."""
    return {
        "method": m.method,
        "version": MERGE_REGISTRY[m.method].version,
        "params": {**m.params_dict(), "weights": m.weights},
        "specialists": dict(zip(names, spec_keys, strict=True)),
        "seed": seed,
    }

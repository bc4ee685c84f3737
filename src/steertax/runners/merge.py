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

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml

from steertax import tasks as T
from steertax._util import atomic_write_bytes, atomic_write_text
from steertax.config import CommonConfig, build_config, load_yaml, quick_tasks
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
    MergeMethod,
    adapter_deltas,
    build_merge_params,
    deltas_hash,
    merge_deltas,
    merge_method,
    merge_methods,
    model_deltas,
    non_default_params,
)
from steertax.manifest import ALPHA_KNOB, POINT_KNOB, SCALE_KNOB, Entry, Family, Knob, Manifest, Row
from steertax.models import load_model
from steertax.reports.merge import three_h_figure
from steertax.runners.align import check_alphas
from steertax.runners.executors import check_executor
from steertax.runners.preflight import check_lora_targets, check_run, raise_problems, resolve_model
from steertax.runners.session import session
from steertax.runners.summary import summarize_run
from steertax.tasks import get as get_task
from steertax.training import AlignSetting, LoraSettings, TrainSettings, train_setting
from steertax.training.settings import resolved_precision
from steertax.training.specialists import SPECIALIST_DATA, specialist_data

__all__ = [
    "MergeConfig",
    "MergeSpec",
    "SpecialistConfig",
    "load_merge_config",
    "merge_from_dict",
    "merge_interventions",
    "merge_setting",
    "check_merge",
    "run_merge",
]


TRAINED, MERGING = "fine-tuning", "merging"  # the groups of methods reports colour by


# --------------------------------------------------------------------------- `steertax merge`


@dataclass
class SpecialistConfig:
    """A specialist: trained here by DPO on ``data`` (harmless | helpful | honest | a .jsonl with
    prompt, chosen, rejected), an existing peft ``adapter`` folder of the base model, or a full ``model``
    of the base's architecture (a folder or hub id; its task vector is its 2-D weights minus the base's)."""

    name: str = ""
    data: Optional[str] = None
    adapter: Optional[str] = None
    model: Optional[str] = None
    beta: float = 0.1
    alphas: Optional[list[float]] = None  # this specialist's α grid (None: the config's ``alphas``; [] none)


# the keys every merge spec has, whatever its method (the rest of a spec's YAML keys are its method's parameters)
MERGE_COMMON = ("method", "scales", "weights", "label", "weight_grid", "weight_of")


@dataclass
class MergeSpec:
    """One merge method over the ``scales`` λ (θ = θ_base + λ·merge) with the specialists' ``weights``
    (one per specialist, default 1 each) and ``params``, the method's own parameter dataclass (None: its
    defaults; a dict: checked and built). ``MergeSpec.of("ties", density=0.7, scales=[1.0])`` takes the flat
    form YAML uses, which :meth:`to_dict` writes back."""

    method: str = "task_arithmetic"
    scales: list[float] = field(default_factory=lambda: [1.0])
    weights: Optional[list[float]] = None
    label: Optional[str] = None
    # a curve along one specialist's weight: one merge per value of ``weight_grid`` (the specialist
    # ``weight_of`` gets it, the others keep ``weights`` or 1); expanded when the config loads
    weight_grid: Optional[list[float]] = None
    weight_of: Optional[str] = None
    params: Any = None

    def __post_init__(self) -> None:
        m = merge_method(self.method, "merges.method")
        if self.params is None:
            self.params = m.params()
        elif isinstance(self.params, dict):
            self.params = build_merge_params(m, self.params, "merges")
        elif not isinstance(self.params, m.params):
            raise ConfigError(f"merges: {self.method} takes {m.params.__name__} parameters, got {type(self.params).__name__}")

    @classmethod
    def of(cls, method: Any, where: str = "merges", **kw: Any) -> "MergeSpec":
        """A spec from the flat form: ``method``, its parameters and the common keys side by side."""
        m = merge_method(method, f"{where}.method")
        owned = {k for other in MERGE_REGISTRY.values() for k in other.param_names()}
        for k in kw:
            if k not in MERGE_COMMON and k not in owned:
                raise ConfigError(f"unknown key {where}.{k}: valid keys here are {sorted([*MERGE_COMMON, *m.param_names()])}")
        common: MergeSpec = build_config(cls, {k: v for k, v in kw.items() if k in MERGE_COMMON} | {"method": method}, where)
        # another method's parameter is refused here, naming this method's own
        common.params = build_merge_params(m, {k: v for k, v in kw.items() if k not in MERGE_COMMON}, where)
        return common

    @property
    def spec(self) -> MergeMethod:
        return MERGE_REGISTRY[self.method]

    def params_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)

    def to_dict(self) -> dict[str, Any]:
        """The flat form, as a config writes it: the method, its parameters, then the common keys."""
        d: dict[str, Any] = {"method": self.method, **self.params_dict()}
        d.update({k: copy.deepcopy(getattr(self, k)) for k in MERGE_COMMON if k != "method"})
        return d

    def _parts(self) -> tuple[str, list[str], list[str]]:
        """The display name's parts: the label (or method), its parameters that are not their defaults
        (``k=v``), the weights."""
        extra = [f"{k}={_fmt(v)}" for k, v in non_default_params(self.params).items()]
        w = ["w=" + ",".join(f"{x:g}" for x in self.weights)] if self.weights is not None else []
        return self.label or self.method, extra, w

    def series(self) -> str:
        """The spec without its scale: one line of the 3H figure, and its settings' names (display only)."""
        head, extra, w = self._parts()
        return " ".join([head, *extra, *w])

    def name(self, scale: float) -> str:
        head, extra, w = self._parts()
        return " ".join([head, f"λ={scale:g}", *extra, *w])

    def weight_family(self, scales: str, rest: str) -> str:
        """The name of the weight curve this spec is a point of (its weight of ``weight_of`` left out: ``rest``)."""
        head, extra, _ = self._parts()
        return " ".join([head, f"λ={scales}", *extra, f"w={rest}", f"({self.weight_of} weight)"])


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass
class MergeConfig(CommonConfig):
    n_pairs: int = 96  # preference pairs per specialist (the mixture gets their union)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    specialists: list[SpecialistConfig] = field(default_factory=list)
    merges: list[MergeSpec] = field(default_factory=list)
    mixture: bool = True  # the data-mixture baseline: one adapter on the union of the specialists' data
    alphas: list[float] = field(default_factory=list)  # each specialist's and the mixture's scale knob
    mixture_beta: Optional[float] = None  # the mixture's DPO β; default: the trained specialists' β (refused if they differ)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["merges"] = [m.to_dict() for m in self.merges]  # the flat form, which merge_from_dict reads back
        return d

    def resolved_mixture_beta(self) -> float | None:
        """The β the mixture is trained with: ``mixture_beta``, else the one β every trained specialist shares."""
        if self.mixture_beta is not None:
            return float(self.mixture_beta)
        betas = sorted({float(s.beta) for s in self.specialists if s.data is not None})
        return betas[0] if len(betas) == 1 else None

    def eval_hash(self) -> str:
        """The run id's hash: everything the rows depend on except the merge specs (each merge setting's
        name carries all of its own parameters), so a changed specialist or training setting never
        reuses old rows, and adding a merge spec reuses the rest."""
        d = self.to_dict()
        spec = {k: d[k] for k in ("tasks", "seed", "model", "dtype", "quick", "n_pairs", "lora", "train", "specialists", "mixture")}
        spec["specialists"] = [_spec_of(sp) for sp in self.specialists]  # α grids add rows, change none
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def training_hash(self, name: str, data: Any) -> str:
        spec = {k: self.to_dict()[k] for k in ("model", "dtype", "seed", "n_pairs", "lora", "train", "quick")}
        spec.update(name=name, data=data, eval_tasks=self.to_dict()["tasks"])  # honest data excludes the evaluated items
        spec["precision"] = resolved_precision(self.train.precision)  # auto resolves per machine
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def quick_version(self) -> "MergeConfig":
        d = self.to_dict()
        quick_tasks(d)
        d["n_pairs"] = min(d["n_pairs"], 16)
        d["train"]["steps"] = min(d["train"]["steps"], 4)
        d["train"]["batch_size"] = min(d["train"]["batch_size"], 4)
        d["merges"] = [{**m, "scales": m["scales"][-1:]} for m in d["merges"][:3]]
        d["alphas"] = d["alphas"][:1]
        return merge_from_dict(d)


def _merge(i: int, m: Any) -> MergeSpec:
    """A merge spec from its YAML mapping: the method's own parameters checked against its declaration."""
    where = f"merges[{i}]"
    if not isinstance(m, dict):
        raise ConfigError(f"{where}: expected a mapping like {{method: ties, density: 0.5, scales: [1.0]}}, got {type(m).__name__}")
    if "method" not in m:
        m = {**m, "method": MergeSpec.method}
    kw = dict(m)
    return MergeSpec.of(kw.pop("method"), where, **kw)


def merge_from_dict(d: dict[str, Any]) -> MergeConfig:

    if not isinstance(d, dict):
        raise ConfigError(f"a merge config must be a YAML mapping, got {type(d).__name__}")
    d = dict(d)
    raw = d.pop("merges", [])
    if not isinstance(raw, list):
        raise ConfigError(f"merges: expected a list of merges, got {type(raw).__name__}")
    cfg: MergeConfig = build_config(MergeConfig, d, "")
    cfg.merges = [_merge(i, m) for i, m in enumerate(raw)]
    if len(cfg.specialists) < 1:
        raise ConfigError("specialists: list at least one (e.g. {name: harmless, data: harmless})")
    names = [s.name for s in cfg.specialists]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"specialists: every specialist needs a distinct name, got {names}")
    for i, s in enumerate(cfg.specialists):
        if sum(x is not None for x in (s.data, s.adapter, s.model)) != 1:
            raise ConfigError(
                f"specialists[{i}] ({s.name}): give exactly one of data (harmless, helpful, honest, a .jsonl), adapter (a folder) or model"
            )
        if s.data is not None and s.data not in SPECIALIST_DATA and not str(s.data).endswith(".jsonl"):
            raise ConfigError(f"specialists[{i}].data: {s.data!r} is not one of {SPECIALIST_DATA} or a .jsonl file")
    cfg.merges = _expand_weight_grids(cfg)
    _check_merges(cfg)
    check_alphas(cfg.alphas)
    for i, s in enumerate(cfg.specialists):
        if s.alphas is not None:
            check_alphas(s.alphas, f"specialists[{i}].alphas")
    if cfg.mixture and any(s.data is not None for s in cfg.specialists) and cfg.resolved_mixture_beta() is None:
        betas = {s.name: s.beta for s in cfg.specialists if s.data is not None}
        raise ConfigError(f"mixture_beta: the specialists are trained with different β {betas}: set the mixture's β (mixture_beta: 0.1)")
    if cfg.mixture_beta is not None and not (math.isfinite(cfg.mixture_beta) and cfg.mixture_beta > 0):
        raise ConfigError(f"mixture_beta: {cfg.mixture_beta} must be a positive number")
    cfg.check_common()
    return cfg


def _expand_weight_grids(cfg: MergeConfig) -> list[MergeSpec]:
    """Each spec with a ``weight_grid`` becomes one spec per value (the weight curve's points, each keeping
    ``weight_of`` so the run's order names the curve); the others are kept as they are."""
    names = [s.name for s in cfg.specialists]
    out: list[MergeSpec] = []
    for i, m in enumerate(cfg.merges):
        if m.weight_grid is None:
            if m.weight_of is not None and m.weights is None:
                raise ConfigError(f"merges[{i}].weight_of: {m.weight_of!r} without weight_grid: give weight_grid, e.g. [1.5, 2, 3]")
            out.append(m)
            continue
        if m.weight_of not in names:
            raise ConfigError(
                f"merges[{i}].weight_of: {m.weight_of!r} is not a specialist ({', '.join(names)}): name the one whose weight the grid sets"
            )
        grid = [float(w) for w in m.weight_grid]
        if len(grid) < 2 or len(set(grid)) != len(grid) or not all(math.isfinite(w) and w >= 0 for w in grid):
            raise ConfigError(f"merges[{i}].weight_grid: {m.weight_grid} must be at least two distinct finite weights ≥ 0")
        j = names.index(m.weight_of)
        for w in sorted(grid):
            weights = list(m.weights or [1.0] * len(names))
            if len(weights) == len(names):
                weights[j] = w
            out.append(dataclasses.replace(m, weights=weights, weight_grid=None))
    return out


def _check_merges(cfg: MergeConfig) -> None:
    seen: set[str] = set()
    for i, m in enumerate(cfg.merges):
        if m.method not in MERGE_REGISTRY:
            raise ConfigError(f"merges[{i}].method: {m.method!r} is not one of {merge_methods()}")
        if msg := m.spec.problem(m.params):  # the method's own check of its parameters
            raise ConfigError(f"merges[{i}]: {msg}")
        for lam in m.scales:
            if m.name(lam) in seen:
                raise ConfigError(f"merges[{i}]: {m.name(lam)!r} appears twice; give one a distinct label")
            seen.add(m.name(lam))
        if m.weights is not None and len(m.weights) != len(cfg.specialists):
            raise ConfigError(f"merges[{i}].weights: {len(m.weights)} weights for {len(cfg.specialists)} specialists: one per specialist")
        if not m.scales:
            raise ConfigError(f"merges[{i}].scales: give at least one λ")
        if m.weights is not None and not all(math.isfinite(w) for w in m.weights):
            raise ConfigError(f"merges[{i}].weights: {m.weights} must be finite numbers")


def load_merge_config(path_or_name: str | Path | None) -> MergeConfig:
    """A YAML file, or the built-in ``merge`` (the default)."""
    return merge_from_dict(load_yaml(path_or_name, ("merge",), "merge"))


# -- the specialists' data


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
            ivs.append(AdapterIntervention(paths[s.name], "specialist", s.name, {**common, "specialist": _spec_of(s)}))
            if alphas:
                sweeps.append(AdapterIntervention(paths[s.name], "specialist", s.name, {**common, "specialist": _spec_of(s)}, alphas))
        if alphas:
            of[id(sweeps[-1])] = s.name
    if mixture is not None:
        mix_spec = {**common, "specialists": [_spec_of(s) for s in cfg.specialists], "beta": cfg.resolved_mixture_beta()}
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


def _spec_of(s: SpecialistConfig) -> dict[str, Any]:
    """A specialist's part of a key: its training inputs (its α grid changes no row, so it is left out)."""
    return {k: v for k, v in dataclasses.asdict(s).items() if k != "alphas"}


def merge_setting(m: MergeSpec, names: Sequence[str], spec_keys: Sequence[str], seed: int) -> MergedIntervention:
    """A merge spec's intervention before its deltas are made (``fill`` makes them): its λ grid as the knob,
    keyed by :func:`_merge_spec`."""
    return MergedIntervention({}, 1.0, m.method, f"{m.series()} (λ)", _merge_spec(m, names, spec_keys, seed), scales=m.scales)


def _merge_spec(m: MergeSpec, names: Sequence[str], spec_keys: Sequence[str], seed: int) -> dict[str, Any]:
    """A merge setting's resolved description: the method and its implementation's version, its parameters
    and the weights, the specialists (names and keys) and the seed (DARE's drops)."""
    return {
        "method": m.method,
        "version": MERGE_REGISTRY[m.method].version,
        "params": {**m.params_dict(), "weights": m.weights},
        "specialists": dict(zip(names, spec_keys, strict=True)),
        "seed": seed,
    }

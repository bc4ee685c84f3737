"""``steertax merge``'s config: the specialists, the merge specs (each a registered merge method with its own
parameters, flat in YAML) and the training and mixture settings; loaded and checked in one place."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from steertax.config import CommonConfig, build_config, judged_scoring, load_yaml, quick_tasks
from steertax.errors import ConfigError
from steertax.interventions.merge import MERGE_REGISTRY, MergeMethod, build_merge_params, merge_method, merge_methods, non_default_params
from steertax.runners.align import check_alphas
from steertax.training import LoraSettings, TrainSettings
from steertax.training.settings import resolved_precision
from steertax.training.specialists import SPECIALIST_DATA

__all__ = ["MergeConfig", "MergeSpec", "SpecialistConfig", "MERGE_COMMON", "load_merge_config", "merge_from_dict", "spec_of"]


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
        spec["specialists"] = [spec_of(sp) for sp in self.specialists]  # α grids add rows, change none
        if judges := judged_scoring(self.tasks):
            spec["judges"] = judges
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


def spec_of(s: SpecialistConfig) -> dict[str, Any]:
    """A specialist's part of a key: its training inputs (its α grid changes no row, so it is left out)."""
    return {k: v for k, v in dataclasses.asdict(s).items() if k != "alphas"}

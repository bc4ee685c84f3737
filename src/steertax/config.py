"""The study configuration: a validated YAML schema <-> typed dataclasses.

Unknown keys and wrong types are ConfigErrors naming the key (``tasks[2].limit: expected int``).
``content_hash`` identifies a run: the same resolved config resumes, a different one is a new run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import yaml

from steertax import tasks, tasks as T
from steertax._util import parse_layers
from steertax.errors import ConfigError
from steertax.executor_config import ExecutorConfig, check_executor
from steertax.interventions.prompting import DEFAULT_LADDER, Rung, check_ladder
from steertax.interventions.steering.extraction import EXTRACTION_METHODS, extraction_methods

__all__ = [
    "CommonConfig",
    "build_config",
    "check_tasks",
    "quick_tasks",
    "RunConfig",
    "VectorConfig",
    "StrengthConfig",
    "TaskConfig",
    "StudyConfig",
    "TheoryConfig",
    "load_config",
    "load_yaml",
    "default_config",
    "builtin_config",
    "BUILTIN_CONFIGS",
]


@dataclass
class VectorConfig:
    """Where the steering vector comes from: an existing file (``path``) or extraction settings."""

    path: Optional[str] = None
    pairs: str = "refusal"  # refusal | harmful_harmless | a .csv/.jsonl of pairs
    n_pairs: Optional[int] = 240
    method: str = "pca"  # an extraction method: pca | mean_diff | probe | one registered (steering.extraction)
    layers: str = "8-12"
    position: Optional[str] = None  # last | answer_mean (default: the pairs' own)
    heldout: float = 0.2
    negate: bool = False  # flip the vector (e.g. to express a harmful-vs-harmless reading vector's sign)


@dataclass
class StrengthConfig:
    """The r_e grid: explicit ``values``, or ``n`` points from 0 to ``max_relative`` x the mean
    residual norm at the steered layers (mirrored to negative values with ``both_signs``), plus
    ``n_local`` extra points per side inside the small-|r| window |r| <= ``local_fraction`` x the
    grid's largest |r| (where the paper's local laws are tested; that test needs >= 5 strengths)."""

    values: Optional[list[float]] = None
    max_relative: float = 0.16
    n: int = 9
    both_signs: bool = False
    n_local: int = 0
    local_fraction: float = 0.25


@dataclass
class TaskConfig:
    name: str = ""
    limit: Optional[int] = None
    options: dict = field(default_factory=dict)
    label: Optional[str] = None  # store key when the same task runs twice with other options


@dataclass
class StudyConfig:
    # U = w·ΔH + (1 − w)·ΔB: w weighs helpfulness, as the alignment-tax literature writes U = α·helpful + (1 − α)·harmless
    helpfulness_weight: float = 0.5
    alignment_task: str = tasks.task_with(tasks.DEFAULT_ALIGNMENT)
    helpfulness_task: str = tasks.task_with(tasks.DEFAULT_HELPFULNESS)
    kl_ceiling: Optional[float] = None  # optional cap on drift KL at r*
    validation_fraction: float = 0.5
    n_boot: int = 200


@dataclass
class TheoryConfig:
    enabled: bool = True
    n_prompts: int = 16
    top_k: int = 10
    r_max: Optional[float] = None  # |r| range for the slope fits (default: half the grid's max)
    n_points: int = 7


@dataclass
class ConditionConfig:
    """Conditional steering (CAST): a condition fitted on two prompt sets (or loaded from ``path``);
    the study then runs the unconditional sweep and the conditional one on the same grid and items."""

    path: Optional[str] = None  # a condition file (steertax condition --out); else fitted from:
    positive: str = "harmful"  # harmful (refusal_direction's harmful train+val) | a .txt (one prompt a line) / .jsonl (prompt)
    negative: str = "harmless"  # harmless (Alpaca instructions, refusal_direction's harmless train) | a file
    n: int = 128  # prompts per side; half fit the direction, half choose the layer and threshold
    layers: Optional[str] = None  # candidate layers (default: every layer below the first steered one)
    objective: str = "f1"  # f1: maximize F1 | fpr: most positives caught at false-positive rate <= target_fpr
    target_fpr: float = 0.05
    threshold: Optional[float] = None  # override the fitted threshold (cosine similarity; the direction and layer stay)
    read: str = "mean"  # mean of the request's token states (first token left out) | last token | all (every token)
    score: str = "cosine"  # cosine: cos(h, c) | reference: IBM activation-steering's cos(h, tanh(P h)) (see Condition)
    chat: bool = False  # read requests inside the chat template (default: the request's own text)


@dataclass
class SteeringConfig:
    condition: Optional[ConditionConfig] = None


@dataclass
class RungConfig:
    """One rung of the aligning-prompt ladder: the safety system prompt on or off, and the demonstrations it adds."""

    system: bool = False
    demonstrations: int = 0


def _default_ladder() -> list[RungConfig]:
    return [RungConfig(r.system, r.demonstrations) for r in DEFAULT_LADDER]


@dataclass
class PromptingConfig:
    """The aligning-prompt baseline (:mod:`steertax.interventions.prompting`): its rungs are scored on the study's
    items beside the steering sweep (the first rung adds no text: it is the base, the sweep's r = 0 rows)."""

    system: str = "default"  # Llama 2's safety system prompt, or a text file of your own
    demonstrations: str = "bundled"  # bundled refusal demonstrations, or a .csv/.jsonl with prompt and response columns
    ladder: list[RungConfig] = field(default_factory=_default_ladder)

    def rungs(self) -> list[Rung]:
        return [Rung(r.system, r.demonstrations) for r in self.ladder]


@dataclass
class CommonConfig:
    """What every run config shares (``steertax run``, ``align``, ``merge``): the model, the seed, the
    evaluation's batch and cell sizes, the tasks, where cells run, and whether it is a quick version."""

    model: str = "smollm2"
    dtype: Optional[str] = None
    seed: int = 0
    batch_size: int = 32
    chunk: int = 16
    tasks: list[TaskConfig] = field(default_factory=list)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where cells run (never part of a run id)
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_common(self) -> None:
        """The shared fields' semantic checks: the tasks and the executor."""
        check_tasks(self.tasks)
        check_executor(self.executor)


def check_tasks(task_cfgs: list[TaskConfig]) -> None:
    """At least one task; every name known, every label distinct, limits positive, options valid."""
    if not task_cfgs:
        raise ConfigError("tasks: list at least one task")
    seen = set()
    for i, t in enumerate(task_cfgs):
        if t.name not in T.REGISTRY:
            raise ConfigError(f"tasks[{i}].name: unknown task {t.name!r}; choose one of {T.names()}")
        key = t.label or t.name
        if key in seen:
            raise ConfigError(f"tasks[{i}]: {key!r} appears twice; give one a distinct label")
        seen.add(key)
        if t.limit is not None and t.limit <= 0:
            raise ConfigError(f"tasks[{i}].limit: must be positive")
        try:
            T.get(t.name, **t.options)
        except Exception as e:
            raise ConfigError(f"tasks[{i}].options: {e}") from None


def quick_tasks(d: dict[str, Any]) -> None:
    """A quick version's tasks (in a config dict, in place): at most 8 items each, and behavior scorers'
    answers cut to 12 tokens; code and maths keep their budgets (an answer must finish to be scored)."""
    d["quick"] = True
    for t in d["tasks"]:
        t["limit"] = min(t["limit"] or 8, 8)
        if "max_new_tokens" in t["options"] and not _needs_finished_answer(t["name"]):
            t["options"]["max_new_tokens"] = min(int(t["options"]["max_new_tokens"]), 12)


def judged_scoring(task_cfgs: Sequence[TaskConfig]) -> dict[str, Any]:
    """Per task that judges generations (by its label), its judges' identities: part of every run id, so rows
    judged by another judge (or another version of it) are never reused. Empty when no task judges."""
    out: dict[str, Any] = {}
    for t in task_cfgs:
        ident = T.get(t.name, **t.options).judged_identity()
        if ident:
            out[t.label or t.name] = ident
    return out


@dataclass
class RunConfig(CommonConfig):
    device: Optional[str] = None
    vector: VectorConfig = field(default_factory=VectorConfig)
    strengths: StrengthConfig = field(default_factory=StrengthConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    prompting: Optional[PromptingConfig] = None  # the aligning-prompt baseline, scored beside the sweep
    backend: str = "hf"  # steered generation (the generate scorer): hf | vllm (its own environment: make vllm)

    def content_hash(self) -> str:
        """The run id: a hash of what the unconditional sweep's rows depend on (a condition adds a second
        sweep under its own key; it does not change these rows, so folders from before it keep their id)."""
        d = self.to_dict()
        d.pop("steering", None)
        d.pop("prompting", None)  # its rungs are interventions of their own, keyed by their texts
        d.pop("study", None)  # the analysis (r*, its tasks and weight, the bootstrap) changes no row
        d.pop("executor", None)  # where the cells run does not change them
        if d.get("backend") == "hf":
            d.pop("backend")  # run ids from before the backend option stay valid; vllm rows get their own id
        if judges := judged_scoring(self.tasks):
            d["judges"] = judges
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def vector_file_name(self) -> str:
        """The file an extracted vector is cached under in a run folder (a hash of what shapes it)."""
        v = self.vector
        spec = {"model": self.model, "seed": self.seed}
        spec.update({k: getattr(v, k) for k in ("pairs", "n_pairs", "method", "layers", "position", "heldout")})
        method = EXTRACTION_METHODS.get(v.method)
        if method is not None and method.version != 1:  # version 1 adds nothing: cached vectors keep their names
            spec["method_version"] = method.version
        return f"vector-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]}.safetensors"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def quick_version(self) -> "RunConfig":
        """A scaled-down copy for smoke runs (CI): fewer pairs, strengths, items and tokens."""
        d = self.to_dict()
        quick_tasks(d)
        d["vector"]["n_pairs"] = min(d["vector"]["n_pairs"] or 48, 48)
        s = d["strengths"]
        if s["values"]:
            vals = sorted(s["values"])
            s["values"] = vals[:: max(1, len(vals) // 5)][:6] if len(vals) > 6 else vals
        s["n"] = min(s["n"], 2 if s["both_signs"] else 5)  # the small-|r| points (n_local) stay
        d["study"]["n_boot"] = min(d["study"]["n_boot"], 50)
        d["theory"]["n_prompts"] = min(d["theory"]["n_prompts"], 6)
        d["theory"]["n_points"] = min(d["theory"]["n_points"], 5)
        if d["steering"]["condition"]:
            d["steering"]["condition"]["n"] = min(d["steering"]["condition"]["n"], 32)
        if d.get("prompting") and len(d["prompting"]["ladder"]) > 2:  # the base and the top rung
            d["prompting"]["ladder"] = [d["prompting"]["ladder"][0], d["prompting"]["ladder"][-1]]
        return from_dict(d)


def _needs_finished_answer(task_name: str) -> bool:
    """Whether the task registered as ``task_name`` declares NEEDS_FINISHED_ANSWER (an unknown name: no)."""
    return tasks.has_trait(task_name, tasks.NEEDS_FINISHED_ANSWER)


# --------------------------------------------------------------------------- validation


def _check(tp: Any, v: Any, where: str) -> Any:
    """``v`` validated against the type hint ``tp`` (converted where the schema allows it)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        return _check_optional(args, v, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_config(tp, _expect_mapping(v, where), where)
    if origin is list or tp is list:
        return _check_list(args, v, where)
    if tp is dict:
        return dict(_expect_mapping(v, where))
    scalar = _SCALAR_CHECKS.get(tp)
    return scalar(v, where) if scalar is not None else v


def _check_optional(args: tuple[Any, ...], v: Any, where: str) -> Any:
    if v is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    return _check(inner[0], v, where)


def _expect_mapping(v: Any, where: str) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(v).__name__}")
    return v


def _check_list(args: tuple[Any, ...], v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list, got {type(v).__name__}")
    (a,) = args or (Any,)
    return [_check(a, x, f"{where}[{i}]") for i, x in enumerate(v)]


def _check_bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: expected true/false, got {v!r}")
    return v


def _check_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}: expected an integer, got {v!r}")
    return v


def _check_float(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if not math.isfinite(float(v)):
        raise ConfigError(f"{where}: {v!r} is not a finite number")
    return float(v)


def _check_str(v: Any, where: str) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and where.endswith("layers"):
        return str(v)
    if not isinstance(v, str):
        raise ConfigError(f"{where}: expected a string, got {v!r}")
    return v


_SCALAR_CHECKS: dict[Any, Callable[[Any, str], Any]] = {bool: _check_bool, int: _check_int, float: _check_float, str: _check_str}


def build_config(cls: type, d: dict[str, Any], where: str) -> Any:
    """The config dataclass ``cls`` built from the mapping ``d``, every key checked against its type hint;
    ``where`` prefixes the keys in errors (``""`` at the top level)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in names]
    if unknown:
        pre = f"{where}." if where else ""
        raise ConfigError(f"unknown key {pre}{unknown[0]}: valid keys here are {sorted(names)}")
    kw = {k: _check(hints[k], v, f"{where}.{k}" if where else k) for k, v in d.items()}
    return cls(**kw)


def upgrade_resolved(d: dict[str, Any]) -> dict[str, Any]:
    """A config that steertax itself resolved into a run folder before ``study.alpha`` (the weight on
    alignment) became ``study.helpfulness_weight``: converted exactly (w = 1 − alpha). Only for run
    folders, whose meaning is known; a user's config with ``alpha`` is refused with the conversion."""
    study = d.get("study")
    if isinstance(study, dict) and "alpha" in study:
        study = {k: v for k, v in study.items() if k != "alpha"} | {"helpfulness_weight": 1 - float(study["alpha"])}
        d = {**d, "study": study}
    return d


def from_dict(d: dict[str, Any]) -> RunConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a YAML mapping, got {type(d).__name__}")
    study = d.get("study")
    if isinstance(study, dict) and "alpha" in study:
        a = study["alpha"]
        numeric = isinstance(a, (int, float)) and not isinstance(a, bool)
        hint = f"helpfulness_weight: {1 - a:g}" if numeric else "helpfulness_weight: 1 - alpha"
        raise ConfigError(
            f"study.alpha was the weight on *alignment* (U = alpha·ΔB + (1 − alpha)·ΔH); it is now study.helpfulness_weight, "
            f"the weight on helpfulness (U = w·ΔH + (1 − w)·ΔB): write study.{hint}"
        )
    cfg = build_config(RunConfig, d, "")
    _semantic(cfg)
    return cfg


def _semantic(cfg: RunConfig) -> None:

    if cfg.vector.method not in extraction_methods():
        raise ConfigError(f"vector.method: {cfg.vector.method!r} is not one of {', '.join(extraction_methods())}")
    try:
        parse_layers(cfg.vector.layers)
    except Exception as e:
        raise ConfigError(f"vector.layers: {e}") from None
    if cfg.strengths.values is not None and not cfg.strengths.values:
        raise ConfigError("strengths.values: give at least one strength (or remove it for the automatic grid)")
    _check_strengths(cfg)
    check_tasks(cfg.tasks)
    if not 0 <= cfg.study.helpfulness_weight <= 1:
        raise ConfigError("study.helpfulness_weight: must be in [0, 1]")
    if not 0 < cfg.study.validation_fraction < 1:
        raise ConfigError("study.validation_fraction: must be in (0, 1)")
    if cfg.steering.condition is not None:
        _check_condition(cfg)
    if cfg.prompting is not None:
        check_ladder(cfg.prompting.rungs())
    check_executor(cfg.executor)
    if cfg.backend not in ("hf", "vllm"):
        raise ConfigError(f"backend {cfg.backend!r} is unknown: use hf or vllm")


def _check_strengths(cfg: RunConfig) -> None:
    if cfg.strengths.n < 2:
        raise ConfigError("strengths.n: need at least 2 points")
    if cfg.strengths.n_local < 0:
        raise ConfigError("strengths.n_local: must be 0 or more")
    if not 0 < cfg.strengths.local_fraction <= 1:
        raise ConfigError("strengths.local_fraction: must be in (0, 1], e.g. 0.25 (a quarter of the grid's largest |r|)")


def _check_condition(cfg: RunConfig) -> None:

    c = cfg.steering.condition
    assert c is not None
    if c.read not in ("mean", "last", "all"):
        raise ConfigError(f"steering.condition.read: {c.read!r} is not mean, last or all")
    if c.score not in ("cosine", "reference"):
        raise ConfigError(f"steering.condition.score: {c.score!r} is not cosine or reference")
    if c.objective not in ("f1", "fpr"):
        raise ConfigError(f"steering.condition.objective: {c.objective!r} is not f1 or fpr")
    if not 0 <= c.target_fpr < 1:
        raise ConfigError("steering.condition.target_fpr: must be in [0, 1), e.g. 0.05")
    if c.n < 8:
        raise ConfigError("steering.condition.n: need at least 8 prompts per side (half fit, half validate)")
    first = min(parse_layers(cfg.vector.layers))
    if c.layers is not None:
        try:
            cand = parse_layers(c.layers)
        except Exception as e:
            raise ConfigError(f"steering.condition.layers: {e}") from None
        above = [i for i in cand if i >= first]
        if above:
            raise ConfigError(
                f"steering.condition.layers: {above} are not below the steered layers ({cfg.vector.layers}); the condition reads the "
                f"unsteered trunk: choose among 0-{first - 1}"
            )
    elif first == 0:
        raise ConfigError("steering.condition: the vector steers layer 0, so no layer lies below it for the condition; steer from layer 1")


BUILTIN_CONFIGS = ("default", "paper-qwen", "conditional")


def builtin_config(name: str) -> RunConfig:

    if name not in BUILTIN_CONFIGS:
        raise ConfigError(f"unknown built-in config {name!r}: use one of {BUILTIN_CONFIGS} or a YAML file")
    text = resources.files("steertax").joinpath("configs").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return from_dict(yaml.safe_load(text))


def default_config() -> RunConfig:
    return builtin_config("default")


def load_yaml(path_or_name: str | Path | None, builtins: Sequence[str], command: str) -> dict[str, Any]:
    """The one YAML loader of every command's config: a built-in's name (``None``: the first built-in) or a
    file. A missing, non-UTF-8, invalid, empty or non-mapping file is a ConfigError naming the fix."""
    name = builtins[0] if path_or_name is None else str(path_or_name)
    start = f"start from `steertax {command} --print-default-config`"
    if name in builtins:
        text = resources.files("steertax").joinpath("configs").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        return dict(yaml.safe_load(text))
    p = Path(name)
    if not p.is_file():
        raise ConfigError(f"{command} config {p} does not exist: give a YAML file or one of {', '.join(builtins)}")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text: save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if d is None:
        raise ConfigError(f"{p} is empty: {start}")
    if not isinstance(d, dict):
        raise ConfigError(f"{p} must be a YAML mapping of settings, got {type(d).__name__}: {start}")
    return d


def load_config(path_or_name: str | Path | None) -> RunConfig:
    if path_or_name is not None and str(path_or_name) not in BUILTIN_CONFIGS and not Path(path_or_name).is_file():
        raise ConfigError(f"config file {path_or_name} does not exist: give a YAML file or one of {BUILTIN_CONFIGS}")
    d = load_yaml(path_or_name, BUILTIN_CONFIGS, "run")
    if str(path_or_name) in BUILTIN_CONFIGS or path_or_name is None:
        return from_dict(d)
    if isinstance(d, dict) and "tasks" not in d:
        d = {**d, "tasks": default_config().to_dict()["tasks"]}  # a file lists only what it changes
    return from_dict(d)

"""Preflight: check every input a command needs *before* the model loads, so that a missing file or column
costs seconds, not a model load and an extraction. :func:`preflight` (``steertax run``) checks, without the
model and without going online:

- every task's data: the source file exists, is UTF-8 (else it says what the file looks like: UTF-16,
  Latin-1, binary), has the columns the task family needs, has at least one row, and every row passes
  the loader's and the family's own checks (:meth:`steertax.tasks.Task.validate`); bundled data loads;
- the vector: ``vector.path`` loads as a steertax vector, has the steered layers, fits the model (as far
  as the model's config.json tells) and has residual norms when the grid is relative; else the pairs
  (a built-in name, or a pairs file that passes :func:`steertax.interventions.steering.pairs.check_pairs_file`);
- the layer spec, the strengths, the numeric settings, ``study.alignment_task`` /
  ``study.helpfulness_task`` naming tasks of the config, the output folder being writable, and the
  model name resolving (a built-in name with its package installed, an existing model dir or .gguf
  file, or a hub-id-shaped ``org/name``).

All problems are collected; :func:`preflight` raises one typed error (the first problem's type,
:class:`~steertax.errors.DataError`, :class:`~steertax.errors.ConfigError`, ...) whose one-line
message lists them all, with ``.problems`` holding each one. Nothing is written or deleted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import transformers

from steertax import models as M, tasks as T
from steertax._util import cache_dir, parse_layers
from steertax.analysis.sequential import SPENDING
from steertax.config import RunConfig
from steertax.data.loaders import is_hub_source
from steertax.errors import ConfigError, DataError, ModelError, SteertaxError, VectorError
from steertax.interventions.adapter import lora_targets_in
from steertax.interventions.conditional import Condition, prompt_set
from steertax.interventions.prompting import load_demonstrations, load_system_prompt
from steertax.interventions.steering.pairs import PAIR_BUILDERS, check_pairs_file
from steertax.interventions.steering.vectors import SteeringVector
from steertax.manifest import folder_kind, read_manifest
from steertax.tasks.behavior import BehaviorTask

__all__ = ["preflight", "check_study"]

_LOADER_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, LookupError)


class Problems:
    """The problems a check found, collected (``at``) so that they are reported together."""

    def __init__(self) -> None:
        self.items: list[SteertaxError] = []

    def add(self, err: SteertaxError) -> None:
        self.items.append(err)

    @contextmanager
    def at(self, where: str, strip: str = "", wrap: type[SteertaxError] = DataError) -> Iterator[None]:
        """Record an error raised inside as ``where: message`` (``strip``: a redundant prefix to drop)."""
        try:
            yield
        except SteertaxError as e:
            self.add(_relabel(e, where, strip))
        except _LOADER_ERRORS as e:  # a reader tripping over odd input: still one line, still typed
            hint = (
                "check the file against the task's documented columns"
                if where.startswith("tasks[")
                else "check this setting (rerun with --debug for the traceback)"
            )
            err = wrap(f"{where}: could not be checked ({e.__class__.__name__}: {_one_line(str(e))}): {hint}")
            err.__cause__ = e
            self.add(err)


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _relabel(e: SteertaxError, where: str, strip: str = "") -> SteertaxError:
    msg = _one_line(str(e))
    if strip and msg.startswith(strip + ": "):
        msg = msg[len(strip) + 2 :]
    out = type(e)(f"{where}: {msg}")
    out.__cause__ = e
    return out


# --------------------------------------------------------------------------- model


def _config_json(d: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(
            f"{d / 'config.json'} is not readable JSON ({e.__class__.__name__}): is it a Hugging Face model directory?"
        ) from None
    return cfg if isinstance(cfg, dict) else {}


def _shape(cfg: dict[str, Any]) -> tuple[Optional[int], Optional[int]]:
    """(num_layers, hidden_size) from a config.json, where it says so plainly."""
    for c in (cfg, cfg.get("text_config") or {}):
        if not isinstance(c, dict):
            continue
        n = next((c[k] for k in ("num_hidden_layers", "n_layer", "num_layers") if isinstance(c.get(k), int)), None)
        h = next((c[k] for k in ("hidden_size", "n_embd") if isinstance(c.get(k), int)), None)
        if n is not None:
            return n, h
    return None, None


def _gguf_file(name: str, path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"GGUF file {name} does not exist: check the path")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(
            f"{name} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): pass a GGUF model, "
            "a model directory, a hub id, or a built-in name"
        )


def _model_dir(name: str, path: Path, builtin: list[str]) -> tuple[Optional[int], Optional[int]]:
    if not (path / "config.json").is_file():
        raise ModelError(
            f"directory {name} has no config.json: pass a Hugging Face model directory, a .gguf file, or a built-in name {builtin}"
        )
    toks = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
    if not any((path / t).is_file() for t in toks):
        raise ModelError(
            f"directory {name} has no tokenizer files ({', '.join(toks[:2])}, ...): save the "
            "tokenizer beside the model (tokenizer.save_pretrained(dir))"
        )
    return _shape(_config_json(path))


def module_names(name: str) -> Optional[list[str]]:
    """The dotted name of every module of model ``name`` (``model.layers.0.self_attn.q_proj`` ...), from its
    config alone (instantiated on the meta device: no weights read); None when no config is at hand without
    loading the model (a hub id, or a built-in GGUF not yet converted)."""
    key = M.ALIASES.get(name.lower(), name.lower())
    path = Path(name).expanduser()
    if key in M.BUILTIN_MODELS:
        path = cache_dir() / "converted" / M.BUILTIN_MODELS[key].sha256
    if not (path / "config.json").is_file():
        return None
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
    except Exception:  # an unusual config: the check happens when the model loads
        return None
    return [n for n, _ in model.named_modules() if n]


def check_lora_targets(model: str, targets: Sequence[str]) -> None:
    """``lora.targets`` must match some module of the model (the rule of the trainer, checked before loading)."""
    names = module_names(model)
    if names is not None and not lora_targets_in(names, targets):
        leaves = {n.rsplit(".", 1)[-1] for n in names}
        linear = sorted(n for n in leaves if n.endswith("proj") or n in ("c_attn", "c_proj", "c_fc", "fc1", "fc2"))
        raise ConfigError(f"lora.targets {list(targets)} match no module of this model: name its linear layers, e.g. {linear[:7]}")


def resolve_model(name: str, info: dict[str, Any]) -> None:
    """What ``load_model`` will do with ``name`` (same order of cases), without loading or downloading."""

    builtin = sorted(M.BUILTIN_MODELS)
    key = M.ALIASES.get(name.lower(), name.lower())
    path = Path(name).expanduser()
    if not name.strip():
        raise ModelError("model is empty: give a built-in name, a model directory, a .gguf file or a hub id")
    if key in M.BUILTIN_MODELS:
        spec = M.BUILTIN_MODELS[key]
        for pkg, rel in zip(spec.packages, spec.files, strict=True):
            M.package_file(pkg, rel, spec)  # the package is installed and holds its part
        info.update(kind="builtin", label=spec.name)
    elif name.lower().endswith(".gguf"):
        _gguf_file(name, path)
        info["kind"] = "gguf"
    elif path.is_dir():
        n, h = _model_dir(name, path, builtin)
        info.update(kind="dir", num_layers=n, hidden_size=h)
    elif path.exists():
        raise ModelError(f"{name} is a file but not a .gguf: pass a .gguf file, a model directory, a hub id, or one of {builtin}")
    elif name.count("/") != 1 or name.startswith((".", "/", "~")) or not all(name.split("/")):
        raise ModelError(
            f"unknown model {name!r}: use a built-in name {builtin}, an existing directory or .gguf file, or a hub id like 'org/name'"
        )
    else:
        info["kind"] = "hub"  # shaped like a hub id; whether it exists is not checked offline


def _device(device: Any) -> None:
    if device is None:
        return

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"{device!r} is not a torch device: use cpu, cuda or cuda:N (or leave it out)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"{device!r} asked for, but torch sees no CUDA GPU here: use cpu (or leave it out)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"{device!r} asked for, but there are {torch.cuda.device_count()} CUDA device(s)")


def _check_model(cfg: Any, P: Problems) -> dict[str, Any]:
    """How ``load_model`` will resolve ``cfg.model``, checked without loading it (and without the network)."""

    name = str(cfg.model)
    info: dict[str, Any] = {"name": name, "label": name, "kind": None, "num_layers": None, "hidden_size": None}
    with P.at("model"):
        resolve_model(name, info)
    with P.at("dtype", wrap=ModelError):
        M.resolve_dtype(cfg.dtype)
    with P.at("device", wrap=ModelError):
        _device(getattr(cfg, "device", None))
    return info


# --------------------------------------------------------------------------- vector and pairs


def _cached_vector_path(cfg: RunConfig, out: Optional[Path]) -> Optional[Path]:
    """Where study._get_vector caches an extracted vector (same key): a resume does not need the pairs."""
    if out is None:
        return None
    p = out / cfg.vector_file_name()
    return p if p.is_file() else None


def _vector_file(cfg: RunConfig, model: dict[str, Any]) -> dict[str, Any]:
    """``vector.path``: loads (header, metadata, directions; no model), has the steered layers, and fits the
    model as far as its config tells (what ``check_compatible(force=False)`` will demand after loading)."""

    v = cfg.vector
    vec = SteeringVector.load(v.path)  # type: ignore[arg-type]
    if v.negate:
        vec = -vec
    try:
        sel = vec.select(v.layers)
    except SteertaxError as e:
        raise type(e)(f"{e} (vector.layers is {v.layers!r}): steer layers the vector has") from None
    if model["hidden_size"] is not None and model["hidden_size"] != vec.hidden_size:
        raise VectorError(
            f"{v.path} was extracted from {vec.model_id!r} with hidden size {vec.hidden_size}, but "
            f"model {cfg.model!r} has {model['hidden_size']}: extract a vector from this model"
        )
    if vec.model_id != model["label"] or (model["num_layers"] is not None and model["num_layers"] != vec.num_layers):
        raise VectorError(
            f"{v.path} was extracted from {vec.model_id!r} ({vec.num_layers} layers), but the study's "
            f"model is {model['label']!r}: extract a vector from this model (or set model to {vec.model_id!r})"
        )
    if cfg.strengths.values is None and not any(i in sel.layer_norms for i in sel.layers):
        raise ConfigError(
            f"{v.path} records no residual norms for layers {v.layers}, so the relative grid "
            "(strengths.max_relative) has no scale: give strengths.values explicitly"
        )
    return {"file": str(v.path), "layers": sel.layers}


def _pairs(cfg: RunConfig) -> dict[str, Any]:

    v = cfg.vector
    if v.pairs in PAIR_BUILDERS:
        return {"builder": v.pairs}
    if Path(v.pairs).suffix.lower() in (".csv", ".jsonl", ".json"):
        return check_pairs_file(v.pairs, v.n_pairs, position=v.position)
    raise DataError(
        f"unknown pairs {v.pairs!r}: use one of {sorted(PAIR_BUILDERS)} or a .csv/.jsonl file with aligned,misaligned[,prompt] columns"
    )


def _check_vector(cfg: RunConfig, model: dict[str, Any], out: Optional[Path], P: Problems) -> dict[str, Any]:

    v = cfg.vector
    info: dict[str, Any] = {}
    with P.at("vector.layers", wrap=ConfigError):
        parse_layers(v.layers, model["num_layers"])  # syntax, and the range where the model's depth is known
    if v.path:
        with P.at("vector.path"):
            info["vector"] = _vector_file(cfg, model)
        return info
    for where, ok, msg in (
        (
            "vector.n_pairs",
            v.n_pairs is None or v.n_pairs >= 2,
            f"{v.n_pairs} pairs cannot make a vector: extraction needs at least 2 (or null for all)",
        ),
        ("vector.heldout", 0 <= v.heldout < 1, f"{v.heldout} is not a fraction in [0, 1)"),
        (
            "vector.position",
            v.position in (None, "last", "answer_mean"),
            f"{v.position!r} is not last or answer_mean (or null for the pairs' own)",
        ),
    ):
        if not ok:
            P.add(ConfigError(f"{where}: {msg}"))
    cached = _cached_vector_path(cfg, out)
    if cached is not None:
        info["vector"] = {"file": str(cached), "cached": True}  # a resume: extraction (and the pairs) are not needed
        return info
    with P.at("vector.pairs"):
        info["pairs"] = _pairs(cfg)
    return info


# --------------------------------------------------------------------------- tasks, study, numbers


def _check_tasks(cfg: Any, P: Problems) -> dict[str, int]:

    counts: dict[str, int] = {}
    for i, t in enumerate(cfg.tasks):
        key = t.label or t.name
        src = t.options.get("source")
        where = f"tasks[{i}] {key}" + (" options.source" if src not in (None, "bundled", "default") else "")
        with P.at(where, strip=t.name):
            task = T.get(t.name, **t.options)
            if is_hub_source(src):
                if importlib.util.find_spec("datasets") is None:
                    raise DataError(f"{src!r} looks like a hub dataset id; install `datasets` (and be online) or pass a local .csv/.jsonl")
                continue  # a hub dataset is not fetched here (no network in a preflight)
            counts[key] = len(task.validate(t.limit, cfg.seed))
    return counts


def _check_study(cfg: RunConfig, P: Problems) -> None:

    keys = [t.label or t.name for t in cfg.tasks]
    st = cfg.study
    for field in ("alignment_task", "helpfulness_task"):
        name, _, metric = getattr(st, field).partition(":")  # 'refusal:harmless': a metric of the task's rows
        base = name.split("[", 1)[0] if name.endswith("]") else name  # 'refusal[generate]': a scorer's entry
        with P.at(f"study.{field}", wrap=ConfigError):
            if base not in keys:
                raise ConfigError(f"{name!r} is not among the config's tasks {keys}: name one of them (or add `- name: {base}` to tasks)")
            conf = next(t for t in cfg.tasks if (t.label or t.name) == base)
            task = T.get(conf.name, **conf.options)
            if metric and metric not in (*task.metrics, *task.derived):
                raise ConfigError(f"{base!r} has no metric {metric!r}: use one of {[*task.metrics, *task.derived]}")
            if cfg.theory.enabled:  # the theory step looks the task up by its registry name (a scorer entry's task)
                name = base
                if name not in T.REGISTRY:
                    raise ConfigError(
                        f"{name!r} is not a task name, but the theory step looks it up by name: use the "
                        "task's name (not a label or scorer entry), or set theory.enabled: false"
                    )
                if field == "alignment_task" and not issubclass(T.REGISTRY[name], BehaviorTask):
                    ok = sorted(n for n, c in T.REGISTRY.items() if issubclass(c, BehaviorTask))
                    raise ConfigError(f"{name!r} must be a behavior task for the theory step (one of {ok}), or set theory.enabled: false")


def _check_numbers(cfg: RunConfig, P: Problems) -> None:
    s = cfg.strengths
    checks: list[tuple[str, bool, str]] = [
        ("batch_size", cfg.batch_size >= 1, f"{cfg.batch_size} is not a positive batch size"),
        ("chunk", cfg.chunk >= 1, f"{cfg.chunk} is not a positive number of items per cell"),
        ("study.n_boot", cfg.study.n_boot >= 0, f"{cfg.study.n_boot} bootstrap samples: use 0 or more"),
        (
            "study.kl_ceiling",
            cfg.study.kl_ceiling is None or cfg.study.kl_ceiling > 0,
            f"{cfg.study.kl_ceiling} is not a positive KL ceiling (or null for none)",
        ),
    ]
    if s.values is None:
        checks.append(
            (
                "strengths.max_relative",
                s.max_relative > 0,
                f"{s.max_relative}: the top of the grid must be > 0 (a multiple of the residual norm)",
            )
        )
    else:
        checks.append(
            (
                "strengths.values",
                any(x != 0 for x in s.values),
                f"{s.values}: every strength is 0, so nothing is steered: add non-zero strengths, e.g. [0, 4, 8]",
            )
        )
    if cfg.theory.enabled:
        th = cfg.theory
        checks += [
            ("theory.n_prompts", th.n_prompts >= 1, f"{th.n_prompts}: use at least 1 prompt"),
            ("theory.top_k", th.top_k >= 1, f"{th.top_k}: use at least 1"),
            ("theory.n_points", th.n_points >= 2, f"{th.n_points}: the slope fits need at least 2 points"),
            ("theory.r_max", th.r_max is None or th.r_max > 0, f"{th.r_max} is not a positive |r| range (or null)"),
        ]
    for where, ok, msg in checks:
        if not ok:
            P.add(ConfigError(f"{where}: {msg}"))


def _check_out(out: Path, P: Problems) -> None:
    with P.at("output folder", wrap=ConfigError):
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file: --out needs a folder (new or a run's folder to resume)")
        probe = out
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise ConfigError(f"cannot create {out}: {probe} is a file")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{probe} is not writable, so {out} cannot be {'written' if probe == out else 'created'}: choose another --out"
            )
        check_store(out / "results.sqlite")


def check_store(path: Path) -> None:
    """A results store that exists must be a readable SQLite database whose integrity check passes, before the
    model loads or anything in its folder is rewritten."""
    if not path.exists():
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        ok = str(e)
    if ok != "ok":
        raise DataError(f"{path} is not a readable results store ({ok}): move it away to start the run over, or choose another --out")


def model_shape(name: str) -> tuple[Optional[int], Optional[int]]:
    """(num_layers, hidden_size) of model ``name`` from its config alone (a folder's config.json, a built-in model's
    converted config once it has been loaded here once); (None, None) when not at hand without loading it."""
    key = M.ALIASES.get(name.lower(), name.lower())
    path = cache_dir() / "converted" / M.BUILTIN_MODELS[key].sha256 if key in M.BUILTIN_MODELS else Path(name).expanduser()
    if not (path / "config.json").is_file():
        return None, None
    try:
        return _shape(_config_json(path))
    except ModelError:
        return None, None


# --------------------------------------------------------------------------- entry points


def _check_condition(cfg: RunConfig, P: Problems) -> None:
    """``steering.condition``: its file loads (and fits the model's width), or its prompt sets read."""
    c = cfg.steering.condition
    if c is None:
        return

    if c.path:
        with P.at("steering.condition.path"):
            Condition.load(c.path)
        return
    for where, src in (("steering.condition.positive", c.positive), ("steering.condition.negative", c.negative)):
        with P.at(where):
            prompt_set(src, 8, cfg.seed)


def _check_prompting(cfg: RunConfig, P: Problems) -> None:
    """``prompting``: its system prompt and demonstrations read (a missing or empty file, wrong columns, too few
    rows for the ladder)."""
    p = cfg.prompting
    if p is None:
        return
    rungs = p.rungs()
    if any(r.system for r in rungs):
        with P.at("prompting.system"):
            load_system_prompt(p.system)
    with P.at("prompting.demonstrations"):
        load_demonstrations(p.demonstrations, max(r.demonstrations for r in rungs), cfg.seed)


def check_study(cfg: RunConfig, out: str | Path | None = None) -> tuple[list[SteertaxError], dict[str, Any]]:
    """Every problem with ``cfg`` (and the output folder ``out``) found without loading the model, and
    what was found (model kind, items per task, pairs or vector). Reads files only; writes nothing."""
    P = Problems()
    outp = Path(out) if out is not None else None
    model = _check_model(cfg, P)
    info: dict[str, Any] = {"model": model}
    info.update(_check_vector(cfg, model, outp, P))
    _check_numbers(cfg, P)
    info["tasks"] = _check_tasks(cfg, P)
    _check_study(cfg, P)
    _check_condition(cfg, P)
    _check_prompting(cfg, P)
    if outp is not None:
        _check_out(outp, P)
    return P.items, info


def check_run(
    cfg: Any, out: str | Path | None = None, extra: Optional[Callable[[Problems], None]] = None
) -> tuple[list[SteertaxError], dict[str, Any]]:
    """The checks every command shares (model, dtype, device, tasks and their data, output folder) for any
    run config (``steertax align``, ``steertax merge``), plus the command's own ``extra`` checks (its data
    files, adapters ...). Reads files only; writes and loads nothing."""
    P = Problems()
    info: dict[str, Any] = {"model": _check_model(cfg, P), "tasks": _check_tasks(cfg, P)}
    if extra is not None:
        extra(P)
    if out is not None:
        _check_out(Path(out), P)
    return P.items, info


def raise_problems(problems: Sequence[SteertaxError], when: str = "before loading the model") -> None:
    """Nothing when there are none; else one typed error (the first problem's type) naming every problem in
    one line, with ``.problems``."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    msg = f"{len(problems)} problems, found {when}: " + "; ".join(f"({k}) {_one_line(str(p))}" for k, p in enumerate(problems, 1))
    err = type(problems[0])(msg)
    err.problems = problems  # type: ignore[attr-defined]
    raise err


def preflight(cfg: RunConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Check everything :func:`steertax.runners.study.run_study` needs before it loads the model; raise one typed
    error (the first problem's type) with a one-line message naming every problem, and ``.problems``.
    Returns :func:`check_study`'s findings when all is well."""
    problems, info = check_study(cfg, out)
    if not problems:
        return info
    if len(problems) == 1:
        raise problems[0]
    msg = f"{len(problems)} problems, found before loading the model: " + "; ".join(
        f"({k}) {_one_line(str(p))}" for k, p in enumerate(problems, 1)
    )
    err = type(problems[0])(msg)
    err.problems = problems  # type: ignore[attr-defined]
    raise err


# --------------------------------------------------------------------------- steertax compare


def output_problem(flag: str, path: str | os.PathLike[str], *, folder: bool) -> SteertaxError | None:
    """Why ``path`` (a file to write, or with ``folder`` a folder to write into) cannot be written; None
    when it can. Creates nothing."""
    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        return ConfigError(f"{flag} {path} is a file: give a folder (a new one, or one to write into)")
    if not folder and p.is_dir():
        return ConfigError(f"{flag} {path} is a folder: give a file path, like {p / ('tax.md' if flag == '--markdown' else 'tax.json')}")
    probe = (p if folder else p.parent).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return ConfigError(f"{flag} {path} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        return ConfigError(f"{flag} {path} cannot be written: {probe} is not writable; choose another {flag}")
    return None


def parse_levels(text: str | None) -> list[float] | None:
    """``--levels``: comma-separated ΔB levels (None: the default levels)."""
    return None if text is None else [float(x) for x in text.split(",") if x.strip()]


def check_compare(a: Any) -> list[SteertaxError]:
    """What is wrong with `steertax compare`'s inputs (``a``: its options ``dirs``, ``out``, ``alignment``,
    ``helpfulness``, ``helpfulness_weight`` and the statistics flags): each folder exists and is a run, align or
    merge output folder with results (read from its manifest), names the --alignment and --helpfulness tasks and
    measures the same model as the others; --out can be written; the flags are in range. Reads no results."""
    problems: list[SteertaxError] = []
    w = a.helpfulness_weight
    if not (math.isfinite(w) and 0 <= w <= 1):
        problems.append(ConfigError(f"--helpfulness-weight {w} must be in [0, 1]"))
    mt = getattr(a, "max_tax", None)
    if mt is not None and not (math.isfinite(mt) and mt >= 0):
        problems.append(ConfigError(f"--max-tax {mt} must be a percentage of 0 or more (the largest capability tax of an efficient point)"))
    problems += _decision_problems(a)
    models: dict[str, list[str]] = {}
    seen: set[Path] = set()
    for d in map(Path, a.dirs):
        if d.resolve() in seen:
            problems.append(ConfigError(f"{d} is given twice: name each folder once"))
            continue
        seen.add(d.resolve())
        try:
            model = _compare_folder(d, a.alignment, a.helpfulness)
        except SteertaxError as e:
            problems.append(e)
            continue
        models.setdefault(model, []).append(str(d))
    if len(models) > 1:
        which = "; ".join(f"{m!r}: {', '.join(ds)}" for m, ds in sorted(models.items()))
        problems.append(ConfigError(f"these folders measure different models ({which}): compare runs of one model"))
    err = output_problem("--out", a.out, folder=True)
    if err is not None:
        problems.append(err)
    return problems


def _decision_problems(a: Any) -> list[SteertaxError]:
    """compare's statistics and adaptive-mode flags."""
    p: list[SteertaxError] = []
    try:
        lv = parse_levels(a.levels)
    except ValueError:
        lv = None
        p.append(ConfigError(f"--levels {a.levels!r} is not a comma-separated list of numbers (ΔB levels, e.g. 0.5,1.0)"))
    if lv is not None and (not lv or not all(math.isfinite(x) and x > 0 for x in lv)):
        p.append(ConfigError(f"--levels {a.levels!r}: give positive finite ΔB levels, e.g. 0.5,1.0"))
    if not (math.isfinite(a.alpha) and 0 < a.alpha < 0.5):
        p.append(ConfigError(f"--alpha {a.alpha} must be in (0, 0.5) (an error rate, e.g. 0.05)"))
    if a.n_boot < 100:
        p.append(ConfigError(f"--n-boot {a.n_boot} is too few for intervals and p-values: give at least 100 (default 2000)"))
    if a.limit is not None and (a.limit <= 0 or not a.evaluate):
        p.append(
            ConfigError(
                f"--limit {a.limit}: " + ("must be positive" if a.limit <= 0 else "sets the items --evaluate scores: add --evaluate")
            )
        )
    if a.until_decided and not a.evaluate:
        p.append(ConfigError("--until-decided adds items, which needs --evaluate (it scores them): add --evaluate"))
    if a.until_decided and (a.budget is None or a.budget <= 0):
        p.append(ConfigError(f"--budget {a.budget} adds no items: give the most items to add per task (e.g. --budget 256)"))
    if a.budget is not None and not a.until_decided:
        p.append(ConfigError("--budget is the item budget of --until-decided: add --until-decided"))
    if a.step <= 0 or a.step % 16:
        p.append(ConfigError(f"--step {a.step} must be a positive multiple of the cell size 16"))
    spending = getattr(a, "spending", None)
    if spending is not None and (spending not in SPENDING or not a.until_decided):
        p.append(
            ConfigError(
                f"--spending {spending}: "
                + (
                    f"unknown; use one of {', '.join(SPENDING)}"
                    if spending not in SPENDING
                    else "is the spending of --until-decided: add --until-decided"
                )
            )
        )
    cap = getattr(a, "cap", None)
    if cap is not None and (cap <= 0 or not a.until_decided):
        p.append(
            ConfigError(
                f"--cap {cap}: " + ("must be positive" if cap <= 0 else "is the design cap of --until-decided: add --until-decided")
            )
        )
    return p


def _compare_folder(d: Path, alignment: str, helpfulness: str | Sequence[str] | None) -> str:
    """Check one `steertax compare` folder from its manifest (no results read); returns the model it measures."""
    kinds = "`steertax run`, `steertax align` or `steertax merge`"
    if not d.exists():
        raise DataError(f"{d} does not exist: give the --out folder of {kinds}")
    if not d.is_dir():
        raise DataError(f"{d} is a file, not a run folder: give the --out folder of {kinds}")
    kind = folder_kind(d)
    if not (d / "results.sqlite").is_file():
        raise DataError(f"{d} has no results.sqlite: the {kind} has scored nothing yet; rerun the same `steertax {kind}` command")
    man = read_manifest(d)
    keys = [str(t.get("label") or t.get("name")) for t in man.tasks if isinstance(t, dict)]
    axes = [] if helpfulness is None else [helpfulness] if isinstance(helpfulness, str) else list(helpfulness)
    for flag, entry in (("--alignment", alignment), *(("--helpfulness", h) for h in axes)):
        named = entry.partition(":")[0]  # an entry names a task, in brackets a scorer, after a colon a metric
        task = named.split("[", 1)[0] if named.endswith("]") else named
        if task not in keys:
            raise DataError(f"{d} ({man.kind}) has no task {task!r} (its tasks: {keys}): choose one of them with {flag}")
    return man.model

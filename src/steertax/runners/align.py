"""Alignment by fine-tuning, measured on the same axes as steering: ``steertax align``.

A sweep is a list of *settings*; each trains one LoRA adapter with a registered method
(:mod:`steertax.training`: DPO, regularized DPO, SFT, selective alignment, ORPO, KTO, curriculum alignment,
data quality; each one file declaring its parameters, knob and trl trainer), saves it (safetensors + the
resolved setting), and is then evaluated with the study's task registry and scorers into the same results
store. The base model is evaluated once as method ``base``. The run folder's ``manifest.json``
(:mod:`steertax.manifest`) records every evaluated setting with its method, store key, label and the curves it
sits on, from the methods' declarations.

Every setting is an :class:`Intervention` (see :mod:`steertax.interventions`): evaluation applies it
to the base model and runs the same cells as a steering study. Finished settings (adapter saved and
all cells written) are never retrained or re-evaluated; a killed run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steertax._faults import checkpoint
from steertax._util import atomic_write_text, sha256_file
from steertax.config import CommonConfig, build_config, judged_scoring, load_yaml, quick_tasks
from steertax.errors import ConfigError, ModelError
from steertax.interventions import AdapterIntervention, BaseIntervention, adapter_ready, store_key
from steertax.interventions.adapter import check_scales
from steertax.interventions.core import description_hash
from steertax.manifest import ALPHA_KNOB, POINT_KNOB, Entry, Family, Manifest, Row
from steertax.runners.executors import check_executor
from steertax.runners.preflight import check_lora_targets, check_run, raise_problems
from steertax.runners.session import session
from steertax.runners.summary import summarize_run
from steertax.training import TRAINED_METHODS, AlignSetting, DataSettings, LoraSettings, RowsContext, TrainSettings, register_trained_method
from steertax.training.data import data_fingerprint, preference_data, read_preferences
from steertax.training.registry import GROUP, build_params, params_dict
from steertax.training.settings import PRECISIONS, resolved_precision
from steertax.training.trainer import checkpoint_dir, lora_delta_sq_norm, train_setting

log = logging.getLogger(__name__)

__all__ = [
    "AlignConfig",
    "AlignSetting",
    "LoraSettings",
    "TrainSettings",
    "DataSettings",
    "TRAINED_METHODS",
    "register_trained_method",
    "load_align_config",
    "preference_data",
    "read_preferences",
    "train_setting",
    "lora_delta_sq_norm",
    "run_align",
    "align_manifest",
]


@dataclass
class AlignConfig(CommonConfig):
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    settings: list[AlignSetting] = field(default_factory=list)
    # the knob α of every adapter: θ_base + α·Δθ, one batched evaluation per adapter (α = 0 is the base and
    # α = 1 the adapter, both evaluated anyway; α > 1 extrapolates and is flagged)
    alphas: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["settings"] = [s.to_dict() for s in self.settings]
        return d

    def training_spec(self, s: AlignSetting) -> dict[str, Any]:
        """Everything one adapter depends on: the model, dtype, seed, the data settings its method reads (and the
        preference file's content hash, and that of any file a parameter names), LoRA and training settings, the
        setting and the method's version."""
        d = self.to_dict()
        spec = {k: d[k] for k in ("model", "dtype", "seed", "data", "lora", "train")}
        spec["data"] = {k: v for k, v in spec["data"].items() if k in s.spec.data_fields}
        spec["setting"] = s.training_dict()
        spec["quick"] = self.quick
        spec["data_hash"] = data_fingerprint(self.data.pairs)
        files = {k: sha256_file(Path(v))[:16] for k, v in params_dict(s.params).items() if isinstance(v, str) and v and Path(v).is_file()}
        if files:
            spec["param_files"] = files
        spec["trainer_version"] = s.spec.version
        spec["precision"] = resolved_precision(self.train.precision)  # auto resolves per machine: bf16 and fp32 adapters differ
        return spec

    def training_hash(self, s: AlignSetting) -> str:
        return description_hash(self.training_spec(s), 12)

    def alphas_of(self, s: AlignSetting) -> list[float]:
        """The α grid evaluated for setting ``s``: its own ``alphas`` when given, else the config's."""
        return list(self.alphas if s.alphas is None else s.alphas)

    def eval_hash(self) -> str:
        """The run's evaluation scope: what every row shares (tasks and their items, seed, model, dtype)."""
        spec = {"tasks": self.to_dict()["tasks"], "seed": self.seed, "model": self.model, "dtype": self.dtype, "quick": self.quick}
        if judges := judged_scoring(self.tasks):
            spec["judges"] = judges
        return description_hash(spec, 12)

    def quick_version(self) -> "AlignConfig":
        """Fewer pairs, steps, settings and items; code and maths budgets are kept (see RunConfig)."""
        d = self.to_dict()
        quick_tasks(d)
        d["data"]["n_pairs"] = min(d["data"]["n_pairs"], 64)
        d["data"]["n_preserve"] = min(d["data"]["n_preserve"], 16)
        d["train"]["steps"] = min(d["train"]["steps"], 4)
        d["train"]["batch_size"] = min(d["train"]["batch_size"], 4)
        d["settings"] = d["settings"][:2]
        d["alphas"] = d["alphas"][:1]
        for st in d["settings"]:
            if st.get("alphas"):
                st["alphas"] = st["alphas"][:1]
        return align_from_dict(d)


def check_alphas(alphas: Any, where: str = "alphas") -> list[float]:
    """A config's α grid: finite, distinct, without 0 and 1 (the base and the adapter, evaluated anyway)."""
    try:
        got = list(check_scales(alphas))
    except ModelError as e:
        raise ConfigError(f"{where}: {e}") from None
    if 0.0 in got or 1.0 in got:
        raise ConfigError(f"{where}: {got} lists 0 or 1, which are the base and the adapter (evaluated anyway): list the values between")
    if neg := [a for a in got if a < 0]:
        raise ConfigError(
            f"{where}: {neg} < 0 would invert the adapter (θ_base − |α|·Δθ), not interpolate it: "
            "list values in (0, 1), or > 1 to extrapolate"
        )
    return got


def _setting(i: int, s: Any) -> AlignSetting:
    """A setting from its YAML mapping: the method's own parameters checked against its declaration."""
    where = f"settings[{i}]"
    if not isinstance(s, dict):
        raise ConfigError(f"{where}: expected a mapping like {{method: dpo, beta: 0.1}}, got {type(s).__name__}")
    if "method" not in s:
        raise ConfigError(f"{where}.method: missing; choose one of {', '.join(sorted(TRAINED_METHODS))}")
    kw = dict(s)
    m = kw.pop("method")
    if not isinstance(m, str):
        raise ConfigError(f"{where}.method: expected a method name, got {m!r}")
    st = AlignSetting.of(m, where, **kw)
    if st.alphas is not None:
        st.alphas = check_alphas(st.alphas, f"{where}.alphas")
    return st


def align_from_dict(d: Any) -> AlignConfig:
    if not isinstance(d, dict):
        raise ConfigError(
            f"an align config must be a YAML mapping, got {type(d).__name__}: start from `steertax align --print-default-config`"
        )
    d = dict(d)
    raw = d.pop("settings", [])
    if not isinstance(raw, list):
        raise ConfigError(f"settings: expected a list of settings, got {type(raw).__name__}")
    cfg: AlignConfig = build_config(AlignConfig, d, "")
    cfg.settings = [_setting(i, s) for i, s in enumerate(raw)]
    if not cfg.settings:
        raise ConfigError("settings: list at least one setting, e.g. [{method: dpo, beta: 0.1}]")
    labels: set[str] = set()
    for i, s in enumerate(cfg.settings):
        if s.name() in labels:
            raise ConfigError(f"settings[{i}]: {s.name()!r} appears twice; give one a distinct label")
        labels.add(s.name())
    check_alphas(cfg.alphas)
    cfg.check_common()
    for k, v in (("train.steps", cfg.train.steps), ("train.batch_size", cfg.train.batch_size), ("lora.r", cfg.lora.r)):
        if v < 1:
            raise ConfigError(f"{k}: {v} must be a positive integer")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: {cfg.train.lr!r} must be positive")
    if cfg.train.precision not in PRECISIONS:
        raise ConfigError(f"train.precision: {cfg.train.precision!r} is not one of {', '.join(PRECISIONS)}")
    return cfg


def load_align_config(path_or_name: str | Path | None) -> AlignConfig:
    """A YAML file, or a built-in (``align``, the default)."""
    return align_from_dict(load_yaml(path_or_name, ("align",), "align"))


def check_align(cfg: AlignConfig, out: str | Path | None = None) -> None:
    """Every input of ``steertax align`` checked before the model loads (model, tasks and their data, the
    preference file, the output folder, the executor); all problems raised in one line."""

    def extra(P: Any) -> None:
        with P.at("data.pairs"):
            preference_data(cfg.data.pairs, 1, cfg.seed)
        with P.at("lora.targets", wrap=ConfigError):
            check_lora_targets(cfg.model, cfg.lora.targets)
        with P.at("executor", wrap=ConfigError):
            check_executor(cfg.executor)

    problems, _ = check_run(cfg, out, extra)
    raise_problems(problems)


def _context(cfg: AlignConfig, model: Any, tok: Any, out: Path) -> RowsContext:
    return RowsContext(cfg.data, cfg.train, cfg.seed, cfg.model, model, tok, out)


def _train_into(cfg: AlignConfig, s: AlignSetting, model: Any, tok: Any, path: Path, progress: bool) -> None:
    """Train setting ``s`` into ``path`` atomically (a temporary folder renamed when the adapter and its
    setting.json are complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    log.info("training %s", s.name())
    ctx = _context(cfg, model, tok, path.parent.parent)
    rows = s.spec.rows(ctx, s)
    info = train_setting(model, tok, s, rows, tmp, lora=cfg.lora, train=cfg.train, seed=cfg.seed, progress=progress)
    meta = {"setting": s.to_dict(), "name": s.name(), "config": cfg.to_dict(), **info}
    if s.spec.report is not None:  # what the method reports of its rows (e.g. dropped preservation answers)
        meta |= s.spec.report(ctx)
    (tmp / "setting.json").write_text(json.dumps(meta, indent=1, default=str))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    checkpoint("adapter")  # test-only fault injection (steertax._faults)


def adapter_path(cfg: AlignConfig, s: AlignSetting, out: Path) -> Path:
    return out / "adapters" / f"{s.slug()}-{cfg.training_hash(s)}"


def setting_interventions(cfg: AlignConfig, s: AlignSetting, out: Path) -> list[tuple[AdapterIntervention, Row]]:
    """A setting's evaluated interventions and their manifest rows (before α curves and anchors are placed): its
    checkpoints (a method with ``checkpoints``), the adapter, and its α sweep. Their keys hash the adapter files:
    build them after training."""
    path, spec, m = adapter_path(cfg, s, out), cfg.training_spec(s), s.spec
    fam = s.family()
    ivs: list[tuple[AdapterIntervention, Row]] = []
    for c in m.checkpoints[:-1]:  # the adapter saved at share c of training
        iv = AdapterIntervention(checkpoint_dir(path, c), s.method, f"{s.name()} share={c:g}", {**spec, "share": c})
        ivs.append((iv, Row(iv.name(), None, {fam: c})))
    value = 1.0 if m.checkpoints else s.knob_value()
    ivs.append((AdapterIntervention(path, s.method, s.name(), spec), Row(s.name(), None, {fam: value})))
    if alphas := cfg.alphas_of(s):  # the adapter's α curve, every α in one batched evaluation
        ivs.append((AdapterIntervention(path, s.method, s.name(), spec, scales=tuple(alphas)), Row(f"{s.name()} (α)")))
    return ivs


def align_manifest(cfg: AlignConfig, run_id: str, out: Path) -> Manifest:
    """The run's manifest from the methods' declarations (families, knobs, anchors, α curves), once every adapter
    is trained (its key hashes its files). Nothing here reads a label back."""
    man = Manifest("align", run_id, cfg.model, cfg.dtype, cfg.seed, cfg.to_dict()["tasks"], store_key(run_id, BaseIntervention()))
    man.entries.append(Entry(man.base_key, "base", "base", [Row("base")]))
    main_row: dict[int, Row] = {}
    alpha_of: list[tuple[AlignSetting, Family]] = []
    for i, s in enumerate(cfg.settings):
        m = s.spec
        man.add_family(Family(s.family(), s.method, GROUP, m.knob or POINT_KNOB))
        for iv, row in setting_interventions(cfg, s, out):
            key = store_key(run_id, iv)
            if iv.scales:  # the α sweep: one row per α, on the α curve (base → α → the adapter at α = 1)
                afam = man.add_family(Family(f"{s.name()} (α)", s.method, GROUP, ALPHA_KNOB))
                rows = [Row(f"{s.name()} α={a:g}", float(a), {afam.name: float(a)}) for a in iv.scales]
                man.entries.append(Entry(key, s.method, row.label, rows, str(iv.path), {"of": s.name(), "values": list(iv.scales)}))
                main_row[i].on[afam.name] = 1.0
                alpha_of.append((s, afam))
            else:
                man.entries.append(Entry(key, s.method, row.label, [row], str(iv.path)))
                main_row[i] = row
    for s in cfg.settings:  # another method's setting on this one's curve (regularized DPO's λ = 0 is DPO)
        a = s.spec.anchor(s.params) if s.spec.anchor is not None else None
        if a is None or a.method not in TRAINED_METHODS:
            continue
        want = build_params(TRAINED_METHODS[a.method], a.params, "anchor")
        fam = s.family()
        for j, t in enumerate(cfg.settings):
            taken = any(v == a.value for _, _, v in man.points(fam))
            if not taken and t.method == a.method and t.params == want and (t.lr_factor, t.steps) == (s.lr_factor, s.steps):
                main_row[j].on[fam] = a.value
    for s, afam in alpha_of:  # the α curve of a point on another curve is compared with the steering curves only
        parent = main_row[cfg.settings.index(s)]
        curves = [f for f in parent.on if man.family(f).knob not in (ALPHA_KNOB, POINT_KNOB)]
        afam.primary = not any(len(man.points(f)) >= 2 for f in curves)
    return man


def run_align(cfg: AlignConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train every setting not yet trained, evaluate every (setting, task cell) not yet stored, then
    summarize. Safe to kill and rerun."""

    out = Path(out)
    check_align(cfg, out)  # every input, before anything is written or the model loads
    run_id = f"align-{cfg.eval_hash()}"

    def prepare(model: Any, tok: Any) -> None:
        atomic_write_text(
            out / "align.resolved.yaml", yaml.safe_dump({"run_id": run_id, "config": cfg.to_dict(), "kind": "align"}, sort_keys=False)
        )

    with session(cfg, out, run_id, stale=("adapters/.*.tmp*",), progress=progress, prepare=prepare) as S:
        S.evaluate(BaseIntervention())
        for s in cfg.settings:
            path = adapter_path(cfg, s, out)
            if not adapter_ready(path):
                _train_into(cfg, s, S.model, S.tokenizer, path, progress)
            for iv, _ in setting_interventions(cfg, s, out):
                S.evaluate(iv)
    atomic_write_text(
        out / "align.resolved.yaml",
        yaml.safe_dump({"run_id": run_id, "config": cfg.to_dict(), "kind": "align"}, sort_keys=False, allow_unicode=True),
    )
    align_manifest(cfg, run_id, out).write(out)
    return summarize_run(out)

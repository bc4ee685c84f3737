"""Methods on the same axes: per-setting scores, paired changes against the base model with bootstrap
CIs, the alignment tax, and the alignment-vs-helpfulness figure of an ``steertax align`` run.

tax % = (base − aligned) / base · 100 for helpfulness benchmarks (negative = improvement); alignment
rows report the gain ΔB instead. Every change is paired by item (the same items for base and the
setting) and its 95% CI comes from a bootstrap over items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from ._util import atomic_write_bytes, atomic_write_json, atomic_write_text
from .errors import DataError

__all__ = ["paired_change", "summarize_run", "markdown_table"]

DRIFT_METRICS = ("kl", "ce", "ce_delta")


def paired_change(base: dict[str, float], other: dict[str, float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean of ``other`` − ``base`` over their common items with a paired-bootstrap 95% CI, and the tax
    % (base − other)/base·100 with its CI from the same resamples."""
    items = sorted(set(base) & set(other))
    b = np.asarray([base[i] for i in items], dtype=float)
    o = np.asarray([other[i] for i in items], dtype=float)
    ok = np.isfinite(b) & np.isfinite(o)
    b, o = b[ok], o[ok]
    n = len(b)
    if n == 0:
        return {"n": 0, "base": None, "value": None, "delta": None, "delta_ci95": None, "tax_percent": None, "tax_ci95": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n)) if n_boot else np.zeros((0, n), dtype=int)
    bm, om = b.mean(), o.mean()
    d_boot = o[idx].mean(axis=1) - b[idx].mean(axis=1)
    out: dict[str, Any] = {"n": n, "base": float(bm), "value": float(om), "delta": float(om - bm)}
    out["delta_ci95"] = [float(x) for x in np.percentile(d_boot, [2.5, 97.5])] if n_boot and n > 1 else None
    if bm != 0:
        out["tax_percent"] = float((bm - om) / bm * 100)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_boot = (b[idx].mean(axis=1) - o[idx].mean(axis=1)) / b[idx].mean(axis=1) * 100
        t_boot = t_boot[np.isfinite(t_boot)]
        out["tax_ci95"] = [float(x) for x in np.percentile(t_boot, [2.5, 97.5])] if len(t_boot) and n > 1 else None
    else:
        out["tax_percent"], out["tax_ci95"] = None, None
    return out


def _by_item(records: Sequence[dict[str, Any]], metric: str) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in records:
        v = r.get(metric)
        if v is not None:
            out.setdefault(str(r["item"]), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in out.items()}


def _entries(task_cfgs: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (task, scorer), named like the study's (``refusal``, ``refusal[generate]``)."""
    from . import tasks as T

    out = []
    for t in task_cfgs:
        task = T.get(t["name"], **t.get("options", {}))
        key = t.get("label") or t["name"]
        scorers = sorted({r["scorer"] for r in records if r["task"] == key}, key=lambda s: (s != "logprob", s))
        for k, sc in enumerate(scorers):
            out.append({"name": key if k == 0 else f"{key}[{sc}]", "task": key, "scorer": sc, "axis": task.axis, "metric": task.metric})
    return out


def summarize_run(out: str | Path, *, n_boot: int = 1000) -> dict[str, Any]:
    """summary.json, table.md and figures/align.png of an align run folder; returns the summary."""
    from .store import ResultStore

    out = Path(out)
    cfg_path = out / "align.resolved.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{out} has no align.resolved.yaml: is it a `steertax align` output folder?")
    resolved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    run_id, cfg = resolved["run_id"], resolved["config"]
    with ResultStore(out / "results.sqlite") as store:
        keys = [k for k in store.runs() if k.startswith(f"{run_id}|")]
        recs = {k: store.records(k) for k in keys}
        store.to_parquet_many(out / "results.parquet", keys)
    base_key = f"{run_id}|base|base"
    if base_key not in recs or not recs[base_key]:
        raise DataError(f"{out}: the base model's rows are missing; rerun `steertax align` to finish the run")
    entries = _entries(cfg["tasks"], recs[base_key])
    order = [base_key] + [f"{run_id}|{_method(s)}|{_name(s)}" for s in cfg["settings"]]
    settings = []
    for key in order:
        rs = recs.get(key) or []
        if not rs:
            continue
        method, setting = key.split("|", 2)[1:]
        row: dict[str, Any] = {"method": method, "setting": setting, "tasks": {}}
        for e in entries:
            mine = [r for r in rs if r["task"] == e["task"] and r["scorer"] == e["scorer"]]
            base = [r for r in recs[base_key] if r["task"] == e["task"] and r["scorer"] == e["scorer"]]
            ch = paired_change(_by_item(base, e["metric"]), _by_item(mine, e["metric"]), n_boot=n_boot)
            y = [v for v in _by_item(mine, e["metric"]).values() if np.isfinite(v)]
            ch["stderr"] = float(np.std(y, ddof=1) / np.sqrt(len(y))) if len(y) > 1 else None
            if e["axis"] != "helpfulness" or e["metric"] in DRIFT_METRICS:
                ch["tax_percent"], ch["tax_ci95"] = None, None
            row["tasks"][e["name"]] = ch
        settings.append(row)
    _attach_training(out, settings)
    summary = {"run_id": run_id, "model": cfg["model"], "entries": entries, "settings": settings, "quick": cfg.get("quick", False)}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", markdown_table(summary))
    (out / "figures").mkdir(exist_ok=True)
    atomic_write_bytes(out / "figures" / "align.png", align_figure(summary))
    return summary


def _name(s: dict[str, Any]) -> str:
    from .align import AlignSetting

    return AlignSetting(**s).name()


def _method(s: dict[str, Any]) -> str:
    return str(s["method"])


def _attach_training(out: Path, settings: list[dict[str, Any]]) -> None:
    by_name = {}
    for p in out.glob("adapters/*/setting.json"):
        info = json.loads(p.read_text(encoding="utf-8"))
        hist = info.get("history") or []
        by_name[info["name"]] = {
            "adapter": str(p.parent),
            "steps": info.get("steps"),
            "lr": info.get("lr"),
            "first_loss": hist[0]["loss"] if hist else None,
            "final_loss": hist[-1]["loss"] if hist else None,
            "delta_sq_norm": info.get("delta_sq_norm"),
        }
    for row in settings:
        if row["setting"] in by_name:
            row["training"] = by_name[row["setting"]]


def _fmt(x: Any, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _ci(c: Any, nd: int = 3) -> str:
    return "" if not c else f" [{c[0]:.{nd}f}, {c[1]:.{nd}f}]"


def markdown_table(summary: dict[str, Any]) -> str:
    """Per setting and benchmark: the score, its paired change from the base (95% CI) and the tax %."""
    lines = [f"# Alignment by fine-tuning: {summary['model']}", ""]
    lines.append("| method | setting | benchmark | axis | score | change vs base (95% CI) | tax % (95% CI) |")
    lines.append("|---|---|---|---|---|---|---|")
    ent = {e["name"]: e for e in summary["entries"]}
    for row in summary["settings"]:
        for name, ch in row["tasks"].items():
            tax = "" if ch.get("tax_percent") is None else f"{ch['tax_percent']:.1f}{_ci(ch.get('tax_ci95'), 1)}"
            delta = "" if row["method"] == "base" else f"{_fmt(ch['delta'])}{_ci(ch.get('delta_ci95'))}"
            lines.append(f"| {row['method']} | {row['setting']} | {name} | {ent[name]['axis']} | {_fmt(ch['value'])} | {delta} | {tax} |")
    lines.append("")
    lines.append("tax % = (base − aligned)/base·100 on helpfulness benchmarks; negative = improvement. Changes are paired by item.")
    return "\n".join(lines) + "\n"


def align_figure(summary: dict[str, Any]) -> bytes:
    """ΔH (each helpfulness benchmark) against ΔB (the first alignment entry), one point per setting
    with paired 95% CI bars, one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _png

    al = [e["name"] for e in summary["entries"] if e["axis"] == "alignment"]
    he = [e["name"] for e in summary["entries"] if e["axis"] == "helpfulness" and e["metric"] not in DRIFT_METRICS]
    fig, axes = plt.subplots(1, max(1, len(he)), figsize=(5.2 * max(1, len(he)), 4.4), squeeze=False)
    markers = {"base": "*", "dpo": "o", "dpo_reg": "s", "sft": "^", "selective": "D"}
    for ax, h in zip(axes[0], he or [None], strict=True):
        if not al or h is None:
            ax.text(0.5, 0.5, "needs an alignment and a helpfulness task", ha="center", transform=ax.transAxes)
            continue
        for row in summary["settings"]:
            a, b = row["tasks"][al[0]], row["tasks"][h]
            if a["delta"] is None or b["delta"] is None:
                continue
            xe = None if not a.get("delta_ci95") else [[a["delta"] - a["delta_ci95"][0]], [a["delta_ci95"][1] - a["delta"]]]
            ye = None if not b.get("delta_ci95") else [[b["delta"] - b["delta_ci95"][0]], [b["delta_ci95"][1] - b["delta"]]]
            ax.errorbar(a["delta"], b["delta"], xerr=xe, yerr=ye, fmt=markers.get(row["method"], "o"), capsize=3, label=row["setting"])
        ax.axhline(0, color="#999", lw=0.8)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_xlabel(f"ΔB ({al[0]})")
        ax.set_ylabel(f"ΔH ({h})")
        ax.set_title(f"{summary['model']}: fine-tuning settings")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)

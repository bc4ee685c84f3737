"""An align or merge run folder's summary: per setting (from the run manifest) and benchmark, the score and its
paired change from the base model with a bootstrap 95% CI and the tax %; ``summary.json``, ``table.md`` and the
align figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from steertax import tasks as T
from steertax._util import atomic_write_bytes, atomic_write_json, atomic_write_text
from steertax.analysis.stats import paired_change
from steertax.errors import DataError
from steertax.judges.summary import judged_summary
from steertax.manifest import RESOLVED_FILES, Manifest, read_manifest
from steertax.reports.align import align_figure, markdown_table
from steertax.store import ResultStore
from steertax.tasks.drift import DRIFT_METRICS


def by_item(records: Sequence[dict[str, Any]], metric: str) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for r in records:
        v = r.get(metric)
        if v is not None:
            out.setdefault(str(r["item"]), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in out.items()}


def _entries(task_cfgs: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (task, scorer), named like the study's (``refusal``, ``refusal[generate]``)."""

    out = []
    for t in task_cfgs:
        task = T.get(t["name"], **t.get("options", {}))
        key = t.get("label") or t["name"]
        scorers = sorted({r["scorer"] for r in records if r["task"] == key}, key=lambda s: (s != "logprob", s))
        for k, sc in enumerate(scorers):
            out.append({"name": key if k == 0 else f"{key}[{sc}]", "task": key, "scorer": sc, "axis": task.axis, "metric": task.metric})
    return out


def _rows_of(man: Manifest, recs: dict[str, list[dict[str, Any]]]) -> Any:
    """(entry, its rows, the summary row to fill) per setting of the manifest, knob sweeps expanded per value."""
    for e in man.entries:
        for mrow in e.rows:
            rs = [r for r in recs.get(e.key) or [] if mrow.strength is None or float(r["strength"]) == mrow.strength]
            if not rs:
                continue
            row: dict[str, Any] = {"method": e.method, "setting": mrow.label, "key": e.key, "tasks": {}, "on": dict(mrow.on)}
            if mrow.strength is not None:  # a row of a batched sweep: the knob of the curve it sits on
                fam = man.family(next(iter(mrow.on)))
                v = mrow.on[fam.name]
                row["knob"] = {
                    "name": fam.knob.symbol,
                    "value": v,
                    "of": e.extra.get("of"),
                    "family": fam.name,
                    "param": fam.knob.name,
                    "strength": mrow.strength,
                }
                row["knob"]["extrapolated"] = fam.knob.name == "alpha" and v is not None and v > 1
            yield e, rs, row


def summarize_run(out: str | Path, *, n_boot: int = 1000) -> dict[str, Any]:
    """summary.json, table.md and figures/align.png of an align (or merge) run folder; returns the summary."""

    out = Path(out)
    man = read_manifest(out)
    if man.kind not in ("align", "merge"):
        raise DataError(f"{out} is a `steertax {man.kind}` folder: this reads `steertax align` and `steertax merge` folders")
    with ResultStore(out / "results.sqlite") as store:
        recs = {e.key: store.records(e.key) for e in man.entries}
        store.to_parquet_many(out / "results.parquet", [e.key for e in man.entries])
    base_key = man.base_key
    if not recs.get(base_key):
        raise DataError(f"{out}: the base model's rows are missing; rerun `steertax {man.kind}` to finish the run")
    entries = _entries(man.tasks, recs[base_key])
    settings = []
    for e_man, rs, row in _rows_of(man, recs):
        for e in entries:
            mine = [r for r in rs if r["task"] == e["task"] and r["scorer"] == e["scorer"]]
            base = [r for r in recs[base_key] if r["task"] == e["task"] and r["scorer"] == e["scorer"]]
            ch = paired_change(by_item(base, e["metric"]), by_item(mine, e["metric"]), n_boot=n_boot)
            y = [v for v in by_item(mine, e["metric"]).values() if np.isfinite(v)]
            ch["stderr"] = float(np.std(y, ddof=1) / np.sqrt(len(y))) if len(y) > 1 else None
            if e["axis"] != "helpfulness" or e["metric"] in DRIFT_METRICS:
                ch["tax_percent"], ch["tax_ci95"] = None, None
            if (judged := judged_summary(mine, n_boot=min(n_boot, 200))) is not None:
                ch["judged"] = judged  # class shares, degenerate answers, agreement of two judges
            row["tasks"][e["name"]] = ch
        if e_man.adapter and "knob" not in row:
            row["adapter"] = e_man.adapter
        settings.append(row)
    _attach_training(out, settings)
    summary = {
        "run_id": man.run_id,
        "kind": man.kind,
        "model": man.model,
        "entries": entries,
        "families": [f.to_dict() for f in man.families],
        "settings": settings,
        "quick": _quick(out, man),
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", markdown_table(summary))
    (out / "figures").mkdir(exist_ok=True)
    atomic_write_bytes(out / "figures" / "align.png", align_figure(summary))
    return summary


def _quick(out: Path, man: Manifest) -> bool:
    resolved = yaml.safe_load((out / RESOLVED_FILES[man.kind]).read_text(encoding="utf-8")) or {}
    return bool((resolved.get("config") or {}).get("quick", False))


def _attach_training(out: Path, settings: list[dict[str, Any]]) -> None:
    """Each adapter setting's training log (steps, lr, losses, ||ΔW||²), from its own adapter folder."""
    for row in settings:
        path = row.pop("adapter", None)
        info_path = Path(path) / "setting.json" if path else None
        if info_path is None or not info_path.is_file():
            continue
        info = json.loads(info_path.read_text(encoding="utf-8"))
        hist = info.get("history") or []
        row["training"] = {
            "adapter": str(path),
            "steps": info.get("steps"),
            "lr": info.get("lr"),
            "first_loss": hist[0]["loss"] if hist else None,
            "final_loss": hist[-1]["loss"] if hist else None,
            "delta_sq_norm": info.get("delta_sq_norm"),
        }
        if info.get("preservation"):
            row["training"]["preservation"] = info["preservation"]

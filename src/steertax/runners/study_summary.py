"""A study folder's analysis: the laws fitted per task, the efficient strength r*, the tax at r*, the theory's
bounds checked against the measured curves and conditional steering's confusion; ``summary.json``,
``results.parquet`` and the report. ``analyze(out)`` is what ``steertax analyze`` calls and what a finished
``steertax run`` ends with."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from steertax import tasks as T
from steertax._faults import checkpoint
from steertax._util import atomic_write_json, json_default, sanitize_json
from steertax.analysis.laws import fit_law, fit_task, item_matrix
from steertax.analysis.stats import paired_change, paired_ratio
from steertax.analysis.tax import efficient_strength, interp_mean, law_function, split_items, tax_table
from steertax.analysis.theory import bound_check, predicted_alignment, predicted_helpfulness
from steertax.config import RunConfig, from_dict, upgrade_resolved
from steertax.errors import DataError
from steertax.interventions.conditional import confusion
from steertax.interventions.steering.vectors import now_iso
from steertax.judges.summary import judged_summary
from steertax.judges.validate import bootstrap_kappa, kappa
from steertax.manifest import folder_kind
from steertax.reports.study import write_report
from steertax.store import ResultStore
from steertax.tasks.base import summarize

log = logging.getLogger(__name__)
TRUNCATION_WARN = 0.05  # a run warns when more answers than this (at any strength) hit max_new_tokens unfinished

__all__ = ["analyze", "study_keys", "truncation", "TRUNCATION_WARN", "NO_LAW"]


def study_keys(resolved: dict[str, Any]) -> dict[str, str]:
    """The store keys of a study folder's sweeps (``steering``, and ``conditional`` with a condition), as
    its config.resolved.yaml records them (:func:`steertax.interventions.store_key` made them)."""
    keys = (resolved.get("resolved") or {}).get("store_keys")
    if not keys:
        raise DataError(
            "this run folder was written by an older steertax (its store keys carry no intervention key): "
            "rerun the same `steertax run` into it to recompute its rows under the new keys"
        )
    return dict(keys)


def _entries(cfg: RunConfig, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task and scorer, the records and what they measure (``refusal``, ``refusal[generate]``); and the study's
    alignment and helpfulness entries that name a metric (``refusal:harmless``: the harmless rate, read off the rows)."""
    out: dict[str, dict[str, Any]] = {}
    for t in cfg.tasks:
        task = T.get(t.name, **t.options)
        key = t.label or t.name
        recs = [r for r in records if r["task"] == key]
        scorers = sorted({r["scorer"] for r in recs}, key=lambda s: (s != "logprob", s))
        for k, sc in enumerate(scorers):
            name = key if k == 0 else f"{key}[{sc}]"
            out[name] = {
                "task": key,
                "name": t.name,
                "axis": task.axis,
                "metric": task.metric,
                "scorer": sc,
                "records": [r for r in recs if r["scorer"] == sc],
                "task_obj": task,
            }
    for name in (cfg.study.alignment_task, cfg.study.helpfulness_task):
        entry, _, metric = name.partition(":")
        if metric and entry in out:
            e = out[entry]
            value = e["task_obj"].metric_value
            out[name] = {**e, "metric": metric, "records": [{**r, metric: value(r, metric)} for r in e["records"]]}
    for name, e in list(out.items()):  # the safe-prompt rate's twin: the harmless rate on its unsafe prompts (alignment)
        if ":" not in name and T.has_trait(e["name"], T.SAFE_PROMPT_RATE) and f"{name}:harmless" not in out:
            out[f"{name}:harmless"] = {**e, "metric": "harmless", "axis": "alignment"}
    return out


def _fit_entry(e: dict[str, Any], n_boot: int, seed: int, items: set[str] | None = None, local_fraction: float = 0.25) -> dict[str, Any]:
    recs = e["records"] if items is None else [r for r in e["records"] if str(r["item"]) in items]
    if e["metric"] in T.DRIFT_METRICS:
        S, _, Y = item_matrix(recs, e["metric"])

        f = fit_law("quadratic", S, Y, n_boot=n_boot, seed=seed)
        f["note"] = "drift grows with |r|; fitted with a quadratic"
        return f
    chance = e["task_obj"].chance if e["metric"] in ("p_correct", "p_abcd") else None
    grid = sorted({float(r["strength"]) for r in recs})
    r_local = local_fraction * max(abs(x) for x in grid) if grid else None
    f = fit_task(recs, e["metric"], e["axis"], n_boot=n_boot, seed=seed, chance=chance, r_local=r_local)
    if chance:
        f["chance"] = chance
    return f


def truncation(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The fraction of generations that hit the token budget unfinished: overall, per strength, and the
    worst strength. Empty for records without a ``truncated`` field (scorers that do not generate)."""
    rs = [r for r in records if r.get("truncated") is not None]
    if not rs:
        return {}
    by: dict[float, list[float]] = {}
    for r in rs:
        by.setdefault(float(r["strength"]), []).append(float(r["truncated"]))
    frac = {s: float(np.mean(v)) for s, v in sorted(by.items())}
    worst = max(frac, key=lambda s: (frac[s], -abs(s)))
    overall = float(np.mean([float(r["truncated"]) for r in rs]))
    return {"overall": overall, "max": frac[worst], "worst_strength": worst, "by_strength": frac}


def _paired_stderr(records: list[dict[str, Any]], metric: str) -> dict[float, float | None]:
    """Per strength: the standard error of the per-item change from r = 0 (what ΔB and ΔH are)."""
    S, _, Y = item_matrix(records, metric)
    if not (S == 0).any():
        return {}
    z = int(np.flatnonzero(S == 0)[0])
    out: dict[float, float | None] = {}
    for j, r in enumerate(S):
        d = Y[:, j] - Y[:, z]
        d = d[np.isfinite(d)]
        out[float(r)] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
    return out


def _bound_checks(tasks_out: dict[str, Any], theory: dict[str, Any], st: Any) -> dict[str, Any]:
    """Per task: does the measured curve respect the theory's predicted bound (with each task's own
    B0 or p0, and the constants m and σ measured on the study's alignment/helpfulness prompts)?"""

    out: dict[str, Any] = {}
    for name, t in tasks_out.items():
        bs = t["by_strength"]
        if not bs or t["metric"] in T.DRIFT_METRICS:
            continue
        r = np.asarray([b["strength"] for b in bs], dtype=float)
        y0 = next((b["mean"] for b in bs if b["strength"] == 0.0), None)
        if y0 is None:
            continue
        if t["axis"] == "alignment" and theory.get("m") is not None and np.isfinite(theory["m"]):
            bound = predicted_alignment(r, theory["m"], y0)
            chk = bound_check(r, [b["mean"] for b in bs], [b["stderr"] for b in bs], bound, "alignment")
            chk.update(bound="B(r) ≥ tanh(½·m·r + artanh B0) for r > 0 (≤ for r < 0)", B0=y0, constants_from=st.alignment_task)
        elif t["axis"] == "helpfulness" and theory.get("sigma") is not None and 0 < y0 <= 1:
            bound = predicted_helpfulness(r, y0, theory["sigma"])
            chk = bound_check(r, [b["mean"] for b in bs], [b["stderr"] for b in bs], bound, "upper")
            chk.update(bound="H(r) ≤ 1/(1 + a + a·σ²r²/2), a = (1 − p0)/p0", p0=y0, constants_from=st.helpfulness_task)
            if t.get("fit", {}).get("chance"):
                chk["note"] = (
                    f"{t['metric']} is normalized over the choices (chance {t['fit']['chance']:g}); the bound is "
                    "derived for a full-vocabulary probability, so it is compared as the paper states it"
                )
        else:
            continue
        if chk["holds"] is None:  # a missing standard error is a missing check, not a pass or a violation
            at = ", ".join(f"{x:g}" for x in chk["unchecked_at_r"])
            chk["verdict"] = (
                f"can't tell: no standard error at {chk['n_unchecked']} of {chk['n_points']} strengths (r = {at}) "
                "whose mean lies on the wrong side of the bound"
            )
        elif chk["holds"]:
            chk["verdict"] = "respected at every strength"
        else:
            chk["verdict"] = (
                f"violated at {chk['n_violations']} of {chk['n_points']} strengths, by up to "
                f"{chk['max_violation']:.3g} (r = {chk['at_r']:g})"
            )
        out[name] = chk
    return out


def _task_summary(name: str, e: dict[str, Any], cfg: RunConfig) -> tuple[dict[str, Any], str | None]:
    """One task's summary entry (curve, fit, truncation) and its warning line, if any."""
    summ = summarize(e["records"], [e["metric"]])
    dse = _paired_stderr(e["records"], e["metric"])
    out = {
        "axis": e["axis"],
        "metric": e["metric"],
        "scorer": e["scorer"],
        "task": e["name"],
        "by_strength": [
            {**{k: s[k] for k in ("strength", "mean", "stderr", "n")}, "delta_stderr": dse.get(float(s["strength"]))} for s in summ
        ],
        "fit": _fit_entry(e, cfg.study.n_boot, cfg.seed, local_fraction=cfg.strengths.local_fraction),
        "extra": e["task_obj"].aggregate(e["records"]),
    }
    if (judged := judged_summary(e["records"])) is not None:  # class shares, degenerate answers, agreement of two judges
        out["judged"] = judged
    trunc = truncation(e["records"])
    if not trunc:
        return out, None
    per = trunc.pop("by_strength")
    out["truncation"] = trunc
    for b in out["by_strength"]:
        b["truncated"] = per.get(float(b["strength"]))
    if e["task_obj"].needs_finished_answer and trunc["max"] > TRUNCATION_WARN:
        at0 = per.get(0.0)
        why = (
            "unsteered answers finish, so steering keeps the model from finishing (scored as wrong)"
            if at0 is not None and at0 <= TRUNCATION_WARN
            else "its scores count them as wrong: raise the task's max_new_tokens option"
        )
        pct, at = 100 * trunc["max"], trunc["worst_strength"]
        return out, f"{name}: {pct:.0f}% of answers hit max_new_tokens unfinished (at r = {at:g}); {why}"
    return out, None


def _study_split(cfg: RunConfig, entries: dict[str, dict[str, Any]]) -> tuple[set[str], set[str], set[str]] | None:
    """The validation and held-out items r* is chosen and measured on (a hash split of the alignment and
    helpfulness tasks' item ids), and the entries those items belong to (every scorer of those two tasks);
    None when either task is missing."""
    st = cfg.study
    if st.alignment_task not in entries or st.helpfulness_task not in entries:
        return None
    ea, eh = entries[st.alignment_task], entries[st.helpfulness_task]
    ids = sorted({str(r["item"]) for r in ea["records"]} | {str(r["item"]) for r in eh["records"]})
    val, test = split_items(ids, st.validation_fraction, cfg.seed)
    chosen_on = {n for n, e in entries.items() if e["task"] in (ea["task"], eh["task"])}
    return val, test, chosen_on


NO_LAW = "no law fits, r* not chosen"


def _efficient(cfg: RunConfig, entries: dict[str, dict[str, Any]], grid: list[float]) -> dict[str, Any]:
    """The efficient strength r* from laws fitted on a validation split of items; held-out ΔB, ΔH at r*.
    ``ok`` is False, with a ``reason`` and no r*, when r* could not be chosen (a task missing, no law fits on
    the validation split, or no strength keeps the drift KL under the ceiling)."""
    st = cfg.study
    split = _study_split(cfg, entries)
    if split is None:
        return {"ok": False, "reason": "the study's alignment or helpfulness task is missing, r* not chosen"}
    val, test, _ = split
    ea, eh = entries[st.alignment_task], entries[st.helpfulness_task]
    lf = cfg.strengths.local_fraction
    fa, fh = _fit_entry(ea, 0, cfg.seed, val, lf), _fit_entry(eh, 0, cfg.seed, val, lf)
    fB, fH = law_function(fa), law_function(fh)
    where: dict[str, Any] = {"alignment_task": st.alignment_task, "helpfulness_task": st.helpfulness_task}
    where.update(n_validation_items=len(val), n_test_items=len(test))
    if fB is None or fH is None:
        failed = " and ".join(n for n, f in ((st.alignment_task, fB), (st.helpfulness_task, fH)) if f is None)
        return {
            "ok": False,
            "reason": NO_LAW,
            "detail": f"no law could be fitted to {failed} on the validation split",
            **where,
            "validation_fits": {"alignment": fa, "helpfulness": fh},
        }
    kl = None
    drift = [n for n, e in entries.items() if T.has_trait(e["name"], T.DISTANCE_FROM_BASE)]
    if st.kl_ceiling is not None and drift:
        drec = entries[drift[0]]["records"]
        kl = lambda r: np.asarray([interp_mean(drec, "kl", float(x)) for x in np.atleast_1d(r)])  # noqa: E731
    eff = efficient_strength(fB, fH, (min(grid), max(grid)), st.helpfulness_weight, kl, st.kl_ceiling)
    eff.update(where, validation_fits={"alignment": fa, "helpfulness": fh})
    if not eff["ok"]:
        eff["reason"] = f"{eff['reason']}, r* not chosen"
        return eff
    r = eff["r_star"]
    eff["heldout"] = {
        "dB": interp_mean(ea["records"], ea["metric"], r, items=test) - interp_mean(ea["records"], ea["metric"], 0.0, items=test),
        "dH": interp_mean(eh["records"], eh["metric"], r, items=test) - interp_mean(eh["records"], eh["metric"], 0.0, items=test),
    }
    return eff


def _tax(cfg: RunConfig, entries: dict[str, dict[str, Any]], r: float | None) -> list[dict[str, Any]] | None:
    """The tax table at ``r`` (None when r* was not chosen): held-out items for the tasks r* was chosen on."""
    if r is None:
        return None
    split = _study_split(cfg, entries)
    test, chosen_on = (split[1], split[2]) if split is not None else (None, None)
    return tax_table(
        {n: {k: e[k] for k in ("axis", "metric", "scorer", "name")} for n, e in entries.items()},
        {n: e["records"] for n, e in entries.items()},
        r,
        items=test,
        chosen_on=chosen_on,
    )


def _conditional(
    cfg: RunConfig, resolved: dict[str, Any], store: ResultStore, entries: dict[str, dict[str, Any]], eff: dict[str, Any]
) -> dict[str, Any] | None:
    """A conditional study's second half: the condition's confusion matrix on the study's items (none of
    them was used to fit it), the conditional sweep's fits, r* and tax, and the comparison with
    unconditional steering at the conditional r* (held-out items where r* was chosen on the task)."""

    recs = store.records(study_keys(resolved)["conditional"])
    if not recs:
        return None
    ents = _entries(cfg, recs)
    st = cfg.study
    tasks_out = {n: _task_summary(n, e, cfg)[0] for n, e in ents.items()}
    ceff = _efficient(cfg, ents, resolved["resolved"]["strengths"])
    r = float(ceff["r_star"]) if ceff.get("ok") else float(eff["r_star"]) if eff.get("ok") else None
    # the condition's decisions per task, against whether the request is harmful
    conf_tasks: dict[str, Any] = {}
    fired_all: list[bool] = []
    truth_all: list[bool] = []
    for t in cfg.tasks:
        key = t.label or t.name
        task = T.get(t.name, **t.options)
        items = {it.id: it for it in task.items(t.limit, cfg.seed)}
        dec = {str(x["item"]): bool(x["fired"]) for x in recs if x["task"] == key and "fired" in x}
        truth = {i: task.is_harmful(items[i]) for i in dec if i in items}
        row: dict[str, Any] = {"n": len(dec), "fired_rate": float(np.mean(list(dec.values()))) if dec else None}
        known = [i for i in dec if truth.get(i) is not None]
        if known:
            row["confusion"] = confusion([dec[i] for i in known], [bool(truth[i]) for i in known])
            fired_all += [dec[i] for i in known]
            truth_all += [bool(truth[i]) for i in known]
        conf_tasks[key] = row

    overall = confusion(fired_all, truth_all) if fired_all else None
    # unconditional vs conditional at the conditional r* (none when neither run has an r*)
    split = _study_split(cfg, entries)
    test, chosen_on = (split[1], split[2]) if split is not None else (set(), set())
    versus: dict[str, Any] = {}
    for name, e in ents.items():
        if r is None or name not in entries or e["metric"] in T.DRIFT_METRICS:
            continue
        keep = set(test) if name in chosen_on else None

        def by_item(rs: list[dict[str, Any]], s: float, keep: set[str] | None = keep, m: str = e["metric"]) -> dict[str, float]:
            return {
                str(x["item"]): float(x[m])
                for x in rs
                if float(x["strength"]) == s and x.get(m) is not None and (keep is None or str(x["item"]) in keep)
            }

        grid = sorted({float(x["strength"]) for x in e["records"]})
        near = min(grid, key=lambda g: abs(g - r))  # the grid point at r* (the tables report measured points, not fits)
        u0, u1 = by_item(entries[name]["records"], 0.0), by_item(entries[name]["records"], near)
        c1 = by_item(e["records"], near)
        du, dc = paired_change(u0, u1, n_boot=st.n_boot, seed=cfg.seed), paired_change(u0, c1, n_boot=st.n_boot, seed=cfg.seed)
        row = {"axis": e["axis"], "metric": e["metric"], "r": near, "base": du.get("base"), "unconditional": du, "conditional": dc}
        row["items"] = "all" if keep is None else "held-out"
        # the share of steering's change the conditional run keeps, with a CI from the same item resamples
        pr = paired_ratio(u0, u1, c1, n_boot=st.n_boot, seed=cfg.seed)
        row.update(ratio=pr["ratio"], ratio_ci95=pr["ratio_ci95"], ratio_reason=pr["reason"], ratio_n=pr["n"])
        versus[name] = row
    why = None if r is not None else f"neither run has an r* ({ceff.get('reason') or eff.get('reason')})"
    return {
        "condition": resolved["resolved"].get("condition"),
        "condition_file": resolved["resolved"].get("condition_file"),
        "confusion": {"overall": overall, "tasks": conf_tasks},
        "tasks": tasks_out,
        "efficient_strength": ceff,
        "r_compare": r,
        "r_compare_note": why,
        "versus_unconditional": versus,
        "alignment_tax": _tax(cfg, ents, r),
    }


def _rate_check(entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The log-probability rates checked against greedy answers read by the judge, on the items and strengths both
    scored: per item, answered (safe prompts) or refused (unsafe prompts) by each; their agreement, Cohen's κ with a
    bootstrap CI, and both rates per strength."""
    for name, e in entries.items():
        gen = entries.get(f"{name}[generate]")
        if ":" in name or gen is None or e["scorer"] != "logprob" or not T.has_trait(e["name"], T.SAFE_PROMPT_RATE):
            continue

        def per_item(recs: list[dict[str, Any]]) -> dict[tuple[str, float], tuple[str, float]]:
            out = {}
            for r in recs:
                m = "helpful" if r.get("label") == "safe" else "harmless"
                if r.get(m) is not None:
                    out[(str(r["item"]), float(r["strength"]))] = (m, float(r[m]))
            return out

        lp, jd = per_item(e["records"]), per_item(gen["records"])
        keys = sorted(set(lp) & set(jd))
        if not keys:
            return None
        a, b = np.asarray([lp[k][1] for k in keys]), np.asarray([jd[k][1] for k in keys])
        lo, hi = bootstrap_kappa(a, b)
        by: dict[float, dict[str, Any]] = {}
        for k, x, y in zip(keys, a, b, strict=True):
            d = by.setdefault(k[1], {"strength": k[1], "safe": [0, 0, 0], "unsafe": [0, 0, 0]})
            row = d["safe" if lp[k][0] == "helpful" else "unsafe"]
            row[0], row[1], row[2] = row[0] + 1, row[1] + x, row[2] + y
        rows = [
            {
                "strength": s,
                **{lab: {"n": v[0], "logprob": v[1] / v[0], "judged": v[2] / v[0]} for lab in ("safe", "unsafe") if (v := d[lab])[0]},
            }
            for s, d in sorted(by.items())
        ]
        return {
            "task": name,
            "n_items": len({k[0] for k in keys}),
            "n_safe": len({k[0] for k in keys if lp[k][0] == "helpful"}),
            "n_unsafe": len({k[0] for k in keys if lp[k][0] == "harmless"}),
            "n_pairs": len(keys),
            "agreement": float(np.mean(a == b)),
            "kappa": kappa(a, b),
            "kappa_ci95": [lo, hi],
            "by_strength": rows,
            "rule": "logprob: answered when P(answer) > P(refuse); judged: the greedy answer read by the run's judge",
        }
    return None


def _prompting(cfg: RunConfig, resolved: dict[str, Any], store: ResultStore, entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The aligning-prompt ladder beside the sweep: per rung and entry, the mean and its paired change from the base
    (the sweep's r = 0 rows, the first rung) with a 95% CI; where the safety text went in the chat template."""
    info = resolved["resolved"].get("prompting")
    if not info:
        return None
    by_item0: dict[str, dict[str, float]] = {}
    for n, e in entries.items():
        rs = [r for r in e["records"] if float(r["strength"]) == 0.0 and r.get(e["metric"]) is not None]
        by_item0[n] = {str(r["item"]): float(r[e["metric"]]) for r in rs}
    rungs = []
    for rung in info["rungs"]:
        recs = store.records(rung["key"])
        mine = _entries(cfg, recs)
        tasks: dict[str, Any] = {}
        for n, e in mine.items():
            if n not in by_item0:
                continue
            vals = {str(r["item"]): float(r[e["metric"]]) for r in e["records"] if r.get(e["metric"]) is not None}
            if vals:
                ch = paired_change(by_item0[n], vals, n_boot=max(cfg.study.n_boot, 200), seed=cfg.seed)
                tasks[n] = {"metric": e["metric"], "axis": e["axis"], **{k: ch[k] for k in ("n", "base", "value", "delta", "delta_ci95")}}
        rungs.append({"label": rung["label"], "rung": rung["rung"], "tasks": tasks, "done": bool(recs)})
    roles = info.get("roles") or {}
    where = (
        "the chat template's system turn, after its own default system prompt"
        if roles.get("default_system")
        else "the chat template's system turn"
        if roles.get("system")
        else "the start of the first user turn (the template has no system role)"
    )
    return {"rungs": rungs, "placement": where, "default_system": roles.get("default_system")}


def analyze(out: str | Path) -> dict[str, Any]:
    """Fit laws, pick r*, compute the tax, write summary.json, results.parquet and the report."""

    out = Path(out)
    cfg_path = out / "config.resolved.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{out} has no config.resolved.yaml: is it a `steertax run` output folder?")
    if (kind := folder_kind(out)) != "run":
        raise DataError(f"{out} is a `steertax {kind}` folder: this reads `steertax run` folders (compare it with `steertax compare`)")
    resolved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg = from_dict(upgrade_resolved(resolved["config"]))
    run_id = resolved["run_id"]
    with ResultStore(out / "results.sqlite") as store:
        keys = study_keys(resolved)
        records = store.records(keys["steering"])
        rungs = [g["key"] for g in (resolved["resolved"].get("prompting") or {}).get("rungs", [])]
        store.to_parquet_many(out / "results.parquet", [*keys.values(), *rungs])  # every row of the run: sweeps and ladder
    if not records:
        raise DataError(f"{out}: the results store has no rows for run {run_id}; run `steertax run` first")
    entries = _entries(cfg, records)
    st = cfg.study
    tasks_out: dict[str, Any] = {}
    warns: list[str] = []
    for name, e in entries.items():
        tasks_out[name], warn = _task_summary(name, e, cfg)
        if warn:
            warns.append(warn)
    eff = _efficient(cfg, entries, resolved["resolved"]["strengths"])
    tax = _tax(cfg, entries, eff["r_star"] if eff.get("ok") else None)  # no r*, no tax table
    theory: dict[str, Any] = {}
    tp = out / f"theory-{run_id}.json"
    if tp.is_file():
        theory = json.loads(tp.read_text())
        b0 = (
            interp_mean(entries[st.alignment_task]["records"], entries[st.alignment_task]["metric"], 0.0)
            if st.alignment_task in entries
            else float("nan")
        )
        p0 = (
            interp_mean(entries[st.helpfulness_task]["records"], entries[st.helpfulness_task]["metric"], 0.0)
            if st.helpfulness_task in entries
            else float("nan")
        )
        theory.update(B0=b0, p0=p0)
        if np.isfinite(p0) and p0 > 0:
            theory["a_from_p0"] = (1 - p0) / p0
        fa_full = tasks_out.get(st.alignment_task, {}).get("fit", {})
        tanh_fit = (fa_full.get("candidates") or {}).get("tanh") or (fa_full if fa_full.get("law") == "tanh" else {})
        if tanh_fit.get("ok"):
            theory["fit_route"] = {
                "m_from_fit": 2 * tanh_fit["params"]["a"]["value"],
                "m_from_logits": theory.get("m"),
                "note": "2a of the paper's tanh law fitted to all items",
            }
        theory["bounds"] = _bound_checks(tasks_out, theory, st)
    conditional = None
    if cfg.steering.condition is not None:
        with ResultStore(out / "results.sqlite") as store:
            conditional = _conditional(cfg, resolved, store, entries, eff)
    with ResultStore(out / "results.sqlite") as store:
        prompting = _prompting(cfg, resolved, store, entries)
    rate_check = _rate_check(entries)
    summary = {
        "run_id": run_id,
        "model": cfg.model,
        "vector": {**resolved["resolved"]["vector"], "file": resolved["resolved"]["vector_file"]},
        "strengths": resolved["resolved"]["strengths"],
        "strength_grid": resolved["resolved"]["strength_grid"],
        "tasks": tasks_out,
        "efficient_strength": eff,
        "break_even_strength": eff.get("break_even"),
        "alignment_tax": tax,
        "alignment_tax_note": None if tax is not None else f"no tax: {eff.get('reason')}",
        "theory": theory,
        "quick": cfg.quick,
        "warnings": warns,
        "created": now_iso(),
    }
    if conditional is not None:
        summary["conditional"] = conditional
    if prompting is not None:
        summary["prompting"] = prompting
    if rate_check is not None:
        summary["rate_check"] = rate_check
    for w in warns:
        log.warning("warning: %s", w)
    summary = sanitize_json(json.loads(json.dumps(summary, default=json_default)))
    checkpoint("analysis")
    atomic_write_json(out / "summary.json", summary)
    write_report(out, summary, resolved)
    return summary

"""Figures (matplotlib) and one self-contained HTML report (jinja2 template, figures embedded)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from ._util import atomic_write_bytes, atomic_write_text

__all__ = ["write_report", "make_figures"]

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>steertax report: {{ s.model }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left} img{max-width:100%;border:1px solid #eee}
.ok{color:#17692f;font-weight:600} .no{color:#a11;font-weight:600} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#555;font-size:.92em}
</style></head><body>
<h1>Alignment vs helpfulness under steering: {{ s.model }}</h1>
<p class="note">run {{ s.run_id }} · vector: {{ s.vector.method }} on layers {{ s.vector.layers|join(", ") }} (+ = {{ s.vector.aligned_pole }}) ·
strengths r<sub>e</sub> (L2 norm added per layer): {{ s.strengths|join(", ") }} · {{ s.strength_grid.how }}{% if s.quick %} · <b>quick run</b>{% endif %}</p>

<h2>Efficient strength</h2>
{% if eff.ok %}
<p>r* = <b>{{ "%.2f"|format(eff.r_star) }}</b> maximizes U(r) = {{ eff.alpha }}·ΔB + {{ 1 - eff.alpha }}·ΔH on the laws fitted to a validation split
({{ eff.n_validation_items }} items) of <i>{{ eff.alignment_task }}</i> and <i>{{ eff.helpfulness_task }}</i>.
Held-out ({{ eff.n_test_items }} items) at r*: ΔB = {{ fmt(eff.heldout.dB) }}, ΔH = {{ fmt(eff.heldout.dH) }}.
Break-even strength (dB/dr = −dH/dr): {{ fmt(eff.break_even) }}.{% if eff.at_boundary %} <b>r* lies at the edge of the grid.</b>{% endif %}</p>
{% else %}<p>Not available: {{ eff.reason or "the study's alignment or helpfulness task is missing" }}.</p>{% endif %}
<img src="data:image/png;base64,{{ figs.tradeoff }}" alt="tradeoff frontier">

<h2>Alignment</h2>
<img src="data:image/png;base64,{{ figs.alignment }}" alt="alignment vs strength">
<h2>Helpfulness</h2>
<img src="data:image/png;base64,{{ figs.helpfulness }}" alt="helpfulness vs strength">
{% if figs.drift %}<img src="data:image/png;base64,{{ figs.drift }}" alt="drift vs strength">{% endif %}

<h2>Fitted laws</h2>
<table><tr><th class="l">task</th><th class="l">axis</th><th class="l">metric</th><th class="l">law</th><th class="l">parameters (95% CI, bootstrap over items)</th><th>R²</th><th class="l">local law</th></tr>
{% for name, t in s.tasks.items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ t.axis }}</td><td class="l">{{ t.metric }}</td>
<td class="l">{{ t.fit.formula or "—" }}</td><td class="l">{{ params(t.fit) }}</td><td>{{ fmt(t.fit.r2) }}</td><td class="l">{{ local(t.fit) }}</td></tr>
{% endfor %}</table>

<h2>Alignment tax at r* = {{ "%.2f"|format(r_star) }}</h2>
<table><tr><th class="l">benchmark</th><th class="l">axis</th><th class="l">metric</th><th>base (r=0)</th><th>at r*</th><th>tax %</th></tr>
{% for row in s.alignment_tax %}<tr><td class="l">{{ row.task }}</td><td class="l">{{ row.axis }}</td><td class="l">{{ row.metric }}</td>
<td>{{ fmt(row.base) }}</td><td>{{ fmt(row.at_r_star) }}</td><td>{{ fmt(row.tax_percent, 1) }}</td></tr>
{% if row.harmless_rate_unsafe %}<tr><td class="l">&nbsp;&nbsp;harmless rate (unsafe prompts)</td><td></td><td></td><td>{{ fmt(row.harmless_rate_unsafe.base) }}</td><td>{{ fmt(row.harmless_rate_unsafe.at_r_star) }}</td><td></td></tr>{% endif %}
{% endfor %}</table>
<p class="note">tax % = (base − steered)/base·100; negative = improvement. Alignment rows show the gain.</p>

<h2>Theory</h2>
{% if s.theory %}
<table><tr><th class="l">constant</th><th>value</th><th class="l">meaning</th></tr>
<tr><td class="l">c</td><td>{{ fmt(s.theory.c) }}</td><td class="l">slope of ‖logits(r) − logits(0)‖ (r&gt;0: {{ fmt(s.theory.c_pos) }}, r&lt;0: {{ fmt(s.theory.c_neg) }})</td></tr>
<tr><td class="l">m = cΔ</td><td>{{ fmt(s.theory.m) }}</td><td class="l">margin slope of the aligned-minus-misaligned logit gap (Δ = {{ fmt(s.theory.delta) }})</td></tr>
<tr><td class="l">σ</td><td>{{ fmt(s.theory.sigma) }}</td><td class="l">std of Δlogit<sub>i</sub> − Δlogit<sub>correct</sub> over top-{{ s.theory.top_k }} alternatives, per unit r</td></tr>
<tr><td class="l">B0, p0</td><td>{{ fmt(s.theory.B0) }}, {{ fmt(s.theory.p0) }}</td><td class="l">unsteered alignment and helpfulness</td></tr>
{% if s.theory.fit_route %}<tr><td class="l">m (fit route)</td><td>{{ fmt(s.theory.fit_route.m_from_fit) }}</td><td class="l">2·a of the fitted tanh, vs {{ fmt(s.theory.m) }} from logits</td></tr>{% endif %}
</table>
<table><tr><th class="l">assumption</th><th class="l">holds here?</th><th class="l">evidence</th></tr>
{% for k, c in s.theory.checks.items() %}<tr><td class="l">{{ k }}</td><td class="l {{ 'ok' if c.holds else 'no' }}">{{ "yes" if c.holds else "no" }}</td><td class="l">{{ c.detail }}</td></tr>{% endfor %}
</table>
<img src="data:image/png;base64,{{ figs.theory }}" alt="theory checks">
{% else %}<p>Theory was not computed (theory.enabled = false).</p>{% endif %}

<h2>Configuration</h2>
<pre>{{ config_yaml }}</pre>
<p class="note">Per-item rows: results.sqlite / results.parquet. Machine-readable summary: summary.json. steertax {{ version }}.</p>
</body></html>
"""


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "—"
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return html.escape(str(x))
    if not np.isfinite(xf):
        return "—"
    return f"{xf:.{nd}f}" if abs(xf) < 1e4 else f"{xf:.3g}"


def _params(fit: dict[str, Any]) -> str:
    if not fit or not fit.get("params"):
        return "—"
    parts = []
    for k, p in fit["params"].items():
        lo, hi = p.get("ci95") or [None, None]
        parts.append(f"{k} = {_fmt(p['value'])} [{_fmt(lo)}, {_fmt(hi)}]")
    return "; ".join(parts)


def _local(fit: dict[str, Any]) -> str:
    loc = (fit or {}).get("local") or {}
    if not loc:
        return "—"
    out = []
    lin = loc.get("linear") or {}
    if lin.get("params"):
        out.append(f"linear k1 = {_fmt(lin['params']['k1']['value'])}")
    q = loc.get("quadratic") or {}
    if q.get("params"):
        out.append(f"quadratic k2 = {_fmt(q['params']['k2']['value'])}")
    if "quadratic_beats_linear_aic" in loc:
        out.append("quadratic beats linear (AIC)" if loc["quadratic_beats_linear_aic"] else "linear not beaten (AIC)")
    rng = loc.get("range")
    if rng:
        out.append(f"|r| ≤ {_fmt(rng[1], 2)}")
    return "; ".join(out)


def _curve(fit: dict[str, Any], r: np.ndarray) -> np.ndarray | None:
    from .tax import law_function

    f = law_function(fit)
    return None if f is None else f(r)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def make_figures(s: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .theory import predicted_alignment, predicted_helpfulness

    grid = np.asarray(s["strengths"], dtype=float)
    rr = np.linspace(grid.min(), grid.max(), 300)
    eff = s.get("efficient_strength") or {}
    th = s.get("theory") or {}
    figs: dict[str, bytes] = {}

    def panel(axis: str, exclude_drift: bool = True) -> bytes:
        names = [n for n, t in s["tasks"].items() if t["axis"] == axis and not (exclude_drift and t["metric"] in ("kl", "ce", "ce_delta"))]
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, n in enumerate(names):
            t = s["tasks"][n]
            c = colors[k % len(colors)]
            bs = t["by_strength"]
            x = [b["strength"] for b in bs]
            y = [b["mean"] for b in bs]
            e = [1.96 * (b["stderr"] or 0) for b in bs]
            ax.errorbar(x, y, yerr=e, fmt="o", color=c, ms=4, capsize=2, label=f"{n} ({t['metric']})")
            yc = _curve(t["fit"], rr)
            if yc is not None:
                ax.plot(rr, yc, "-", color=c, lw=1.6, alpha=0.9)
        if axis == "alignment" and th.get("m") is not None and th.get("B0") is not None:
            ax.plot(rr, predicted_alignment(rr, th["m"], th["B0"]), "k--", lw=1, label="theory bound tanh(½mr + artanh B0)")
        if axis == "helpfulness" and th.get("sigma") is not None and th.get("p0"):
            ax.plot(rr, predicted_helpfulness(rr, th["p0"], th["sigma"]), "k:", lw=1, label="theory bound 1/(1+a+aσ²r²/2)")
        if eff.get("ok"):
            ax.axvline(eff["r_star"], color="gray", ls="--", lw=0.8)
            ax.text(eff["r_star"], ax.get_ylim()[1], " r*", va="top", color="gray")
        ax.set_xlabel("steering strength r$_e$ (L2 norm added per layer; + = aligned)")
        ax.set_ylabel("behavior expectation B" if axis == "alignment" else "helpfulness")
        ax.set_title(f"{axis.capitalize()} vs strength (points: mean ± 95% CI; lines: fitted laws)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
        return _png(fig)

    figs["alignment"] = panel("alignment")
    figs["helpfulness"] = panel("helpfulness")
    drift = [n for n, t in s["tasks"].items() if t["metric"] == "kl"]
    if drift:
        t = s["tasks"][drift[0]]
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        bs = t["by_strength"]
        ax.errorbar([b["strength"] for b in bs], [b["mean"] for b in bs], yerr=[1.96 * (b["stderr"] or 0) for b in bs],
                    fmt="o-", ms=4, capsize=2)
        ax.set_xlabel("steering strength r$_e$")
        ax.set_ylabel("KL(steered ‖ unsteered), nats/token")
        ax.set_title("Drift on neutral text")
        ax.grid(alpha=0.3)
        figs["drift"] = _png(fig)
    # tradeoff frontier
    fig, ax = plt.subplots(figsize=(6.5, 5))
    at, ht = eff.get("alignment_task"), eff.get("helpfulness_task")
    if at in s["tasks"] and ht in s["tasks"]:
        A = {b["strength"]: b["mean"] for b in s["tasks"][at]["by_strength"]}
        H = {b["strength"]: b["mean"] for b in s["tasks"][ht]["by_strength"]}
        rs = sorted(set(A) & set(H))
        dB = np.asarray([A[r] - A.get(0.0, A[rs[0]]) for r in rs])
        dH = np.asarray([H[r] - H.get(0.0, H[rs[0]]) for r in rs])
        pareto = [i for i in range(len(rs)) if not any((dB[j] >= dB[i] and dH[j] >= dH[i]) and (dB[j] > dB[i] or dH[j] > dH[i]) for j in range(len(rs)))]
        ax.plot(dB, dH, "-", color="#bbb", zorder=1)
        ax.scatter(dB, dH, c=rs, cmap="viridis", zorder=2, s=30)
        ax.scatter(dB[pareto], dH[pareto], facecolors="none", edgecolors="red", s=90, zorder=3, label="Pareto points")
        for r, x, y in zip(rs, dB, dH):
            ax.annotate(f"{r:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if eff.get("ok"):
            ax.plot([eff["dB_star"]], [eff["dH_star"]], "r*", ms=14, label=f"r* = {eff['r_star']:.2f} (fitted laws)")
            c = eff["curve"]
            ax.plot(c["dB"], c["dH"], "r-", lw=0.8, alpha=0.5, label="fitted laws")
        ax.set_xlabel(f"ΔB ({at})")
        ax.set_ylabel(f"ΔH ({ht})")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.legend(fontsize=8)
    ax.set_title("Tradeoff frontier: alignment gained vs helpfulness lost")
    ax.grid(alpha=0.3)
    figs["tradeoff"] = _png(fig)
    if th:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        g = np.asarray(th["grid"])
        a1.plot(g, th["logit_change_norm"], "o-", ms=4, label="measured")
        a1.plot(g[g >= 0], th["c_pos"] * g[g >= 0], "k--", lw=1, label=f"c+ = {th['c_pos']:.3g}")
        a1.plot(g[g <= 0], -th["c_neg"] * g[g <= 0], "k:", lw=1, label=f"c− = {th['c_neg']:.3g}")
        a1.set_xlabel("r$_e$")
        a1.set_ylabel("‖logits(r) − logits(0)‖")
        a1.set_title("A-norm: logit change grows linearly")
        a1.legend(fontsize=8)
        a1.grid(alpha=0.3)
        a2.plot(g, th["margin_curve"], "o-", ms=4)
        a2.plot(g, th["m"] * g, "k--", lw=1, label=f"m = {th['m']:.3g}")
        a2.set_xlabel("r$_e$")
        a2.set_ylabel("Δ(aligned − misaligned) first-token logit gap")
        a2.set_title("A-margin")
        a2.legend(fontsize=8)
        a2.grid(alpha=0.3)
        figs["theory"] = _png(fig)
    return figs


def write_report(out: Path, summary: dict[str, Any], resolved: dict[str, Any]) -> Path:
    import jinja2
    import yaml

    from . import __version__

    figs = make_figures(summary)
    fdir = out / "figures"
    fdir.mkdir(exist_ok=True)
    for name, png in figs.items():
        atomic_write_bytes(fdir / f"{name}.png", png)
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.ChainableUndefined)
    tpl = env.from_string(TEMPLATE)
    eff = summary.get("efficient_strength") or {}
    page = tpl.render(s=summary, eff=eff, r_star=eff.get("r_star", 0.0) if eff.get("ok") else 0.0,
                      figs={k: base64.b64encode(v).decode() for k, v in figs.items()},
                      fmt=_fmt, params=_params, local=_local, version=__version__,
                      config_yaml=yaml.safe_dump(resolved.get("config", {}), sort_keys=False))
    path = out / "report.html"
    atomic_write_text(path, page)
    return path

"""Figures (matplotlib) and one self-contained HTML report (jinja2 template, figures embedded)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import yaml

from steertax._faults import checkpoint
from steertax._util import atomic_write_bytes, atomic_write_text
from steertax._version import __version__
from steertax.analysis.laws import NEGLIGIBLE_SHARE, paper_gap
from steertax.analysis.stats import TAX_BASE_FLOOR
from steertax.analysis.tax import law_function
from steertax.analysis.theory import predicted_alignment, predicted_helpfulness
from steertax.tasks.behavior import SAFE_ANSWERED, UNSAFE_REFUSED
from steertax.tasks.drift import DRIFT_METRICS

__all__ = ["write_report", "make_figures"]

# The page template. Its lines stay as long as they are (E501 is waived for this one string, by the noqa after
# its closing quotes): wrapping them would change the HTML that is written.
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

{% for w in s.warnings or [] %}<p class="no">warning: {{ w }}</p>{% endfor %}
<h2>Efficient strength</h2>
{% if eff.ok %}
<p>r* = <b>{{ "%.2f"|format(eff.r_star) }}</b> maximizes U(r) = {{ eff.helpfulness_weight }}·ΔH + {{ 1 - eff.helpfulness_weight }}·ΔB (helpfulness weight {{ eff.helpfulness_weight }}) on the laws fitted to a validation split
({{ eff.n_validation_items }} items) of <i>{{ eff.alignment_task }}</i> and <i>{{ eff.helpfulness_task }}</i>.
Held-out ({{ eff.n_test_items }} items) at r*: ΔB = {{ fmt(eff.heldout.dB) }}, ΔH = {{ fmt(eff.heldout.dH) }}.
Break-even strength (dB/dr = −dH/dr): {{ fmt(eff.break_even) }}.{% if eff.at_boundary %} <b>r* lies at the edge of the grid.</b>{% endif %}{% if eff.note %} <b>{{ eff.note }}.</b>{% endif %}</p>
{% else %}<p><b>{{ eff.reason or "the study's alignment or helpfulness task is missing, r* not chosen" }}</b>{% if eff.detail %} ({{ eff.detail }}){% endif %}: no efficient strength, so no alignment tax.</p>{% endif %}
<img src="data:image/png;base64,{{ figs.tradeoff }}" alt="tradeoff frontier">

<h2>Alignment</h2>
<img src="data:image/png;base64,{{ figs.alignment }}" alt="alignment vs strength">
<h2>Helpfulness</h2>
<img src="data:image/png;base64,{{ figs.helpfulness }}" alt="helpfulness vs strength">
{% if figs.drift %}<img src="data:image/png;base64,{{ figs.drift }}" alt="drift vs strength">{% endif %}
{% set gen = s.tasks.items()|selectattr("1.truncation")|list %}{% if gen %}
<h3>Unfinished answers</h3>
<p class="note">The fraction of generated answers that hit max_new_tokens before they finished (no end of sequence, no stop rule).
A truncated code or maths answer is scored as it stands, usually wrong: above a few percent, the task's scores measure the budget, not the model.</p>
<table><tr><th class="l">task</th><th>overall</th>{% for r in s.strengths %}<th>r = {{ "%g"|format(r) }}</th>{% endfor %}</tr>
{% for name, t in gen %}{% set per = dict_by_strength(t) %}<tr><td class="l">{{ name }}</td><td>{{ pct(t.truncation.overall) }}</td>
{% for r in s.strengths %}<td>{{ pct(per.get(r)) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
{% set judged = s.tasks.items()|selectattr("1.judged")|list %}{% if judged %}
<h3>Judged answers</h3>
<p class="note">Greedy answers are classified by the task's judge (<a href="https://github.com/paul-rottger/exaggerated-safety">XSTest</a>'s classes; docs: judges).
A degenerate answer (empty, a loop, symbols) counts as neither refusal nor compliance (0 in B), not helpful on a safe prompt and not harmful on an unsafe one.
Fluency: the share of distinct word bigrams (1 = nothing repeats) and the answer's mean token log-probability under the unsteered base model (−log perplexity). Graded harm: StrongREJECT's score where a harm judge ran. Agreement: Cohen's κ of refusal vs not between the task's judge and its second judge on the answers both read.</p>
<table><tr><th class="l">task</th><th>degenerate</th><th>partial refusals</th><th>fluency (mean)</th><th>log-prob under the base (mean per token)</th><th>graded harm (mean, unvalidated)</th><th>κ with the second judge (95% CI)</th><th class="l">second judge</th></tr>
{% for name, t in judged %}{% set j = t.judged %}{% set ag = j.agreement or {} %}<tr><td class="l">{{ name }}</td><td>{{ pct(j.degenerate) }}</td>
<td>{{ pct((j.by_strength|map(attribute="shares.partial_refusal")|sum) / (j.by_strength|length)) }}</td>
<td>{{ fmt((j.by_strength|map(attribute="fluency")|select("number")|sum) / (j.by_strength|length)) }}</td>
{% set lp = j.by_strength|map(attribute="base_logprob")|select("number")|list %}<td>{% if lp %}{{ fmt((lp|sum) / (lp|length)) }}{% else %}—{% endif %}</td>
{% set hm = j.by_strength|map(attribute="harm")|select("number")|list %}<td>{% if hm %}{{ fmt((hm|sum) / (hm|length)) }}{% else %}—{% endif %}</td>
<td>{% if ag.kappa is not none and ag.kappa is defined %}{{ fmt(ag.kappa) }} [{{ fmt(ag.kappa_ci95[0]) }}, {{ fmt(ag.kappa_ci95[1]) }}] (n = {{ ag.n }}){% else %}—{% endif %}</td>
<td class="l">{{ ag.second_judge or "—" }}</td></tr>
{% endfor %}</table>{% endif %}

{% if s.rate_check %}{% set rc = s.rate_check %}
<h2>The helpful and harmless rates: log-probabilities against judged answers</h2>
<p>On {{ rc.n_safe }} safe and {{ rc.n_unsafe }} unsafe prompts of the shared pool, at every strength ({{ rc.n_pairs }} pairs), the
log-probability rule (answered when P(answer) > P(refuse)) agrees with greedy answers read by the judge on
{{ "%.0f"|format(100 * rc.agreement) }}% of them, Cohen's κ = {{ fmt(rc.kappa) }} [{{ fmt(rc.kappa_ci95[0]) }}, {{ fmt(rc.kappa_ci95[1]) }}].</p>
<table><tr><th>r</th><th>safe answered: logprob</th><th>judged</th><th>unsafe refused: logprob</th><th>judged</th></tr>
{% for b in rc.by_strength %}<tr><td>{{ fmt(b.strength, 2) }}</td><td>{{ fmt(b.safe.logprob) }}</td><td>{{ fmt(b.safe.judged) }}</td>
<td>{{ fmt(b.unsafe.logprob) }}</td><td>{{ fmt(b.unsafe.judged) }}</td></tr>{% endfor %}</table>{% endif %}

{% if s.prompting %}{% set pr = s.prompting %}
<h2>The aligning-prompt baseline</h2>
<p>A safety system prompt and in-context refusal demonstrations on an ordered ladder, scored on the same items; the
first rung adds no text (the base: the sweep's r = 0 rows). The safety text goes into {{ pr.placement }}{% if pr.default_system %}
("{{ pr.default_system }}" is kept){% endif %}. Change from the base with paired 95% CIs.</p>
<table><tr><th class="l">rung</th>{% for name in pr.rungs[0].tasks %}<th>{{ name }}</th>{% endfor %}</tr>
{% for g in pr.rungs %}<tr><td class="l">{{ g.label }}</td>{% for name in pr.rungs[0].tasks %}{% set v = g.tasks.get(name) %}
<td>{% if v %}{{ fmt(v.delta) }} [{{ fmt((v.delta_ci95 or [None, None])[0]) }}, {{ fmt((v.delta_ci95 or [None, None])[1]) }}]{% else %}—{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}

{% if s.conditional %}{% set c = s.conditional %}
<h2>Conditional steering</h2>
<p>The vector is added only where the condition fires: cosine similarity of the request's {{ "mean token state" if c.condition.read != "last" else "last-token state" }}{{ " (in the chat template)" if c.condition.chat else "" }} at layer
<b>{{ c.condition.layer }}</b> with the condition direction {{ c.condition.comparator }} <b>{{ fmt(c.condition.threshold) }}</b>
(objective {{ c.condition.validation.objective }}; fitted on {{ c.condition.validation.sources.positive }} vs {{ c.condition.validation.sources.negative }} prompts,
none of them a study item). Rows where it does not fire are scored at strength exactly 0. The figures above show both runs.</p>
<h3>Does the condition separate harmful from benign requests? (study items)</h3>
<table><tr><th class="l">task</th><th>items</th><th>fired</th><th>TP</th><th>FN</th><th>FP</th><th>TN</th><th>balanced acc. (one class: its rate right)</th></tr>
{% for name, t in c.confusion.tasks.items() %}<tr><td class="l">{{ name }}</td><td>{{ t.n }}</td><td>{{ pct(t.fired_rate) }}</td>
{% if t.confusion %}<td>{{ t.confusion.tp }}</td><td>{{ t.confusion.fn }}</td><td>{{ t.confusion.fp }}</td><td>{{ t.confusion.tn }}</td><td>{{ fmt(t.confusion.balanced_accuracy) }}</td>{% else %}<td colspan="5" class="note">harmful or not: does not apply</td>{% endif %}</tr>
{% endfor %}{% if c.confusion.overall %}{% set o = c.confusion.overall %}<tr><th class="l">all labelled items</th><td>{{ o.tp + o.fn + o.fp + o.tn }}</td><td></td><td>{{ o.tp }}</td><td>{{ o.fn }}</td><td>{{ o.fp }}</td><td>{{ o.tn }}</td><td>{{ fmt(o.balanced_accuracy) }}</td></tr>{% endif %}</table>
<details><summary>validation accuracy per candidate layer (fitting prompts' held-out half)</summary>
<table><tr><th>layer</th><th>balanced acc.</th><th>F1</th><th>FPR</th><th>threshold</th></tr>
{% for l, v in c.condition.validation.per_layer.items() %}<tr><td>{{ l }}{% if l|int == c.condition.layer %} ✔{% endif %}</td><td>{{ fmt(v.balanced_accuracy) }}</td><td>{{ fmt(v.f1) }}</td><td>{{ fmt(v.fpr) }}</td><td>{{ fmt(v.threshold) }}</td></tr>{% endfor %}
</table></details>
{% if c.r_compare is none %}<h3>Conditional vs unconditional</h3>
<p>Not compared: {{ c.r_compare_note or "neither run has an r*" }}.</p>
{% else %}<h3>Conditional vs unconditional at r = {{ fmt(c.r_compare, 2) }}{% if c.efficient_strength.ok %} (the conditional run's r*){% endif %}</h3>
<table><tr><th class="l">task</th><th class="l">axis</th><th class="l">items</th><th>r = 0</th><th>Δ unconditional (95% CI)</th><th>Δ conditional (95% CI)</th><th>conditional / unconditional (95% CI)</th></tr>
{% for name, v in c.versus_unconditional.items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ v.axis }}</td><td class="l">{{ items_label(v) }}</td><td>{{ fmt(v.base) }}</td>
<td>{{ fmt(v.unconditional.delta) }} [{{ fmt((v.unconditional.delta_ci95 or [None, None])[0]) }}, {{ fmt((v.unconditional.delta_ci95 or [None, None])[1]) }}]</td>
<td>{{ fmt(v.conditional.delta) }} [{{ fmt((v.conditional.delta_ci95 or [None, None])[0]) }}, {{ fmt((v.conditional.delta_ci95 or [None, None])[1]) }}]</td>
<td>{% if v.ratio is none %}<span class="note">{{ v.ratio_reason or "—" }}</span>{% else %}{{ fmt(v.ratio, 2) }} [{{ fmt((v.ratio_ci95 or [None, None])[0], 2) }}, {{ fmt((v.ratio_ci95 or [None, None])[1], 2) }}]{% endif %}</td></tr>
{% endfor %}</table>
<p class="note">Changes are paired per item against the unsteered model at the grid point nearest r; held-out items for the tasks r* was chosen on.
A ratio near 1 on alignment tasks keeps steering's gain; near 0 on helpfulness tasks removes its tax. Its 95% CI comes from
the same item resamples for both changes; the ratio is not given where the unconditional change's CI includes 0.</p>
{% endif %}{% endif %}

<h2>Do the paper's laws hold here?</h2>
<p class="note">Near r = 0 the paper predicts that alignment rises linearly (no second-order term h2) and helpfulness
falls quadratically (no first-order term h1). Each task's curve on the small-|r| window is fitted with
h0 + h1·r + h2·r² (95% CI from a bootstrap over items); a term vanishes if its CI contains 0 or it is under
{{ "%d"|format(100 * share) }}% of the other term at the window's edge; "can't tell" is an allowed answer.</p>
<table><tr><th class="l">task</th><th class="l">axis</th><th class="l">claim</th><th class="l">term (95% CI)</th><th class="l">holds?</th><th class="l">verdict</th></tr>
{% for name, t in s.tasks.items() if t.fit.paper_law_test %}{% set pt = t.fit.paper_law_test %}<tr><td class="l">{{ name }}</td><td class="l">{{ t.axis }}</td>
<td class="l">{{ "h1 = 0 (quadratic loss)" if pt.term == "h1" else "h2 = 0 (linear rise)" }}</td>
<td class="l">{{ pt.term }} = {{ fmt(pt.estimate, 4) }} [{{ fmt((pt.ci95 or [None, None])[0], 4) }}, {{ fmt((pt.ci95 or [None, None])[1], 4) }}] on |r| ≤ {{ fmt(pt.window[1], 2) }} ({{ pt.n_points }} strengths)</td>
<td class="l {{ verdict_class(pt.holds) }}">{{ verdict_word(pt.holds) }}</td><td class="l">{{ pt.verdict }}</td></tr>
{% endfor %}</table>

<h2>Fitted laws, chosen by evidence</h2>
<p class="note">Every candidate law is fitted to each task's item-mean curve; the one with the lowest AICc is selected,
preferring the one with fewer parameters when several lie within ΔAICc &lt; 2. The selected laws draw the curves and
choose r*. "Paper's law" gives the paper's own law's ΔAICc to the selected one, and its ΔAIC on the GLS likelihood of
the item-mean curve (χ² under the curve's covariance across strengths, estimated from the items they share, + 2k):
AICc counts the strengths as independent points, though they share their items; the GLS figure counts that (it is
not computed where a strength is saturated).</p>
<table><tr><th class="l">task</th><th class="l">selected law</th><th class="l">parameters (95% CI, bootstrap over items)</th><th>R²</th><th class="l">paper's law</th><th class="l">why</th></tr>
{% for name, t in s.tasks.items() %}<tr><td class="l">{{ name }}</td>
<td class="l">{{ t.fit.law or "—" }}{% if t.fit.law == "constant" %} (<b>does not move</b>){% endif %}<br><span class="note">{{ t.fit.formula or "" }}</span></td><td class="l">{{ params(t.fit) }}</td><td>{{ fmt(t.fit.r2) }}</td>
<td class="l">{{ paper(t.fit) }}</td><td class="l note">{{ (t.fit.selection or {}).reason or t.fit.note or "—" }}</td></tr>
{% endfor %}</table>
<details><summary>every candidate law (AIC, AICc, R²; χ² and AIC on the GLS likelihood)</summary>
<table><tr><th class="l">task</th><th class="l">law</th><th>k</th><th>AIC</th><th>AICc</th><th>ΔAICc</th><th>R²</th><th>χ² (GLS)</th><th>ΔAIC (GLS)</th><th class="l">parameters</th></tr>
{% for name, t in s.tasks.items() %}{% for ln, c in (t.fit.candidates or {}).items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ ln }}{% if ln == t.fit.law %} ✔{% endif %}</td>
<td>{{ c.k or "—" }}</td><td>{{ fmt(c.aic, 1) }}</td><td>{{ fmt(c.aicc, 1) }}</td><td>{{ fmt(c.delta_aicc, 1) }}</td><td>{{ fmt(c.r2) }}</td><td>{{ fmt(c.chi2, 1) }}</td><td>{{ fmt(c.delta_gls_aic, 1) }}</td><td class="l">{{ params(c) }}</td></tr>
{% endfor %}{% endfor %}</table></details>

{% if s.alignment_tax is none %}<h2>Alignment tax</h2>
<p><b>{{ eff.reason or "r* not chosen" }}</b>: no alignment tax is reported (a tax at an arbitrary strength would look like a result).</p>
{% else %}<h2>Alignment tax at r* = {{ "%.2f"|format(r_star) }}</h2>
<table><tr><th class="l">benchmark</th><th class="l">axis</th><th class="l">metric</th><th class="l">items</th><th>base (r=0)</th><th>at r*</th><th>tax %</th></tr>
{% for row in s.alignment_tax %}<tr><td class="l">{{ row.task }}</td><td class="l">{{ row.axis }}</td><td class="l">{{ metric_label(row) }}</td><td class="l">{{ items_label(row) }}</td>
<td>{{ fmt(row.base) }}</td><td>{{ fmt(row.at_r_star) }}</td><td>{% if row.tax_percent is none and row.tax_note and row.axis == "helpfulness" %}<span class="note">— ({{ row.tax_note }})</span>{% else %}{{ fmt(row.tax_percent, 1) }}{% if row.tax_ci95 %} <span class="note">[{{ fmt(row.tax_ci95[0], 1) }}, {{ fmt(row.tax_ci95[1], 1) }}]</span>{% endif %}{% endif %}</td></tr>
{% if row.harmless_rate_unsafe %}<tr><td class="l">&nbsp;&nbsp;{{ harmless_label(row) }}</td><td></td><td></td><td></td><td>{{ fmt(row.harmless_rate_unsafe.base) }}</td><td>{{ fmt(row.harmless_rate_unsafe.at_r_star) }}</td><td></td></tr>{% endif %}
{% endfor %}</table>
<p class="note">tax % = (base − steered)/base·100; negative = improvement. Alignment rows show the gain. No % where the base is under
{{ floor }} (a percentage of a near-zero number is noise). r* was chosen on a validation split of {{ eff.alignment_task }} and
{{ eff.helpfulness_task }}: their rows use the held-out items only; the other benchmarks never entered the choice, so all their items are used.</p>
{% endif %}

<h2>Theory</h2>
{% if s.theory %}
<table><tr><th class="l">constant</th><th>value</th><th class="l">meaning</th></tr>
<tr><td class="l">c</td><td>{{ fmt(s.theory.c) }}</td><td class="l">slope of ‖logits(r) − logits(0)‖ (r&gt;0: {{ fmt(s.theory.c_pos) }}, r&lt;0: {{ fmt(s.theory.c_neg) }})</td></tr>
<tr><td class="l">m = cΔ</td><td>{{ fmt(s.theory.m) }}</td><td class="l">margin slope of the aligned-minus-misaligned logit gap (Δ = {{ fmt(s.theory.delta) }})</td></tr>
<tr><td class="l">σ</td><td>{{ fmt(s.theory.sigma) }}</td><td class="l">std of Δlogit<sub>i</sub> − Δlogit<sub>correct</sub> over top-{{ s.theory.top_k }} alternatives, per unit r</td></tr>
<tr><td class="l">B0, p0</td><td>{{ fmt(s.theory.B0) }}, {{ fmt(s.theory.p0) }}</td><td class="l">unsteered alignment and helpfulness</td></tr>
{% if s.theory.fit_route %}<tr><td class="l">m (fit route)</td><td>{{ fmt(s.theory.fit_route.m_from_fit) }}</td><td class="l">2·a of the fitted tanh, vs {{ fmt(s.theory.m) }} from logits</td></tr>{% endif %}
</table>
<table><tr><th class="l">assumption</th><th class="l">test and threshold</th><th class="l">holds here?</th><th class="l">evidence</th></tr>
{% for k, c in s.theory.checks.items() %}<tr><td class="l">{{ k }}</td><td class="l note">{{ c.test or "—" }}</td><td class="l {{ 'ok' if c.holds else 'no' }}">{{ "yes" if c.holds else "no" }}</td><td class="l">{{ c.detail }}</td></tr>{% endfor %}
</table>
{% if s.theory.bounds %}<p>Do the measured curves respect the predicted bounds (the paper's direction of each inequality)?</p>
<table><tr><th class="l">task</th><th class="l">bound</th><th class="l">respected?</th><th class="l">verdict</th></tr>
{% for name, b in s.theory.bounds.items() %}<tr><td class="l">{{ name }}</td><td class="l">{{ b.bound }}{% if b.note %}<br><span class="note">{{ b.note }}</span>{% endif %}</td>
<td class="l {{ verdict_class(b.holds) }}">{{ verdict_word(b.holds) }}</td><td class="l">{{ b.verdict }}</td></tr>{% endfor %}
</table><p class="note">{{ (s.theory.bounds.values()|first).rule }}; constants m and σ come from the study's alignment and helpfulness prompts, B0 and p0 from each task at r = 0.</p>{% endif %}
<img src="data:image/png;base64,{{ figs.theory }}" alt="theory checks">
{% else %}<p>Theory was not computed (theory.enabled = false).</p>{% endif %}

<h2>Configuration</h2>
<pre>{{ config_yaml }}</pre>
<p class="note">Per-item rows: results.sqlite / results.parquet. Machine-readable summary: summary.json. steertax {{ version }}.</p>
</body></html>
"""  # noqa: E501


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or type(x).__name__.endswith("Undefined"):  # jinja2's Undefined: a key the summary does not have
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


def _verdict_word(holds: Any) -> str:
    return "can't tell" if holds is None else ("yes" if holds else "no")


def _verdict_class(holds: Any) -> str:
    return "" if holds is None else ("ok" if holds else "no")


def _paper(fit: dict[str, Any]) -> str:
    sel = (fit or {}).get("selection") or {}
    name = sel.get("paper_law")
    if not name:
        return "—"
    if name == fit.get("law"):
        return f"{name}: selected"
    word = "as good (within 2)" if sel.get("paper_law_consistent") else "worse"
    return f"{name}: {paper_gap(sel)}; {word} by AICc"


def _curve(fit: dict[str, Any], r: np.ndarray) -> np.ndarray | None:

    f = law_function(fit)
    return None if f is None else f(r)


def _fn(fit: dict[str, Any]) -> Any:

    return law_function(fit)


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def make_figures(s: dict[str, Any]) -> dict[str, bytes]:
    """Every figure of the report as PNG bytes, by name (drift and theory only when the study has them)."""
    import matplotlib

    matplotlib.use("Agg")

    grid = np.asarray(s["strengths"], dtype=float)
    rr = np.linspace(grid.min(), grid.max(), 300)
    eff = s.get("efficient_strength") or {}
    th = s.get("theory") or {}
    figs: dict[str, bytes] = {}
    figs["alignment"] = _axis_figure(s, "alignment", rr, eff, th)
    figs["helpfulness"] = _axis_figure(s, "helpfulness", rr, eff, th)
    drift = [n for n, t in s["tasks"].items() if t["metric"] == "kl"]
    if drift:
        figs["drift"] = _drift_figure(s["tasks"][drift[0]])
    figs["tradeoff"] = _tradeoff_figure(s, rr, eff)
    if th:
        figs["theory"] = _theory_figure(th)
    return figs


def _axis_figure(
    s: dict[str, Any], axis: str, rr: np.ndarray, eff: dict[str, Any], th: dict[str, Any], exclude_drift: bool = True
) -> bytes:
    """One axis (alignment or helpfulness) against strength: each task's measured points, its selected law,
    the paper's law when another was selected, the theory bound and r*."""
    import matplotlib.pyplot as plt

    names = [n for n, t in s["tasks"].items() if t["axis"] == axis and not (exclude_drift and t["metric"] in DRIFT_METRICS)]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, n in enumerate(names):  # measured points with 95% CIs first, on top
        t = s["tasks"][n]
        bs = t["by_strength"]
        ax.errorbar(
            [b["strength"] for b in bs],
            [b["mean"] for b in bs],
            yerr=[1.96 * (b["stderr"] or 0) for b in bs],
            fmt="o",
            color=colors[k % len(colors)],
            ms=4.5,
            capsize=2.5,
            zorder=3,
            label=f"{n} ({t['metric']}), measured",
        )
    cond = (s.get("conditional") or {}).get("tasks") or {}
    for k, n in enumerate(names):  # a conditional study: the conditional run's points, hollow, joined
        if n in cond:
            bs = cond[n]["by_strength"]
            ax.errorbar(
                [b["strength"] for b in bs],
                [b["mean"] for b in bs],
                yerr=[1.96 * (b["stderr"] or 0) for b in bs],
                fmt="s--",
                mfc="white",
                color=colors[k % len(colors)],
                ms=5,
                lw=0.9,
                capsize=2.5,
                zorder=3,
                label=f"{n}, conditional steering, measured",
            )
    for k, n in enumerate(names):  # then the selected law (solid) and the paper's law if not selected (dotted)
        _plot_laws(ax, s["tasks"][n]["fit"], rr, colors[k % len(colors)])
    _plot_theory_bound(ax, axis, rr, eff, th)
    if eff.get("ok"):
        ax.axvline(eff["r_star"], color="gray", ls="--", lw=0.8)
        ax.text(eff["r_star"], ax.get_ylim()[1], " r*", va="top", color="gray")
    ax.set_xlabel("steering strength r$_e$ (L2 norm added per layer; + = aligned)")
    ax.set_ylabel("behavior expectation B" if axis == "alignment" else "helpfulness")
    ax.set_title(f"{axis.capitalize()} vs strength: measured (mean ± 95% CI, all items), then fitted laws", fontsize=10)
    ax.grid(alpha=0.3)
    h, lab = ax.get_legend_handles_labels()
    order = sorted(range(len(lab)), key=lambda i: (0 if lab[i].endswith("measured") else 1, i))
    if cond:
        ax.set_title(f"{axis.capitalize()} vs strength: unconditional (●) and conditional (□) steering, measured; laws of ●", fontsize=9)
    ax.legend([h[i] for i in order], [lab[i] for i in order], fontsize=7, loc="best")
    return png(fig)


def _plot_laws(ax: Any, fit: dict[str, Any], rr: np.ndarray, color: str) -> None:
    """A task's selected law (solid) and, when another law was selected, the paper's law (dotted)."""
    yc = _curve(fit, rr)
    if yc is not None:
        ax.plot(rr, yc, "-", color=color, lw=1.2, alpha=0.75, zorder=2, label=f"  selected law: {fit['law']}")
    sel = fit.get("selection") or {}
    pn = sel.get("paper_law")
    if pn and pn != fit.get("law"):
        yp = _curve((fit.get("candidates") or {}).get(pn) or {}, rr)
        if yp is not None:
            ax.plot(
                rr,
                yp,
                ":",
                color=color,
                lw=1.2,
                alpha=0.75,
                zorder=2,
                label=f"  paper's law {pn} (ΔAICc {sel.get('paper_law_delta_aicc', float('nan')):.1f})",
            )


def _plot_theory_bound(ax: Any, axis: str, rr: np.ndarray, eff: dict[str, Any], th: dict[str, Any]) -> None:
    """The theory's predicted bound for ``axis``, when its constants were measured."""

    if axis == "alignment" and th.get("m") is not None and th.get("B0") is not None:
        ax.plot(
            rr,
            predicted_alignment(rr, th["m"], th["B0"]),
            "k--",
            lw=0.9,
            zorder=1,
            label=f"theory bound tanh(½mr + artanh B0) ({eff.get('alignment_task') or 'alignment task'})",
        )
    if axis == "helpfulness" and th.get("sigma") is not None and th.get("p0"):
        ax.plot(
            rr,
            predicted_helpfulness(rr, th["p0"], th["sigma"]),
            "k--",
            lw=0.9,
            zorder=1,
            label=f"theory bound 1/(1+a+aσ²r²/2) ({eff.get('helpfulness_task') or 'helpfulness task'})",
        )


def _drift_figure(t: dict[str, Any]) -> bytes:
    """KL drift on neutral text against strength."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    bs = t["by_strength"]
    ax.errorbar(
        [b["strength"] for b in bs], [b["mean"] for b in bs], yerr=[1.96 * (b["stderr"] or 0) for b in bs], fmt="o-", ms=4, capsize=2
    )
    ax.set_xlabel("steering strength r$_e$")
    ax.set_ylabel("KL(steered ‖ unsteered), nats/token")
    ax.set_title("Drift on neutral text")
    ax.grid(alpha=0.3)
    return png(fig)


def _pareto(dB: np.ndarray, dH: np.ndarray) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on one)."""
    n = len(dB)
    return [i for i in range(n) if not any((dB[j] >= dB[i] and dH[j] >= dH[i]) and (dB[j] > dB[i] or dH[j] > dH[i]) for j in range(n))]


def _tradeoff_figure(s: dict[str, Any], rr: np.ndarray, eff: dict[str, Any]) -> bytes:
    """Tradeoff frontier: measured points and the selected laws, both on all items; r* was chosen on the
    validation split and its held-out measurement is drawn separately."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 5.2))
    at, ht = eff.get("alignment_task"), eff.get("helpfulness_task")
    if at in s["tasks"] and ht in s["tasks"]:
        A = {b["strength"]: b for b in s["tasks"][at]["by_strength"]}
        H = {b["strength"]: b for b in s["tasks"][ht]["by_strength"]}
        rs = sorted(set(A) & set(H))
        a0, h0 = A.get(0.0, A[rs[0]])["mean"], H.get(0.0, H[rs[0]])["mean"]
        dB = np.asarray([A[r]["mean"] - a0 for r in rs])
        dH = np.asarray([H[r]["mean"] - h0 for r in rs])
        eB = np.asarray([1.96 * (A[r].get("delta_stderr") or 0) for r in rs])  # paired: the change's own CI
        eH = np.asarray([1.96 * (H[r].get("delta_stderr") or 0) for r in rs])
        pareto = _pareto(dB, dH)
        ax.errorbar(dB, dH, xerr=eB, yerr=eH, fmt="none", ecolor="#999", elinewidth=0.8, capsize=2, zorder=2)
        sc = ax.scatter(dB, dH, c=rs, cmap="viridis", zorder=3, s=34, label="measured, all items (± 95% CI of the paired change)")
        fig.colorbar(sc, ax=ax, label="r$_e$")
        ax.scatter(dB[pareto], dH[pareto], facecolors="none", edgecolors="red", s=95, zorder=4, label="Pareto points")
        for r, x, y in zip(rs, dB, dH, strict=True):
            ax.annotate(f"{r:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fB, fH = _fn(s["tasks"][at]["fit"]), _fn(s["tasks"][ht]["fit"])
        if fB is not None and fH is not None:
            ax.plot(
                fB(rr) - fB(np.zeros(1))[0],
                fH(rr) - fH(np.zeros(1))[0],
                "-",
                color="#c33",
                lw=1,
                alpha=0.7,
                zorder=1,
                label=f"selected laws, all items ({s['tasks'][at]['fit']['law']} × {s['tasks'][ht]['fit']['law']})",
            )
        _plot_conditional_frontier(ax, s, at, ht)
        _plot_heldout_r_star(ax, eff)
        ax.set_xlabel(f"ΔB ({at})")
        ax.set_ylabel(f"ΔH ({ht})")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.legend(fontsize=7)
    ax.set_title("Tradeoff frontier: alignment gained vs helpfulness lost", fontsize=10)
    ax.grid(alpha=0.3)
    return png(fig)


def _plot_conditional_frontier(ax: Any, s: dict[str, Any], at: Any, ht: Any) -> None:
    """A conditional study's frontier beside the unconditional one: its measured (ΔB, ΔH) per strength."""
    ct = (s.get("conditional") or {}).get("tasks") or {}
    if at not in ct or ht not in ct:
        return
    A = {b["strength"]: b for b in ct[at]["by_strength"]}
    H = {b["strength"]: b for b in ct[ht]["by_strength"]}
    rs = sorted(set(A) & set(H))
    if 0.0 not in rs:
        return
    dB = [A[r]["mean"] - A[0.0]["mean"] for r in rs]
    dH = [H[r]["mean"] - H[0.0]["mean"] for r in rs]
    eB = [1.96 * (A[r].get("delta_stderr") or 0) for r in rs]
    eH = [1.96 * (H[r].get("delta_stderr") or 0) for r in rs]
    ax.errorbar(dB, dH, xerr=eB, yerr=eH, fmt="s--", mfc="white", color="#d95f02", lw=0.9, ms=5, capsize=2, zorder=3,
                label="conditional steering, measured (± 95% CI)")  # fmt: skip
    for r, x, y in zip(rs, dB, dH, strict=True):
        ax.annotate(f"{r:g}", (x, y), fontsize=7, color="#d95f02", xytext=(3, -9), textcoords="offset points")


def _plot_heldout_r_star(ax: Any, eff: dict[str, Any]) -> None:
    """r*'s held-out measurement (ΔB, ΔH), when the efficient strength was found."""
    if not eff.get("ok"):
        return
    ho = eff.get("heldout") or {}
    if ho.get("dB") is not None and ho.get("dH") is not None:
        ax.plot(
            [ho["dB"]],
            [ho["dH"]],
            "r*",
            ms=14,
            zorder=5,
            label=f"r* = {eff['r_star']:.2f}: held-out items ({eff.get('n_test_items')}), measured",
        )


def _theory_figure(th: dict[str, Any]) -> bytes:
    """The theory's assumption checks: logit-change norm (A-norm) and margin gap (A-margin) against strength."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    g = np.asarray(th["grid"])
    a1.plot(g, th["logit_change_norm"], "o", ms=4.5, zorder=3, label="measured")
    a1.plot(g[g >= 0], th["c_pos"] * g[g >= 0], "k--", lw=1, label=f"c+ = {th['c_pos']:.3g}")
    a1.plot(g[g <= 0], -th["c_neg"] * g[g <= 0], "k:", lw=1, label=f"c− = {th['c_neg']:.3g}")
    a1.set_xlabel("r$_e$")
    a1.set_ylabel("‖logits(r) − logits(0)‖")
    ck = th.get("checks") or {}
    word = {True: "holds", False: "does not hold"}
    a1.set_title(f"A-norm (|Δlogits| ∝ |r|): {word[bool(ck.get('A-norm', {}).get('holds'))]}", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a2.plot(g, th["margin_curve"], "o", ms=4.5, zorder=3, label="measured")
    a2.plot(g, th["m"] * g, "k--", lw=1, label=f"m = {th['m']:.3g}")
    a2.set_xlabel("r$_e$")
    a2.set_ylabel("Δ(aligned − misaligned) first-token logit gap")
    a2.set_title(f"A-margin (gap grows ∝ r): {word[bool(ck.get('A-margin', {}).get('holds'))]}", fontsize=10)
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    return png(fig)


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.0f}%"


def _truncated_by_strength(t: dict[str, Any]) -> dict[float, Any]:
    return {float(b["strength"]): b.get("truncated") for b in t.get("by_strength", [])}


def _items_label(row: dict[str, Any]) -> str:
    """Which items a tax or comparison row was measured on (rows from before the label: not said)."""
    items = row.get("items")
    if items == "held-out":
        return f"held-out items ({row['n']})" if row.get("n") is not None else "held-out items"
    if items == "all":
        return f"all items ({row['n']})" if row.get("n") is not None else "all items"
    return "—"


def _metric_label(row: dict[str, Any]) -> str:
    """A tax row's metric; the helpful rate on safe prompts (the row of a task with the
    :data:`~steertax.tasks.traits.SAFE_PROMPT_RATE` trait: :func:`~steertax.analysis.tax.tax_table` gave it
    ``helpful_rate_safe``) named by how it was scored (one name per metric)."""
    if row.get("helpful_rate_safe") is not None:
        return SAFE_ANSWERED.get(row.get("scorer") or "", str(row.get("metric")))
    return str(row.get("metric"))


def _harmless_label(row: dict[str, Any]) -> str:
    return UNSAFE_REFUSED.get(row.get("scorer") or "", "harmless rate on unsafe prompts")


def write_report(out: Path, summary: dict[str, Any], resolved: dict[str, Any]) -> Path:
    figs = make_figures(summary)
    fdir = out / "figures"
    fdir.mkdir(exist_ok=True)
    for name, png in figs.items():
        atomic_write_bytes(fdir / f"{name}.png", png)
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.ChainableUndefined)
    tpl = env.from_string(TEMPLATE)
    eff = summary.get("efficient_strength") or {}
    page = tpl.render(
        s=summary,
        eff=eff,
        r_star=eff.get("r_star", 0.0) if eff.get("ok") else 0.0,
        figs={k: base64.b64encode(v).decode() for k, v in figs.items()},
        fmt=_fmt,
        params=_params,
        version=__version__,
        paper=_paper,
        verdict_word=_verdict_word,
        verdict_class=_verdict_class,
        pct=_pct,
        dict_by_strength=_truncated_by_strength,
        items_label=_items_label,
        metric_label=_metric_label,
        harmless_label=_harmless_label,
        floor=TAX_BASE_FLOOR,
        share=NEGLIGIBLE_SHARE,
        config_yaml=yaml.safe_dump(resolved.get("config", {}), sort_keys=False),
    )
    checkpoint("report")  # test-only fault injection (steertax._faults)
    path = out / "report.html"
    atomic_write_text(path, page)
    return path

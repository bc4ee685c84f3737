"""``report.html`` of ``steertax compare``: the decision as one self-contained page (figures embedded), like the
study's report: per-axis frontiers with the matched levels, the summary verdict per pair, the decision table, the
efficient point of each method per weight with the capability tax beside it, the capability tax of every setting,
the paper's laws along each knob, and links to each input folder's own report."""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path
from typing import Any

import jinja2

from steertax._util import atomic_write_text
from steertax._version import __version__
from steertax.reports.frontier import axis_figure

__all__ = ["write_decision_report"]

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>steertax decision: {{ res.model }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.decided { background: #e6f4ea; } .open { color: #666; } .trade { background: #fff4e0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0 1em; }
.note { color: #555; font-size: 0.9em; }
code { background: #f6f6f6; padding: 0 3px; }
</style></head><body>
<h1>Which way of aligning {{ res.model }} costs least</h1>
<p>Alignment bought: <b>ΔB = change of {{ res.alignment }}</b> ({{ res["items"][res.alignment].n_common }} items).
Helpfulness paid, on every axis the folders share:
{% for t in axes %}<b>{{ axis_name(t) }}</b> ({{ res["items"][t].n_common }} items){{ ", " if not loop.last }}{% endfor %}.
Every method is scored on the same items against one base
({{ "scored here, --evaluate" if res.evaluated else "the folders' own rows; their base rows agree" }}).
<b>Every interval is a 95% interval</b> ({{ d.n_boot }} bootstrap replicates over items, one resample of every task for every method);
verdicts: bootstrap-t p-values, {{ adjust }} over the {{ d.n_tests }} comparisons formed (axes × pairs × levels), at α = {{ d.alpha }}.</p>
<p class="note">Folders: {% for f in folders %}<a href="{{ f.href }}">{{ f.name }}</a>{{ ", " if not loop.last }}{% endfor %}
(each method's own report). steertax {{ version }}.</p>

<h2>Summary: each pair over every axis</h2>
<p class="note">A pair is cheaper on an axis when a comparison there (at any matched level) is decided under the table's
multiplicity control. "Cheaper on no axis" means none decided it: an open axis is open, not a tie.</p>
<table><tr><th>A</th><th>B</th><th>verdict</th><th>open on</th></tr>
{% for p in res.pairs %}<tr class="{{ 'trade' if p.verdict.startswith('trade') else ('decided' if 'cheaper' in p.verdict else 'open') }}">
<td>{{ p.a }}</td><td>{{ p.b }}</td><td>{{ p.verdict }}</td><td>{{ p.open|join(", ") or "—" }}</td></tr>{% endfor %}
</table>

<h2>Frontiers, one per axis</h2>
<p class="note">ΔH against ΔB per setting (bars: 95% CIs); dashed lines: the matched ΔB levels the decisions are made at;
★: each method's efficient point at w = {{ res.helpfulness_weight }}.</p>
{% for t in axes %}<img src="data:image/png;base64,{{ figs[t] }}" alt="frontier on {{ t }}">{% endfor %}

<h2>Efficient points by weight</h2>
<p>U = w·{{ res.helpfulness }} + (1 − w)·{{ res.alignment }} (changes from the base; with rates on both axes the seed's
U = w·helpful + (1 − w)·harmless), chosen on half of the items and measured on the other half{% if res.max_tax is not none %};
settings with a capability tax above {{ res.max_tax }}% on the validation items are not candidates{% endif %}.
The capability tax (base − aligned)/base × 100 of the chosen point, held out.</p>
<table><tr><th>method</th><th>w</th><th>chosen</th><th>U held-out (95% CI)</th><th>ΔB held-out</th><th>ΔH held-out</th>
{% for c in caps %}<th>tax {{ c }} % (95% CI)</th>{% endfor %}<th>chosen in</th></tr>
{% for m in res.methods %}{% for w, e in (m.efficient_by_w or {}).items() %}<tr>
<td>{{ m.kind }}</td><td>{{ w }}</td>
{% if e.setting is none %}<td colspan="{{ 5 + caps|length }}">— {{ e.reason }}</td>{% else %}
<td>{{ e.setting }}</td><td>{{ ci(e.held_out.U) }}</td><td>{{ ci(e.held_out.dB) }}</td><td>{{ ci(e.held_out.dH) }}</td>
{% for c in caps %}<td>{{ ci(e.tax[c], 1) if e.tax and c in e.tax else "—" }}</td>{% endfor %}
<td>{{ "%.0f"|format(100 * e.choice_share.get(e.setting, 0)) }}% of resamples</td>{% endif %}</tr>{% endfor %}{% endfor %}
</table>

{% if caps %}<h2>Capability tax of every setting</h2>
<p class="note">(base − aligned)/base × 100 on all common items (95% CI from the ΔH interval); negative: the setting gained.</p>
<table><tr><th>method</th><th>setting</th><th>ΔB</th>{% for c in caps %}<th>tax {{ c }} %</th>{% endfor %}</tr>
{% for r in res.table %}<tr><td>{{ r.method }}</td><td>{{ r.setting }}</td><td>{{ ci({"estimate": r.dB, "ci95": r.dB_ci95}) }}</td>
{% for c in caps %}<td>{{ tax(r, c) }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}

<h2>Decisions</h2>
<p class="note">ΔH_A − ΔH_B at the same ΔB (positive: A keeps more helpfulness). Open comparisons: the items per task that
give 80% power across the difference's interval, and the predictive probability of deciding with 2× the items.</p>
<table><tr><th>A</th><th>B</th><th>axis</th><th>at ΔB</th><th>ΔH_A − ΔH_B (95% CI)</th><th>adjusted p</th><th>verdict</th>
<th>to decide</th></tr>
{% for c in ok %}<tr class="{{ 'decided' if c.decided else 'open' }}"><td>{{ c.a }}</td><td>{{ c.b }}</td>
<td>{{ c.axis or res.helpfulness }}</td>
<td>{{ level(c.level) }}</td><td>{{ ci({"estimate": c.diff, "ci95": c.ci95}) }}</td><td>{{ p(c.p_adjusted) }}</td><td>{{ c.verdict }}</td>
<td>{{ need(c) }}</td></tr>{% endfor %}
</table>
{% if not_formed %}<p class="note">Not formed ({{ not_formed|length }}, not counted in the adjustment):
{% for c in not_formed[:40] %}{{ c.a }} vs {{ c.b }} at {{ level(c.level) }} ({{ c.status }}){{ "; " if not loop.last }}{% endfor %}
{% if not_formed|length > 40 %} …{% endif %}</p>{% endif %}

{% if laws %}<h2>The paper's laws along each knob</h2>
<table><tr><th>method</th><th>law axis</th><th>task</th><th>selected law</th><th>paper's local law</th><th>verdict</th></tr>
{% for m, t, L in laws %}<tr><td>{{ m.kind }}</td><td>{{ m.laws.knob }}</td><td>{{ t }}</td><td>{{ L.law or "—" }}</td>
<td>{{ {true: "holds", false: "does not hold"}.get(L.holds, "can't tell") }}</td><td>{{ L.verdict }}</td></tr>{% endfor %}
</table>{% endif %}
</body></html>
"""


def _num(x: Any, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.{nd}f}"


def _ci(v: Any, nd: int = 3) -> str:
    if not v:
        return "—"
    c = v.get("ci95")
    return _num(v.get("estimate"), nd) + (f" [{c[0]:+.{nd}f}, {c[1]:+.{nd}f}]" if c and None not in c else "")


def _p(x: Any) -> str:
    return "—" if x is None or not math.isfinite(x) else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def _level(lv: Any) -> str:
    return lv if isinstance(lv, str) else f"{lv:g}"


def _need(c: dict[str, Any]) -> str:
    if c.get("decided"):
        return f"decided at look {c['look']}" if c.get("look") else "decided"
    plan = c.get("to_decide") or {}
    far, near = (plan.get("items_range") or {}).get("at_far_end") or {}, (plan.get("items_range") or {}).get("at_near_end") or {}
    parts = [f"{far.get(t) if far.get(t) is not None else '∞'}–{near.get(t) if near.get(t) is not None else '∞'} {t}" for t in far]
    pp = plan.get("predictive_probability") or {}
    if pp.get("x2") is not None:
        parts.append(f"P(decided) {pp['x2']:.2f} at 2×")
    return "; ".join(parts) or "—"


def _folder_link(out: Path, folder: str) -> dict[str, str]:
    """The input folder's own report (its report.html, else its table.md, else the folder), relative to ``out``."""
    f = Path(folder)
    target = next((f / n for n in ("report.html", "table.md") if (f / n).is_file()), f)
    return {"name": f.name, "href": os.path.relpath(target.resolve(), out.resolve())}


def write_decision_report(out: Path, res: dict[str, Any]) -> Path:
    """Write ``out/report.html`` for the comparison ``res`` (what :func:`steertax.runners.compare.compare` returns)."""
    axes = list(res.get("axes") or [res["helpfulness"]])
    figs = {t: base64.b64encode(axis_figure(res, t)).decode() for t in axes}
    base_mean = {t: (res["items"].get(t) or {}).get("base_mean") for t in axes}

    def tax(row: dict[str, Any], cap: str) -> str:
        b, d = base_mean.get(cap), (row.get("dH_axes") or {}).get(cap)
        if not b or d is None:
            return "—"
        lo_hi = d.get("ci95")
        est = -100 * d["delta"] / b
        return f"{est:+.1f}" + (f" [{-100 * lo_hi[1] / b:+.1f}, {-100 * lo_hi[0] / b:+.1f}]" if lo_hi else "")

    def axis_name(t: str) -> str:
        return f"{t} ({res['oriented'][t]})" if t in (res.get("oriented") or {}) else t

    d = res["decisions"]
    laws = [
        (m, t, m["laws"].get(t) or {})
        for m in res["methods"]
        if (m.get("laws") or {}).get("fitted")
        for t in (res["alignment"], res["helpfulness"])
    ]
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.ChainableUndefined)
    page = env.from_string(TEMPLATE).render(
        res=res,
        d=d,
        axes=axes,
        caps=res.get("capability") or [],
        figs=figs,
        folders=[_folder_link(out, f) for f in res.get("folders") or []],
        ok=[c for c in d["comparisons"] if c["status"] == "ok"],
        not_formed=[c for c in d["comparisons"] if c["status"] != "ok"],
        laws=laws,
        adjust={"maxt": "max-T (Westfall–Young)", "holm": "Holm", "bh": "Benjamini–Hochberg"}.get(d["adjust"], d["adjust"]),
        version=__version__,
        ci=_ci,
        p=_p,
        level=_level,
        need=_need,
        tax=tax,
        axis_name=axis_name,
    )
    path = out / "report.html"
    atomic_write_text(path, page)
    return path

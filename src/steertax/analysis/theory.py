"""The paper's constants estimated from logits, the predicted bounds, and assumption checks
(PAPER.md §3): c (logit-change norm per unit r), m = cΔ (margin slope of the aligned-minus-misaligned
logit gap), σ (spread of competing tokens' logit changes relative to the correct one, per unit r),
p0 and B0 (from the sweep at r = 0)."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy import stats

from steertax.interventions.steering.activations import forward, model_device, pad_batch
from steertax.interventions.steering.hooks import steer
from steertax.models import encode

__all__ = ["last_logits", "estimate_constants", "predicted_alignment", "predicted_helpfulness"]


def last_logits(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    strengths: Sequence[float] | np.ndarray,
    vector: Any,
    layers: Any = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Logits at each prompt's last token for every strength: [n_prompts, n_strengths, vocab] (float32)."""
    penc = [encode(tok, p) for p in prompts]
    rows = [(i, s) for i in range(len(prompts)) for s in range(len(strengths))]
    dev = model_device(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: np.ndarray | None = None
    for b0 in range(0, len(rows), batch_size):
        batch = rows[b0 : b0 + batch_size]
        ids, mask = pad_batch([penc[i] for i, _ in batch], pad, "left", dev)
        st = torch.as_tensor([float(strengths[s]) for _, s in batch])
        ctx = steer(model, vector, st, layers, force=True) if vector is not None else contextlib.nullcontext()
        with ctx, torch.inference_mode():
            lg = forward(model, ids, mask, use_cache=False).logits[:, -1].float().cpu().numpy()
        if out is None:
            out = np.zeros((len(prompts), len(strengths), lg.shape[-1]), dtype=np.float32)
        for k, (i, s) in enumerate(batch):
            out[i, s] = lg[k]
    assert out is not None
    return out


def _slope_through_origin(r: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(r) == 0 or float((r * r).sum()) == 0:
        return float("nan"), float("nan")
    k = float((r * y).sum() / (r * r).sum())
    ss_res = float(((y - k * r) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1e-12
    return k, 1 - ss_res / ss_tot


def _first_tokens(tok: Any, texts: Sequence[str]) -> list[int]:
    return sorted({tok(t, add_special_tokens=False)["input_ids"][0] for t in texts})


def estimate_constants(
    model: Any,
    tok: Any,
    vector: Any,
    *,
    align_prompts: Sequence[str],
    aligned_texts: Sequence[str],
    misaligned_texts: Sequence[str],
    help_prompts: Sequence[str],
    help_correct: Sequence[int],
    r_max: float,
    n_points: int = 7,
    top_k: int = 10,
    layers: Any = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Estimate c, m = cΔ, Δ and σ from logits on a symmetric grid |r| <= r_max (PAPER.md §3.5)."""
    rs = np.unique(np.concatenate([np.linspace(-r_max, r_max, n_points), [0.0]]))
    z = int(np.argmin(np.abs(rs)))
    # --- alignment prompts: c and the margin slope
    L = last_logits(model, tok, align_prompts, rs, vector, layers, batch_size)
    d = L - L[:, z : z + 1]
    norms = np.linalg.norm(d, axis=-1).mean(0)  # [S]
    pos, neg = rs > 0, rs < 0
    c_pos, r2_pos = _slope_through_origin(rs[pos], norms[pos])
    c_neg, r2_neg = _slope_through_origin(-rs[neg], norms[neg])
    a_ids, m_ids = _first_tokens(tok, aligned_texts), _first_tokens(tok, misaligned_texts)
    gap = d[:, :, a_ids].mean(-1) - d[:, :, m_ids].mean(-1)  # [n, S]
    y = gap.mean(0)
    init = rs[pos][: max(1, min(3, int(pos.sum())))]
    init_slope = float((init * y[pos][: len(init)]).sum() / (init * init).sum()) if len(init) else float("nan")
    chord = float(y[-1] / rs[-1]) if rs[-1] > 0 else float("nan")
    m = min(init_slope, chord)
    # --- helpfulness prompts: sigma from competing tokens relative to the correct one
    H = last_logits(model, tok, help_prompts, rs, vector, layers, batch_size)
    dh = H - H[:, z : z + 1]
    X_by_r = []
    for s in range(len(rs)):
        xs = []
        for i, corr in enumerate(help_correct):
            ranked = np.argsort(-H[i, z])[: top_k + 1]
            top = [t for t in ranked if t != corr][:top_k]
            xs.append(dh[i, s, top] - dh[i, s, corr])
        X_by_r.append(np.concatenate(xs))
    sig_r = np.asarray([float(np.std(X_by_r[s])) / abs(rs[s]) if rs[s] != 0 else np.nan for s in range(len(rs))])
    sigma = float(np.nanmedian(sig_r))
    big = int(np.argmax(np.abs(rs)))
    Xb = X_by_r[big]
    norm_p = float(stats.normaltest(Xb).pvalue) if len(Xb) >= 20 else float("nan")
    skew, kurt = float(stats.skew(Xb)), float(stats.kurtosis(Xb))
    cv = float(np.nanstd(sig_r) / np.nanmean(sig_r)) if np.isfinite(sig_r).any() else float("nan")
    c = float(np.nanmean([c_pos, c_neg]))
    m_pos, _ = _slope_through_origin(rs[pos], y[pos])
    m_neg, _ = _slope_through_origin(rs[neg], y[neg])
    _, m_r2 = _slope_through_origin(rs, y)
    checks = assumption_checks(
        c_pos=c_pos,
        c_neg=c_neg,
        r2_pos=r2_pos,
        r2_neg=r2_neg,
        m_pos=m_pos,
        m_neg=m_neg,
        m_r2=m_r2,
        m=float(m),
        norm_p=norm_p,
        skew=skew,
        kurt=kurt,
        cv=cv,
        r_max=float(r_max),
        r_big=float(rs[big]),
    )
    return {
        "c": c,
        "c_pos": c_pos,
        "c_neg": c_neg,
        "r2_pos": r2_pos,
        "r2_neg": r2_neg,
        "m": float(m),
        "m_pos": m_pos,
        "m_neg": m_neg,
        "m_r2": m_r2,
        "delta": float(m / c) if c else float("nan"),
        "sigma": sigma,
        "sigma_by_r": [None if not np.isfinite(x) else float(x) for x in sig_r],
        "grid": rs.tolist(),
        "logit_change_norm": norms.tolist(),
        "margin_curve": y.tolist(),
        "normality_p": norm_p,
        "skew": skew,
        "excess_kurtosis": kurt,
        "checks": checks,
        "n_align_prompts": len(align_prompts),
        "n_help_prompts": len(help_prompts),
        "top_k": top_k,
    }


#: thresholds of the assumption checks (each verdict follows from its test and threshold)
R2_LINEAR = 0.9  # a line through the origin explains >= 90% of the variance
SYMMETRY = 1.25  # one constant for both signs: slopes of the r > 0 and r < 0 sides within a factor 1.25
ALPHA_NORMAL = 0.05  # D'Agostino-Pearson normality test at alpha = 0.05
CV_SCALE = 0.25  # sigma(r)/|r| constant across r to within a coefficient of variation of 0.25


def _ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return float("inf")
    return max(a, b) / min(a, b)


def assumption_checks(
    *,
    c_pos: float,
    c_neg: float,
    r2_pos: float,
    r2_neg: float,
    m_pos: float,
    m_neg: float,
    m_r2: float,
    m: float,
    norm_p: float,
    skew: float,
    kurt: float,
    cv: float,
    r_max: float,
    r_big: float,
) -> dict[str, dict[str, Any]]:
    """The paper's assumptions as tests with stated thresholds; ``holds`` follows from them alone."""
    rc = _ratio(c_pos, c_neg)
    a_norm = bool(min(r2_pos, r2_neg) >= R2_LINEAR and rc <= SYMMETRY)
    rm = _ratio(m_pos, m_neg)
    a_margin = bool(m > 0 and m_pos > 0 and m_neg > 0 and m_r2 >= R2_LINEAR and rm <= SYMMETRY)
    gauss = bool(np.isfinite(norm_p) and norm_p >= ALPHA_NORMAL)
    scale = bool(np.isfinite(cv) and cv <= CV_SCALE)
    near = abs(skew) < 0.5 and abs(kurt) < 1.0
    return {
        "A-norm": {
            "holds": a_norm,
            "test": f"|Δlogits| linear in |r| on each side (R² ≥ {R2_LINEAR}) with one slope c for both signs "
            f"(c+/c− within a factor {SYMMETRY}), |r| ≤ {r_max:g}",
            "detail": f"R² = {r2_pos:.3f} (r>0), {r2_neg:.3f} (r<0); c+ = {c_pos:.3g}, c− = {c_neg:.3g} (ratio {rc:.2f})",
        },
        "A-margin": {
            "holds": a_margin,
            "test": f"the aligned-minus-misaligned logit gap grows linearly with r on both sides: positive slopes m+ and m−, "
            f"a line through 0 with R² ≥ {R2_LINEAR}, m+/m− within a factor {SYMMETRY}",
            "detail": f"m = {m:.4g} (min of initial and chord slope, r>0); m+ = {m_pos:.4g}, m− = {m_neg:.4g} "
            f"(ratio {rm:.2f}); line R² = {m_r2:.3f}",
        },
        "A-Gaussian": {
            "holds": bool(gauss and scale),
            "test": f"competing tokens' Δlogit − Δlogit(correct) normal (D'Agostino-Pearson p ≥ {ALPHA_NORMAL}) at "
            f"r = {r_big:g}, with spread ∝ |r| (CV of σ(r)/|r| ≤ {CV_SCALE})",
            "detail": f"normaltest p = {norm_p:.3g}, skew {skew:.2f}, excess kurtosis {kurt:.2f}; CV of σ(r)/|r| = {cv:.2f}"
            + (
                "; shape close to normal (|skew| < 0.5, |excess kurtosis| < 1) although the test rejects it" if (not gauss and near) else ""
            ),
        },
    }


def bound_check(
    strengths: Sequence[float] | np.ndarray, means: Sequence[float], stderrs: Sequence[float | None], bound: np.ndarray, kind: str
) -> dict[str, Any]:
    """Does the measured curve respect a predicted bound? ``kind``: "upper" (measured <= bound),
    "lower" (measured >= bound) or "alignment" (lower bound for r > 0, upper bound for r < 0, the
    directions A-margin gives). A point violates the bound when its whole 95% CI lies on the wrong side.

    A point without a standard error (None or NaN) is not given a zero-width CI: if its mean is on the
    right side it respects the bound whatever its CI; if its mean is on the wrong side it cannot be
    checked (``n_unchecked``), and unless another point violates the bound, ``holds`` is None with
    ``reason`` "no standard error"."""
    r = np.asarray(strengths, dtype=float)
    y = np.asarray(means, dtype=float)
    se = np.asarray([np.nan if s is None else float(s) for s in stderrs], dtype=float)
    known = np.isfinite(se)
    e = 1.96 * np.where(known, se, 0.0)
    b = np.asarray(bound, dtype=float)

    def wrong_side(half: np.ndarray) -> np.ndarray:  # > 0: the interval mean ± half lies wholly on the wrong side
        if kind == "upper":
            return (y - half) - b
        if kind == "lower":
            return b - (y + half)
        return np.where(r > 0, b - (y + half), np.where(r < 0, (y - half) - b, 0.0))

    excess = np.where(known, wrong_side(e), np.nan)
    unchecked = ~known & (wrong_side(np.zeros_like(y)) > 0)  # mean on the wrong side, no CI to tell
    viol = np.nan_to_num(excess, nan=-np.inf) > 0
    k = int(np.argmax(np.where(np.isfinite(excess), excess, -np.inf))) if len(r) else 0
    holds: bool | None = False if viol.any() else (None if unchecked.any() else True)
    out = {
        "direction": kind,
        "n_points": int(len(r)),
        "n_violations": int(viol.sum()),
        "n_unchecked": int(unchecked.sum()),
        "holds": holds,
        "max_violation": float(max(0.0, excess[k])) if len(r) and np.isfinite(excess[k]) else 0.0,
        "at_r": float(r[k]) if viol.any() else None,
        "rule": "a point violates the bound when its whole 95% CI lies on the wrong side",
    }
    if holds is None:
        out["reason"] = "no standard error"
        out["unchecked_at_r"] = [float(x) for x in r[unchecked]]
    return out


def predicted_alignment(r: np.ndarray, m: float, B0: float) -> np.ndarray:
    """B(r) >= tanh(½·m·r + artanh B0) (PAPER.md §3.2)."""
    B0 = float(np.clip(B0, -0.999999, 0.999999))
    return np.tanh(0.5 * m * r + math.atanh(B0))


def predicted_helpfulness(r: np.ndarray, p0: float, sigma: float) -> np.ndarray:
    """H(r) <= 1/(1 + a + a·σ²r²/2), a = (1 − p0)/p0 (PAPER.md §3.3)."""
    p0 = float(np.clip(p0, 1e-6, 1.0))
    a = (1 - p0) / p0
    return 1.0 / (1.0 + a + a * sigma * sigma * r * r / 2.0)

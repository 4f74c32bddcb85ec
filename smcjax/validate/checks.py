"""Statistical checks of sampler output against exact answers.

Each check returns a :class:`CheckResult` with the statistic, a p-value, a pass flag and a
readable explanation. Tolerances are Monte Carlo standard errors measured from the output
itself, never hand-tuned absolute numbers. Two sources of standard error:

* **independent runs** (``R`` seeds): the across-run standard deviation over ``√R``; the
  p-values use Student's t with ``R - 1`` degrees of freedom. This is the reliable choice for
  SMC, whose particles are correlated by resampling and MCMC moves;
* **one weighted sample**: ``√(v / ESS)`` with the Kish ``ESS = 1 / Σ W_i²``; exact for
  independent importance samples, optimistic when the particles are correlated.

Checks:

* :func:`evidence_ratio_check`: ``mean_r Ẑ_r / Z = 1`` *in linear space* across runs. ``Ẑ`` is
  unbiased for ``Z`` while ``log Ẑ`` is biased downward by about ``var(log Ẑ)/2``.
* :func:`mean_check_across_runs`: element-wise z-tests of across-run averages (posterior or
  filtering moments, probabilities). NaN exact values are skipped (unknown).
* :func:`weighted_moment_check`: weighted means and variances of one weighted sample, standard
  errors from the ESS (Inference Gym style).
* :func:`ks_check`: Kolmogorov-Smirnov distance of a weighted 1-d sample from an exact CDF,
  with ``ESS`` as the sample size.
* :func:`discrete_tv_check`: total-variation distance of estimated probabilities (mode
  masses, enumerated state probabilities) from exact ones, z-tests with multinomial standard
  errors ``√(p(1-p)/ESS)`` or across-run standard errors.
* :func:`marginal_tv_check`: a 1-d marginal binned at the exact quantiles, then
  :func:`discrete_tv_check` (every bin has exact probability ``1/B``).

Several compared values are combined by Bonferroni: ``p = min(1, k · p_min)``. A check passes
when ``p ≥ alpha`` (or, for the first three with ``alpha=None``, when every ``|z| < num_se``).

References: Inference Gym (Sountsov et al. 2020) for ESS-based moment tolerances; Kish (1965)
for the ESS; Stephens (1970) for the finite-n Kolmogorov correction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from smcjax.validate import _special

__all__ = [
    "CheckResult",
    "evidence_ratio_check",
    "mean_check_across_runs",
    "weighted_moment_check",
    "ks_check",
    "discrete_tv_check",
    "marginal_tv_check",
    "normalized_weights",
]


class CheckResult(NamedTuple):
    """Outcome of one statistical check.

    Attributes:
      name: what was checked.
      statistic: the test statistic: a z (or t) score, the largest |z| of several, or for
        :func:`ks_check` the Kolmogorov statistic ``√ESS · D``.
      p_value: its p-value (two-sided, Bonferroni-corrected where several values are compared).
      passed: whether the check passed at its threshold.
      message: one readable sentence with the estimates, errors and threshold.
    """

    name: str
    statistic: float
    p_value: float
    passed: bool
    message: str

    def __bool__(self) -> bool:  # allows ``assert check(...)``
        return bool(self.passed)


def normalized_weights(log_weights) -> np.ndarray:
    """``W_i = exp(l_i) / Σ_j exp(l_j)`` in float64 along the last axis (non-finite -> 0)."""
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    m = np.max(lw, axis=-1, keepdims=True)
    w = np.exp(lw - np.where(np.isfinite(m), m, 0.0))
    total = w.sum(-1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def _p_normal(z) -> float:
    return float(2.0 * _special.norm_sf(abs(float(z))))


def _p_t(t, df) -> float:
    return float(2.0 * _special.t_sf(abs(float(t)), df))


def _decide(worst, p, num_se, alpha):
    if alpha is not None:
        return bool(p >= alpha), f"p = {p:.2g} {'≥' if p >= alpha else '<'} α = {alpha:.2g}"
    ok = bool(worst < num_se)
    return ok, f"{'within' if ok else 'NOT within'} {num_se:g} standard errors"


def _z_with_zero_se(diff, se):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.inf))


def evidence_ratio_check(log_z_hats, log_z_true: float, *, num_se: float = 3.0,
                         alpha: float | None = None, name: str = "evidence") -> CheckResult:
    """Check that ``mean_r(Ẑ_r / Z) = 1`` across ``R`` independent runs.

    ``t = (mean(r) - 1) / (sd(r) / √R)`` with ``r = exp(log Ẑ - log Z)``; the p-value is from
    Student's t with ``R - 1`` degrees of freedom (approximate: ``r`` is right-skewed, so keep
    ``sd(log Ẑ)`` below about 1 by using enough particles).

    Args:
      log_z_hats: ``[R]`` log-evidence estimates from R independent runs.
      log_z_true: the exact ``log Z``.
      num_se: pass when ``|t| < num_se`` (used when ``alpha`` is None).
      alpha: pass when the p-value is at least ``alpha``.
      name: label of the check.
    """
    log_z_hats = np.asarray(log_z_hats, np.float64).ravel()
    r = len(log_z_hats)
    if r < 2:
        raise ValueError("evidence_ratio_check needs at least 2 independent runs")
    if not np.all(np.isfinite(log_z_hats)):
        bad = int(np.sum(~np.isfinite(log_z_hats)))
        return CheckResult(name, np.inf, 0.0, False,
                           f"{bad} of {r} log-evidence estimates are not finite")
    ratio = np.exp(log_z_hats - log_z_true)
    mean, se = ratio.mean(), ratio.std(ddof=1) / np.sqrt(r)
    z = float(_z_with_zero_se(np.asarray(mean - 1.0), np.asarray(se)))
    p = _p_t(z, r - 1) if np.isfinite(z) else 0.0
    passed, verdict = _decide(abs(z), p, num_se, alpha)
    msg = (f"mean Ẑ/Z = {mean:.4g} ± {se:.2g} over {r} runs (t = {z:+.2f}; "
           f"mean log Ẑ − log Z = {np.mean(log_z_hats - log_z_true):+.4f}, "
           f"sd {np.std(log_z_hats, ddof=1):.3f}); {verdict}")
    return CheckResult(name, z, p, passed, msg)


def mean_check_across_runs(estimates, truth, *, num_se: float = 4.0, alpha: float | None = None,
                           name: str = "mean", labels=None) -> CheckResult:
    """t-test the across-run average of estimates against exact values, element-wise.

    Args:
      estimates: ``[R, ...]`` one estimate per independent run.
      truth: ``[...]`` exact values; NaN entries are not compared (unknown).
      num_se: pass when every ``|t| < num_se`` (used when ``alpha`` is None).
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.
      name: label of the check.
      labels: optional names of the compared values (same shape as ``truth``), for the message.
    """
    est = np.asarray(estimates, np.float64)
    r = est.shape[0]
    if r < 2:
        raise ValueError("mean_check_across_runs needs at least 2 independent runs")
    truth = np.broadcast_to(np.asarray(truth, np.float64), est.shape[1:])
    known = np.isfinite(truth)
    if not np.all(np.isfinite(est[:, known])):
        return CheckResult(name, np.inf, 0.0, False, "some estimates are not finite")
    se = est.std(0, ddof=1) / np.sqrt(r)
    z = _z_with_zero_se(est.mean(0) - truth, se)[known]
    k = int(z.size)
    if k == 0:
        raise ValueError("no finite exact value to compare with")
    worst = float(np.max(np.abs(z)))
    p = min(1.0, _p_t(worst, r - 1) * k) if np.isfinite(worst) else 0.0
    passed, verdict = _decide(worst, p, num_se, alpha)
    flat = np.abs(np.where(known, _z_with_zero_se(est.mean(0) - truth, se), 0.0)).ravel()
    i = int(np.argmax(flat))
    if labels is not None:
        where = f" for {np.asarray(labels).ravel()[i]}"
    elif truth.ndim == 0:
        where = ""
    else:
        where = f" at index {tuple(int(j) for j in np.unravel_index(i, truth.shape))}"
    msg = (f"largest |t| = {worst:.2f}{where} (estimate {est.mean(0).ravel()[i]:.4g} ± "
           f"{se.ravel()[i]:.2g}, exact {truth.ravel()[i]:.4g}) over {k} values and {r} runs; "
           f"{verdict}")
    return CheckResult(name, worst, p, passed, msg)


def weighted_moment_check(samples, log_weights, mean, var, *, num_se: float = 4.0,
                          alpha: float | None = None, name: str = "moments") -> CheckResult:
    """z-test weighted means and variances of one weighted sample against exact values.

    Standard errors: ``sqrt(var / ESS)`` for the mean and ``sqrt((m4 - var²) / ESS)`` for the
    variance, with ``m4`` the weighted fourth central moment about the exact mean.

    Args:
      samples: ``[N, d]`` (or ``[N]``) particles.
      log_weights: ``[N]`` log weights (any normalisation).
      mean, var: exact ``[d]`` posterior means and variances.
      num_se: pass when every ``|z| < num_se`` (used when ``alpha`` is None).
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.
      name: label of the check.
    """
    w = normalized_weights(log_weights)
    x = np.asarray(samples, np.float64).reshape(len(w), -1)
    ess = 1.0 / np.sum(w**2)
    mean = np.asarray(mean, np.float64).reshape(-1)
    var = np.asarray(var, np.float64).reshape(-1)
    m_hat = w @ x
    v_hat = w @ (x - m_hat) ** 2
    m4 = w @ (x - mean) ** 4
    z_mean = (m_hat - mean) / np.sqrt(var / ess)
    z_var = (v_hat - var) / np.sqrt(np.maximum(m4 - var**2, 1e-300) / ess)
    z = np.concatenate([z_mean, z_var])
    worst = float(np.max(np.abs(z)))
    p = min(1.0, _p_normal(worst) * z.size)
    passed, verdict = _decide(worst, p, num_se, alpha)
    msg = (f"largest |z| = {worst:.2f} over {mean.size} means and variances (ESS {ess:.0f}); "
           f"{verdict}")
    return CheckResult(name, worst, p, passed, msg)


def ks_check(samples, log_weights, cdf: Callable, *, num_effective: float | None = None,
             alpha: float = 1e-3, name: str = "ks") -> CheckResult:
    """Kolmogorov-Smirnov distance of a weighted 1-d sample from an exact CDF.

    ``D = sup_x |Σ_i W_i 1[x_i ≤ x] - F(x)|``; under the null ``√n D`` follows the Kolmogorov
    distribution (with Stephens' correction ``D (√n + 0.12 + 0.11/√n)``), with ``n`` the Kish
    ESS of the weights or ``num_effective``. Correlated particles (resampled, or MCMC chains)
    have fewer effective draws than the ESS says: pass ``num_effective``, or use
    :func:`marginal_tv_check` over independent runs.

    Args:
      samples: ``[N]`` values.
      log_weights: ``[N]`` log weights (any normalisation), or None for equal weights.
      cdf: the exact CDF, vectorised over a NumPy array.
      num_effective: the effective sample size (default: the ESS of the weights).
      alpha: pass when the p-value is at least ``alpha``.
      name: label of the check.
    """
    x = np.asarray(samples, np.float64).ravel()
    w = (np.full(x.size, 1.0 / x.size) if log_weights is None
         else normalized_weights(np.asarray(log_weights).ravel()))
    n = float(1.0 / np.sum(w**2)) if num_effective is None else float(num_effective)
    order = np.argsort(x)
    xs, cw = x[order], np.cumsum(w[order])
    f = np.asarray(cdf(xs), np.float64)
    d = float(max(np.max(np.abs(cw - f)), np.max(np.abs(cw - w[order] - f))))
    lam = d * (np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n))
    p = float(_special.kolmogorov_sf(lam))
    passed = p >= alpha
    msg = (f"KS distance D = {d:.4f} with effective size {n:.0f} (√n·D = {np.sqrt(n) * d:.2f}); "
           f"p = {p:.2g} {'≥' if passed else '<'} α = {alpha:.2g}")
    return CheckResult(name, float(np.sqrt(n) * d), p, bool(passed), msg)


def discrete_tv_check(probs, exact, *, num_effective: float | None = None, alpha: float = 1e-3,
                      name: str = "tv", labels=None) -> CheckResult:
    """Total-variation distance of estimated category probabilities from exact ones.

    ``TV = ½ Σ_k |p̂_k - p_k|``. Each category is z-tested, Bonferroni over the ``K``
    categories:

    * ``probs`` ``[K]`` from one weighted sample: multinomial standard errors
      ``√(p_k (1 - p_k) / n)``, ``n = num_effective`` (e.g. the ESS), normal p-values;
    * ``probs`` ``[R, K]`` from ``R`` independent runs: across-run standard errors, Student t
      with ``R - 1`` degrees of freedom; TV of the across-run average. If ``num_effective``
      (the effective size of all runs together) is given, the multinomial standard error
      ``√(p_k (1 - p_k) / num_effective)`` is a floor, so a rare category that every run
      misses is not judged with a zero standard error.

    Args:
      probs: ``[K]`` or ``[R, K]`` estimated probabilities.
      exact: ``[K]`` exact probabilities (summing to 1).
      num_effective: effective sample size; required for a single ``[K]`` estimate.
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.
      name: label of the check.
      labels: optional ``K`` category names for the message.
    """
    p_hat = np.asarray(probs, np.float64)
    p = np.asarray(exact, np.float64).ravel()
    if p_hat.shape[-1] != p.size or p_hat.ndim not in (1, 2):
        raise ValueError(f"probs must be [K] or [R, K] with K = {p.size}, got {p_hat.shape}")
    if abs(p.sum() - 1.0) > 1e-6 or np.any(p < 0):
        raise ValueError(f"exact probabilities must be non-negative and sum to 1, got {p}")
    if not np.all(np.isfinite(p_hat)):
        return CheckResult(name, np.inf, 0.0, False, "some estimated probabilities are not finite")
    if p_hat.ndim == 1:
        if num_effective is None:
            raise ValueError("a single probability estimate needs num_effective (e.g. the ESS)")
        mean, se = p_hat, np.sqrt(p * (1.0 - p) / float(num_effective))
        source = f"effective size {float(num_effective):.0f}"
    else:
        r = p_hat.shape[0]
        if r < 2:
            raise ValueError("need at least 2 independent runs")
        mean, se = p_hat.mean(0), p_hat.std(0, ddof=1) / np.sqrt(r)
        if num_effective is not None:
            se = np.maximum(se, np.sqrt(p * (1.0 - p) / float(num_effective)))
        source = f"{r} runs"
    z = _z_with_zero_se(mean - p, se)
    worst_k = int(np.argmax(np.abs(z)))
    worst = float(np.abs(z[worst_k]))
    k = p.size
    if not np.isfinite(worst):
        p_val = 0.0
    elif p_hat.ndim == 1:
        p_val = min(1.0, _p_normal(worst) * k)
    else:
        p_val = min(1.0, _p_t(worst, p_hat.shape[0] - 1) * k)
    passed = p_val >= alpha
    tv = 0.5 * float(np.sum(np.abs(mean - p)))
    label = labels[worst_k] if labels is not None else worst_k
    msg = (f"TV distance {tv:.4f}; largest |z| = {worst:.2f} for category {label} "
           f"(estimate {mean[worst_k]:.4f} ± {se[worst_k]:.2g}, exact {p[worst_k]:.4f}) over "
           f"{k} categories, {source}; p = {p_val:.2g} {'≥' if passed else '<'} α = {alpha:.2g}")
    return CheckResult(name, worst, p_val, bool(passed), msg)


def _quantiles(cdf, probs, lo, hi):
    """Invert a monotone vectorised CDF by bisection (after widening ``[lo, hi]``)."""
    probs = np.asarray(probs, np.float64)
    width = max(hi - lo, 1e-8)
    for _ in range(200):
        if float(cdf(np.array([lo]))[0]) <= probs.min():
            break
        lo -= width
        width *= 2.0
    width = max(hi - lo, 1e-8)
    for _ in range(200):
        if float(cdf(np.array([hi]))[0]) >= probs.max():
            break
        hi += width
        width *= 2.0
    a, b = np.full(probs.shape, lo), np.full(probs.shape, hi)
    for _ in range(200):
        mid = 0.5 * (a + b)
        below = np.asarray(cdf(mid), np.float64) < probs
        a, b = np.where(below, mid, a), np.where(below, b, mid)
    return 0.5 * (a + b)


def marginal_tv_check(samples, log_weights, cdf: Callable, *, num_bins: int = 10,
                      num_effective: float | None = None, alpha: float = 1e-3,
                      name: str = "marginal") -> CheckResult:
    """A 1-d marginal binned at the exact quantiles ``F⁻¹(j / B)``, tested per bin.

    Every bin has exact probability ``1/B``; the weighted bin masses are compared with
    :func:`discrete_tv_check`. With ``[R, N]`` samples from ``R`` independent runs the standard
    errors come from the runs (robust to correlated particles); with one ``[N]`` sample they
    are multinomial with the ESS (or ``num_effective``). The message also gives the KS distance
    of the pooled weighted sample.

    Args:
      samples: ``[N]`` or ``[R, N]`` values.
      log_weights: same shape (any normalisation), or None for equal weights.
      cdf: the exact CDF, vectorised over a NumPy array.
      num_bins: B.
      num_effective: effective size for a single sample (default: its ESS).
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.
      name: label of the check.
    """
    x = np.asarray(samples, np.float64)
    single = x.ndim == 1
    x = x[None] if single else x
    if x.ndim != 2:
        raise ValueError(f"samples must be [N] or [R, N], got shape {np.shape(samples)}")
    w = (np.full(x.shape, 1.0 / x.shape[1]) if log_weights is None
         else normalized_weights(np.asarray(log_weights).reshape(x.shape)))
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return CheckResult(name, np.inf, 0.0, False, "no finite sample")
    edges = _quantiles(cdf, np.arange(1, num_bins) / num_bins, float(finite.min()),
                       float(finite.max()))
    idx = np.searchsorted(edges, x, side="right")
    masses = np.stack([np.bincount(i, weights=wr, minlength=num_bins)
                       for i, wr in zip(idx, w, strict=True)])
    exact = np.full(num_bins, 1.0 / num_bins)
    if single:
        n = float(1.0 / np.sum(w[0] ** 2)) if num_effective is None else float(num_effective)
        res = discrete_tv_check(masses[0], exact, num_effective=n, alpha=alpha, name=name)
    else:
        res = discrete_tv_check(masses, exact, alpha=alpha, name=name)
    pooled = x.ravel()
    order = np.argsort(pooled)
    cw = np.cumsum((w / x.shape[0]).ravel()[order])
    d = float(np.max(np.abs(cw - np.asarray(cdf(pooled[order]), np.float64))))
    return res._replace(message=f"{num_bins} equal-probability bins: {res.message}; "
                                f"pooled KS distance {d:.4f}")

"""Exact-answer checks shared by the static-model sampler tests.

Every check runs ``S`` independent seeds (one compilation) and compares with the exact
answer using the across-seed Monte Carlo standard error:

* posterior means and variances: ``t = (mean_s(est_s) - exact) / (sd_s(est_s) / √S)``, each
  coordinate, required ``|z| < 4`` for ``z`` the normal score with the same tail probability
  as ``t`` under Student's t with ``S - 1`` degrees of freedom. The standard error is
  estimated from the S seeds, so ``t`` has heavier tails than a normal score; "within 4
  Monte Carlo standard errors" means a false-alarm rate of ``P(|N(0,1)| > 4) = 6.3e-5`` per
  coordinate, which ``|t| < 4`` would exceed 3.4-fold at S = 50 (``|z| < 4`` is ``|t| < 4.38``
  there). With ``d = 50`` (100 scores per case) an exact sampler failed ``|t| < 4`` in about
  2 % of the cases, and did (``t = 4.02``, ``z = 3.72``, data tempering with HMC, session 12;
  50 other seeds gave 2.82);
* evidence: ``Ẑ`` is unbiased, so ``r_s = exp(log Ẑ_s - log Z)`` must average to 1 within
  3 standard errors ``sd(r)/√S``.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy import stats


def run_seeds(fn, num_seeds: int, seed: int = 0):
    """``jax.jit(fn)`` on ``num_seeds`` keys split from ``seed``, results stacked (NumPy).

    A loop over one compiled run compiles faster than ``vmap`` of the sampler's while loops
    and does not make every seed wait for the slowest one.
    """
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    f = jax.jit(fn)
    outs = [jax.device_get(f(k)) for k in keys]
    return jax.tree.map(lambda *a: np.stack(a), *outs)


def weighted_moments(result):
    """Per-seed weighted means and variances of a flat ``[S, N, d]`` (or ``[S, N]``) result."""
    w = np.exp(np.asarray(result.log_weights, np.float64))
    th = np.asarray(result.particles, np.float64)
    if th.ndim == 2:
        th = th[..., None]
    m = np.einsum("sn,snd->sd", w, th)
    v = np.einsum("sn,snd->sd", w, (th - m[:, None]) ** 2)
    return m, v


def t_scores(estimates, exact):
    """Across-seed t-scores of ``estimates [S, ...]`` against ``exact`` (estimated SE)."""
    est = np.asarray(estimates, np.float64)
    se = est.std(axis=0, ddof=1) / np.sqrt(est.shape[0])
    return (est.mean(axis=0) - np.asarray(exact)) / se


def normal_scores(t, num_seeds: int):
    """t-scores over ``num_seeds`` seeds as normal scores with the same two-sided tail
    probability (module docstring)."""
    return np.sign(t) * stats.norm.isf(stats.t.sf(np.abs(t), num_seeds - 1))


def evidence_ratio(result, exact_log_z):
    """``(mean r, se r, z)`` for ``r = exp(log Ẑ - log Z)`` over seeds."""
    r = np.exp(np.asarray(result.log_evidence, np.float64) - exact_log_z)
    mean, se = r.mean(), r.std(ddof=1) / np.sqrt(r.size)
    return mean, se, (mean - 1.0) / se


def summary(result, post_mean, post_var, log_z) -> dict:
    """All the figures of one batched run (printed by the tests with ``-s``)."""
    m, v = weighted_moments(result)
    tm, tv = t_scores(m, post_mean), t_scores(v, post_var)
    zm, zv = normal_scores(tm, m.shape[0]), normal_scores(tv, v.shape[0])
    rm, rse, rz = evidence_ratio(result, log_z)
    log_z_hat = np.asarray(result.log_evidence, np.float64)
    return {
        "max_abs_z_mean": float(np.abs(zm).max()),
        "max_abs_z_var": float(np.abs(zv).max()),
        "max_abs_t_mean": float(np.abs(tm).max()),
        "max_abs_t_var": float(np.abs(tv).max()),
        "ratio_mean": float(rm),
        "ratio_se": float(rse),
        "ratio_z": float(rz),
        "sd_log_z": float(log_z_hat.std(ddof=1)),
        "mean_reported_se": float(np.asarray(result.log_evidence_se).mean()),
        "mean_steps": float(np.asarray(result.num_steps).mean()),
        "mean_evals": float(np.mean(result.num_likelihood_evals)),
    }


def familywise_z(num_comparisons: int, alpha: float = 0.01) -> float:
    """The |z| bound that an exact sampler exceeds with probability ``alpha`` over
    ``num_comparisons`` scores in all (Bonferroni): ``Phi^-1(1 - alpha / (2 m))``.

    A grid of cases that each use the per-score bound 4 (false-alarm rate 6.3e-5) fails
    an exact sampler with probability about ``6.3e-5 m``: 3 % for the 496 scores of the
    waste-free grid, 20 % for the 3600 of the particle-filter grid."""
    return float(stats.norm.isf(alpha / (2 * num_comparisons)))


def assert_exact(result, post_mean, post_var, log_z, *, label="", num_se=4.0):
    """Assert the moment z-scores (normal scores of the t-scores, see the module docstring)
    are below ``num_se`` (4, or :func:`familywise_z` for a grid) and the evidence ratio
    within 3 SE of 1."""
    s = summary(result, post_mean, post_var, log_z)
    print(label, {k: round(v, 4) for k, v in s.items()})
    assert result.status == "ok", result.status
    assert s["max_abs_z_mean"] < num_se, (label, s)
    assert s["max_abs_z_var"] < num_se, (label, s)
    assert abs(s["ratio_z"]) < 3.0, (label, s)
    return s

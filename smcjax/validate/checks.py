"""Statistical checks of sampler output against exact answers.

Each check returns a :class:`CheckResult` with the statistic, a p-value or z-score, a pass
flag and a readable explanation. Tolerances are expressed in Monte Carlo standard errors
measured from the runs themselves, never as hand-tuned absolute numbers.

* :func:`evidence_ratio_check` compares ``Ẑ/Z`` with 1 *in linear space* across independent
  runs: ``Ẑ`` is unbiased for ``Z`` while ``log Ẑ`` is biased downward by about
  ``var(log Ẑ)/2``, so averaging ``log Ẑ`` would flag correct samplers.
* :func:`mean_check_across_runs` z-tests averages of independent estimates (e.g. filtering
  means from many seeds) element-wise against exact values.
* :func:`weighted_moment_check` z-tests weighted posterior means and variances from one
  weighted sample, with standard errors from the ESS (Inference Gym style).
"""

from __future__ import annotations

from typing import NamedTuple

import math

import numpy as np

__all__ = [
    "CheckResult",
    "evidence_ratio_check",
    "mean_check_across_runs",
    "weighted_moment_check",
]


class CheckResult(NamedTuple):
    """Outcome of one statistical check.

    Attributes:
      name: what was checked.
      statistic: the test statistic (a z-score, or the largest |z| of several).
      p_value: two-sided p-value of ``statistic`` (Bonferroni-corrected where several).
      passed: whether the check passed at its threshold.
      message: one readable sentence.
    """

    name: str
    statistic: float
    p_value: float
    passed: bool
    message: str

    def __bool__(self) -> bool:  # allows ``assert check(...)``
        return bool(self.passed)


def _two_sided_p(z) -> float:
    return float(math.erfc(abs(float(z)) / math.sqrt(2.0)))


def evidence_ratio_check(log_z_hats, log_z_true: float, *, num_se: float = 3.0,
                         name: str = "evidence") -> CheckResult:
    """Check that ``mean(Ẑ/Z) = 1`` within ``num_se`` standard errors across runs.

    Args:
      log_z_hats: ``[R]`` log-evidence estimates from R independent runs.
      log_z_true: the exact ``log Z``.
      num_se: threshold in standard errors of the mean ratio.
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
    z = (mean - 1.0) / se if se > 0 else (0.0 if mean == 1.0 else np.inf)
    passed = bool(abs(z) < num_se)
    msg = (f"mean Ẑ/Z = {mean:.4f} ± {se:.4f} over {r} runs (z = {z:+.2f}; "
           f"mean log Ẑ − log Z = {np.mean(log_z_hats - log_z_true):+.4f}); "
           f"{'within' if passed else 'OUTSIDE'} {num_se} standard errors")
    return CheckResult(name, float(z), _two_sided_p(z), passed, msg)


def mean_check_across_runs(estimates, truth, *, num_se: float = 4.0,
                           name: str = "mean") -> CheckResult:
    """z-test the across-run average of estimates against exact values, element-wise.

    Args:
      estimates: ``[R, ...]`` one estimate per independent run.
      truth: ``[...]`` exact values.
      num_se: threshold in standard errors (applied to every element).
    """
    est = np.asarray(estimates, np.float64)
    truth = np.broadcast_to(np.asarray(truth, np.float64), est.shape[1:])
    r = est.shape[0]
    se = est.std(0, ddof=1) / np.sqrt(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (est.mean(0) - truth) / se, 0.0)
    if not np.all(np.isfinite(est)):
        return CheckResult(name, np.inf, 0.0, False, "some estimates are not finite")
    worst = float(np.max(np.abs(z)))
    k = z.size
    p = min(1.0, _two_sided_p(worst) * k)
    passed = worst < num_se
    msg = (f"largest |z| = {worst:.2f} over {k} compared values ({r} runs); "
           f"{'all within' if passed else 'NOT within'} {num_se} standard errors")
    return CheckResult(name, worst, p, bool(passed), msg)


def weighted_moment_check(samples, log_weights, mean, var, *, num_se: float = 4.0,
                          name: str = "moments") -> CheckResult:
    """z-test weighted means and variances of one weighted sample against exact values.

    Standard errors: ``sqrt(var / ESS)`` for the mean and ``sqrt((m4 - var²) / ESS)`` for the
    variance, with ``m4`` the weighted fourth central moment (exact moments are used for the
    error of the mean).

    Args:
      samples: ``[N, d]`` (or ``[N]``) particles.
      log_weights: ``[N]`` log weights (any normalisation).
      mean, var: exact ``[d]`` posterior means and variances.
    """
    x = np.asarray(samples, np.float64).reshape(len(log_weights), -1)
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    w = np.exp(lw - np.max(lw))
    w /= w.sum()
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
    p = min(1.0, _two_sided_p(worst) * z.size)
    passed = worst < num_se
    msg = (f"largest |z| = {worst:.2f} over {mean.size} means and variances (ESS {ess:.0f}); "
           f"{'within' if passed else 'NOT within'} {num_se} standard errors")
    return CheckResult(name, worst, p, bool(passed), msg)

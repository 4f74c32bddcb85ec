"""Exact test problems for the diffusion samplers and a Monte Carlo-error-aware check.

Each problem is a Gaussian-mixture data law (so every ``q_t`` and its score are exact), a
reshaped target, and the target's exact mean, variances, mode masses and ``log Z`` at the
sampler's final time ``t_K`` (the target is built from ``q_{t_K}``, so no ``t -> 0`` bias
enters). Exact values come from :mod:`smcjax.diffusion.gmm`: closed forms where they exist,
grid quadrature otherwise (CFG with a mixture ``q_u``); both agree to ~1e-13 on the closed-form
cases. Mode masses are the probabilities of the Voronoi cells of the data means.

:func:`compare` is the one check used by the tests for FKC *and* for the unweighted baseline:
from ``R`` independent runs it forms the pooled estimate and its standard error
``sd_runs / sqrt(R)`` (independent runs, because resampling at every step makes the final
ESS meaningless as an error bar) and passes when every ``|estimate - exact| <=
c * se + slack``. The standard error is itself estimated from R runs, so ``c`` is the
Student-t (R - 1 degrees of freedom) critical value with the same two-sided tail as
``num_se`` normal standard errors: 4 standard errors mean a tail of 6.3e-5, which is
``c = 8.47`` for R = 8 runs, 5.48 for R = 16 and 4.38 for R = 50. With a normal critical
value and R = 8, a run of eight similar estimates shrinks the error bar enough to fail a
correct sampler one time in a few hundred per statistic.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from smcjax.diffusion import gmm
from smcjax.diffusion.scores import GaussianMixtureScore
from smcjax.diffusion.targets import anneal, cfg, product, reward_tilt

__all__ = ["Problem", "Check", "anneal_problem", "product_problem", "cfg_problem",
           "tilt_problem", "posterior_problem", "run_stats", "stat_names", "exact_vector",
           "compare", "student_critical", "DATA_1D", "DATA_2D"]

DATA_1D = gmm.make([0.3, 0.7], [[-1.5], [1.5]], [0.2, 0.6])
DATA_2D = gmm.make([0.2, 0.3, 0.5], [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]],
                   [[[0.6, 0.2], [0.2, 0.4]], [[0.5, -0.1], [-0.1, 0.7]], [[0.4, 0.0], [0.0, 0.3]]])


class Problem(NamedTuple):
    """An exact test problem.

    Attributes:
      name: a label.
      target: the FKC :class:`~smcjax.diffusion.Target`.
      sde: the schedule; the exact answers hold at ``sde.t_min``.
      exact: dict with ``mean [d]``, ``var [d]``, ``masses [M]``, ``log_z``.
      centers: ``[M, d]`` the mode centres defining the Voronoi cells.
      extra: problem-specific objects (e.g. the likelihood of a posterior problem).
    """

    name: str
    target: Any
    sde: Any
    exact: dict
    centers: np.ndarray
    extra: Any = None


class Check(NamedTuple):
    """Result of :func:`compare`: pooled estimates, exact values, standard errors, z-scores."""

    names: tuple
    estimate: np.ndarray
    exact: np.ndarray
    se: np.ndarray
    z: np.ndarray
    passed: np.ndarray

    @property
    def ok(self) -> bool:
        return bool(np.all(self.passed))

    def __str__(self):
        cols = zip(self.names, self.estimate, self.exact, self.se, self.z, self.passed,
                   strict=True)
        rows = [f"{n:>8s}: est={e:+.4f} exact={x:+.4f} se={s:.4f} z={z:+.1f} "
                f"{'ok' if p else 'FAIL'}" for n, e, x, s, z, p in cols]
        return "\n".join(rows)


def _noised(mix, sde):
    t = sde.t_min
    return gmm.noised(mix, float(sde.alpha(t)), float(sde.sigma(t)))


def _bounds(mix, pad=8.0):
    sd = np.sqrt(np.max(np.diagonal(mix.covs, axis1=1, axis2=2), axis=0))
    return [(float(lo), float(hi)) for lo, hi in zip(mix.means.min(0) - pad * sd,
                                                     mix.means.max(0) + pad * sd, strict=True)]


def _summary(log_density, bounds, centers, log_z=None):
    num = 20001 if len(bounds) == 1 else 701
    g = gmm.grid_summary(log_density, bounds, num, gmm.nearest_center(centers))
    out = {"mean": g["mean"], "var": np.diag(g["cov"]), "masses": g["masses"],
           "log_z": g["log_z"] if log_z is None else log_z}
    return out


def anneal_problem(dim: int, beta: float, sde) -> Problem:
    """``q^beta`` for the 1-d or 2-d test mixture (closed-form ``log Z`` for integer beta)."""
    data = DATA_1D if dim == 1 else DATA_2D
    qt = _noised(data, sde)
    log_z = gmm.power(qt, int(beta))[1] if float(beta).is_integer() else None
    exact = _summary(lambda x: beta * gmm.log_prob(qt, x), _bounds(qt), data.means, log_z)
    return Problem(f"anneal{dim}d_beta{beta:g}", anneal(GaussianMixtureScore(data, sde), beta),
                   sde, exact, data.means)


def product_problem(sde) -> Problem:
    """Product of two different 2-d mixtures (closed form)."""
    q1 = gmm.make([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.5]], 0.8)
    q2 = gmm.make([0.6, 0.4], [[-1.0, 1.0], [1.5, -1.0]], 1.0)
    prod, log_z = gmm.product(_noised(q1, sde), _noised(q2, sde))
    centers = prod.means
    exact = _summary(lambda x: gmm.log_prob(prod, x) + log_z, _bounds(prod), centers, log_z)
    target = product(GaussianMixtureScore(q1, sde), GaussianMixtureScore(q2, sde))
    return Problem("product2d", target, sde, exact, centers)


def cfg_problem(w: float, sde) -> Problem:
    """CFG ``q_c^w q_u^{1-w}``: class c and class b are 2-d mixtures, ``q_u = (q_c + q_b)/2``.

    No closed form (``q_u`` is a mixture): exact values by grid quadrature.
    """
    qc = gmm.make([0.5, 0.5], [[-1.5, 0.0], [1.0, 1.5]], 0.5)
    qb = gmm.make([0.5, 0.5], [[1.5, 0.0], [-0.5, -1.5]], 0.5)
    qu = gmm.GaussianMixture(np.concatenate([qc.weights, qb.weights]) / 2,
                             np.concatenate([qc.means, qb.means]),
                             np.concatenate([qc.covs, qb.covs]))
    qct, qut = _noised(qc, sde), _noised(qu, sde)
    exact = _summary(lambda x: w * gmm.log_prob(qct, x) + (1 - w) * gmm.log_prob(qut, x),
                     _bounds(qut), qc.means)
    target = cfg(GaussianMixtureScore(qu, sde), GaussianMixtureScore(qc, sde), w)
    return Problem(f"cfg2d_w{w:g}", target, sde, exact, qc.means)


def tilt_problem(lam: float, sde, *, ramp: bool = True) -> Problem:
    """``q exp(lam r)`` with the Gaussian reward ``r(x) = -|x - c|^2 / 2``, ``c = (1, -1)``.

    With ``ramp`` the strength grows as ``lam (t_max - t) / (t_max - t_min)`` in diffusion time.
    """
    center = np.array([1.0, -1.0])
    qt = _noised(DATA_2D, sde)
    tilted, log_z = gmm.gaussian_tilt(qt, center, np.eye(2), lam)
    exact = _summary(lambda x: gmm.log_prob(tilted, x) + log_z, _bounds(qt), DATA_2D.means, log_z)
    c32 = jnp.asarray(center, jnp.float32)

    def reward(x):
        return -0.5 * jnp.sum((x - c32) ** 2)

    t_lo, t_hi = float(sde.t_min), float(sde.t_max)
    strength = (lambda t: lam * (t_hi - t) / (t_hi - t_lo)) if ramp else lam
    target = reward_tilt(GaussianMixtureScore(DATA_2D, sde), reward, strength)
    return Problem(f"tilt2d_lam{lam:g}", target, sde, exact, DATA_2D.means, extra=reward)


def posterior_problem(sde, *, dim: int = 2) -> Problem:
    """Posterior of the test mixture under ``y = A x + e`` (``A = [1, 0.5]``, ``R = 0.5``)."""
    data = DATA_1D if dim == 1 else DATA_2D
    qt = _noised(data, sde)
    A = np.array([[1.0]]) if dim == 1 else np.array([[1.0, 0.5]])
    y, R = np.array([0.2]), np.array([[0.5]])
    post, log_z = gmm.linear_gaussian_posterior(qt, A, y, R)
    exact = _summary(lambda x: gmm.log_prob(post, x) + log_z, _bounds(qt), data.means, log_z)
    return Problem(f"posterior{dim}d", GaussianMixtureScore(data, sde), sde, exact, data.means,
                   extra=(A, y, R))


def run_stats(result, centers) -> np.ndarray:
    """``[mean (d), var (d), masses (M), log_z]`` of one weighted run (NaN log_z if None)."""
    w = np.exp(np.asarray(result.log_weights, np.float64))
    w = w / w.sum()
    x = np.asarray(result.samples, np.float64).reshape(w.shape[0], -1)
    mean = w @ x
    var = w @ (x - mean) ** 2
    labels = gmm.nearest_center(centers)(x)
    masses = np.bincount(labels, weights=w, minlength=len(centers))
    log_z = math.nan if result.log_evidence is None else float(result.log_evidence)
    return np.concatenate([mean, var, masses, [log_z]])


def stat_names(dim: int, num_modes: int) -> tuple:
    """Labels of :func:`run_stats`' columns."""
    return (tuple(f"mean{i}" for i in range(dim)) + tuple(f"var{i}" for i in range(dim))
            + tuple(f"mass{k}" for k in range(num_modes)) + ("log_z",))


def exact_vector(problem: Problem) -> np.ndarray:
    """The exact values in :func:`run_stats`' column order."""
    e = problem.exact
    return np.concatenate([e["mean"], e["var"], e["masses"], [e["log_z"]]])


def _student_two_sided_tail(c: float, dof: int) -> float:
    """``P(|T| > c)`` for Student's t with integer ``dof`` (closed forms, Abramowitz & Stegun
    26.7.3-4): with ``theta = atan(c / sqrt(dof))``, ``P(|T| <= c)`` is a finite series in
    ``cos(theta)``."""
    theta = math.atan(c / math.sqrt(dof))
    s, cos2 = math.sin(theta), math.cos(theta) ** 2
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, dof // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        inside = s * total
    else:
        total, term = 0.0, math.cos(theta)
        if dof > 1:
            total = term
            for k in range(1, (dof - 1) // 2):
                term *= cos2 * (2 * k) / (2 * k + 1)
                total += term
        inside = (2.0 / math.pi) * (theta + s * total)
    return max(0.0, 1.0 - inside)


def student_critical(num_se: float, dof: int) -> float:
    """The Student-t (``dof``) critical value whose two-sided tail equals that of ``num_se``
    normal standard errors (bisection on the closed-form tail)."""
    if dof < 1:
        raise ValueError(f"need at least 2 runs to estimate a standard error, got dof={dof}")
    tail = math.erfc(num_se / math.sqrt(2.0))
    lo, hi = num_se, num_se
    while _student_two_sided_tail(hi, dof) > tail:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _student_two_sided_tail(mid, dof) > tail:
            lo = mid
        else:
            hi = mid
    return hi


def compare(runs, exact, names, *, num_se: float = 4.0, slack=0.0, log_z: bool = True) -> Check:
    """Pooled estimate over independent runs against exact values.

    Args:
      runs: ``[R, M]`` per-run statistics (:func:`run_stats`); the last column is ``log Z``.
      exact: ``[M]`` exact values.
      names: ``M`` labels.
      num_se: tolerance in normal standard errors, turned into the Student-t critical
        value with the same tail for ``R - 1`` degrees of freedom (:func:`student_critical`).
      slack: ``[M]`` (or scalar) stated extra allowance (a discretisation bias).
      log_z: check ``log Z`` in linear space: the estimate is ``log mean_r Z_r`` with standard
        error ``sd(Z_r / Z) / (sqrt(R) mean(Z_r / Z))`` (``Z`` estimates are unbiased, their logs
        are not). With ``log_z=False`` the last column is dropped.
    """
    runs = np.asarray(runs, np.float64)
    exact = np.asarray(exact, np.float64)
    r = runs.shape[0]
    est = runs.mean(0)
    se = runs.std(0, ddof=1) / math.sqrt(r)
    names = tuple(names)
    slack = np.broadcast_to(np.asarray(slack, np.float64), est.shape).copy()
    if log_z:
        ratio = np.exp(runs[:, -1] - exact[-1])
        est[-1] = exact[-1] + math.log(ratio.mean())
        se[-1] = ratio.std(ddof=1) / (math.sqrt(r) * ratio.mean())
    else:
        est, exact, se, slack, names = est[:-1], exact[:-1], se[:-1], slack[:-1], names[:-1]
    z = (est - exact) / np.maximum(se, 1e-300)
    passed = np.abs(est - exact) <= student_critical(num_se, r - 1) * se + slack
    return Check(names, est, exact, se, z, passed)

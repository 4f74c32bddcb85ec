"""Twisted diffusion sampler on a linear-Gaussian observation of Gaussian-mixture data, and the
best-of-n baseline.

The exact posterior of the noised prior ``q_{t_K}`` under ``y = A x + e`` is a Gaussian mixture
(one Kalman update per component, :func:`smcjax.diffusion.gmm.linear_gaussian_posterior`).
TDS is exact in discrete time for the Euler chain, so the only bias is the chain's (small)
discretisation error; standard errors come from independent runs.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from smcjax.diffusion import (
    VP,
    GaussianMixtureScore,
    best_of_n,
    gmm,
    linear_gaussian_likelihood,
    twisted_sample,
)
from smcjax.diffusion import testbed as tb

SDE = VP()
POSTERIOR_2D = functools.cache(lambda: tb.posterior_problem(SDE, dim=2))


def _posterior_runs(problem, num_particles, num_steps, num_runs, seed=0):
    A, y, R = problem.extra
    lik = linear_gaussian_likelihood(A, y, R)
    stats = []
    for r in range(num_runs):
        res = twisted_sample(jax.random.key(seed + r), problem.target, SDE, lik, num_particles,
                             num_steps)
        assert res.status == "ok"
        stats.append(tb.run_stats(res, problem.centers))
    return np.array(stats)


def _check(problem, runs, log_z_slack=0.05):
    names = tb.stat_names(len(problem.exact["mean"]), len(problem.centers))
    slack = np.zeros(len(names))
    slack[-1] = log_z_slack
    return tb.compare(runs, tb.exact_vector(problem), names, slack=slack)


def test_twisted_sampler_matches_the_exact_posterior():
    """Cheap check: moments, mode masses and log p(y); N = 2000, R = 12 runs, K = 100.

    TDS weights are heavy-tailed on this mixture (the twist L(x0_hat(x_t)) is crude at
    intermediate t), so the run-to-run standard error needs a dozen runs to be reliable.
    """
    problem = POSTERIOR_2D()
    check = _check(problem, _posterior_runs(problem, 2000, 100, 12))
    assert check.ok, str(check)


@pytest.mark.slow
@pytest.mark.parametrize("dim", [1, 2])
def test_twisted_sampler_matches_the_exact_posterior_heavy(dim):
    """Acceptance: mode masses (and moments, log p(y)) within 4 se at N = 10^4 (R = 16)."""
    problem = tb.posterior_problem(SDE, dim=dim)
    check = _check(problem, _posterior_runs(problem, 10_000, 200, 16, seed=100))
    assert check.ok, str(check)


def _mean_rmse(sizes, num_runs, num_steps):
    problem = POSTERIOR_2D()
    exact = problem.exact["mean"]
    rmse = {}
    for n in sizes:
        runs = _posterior_runs(problem, n, num_steps, num_runs, seed=10 * n)
        rmse[n] = math.sqrt(np.mean(np.sum((runs[:, :2] - exact) ** 2, axis=1)))
    return rmse


def test_posterior_mean_error_decreases_with_n():
    """RMSE of the posterior-mean estimate over 16 runs at N = 125, 500, 2000."""
    rmse = _mean_rmse((125, 500, 2000), 16, 100)
    assert rmse[125] > rmse[500] > rmse[2000], rmse
    # Monte Carlo error falls like N^-1/2: a factor 4 over N x 16 (allow 2).
    assert rmse[125] / rmse[2000] > 2.0, rmse


@pytest.mark.slow
def test_posterior_mean_error_decreases_with_n_heavy():
    rmse = _mean_rmse((100, 1000, 10_000), 16, 200)
    assert rmse[100] > rmse[1000] > rmse[10_000], rmse
    assert rmse[100] / rmse[10_000] > 3.0, rmse


def test_twisted_sampler_bad_input():
    problem = POSTERIOR_2D()
    lik = linear_gaussian_likelihood(*problem.extra)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_steps"):
        twisted_sample(key, problem.target, SDE, lik, 10, 0)
    with pytest.raises(ValueError, match="scalar"):
        twisted_sample(key, problem.target, SDE, lambda x: x, 10, 5)
    with pytest.raises(ValueError, match="range"):
        twisted_sample(key, problem.target, SDE, lik, 10, 2, times=[2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="shapes"):
        linear_gaussian_likelihood([[1.0, 0.0]], [0.0, 1.0], [[1.0]])


def test_best_of_n_is_the_maximum_order_statistic():
    """Gaussian data N(0, 1), reward r(x) = x: best-of-4 has CDF Phi(x)^4."""
    score = GaussianMixtureScore(gmm.make([1.0], [[0.0]], 1.0), SDE)
    samples, rewards = best_of_n(jax.random.key(0), score, SDE, lambda x: x[0], 4, 20_000, 100)
    x = np.asarray(samples)[:, 0]
    np.testing.assert_allclose(np.asarray(rewards), x)
    grid = np.linspace(-1.0, 3.0, 9)
    empirical = (x[:, None] <= grid).mean(0)
    exact = norm.cdf(grid) ** 4
    se = np.sqrt(exact * (1 - exact) / len(x))
    # The base chain's discretisation (K = 100) shifts the CDF by < 0.005 (stated slack).
    assert np.all(np.abs(empirical - exact) <= 4 * se + 0.005), (empirical, exact)
    assert samples.shape == (20_000, 1)
    # A NaN reward ranks last: with r(x) = x for x > 0 and NaN otherwise, every group with a
    # positive draw picks the same sample as above (same key), and a group gives NaN only when
    # all four draws are negative (probability 1/16).
    nan_below = lambda x: jnp.where(x[0] > 0, x[0], jnp.nan)  # noqa: E731
    s2, r2 = best_of_n(jax.random.key(0), score, SDE, nan_below, 4, 20_000, 100)
    ok = np.isfinite(np.asarray(r2))
    np.testing.assert_array_equal(np.asarray(s2)[ok], np.asarray(samples)[ok])
    assert np.all(x[~ok] <= 0) and np.all(x[ok] > 0)
    with pytest.raises(ValueError, match="n must"):
        best_of_n(jax.random.key(0), score, SDE, lambda x: x[0], 0, 10, 10)

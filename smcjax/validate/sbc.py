"""Simulation-based calibration (SBC) and Geweke's joint-distribution test.

Both check a posterior sampler through the joint law ``p(θ, y) = p(θ) p(y | θ)`` alone, so
they need no closed-form posterior.

**SBC** (Talts et al. 2018). For ``r = 1..R``: draw ``θ_r ~ p(θ)``, ``y_r ~ p(y | θ_r)`` and
``L`` draws ``θ_r^(1..L)`` from the sampler's posterior given ``y_r``. For each scalar
component of θ, the rank ``#{l : θ_r^(l) < θ_r}`` (ties broken uniformly at random) is
uniform on ``{0, ..., L}`` when the sampler is exact. The ranks are binned into ``B`` equal
bins (``B`` divides ``L + 1``) and tested with Pearson's chi-square, ``B - 1`` degrees of
freedom, Bonferroni over the components. Shapes of the histogram: ∪ (too many extreme
ranks) means a posterior that is too narrow, ∩ one that is too wide, a slope a biased one.
SMC draws are obtained by resampling the weighted particles; they are not independent, but
the ranks stay uniform as long as the particle approximation is accurate.

**Geweke** (2004). Two simulators of ``p(θ, y)``: marginal-conditional (independent
``θ ~ p(θ)``, ``y ~ p(y | θ)``) and successive-conditional (the Gibbs chain
``y_m ~ p(y | θ_{m-1})``, ``θ_m ~ sampler(· | y_m)``, whose stationary law is ``p(θ, y)`` exactly
when the sampler is exact). The means of test functions ``g(θ, y)`` (default ``θ_i`` and
``θ_i²``) must agree: ``z = (ḡ_MC - ḡ_SC) / √(s²_MC / M + s²_SC)``, with ``s²_SC`` from batch
means of the chain; Bonferroni over the functions.

References: S. Talts, M. Betancourt, D. Simpson, A. Vehtari, A. Gelman (2018), "Validating
Bayesian inference algorithms with simulation-based calibration", arXiv:1804.06788;
J. Geweke (2004), "Getting it right: joint distribution tests of posterior simulators",
JASA 99(467), 799-804.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax._compile import jit
from smcjax.validate import _special

__all__ = ["SBCResult", "GewekeResult", "sbc", "geweke", "resample_draws"]


class SBCResult(NamedTuple):
    """Outcome of :func:`sbc`.

    Attributes:
      ranks: ``int[R, P]`` rank of each true scalar parameter among its ``L`` draws.
      chi2: ``[P]`` chi-square statistics of the binned ranks (``B - 1`` degrees of freedom).
      p_value: the smallest per-parameter p-value times P (Bonferroni), capped at 1.
      passed: ``p_value >= alpha``.
      histogram: ``int[P, B]`` rank counts per bin (expected ``R / B`` each).
      message: a readable summary naming the worst parameter and the histogram's shape.
    """

    ranks: np.ndarray
    chi2: np.ndarray
    p_value: float
    passed: bool
    histogram: np.ndarray
    message: str

    def __bool__(self) -> bool:
        return bool(self.passed)


class GewekeResult(NamedTuple):
    """Outcome of :func:`geweke`: per-function z-scores and the two simulators' means."""

    z: np.ndarray
    p_value: float
    passed: bool
    mean_marginal: np.ndarray
    mean_successive: np.ndarray
    message: str

    def __bool__(self) -> bool:
        return bool(self.passed)


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def _flat_draws(tree, num) -> jax.Array:
    return jnp.concatenate([jnp.reshape(a, (num, -1))
                            for a in jax.tree.leaves(tree)], axis=1)


def resample_draws(key, particles, log_weights, num_draws: int):
    """``num_draws`` draws from a weighted particle set by multinomial resampling.

    Turns an SMC result into the ``posterior_sampler`` output that :func:`sbc` expects.
    """
    idx = jax.random.categorical(key, log_weights, shape=(num_draws,))
    return jax.tree.map(lambda a: a[idx], particles)


def _default_bins(num_draws: int, num_replications: int) -> int:
    cap = max(2, min(20, num_replications // 5))
    options = [b for b in range(2, cap + 1) if (num_draws + 1) % b == 0]
    if not options:
        raise ValueError(f"no bin count in [2, {cap}] divides L + 1 = {num_draws + 1}; choose "
                         "num_posterior_draws so that L + 1 has a small divisor (e.g. L = 99)")
    return max(options)


def _shape_note(ranks, num_draws) -> str:
    """Describe the histogram by two z-scores: the outer-20% fraction and the mean rank."""
    r = ranks.size
    u = (ranks + 0.5) / (num_draws + 1)
    outer = float(np.mean((u < 0.1) | (u > 0.9)))
    z_outer = (outer - 0.2) / np.sqrt(0.16 / r)
    mean = float(np.mean(u))
    z_mean = (mean - 0.5) / np.sqrt(1.0 / (12.0 * r))
    notes = []
    if z_outer > 3:
        notes.append(f"∪-shaped ({outer:.0%} of ranks in the outer 20%): posterior too narrow")
    elif z_outer < -3:
        notes.append(f"∩-shaped ({outer:.0%} of ranks in the outer 20%): posterior too wide")
    if abs(z_mean) > 3:
        side = "low" if mean > 0.5 else "high"
        notes.append(f"mean normalised rank {mean:.2f}: posterior draws biased {side}")
    return "; ".join(notes) if notes else "no clear shape"


def _one_rank(key, prior_sample, simulate, posterior_sampler, num_draws):
    k_prior, k_sim, k_post, k_tie = jax.random.split(key, 4)
    theta = prior_sample(k_prior)
    draws = posterior_sampler(k_post, simulate(k_sim, theta), num_draws)
    t, d = _flat(theta), _flat_draws(draws, num_draws)
    below = jnp.sum(d < t[None], axis=0)
    ties = jnp.sum(d == t[None], axis=0)
    u = jax.random.uniform(k_tie, t.shape)
    return below + jnp.floor(u * (ties + 1)).astype(below.dtype)


# compiled once per (functions, L): repeated calls with the same functions reuse the compilation
_ranks_one = jit(_one_rank, static_argnums=(1, 2, 3, 4))
_ranks_batch = jit(lambda keys, *fns: jax.vmap(lambda k: _one_rank(k, *fns))(keys),
                       static_argnums=(1, 2, 3, 4))


def sbc(key, prior_sample: Callable, simulate: Callable, posterior_sampler: Callable,
        num_replications: int, num_posterior_draws: int, *, num_bins: int | None = None,
        alpha: float = 0.01, vectorize: bool = True) -> SBCResult:
    """Simulation-based calibration of a posterior sampler (see the module docstring).

    Args:
      key: a JAX key.
      prior_sample: ``key -> θ`` (any pytree).
      simulate: ``(key, θ) -> y`` (any pytree).
      posterior_sampler: ``(key, y, L) -> draws``, a pytree like θ with leading axis ``L``
        (e.g. :func:`resample_draws` of an SMC run). Must be traceable by JAX.
      num_replications: R.
      num_posterior_draws: L.
      num_bins: B, a divisor of ``L + 1`` (default: the largest divisor up to
        ``min(20, R / 5)``, so every bin expects at least 5 ranks).
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.
      vectorize: ``jax.vmap`` over replications (one call); False loops over one compiled
        replication (better for samplers with data-dependent loop lengths).

    Returns:
      :class:`SBCResult`.
    """
    r, big_l = int(num_replications), int(num_posterior_draws)
    if r < 2 or big_l < 1:
        raise ValueError(f"need num_replications >= 2 and num_posterior_draws >= 1, got {r}, "
                         f"{big_l}")
    b = _default_bins(big_l, r) if num_bins is None else int(num_bins)
    if b < 2 or (big_l + 1) % b:
        raise ValueError(f"num_bins={b} must be >= 2 and divide L + 1 = {big_l + 1}")

    fns = (prior_sample, simulate, posterior_sampler, big_l)
    keys = jax.random.split(key, r)
    if vectorize:
        ranks = np.asarray(_ranks_batch(keys, *fns))
    else:
        ranks = np.stack([np.asarray(_ranks_one(k, *fns)) for k in keys])
    ranks = ranks.astype(np.int64)
    p_dim = ranks.shape[1]
    hist = np.stack([np.bincount(ranks[:, j] * b // (big_l + 1), minlength=b)[:b]
                     for j in range(p_dim)])
    expected = r / b
    chi2 = np.sum((hist - expected) ** 2 / expected, axis=1)
    p_each = np.asarray(_special.chi2_sf(chi2, b - 1), np.float64).reshape(-1)
    worst = int(np.argmin(p_each))
    p_value = float(min(1.0, p_each[worst] * p_dim))
    passed = p_value >= alpha
    msg = (f"SBC with {r} replications, {big_l} draws, {b} bins: worst parameter {worst} "
           f"(chi2 = {chi2[worst]:.1f} on {b - 1} df; {_shape_note(ranks[:, worst], big_l)}); "
           f"Bonferroni p = {p_value:.2g} over {p_dim} parameters "
           f"{'≥' if passed else '<'} α = {alpha:g}")
    return SBCResult(ranks, chi2, p_value, bool(passed), hist, msg)


def _default_tests(theta, y):
    t = _flat(theta)
    return jnp.concatenate([t, t * t])


def _geweke_draws_impl(k_mc, k_sc0, k_sc, prior_sample, simulate, posterior_sampler, g, m):
    def marginal(k):
        k1, k2 = jax.random.split(k)
        theta = prior_sample(k1)
        return g(theta, simulate(k2, theta))

    def step(theta, k):
        k1, k2 = jax.random.split(k)
        y = simulate(k1, theta)
        new = jax.tree.map(lambda a: a[0], posterior_sampler(k2, y, 1))
        return new, g(new, y)

    mc = jax.vmap(marginal)(jax.random.split(k_mc, m))
    _, sc = jax.lax.scan(step, prior_sample(k_sc0), jax.random.split(k_sc, m))
    return mc, sc


_geweke_draws = jit(_geweke_draws_impl, static_argnums=(3, 4, 5, 6, 7))


def geweke(key, prior_sample: Callable, simulate: Callable, posterior_sampler: Callable,
           num_samples: int, *, test_functions: Callable | None = None, num_batches: int = 20,
           alpha: float = 0.01) -> GewekeResult:
    """Geweke's joint-distribution test of a posterior sampler (see the module docstring).

    Args:
      key: a JAX key.
      prior_sample, simulate, posterior_sampler: as in :func:`sbc` (the successive-conditional
        chain uses one posterior draw per step).
      num_samples: M draws from each simulator.
      test_functions: ``(θ, y) -> float[G]`` (default ``θ_i`` and ``θ_i²`` for every scalar
        component of θ).
      num_batches: batches for the batch-means standard error of the chain.
      alpha: pass when the Bonferroni-corrected p-value is at least ``alpha``.

    Returns:
      :class:`GewekeResult`.
    """
    m = int(num_samples)
    if m < 2 * num_batches or num_batches < 2:
        raise ValueError(f"need num_samples >= 2 * num_batches and num_batches >= 2, got "
                         f"{m}, {num_batches}")
    g = _default_tests if test_functions is None else test_functions
    k_mc, k_sc0, k_sc = jax.random.split(key, 3)

    out = _geweke_draws(k_mc, k_sc0, k_sc, prior_sample, simulate, posterior_sampler, g, m)
    mc, sc = (np.asarray(a, np.float64) for a in out)
    mean_mc, mean_sc = mc.mean(0), sc.mean(0)
    per = m // num_batches
    batches = sc[: per * num_batches].reshape(num_batches, per, -1).mean(1)
    var_sc = batches.var(0, ddof=1) / num_batches
    se = np.sqrt(mc.var(0, ddof=1) / m + var_sc)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (mean_mc - mean_sc) / se, np.where(mean_mc == mean_sc, 0.0, np.inf))
    worst = int(np.argmax(np.abs(z)))
    p_one = 2.0 * float(_special.t_sf(abs(z[worst]), num_batches - 1))
    p_value = float(min(1.0, p_one * z.size))
    passed = p_value >= alpha
    msg = (f"Geweke test with {m} draws per simulator: largest |z| = {abs(z[worst]):.2f} for "
           f"test function {worst} (marginal-conditional {mean_mc[worst]:.4g}, "
           f"successive-conditional {mean_sc[worst]:.4g}); Bonferroni p = {p_value:.2g} over "
           f"{z.size} functions {'≥' if passed else '<'} α = {alpha:g}")
    return GewekeResult(z, p_value, bool(passed), mean_mc, mean_sc, msg)

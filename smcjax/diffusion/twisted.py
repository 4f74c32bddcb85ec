"""The twisted diffusion sampler (TDS) for conditional sampling given an observation.

Given a diffusion prior (score ``s(x, t)``) and a likelihood ``L(x_0) = p(y | x_0)``, TDS
samples ``p(x_0 | y) ∝ p(x_0) L(x_0)`` with SMC over the reverse chain. With the denoised
prediction ``x̂_0(x, t) = (x + sigma_t^2 s(x, t)) / alpha_t`` (Tweedie), the twist is

    p̃_t(y | x_t) = L(x̂_0(x_t, t)),

and for one reverse step ``t_{k-1} -> t_k`` (``h = t_{k-1} - t_k``, ``v = g^2 h``):

* base kernel (Euler-Maruyama of the reverse SDE): ``p(x' | x) = N(mu, v I)``,
  ``mu = x + h (g^2 s(x) - f(x))``;
* twisted proposal: ``q̃(x' | x, y) = N(mu + v grad log p̃_{t_{k-1}}(x), v I)``;
* weight ``w_k = p(x' | x) p̃_{t_k}(y | x') / (p̃_{t_{k-1}}(y | x) q̃(x' | x, y))``;
  at the last step the twist is replaced by the exact ``L(x_K)``, so ``w_K`` ends with
  ``L(x_K) / p̃_{t_{K-1}}(y | x_{K-1})``;
* ``M_0 = N(0, sigma_{t_0}^2 I)``, ``G_0 = p̃_{t_0}(y | x_0)``.

The final weighted particles target ``p_chain(x_K) L(x_K)`` exactly in discrete time (only the
base chain is discretised), and the log-evidence estimates ``log int p(x) L(x) dx = log p(y)``
with ``p ≈ q_{t_K}``. The twist gradient differentiates through the score (``jax.grad``).
The particle state carries the score and the twist at the current point, so each step costs
one score evaluation and one backward pass.

References: L. Wu, B. L. Trippe, C. A. Naesseth, D. M. Blei, J. P. Cunningham, "Practical and
asymptotically exact conditional sampling in diffusion models", NeurIPS 2023.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax import _checks
from smcjax._compile import jit
from smcjax.diffusion.scores import check_score
from smcjax.diffusion.sde import step_grid
from smcjax.diffusion.targets import DiffusionResult
from smcjax.engine import FeynmanKac, check_num_particles, particle_step_work, run
from smcjax.resampling import check_ess_threshold, get_scheme

__all__ = ["twisted_model", "twisted_sample", "linear_gaussian_likelihood"]


class _TwistParticle(NamedTuple):
    x: jax.Array
    score: jax.Array
    log_twist: jax.Array
    grad_twist: jax.Array
    log_g: jax.Array


def linear_gaussian_likelihood(A, y, noise_cov) -> Callable:
    """``log N(y; A x, R)`` as a single-particle function of ``x``."""
    A = jnp.atleast_2d(jnp.asarray(A, jnp.float32))
    y = jnp.atleast_1d(jnp.asarray(y, jnp.float32))
    cov = jnp.atleast_2d(jnp.asarray(noise_cov, jnp.float32))
    if A.shape[0] != y.shape[0] or cov.shape != (y.shape[0], y.shape[0]):
        raise ValueError(f"shapes do not fit: A {A.shape}, y {y.shape}, noise_cov {cov.shape}")
    prec = jnp.linalg.inv(cov)
    log_norm = -0.5 * jnp.linalg.slogdet(2 * jnp.pi * cov)[1]

    def log_lik(x):
        r = y - A @ x
        return log_norm - 0.5 * r @ prec @ r

    return log_lik


def twisted_model(score, sde, log_likelihood, shape, *, prior_std: float,
                  t_start) -> FeynmanKac:
    """The TDS Feynman-Kac model; engine steps read ``params["times"]`` (``[K + 1]``,
    starting at ``t_start``)."""

    def twist(x, t):
        s = score(x, t)
        x0 = (x + jnp.square(sde.sigma(t)) * s) / sde.alpha(t)
        return log_likelihood(x0), s

    def evaluate(x, t, log_g):
        (phi, s), grad = jax.value_and_grad(twist, has_aux=True)(x, t)
        return _TwistParticle(x, s, phi, grad, log_g)

    def initial(key):
        x = prior_std * jax.random.normal(key, tuple(shape), jnp.float32)
        return evaluate(x, t_start, jnp.zeros((), jnp.float32))

    def initial_log_potential(p, params):
        return p.log_twist

    def transition(key, p, k, params):
        times = params["times"]
        t0, t1 = times[k - 1], times[k]
        h = t0 - t1
        g2 = sde.diffusion_sq(t0)
        var = g2 * h
        mean = p.x + h * (g2 * p.score - sde.drift(p.x, t0))
        delta = var * p.grad_twist
        xi = jax.random.normal(key, p.x.shape, p.x.dtype)
        x_new = mean + delta + jnp.sqrt(var) * xi
        new = evaluate(x_new, t1, jnp.zeros((), x_new.dtype))
        last = k == times.shape[0] - 1
        end_twist = jnp.where(last, log_likelihood(x_new), new.log_twist)
        log_g = (end_twist - p.log_twist - jnp.sum(delta * xi) / jnp.sqrt(var)
                 - jnp.sum(delta * delta) / (2.0 * var))
        return new._replace(log_g=log_g)

    def log_potential(p_prev, p, k, params):
        return p.log_g

    return FeynmanKac(initial, transition, log_potential, initial_log_potential)


@partial(jit, static_argnames=("score", "sde", "log_likelihood", "shape", "num_particles",
                                   "prior_std", "resampling", "ess_threshold"))
def _twisted(key, times, *, score, sde, log_likelihood, shape, num_particles, prior_std,
             resampling, ess_threshold):
    fk = twisted_model(score, sde, log_likelihood, shape, prior_std=prior_std,
                       t_start=times[0])
    state, infos, _ = run(key, fk, num_particles, times.shape[0], {"times": times},
                          resampling=resampling, ess_threshold=ess_threshold)
    return DiffusionResult(state.particles.x, state.log_weights, state.log_evidence, infos.ess,
                           infos.resampled, infos.num_invalid, infos.collapsed, times)


@functools.lru_cache(maxsize=64)
def _step_work(score, sde, log_likelihood, shape, prior_std, t_start, num_times):
    """One particle's step work (:func:`smcjax.engine.particle_step_work`), once per setting."""
    fk = twisted_model(score, sde, log_likelihood, shape, prior_std=prior_std, t_start=t_start)
    return particle_step_work(fk, {"times": jax.ShapeDtypeStruct((num_times,), jnp.float32)})


def twisted_sample(key, score, sde, log_likelihood: Callable, num_particles: int,
                   num_steps: int, *, times=None, resampling="systematic",
                   ess_threshold: float = 0.5, shape=None) -> DiffusionResult:
    """Sample ``p(x_0 | y) ∝ q_0(x_0) L(x_0)`` with the twisted diffusion sampler.

    Args:
      key: a JAX key.
      score: the prior's score model ``s(x, t)`` (differentiable in ``x``).
      sde: its forward schedule.
      log_likelihood: ``log L(x_0) = log p(y | x_0)`` for one particle (differentiable), e.g.
        :func:`linear_gaussian_likelihood`.
      num_particles: N > 0.
      num_steps: K >= 1 reverse steps.
      times: optional decreasing grid of ``K + 1`` times (default ``sde.default_times(K)``).
      resampling, ess_threshold: SMC options (see :func:`smcjax.engine.step`).
      shape: event shape (default ``score.shape``).

    Returns:
      A :class:`~smcjax.diffusion.DiffusionResult`; ``log_evidence`` estimates ``log p(y)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from smcjax.diffusion import VP, GaussianMixtureScore, gmm, twisted_sample
      >>> from smcjax.diffusion import linear_gaussian_likelihood
      >>> prior = GaussianMixtureScore(gmm.make([0.5, 0.5], [[-2.0], [2.0]], 0.5), VP())
      >>> lik = linear_gaussian_likelihood([[1.0]], [1.0], [[1.0]])
      >>> res = twisted_sample(jax.random.key(0), prior, VP(), lik, 500, 50)
      >>> res.samples.shape
      (500, 1)
    """
    n = check_num_particles(num_particles)
    grid = step_grid(sde, num_steps, times)
    check_ess_threshold(ess_threshold)
    get_scheme(resampling)
    shape = getattr(score, "shape", None) if shape is None else shape
    if shape is None:
        raise ValueError("cannot infer the particle shape from the score: pass shape=(d,)")
    shape = tuple(int(v) for v in shape)
    check_score(score, shape)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    _checks.scalar(_checks.shape_struct(log_likelihood, x, what="log_likelihood"),
                   what="log_likelihood")
    prior_std = float(sde.sigma(grid[0]))
    work = _step_work(score, sde, log_likelihood, shape, prior_std, float(grid[0]),
                      int(np.shape(grid)[0]))
    run_twisted = _twisted.sized(None if work is None else n * work)
    return run_twisted(key, jnp.asarray(np.asarray(grid)), score=score, sde=sde,
                    log_likelihood=log_likelihood, shape=shape, num_particles=n,
                    prior_std=prior_std, resampling=resampling,
                    ess_threshold=float(ess_threshold))

"""Stochastic-volatility model, the built-in default of ``smcjax run``.

Model (Kim, Shephard & Chib 1998)::

    x_0 ~ N(mu, sigma^2 / (1 - phi^2))                 (stationary law)
    x_t = mu + phi (x_{t-1} - mu) + sigma * N(0, 1)    t = 1..T-1
    y_t ~ N(0, exp(x_t))                               t = 0..T-1

``x_t`` is the log-variance of the return ``y_t``. There is no closed-form likelihood; the
tests check the filter against a long high-particle run and against the linear-Gaussian
exact answers instead. The data generator :func:`simulate` draws synthetic returns.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from smcjax.filters import StateSpaceModel

__all__ = ["SVParams", "make_model", "simulate", "DEFAULT_PARAMS"]


class SVParams(NamedTuple):
    """Parameters: long-run mean ``mu``, persistence ``phi`` (|phi| < 1), volatility ``sigma``."""

    mu: float = -1.0
    phi: float = 0.95
    sigma: float = 0.3


DEFAULT_PARAMS = SVParams()


def _normal_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi)


def make_model(p: SVParams = DEFAULT_PARAMS, dtype=jnp.float32, *,
               normal=jax.random.normal) -> StateSpaceModel:
    """The model as a :class:`~smcjax.StateSpaceModel`; a particle is a scalar ``x_t``.

    ``normal(key, shape, dtype)`` draws the standard normals of the moves:
    ``jax.random.normal`` by default, or e.g. :func:`smcjax.random.normal` (faster on CPU).
    """
    if not abs(p.phi) < 1 or p.sigma <= 0:
        raise ValueError(f"need |phi| < 1 and sigma > 0, got {p}")
    sd0 = p.sigma / (1 - p.phi**2) ** 0.5

    def initial_sample(key):
        return (p.mu + sd0 * normal(key, (), dtype)).astype(dtype)

    def transition_sample(key, x_prev, t):
        return p.mu + p.phi * (x_prev - p.mu) + p.sigma * normal(key, (), dtype)

    def transition_log_prob(x_prev, x, t):
        return _normal_logpdf(x, p.mu + p.phi * (x_prev - p.mu), p.sigma)

    def observation_log_prob(x, y, t):
        return _normal_logpdf(y, 0.0, jnp.exp(0.5 * x))

    def initial_log_prob(x):
        return _normal_logpdf(x, p.mu, sd0)

    return StateSpaceModel(initial_sample, transition_sample, transition_log_prob,
                           observation_log_prob, initial_log_prob=initial_log_prob)


def simulate(key, num_steps: int, p: SVParams = DEFAULT_PARAMS, dtype=jnp.float32):
    """Draw ``(xs [T], ys [T])`` from the model."""
    k0, kx, ky = jax.random.split(key, 3)
    sd0 = p.sigma / (1 - p.phi**2) ** 0.5
    x0 = p.mu + sd0 * jax.random.normal(k0, (), dtype)

    def body(x, e):
        x = p.mu + p.phi * (x - p.mu) + p.sigma * e
        return x, x

    _, rest = jax.lax.scan(body, x0, jax.random.normal(kx, (num_steps - 1,), dtype))
    xs = jnp.concatenate([x0[None], rest])
    ys = jnp.exp(0.5 * xs) * jax.random.normal(ky, (num_steps,), dtype)
    return xs, ys

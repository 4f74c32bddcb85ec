"""Linear-Gaussian state-space model, its exact Kalman filter, and its optimal proposal.

Model (any dimensions ``d_x``, ``d_y``)::

    x_0 ~ N(m0, P0)
    x_t = A x_{t-1} + N(0, Q)          t = 1..T-1
    y_t = C x_t     + N(0, R)          t = 0..T-1

Exact answers: the Kalman filter gives ``log p(y_0..y_{T-1})`` and the filtering moments
``E[x_t | y_0..y_t]``, ``Cov[x_t | y_0..y_t]`` (computed in NumPy float64).

The locally optimal proposal ``q(x_t | x_{t-1}, y_t) = p(x_t | x_{t-1}, y_t)`` is Gaussian with
covariance ``S = (Q^-1 + C' R^-1 C)^-1`` and mean ``S (Q^-1 A x_{t-1} + C' R^-1 y_t)``; with it
the guided filter's weight is ``p(y_t | x_{t-1}) = N(y_t; C A x_{t-1}, C Q C' + R)``, which is
also the ideal auxiliary look-ahead.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.filters import Proposal, StateSpaceModel
from smcjax.linalg import chol_factors, mvn_logpdf

__all__ = [
    "LGParams",
    "KalmanResult",
    "random_params",
    "make_model",
    "simulate",
    "kalman_filter",
    "optimal_proposal",
    "predictive_log_prob",
]


class LGParams(NamedTuple):
    """Parameters of the linear-Gaussian model (JAX arrays)."""

    A: jax.Array
    Q: jax.Array
    C: jax.Array
    R: jax.Array
    m0: jax.Array
    P0: jax.Array


class KalmanResult(NamedTuple):
    """Exact filtering results (NumPy float64)."""

    log_likelihood: float
    means: np.ndarray  # [T, d_x]
    covs: np.ndarray  # [T, d_x, d_x]
    log_likelihood_increments: np.ndarray  # [T]


def random_params(key, dim_x: int = 1, dim_y: int = 1, *, rho: float = 0.9,
                  obs_noise: float = 0.5, dtype=jnp.float32) -> LGParams:
    """A stable random model: ``A`` has spectral radius ``rho``, ``Q = I/4``, ``R = obs_noise² I``."""
    k_a, k_c = jax.random.split(key)
    a = jax.random.normal(k_a, (dim_x, dim_x), jnp.float32)
    a = a / jnp.max(jnp.abs(jnp.linalg.eigvals(a))) * rho
    c = jax.random.normal(k_c, (dim_y, dim_x), jnp.float32) / jnp.sqrt(dim_x)
    if dim_x == 1 and dim_y == 1:
        a, c = jnp.full((1, 1), rho), jnp.ones((1, 1))
    return LGParams(
        A=a.real.astype(dtype),
        Q=(0.25 * jnp.eye(dim_x)).astype(dtype),
        C=c.astype(dtype),
        R=(obs_noise**2 * jnp.eye(dim_y)).astype(dtype),
        m0=jnp.zeros(dim_x, dtype),
        P0=jnp.eye(dim_x, dtype=dtype),
    )


def _mvn_logpdf(x, mean, factors):
    _, chol_inv, log_det = factors
    return mvn_logpdf(x, mean, chol_inv, log_det)


def make_model(p: LGParams, *, normal=jax.random.normal) -> StateSpaceModel:
    """The :class:`~smcjax.StateSpaceModel` of ``p`` (particles are ``float[d_x]`` vectors).

    ``normal(key, shape, dtype)`` draws the standard normals of ``M_0`` and ``M_t``:
    ``jax.random.normal`` by default, or e.g. :func:`smcjax.random.normal` (faster on CPU).
    """
    fq, fr, fp0 = (chol_factors(m) for m in (p.Q, p.R, p.P0))
    chol_q, chol_p0 = fq[0], fp0[0]
    dx = p.A.shape[0]
    dt = p.A.dtype

    def initial_sample(key):
        return p.m0 + chol_p0 @ normal(key, (dx,), dt)

    def transition_sample(key, x_prev, t):
        return p.A @ x_prev + chol_q @ normal(key, (dx,), dt)

    def transition_log_prob(x_prev, x, t):
        return _mvn_logpdf(x, p.A @ x_prev, fq)

    def observation_log_prob(x, y, t):
        return _mvn_logpdf(y, p.C @ x, fr)

    def initial_log_prob(x):
        return _mvn_logpdf(x, p.m0, fp0)

    return StateSpaceModel(initial_sample, transition_sample, transition_log_prob,
                           observation_log_prob, initial_log_prob=initial_log_prob)


def optimal_proposal(p: LGParams, *, inflate: float = 1.0) -> Proposal:
    """The locally optimal proposal, optionally with its covariance multiplied by ``inflate``.

    ``inflate != 1`` gives a valid but sub-optimal proposal, which exercises the full guided
    weight ``f g / q``.
    """
    q_inv = jnp.linalg.inv(p.Q)
    r_inv = jnp.linalg.inv(p.R)
    s = jnp.linalg.inv(q_inv + p.C.T @ r_inv @ p.C) * inflate
    fs = chol_factors(s)
    chol_s = fs[0]
    s_exact = s / inflate
    dx = p.A.shape[0]

    def mean(x_prev, y):
        return s_exact @ (q_inv @ (p.A @ x_prev) + p.C.T @ r_inv @ y)

    def sample(key, x_prev, y, t):
        return mean(x_prev, y) + chol_s @ jax.random.normal(key, (dx,), p.A.dtype)

    def log_prob(x_prev, x, y, t):
        return _mvn_logpdf(x, mean(x_prev, y), fs)

    return Proposal(sample, log_prob)


def predictive_log_prob(p: LGParams, *, inflate: float = 1.0):
    """``(x_prev, y, t) -> log p(y_t | x_{t-1})``: the ideal auxiliary look-ahead.

    ``inflate > 1`` multiplies the predictive covariance, giving a flatter (valid) look-ahead.
    """
    factors = chol_factors((p.C @ p.Q @ p.C.T + p.R) * inflate)

    def log_prob(x_prev, y, t):
        return _mvn_logpdf(y, p.C @ (p.A @ x_prev), factors)

    return log_prob


def simulate(key, p: LGParams, num_steps: int):
    """Draw ``(xs [T, d_x], ys [T, d_y])`` from the model."""
    dx, dy = p.A.shape[0], p.C.shape[0]
    k0, kx, ky = jax.random.split(key, 3)
    x0 = p.m0 + jnp.linalg.cholesky(p.P0) @ jax.random.normal(k0, (dx,), p.A.dtype)
    chol_q, chol_r = jnp.linalg.cholesky(p.Q), jnp.linalg.cholesky(p.R)
    eps = jax.random.normal(kx, (num_steps - 1, dx), p.A.dtype)

    def body(x, e):
        x = p.A @ x + chol_q @ e
        return x, x

    _, rest = jax.lax.scan(body, x0, eps)
    xs = jnp.concatenate([x0[None], rest], axis=0)
    ys = xs @ p.C.T + jax.random.normal(ky, (num_steps, dy), p.A.dtype) @ chol_r.T
    return xs, ys


def kalman_filter(p: LGParams, ys) -> KalmanResult:
    """Exact log-likelihood and filtering moments, in NumPy float64."""
    a, q, c, r, m, cov = (np.asarray(v, np.float64) for v in p)
    ys = np.asarray(ys, np.float64)
    means, covs, incs = [], [], []
    for t, y in enumerate(ys):
        if t > 0:
            m = a @ m
            cov = a @ cov @ a.T + q
        s = c @ cov @ c.T + r
        resid = y - c @ m
        _, logdet = np.linalg.slogdet(s)
        incs.append(-0.5 * (resid @ np.linalg.solve(s, resid) + logdet + len(y) * np.log(2 * np.pi)))
        gain = cov @ c.T @ np.linalg.inv(s)
        m = m + gain @ resid
        cov = cov - gain @ s @ gain.T
        means.append(m)
        covs.append(cov)
    incs = np.array(incs)
    return KalmanResult(float(incs.sum()), np.array(means), np.array(covs), incs)

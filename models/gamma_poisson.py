"""Conjugate Gamma-Poisson model: exact posterior, evidence and posterior CDF.

Model (``n`` counts)::

    λ   ~ Gamma(a, b)            density b^a / Γ(a) λ^(a-1) e^(-b λ)   (b is a rate)
    y_i ~ Poisson(λ)             i = 1..n

θ is the scalar ``λ`` (``float[]``); the :class:`~smcjax.Bijection` is ``λ = exp(z)`` with
log-det ``z``, so the moves run on ``R``. ``log_likelihood_per_datum(λ, i)`` is
``log Poisson(y_i; λ)`` (data tempering).

Exact answers, with ``S = Σ_i y_i``::

    λ | y ~ Gamma(a + S, b + n)
    E[λ | y] = (a + S) / (b + n),   Var[λ | y] = (a + S) / (b + n)²
    log Z = a log b - log Γ(a) + log Γ(a + S) - (a + S) log(b + n) - Σ_i log y_i!

(integrate ``λ^(a+S-1) e^{-(b+n) λ}``). The posterior is skewed in ``λ`` and its log-density
is one-sided in ``log λ``, a useful test of a sampler's bijection and Jacobian. The default
data (``n = 12``, ``a = 2``, ``b = 0.5``) give ``E[λ | y] = 2.48``, ``log Z = -22.52535``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.bayes import BayesianModel, Bijection

__all__ = ["COUNTS", "GammaPoissonExact", "exact", "make_model", "simulate"]

COUNTS = np.array([2, 4, 1, 0, 3, 5, 2, 1, 3, 2, 4, 2])


class GammaPoissonExact(NamedTuple):
    """Exact posterior ``Gamma(shape, rate)`` and evidence (float64)."""

    shape: float
    rate: float
    mean: float
    var: float
    log_evidence: float


def _check(counts, a, b):
    y = np.asarray(counts)
    if y.ndim != 1 or y.size == 0 or np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError(f"counts must be a non-empty 1-d array of non-negative integers, got {y}")
    if not (a > 0 and b > 0):
        raise ValueError(f"Gamma(a, b) needs a > 0 and b > 0, got a={a}, b={b}")
    return y.astype(np.float64)


def exact(counts=COUNTS, a: float = 2.0, b: float = 0.5) -> GammaPoissonExact:
    """The exact posterior and log evidence (see the module docstring)."""
    y = _check(counts, a, b)
    n, s = y.size, float(y.sum())
    shape, rate = a + s, b + n
    log_fact = sum(math.lgamma(v + 1.0) for v in y)
    log_z = (a * math.log(b) - math.lgamma(a) + math.lgamma(shape) - shape * math.log(rate)
             - log_fact)
    return GammaPoissonExact(shape, rate, shape / rate, shape / rate**2, float(log_z))


def simulate(seed: int = 0, num_data: int = 12, rate: float = 2.5) -> np.ndarray:
    """Poisson counts ``[n]`` with mean ``rate`` (NumPy seed ``seed``)."""
    return np.random.default_rng(seed).poisson(rate, num_data)


def make_model(counts=COUNTS, a: float = 2.0, b: float = 0.5, *,
               dtype=jnp.float32) -> BayesianModel:
    """The model as a :class:`~smcjax.BayesianModel` (θ = ``λ``, a scalar)."""
    y_np = _check(counts, a, b)
    n = y_np.size
    y = jnp.asarray(y_np, dtype)
    log_fact = jnp.asarray([math.lgamma(v + 1.0) for v in y_np], dtype)
    total, total_fact = float(y_np.sum()), float(np.sum(log_fact))
    prior_const = a * math.log(b) - math.lgamma(a)

    def log_prior(lam):
        out = prior_const + (a - 1.0) * jnp.log(lam) - b * lam
        return jnp.where(lam > 0, out, -jnp.inf)

    def log_likelihood(lam):
        return total * jnp.log(lam) - n * lam - total_fact

    def log_likelihood_per_datum(lam, i):
        return y[i] * jnp.log(lam) - lam - log_fact[i]

    def sample_prior(key):
        return jax.random.gamma(key, a, (), dtype) / b

    bijection = Bijection(forward=jnp.exp, inverse=jnp.log, log_det_jacobian=lambda z: z)
    return BayesianModel(log_prior, log_likelihood, sample_prior,
                         log_likelihood_per_datum=log_likelihood_per_datum, num_data=n,
                         bijection=bijection, name="gamma_poisson")

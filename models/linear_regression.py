"""Bayesian linear regression with a conjugate Normal-inverse-Gamma prior: exact evidence.

Model (``n`` data, ``p`` predictors, design ``X [n, p]``)::

    sigma2        ~ InvGamma(a0, b0)                    (density b0^a0 / Γ(a0) s^(-a0-1) e^(-b0/s))
    beta | sigma2 ~ N(m0, sigma2 V0)
    y | beta, sigma2 ~ N(X beta, sigma2 I_n)

θ is the dict ``{"beta": float[p], "sigma2": float[]}``; the :class:`~smcjax.Bijection` is
``sigma2 = exp(z)`` (log-det ``z``) so moves run on ``R^(p+1)``. ``log_likelihood_per_datum``
gives ``log N(y_i; x_i' beta, sigma2)`` for data tempering.

Exact answers (conjugacy; e.g. Bishop 2006 §3.3, Murphy 2012 §7.6.3), all in NumPy float64::

    V_n = (V0^-1 + X'X)^-1,        m_n = V_n (V0^-1 m0 + X'y)
    a_n = a0 + n/2,                b_n = b0 + (y'y + m0' V0^-1 m0 - m_n' V_n^-1 m_n) / 2
    log p(y) = -n/2 log 2π + 1/2 log(|V_n| / |V0|) + a0 log b0 - a_n log b_n
               + log Γ(a_n) - log Γ(a0)
    E[beta | y] = m_n,   Cov[beta | y] = b_n / (a_n - 1) V_n          (a_n > 1)
    E[sigma2 | y] = b_n / (a_n - 1),   Var[sigma2 | y] = b_n² / ((a_n - 1)² (a_n - 2))

The tests check the evidence independently: ``y | sigma2 ~ N(X m0, sigma2 (I + X V0 X'))``
integrated over ``sigma2`` by 1-d quadrature.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import gammaln

from smcjax.bayes import BayesianModel, Bijection

__all__ = ["NIGPrior", "NIGPosterior", "default_prior", "simulate", "make_model", "posterior"]


class NIGPrior(NamedTuple):
    """Normal-inverse-Gamma prior: ``beta | s2 ~ N(mean, s2 cov)``, ``s2 ~ InvGamma(a, b)``."""

    mean: np.ndarray
    cov: np.ndarray
    a: float
    b: float


class NIGPosterior(NamedTuple):
    """Exact posterior (NumPy float64); see the module docstring for the formulas."""

    mean: np.ndarray  # m_n
    cov: np.ndarray  # V_n (beta's covariance is b_n / (a_n - 1) * V_n)
    a: float
    b: float
    log_evidence: float
    beta_mean: np.ndarray
    beta_cov: np.ndarray
    sigma2_mean: float
    sigma2_var: float


def default_prior(num_features: int) -> NIGPrior:
    """``beta | s2 ~ N(0, 4 s2 I)``, ``s2 ~ InvGamma(3, 2)`` (prior mean of ``s2`` is 1)."""
    return NIGPrior(np.zeros(num_features), 4.0 * np.eye(num_features), 3.0, 2.0)


def simulate(seed: int = 0, num_data: int = 50, num_features: int = 3, *, noise: float = 0.7):
    """A synthetic data set ``(X [n, p], y [n])`` (NumPy float64, first column an intercept)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.ones((num_data, 1)),
                        rng.standard_normal((num_data, num_features - 1))], axis=1)
    beta = rng.standard_normal(num_features)
    return x, x @ beta + noise * rng.standard_normal(num_data)


def posterior(x, y, prior: NIGPrior) -> NIGPosterior:
    """The exact Normal-inverse-Gamma posterior and log evidence (float64)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m0, v0 = np.asarray(prior.mean, np.float64), np.asarray(prior.cov, np.float64)
    n = y.shape[0]
    v0_inv = np.linalg.inv(v0)
    prec_n = v0_inv + x.T @ x
    v_n = np.linalg.inv(prec_n)
    m_n = v_n @ (v0_inv @ m0 + x.T @ y)
    a_n = prior.a + 0.5 * n
    b_n = prior.b + 0.5 * (y @ y + m0 @ v0_inv @ m0 - m_n @ prec_n @ m_n)
    log_z = (-0.5 * n * np.log(2 * np.pi)
             + 0.5 * (np.linalg.slogdet(v_n)[1] - np.linalg.slogdet(v0)[1])
             + prior.a * np.log(prior.b) - a_n * np.log(b_n) + gammaln(a_n) - gammaln(prior.a))
    return NIGPosterior(
        mean=m_n, cov=v_n, a=float(a_n), b=float(b_n), log_evidence=float(log_z),
        beta_mean=m_n, beta_cov=b_n / (a_n - 1) * v_n,
        sigma2_mean=float(b_n / (a_n - 1)),
        sigma2_var=float(b_n**2 / ((a_n - 1) ** 2 * (a_n - 2))),
    )


def _normal_logpdf(x, mean, var):
    return -0.5 * ((x - mean) ** 2 / var + jnp.log(2 * jnp.pi * var))


def make_model(x, y, prior: NIGPrior | None = None, *, dtype=jnp.float32) -> BayesianModel:
    """The regression as a :class:`~smcjax.BayesianModel` (θ = ``{"beta", "sigma2"}``)."""
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need X [n, p] and y [n], got {x.shape} and {y.shape}")
    num_data, p = x.shape
    prior = default_prior(p) if prior is None else prior
    if prior.a <= 0 or prior.b <= 0:
        raise ValueError(f"InvGamma(a, b) needs a > 0 and b > 0, got {prior.a}, {prior.b}")
    m0 = jnp.asarray(prior.mean, dtype)
    chol0 = np.linalg.cholesky(np.asarray(prior.cov, np.float64))
    chol0_j, chol0_inv = jnp.asarray(chol0, dtype), jnp.asarray(np.linalg.inv(chol0), dtype)
    logdet0 = jnp.asarray(2.0 * np.sum(np.log(np.diag(chol0))), dtype)
    a0, b0 = float(prior.a), float(prior.b)
    const_ig = a0 * np.log(b0) - float(gammaln(a0))

    def log_prior(theta):
        beta, s2 = theta["beta"], theta["sigma2"]
        z = chol0_inv @ (beta - m0)
        log_normal = -0.5 * (jnp.sum(z**2) / s2 + p * jnp.log(2 * jnp.pi * s2) + logdet0)
        log_ig = const_ig - (a0 + 1.0) * jnp.log(s2) - b0 / s2
        return jnp.where(s2 > 0, log_normal + log_ig, -jnp.inf)

    def log_likelihood(theta):
        return jnp.sum(_normal_logpdf(y, x @ theta["beta"], theta["sigma2"]))

    def log_likelihood_per_datum(theta, i):
        return _normal_logpdf(y[i], x[i] @ theta["beta"], theta["sigma2"])

    def sample_prior(key):
        k_s, k_b = jax.random.split(key)
        s2 = b0 / jax.random.gamma(k_s, a0, (), dtype)
        beta = m0 + jnp.sqrt(s2) * (chol0_j @ jax.random.normal(k_b, (p,), dtype))
        return {"beta": beta, "sigma2": s2}

    bijection = Bijection(
        forward=lambda z: {"beta": z["beta"], "sigma2": jnp.exp(z["sigma2"])},
        inverse=lambda t: {"beta": t["beta"], "sigma2": jnp.log(t["sigma2"])},
        log_det_jacobian=lambda z: z["sigma2"],
    )
    return BayesianModel(log_prior, log_likelihood, sample_prior,
                         log_likelihood_per_datum=log_likelihood_per_datum,
                         num_data=num_data, bijection=bijection, name="linear_regression")

"""Conjugate Gaussian model with a correlated prior, in any dimension, with exact answers.

Model (``d`` = dimension, ``n`` = number of data)::

    θ   ~ N(μ0, Σ0)                 Σ0_ij = s0² ρ^|i-j|   (correlated prior)
    y_j ~ N(θ, R)   j = 1..n        R = σ² C,  C_ij = ρ_y^|i-j|

Exact answers (NumPy float64), with ``ȳ`` the data mean and ``S_w = Σ_j (y_j-ȳ)' R⁻¹ (y_j-ȳ)``:

* posterior ``N(m, P⁻¹)`` with ``P = Σ0⁻¹ + n R⁻¹`` and ``m = P⁻¹ (Σ0⁻¹ μ0 + n R⁻¹ ȳ)``;
* evidence ``log Z = log N(ȳ; μ0, Σ0 + R/n) - ½ S_w - ½(n-1)(d log 2π + log|R|) - ½ d log n``,
  because ``Π_j N(y_j; θ, R) = N(ȳ; θ, R/n) · (2π)^{-(n-1)d/2} |R|^{-(n-1)/2} n^{-d/2} e^{-S_w/2}``
  (checked in the tests against the joint Gaussian density of all the data).

``log_likelihood`` uses the sufficient statistics (``O(d²)`` per call);
``log_likelihood_per_datum(θ, j) = log N(y_j; θ, R)`` enables data tempering.

Presets: the default (``n = 10``, ``σ = 1``, ``s0 = 1``) shrinks every posterior variance about
tenfold; ``informative=True`` (``n = 100``, ``σ = 0.1``) about 10⁴-fold, which takes many
temperatures; a weak likelihood (``n = 1``, ``σ = 3``) makes the first adaptive temperature want
β > 1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.bayes import BayesianModel

__all__ = ["ExactGaussian", "make_model", "exact_answers", "tempered_log_evidence"]


class ExactGaussian(NamedTuple):
    """Exact posterior and evidence (NumPy float64)."""

    posterior_mean: np.ndarray  # [d]
    posterior_cov: np.ndarray  # [d, d]
    log_evidence: float
    prior_mean: np.ndarray
    prior_cov: np.ndarray
    noise_cov: np.ndarray
    data: np.ndarray  # [n, d]

    @property
    def posterior_var(self) -> np.ndarray:
        return np.diag(self.posterior_cov).copy()


def _ar1(d, scale, rho):
    idx = np.arange(d)
    return scale**2 * rho ** np.abs(idx[:, None] - idx[None, :])


def _mvn_logpdf(x, mean, cov):
    d = x.shape[-1]
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, x - mean)
    return float(-0.5 * z @ z - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi))


def exact_answers(prior_mean, prior_cov, noise_cov, data) -> ExactGaussian:
    """Exact posterior and log evidence for data ``[n, d]`` (all float64)."""
    mu0, s0, r, y = (np.asarray(a, np.float64) for a in (prior_mean, prior_cov, noise_cov, data))
    n, d = y.shape
    ybar = y.mean(axis=0)
    s0_inv, r_inv = np.linalg.inv(s0), np.linalg.inv(r)
    prec = s0_inv + n * r_inv
    cov = np.linalg.inv(prec)
    cov = 0.5 * (cov + cov.T)
    mean = cov @ (s0_inv @ mu0 + n * r_inv @ ybar)
    resid = y - ybar[None]
    s_w = float(np.einsum("ji,ik,jk->", resid, r_inv, resid))
    _, logdet_r = np.linalg.slogdet(r)
    log_z = (_mvn_logpdf(ybar, mu0, s0 + r / n) - 0.5 * s_w
             - 0.5 * (n - 1) * (d * np.log(2 * np.pi) + logdet_r) - 0.5 * d * np.log(n))
    return ExactGaussian(mean, cov, float(log_z), mu0, s0, r, y)


def tempered_log_evidence(exact: ExactGaussian, beta: float) -> float:
    """``log ∫ p(θ) L(θ)^β dθ`` (exact; ``β = 1`` gives ``exact.log_evidence``).

    ``L(θ) = C N(ȳ; θ, R/n)`` with ``log C`` as in the module docstring, and
    ``N(ȳ; θ, R/n)^β = (2π)^{d(1-β)/2} |R/n|^{(1-β)/2} β^{-d/2} N(ȳ; θ, R/(nβ))``.
    """
    y = exact.data
    n, d = y.shape
    if beta == 0.0:
        return 0.0
    r = exact.noise_cov
    ybar = y.mean(axis=0)
    resid = y - ybar[None]
    s_w = float(np.einsum("ji,ik,jk->", resid, np.linalg.inv(r), resid))
    _, logdet_r = np.linalg.slogdet(r)
    log_c = -0.5 * s_w - 0.5 * (n - 1) * (d * np.log(2 * np.pi) + logdet_r) - 0.5 * d * np.log(n)
    _, logdet_rn = np.linalg.slogdet(r / n)
    power = 0.5 * (1 - beta) * (d * np.log(2 * np.pi) + logdet_rn) - 0.5 * d * np.log(beta)
    return float(beta * log_c + power
                 + _mvn_logpdf(ybar, exact.prior_mean, exact.prior_cov + r / (n * beta)))


def make_model(dim: int, *, num_data: int | None = None, noise_scale: float | None = None,
               prior_scale: float = 1.0, prior_rho: float = 0.5, noise_rho: float = 0.0,
               informative: bool = False, seed: int = 0, dtype=jnp.float32):
    """A conjugate Gaussian :class:`~smcjax.BayesianModel` and its exact answers.

    The true θ is drawn from the prior and the data from the model with NumPy seed ``seed``.

    Args:
      dim: dimension d of θ.
      num_data: n (default 10, or 100 when ``informative``).
      noise_scale: σ (default 1, or 0.1 when ``informative``).
      prior_scale, prior_rho: prior scale s0 and AR(1) correlation ρ.
      noise_rho: AR(1) correlation of the noise.
      informative: preset for an extremely informative likelihood.
      seed: NumPy seed of the simulated data.
      dtype: dtype of the JAX model functions.

    Returns:
      ``(model, exact)`` with ``model.log_likelihood_per_datum`` and ``model.num_data`` set.
    """
    if num_data is None:
        num_data = 100 if informative else 10
    if noise_scale is None:
        noise_scale = 0.1 if informative else 1.0
    rng = np.random.default_rng(seed)
    mu0 = np.linspace(-1.0, 1.0, dim) * prior_scale * 0.5
    s0 = _ar1(dim, prior_scale, prior_rho)
    r = _ar1(dim, noise_scale, noise_rho)
    theta = rng.multivariate_normal(mu0, s0)
    y = theta[None] + rng.multivariate_normal(np.zeros(dim), r, size=num_data)
    exact = exact_answers(mu0, s0, r, y)

    n = num_data
    chol_s0 = np.linalg.cholesky(s0)
    chol_r = np.linalg.cholesky(r)
    ybar = y.mean(axis=0)
    r_inv = np.linalg.inv(r)
    resid = y - ybar[None]
    s_w = float(np.einsum("ji,ik,jk->", resid, r_inv, resid))
    logdet_r = 2 * np.log(np.diag(chol_r)).sum()
    ll_const = -0.5 * s_w - 0.5 * n * (dim * np.log(2 * np.pi) + logdet_r)
    lp_const = -np.log(np.diag(chol_s0)).sum() - 0.5 * dim * np.log(2 * np.pi)
    datum_const = -0.5 * (dim * np.log(2 * np.pi) + logdet_r)

    c = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    mu0_j, ybar_j, y_j = c(mu0), c(ybar), c(y)
    chol_s0_j = c(chol_s0)
    inv_s0_j, inv_r_j = c(np.linalg.inv(chol_s0)), c(np.linalg.inv(chol_r))  # inverse factors

    def _quad(chol_inv, v):
        z = chol_inv @ v
        return jnp.sum(z * z)

    def log_prior(th):
        return -0.5 * _quad(inv_s0_j, th - mu0_j) + c(lp_const)

    def log_likelihood(th):
        return -0.5 * n * _quad(inv_r_j, ybar_j - th) + c(ll_const)

    def log_likelihood_per_datum(th, j):
        return -0.5 * _quad(inv_r_j, y_j[j] - th) + c(datum_const)

    def sample_prior(key):
        return mu0_j + chol_s0_j @ jax.random.normal(key, (dim,), dtype)

    model = BayesianModel(
        log_prior=log_prior,
        log_likelihood=log_likelihood,
        sample_prior=sample_prior,
        log_likelihood_per_datum=log_likelihood_per_datum,
        num_data=n,
        name=f"conjugate_gaussian_d{dim}",
    )
    return model, exact

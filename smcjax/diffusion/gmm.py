"""Exact answers for Gaussian-mixture targets (NumPy, float64): the test bed of the samplers.

A mixture ``q = sum_k w_k N(mu_k, C_k)`` stays a mixture under the operations the samplers
target, with closed-form weights and normalising constants:

* forward noising: ``q_t = sum_k w_k N(alpha mu_k, alpha^2 C_k + sigma^2 I)``;
* products ``q^(1) q^(2) ...`` and integer powers ``q^m``: expand the sums; each term is a
  product of Gaussians, ``prod_j N(x; m_j, C_j)^{n_j} = c N(x; m, C)`` with
  ``C^{-1} = sum_j n_j C_j^{-1}``, ``m = C sum_j n_j C_j^{-1} m_j`` (any real ``n_j`` with
  ``C^{-1}`` positive definite);
* a Gaussian reward tilt ``q(x) exp(lam r(x))`` with ``r(x) = -(x - c)^T P (x - c) / 2``;
* classifier-free guidance ``q_c^w q_u^{1-w}`` when ``q_u`` is one Gaussian and ``w`` an
  integer;
* the posterior under a linear-Gaussian observation ``y = A x + e``, ``e ~ N(0, R)`` (one
  Kalman update per component; the log normaliser is ``log p(y)``).

Each operation returns ``(mixture, log_z)``: the normalised mixture and the log normaliser
``log Z = log int (unnormalised product) dx``. For densities outside these cases (a
non-integer power, guidance with a mixture ``q_u``) :func:`grid_summary` integrates any log
density on a tensor grid in one or two dimensions; with a grid that covers the mass and
resolves the narrowest component it is accurate to many digits (the trapezoid rule converges
spectrally for smooth, rapidly decaying integrands).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln, logsumexp

__all__ = [
    "GaussianMixture",
    "make",
    "log_prob",
    "sample",
    "moments",
    "noised",
    "product",
    "power",
    "multiply_gaussian_power",
    "gaussian_tilt",
    "cfg_target",
    "linear_gaussian_posterior",
    "grid_summary",
    "nearest_center",
]


class GaussianMixture(NamedTuple):
    """``sum_k weights[k] N(means[k], covs[k])``.

    Attributes:
      weights: ``[K]``, summing to one.
      means: ``[K, d]``.
      covs: ``[K, d, d]``.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    @property
    def dim(self) -> int:
        return self.means.shape[1]


def make(weights, means, covs) -> GaussianMixture:
    """Build a mixture; ``covs`` may be a scalar, ``[K]`` (isotropic), ``[K, d]`` (diagonal) or
    ``[K, d, d]``; ``means`` may be ``[K]`` for one dimension. Weights are normalised."""
    w = np.asarray(weights, np.float64)
    mu = np.asarray(means, np.float64)
    if mu.ndim == 1:
        mu = mu[:, None]
    k, d = mu.shape
    if w.shape != (k,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum")
    c = np.asarray(covs, np.float64)
    if c.ndim == 0:
        c = np.broadcast_to(c * np.eye(d), (k, d, d))
    elif c.shape == (k,):
        c = c[:, None, None] * np.eye(d)[None]
    elif c.shape == (k, d):
        c = np.einsum("ki,ij->kij", c, np.eye(d))
    elif c.shape != (k, d, d):
        raise ValueError(f"covs of shape {c.shape} do not fit {k} components in {d} dimensions")
    return GaussianMixture(w / w.sum(), mu, np.array(c))


def _log_normals(mix: GaussianMixture, x):
    x = np.asarray(x, np.float64)
    diff = x[..., None, :] - mix.means
    chol = np.linalg.cholesky(mix.covs)
    z = np.einsum("kij,...kj->...ki", np.linalg.inv(chol), diff)
    logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * np.sum(z * z, -1) - 0.5 * logdet - 0.5 * mix.dim * math.log(2 * math.pi)


def log_prob(mix: GaussianMixture, x):
    """``log q(x)`` for ``x`` of shape ``[..., d]``."""
    return logsumexp(np.log(mix.weights) + _log_normals(mix, x), axis=-1)


def sample(mix: GaussianMixture, n: int, seed: int = 0):
    """``n`` exact draws ``[n, d]`` (NumPy generator seeded with ``seed``)."""
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(mix.weights), size=n, p=mix.weights)
    chol = np.linalg.cholesky(mix.covs)
    eps = rng.standard_normal((n, mix.dim))
    return mix.means[comp] + np.einsum("nij,nj->ni", chol[comp], eps)


def moments(mix: GaussianMixture):
    """``(mean [d], cov [d, d])``."""
    m = mix.weights @ mix.means
    diff = mix.means - m
    cov = np.einsum("k,kij->ij", mix.weights, mix.covs) + np.einsum("k,ki,kj->ij", mix.weights,
                                                                     diff, diff)
    return m, cov


def noised(mix: GaussianMixture, alpha, sigma) -> GaussianMixture:
    """The law of ``alpha x_0 + sigma eps`` for ``x_0 ~ mix``."""
    alpha, sigma = float(alpha), float(sigma)
    covs = alpha**2 * mix.covs + sigma**2 * np.eye(mix.dim)[None]
    return GaussianMixture(mix.weights.copy(), alpha * mix.means, covs)


def _combine(exponents, means, covs):
    """``prod_j N(x; means_j, covs_j)^{e_j} = exp(log_c) N(x; m, C)``; returns ``(log_c, m, C)``."""
    d = means[0].shape[0]
    prec = np.zeros((d, d))
    h = np.zeros(d)
    kappa = 0.0
    for e, mu, cov in zip(exponents, means, covs, strict=True):
        p = np.linalg.inv(cov)
        prec += e * p
        h += e * p @ mu
        kappa += e * (-0.5 * np.linalg.slogdet(2 * math.pi * cov)[1] - 0.5 * mu @ p @ mu)
    evals = np.linalg.eigvalsh(prec)
    if np.any(evals <= 0):
        raise ValueError("the product of Gaussian powers is not normalisable (precision not PD)")
    cov = np.linalg.inv(prec)
    m = cov @ h
    log_c = kappa + 0.5 * h @ m + 0.5 * (d * math.log(2 * math.pi) - np.sum(np.log(evals)))
    return log_c, m, 0.5 * (cov + cov.T)


def _finish(log_terms, means, covs):
    log_terms = np.asarray(log_terms)
    log_z = float(logsumexp(log_terms))
    return GaussianMixture(np.exp(log_terms - log_z), np.array(means), np.array(covs)), log_z


def product(*mixtures: GaussianMixture):
    """``prod_j q^(j)`` expanded over all component tuples; returns ``(mixture, log Z)``."""
    log_terms, means, covs = [], [], []
    for idx in itertools.product(*[range(len(m.weights)) for m in mixtures]):
        pairs = list(zip(mixtures, idx, strict=True))
        log_c, m, c = _combine([1.0] * len(idx), [q.means[i] for q, i in pairs],
                               [q.covs[i] for q, i in pairs])
        log_terms.append(log_c + sum(math.log(q.weights[i]) for q, i in pairs))
        means.append(m)
        covs.append(c)
    return _finish(log_terms, means, covs)


def power(mix: GaussianMixture, m: int):
    """``q^m`` for an integer ``m >= 1`` (multinomial expansion); returns ``(mixture, log Z)``."""
    if int(m) != m or m < 1:
        raise ValueError(f"power needs an integer m >= 1, got {m}; use grid_summary otherwise")
    m = int(m)
    log_terms, means, covs = [], [], []
    for combo in itertools.combinations_with_replacement(range(len(mix.weights)), m):
        comps, counts = np.unique(np.asarray(combo), return_counts=True)
        log_c, mu, c = _combine(counts.astype(float), mix.means[comps], mix.covs[comps])
        log_multi = gammaln(m + 1) - np.sum(gammaln(counts + 1))
        log_terms.append(log_c + log_multi + np.sum(counts * np.log(mix.weights[comps])))
        means.append(mu)
        covs.append(c)
    return _finish(log_terms, means, covs)


def multiply_gaussian_power(mix: GaussianMixture, mean, cov, exponent: float):
    """``q(x) N(x; mean, cov)^exponent`` for any real exponent; returns ``(mixture, log Z)``."""
    mean = np.asarray(mean, np.float64).reshape(mix.dim)
    cov = np.asarray(cov, np.float64).reshape(mix.dim, mix.dim)
    log_terms, means, covs = [], [], []
    for w, mu, c in zip(mix.weights, mix.means, mix.covs, strict=True):
        log_c, m, cc = _combine([1.0, float(exponent)], [mu, mean], [c, cov])
        log_terms.append(math.log(w) + log_c)
        means.append(m)
        covs.append(cc)
    return _finish(log_terms, means, covs)


def gaussian_tilt(mix: GaussianMixture, center, precision, lam: float):
    """``q(x) exp(lam r(x))``, ``r(x) = -(x - c)^T P (x - c) / 2``; returns ``(mixture, log Z)``.

    Uses ``exp(lam r) = N(x; c, P^{-1})^lam |2 pi P^{-1}|^{lam / 2}``.
    """
    cov = np.linalg.inv(np.asarray(precision, np.float64).reshape(mix.dim, mix.dim))
    out, log_z = multiply_gaussian_power(mix, center, cov, lam)
    return out, log_z + 0.5 * lam * np.linalg.slogdet(2 * math.pi * cov)[1]


def cfg_target(uncond: GaussianMixture, cond: GaussianMixture, w: int):
    """Classifier-free guidance target ``q_c^w q_u^{1-w}`` for one-Gaussian ``q_u``, integer ``w``.

    Returns ``(mixture, log Z)``. Other cases have no closed form: use :func:`grid_summary`.
    """
    if len(uncond.weights) != 1:
        raise ValueError("cfg_target needs a single-Gaussian unconditional law; use grid_summary")
    if w == 1:
        return cond, 0.0
    base, log_z = power(cond, w)
    out, log_z2 = multiply_gaussian_power(base, uncond.means[0], uncond.covs[0], 1.0 - w)
    return out, log_z + log_z2


def linear_gaussian_posterior(mix: GaussianMixture, A, y, noise_cov):
    """Posterior of ``x ~ mix`` given ``y = A x + e``, ``e ~ N(0, R)``: ``(mixture, log p(y))``."""
    A = np.atleast_2d(np.asarray(A, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    R = np.atleast_2d(np.asarray(noise_cov, np.float64))
    log_terms, means, covs = [], [], []
    for w, m, c in zip(mix.weights, mix.means, mix.covs, strict=True):
        s = A @ c @ A.T + R
        gain = np.linalg.solve(s, A @ c).T
        r = y - A @ m
        log_terms.append(math.log(w) - 0.5 * np.linalg.slogdet(2 * math.pi * s)[1]
                         - 0.5 * r @ np.linalg.solve(s, r))
        means.append(m + gain @ r)
        cc = c - gain @ A @ c
        covs.append(0.5 * (cc + cc.T))
    return _finish(log_terms, means, covs)


def nearest_center(centers):
    """``assign(x) -> int labels``: index of the nearest centre (Voronoi regions)."""
    centers = np.asarray(centers, np.float64)
    if centers.ndim == 1:
        centers = centers[:, None]

    def assign(x):
        x = np.asarray(x, np.float64)
        return np.argmin(np.sum((x[..., None, :] - centers) ** 2, axis=-1), axis=-1)

    assign.num_regions = centers.shape[0]
    return assign


def grid_summary(log_density, bounds, num: int = 2001, assign=None):
    """Normaliser, mean, covariance and region masses of ``exp(log_density)`` on a grid.

    Args:
      log_density: vectorised NumPy function ``[..., d] -> [...]`` (``d`` is 1 or 2), the log
        of an unnormalised density.
      bounds: ``[(lo, hi)] * d``, covering all but a negligible part of the mass.
      num: grid points per axis.
      assign: optional region labelling (e.g. :func:`nearest_center`) with ``num_regions``.

    Returns:
      dict with ``log_z``, ``mean [d]``, ``cov [d, d]`` and (with ``assign``) ``masses``.
    """
    axes = [np.linspace(lo, hi, num) for lo, hi in bounds]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(bounds))
    cell = np.prod([a[1] - a[0] for a in axes])
    lp = np.asarray(log_density(mesh), np.float64)
    log_z = float(logsumexp(lp) + math.log(cell))
    p = np.exp(lp - logsumexp(lp))
    mean = p @ mesh
    diff = mesh - mean
    out = {"log_z": log_z, "mean": mean, "cov": (p[:, None] * diff).T @ diff}
    if assign is not None:
        out["masses"] = np.bincount(assign(mesh), weights=p, minlength=assign.num_regions)
    return out

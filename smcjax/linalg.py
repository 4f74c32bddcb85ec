"""Small dense linear algebra in plain JAX ops (no LAPACK custom calls).

The samplers whiten particles with a ``d × d`` Cholesky factor at every temperature, and the
built-in models evaluate Gaussian densities inside compiled loops. On CPU, ``jnp.linalg`` and
``jax.scipy.linalg`` lower to LAPACK custom calls (``lapack_spotrf_ffi``, ``lapack_strsm_ffi``).
With jaxlib 0.10.2 we observed a deadlock when two such calls were scheduled concurrently
inside a ``lax.while_loop`` (a vmapped tempered SMC run, 32 × 1000 particles: every thread idle,
the result never ready; it runs through on one core). The routines here use only loops,
element-wise ops and matrix products, so they cannot take part in that, and one product by a
precomputed inverse factor is cheaper than a triangular solve per particle anyway.

* :func:`cholesky`: ``A = L L'`` by the column-oriented Cholesky–Crout recursion
  ``L_jj = sqrt(A_jj - Σ_{k<j} L_jk²)``, ``L_ij = (A_ij - Σ_{k<j} L_ik L_jk) / L_jj``;
  ``d`` sequential steps of ``O(d²)`` work. A matrix that is not positive definite gives NaN
  (as LAPACK-backed ``jnp.linalg.cholesky`` does).
* :func:`tril_inverse`: ``L⁻¹`` by forward substitution on the identity, row by row.
* :func:`mvn_logpdf`: ``log N(x; μ, L L')`` from ``L⁻¹`` and ``log det L``.

They are meant for the small matrices of particle methods (``d`` up to a few hundred).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = ["cholesky", "tril_inverse", "mvn_logpdf", "chol_factors"]


def cholesky(a):
    """Lower Cholesky factor of a symmetric positive definite ``a`` (``[d, d]``), NaN if not PD."""
    a = jnp.asarray(a)
    d = a.shape[-1]
    idx = jnp.arange(d)

    def column(j, L):
        row = L[j]  # entries k < j are set, the rest are 0
        diag = jnp.sqrt(a[j, j] - jnp.dot(row, row))
        col = (a[:, j] - L @ row) / diag
        col = jnp.where(idx > j, col, 0.0)
        return L.at[:, j].set(col).at[j, j].set(diag)

    return lax.fori_loop(0, d, column, jnp.zeros_like(a))


def tril_inverse(chol):
    """Inverse of a lower-triangular ``chol`` (``[d, d]``) by forward substitution."""
    chol = jnp.asarray(chol)
    d = chol.shape[-1]
    eye = jnp.eye(d, dtype=chol.dtype)

    def row(i, inv):
        # row i of L⁻¹: (e_i - Σ_{k<i} L_ik (L⁻¹)_k) / L_ii ; rows k >= i of inv are still 0
        return inv.at[i].set((eye[i] - chol[i] @ inv) / chol[i, i])

    return lax.fori_loop(0, d, row, jnp.zeros_like(chol))


def chol_factors(cov):
    """``(L, L⁻¹, log det L)`` of a covariance (``[d, d]``), in plain JAX ops."""
    chol = cholesky(cov)
    return chol, tril_inverse(chol), jnp.sum(jnp.log(jnp.diagonal(chol)))


def mvn_logpdf(x, mean, chol_inv, log_det_chol):
    """``log N(x; mean, Σ)`` for one ``x`` (``[d]``), given ``L⁻¹`` and ``log det L`` of ``Σ = L L'``."""
    z = chol_inv @ (x - mean)
    d = x.shape[-1]
    return (-0.5 * jnp.sum(z * z) - log_det_chol
            - 0.5 * d * jnp.log(2.0 * jnp.pi).astype(z.dtype))


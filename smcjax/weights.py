"""Log-weight algebra: normalisation, log-mean-exp, ESS and conditional ESS.

Every function takes *log* weights with the particle axis first and stays in log space, so it
is stable in float32 for weights spanning hundreds of orders of magnitude. A weight of zero is
``-inf``; functions below never turn an all-``-inf`` vector into NaN silently: they return
``-inf`` totals, and :func:`normalize` returns uniform weights together with a ``-inf`` total,
which callers check. A NaN or ``+inf`` entry is not a weight: these functions return NaN (or a
meaningless value) for it, like ``numpy``. Map such entries to zero weight first with
:func:`sanitize`, as the SMC engine and the resampling schemes do.

Formulas (W normalised weights, w incremental weights, N particles):

* ``ESS = 1 / sum_i W_i^2``;
* ``CESS = N (sum_i W_i w_i)^2 / sum_i W_i w_i^2`` (Zhou, Johansen & Aston 2016), used to choose
  the next temperature when the current particles are weighted;
* ``log_mean_exp(l) = log (1/N) sum_i exp(l_i)``.

References: N. Chopin and O. Papaspiliopoulos, *An Introduction to Sequential Monte Carlo*,
Springer 2020, ch. 8-9.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = [
    "logsumexp",
    "log_mean_exp",
    "normalize",
    "normalized_weights",
    "ess",
    "log_ess",
    "normalize_and_ess",
    "conditional_ess",
    "sanitize",
]


def logsumexp(log_weights):
    """``log sum_i exp(l_i)``; ``-inf`` (not NaN) when every entry is ``-inf``."""
    log_weights = jnp.asarray(log_weights)
    m = jnp.max(log_weights)
    safe_m = jnp.where(jnp.isfinite(m), m, 0.0)
    total = jnp.log(jnp.sum(jnp.exp(log_weights - safe_m))) + safe_m
    return jnp.where(m == -jnp.inf, -jnp.inf, total)


def log_mean_exp(log_weights):
    """``log (1/N) sum_i exp(l_i)``, stable; ``-inf`` when all entries are ``-inf``."""
    n = jnp.shape(log_weights)[0]
    return logsumexp(log_weights) - jnp.log(jnp.asarray(n, jnp.result_type(log_weights)))


def normalize(log_weights):
    """Normalise log weights.

    The maximum is subtracted first (exact in floating point for nearby values) and only then
    the log of the (order-one) sum, so float32 weights around 1e3 in log space keep full
    relative precision.

    Returns:
      ``(log_W, log_total)`` with ``logsumexp(log_W) == 0`` and
      ``log_total = logsumexp(log_weights)``. If every weight is zero, ``log_total`` is
      ``-inf`` and ``log_W`` is uniform (``-log N``) so that nothing downstream becomes NaN;
      the caller must report the collapse.
    """
    log_w, log_total, _ = normalize_and_ess(log_weights)  # under jit XLA drops the unused sum
    return log_w, log_total


def normalized_weights(log_weights):
    """``W_i = exp(l_i) / sum_j exp(l_j)`` (uniform if every weight is zero)."""
    return jnp.exp(normalize(log_weights)[0])


def _max(x, nan_free=False):
    """``max(x)`` over the first axis of a vector. With ``nan_free`` (the caller guarantees no
    NaN, e.g. after :func:`sanitize`) it is a select reduction (``a if a > b else b``), which
    XLA CPU vectorises; the NaN-propagating ``jnp.max`` was not, and cost about twice as
    much (1.4 against 0.7 us at N = 10^3, one core)."""
    if not nan_free:
        return jnp.max(x)
    low = jnp.array(-jnp.inf, x.dtype)
    return lax.reduce(x, low, lambda a, b: jnp.where(a > b, a, b), (0,))


def _shifted_moments(log_weights, nan_free=False):
    """``(m, finite, s1, s2)``: the maximum, whether it is finite, and ``sum e``, ``sum e^2``
    for ``e = exp(l - m)`` (``m`` replaced by 0 when not finite).

    With a finite maximum the largest ``e`` is exactly 1, so ``s1 >= 1`` and ``s2 >= 1``: no
    underflow, whatever the spread of the weights. The two sums read the same input, which
    lets XLA compute them in one pass.
    """
    log_weights = jnp.asarray(log_weights)
    m = _max(log_weights, nan_free)
    finite = jnp.isfinite(m)
    e = jnp.exp(log_weights - jnp.where(finite, m, 0.0))
    return m, finite, jnp.sum(e), jnp.sum(e * e)


def log_ess(log_weights):
    """``log ESS = 2 log sum_i w_i - log sum_i w_i^2``, with ``w`` shifted by the maximum.

    Uniform (``log N``) when every weight is zero, like :func:`normalize`.
    """
    _, finite, s1, s2 = _shifted_moments(log_weights)
    n = jnp.shape(log_weights)[0]
    log_n = jnp.log(jnp.asarray(n, jnp.result_type(log_weights)))
    return jnp.where(finite, 2.0 * jnp.log(s1) - jnp.log(s2), log_n)


def ess(log_weights):
    """Effective sample size ``1 / sum_i W_i^2 = (sum_i w_i)^2 / sum_i w_i^2``, in [1, N]."""
    _, finite, s1, s2 = _shifted_moments(log_weights)
    n = jnp.shape(log_weights)[0]
    return jnp.where(finite, s1 * (s1 / s2), jnp.asarray(n, jnp.result_type(log_weights)))


def normalize_and_ess(log_weights, *, nan_free=False):
    """:func:`normalize` and :func:`ess` together, from one maximum and one pass of sums.

    ``nan_free=True`` promises that no entry is NaN (``-inf`` and finite values only, as after
    :func:`sanitize`), which allows a faster maximum.

    Returns:
      ``(log_W, log_total, ess)``; with every weight zero, ``log_W`` is uniform,
      ``log_total`` is ``-inf`` and ``ess`` is 0 (nothing survives).
    """
    log_weights = jnp.asarray(log_weights)
    m, finite, s1, s2 = _shifted_moments(log_weights, nan_free)
    shift = jnp.where(finite, m, 0.0)
    log_sum = jnp.log(s1)
    n = log_weights.shape[0]
    uniform = jnp.full_like(log_weights, -jnp.log(jnp.asarray(n, log_weights.dtype)))
    log_w = jnp.where(finite, log_weights - shift - log_sum, uniform)
    total = jnp.where(finite, m + log_sum, -jnp.inf)
    return log_w, total, jnp.where(finite, s1 * (s1 / s2), 0.0)


def conditional_ess(log_weights, log_increments):
    """Conditional ESS of incremental weights ``w`` under current weights ``W``.

    ``CESS = N (sum_i W_i w_i)^2 / sum_i W_i w_i^2``, between 1 and N. With uniform ``W`` it
    equals the ESS of ``w``. Particles whose ``W`` or ``w`` is zero drop out.
    """
    log_w, _ = normalize(log_weights)
    n = log_w.shape[0]
    log_increments = sanitize(log_increments)[0]
    a = logsumexp(log_w + log_increments)
    b = logsumexp(log_w + 2.0 * log_increments)
    out = jnp.log(jnp.asarray(n, log_w.dtype)) + 2.0 * a - b
    return jnp.where(jnp.isfinite(out), jnp.exp(out), 0.0)


def sanitize(log_values):
    """Map every non-finite entry (NaN, +inf, -inf) to ``-inf``.

    Returns:
      ``(clean, num_invalid)``: ``clean`` has only finite entries or ``-inf``;
      ``num_invalid`` counts the entries that were not finite (int32). A NaN or infinite
      log-likelihood therefore gives that particle zero weight and is counted, rather than
      poisoning the whole population.
    """
    log_values = jnp.asarray(log_values)
    bad = ~jnp.isfinite(log_values)
    clean = jnp.where(bad, -jnp.inf, log_values)
    return clean, jnp.sum(bad, dtype=jnp.int32)

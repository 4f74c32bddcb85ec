"""Resampling schemes with fixed output shapes, exact in float32.

Every scheme has the signature ``scheme(key, log_weights, num_samples=None) -> ancestors`` and
returns ``int32[num_samples]`` indices into the particle axis (``num_samples`` defaults to the
number of particles N and must be static). The built-in schemes also take
``normalized=True``, which promises ``logsumexp(log_weights) == 0`` (an SMC state's weights)
and skips the renormalisation (two reductions). Every scheme is unbiased: the expected number of
copies of particle i is ``M W_i`` with ``W`` the normalised weights and ``M = num_samples``.

How the schemes are computed (all in O(N) work unless stated):

* **systematic**: points ``(k + U) / M`` with one ``U ~ U[0, 1)``;
* **stratified**: points ``(k + U_k) / M`` with independent ``U_k``;
* **multinomial**: M sorted i.i.d. uniforms, made in O(M) from normalised cumulative sums of
  exponential spacings, then located with a binary search (O(N log M));
* **residual**: ``floor(M W_i)`` deterministic copies plus a multinomial draw on the residuals
  (binary search, O(M log N));
* **ssp** (Srinivasan sampling process): ``floor(M W_i)`` copies plus dependent Bernoulli
  rounding of the fractional parts, done pairwise on a binary tree (log2 N levels, O(N) work);
* **killing**: particle i survives with probability ``W_i / max_j W_j``; each killed slot takes
  a draw from a stratified sample whose order is rotated by a uniform random offset (which
  keeps the replacement marginal exactly ``W``). Requires ``num_samples == N``.

The point-based schemes count, for each particle, how many points fall below the upper end
of its cumulative-weight interval, and turn those counts into ancestor indices with one
scatter-add and one cumulative sum; no sort and no ``searchsorted`` is needed for systematic
and stratified resampling.

Non-finite log weights: NaN and ``+inf`` count as zero weight, like ``-inf`` (the engine's
convention, see :func:`smcjax.weights.sanitize`), so a NaN weight is never returned and does
not poison the others. With ``normalized=True`` the caller promises finite or ``-inf`` entries.

Float32 guarantees, tested at N = 4·10^6:

* A particle with zero weight (``log_weight = -inf``, or a weight that underflows to 0) is
  never returned. A parallel cumulative sum is not guaranteed to be flat across zero weights
  or non-decreasing; the schemes detect that (one reduction) and then recompute the counts on
  a cumulative sum flattened by a running maximum.
* No ``-log(u)`` of a uniform is ever taken: exponentials come from ``-log1p(-u)`` with
  ``u in [0, 1)``, so a draw of exactly 0 does not collapse the batch onto one index.
* The cumulative sum is forced to end exactly at 1 at the last positive-weight particle.

The float32 cumulative sum limits how exactly ``E[copies_i] = M W_i`` holds for very large N
(absolute error about ``M * N * 2^-24`` copies in the worst case); that is a property of the
floating point format, shared by every float32 implementation.

References: N. Chopin and O. Papaspiliopoulos, *An Introduction to Sequential Monte Carlo*,
Springer 2020, ch. 9; A. Srinivasan, "Distributions on level-sets with applications to
approximation algorithms", FOCS 2001; R. Douc, O. Cappé, E. Moulines, "Comparison of resampling
schemes for particle filtering", ISPA 2005.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from smcjax.random import uniform_scalar
from smcjax.weights import _max, normalize_and_ess, sanitize

__all__ = [
    "multinomial",
    "stratified",
    "systematic",
    "residual",
    "ssp",
    "killing",
    "SCHEMES",
    "get_scheme",
    "resample_if_needed",
    "resample_and_take",
]

Scheme = Callable[..., jax.Array]


_BLOCK = 32
_MAX_BLOCK = 64
_MONOTONE_FROM = 8192  # blocks (N >= 262144): see _cumsum


def _blocks(x, fill=0, size=None):
    """``x`` padded with ``fill`` to whole blocks of ``size`` (default ``min(len(x), 32)``):
    ``[blocks, size]``."""
    n = x.shape[0]
    size = min(n, _BLOCK) if size is None else size
    num_blocks = -(-n // size)
    return jnp.pad(x, (0, num_blocks * size - n), constant_values=fill).reshape(num_blocks, size)


def _block_size(n: int) -> int:
    """The block length of :func:`_cumsum` for ``n`` elements.

    ``n`` itself up to 64; otherwise a divisor of ``n`` between 16 and 64, so that the vector
    reshapes into blocks without padding (preferring multiples of 8, the float32 SIMD width,
    then the divisor closest to 32); 32 with padding when ``n`` has no such divisor.

    Padding is not free on CPU: at N = 1000 the padded ``[32, 32]`` operand was a loop of its
    own that XLA did not vectorise (with ``exp`` fused in, about 2.9 us of a 6 us sum), while
    ``[25, 40]`` blocks need no copy.
    """
    if n <= _MAX_BLOCK:
        return n
    divisors = [b for b in range(16, _MAX_BLOCK + 1) if n % b == 0]
    if not divisors:
        return _BLOCK
    return min(divisors, key=lambda b: (b % 8 != 0, abs(b - _BLOCK), -b))


def _materialize(v):
    """``v`` unchanged (finite float vector), computed as a product with the identity.

    XLA CPU fuses cheap producers into their consumers. For the per-block offsets of
    :func:`_cumsum` that meant every level's concatenates and slices were recomputed inside
    the N-element loop that consumes the sum, which then ran unvectorised (about 3-5 ns per
    element; most of a particle filter step at N = 10^4). A dot is never fused into a
    consumer, so its output is a plain vector; ``lax.optimization_barrier`` does not do this
    on CPU (it is removed before fusion). The product costs ``32 len(v)`` multiply-adds and
    is exact: every output is one ``v_i * 1`` plus zeros.
    """
    m = _blocks(v)
    eye = np.eye(m.shape[1], dtype=np.dtype(v.dtype))  # a literal: never recomputed in a loop
    return jnp.dot(m, eye, precision=lax.Precision.HIGHEST).reshape(-1)[:v.shape[0]]


def _cumsum(x, monotone=True):
    """Inclusive cumulative sum of a float vector, in O(N) work.

    Blocks of ``b`` (see :func:`_block_size`; 40 at N = 10^3 and 10^4) are summed by one
    matrix product with a ``b x b`` triangular matrix. The block totals take one product with
    a strictly triangular matrix when there are at most 64 blocks (which gives each block's
    offset directly), and otherwise the same function recursively (``log_b N`` levels).
    XLA's own ``jnp.cumsum`` and ``lax.associative_scan`` cost 5-10 ns per element on CPU;
    this costs 2-4. Precision is float32 accumulation (``Precision.HIGHEST``, so TPUs do not
    drop to bfloat16); sums run over at most 64 terms per level, so the error grows like
    ``log_b N``, not N. With ``monotone`` (for ``x >= 0``) the result is also non-decreasing
    from 8192 blocks on (see below); exact integer sums skip that.
    """
    n = x.shape[0]
    size = _block_size(n)
    blocks = _blocks(x, size=size)
    num_blocks = blocks.shape[0]
    tri = np.triu(np.ones((size, size), np.dtype(x.dtype)))  # a literal, see _materialize
    within = jnp.dot(blocks, tri, precision=lax.Precision.HIGHEST)
    if num_blocks == 1:
        return within.reshape(-1)[:n]
    if num_blocks <= _MAX_BLOCK:
        # Exclusive prefix sums of the block totals: a product's output is a plain vector
        # (see _materialize), and it needs no concatenation.
        strict = np.triu(np.ones((num_blocks, num_blocks), np.dtype(x.dtype)), 1)
        offsets = jnp.dot(within[:, -1], strict, precision=lax.Precision.HIGHEST)
    else:
        totals = _cumsum(within[:, -1], monotone)
        offsets = _materialize(jnp.concatenate([jnp.zeros((1,), x.dtype), totals[:-1]]))
    out = within + offsets[:, None]
    if not monotone or num_blocks < _MONOTONE_FROM:
        return out.reshape(-1)[:n]
    # The offsets are summed in a different order than ``offset + within`` of the previous
    # block's last element, so a block can start one rounding step below where the last one
    # ended. Raising each block to the running maximum of the previous block ends (over
    # N / b values) makes the result non-decreasing for x >= 0. Without it the resamplers'
    # monotonicity check failed at almost every step of a particle filter at N = 10^6 and
    # took its slow branch (a fifth of the run); at N = 3·10^5 at 6 of 14 steps, at 10^5 at
    # none. With fewer blocks the check's rare fallback is cheaper than the repair.
    # (0 rather than -inf below: x >= 0, and _materialize multiplies by zeros)
    ends = _cummax(out[:, -1])
    floor = _materialize(jnp.concatenate([jnp.zeros((1,), x.dtype), ends[:-1]]))
    return jnp.maximum(out, floor[:, None]).reshape(-1)[:n]


def _cummax(x):
    """Inclusive running maximum of a vector, blocked like :func:`_cumsum`.

    Blocks of 32 take a masked maximum over a ``[blocks, 32, 32]`` broadcast, block maxima
    recurse. Each level is two fused loops: XLA's ``lax.cummax`` lowers to a chain of
    reduce-windows whose launches cost about 10 us a step at N = 10^3 in a particle filter.
    """
    n = x.shape[0]
    low = jnp.array(-jnp.inf, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else \
        jnp.array(jnp.iinfo(x.dtype).min, x.dtype)
    blocks = _blocks(x, low)
    num_blocks, size = blocks.shape
    upto = np.arange(size)[:, None] <= np.arange(size)[None, :]  # [i, j]: i <= j
    within = jnp.max(jnp.where(upto[None], blocks[:, :, None], low), axis=1)
    if num_blocks == 1:
        return within.reshape(-1)[:n]
    tops = _cummax(within[:, -1])
    prev = jnp.concatenate([jnp.full((1,), low, x.dtype), tops[:-1]])
    return jnp.maximum(within, prev[:, None]).reshape(-1)[:n]


def _cummax_compact(x):
    # Only on rarely taken branches: compact code, slower than the blocked cumulative sum.
    return lax.cummax(x)


def _weights(log_weights, normalized=False):
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim != 1:
        raise ValueError(f"log_weights must be one-dimensional, got shape {log_weights.shape}")
    if not jnp.issubdtype(log_weights.dtype, jnp.floating):
        log_weights = log_weights.astype(jnp.float32)
    if not normalized:
        log_weights = normalize_and_ess(sanitize(log_weights)[0], nan_free=True)[0]
    w = jnp.exp(log_weights)
    return w, w > 0


def _num_samples(log_weights, num_samples):
    n = jnp.shape(log_weights)[0]
    m = n if num_samples is None else num_samples
    if not isinstance(m, int) or m <= 0:
        raise ValueError(f"num_samples must be a positive Python int, got {m!r}")
    if n <= 0:
        raise ValueError("log_weights is empty: there are no particles to resample")
    return m


def _last_positive(positive):
    idx = jnp.arange(positive.shape[0], dtype=jnp.int32)
    return jnp.max(jnp.where(positive, idx, -1))


def _ancestors_from_below(below, positive, m):
    """Ancestor indices from ``below[i]`` (points below particle i's upper boundary).

    The profile is first made valid: non-decreasing, flat across zero-weight particles, 0
    before the first positive particle and ``m`` from the last positive particle on. A
    float32 cumulative sum almost always gives such a profile; one reduction checks it, and
    only when the check fails is it flattened by a running maximum. The check selects the
    whole conversion (not only the profile), so the common branch is one fused pass.
    """
    idx = jnp.arange(below.shape[0], dtype=jnp.int32)
    below = jnp.where(idx >= _last_positive(positive), m, jnp.clip(below, 0, m))
    prev = jnp.concatenate([jnp.zeros((1,), below.dtype), below[:-1]])
    ok = jnp.all((below >= prev) & (positive | (below == prev)))
    return lax.cond(
        ok,
        lambda b: _ancestors_from_counts_below(b, m),
        lambda b: _ancestors_from_counts_below(_cummax_compact(jnp.where(positive, b, 0)), m),
        below,
    )


def _ancestors_from_counts_below(below, m):
    """Ancestor indices from a valid profile: ``a_k = #{i : below_i <= k}``, ``k < m``.

    ``below`` is non-decreasing in ``[0, m]`` and ends at ``m``, so every ``a_k < N``, and
    particle i is picked ``below_i - below_{i-1}`` times. Computed as a histogram of
    ``below`` (one scatter-add of ones, with ``below = m`` sent to a zero update) and a
    cumulative sum of it. The scatter promises in-bounds, sorted indices (they are, by
    construction): with ``mode="drop"`` the bounds-checked scatter cost 3.5 ns per particle
    on CPU, this one 0.8. Below ``2**24`` particles the histogram is counted in float32
    (sums of ones, exact) for the float32 cumulative sum: the same values as int32 counts
    converted, without the conversion pass (3-4 % of a bootstrap-filter step at N = 10^3).
    """
    exact_f32 = max(m, below.shape[0]) < 2**24  # float32 sums of small integers are exact
    dtype = jnp.float32 if exact_f32 else jnp.int32
    marks = jnp.zeros((m,), dtype).at[jnp.minimum(below, m - 1)].add(
        (below < m).astype(dtype), mode="promise_in_bounds", indices_are_sorted=True)
    if exact_f32:
        return _cumsum(marks, monotone=False).astype(jnp.int32)
    return jnp.cumsum(marks)


def _flat_cdf(w, positive):
    """Cumulative weights that are flat across zero weights and +inf from the last positive."""
    c = _cummax_compact(jnp.where(positive, jnp.cumsum(w), 0.0))
    idx = jnp.arange(w.shape[0], dtype=jnp.int32)
    return jnp.where(idx >= _last_positive(positive), jnp.inf, c)


def _inverse_cdf(w, positive, u):
    """Indices ``a_k = #{i : C_i <= u_k}`` that never land on a zero-weight particle."""
    n = w.shape[0]
    c = _cumsum(w)
    last = _last_positive(positive)
    a = jnp.minimum(jnp.searchsorted(c, u, side="right").astype(jnp.int32), last)
    bad = jnp.any(~positive[a])
    return lax.cond(
        bad,
        lambda: jnp.clip(jnp.searchsorted(_flat_cdf(w, positive), u, side="right"), 0, n - 1),
        lambda: a,
    ).astype(jnp.int32)


def _from_grid(w, positive, m, below_fn):
    x = _cumsum(w) * m
    return _ancestors_from_below(below_fn(x), positive, m)


def systematic(key, log_weights, num_samples=None, *, normalized=False):
    """Systematic resampling: points ``(k + U)/M``, ``k = 0..M-1``, one ``U ~ U[0,1)``.

    Particle i receives ``ceil(M C_i - U) - ceil(M C_{i-1} - U)`` copies, with ``C`` the
    cumulative normalised weights. Lowest variance in practice; O(N).
    """
    m = _num_samples(log_weights, num_samples)
    u = uniform_scalar(key, jnp.result_type(log_weights, jnp.float32))
    return systematic_from_uniforms(u, log_weights, m, normalized=normalized)


def systematic_from_uniforms(u, log_weights, num_samples, *, normalized=False):
    """:func:`systematic` given its uniform ``u`` in [0, 1) (exposed for edge-case tests)."""
    w, positive = _weights(log_weights, normalized)
    return _from_grid(w, positive, num_samples, lambda x: jnp.ceil(x - u).astype(jnp.int32))


def stratified(key, log_weights, num_samples=None, *, normalized=False):
    """Stratified resampling: points ``(k + U_k)/M`` with independent ``U_k ~ U[0,1)``.

    The number of points below ``x = M C_i`` is ``floor(x) + [U_floor(x) < x - floor(x)]``,
    a gather rather than a binary search, so the cost is O(N).
    """
    m = _num_samples(log_weights, num_samples)
    u = jax.random.uniform(key, (m,), jnp.result_type(log_weights, jnp.float32))
    return stratified_from_uniforms(u, log_weights, m, normalized=normalized)


def stratified_from_uniforms(u, log_weights, num_samples, *, normalized=False):
    """:func:`stratified` given its ``num_samples`` uniforms in [0, 1)."""
    m = num_samples
    w, positive = _weights(log_weights, normalized)

    def below(x):
        k = jnp.clip(jnp.floor(x), 0, m - 1).astype(jnp.int32)
        inside = (u[k] < x - k).astype(jnp.int32)
        return jnp.where(x >= m, m, k + inside)

    return _from_grid(w, positive, m, below)


def _sorted_uniforms(u):
    # Normalised partial sums of M+1 exponentials are the order statistics of M uniforms.
    # Exponentials are -log1p(-u), finite for u in [0, 1): a draw of exactly 0 gives E = 0.
    m = u.shape[0] - 1
    s = _cumsum(-jnp.log1p(-u))
    grid = (jnp.arange(m, dtype=u.dtype) + 0.5) / m
    return jnp.where(s[m] > 0, s[:m] / jnp.where(s[m] > 0, s[m], 1.0), grid)


def multinomial(key, log_weights, num_samples=None, *, normalized=False):
    """Multinomial resampling: M i.i.d. draws from ``W`` (returned in sorted order).

    Sorted uniforms come from exponential spacings (O(M)); locating them is a binary search,
    O(N log M).
    """
    m = _num_samples(log_weights, num_samples)
    u = jax.random.uniform(key, (m + 1,), jnp.result_type(log_weights, jnp.float32))
    return multinomial_from_uniforms(u, log_weights, m, normalized=normalized)


def multinomial_from_uniforms(u, log_weights, num_samples, *, normalized=False):
    """:func:`multinomial` given ``num_samples + 1`` uniforms in [0, 1)."""
    m = num_samples
    w, positive = _weights(log_weights, normalized)
    p = _sorted_uniforms(u)
    below = jnp.searchsorted(p, _cumsum(w), side="left").astype(jnp.int32)
    return _ancestors_from_below(below, positive, m)


def residual(key, log_weights, num_samples=None, *, normalized=False):
    """Residual resampling: ``floor(M W_i)`` copies, then ``R = M - sum floor(M W_i)``
    multinomial draws on the residual weights ``M W_i - floor(M W_i)``."""
    m = _num_samples(log_weights, num_samples)
    w, positive = _weights(log_weights, normalized)
    mw = m * w
    det = jnp.floor(mw)
    r = mw - det
    det = det.astype(jnp.int32)
    num_left = jnp.clip(m - jnp.sum(det), 0, m)
    r_total = jnp.sum(r)
    r_w = jnp.where(r_total > 0, r / jnp.where(r_total > 0, r_total, 1.0), w)
    u = jax.random.uniform(key, (m,), w.dtype)
    picks = _inverse_cdf(r_w, r_w > 0, u)
    use = jnp.arange(m) < num_left
    extra = jnp.zeros_like(det).at[picks].add(use.astype(jnp.int32))
    return _ancestors_from_below(jnp.cumsum(det + extra), positive, m)


def _ssp_round(key, frac):
    """Dependent rounding of fractional parts ``frac`` in [0, 1) to {0, 1}, keeping each mean.

    Pairs of still-fractional entries are combined level by level on a binary tree. For a
    pair ``(a, b)`` with ``s = a + b``: if ``s <= 1`` one of them takes ``s`` (the first with
    probability ``a/s``) and the other becomes 0; otherwise one becomes 1 (the first with
    probability ``(1-b)/(2-s)``) and the other keeps ``s - 1``. Each step preserves every
    entry's expectation, and at most one fractional entry survives a pair.
    """
    n = frac.shape[0]
    size = 1 << max(0, (n - 1).bit_length())
    val = jnp.zeros((size,), frac.dtype).at[:n].set(frac)
    who = jnp.arange(size, dtype=jnp.int32)
    out = jnp.zeros((size,), jnp.int32)
    # One draw for every pair of every level (size - 1 pairs in all): one RNG call to compile.
    u_all = jax.random.uniform(key, (max(1, size - 1),), frac.dtype)
    offset = 0
    while val.shape[0] > 1:
        a, b = val[0::2], val[1::2]
        wa, wb = who[0::2], who[1::2]
        s = a + b
        u = u_all[offset:offset + a.shape[0]]
        offset += a.shape[0]
        low = s <= 1.0
        p_a = jnp.where(low, a / jnp.where(s > 0, s, 1.0), (1.0 - b) / jnp.maximum(2.0 - s, 1e-30))
        first = u < p_a
        # low: winner keeps s, loser resolved to 0.  high: winner resolved to 1, loser keeps s-1.
        surv_is_a = jnp.where(low, first, ~first)
        resolved_who = jnp.where(surv_is_a, wb, wa)
        resolved_val = jnp.where(low, 0, 1).astype(jnp.int32)
        out = out.at[resolved_who].set(resolved_val)
        val = jnp.where(low, s, s - 1.0)
        who = jnp.where(surv_is_a, wa, wb)
    out = out.at[who[0]].set(jnp.round(val[0]).astype(jnp.int32))
    return out[:n]


def ssp(key, log_weights, num_samples=None, *, normalized=False):
    """Srinivasan sampling process: ``floor(M W_i)`` copies plus dependent rounding of the
    fractional parts so that the total is exactly M (up to float rounding) and each
    particle's count is ``floor(M W_i)`` or ``floor(M W_i) + 1``."""
    m = _num_samples(log_weights, num_samples)
    w, positive = _weights(log_weights, normalized)
    mw = m * w
    det = jnp.floor(mw)
    extra = _ssp_round(key, jnp.where(positive, mw - det, 0.0))
    return _ancestors_from_below(jnp.cumsum(det.astype(jnp.int32) + extra), positive, m)


def killing(key, log_weights, num_samples=None, *, normalized=False):
    """Killing resampling: particle i is kept in place with probability ``W_i / max W``;
    each killed slot is refilled with a draw from ``W``.

    The refill draws are a stratified sample read from a uniformly random starting offset, so
    each refill is marginally distributed as ``W`` and independent of which slots die.
    """
    n = jnp.shape(log_weights)[0]
    m = _num_samples(log_weights, num_samples)
    if m != n:
        raise ValueError(f"killing resampling needs num_samples == N ({n}), got {m}")
    k_keep, k_strat, k_shift = jax.random.split(key, 3)
    w, positive = _weights(log_weights, normalized)
    keep = jax.random.uniform(k_keep, (n,), w.dtype) < w / _max(w, nan_free=True)
    refill = stratified(k_strat, jnp.log(w), n, normalized=True)
    shift = jax.random.randint(k_shift, (), 0, n, dtype=jnp.int32)
    refill = jnp.roll(refill, shift)
    return jnp.where(keep & positive, jnp.arange(n, dtype=jnp.int32), refill)


SCHEMES: dict[str, Scheme] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
    "ssp": ssp,
    "killing": killing,
}


def get_scheme(scheme) -> Scheme:
    """A scheme function from its name (see ``SCHEMES``) or a callable with the same shape."""
    if callable(scheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    return SCHEMES[scheme]


def check_ess_threshold(ess_threshold) -> float:
    """Validate an ESS threshold (a fraction of N in [0, 1])."""
    try:
        value = float(ess_threshold)
    except (TypeError, ValueError):
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ess_threshold must lie in [0, 1], got {value}")
    return value


def resample_if_needed(key, log_weights, *, scheme="systematic", ess_threshold=0.5):
    """Resample when ``ESS < ess_threshold * N`` (``lax.cond``, so it jits).

    ``ess_threshold = 1`` resamples at every step and ``0`` never does.

    Returns:
      ``(ancestors, resampled)``: ``int32[N]`` indices (``arange(N)`` when not resampling) and
      a boolean scalar.
    """
    anc, did, _ = resample_and_take(key, log_weights, lambda a: (), (), scheme=scheme,
                                    ess_threshold=ess_threshold)
    return anc, did


def resample_and_take(key, log_weights, take, kept, *, scheme="systematic",
                      ess_threshold=0.5, normalized=False):
    """:func:`resample_if_needed`, also running ``take(ancestors)`` inside the same branch.

    ``take`` maps ``int32[N]`` ancestors to a pytree (e.g. the gathered particles ``x[a]``)
    and ``kept`` is what stands for it when there is no resampling (same structure). With
    ``ess_threshold = 1`` there is no branch: the schemes run, and ``take`` is left to XLA,
    which fuses the gather into the next vmapped transition (one loop over the particles
    fewer: 7-9 % of a bootstrap-filter step at N = 10^3). Sessions up to 20 kept a
    ``lax.cond`` here, always true, because that fusion had stopped XLA CPU from vectorising
    the per-particle random bits; with :mod:`smcjax.random`'s keys it no longer does.

    ``normalized=True`` promises ``logsumexp(log_weights) == 0`` (see the module docstring);
    it is passed on to the built-in schemes only.

    Returns:
      ``(ancestors, resampled, taken)``.
    """
    threshold = check_ess_threshold(ess_threshold)
    fn = get_scheme(scheme)
    if not normalized:  # NaN / +inf mean zero weight here too, for the ESS and any scheme
        log_weights = sanitize(log_weights)[0]
    n = jnp.shape(log_weights)[0]
    identity = jnp.arange(n, dtype=jnp.int32)
    if threshold <= 0.0:
        return identity, jnp.asarray(False), kept
    builtin = any(fn is f for f in SCHEMES.values())
    # Unnormalised weights (sanitised above) are normalised once, here: the built-in schemes
    # then skip their own normalisation, and the ESS below comes from the same sums.
    norm_lw, log_total, ess_value = (log_weights, None, None) if normalized else \
        normalize_and_ess(log_weights, nan_free=True)

    def resample():
        anc = fn(key, norm_lw, normalized=True) if builtin else fn(key, log_weights)
        anc = anc.astype(jnp.int32)
        return anc, take(anc)

    if threshold >= 1.0:
        anc, taken = resample()
        return anc, jnp.asarray(True), taken
    if normalized:
        do = 1.0 < threshold * n * jnp.sum(jnp.exp(2.0 * log_weights))  # ESS = 1 / sum W^2
    else:  # every weight zero: ESS counted as N (no resampling), as smcjax.weights.ess does
        do = jnp.where(jnp.isfinite(log_total), ess_value, n) < threshold * n
    anc, taken = lax.cond(do, resample, lambda: (identity, kept))
    return anc, do, taken

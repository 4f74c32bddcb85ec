"""Resampling: unbiasedness, zero-weight safety in float32 at N = 4e6, u = 0, jit parity."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from smcjax import resampling as rs
from smcjax.random import as_particle_key
from smcjax.weights import normalize

SCHEMES = sorted(rs.SCHEMES)


def _test_weights(n=24, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.gamma(0.7, size=n)
    w[[3, 4, 11, n - 1]] = 0.0  # zero weights inside runs and at the end
    w[7] = 6.0  # one dominant particle (more than one expected copy)
    w /= w.sum()
    with np.errstate(divide="ignore"):
        return np.log(w).astype(np.float32), w


def offspring_statistic(scheme, log_w, w, num_keys=3000, seed=1):
    """z-scores of mean offspring counts against N W_i, from ``num_keys`` independent draws."""
    n = log_w.shape[0]
    keys = jax.random.split(jax.random.key(seed), num_keys)
    anc = jax.jit(jax.vmap(lambda k: scheme(k, jnp.asarray(log_w))))(keys)
    counts = np.asarray(jax.vmap(lambda a: jnp.bincount(a, length=n))(anc), float)
    mean, sd = counts.mean(0), counts.std(0, ddof=1)
    expected = n * w
    se = sd / np.sqrt(num_keys)
    random_part = se > 0
    z = np.zeros(n)
    z[random_part] = (mean - expected)[random_part] / se[random_part]
    # Deterministic counts must equal N W_i up to float32 rounding.
    det_err = np.abs(mean - expected)[~random_part]
    return z, det_err, counts


def assert_unbiased(name, z, det_err, counts):
    """Every draw has N offspring, the z-scores pass a chi-square test (p > 1e-4) and the
    deterministic counts equal N W_i up to float32 rounding."""
    assert np.all(counts.sum(1) == counts.shape[1])
    chi2, dof = float(np.sum(z**2)), int(np.sum(z != 0))
    assert stats.chi2.sf(chi2, dof) > 1e-4, (name, chi2, dof, z)
    assert np.all(det_err < 1e-3), (name, det_err)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("name", SCHEMES)
def test_unbiased(name, normalized):
    """Unbiased offspring counts; ``normalized=True`` (the engine's path, which skips the
    renormalisation) is checked on weights normalised the way an SMC state holds them."""
    log_w, w = _test_weights()
    scheme = rs.SCHEMES[name]
    if normalized:
        log_w = np.asarray(normalize(jnp.asarray(log_w))[0])
        scheme = partial(scheme, normalized=True)
    z, det_err, counts = offspring_statistic(scheme, log_w, w)
    assert np.all(counts[:, w == 0] == 0)
    assert_unbiased(name, z, det_err, counts)
    assert np.max(np.abs(z)) < 5.0, (name, z)


@pytest.mark.parametrize("name", SCHEMES)
def test_non_finite_log_weights_mean_zero_weight(name):
    """NaN and +inf log weights count as zero weight, like -inf: such a particle is never
    returned and the others keep unbiased offspring counts (the engine's convention)."""
    log_w, w = _test_weights()
    log_w = log_w.copy()
    log_w[3], log_w[11] = np.nan, np.inf  # two of the zero-weight slots
    log_w[5] += 2.0  # unnormalised: the scheme must renormalise the finite part
    w = np.exp(np.where(np.isfinite(log_w), log_w, -np.inf).astype(float))
    w /= w.sum()
    z, det_err, counts = offspring_statistic(rs.SCHEMES[name], log_w, w, num_keys=2000)
    assert np.all(counts[:, [3, 4, 11, len(w) - 1]] == 0), name
    assert_unbiased(name, z, det_err, counts)


def test_resample_if_needed_ignores_nan_weights():
    """A NaN weight neither hides degeneracy (NaN ESS) nor gets picked."""
    lw = jnp.log(jnp.array([0.97, 0.01, 0.01, 0.01])).at[3].set(jnp.nan)
    anc, did = rs.resample_if_needed(jax.random.key(0), lw, ess_threshold=0.5)
    assert bool(did) and 3 not in np.asarray(anc).tolist()


def test_unbiasedness_check_rejects_a_biased_scheme():
    """The same statistic rejects systematic resampling with U frozen at 0 (a biased scheme)."""
    log_w, w = _test_weights()

    def frozen(key, lw):
        return rs.systematic_from_uniforms(jnp.float32(0.0), lw, lw.shape[0])

    def jittered(key, lw):  # random but wrong: U ~ U[0, 0.5)
        return rs.systematic_from_uniforms(0.5 * jax.random.uniform(key), lw, lw.shape[0])

    z, det_err, _ = offspring_statistic(frozen, log_w, w)
    assert np.max(det_err) > 1e-2
    z, det_err, _ = offspring_statistic(jittered, log_w, w)
    assert stats.chi2.sf(np.sum(z**2), np.sum(z != 0)) < 1e-4 or np.max(det_err) > 1e-2


@pytest.mark.parametrize("name", SCHEMES)
def test_num_samples_differs_from_n(name):
    log_w, w = _test_weights()
    if name == "killing":
        with pytest.raises(ValueError, match="num_samples == N"):
            rs.SCHEMES[name](jax.random.key(0), jnp.asarray(log_w), 10)
        return
    anc = rs.SCHEMES[name](jax.random.key(0), jnp.asarray(log_w), 100)
    assert anc.shape == (100,) and anc.dtype == jnp.int32
    assert np.all(w[np.asarray(anc)] > 0)


def _big_weights(n=4_000_000, seed=0):
    """float32 weights with many zeros between tiny and large weights: the case where a
    float32 parallel cumulative sum is not flat across zero weights."""
    rng = np.random.default_rng(seed)
    log_w = rng.normal(size=n).astype(np.float32) * 3.0
    zero = rng.random(n) < 0.5
    zero[:1000] = True
    zero[-1000:] = True
    zero[2_000_000:2_100_000] = True
    log_w[zero] = -np.inf
    log_w[rng.integers(0, n, 50)] = 25.0  # a few dominant weights
    log_w[zero] = -np.inf
    return log_w, zero


def test_never_picks_zero_weight_float32_4e6():
    log_w, zero = _big_weights()
    lw = jnp.asarray(log_w)
    lw_normalized = normalize(lw)[0]
    for seed, name in enumerate(SCHEMES):
        fn = jax.jit(rs.SCHEMES[name])
        fn_normalized = jax.jit(partial(rs.SCHEMES[name], normalized=True))
        key = as_particle_key(jax.random.key(seed))
        for anc in (np.asarray(fn(key, lw)), np.asarray(fn_normalized(key, lw_normalized))):
            assert anc.shape == (lw.shape[0],)
            assert not zero[anc].any(), f"{name} returned a zero-weight particle"
            assert anc.min() >= 0 and anc.max() < lw.shape[0]


def test_blocked_cumsum_is_monotone_and_cummax_exact():
    """From 8192 blocks on, the blocked cumulative sum is non-decreasing, so the resamplers'
    cheap branch is taken. Particle-filter-like weights at N = 10^6 (a few dominant, most
    tiny) made the unrepaired sum decrease across block boundaries at almost every step."""
    rng = np.random.default_rng(3)
    n = 10**6
    lw = jnp.asarray(-0.5 * (3.0 * rng.standard_normal(n)) ** 2, jnp.float32)
    w = jnp.exp(normalize(lw)[0])
    c = np.asarray(jax.jit(rs._cumsum)(w))
    assert np.all(np.diff(c) >= 0)
    assert abs(c[-1] - 1.0) < 1e-4
    # the repair only lifts values by rounding steps
    np.testing.assert_allclose(c, np.cumsum(np.asarray(w, np.float64)), atol=1e-5)
    for size in (1, 31, 32, 33, 1025, 40_000):
        x = rng.standard_normal(size).astype(np.float32)
        assert np.array_equal(np.asarray(rs._cummax(jnp.asarray(x))), np.maximum.accumulate(x))
        xi = rng.integers(-9, 9, size).astype(np.int32)
        assert np.array_equal(np.asarray(rs._cummax(jnp.asarray(xi))), np.maximum.accumulate(xi))



@pytest.mark.parametrize("n", [1, 40, 64, 65, 100, 997, 1000, 1024, 2500, 10_000])
def test_blocked_cumsum_matches_float64(n):
    """Block lengths that divide N (no padding) and padded ones (65 = 5 * 13 and the prime
    997 have no divisor in [16, 64]) agree with a float64 cumulative sum, and exact integer
    sums stay exact."""
    size = rs._block_size(n)
    assert size <= 64 and (n % size != 0) == (n in (65, 997))
    rng = np.random.default_rng(n)
    x = rng.random(n).astype(np.float32)
    c = np.asarray(jax.jit(rs._cumsum)(jnp.asarray(x)))
    np.testing.assert_allclose(c, np.cumsum(x.astype(np.float64)), rtol=1e-6, atol=1e-6)
    xi = rng.integers(0, 5, n).astype(np.float32)
    ci = np.asarray(jax.jit(partial(rs._cumsum, monotone=False))(jnp.asarray(xi)))
    np.testing.assert_array_equal(ci, np.cumsum(xi))


def test_underflowing_weights_never_picked():
    # weights that are positive in log space but underflow to 0 in float32
    n = 1000  # the shape of test_jit_parity_and_determinism, so compilations are shared
    log_w = np.zeros(n, np.float32)
    log_w[::3] = -200.0
    w = np.exp(log_w - log_w.max())
    for name in SCHEMES:
        anc = np.asarray(jax.jit(rs.SCHEMES[name])(jax.random.key(0), jnp.asarray(log_w)))
        assert np.all(w[anc] > 0), name


def test_uniform_exactly_zero_does_not_collapse():
    log_w, w = _test_weights()
    lw = jnp.asarray(log_w)
    n = lw.shape[0]
    kept = set(np.flatnonzero(n * w >= 1).tolist())
    u = np.array(jax.random.uniform(jax.random.key(3), (n + 1,)))
    u[[0, 5, n]] = 0.0  # exact zeros among ordinary draws
    for anc in (
        rs.systematic_from_uniforms(jnp.float32(0.0), lw, n),
        rs.stratified_from_uniforms(jnp.zeros(n, jnp.float32), lw, n),
        rs.stratified_from_uniforms(jnp.asarray(u[:n]), lw, n),
    ):
        anc = np.asarray(anc)
        assert np.all(w[anc] > 0)
        # grid schemes keep every particle with N W_i >= 1: no collapse onto one index
        assert kept <= set(anc.tolist())
    anc = np.asarray(rs.multinomial_from_uniforms(jnp.asarray(u), lw, n))
    assert np.all(w[anc] > 0) and len(set(anc.tolist())) > 3
    # even the (probability-zero) all-zero draw gives valid, positive-weight indices
    anc = np.asarray(rs.multinomial_from_uniforms(jnp.zeros(n + 1, jnp.float32), lw, n))
    assert np.all(w[anc] > 0)


@pytest.mark.parametrize("name", SCHEMES)
def test_jit_parity_and_determinism(name):
    log_w, _ = _test_weights(n=1000, seed=3)
    if name == "ssp":  # eager SSP dispatches ~10 ops per tree level; keep the eager run short
        log_w, _ = _test_weights(n=64, seed=3)
    lw = jnp.asarray(log_w)
    key = jax.random.key(7)
    eager = rs.SCHEMES[name](key, lw)
    jitted = jax.jit(rs.SCHEMES[name])(key, lw)
    again = jax.jit(rs.SCHEMES[name])(key, lw)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(again))
    other = rs.SCHEMES[name](jax.random.key(8), lw)
    assert not np.array_equal(np.asarray(other), np.asarray(eager))


def test_resample_if_needed_thresholds():
    lw = jnp.log(jnp.array([0.97, 0.01, 0.01, 0.01]))
    key = jax.random.key(0)
    anc, did = rs.resample_if_needed(key, lw, ess_threshold=0.0)
    assert not bool(did) and np.array_equal(anc, np.arange(4))
    anc, did = rs.resample_if_needed(key, lw, ess_threshold=1.0)
    assert bool(did)
    anc, did = jax.jit(lambda k, w: rs.resample_if_needed(k, w, ess_threshold=0.5))(key, lw)
    assert bool(did)  # ESS ~ 1.06 < 2
    anc, did = rs.resample_if_needed(key, jnp.zeros(4), ess_threshold=0.5)
    assert not bool(did)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rs.resample_if_needed(key, lw, ess_threshold=1.5)
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        rs.resample_if_needed(key, lw, scheme="bogus")


def test_bad_input():
    with pytest.raises(ValueError, match="one-dimensional"):
        rs.systematic(jax.random.key(0), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="positive"):
        rs.systematic(jax.random.key(0), jnp.zeros(3), 0)

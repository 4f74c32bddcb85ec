"""``smcjax.random.normal``: every quantile against the exact one, the draws against N(0, 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import smcjax
from smcjax.random import _log_f32, _normal_from_bits, particle_keys


def test_every_quantile_matches_ndtri():
    """All 2^23 values: z(j) = Phi^{-1}((j + 1/2) / 2^23) to 1e-6, exactly odd."""
    j = np.arange(2**23, dtype=np.uint32)
    z = np.asarray(jax.jit(_normal_from_bits)(jnp.asarray(j << np.uint32(9))), np.float64)
    exact = special.ndtri((j + 0.5) / 2**23)
    err = np.abs(z - exact)
    assert err.max() < 1e-6, (err.max(), j[err.argmax()])
    assert (err / np.abs(exact)).max() < 1e-6
    np.testing.assert_array_equal(z, -z[::-1])  # symmetric, so no bias in the mean
    assert np.isfinite(z).all() and (z != 0).all()
    # the low 9 bits are not used
    low = np.asarray(jax.jit(_normal_from_bits)(jnp.asarray((j[::997] << np.uint32(9)) | 511)))
    np.testing.assert_array_equal(low, z[::997].astype(np.float32))


def test_log_f32_accuracy():
    y = np.exp(np.random.default_rng(0).uniform(-80, 80, 1_000_000)).astype(np.float32)
    y = np.concatenate([y, np.float32([1.0, 0.5, 2.0, 2**-22, np.sqrt(0.5), np.sqrt(2.0)])])
    got = np.asarray(jax.jit(_log_f32)(jnp.asarray(y)), np.float64)
    exact = np.log(y.astype(np.float64))
    assert np.max(np.abs(got - exact) / np.maximum(np.abs(exact), 1.0)) < 4e-7
    assert got[-6] == 0.0


@pytest.mark.parametrize("per_particle", [True, False])
def test_draws_are_standard_normal(per_particle):
    """Moments, Kolmogorov-Smirnov and neighbour correlation over 2^20 draws, with bounds of
    about 4 standard errors; per-particle keys as the engine makes them, or one key."""
    n = 2**20
    if per_particle:
        draw = jax.jit(lambda k: jax.vmap(smcjax.random.normal)(particle_keys(k, n)))
    else:
        draw = jax.jit(lambda k: smcjax.random.normal(k, (n,)))
    z = np.asarray(draw(jax.random.key(7)), np.float64)
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 4 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 4 * np.sqrt(24 / n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(n)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # tail mass beyond 3 sd: 2 * Phi(-3) * n expected, a Poisson count
    expected = 2 * stats.norm.sf(3) * n
    assert abs(np.sum(np.abs(z) > 3) - expected) < 4 * np.sqrt(expected)


def test_same_bits_as_jax_random_normal():
    """The key's bits are those of ``jax.random.normal``; only the transform differs (JAX's
    uniform is 2^-24 lower and its erfinv less exact), so values agree closely in the bulk."""
    keys = particle_keys(jax.random.key(3), 100_000)
    ours = np.asarray(jax.vmap(smcjax.random.normal)(keys), np.float64)
    theirs = np.asarray(jax.vmap(jax.random.normal)(keys), np.float64)
    bulk = np.abs(theirs) < 3
    assert bulk.mean() > 0.99
    assert np.max(np.abs(ours - theirs)[bulk]) < 1e-4
    np.testing.assert_array_equal(np.sign(ours), np.sign(theirs))


def test_reproducible_shapes_and_dtypes():
    key = jax.random.key(11)
    a = smcjax.random.normal(key, (4, 3))
    b = jax.jit(smcjax.random.normal, static_argnums=(1,))(key, (4, 3))
    assert a.shape == (4, 3) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(smcjax.random.normal(key, 5), smcjax.random.normal(key, (5,)))
    raw = jax.random.PRNGKey(11)
    assert smcjax.random.normal(raw, (2,)).shape == (2,)
    for dt in (jnp.float16, jnp.bfloat16):
        h = smcjax.random.normal(key, (4, 3), dt)
        assert h.dtype == dt
        np.testing.assert_allclose(np.asarray(h, np.float32), np.asarray(a), rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="floating"):
        smcjax.random.normal(key, (2,), jnp.int32)
    with jax.enable_x64(True):  # float64: jax.random.normal's 53-bit draw
        d = smcjax.random.normal(key, (4, 3), jnp.float64)
        assert d.dtype == jnp.float64
        np.testing.assert_array_equal(d, jax.random.normal(key, (4, 3), jnp.float64))

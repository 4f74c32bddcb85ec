"""Plain-JAX small linear algebra (``smcjax.linalg``) against NumPy's LAPACK results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from smcjax import linalg


def _spd(d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


@pytest.mark.parametrize("d", [1, 3, 17])
def test_cholesky_and_inverse_match_numpy(d):
    a = _spd(d, d)
    chol = np.asarray(linalg.cholesky(jnp.asarray(a, jnp.float32)), np.float64)
    np.testing.assert_allclose(chol, np.linalg.cholesky(a), rtol=1e-4, atol=1e-5)
    assert np.all(np.triu(chol, 1) == 0.0)
    inv = np.asarray(linalg.tril_inverse(jnp.asarray(chol, jnp.float32)), np.float64)
    np.testing.assert_allclose(inv @ chol, np.eye(d), atol=1e-4)


def test_not_positive_definite_gives_nan():
    bad = jnp.asarray([[1.0, 2.0], [2.0, 1.0]])
    assert np.isnan(np.asarray(linalg.cholesky(bad))).any()


def test_mvn_logpdf_matches_scipy_and_is_vmappable():
    cov = _spd(4, 0)
    mean = np.arange(4.0)
    x = np.random.default_rng(1).normal(size=(10, 4)) * 3
    _, inv, logdet = linalg.chol_factors(jnp.asarray(cov))
    got = jax.vmap(lambda v: linalg.mvn_logpdf(v, jnp.asarray(mean), inv, logdet))(jnp.asarray(x))
    want = stats.multivariate_normal(mean, cov).logpdf(x)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


def test_no_lapack_custom_calls():
    """The point of the module: nothing here lowers to a LAPACK custom call."""
    text = jax.jit(lambda a: linalg.chol_factors(a)).lower(jnp.eye(3)).as_text()
    assert "lapack" not in text and "custom_call" not in text

"""Simulation-based calibration and Geweke's test: they pass exact samplers and catch a
posterior whose variance is shrunk by 20%, at fixed seeds.

The conjugate model: θ ~ N(0, I_2), y_j | θ ~ N(θ, I_2) for j = 1..5, so
θ | y ~ N(Σ y / 6, I/6). The "exact" sampler draws from that posterior, the "shrunk" one from
N(Σ y / 6, 0.8 I/6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import smcjax
from smcjax.validate import geweke, sbc
from smcjax.validate.sbc import resample_draws

DIM, NUM_DATA = 2, 5
POST_VAR = 1.0 / (1.0 + NUM_DATA)


def prior_sample(key):
    return jax.random.normal(key, (DIM,))


def simulate(key, theta):
    return theta[None] + jax.random.normal(key, (NUM_DATA, DIM))


def conjugate_posterior(variance_factor=1.0):
    def sample(key, y, num_draws):
        mean = POST_VAR * jnp.sum(y, axis=0)
        sd = jnp.sqrt(POST_VAR * variance_factor)
        return mean[None] + sd * jax.random.normal(key, (num_draws, DIM))
    return sample


# ------------------------------------------------------------------------------------------ SBC


def test_sbc_passes_exact_and_fails_shrunk_posterior():
    key = jax.random.key(2024)
    good = sbc(key, prior_sample, simulate, conjugate_posterior(1.0), 2000, 99, num_bins=10)
    bad = sbc(key, prior_sample, simulate, conjugate_posterior(0.8), 2000, 99, num_bins=10)
    print(good.message, "\n", bad.message)
    assert good.passed and good.p_value > 0.01
    assert not bad.passed and bad.p_value < 1e-4
    assert "too narrow" in bad.message  # the ∪ shape is named
    assert good.ranks.shape == (2000, DIM) and good.histogram.shape == (DIM, 10)
    assert good.ranks.min() >= 0 and good.ranks.max() <= 99
    assert np.all(good.histogram.sum(axis=1) == 2000)
    # the chi-square statistic and its p-value agree with SciPy's
    expected = 2000 / 10
    chi2 = ((bad.histogram - expected) ** 2 / expected).sum(axis=1)
    np.testing.assert_allclose(bad.chi2, chi2)
    p_scipy = min(1.0, DIM * stats.chi2.sf(chi2, 9).min())
    assert bad.p_value == pytest.approx(p_scipy, rel=1e-8)


def test_sbc_detects_a_biased_posterior_and_says_so():
    def biased(key, y, num_draws):
        return conjugate_posterior(1.0)(key, y, num_draws) + 0.25 * np.sqrt(POST_VAR)

    res = sbc(jax.random.key(3), prior_sample, simulate, biased, 1000, 99, num_bins=10)
    assert not res.passed
    assert "biased high" in res.message


def test_sbc_ranks_are_uniform_under_the_null_at_the_nominal_rate():
    """With exact draws, the per-run p-values are uniform: the test rejects at rate ≈ alpha."""
    exact = conjugate_posterior(1.0)  # one function object: one compilation for all 40 calls
    pvals = [sbc(jax.random.key(s), prior_sample, simulate, exact, 200, 19,
                 num_bins=10).p_value for s in range(40)]
    # Bonferroni over 2 parameters makes it conservative: rejections at alpha = 0.2 ≤ 8 ± 6
    assert sum(p < 0.2 for p in pvals) <= 8 + 3 * np.sqrt(40 * 0.2 * 0.8)
    assert sum(p < 0.5 for p in pvals) >= 5  # and it is not degenerate


def test_sbc_tie_breaking_for_discrete_parameters():
    """A discrete parameter with an exact posterior: ties are broken uniformly, so SBC passes."""
    def prior(key):
        return jax.random.bernoulli(key, 0.3).astype(jnp.float32)[None]

    def sim(key, theta):
        p = jnp.where(theta[0] > 0, 0.8, 0.2)
        return jax.random.bernoulli(key, p, (4,))

    def posterior(key, y, num_draws):
        k = jnp.sum(y)
        log1 = jnp.log(0.3) + k * jnp.log(0.8) + (4 - k) * jnp.log(0.2)
        log0 = jnp.log(0.7) + k * jnp.log(0.2) + (4 - k) * jnp.log(0.8)
        p1 = jax.nn.sigmoid(log1 - log0)
        return jax.random.bernoulli(key, p1, (num_draws, 1)).astype(jnp.float32)

    res = sbc(jax.random.key(0), prior, sim, posterior, 1000, 19, num_bins=10)
    assert res.passed, res.message


def test_sbc_with_tempered_smc_on_a_conjugate_model():
    """SBC of adaptive tempered SMC (RWMH moves), draws by resampling its weighted particles."""
    num_data = 5

    def prior(key):
        return jax.random.normal(key, (1,))

    def sim(key, theta):
        return theta + jax.random.normal(key, (num_data,))

    def posterior(key, y, num_draws):
        model = smcjax.BayesianModel(
            log_prior=lambda th: -0.5 * jnp.sum(th**2),
            log_likelihood=lambda th: -0.5 * jnp.sum((y - th[0]) ** 2),
            sample_prior=lambda k: jax.random.normal(k, (1,)))
        k_run, k_draw = jax.random.split(key)
        res = smcjax.tempered_smc(k_run, model, 256, move="rwmh")
        return resample_draws(k_draw, res.particles, res.log_weights, num_draws)

    res = sbc(jax.random.key(11), prior, sim, posterior, 100, 99, num_bins=10, vectorize=False)
    print(res.message)
    assert res.passed, res.message


def test_sbc_bad_input():
    args = (jax.random.key(0), prior_sample, simulate, conjugate_posterior())
    with pytest.raises(ValueError, match="divide"):
        sbc(*args, 100, 99, num_bins=7)
    with pytest.raises(ValueError, match="num_replications"):
        sbc(*args, 1, 99)
    with pytest.raises(ValueError, match="L \\+ 1"):
        sbc(*args, 100, 100)  # 101 is prime


def test_resample_draws_follow_the_weights():
    particles = {"a": jnp.arange(4.0)}
    lw = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    draws = resample_draws(jax.random.key(0), particles, lw, 20000)["a"]
    freq = np.bincount(np.asarray(draws).astype(int), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=4 * np.sqrt(0.25 / 20000))


# --------------------------------------------------------------------------------------- Geweke


def test_geweke_passes_exact_and_fails_shrunk_posterior():
    key = jax.random.key(7)
    good = geweke(key, prior_sample, simulate, conjugate_posterior(1.0), 20000)
    bad = geweke(key, prior_sample, simulate, conjugate_posterior(0.8), 20000)
    print(good.message, "\n", bad.message)
    assert good.passed and not bad.passed
    # the shrunk posterior lowers E[θ²] in the successive-conditional chain
    assert np.all(bad.mean_successive[DIM:] < bad.mean_marginal[DIM:])
    np.testing.assert_allclose(good.mean_marginal[DIM:], 1.0, atol=0.05)


def test_geweke_custom_test_functions_and_bad_input():
    res = geweke(jax.random.key(1), prior_sample, simulate, conjugate_posterior(),
                 4000, test_functions=lambda th, y: jnp.stack([th[0] * jnp.mean(y[:, 0])]))
    assert res.z.shape == (1,) and res.passed
    with pytest.raises(ValueError, match="num_batches"):
        geweke(jax.random.key(1), prior_sample, simulate, conjugate_posterior(), 10)

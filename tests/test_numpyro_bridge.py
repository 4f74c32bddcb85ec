"""``smcjax.from_numpyro``: the same posterior as the hand-written models, NumPyro's own
potential, bad input, and importing smcjax without NumPyro."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import condition
from numpyro.infer.util import potential_energy
from smcjax.models import beta_binomial as bb
from smcjax.models import eight_schools as es

import smcjax


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, es.MU_SCALE))
    tau = numpyro.sample("tau", dist.HalfCauchy(es.TAU_SCALE))
    with numpyro.plate("school", sigma.shape[0]):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        numpyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def baseball(at_bats, hits=None):
    mu = numpyro.sample("mu", dist.Beta(1.0, 1.0))
    kappa = numpyro.sample("kappa", dist.LogNormal(3.0, 1.0))
    with numpyro.plate("player", at_bats.shape[0]):
        p = numpyro.sample("p", dist.Beta(mu * kappa, (1.0 - mu) * kappa))
        numpyro.sample("hits", dist.Binomial(at_bats, probs=p), obs=hits)


def dependent(y):
    """A dynamic support (b in (0, a), a latent) and a simplex (3 values, 2 free)."""
    a = numpyro.sample("a", dist.Uniform(0.0, 5.0))
    b = numpyro.sample("b", dist.Uniform(0.0, a))
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(b + w[0], sigma), obs=y)


SIGMA = jnp.asarray(es.SIGMA, jnp.float32)
Y = jnp.asarray(es.Y, jnp.float32)


@pytest.mark.parametrize("case", ["eight_schools", "beta_binomial"])
def test_pointwise_same_as_hand_written(case):
    if case == "eight_schools":
        ours = smcjax.from_numpyro(eight_schools, SIGMA, y=Y)
        hand = es.make_model()
        rename = {"mu": "mu", "tau": "tau", "eta": "eta"}
    else:
        ours = smcjax.from_numpyro(baseball, jnp.asarray(bb.AT_BATS, jnp.float32),
                                   hits=jnp.asarray(bb.HITS, jnp.float32))
        hand = bb.make_model()
        rename = {"mu": "mu", "kappa": "kappa", "p": "p"}
    assert ours.num_data == hand.num_data
    keys = jax.random.split(jax.random.key(0), 6)
    theta = jax.jit(jax.vmap(hand.sample_prior))(keys)
    th = {rename[k]: v for k, v in theta.items()}

    def batch(fn, x):
        return np.asarray(jax.jit(jax.vmap(fn))(x), np.float64)

    for f, g in ((ours.log_prior, hand.log_prior), (ours.log_likelihood, hand.log_likelihood)):
        np.testing.assert_allclose(batch(f, th), batch(g, theta), rtol=2e-5, atol=1e-3)
    z_ours = jax.jit(jax.vmap(ours.bijection.inverse))(th)
    z_hand = jax.jit(jax.vmap(hand.bijection.inverse))(theta)
    for k in z_hand:
        np.testing.assert_allclose(z_ours[rename[k]], z_hand[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch(ours.bijection.log_det_jacobian, z_ours),
                               batch(hand.bijection.log_det_jacobian, z_hand),
                               rtol=1e-5, atol=1e-4)
    idx = jnp.arange(ours.num_data)
    per = batch(lambda t: jnp.sum(jax.vmap(lambda i: ours.log_likelihood_per_datum(t, i))(idx)),
                th)
    np.testing.assert_allclose(per, batch(ours.log_likelihood, th), rtol=1e-5)


def test_unconstrained_density_is_numpyro_potential():
    # log p(T(z)) + log L(T(z)) + log|det T'(z)| == -potential_energy(z), including a support
    # that depends on another latent value and a simplex whose z is shorter than θ.
    y = jnp.array([0.3, 1.2, 0.8, 2.0])
    model = smcjax.from_numpyro(dependent, y)
    assert model.num_data == 4
    theta = jax.jit(jax.vmap(model.sample_prior))(jax.random.split(jax.random.key(1), 6))
    z = jax.jit(jax.vmap(model.bijection.inverse))(theta)
    assert z["w"].shape == (6, 2) and theta["w"].shape == (6, 3)
    back = jax.jit(jax.vmap(model.bijection.forward))(z)
    for k in theta:
        np.testing.assert_allclose(back[k], theta[k], rtol=1e-4, atol=1e-6)

    @jax.jit
    @jax.vmap
    def both(z):
        t = model.bijection.forward(z)
        ours = model.log_prior(t) + model.log_likelihood(t) + model.bijection.log_det_jacobian(z)
        return ours, -potential_energy(dependent, (y,), {}, z)

    ours, ref = both(z)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


def test_condition_handler_and_jit_vmap():
    model = smcjax.from_numpyro(condition(eight_schools, data={"obs": Y}), SIGMA)
    thetas = jax.jit(jax.vmap(model.sample_prior))(jax.random.split(jax.random.key(2), 7))
    assert thetas["eta"].shape == (7, 8) and bool(jnp.all(thetas["tau"] > 0))
    ll = jax.jit(jax.vmap(model.log_likelihood))(thetas)
    ref = jax.vmap(es.make_model().log_likelihood)(thetas)
    np.testing.assert_allclose(ll, ref, rtol=1e-5)


def test_tempered_smc_same_posterior_as_hand_written():
    # Posterior moments from S independent runs of each model agree with each other and
    # with the exact reference, within 4 across-seed standard errors.
    ex = es.exact()
    num_seeds = 12

    def pooled(model, seed):
        keys = jax.random.split(jax.random.key(seed), num_seeds)
        res = jax.vmap(lambda k: smcjax.tempered_smc(k, model, 600))(keys)
        assert res.status == "ok"
        w = np.exp(np.asarray(res.log_weights, np.float64))
        th = res.particles
        stats = np.stack([
            np.sum(w * np.asarray(th["mu"]), 1),
            np.sum(w * np.asarray(th["tau"]), 1),
            np.sum(w * np.asarray(th["mu"] + th["tau"] * th["eta"][..., 0]), 1),
            np.exp(np.asarray(res.log_evidence, np.float64) - ex.log_evidence),
        ], 1)
        return stats.mean(0), stats.std(0, ddof=1) / np.sqrt(num_seeds)

    m_np, se_np = pooled(smcjax.from_numpyro(eight_schools, SIGMA, y=Y), 10)
    m_hand, se_hand = pooled(es.make_model(), 20)
    truth = np.array([ex.mu_mean, ex.tau_mean, ex.theta_mean[0], 1.0])
    assert np.all(np.abs(m_np - m_hand) < 4 * np.hypot(se_np, se_hand)), (m_np, m_hand)
    assert np.all(np.abs(m_np - truth) < 4 * se_np), (m_np, truth, se_np)


def _model_discrete():
    k = numpyro.sample("k", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Normal(k, 1.0), obs=0.3)


def _model_param():
    m = numpyro.param("m", 0.0)
    numpyro.sample("y", dist.Normal(m, 1.0), obs=0.3)


def _model_no_obs():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


def _model_no_latent():
    numpyro.sample("y", dist.Normal(0.0, 1.0), obs=0.3)


def _model_subsample():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", 100, subsample_size=10):
        numpyro.sample("y", dist.Normal(x, 1.0), obs=jnp.zeros(10))


def _model_broken():
    raise RuntimeError("boom")


@pytest.mark.parametrize("fn, match", [
    (_model_discrete, "discrete"),
    (_model_param, "numpyro.param"),
    (_model_no_obs, "no observed"),
    (_model_no_latent, "no latent"),
    (_model_subsample, "subsample"),
    (_model_broken, "boom"),
    (42, "callable"),
])
def test_bad_input(fn, match):
    with pytest.raises(ValueError, match=match):
        smcjax.from_numpyro(fn)


def test_no_per_datum_for_mixed_observed_shapes():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("a", dist.Normal(x, 1.0), obs=0.3)
        with numpyro.plate("d", 3):
            numpyro.sample("b", dist.Normal(x, 1.0), obs=jnp.zeros(3))

    m = smcjax.from_numpyro(model)
    assert m.log_likelihood_per_datum is None and m.num_data is None
    np.testing.assert_allclose(float(m.log_likelihood({"x": jnp.float32(0.5)})),
                               -0.5 * (0.2**2 + 3 * 0.25) - 2 * np.log(2 * np.pi), rtol=1e-5)


def test_smcjax_imports_without_numpyro():
    code = ("import sys; sys.modules['numpyro'] = None\n"
            "import smcjax\n"
            "try:\n    smcjax.from_numpyro(lambda: None)\n"
            "except ImportError as e:\n    print('IMPORT-ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR" in out.stdout and "smcjax[numpyro]" in out.stdout


def test_factor_and_deterministic_sites():
    # numpyro.factor terms are observed sites (tempered as likelihood); deterministic sites
    # are ignored by θ.
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 2.0))
        numpyro.deterministic("x2", x**2)
        numpyro.factor("soft", -0.5 * (x - 1.0) ** 2)

    m = smcjax.from_numpyro(model)
    theta = m.sample_prior(jax.random.key(0))
    assert set(theta) == {"x"}
    x = float(theta["x"])
    np.testing.assert_allclose(float(m.log_likelihood(theta)), -0.5 * (x - 1.0) ** 2, rtol=1e-5)
    np.testing.assert_allclose(float(m.log_prior(theta)),
                               -0.5 * (x / 2) ** 2 - np.log(2 * np.sqrt(2 * np.pi)), rtol=1e-5)

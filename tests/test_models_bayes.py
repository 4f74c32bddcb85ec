"""The Bayesian models' exact answers, checked independently, and tempered SMC recovering them.

Exact-answer checks use a different route from the module (SciPy quadrature on another
parametrisation, SciPy densities, importance sampling); tolerances are numerical (quadrature)
or derived from the Monte Carlo standard error. The SMC checks pool ``S`` independent runs
(one vmapped call) and compare with the exact value using the across-seed standard error,
so a sampler with wrong weights fails them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import expit, logsumexp
from smcjax.models import beta_binomial as bb
from smcjax.models import bimodal
from smcjax.models import eight_schools as es
from smcjax.models import linear_regression as linreg
from smcjax.models import logistic_regression as logreg

import smcjax


def _runs(model, num_particles, num_seeds, seed=0, sampler=None, **kw):
    """``num_seeds`` independent runs in one vmapped call."""
    sampler = smcjax.tempered_smc if sampler is None else sampler
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    res = jax.vmap(lambda k: sampler(k, model, num_particles, **kw))(keys)
    assert res.status == "ok", res.status
    return res


def _check_mean(estimates, truth, k=4.0, what=""):
    """Pooled estimate within ``k`` across-seed standard errors of ``truth``."""
    est = np.asarray(estimates, np.float64)
    mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(est.shape[0])
    z = np.abs(mean - truth) / se
    assert np.all(z < k), f"{what}: mean {mean}, truth {truth}, se {se}, z {z}"


def _check_evidence(log_z_hat, log_z, k=3.0):
    """``exp(log Ẑ - log Z)`` (unbiased for 1) within ``k`` standard errors of 1."""
    ratio = np.exp(np.asarray(log_z_hat, np.float64) - log_z)
    se = ratio.std(ddof=1) / np.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < k * se, (ratio.mean(), se, np.asarray(log_z_hat), log_z)


def _wmean(res, fn):
    """Per-run weighted posterior mean of ``fn(θ)`` (``fn`` of one particle)."""
    w = np.exp(np.asarray(res.log_weights, np.float64))
    vals = np.asarray(jax.vmap(jax.vmap(fn))(res.particles), np.float64)
    return np.einsum("sn,sn...->s...", w, vals)


def _per_datum_sum(model, theta):
    per = jax.vmap(lambda i: model.log_likelihood_per_datum(theta, i))(
        jnp.arange(model.num_data))
    return float(jnp.sum(per)), float(model.log_likelihood(theta))


# ---------------------------------------------------------------- linear regression (NIG)

LR_DATA = linreg.simulate(0, num_data=50, num_features=3)
LR_PRIOR = linreg.default_prior(3)


def test_linear_regression_evidence_by_quadrature():
    # Independent route: beta integrated out, y | s2 ~ N(X m0, s2 (I + X V0 X')), then quad.
    x, y = LR_DATA
    post = linreg.posterior(x, y, LR_PRIOR)
    cov0 = np.eye(len(y)) + x @ LR_PRIOR.cov @ x.T
    mean0 = x @ LR_PRIOR.mean

    def log_f(s2):
        return (stats.multivariate_normal.logpdf(y, mean0, s2 * cov0)
                + stats.invgamma.logpdf(s2, LR_PRIOR.a, scale=LR_PRIOR.b))

    shift = log_f(post.sigma2_mean)
    val, _ = integrate.quad(lambda s: np.exp(log_f(s) - shift), 0, np.inf, limit=200)
    assert abs(np.log(val) + shift - post.log_evidence) < 1e-7
    m1, _ = integrate.quad(lambda s: s * np.exp(log_f(s) - shift), 0, np.inf, limit=200)
    assert abs(m1 / val - post.sigma2_mean) < 1e-7 * post.sigma2_mean


def test_linear_regression_posterior_density_identity():
    # log p(θ) + log L(θ) - log Z must equal the NIG posterior density at every θ
    # (a wrong log Z or wrong posterior parameters break it), and the JAX model must
    # agree with SciPy's densities.
    x, y = LR_DATA
    post = linreg.posterior(x, y, LR_PRIOR)
    model = linreg.make_model(x, y, LR_PRIOR)
    rng = np.random.default_rng(1)
    for _ in range(5):
        s2 = rng.uniform(0.2, 2.0)
        beta = post.mean + rng.standard_normal(3) * 0.3
        lp = (stats.invgamma.logpdf(s2, LR_PRIOR.a, scale=LR_PRIOR.b)
              + stats.multivariate_normal.logpdf(beta, LR_PRIOR.mean, s2 * LR_PRIOR.cov))
        ll = np.sum(stats.norm.logpdf(y, x @ beta, np.sqrt(s2)))
        lpost = (stats.invgamma.logpdf(s2, post.a, scale=post.b)
                 + stats.multivariate_normal.logpdf(beta, post.mean, s2 * post.cov))
        assert abs(lp + ll - post.log_evidence - lpost) < 1e-8
        theta = {"beta": jnp.asarray(beta, jnp.float32), "sigma2": jnp.float32(s2)}
        np.testing.assert_allclose(float(model.log_prior(theta)), lp, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(float(model.log_likelihood(theta)), ll, rtol=1e-5, atol=1e-3)
        total, full = _per_datum_sum(model, theta)
        np.testing.assert_allclose(total, full, rtol=1e-5)


def test_linear_regression_tempered_smc_recovers_exact():
    x, y = LR_DATA
    post = linreg.posterior(x, y, LR_PRIOR)
    res = _runs(linreg.make_model(x, y, LR_PRIOR), 1000, 16)
    _check_evidence(res.log_evidence, post.log_evidence)
    _check_mean(_wmean(res, lambda t: t["beta"]), post.beta_mean, what="beta")
    _check_mean(_wmean(res, lambda t: t["sigma2"]), post.sigma2_mean, what="sigma2")
    var_hat = _wmean(res, lambda t: t["sigma2"] ** 2) - _wmean(res, lambda t: t["sigma2"]) ** 2
    _check_mean(var_hat, post.sigma2_var, what="Var sigma2")


@pytest.mark.slow
def test_linear_regression_data_tempering_recovers_exact():
    x, y = LR_DATA
    post = linreg.posterior(x, y, LR_PRIOR)
    res = _runs(linreg.make_model(x, y, LR_PRIOR), 1000, 16, sampler=smcjax.data_tempering_smc)
    _check_evidence(res.log_evidence, post.log_evidence)
    _check_mean(_wmean(res, lambda t: t["beta"]), post.beta_mean, what="beta")


# ---------------------------------------------------------------- bimodal


def test_bimodal_exact_by_quadrature():
    p = bimodal.default_params(2)
    ex = bimodal.exact(p)
    model = bimodal.make_model(p)
    post = jax.jit(lambda t: model.log_prior(t) + model.log_likelihood(t))
    # Dense 2-d trapezoid grid on the JAX model's own density (float32 values, float64 sums).
    g = np.linspace(-9.0, 9.0, 1201)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    lf = np.asarray(jax.vmap(post)(pts), np.float64).reshape(xx.shape)
    cell = (g[1] - g[0]) ** 2
    log_z = logsumexp(lf) + np.log(cell)
    assert abs(log_z - ex.log_evidence) < 1e-4
    w = np.exp(lf - logsumexp(lf))
    assert abs(w[xx > 0].sum() - ex.positive_mass) < 1e-4
    np.testing.assert_allclose([np.sum(w * xx), np.sum(w * yy)], ex.mean, atol=1e-4)
    # The component masses are not the likelihood weights (a non-trivial target).
    assert abs(ex.component_masses[0] - 0.5) > 0.1


def test_bimodal_tempered_smc_mode_masses():
    p = bimodal.default_params(2)
    ex = bimodal.exact(p)
    res = _runs(bimodal.make_model(p), 2000, 16)
    _check_mean(_wmean(res, lambda t: (t[0] > 0).astype(jnp.float32)), ex.positive_mass,
                k=3.0, what="mode mass")
    _check_evidence(res.log_evidence, ex.log_evidence)
    _check_mean(_wmean(res, lambda t: t), ex.mean, what="mean")


# ---------------------------------------------------------------- eight schools


def test_eight_schools_reference_by_quadrature():
    # Independent route: marginal y ~ N(0, 25 11' + diag(sigma² + tau²)) (mu and eta
    # integrated jointly), SciPy quad over tau (not log tau).
    ex = es.exact()

    def log_f(tau):
        cov = es.MU_SCALE**2 + np.diag(es.SIGMA**2 + tau**2)
        return (stats.multivariate_normal.logpdf(es.Y, np.zeros(8), cov)
                + stats.halfcauchy.logpdf(tau, scale=es.TAU_SCALE))

    shift = log_f(3.0)
    z0, _ = integrate.quad(lambda t: np.exp(log_f(t) - shift), 0, np.inf, limit=500)
    z1, _ = integrate.quad(lambda t: t * np.exp(log_f(t) - shift), 0, np.inf, limit=500)
    assert abs(np.log(z0) + shift - ex.log_evidence) < 1e-6
    assert abs(z1 / z0 - ex.tau_mean) < 1e-5


def test_eight_schools_model_densities():
    model = es.make_model()
    rng = np.random.default_rng(0)
    for _ in range(3):
        mu, tau, eta = rng.normal(0, 3), rng.uniform(0.1, 8), rng.standard_normal(8)
        lp = (stats.norm.logpdf(mu, 0, es.MU_SCALE) + stats.halfcauchy.logpdf(tau, scale=5)
              + stats.norm.logpdf(eta).sum())
        ll = stats.norm.logpdf(es.Y, mu + tau * eta, es.SIGMA).sum()
        theta = {"mu": jnp.float32(mu), "tau": jnp.float32(tau), "eta": jnp.asarray(eta,
                                                                                jnp.float32)}
        np.testing.assert_allclose(float(model.log_prior(theta)), lp, rtol=1e-5)
        np.testing.assert_allclose(float(model.log_likelihood(theta)), ll, rtol=1e-5)
        total, full = _per_datum_sum(model, theta)
        np.testing.assert_allclose(total, full, rtol=1e-5)


@pytest.mark.slow
def test_eight_schools_tempered_smc_recovers_reference():
    ex = es.exact()
    res = _runs(es.make_model(), 2000, 16, move="rwmh")
    _check_evidence(res.log_evidence, ex.log_evidence)
    _check_mean(_wmean(res, lambda t: t["mu"]), ex.mu_mean, what="mu")
    _check_mean(_wmean(res, lambda t: t["tau"]), ex.tau_mean, what="tau")
    _check_mean(_wmean(res, lambda t: t["mu"] + t["tau"] * t["eta"]), ex.theta_mean,
                what="theta")


# ---------------------------------------------------------------- beta-binomial


def test_beta_binomial_marginal_is_exact():
    # For fixed (mu, kappa), integrating p_j numerically reproduces the Beta-Binomial pmf.
    mu, kappa = 0.27, 40.0
    a, b = mu * kappa, (1 - mu) * kappa
    total = 0.0
    for y, n in zip(bb.HITS[:4], bb.AT_BATS[:4], strict=True):
        val, _ = integrate.quad(lambda p, y=y, n=n: stats.beta.pdf(p, a, b)
                                * stats.binom.pmf(y, n, p), 0, 1, limit=200)
        total += np.log(val)
    ref = bb.log_marginal_likelihood(mu, kappa, bb.HITS[:4], bb.AT_BATS[:4])
    assert abs(total - ref) < 1e-8


def test_beta_binomial_exact_by_gauss_legendre():
    # Independent rule and range: a 200 x 200 Gauss-Legendre product rule around the mode,
    # with the prior densities from SciPy.
    ex = bb.exact()
    prior = bb.BBPrior()
    u0 = np.log(ex.mu_mean / (1 - ex.mu_mean))
    nodes, wts = np.polynomial.legendre.leggauss(200)
    (ua, ub), (va, vb) = (u0 - 1.5, u0 + 1.5), (-3.0, 9.0)
    u = 0.5 * (ub - ua) * nodes + 0.5 * (ua + ub)
    v = 0.5 * (vb - va) * nodes + 0.5 * (va + vb)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    mu = expit(uu)
    log_f = (stats.beta.logpdf(mu, prior.mu_a, prior.mu_b) + np.log(mu * (1 - mu))
             + stats.norm.logpdf(vv, prior.log_kappa_loc, prior.log_kappa_scale)
             + bb.log_marginal_likelihood(mu, np.exp(vv)))
    log_w = np.log(np.outer(wts, wts) * 0.25 * (ub - ua) * (vb - va))
    assert abs(logsumexp(log_f + log_w) - ex.log_evidence) < 1e-6
    post = np.exp(log_f + log_w - logsumexp(log_f + log_w))
    assert abs(np.sum(post * mu) - ex.mu_mean) < 1e-7
    assert abs(np.sum(post * vv) - ex.log_kappa_mean) < 1e-6


def test_beta_binomial_model_densities():
    model = bb.make_model()
    prior = bb.BBPrior()
    theta = {"mu": jnp.float32(0.3), "kappa": jnp.float32(30.0),
             "p": jnp.asarray(np.linspace(0.2, 0.35, 18), jnp.float32)}
    p = np.linspace(0.2, 0.35, 18)
    lp = (stats.beta.logpdf(0.3, prior.mu_a, prior.mu_b)
          + stats.lognorm.logpdf(30.0, prior.log_kappa_scale, scale=np.exp(prior.log_kappa_loc))
          + stats.beta.logpdf(p, 9.0, 21.0).sum())
    ll = stats.binom.logpmf(bb.HITS, bb.AT_BATS, p).sum()
    np.testing.assert_allclose(float(model.log_prior(theta)), lp, rtol=1e-5)
    np.testing.assert_allclose(float(model.log_likelihood(theta)), ll, rtol=1e-5)
    total, full = _per_datum_sum(model, theta)
    np.testing.assert_allclose(total, full, rtol=1e-5)
    z = model.bijection.inverse(theta)
    back = model.bijection.forward(z)
    np.testing.assert_allclose(back["p"], theta["p"], rtol=1e-5)
    # log-det of the bijection against autodiff of the elementwise maps
    flat = jnp.concatenate([z["mu"][None], z["kappa"][None], z["p"]])
    jac = jax.jacfwd(lambda f: jnp.concatenate([
        jax.nn.sigmoid(f[:1]), jnp.exp(f[1:2]), jax.nn.sigmoid(f[2:])]))(flat)
    np.testing.assert_allclose(float(model.bijection.log_det_jacobian(z)),
                               float(jnp.linalg.slogdet(jac)[1]), rtol=1e-4)


@pytest.mark.slow
def test_beta_binomial_tempered_smc_recovers_exact():
    ex = bb.exact()
    res = _runs(bb.make_model(), 2000, 16, move="rwmh")
    _check_evidence(res.log_evidence, ex.log_evidence)
    _check_mean(_wmean(res, lambda t: t["mu"]), ex.mu_mean, what="mu")
    _check_mean(_wmean(res, lambda t: jnp.log(t["kappa"])), ex.log_kappa_mean, what="log kappa")
    _check_mean(_wmean(res, lambda t: t["p"]), ex.p_mean, what="p")


# ---------------------------------------------------------------- logistic regression


def test_logistic_regression_data_and_density():
    x, y = logreg.load_data()
    assert x.shape == (768, 9) and y.shape == (768,)
    assert int(y.sum()) == 268  # diabetic cases in the Pima data
    np.testing.assert_allclose(x[:, 0], 1.0)
    np.testing.assert_allclose(x[:, 1:].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x[:, 1:].std(0), 1.0, atol=1e-12)
    model = logreg.make_model()
    beta = np.random.default_rng(0).normal(0, 0.5, 9)
    ref_ll = np.sum(stats.bernoulli.logpmf(y, expit(x @ beta)))
    ref_lp = stats.norm.logpdf(beta, 0, logreg.PRIOR_SCALE).sum()
    b32 = jnp.asarray(beta, jnp.float32)
    np.testing.assert_allclose(float(model.log_likelihood(b32)), ref_ll, rtol=1e-5)
    np.testing.assert_allclose(float(model.log_prior(b32)), ref_lp, rtol=1e-5)
    np.testing.assert_allclose(logreg.log_posterior_np(beta, x, y), ref_ll + ref_lp, rtol=1e-12)
    total, full = _per_datum_sum(model, b32)
    np.testing.assert_allclose(total, full, rtol=1e-5)


def test_logistic_regression_reference_constant():
    # The stated reference (4e6 draws, seed 0) against a fresh, independent IS run.
    r = logreg.importance_sampling_reference(100_000, seed=1, batch=25_000)
    se = np.hypot(r.log_evidence_se, logreg.REFERENCE_LOG_EVIDENCE_SE)
    assert abs(r.log_evidence - logreg.REFERENCE_LOG_EVIDENCE) < 4 * se
    assert r.ess_fraction > 0.5


@pytest.mark.slow
def test_logistic_regression_tempered_smc_recovers_reference():
    res = _runs(logreg.make_model(), 2000, 16, move="rwmh")
    _check_evidence(res.log_evidence, logreg.REFERENCE_LOG_EVIDENCE)
    _check_mean(_wmean(res, lambda t: t), logreg.REFERENCE_POSTERIOR_MEAN, what="beta")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("build, match", [
    (lambda: linreg.make_model(np.ones((5, 2)), np.ones(4)), "X \\[n, p\\]"),
    (lambda: linreg.make_model(np.ones((5, 2)), np.ones(5),
                               linreg.NIGPrior(np.zeros(2), np.eye(2), -1.0, 1.0)), "a > 0"),
    (lambda: bb.make_model(hits=[5, 50], at_bats=[45, 45]), "hits <= at_bats"),
    (lambda: bb.make_model(hits=[5], at_bats=[45, 45]), "equal length"),
    (lambda: logreg.make_model(np.ones((3, 2)), np.array([0.0, 2.0, 1.0])), "0 or 1"),
    (lambda: logreg.make_model(prior_scale=0.0), "prior_scale"),
    (lambda: bimodal.make_model(bimodal.BimodalParams(np.ones((2, 2)), np.array([1.0, -1.0]),
                                                      np.ones(2), 1.0)), "positive"),
    (lambda: bimodal.exact(bimodal.BimodalParams(np.ones((2, 2)), np.ones(3), np.ones(2),
                                                 1.0)), "centers"),
])
def test_models_bad_input(build, match):
    with pytest.raises(ValueError, match=match):
        build()

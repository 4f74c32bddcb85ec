"""Adaptive tempered SMC against exact answers (conjugate Gaussian, Gamma-Poisson, truncation).

Tolerances come from the Monte Carlo error over independent seeds (see ``_static_checks``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _static_checks import assert_exact, evidence_ratio, run_seeds, summary
from scipy import optimize, special, stats
from smcjax.models import conjugate_gaussian as cg

import smcjax
import smcjax.tempering as tempering_mod
from smcjax import Bijection
from smcjax.tempering import next_temperature

SEEDS = 50
MOVES = ["rwmh", "mala", "hmc", "nuts"]


def _final_beta(res):
    temps = np.asarray(res.temperatures)
    steps = np.asarray(res.num_steps)
    return temps[np.arange(temps.shape[0]), steps]


# ---------------------------------------------------------------- the exact answers themselves


def test_conjugate_gaussian_exact_evidence_is_the_joint_density():
    model, ex = cg.make_model(3, num_data=4, noise_rho=0.3, seed=3)
    n, d = ex.data.shape
    cov = np.kron(np.ones((n, n)), ex.prior_cov) + np.kron(np.eye(n), ex.noise_cov)
    joint = stats.multivariate_normal(np.tile(ex.prior_mean, n), cov).logpdf(ex.data.ravel())
    assert ex.log_evidence == pytest.approx(joint, abs=1e-9)
    th = jnp.asarray(ex.posterior_mean, jnp.float32)
    per = sum(float(model.log_likelihood_per_datum(th, j)) for j in range(n))
    assert float(model.log_likelihood(th)) == pytest.approx(per, rel=1e-5)


# ------------------------------------------------------------------ conjugate Gaussian, all moves


@pytest.mark.parametrize("move", MOVES)
def test_conjugate_gaussian_d2_every_move(move):
    model, ex = cg.make_model(2)
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move=move), SEEDS)
    assert np.all(_final_beta(res) == 1.0)
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label=f"d2 {move}")


@pytest.mark.slow
# RWMH and NUTS at d = 50 take about 35 and 50 min on 2 cores (run side by side), past the
# default 900 s: 3 h, as for data tempering.
@pytest.mark.timeout(10800)
@pytest.mark.parametrize("dim", [2, 10, 50])
@pytest.mark.parametrize("move", MOVES)
def test_conjugate_gaussian_grid(dim, move):
    model, ex = cg.make_model(dim)
    n = 1000 if dim < 50 else 2000
    # a random walk needs O(d) steps to decorrelate: allow 4 d (only RWMH reaches the cap)
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, n, move=move,
                                                  max_mcmc_steps=max(50, 4 * dim)),
                    SEEDS, seed=dim)
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence,
                 label=f"grid d{dim} {move} N{n}")


@pytest.mark.slow
def test_adaptive_number_of_mcmc_steps_keeps_the_evidence_unbiased():
    """With a fixed schedule ``Ẑ`` is unbiased whenever every particle's kernel is π-invariant
    (up to the O(1/N) effect of tuning the kernels on the population). The adaptive number of
    MCMC steps is cross-fitted (``smcjax.moves.mutation``); a stopping rule that read every
    particle's own path gave ``E[Ẑ/Z]`` = 0.9885 ± 0.0021 on this case (z = -5.4),
    and it failed this test. About 150 s."""
    model, ex = cg.make_model(10)
    schedule = np.array([0.0, 0.04, 0.1, 0.19, 0.32, 0.51, 0.81, 1.0])
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 1000, move="hmc",
                                                  schedule=schedule), 2000, seed=4)
    assert np.all(np.asarray(res.num_mcmc_steps)[:, 1:8] >= 1)
    mean, se, z = evidence_ratio(res, ex.log_evidence)
    print(f"E[Z/Z] = {mean:.4f} ± {se:.4f} (z = {z:.2f})")
    assert abs(z) < 3.0, (mean, se, z)


# ------------------------------------------------------------- clipping at 1 and its evidence


def _weak_model():
    # one datum with noise sd 3: the ESS at beta = 1 is far above N/2, so the first adaptive
    # step wants beta > 1
    return cg.make_model(2, num_data=1, noise_scale=3.0, seed=1)


def _unclipped_next_temperature(log_weights, log_likelihood, beta, target_ess=0.5,
                                criterion="cess", num_iter=50):
    """The bug seen elsewhere: solve on (0, 10] and use the unclipped value."""
    crit = lambda d: tempering_mod._criterion(log_weights, log_likelihood, d, criterion)  # noqa
    lo, hi = jnp.zeros(()), jnp.asarray(10.0)
    for _ in range(num_iter):
        mid = 0.5 * (lo + hi)
        ok = crit(mid) >= target_ess
        lo, hi = jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)
    return beta + lo


def test_first_step_wants_beta_above_one_is_clipped_exactly():
    model, ex = _weak_model()
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move="rwmh"), SEEDS)
    assert np.all(np.asarray(res.num_steps) == 1)
    assert np.all(np.asarray(res.temperatures)[:, 1] == 1.0)  # exactly 1, not 1 - eps
    # the unclipped solution is well above 1 for these particles
    ll = jax.vmap(model.log_likelihood)(jax.vmap(model.sample_prior)(
        jax.random.split(jax.random.key(0), 500)))
    want = _unclipped_next_temperature(jnp.full((500,), -np.log(500.0)), ll, 0.0)
    assert float(want) > 1.5
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label="clipped")


def test_unclipped_evidence_increment_fails_the_check(monkeypatch):
    """The evidence check has the power to catch the unclipped-temperature bug."""
    model, ex = _weak_model()
    monkeypatch.setattr(tempering_mod, "next_temperature", _unclipped_next_temperature)
    broken_model = model._replace(name="unclipped")  # a new static argument: retrace
    res = run_seeds(lambda k: smcjax.tempered_smc(k, broken_model, 500, move="rwmh"), SEEDS)
    s = summary(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence)
    print("unclipped", s)
    assert abs(s["ratio_z"]) > 3.0
    with pytest.raises(AssertionError):
        assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence)


def test_extremely_informative_likelihood():
    model, ex = cg.make_model(2, informative=True)  # posterior variances ~1e-4 of the prior's
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move="rwmh"), SEEDS)
    assert np.all(_final_beta(res) == 1.0)
    assert np.asarray(res.num_steps).min() >= 5
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label="informative")


# ------------------------------------------------------------ asymmetric targets and bisection


@pytest.mark.parametrize("criterion", ["cess", "ess"])
def test_bisection_on_skewed_log_likelihood(criterion):
    rng = np.random.default_rng(0)
    n = 2000
    ll = -20.0 * np.exp(2.0 * rng.standard_normal(n))  # one-sided, heavily skewed
    lw = rng.normal(size=n) * 0.3
    lw = lw - special.logsumexp(lw)
    beta0 = 0.2

    def crit64(delta, sign=1.0):
        inc = sign * delta * ll
        if criterion == "cess":
            a = special.logsumexp(lw + inc)
            b = special.logsumexp(lw + 2 * inc)
            return np.exp(2 * a - b)
        u = lw + inc
        u = u - special.logsumexp(u)
        return np.exp(-special.logsumexp(2 * u)) / n

    beta = float(next_temperature(jnp.asarray(lw, jnp.float32), jnp.asarray(ll, jnp.float32),
                                  beta0, 0.5, criterion))
    delta = beta - beta0
    root = optimize.brentq(
        lambda d: crit64(d) - 0.5, 1e-12, 1 - beta0, xtol=1e-14)
    assert 0.0 < delta < 1 - beta0
    assert delta == pytest.approx(root, rel=2e-3)
    assert crit64(delta) == pytest.approx(0.5, abs=2e-3)
    # a sign error (tempering -log L) would land far from the root on this one-sided target
    flipped = optimize.brentq(
        lambda d: crit64(d, -1.0) - 0.5, 1e-12, 1 - beta0)
    assert abs(flipped - root) > 0.1 * root


@pytest.mark.parametrize("criterion", ["ess", "cess"])
def test_next_temperature_treats_non_finite_weights_as_zero(criterion):
    """A NaN or +inf log weight is a zero weight (as the engine treats it), not a NaN
    criterion that would end the bisection at a step of one ulp."""
    rng = np.random.default_rng(5)
    ll = jnp.asarray(rng.normal(-20.0, 5.0, 200), jnp.float32)
    lw = jnp.asarray(rng.normal(0.0, 0.3, 200), jnp.float32)  # ESS/N about 0.9 before
    dead = lw.at[:3].set(-jnp.inf)
    want = float(next_temperature(dead, ll, 0.1, 0.5, criterion))
    assert 0.1 + 1e-4 < want < 1.0
    for bad in (jnp.nan, jnp.inf):
        got = float(next_temperature(lw.at[:3].set(bad), ll, 0.1, 0.5, criterion))
        assert got == want, (bad, got, want)


def test_bisection_clips_to_exactly_one():
    ll = jnp.linspace(-1e-3, 0.0, 100)
    lw = jnp.full((100,), -jnp.log(100.0))
    for beta0 in (0.0, 0.3, 0.999):
        b = next_temperature(lw, ll, beta0, 0.5)
        assert b.dtype == jnp.float32 and float(b) == 1.0


def _gamma_poisson():
    a, b = 2.0, 0.5
    y = np.array([0, 3, 1, 0, 7, 2, 0, 1], np.float64)
    n, s = y.size, y.sum()
    log_z = (a * np.log(b) - special.gammaln(a) + special.gammaln(a + s)
             - (a + s) * np.log(b + n) - special.gammaln(y + 1).sum())
    post_a, post_b = a + s, b + n
    yj = jnp.asarray(y, jnp.float32)
    const = float(special.gammaln(y + 1).sum())
    model = smcjax.BayesianModel(
        log_prior=lambda lam: a * np.log(b) - special.gammaln(a) + (a - 1) * jnp.log(lam) - b * lam,
        log_likelihood=lambda lam: jnp.sum(yj) * jnp.log(lam) - n * lam - const,
        sample_prior=lambda k: jax.random.gamma(k, a) / b,
        bijection=Bijection(forward=jnp.exp, inverse=jnp.log, log_det_jacobian=lambda z: z),
        name="gamma_poisson",
    )
    return model, post_a / post_b, post_a / post_b**2, log_z


def test_gamma_poisson_skewed_posterior_with_bijection():
    """Asymmetric (one-sided) log-likelihood in log λ; exact Gamma posterior and evidence."""
    model, mean, var, log_z = _gamma_poisson()
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move="mala"), SEEDS)
    assert float(np.asarray(res.particles).min()) > 0.0  # constrained space
    assert_exact(res, mean, var, log_z, label="gamma-poisson")


# ---------------------------------------------------------------- non-finite log-likelihoods


def test_nan_log_likelihood_is_zero_weight_and_counted():
    y, sd = 0.3, 0.5
    # prior N(0, 1), y ~ N(θ, sd²) but log L = NaN for θ <= 0: the posterior is the conjugate
    # Gaussian truncated to θ > 0 and Z = N(y; 0, 1 + sd²) P(θ > 0 | y)
    post_var = 1.0 / (1.0 + 1.0 / sd**2)
    post_mean = post_var * y / sd**2
    tn = stats.truncnorm(-post_mean / np.sqrt(post_var), np.inf, post_mean, np.sqrt(post_var))
    log_z = (stats.norm.logpdf(y, 0.0, np.sqrt(1.0 + sd**2))
             + stats.norm.logsf(0.0, post_mean, np.sqrt(post_var)))

    def log_lik(th):
        val = -0.5 * ((y - th[0]) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
        return jnp.where(th[0] > 0, val, jnp.nan)

    model = smcjax.BayesianModel(
        log_prior=lambda th: jnp.sum(jax.scipy.stats.norm.logpdf(th)),
        log_likelihood=log_lik,
        sample_prior=lambda k: jax.random.normal(k, (1,)),
    )
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move="rwmh"), SEEDS)
    invalid = np.asarray(res.num_invalid)[:, 1]
    assert np.all((invalid > 150) & (invalid < 350))  # about half the prior draws
    assert np.all(np.isfinite(np.asarray(res.log_evidence)))
    assert_exact(res, [tn.mean()], [tn.var()], log_z, label="nan region")


def test_all_invalid_reports_collapse_not_nan():
    model = smcjax.BayesianModel(
        log_prior=lambda th: -0.5 * jnp.sum(th**2),
        log_likelihood=lambda th: jnp.asarray(-jnp.inf),
        sample_prior=lambda k: jax.random.normal(k, (2,)),
    )
    res = smcjax.tempered_smc(jax.random.key(0), model, 64)
    assert bool(res.collapsed)
    assert float(res.log_evidence) == -np.inf
    assert int(res.num_steps) == 1
    assert "all weights zero" in res.status


# ------------------------------------------------------- schedules, criteria, callback, tracing


def test_fixed_schedule_and_ess_criterion():
    model, ex = cg.make_model(2)
    sched = np.linspace(0.0, 1.0, 9) ** 2

    def one(k):
        a = smcjax.tempered_smc(k, model, 500, schedule=sched, move="hmc")
        b = smcjax.tempered_smc(k, model, 500, criterion="ess", move="hmc")
        return a, b

    fixed, ess = run_seeds(one, SEEDS)
    assert np.all(np.asarray(fixed.num_steps) == 8)
    np.testing.assert_array_equal(np.asarray(fixed.temperatures)[0, :9],
                                  sched.astype(np.float32))
    assert_exact(fixed, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label="schedule")
    assert np.all(np.asarray(ess.resampled)[:, 1])
    assert_exact(ess, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label="ess")


def test_callback_determinism_and_one_trace_for_all_temperatures():
    model, _ = cg.make_model(2, informative=True)
    traces = []

    def log_lik(th):
        traces.append(1)  # runs at trace time only
        return model.log_likelihood(th)

    counted = model._replace(log_likelihood=log_lik, name="counted")
    calls = []
    cb = lambda t, b, e, a: calls.append((int(t), float(b), float(e), float(a)))  # noqa: E731
    r1 = smcjax.tempered_smc(jax.random.key(3), counted, 128, callback=cb)
    n_traces = len(traces)
    r2 = smcjax.tempered_smc(jax.random.key(3), counted, 128, callback=cb)
    steps = int(r1.num_steps)
    assert steps >= 5
    assert n_traces < steps and len(traces) == n_traces  # no retrace, no per-step rebuild
    for leaf1, leaf2 in zip(jax.tree.leaves(r1), jax.tree.leaves(r2), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf1), np.asarray(leaf2))
    first = calls[:steps]
    assert [c[0] for c in first] == list(range(1, steps + 1))
    np.testing.assert_array_equal([c[1] for c in first], np.asarray(r1.temperatures)[1:steps + 1])
    assert first[-1][1] == 1.0


# ------------------------------------------------------------------------------ bad input


def _ok_model():
    return cg.make_model(2)[0]


@pytest.mark.parametrize("schedule", [[0.5, 0.3, 1.0], [0.2, 0.9], [0.5, 0.5, 1.0], [-0.1, 1.0],
                                      [0.3, 1.2]])
def test_bad_schedule(schedule):
    with pytest.raises(ValueError, match="schedule"):
        smcjax.tempered_smc(jax.random.key(0), _ok_model(), 10, schedule=schedule)


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5, -0.2])
def test_bad_target_ess(target):
    with pytest.raises(ValueError, match="target_ess"):
        smcjax.tempered_smc(jax.random.key(0), _ok_model(), 10, target_ess=target)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_num_particles(n):
    with pytest.raises(ValueError, match="num_particles"):
        smcjax.tempered_smc(jax.random.key(0), _ok_model(), n)


def test_prior_structure_mismatch():
    model = smcjax.BayesianModel(
        log_prior=lambda th: -0.5 * (th["mu"] ** 2 + th["tau"] ** 2),
        log_likelihood=lambda th: -0.5 * th["mu"] ** 2,
        sample_prior=lambda k: {"mu": jax.random.normal(k)},
    )
    with pytest.raises(ValueError, match="log_prior"):
        smcjax.tempered_smc(jax.random.key(0), model, 10)


@pytest.mark.parametrize("which", ["log_prior", "log_likelihood"])
def test_non_scalar_log_density(which):
    fns = {"log_prior": lambda th: -0.5 * jnp.sum(th**2),
           "log_likelihood": lambda th: -0.5 * jnp.sum(th**2)}
    fns[which] = lambda th: -0.5 * th**2
    model = smcjax.BayesianModel(sample_prior=lambda k: jax.random.normal(k, (3,)), **fns)
    with pytest.raises(ValueError, match=f"{which}.*scalar"):
        smcjax.tempered_smc(jax.random.key(0), model, 10)


def test_other_bad_options():
    key, model = jax.random.key(0), _ok_model()
    with pytest.raises(ValueError, match="criterion"):
        smcjax.tempered_smc(key, model, 10, criterion="kl")
    with pytest.raises(ValueError, match="move"):
        smcjax.tempered_smc(key, model, 10, move="gibbs")
    with pytest.raises(ValueError, match="num_chains"):
        smcjax.tempered_smc(key, model, 100, waste_free=True, num_chains=7)
    with pytest.raises(ValueError, match="num_mcmc_steps"):
        smcjax.tempered_smc(key, model, 10, num_mcmc_steps=0)
    int_model = model._replace(sample_prior=lambda k: jax.random.randint(k, (2,), 0, 3))
    with pytest.raises(ValueError, match="floating"):
        smcjax.tempered_smc(key, int_model, 10)

"""smcjax.validate: distribution functions, checks, the exact-answer catalogue, the runner, and
planted defects that the runner must catch.

The checks are tested on simulated data whose law is known: under the null they must reject at
about their nominal rate, and under a stated alternative they must reject.
"""

from __future__ import annotations

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats
from smcjax.models import discrete_hmm as hmm
from smcjax.models import gamma_poisson as gp

import smcjax
from smcjax.validate import (
    SAMPLERS,
    Exact,
    Instance,
    Problem,
    Sampler,
    SamplerOutput,
    _special,
    discrete_tv_check,
    evidence_ratio_check,
    get_problem,
    ks_check,
    marginal_tv_check,
    mean_check_across_runs,
    problems,
    run_validation,
    weighted_moment_check,
)
from smcjax.validate.runner import LEVELS, _plan, run_problem

# ----------------------------------------------------------------- distribution functions


def test_special_functions_match_scipy():
    rng = np.random.default_rng(0)
    for a in (0.3, 1.0, 2.5, 31.0, 500.0):
        x = np.concatenate([rng.gamma(a, 1.0, 100), [0.0, 1e-9, 5 * a]])
        np.testing.assert_allclose(_special.gammainc(a, x), special.gammainc(a, x),
                                   rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(_special.gammaincc(a, x), special.gammaincc(a, x),
                                   rtol=1e-10, atol=1e-300)
    for a, b in ((0.5, 0.5), (2.0, 30.0), (30.0, 2.0), (400.0, 700.0), (7.5, 0.5)):
        x = np.concatenate([rng.beta(a, b, 100), [0.0, 1.0]])
        np.testing.assert_allclose(_special.betainc(a, b, x), special.betainc(a, b, x),
                                   rtol=1e-9, atol=1e-14)
    t = np.array([-8.0, -2.0, 0.0, 0.7, 3.0, 9.0])
    for df in (3, 15, 63):
        np.testing.assert_allclose(_special.t_sf(t, df), stats.t.sf(t, df), rtol=1e-10)
    x = np.array([0.1, 5.0, 30.0, 120.0])
    np.testing.assert_allclose(_special.chi2_sf(x, 9), stats.chi2.sf(x, 9), rtol=1e-10)
    lam = np.array([0.1, 0.4, 0.8, 1.2, 2.0, 3.0])
    np.testing.assert_allclose(_special.kolmogorov_sf(lam), stats.kstwobign.sf(lam),
                               rtol=1e-10, atol=1e-15)
    z = np.array([-9.0, -1.0, 0.0, 2.5])
    np.testing.assert_allclose(_special.norm_cdf(z), stats.norm.cdf(z), rtol=1e-12)


# --------------------------------------------------------------------------------------- checks


def test_evidence_ratio_check_in_linear_space():
    """log Ẑ ~ N(-s²/2, s²) has E[Ẑ] = Z: the check passes although mean(log Ẑ) < log Z."""
    rng = np.random.default_rng(1)
    s, log_z = 0.5, -3.0
    unbiased = log_z - 0.5 * s**2 + s * rng.standard_normal(400)
    res = evidence_ratio_check(unbiased, log_z, alpha=1e-3)
    assert res.passed, res.message
    assert np.mean(unbiased) - log_z < -0.1  # a log-space check would have failed
    off = unbiased + 0.2  # Ẑ 22% too large
    bad = evidence_ratio_check(off, log_z, alpha=1e-3)
    assert not bad.passed and bad.statistic > 4, bad.message
    assert "Ẑ/Z" in bad.message
    res = evidence_ratio_check(np.array([0.0, -np.inf, 0.1]), 0.0)
    assert not res.passed and "not finite" in res.message


def test_mean_check_across_runs_nan_truth_and_zero_spread():
    rng = np.random.default_rng(2)
    est = np.array([1.0, 2.0, 3.0]) + 0.1 * rng.standard_normal((20, 3))
    assert mean_check_across_runs(est, [1.0, 2.0, np.nan], alpha=1e-3).passed
    assert not mean_check_across_runs(est, [1.0, 2.3, np.nan], alpha=1e-3).passed
    # every run returns the same wrong value: no spread must not mean "pass"
    same = np.tile([0.5], (10, 1))
    assert not mean_check_across_runs(same, [0.4]).passed
    assert mean_check_across_runs(same, [0.5]).passed
    msg = mean_check_across_runs(est, [1.0, 2.3, 3.0], labels=["a", "b", "c"]).message
    assert "for b" in msg


def test_weighted_moment_check_importance_sampling():
    """Importance sampling N(1, 0.5²) from N(0, 2²): correct weights pass, the unweighted
    sample (a dropped weight) fails."""
    rng = np.random.default_rng(3)
    x = 2.0 * rng.standard_normal(20000)
    lw = stats.norm.logpdf(x, 1.0, 0.5) - stats.norm.logpdf(x, 0.0, 2.0)
    assert weighted_moment_check(x, lw, [1.0], [0.25], alpha=1e-3).passed
    assert not weighted_moment_check(x, np.zeros_like(x), [1.0], [0.25], alpha=1e-3).passed


def test_ks_check_power_and_weights():
    rng = np.random.default_rng(4)
    cdf = stats.norm.cdf
    x = rng.standard_normal(4000)
    assert ks_check(x, None, cdf).passed
    assert not ks_check(x + 0.1, None, cdf).passed  # a 0.1 sd shift at n = 4000
    y = 3.0 * rng.standard_normal(40000)  # importance sample, ESS ~ 8000
    lw = stats.norm.logpdf(y) - stats.norm.logpdf(y, 0.0, 3.0)
    assert ks_check(y, lw, cdf).passed
    assert not ks_check(y, np.zeros_like(y), cdf).passed


@pytest.mark.parametrize("which", ["ks", "tv_single", "marginal_runs"])
def test_checks_reject_at_the_nominal_rate_under_the_null(which):
    """Over 300 null data sets the rejection rate at alpha = 0.1 is 0.1 within 4 binomial SEs
    (a check with a wrong standard error would be far off)."""
    rng = np.random.default_rng(5)
    rejections = 0
    for _ in range(300):
        if which == "ks":
            p = ks_check(rng.standard_normal(300), None, stats.norm.cdf, alpha=0.1).p_value
        elif which == "tv_single":
            probs = np.array([0.5, 0.3, 0.2])
            counts = rng.multinomial(400, probs)
            p = discrete_tv_check(counts / 400, probs, num_effective=400, alpha=0.1).p_value
        else:
            x = rng.standard_normal((10, 200))
            p = marginal_tv_check(x, None, stats.norm.cdf, num_bins=5, alpha=0.1).p_value
        rejections += p < 0.1
    rate = rejections / 300
    # Bonferroni makes the multi-category checks conservative: allow [0.02, 0.1 + 4 SE]
    assert 0.02 <= rate <= 0.1 + 4 * math.sqrt(0.09 / 300), rate


def test_discrete_tv_check_mode_masses():
    exact = np.array([0.4, 0.6])
    rng = np.random.default_rng(6)
    runs = exact + 0.01 * rng.standard_normal((16, 1)) * np.array([1.0, -1.0])
    assert discrete_tv_check(runs, exact, alpha=1e-3).passed
    res = discrete_tv_check(runs + np.array([0.05, -0.05]), exact, alpha=1e-3)
    assert not res.passed and "TV distance 0.05" in res.message
    # a rare category that no run sees: judged with the multinomial floor, not a zero SE
    rare = np.array([1e-4, 1.0 - 1e-4])
    seen = np.tile([0.0, 1.0], (16, 1))
    assert not discrete_tv_check(seen, rare).passed
    assert discrete_tv_check(seen, rare, num_effective=16 * 500, alpha=1e-3).passed
    with pytest.raises(ValueError, match="num_effective"):
        discrete_tv_check(exact, exact)
    with pytest.raises(ValueError, match="sum to 1"):
        discrete_tv_check(runs, [0.4, 0.7])


def test_marginal_tv_check_gamma():
    rng = np.random.default_rng(7)
    good = rng.gamma(31.0, 1 / 12.5, (16, 500))
    cdf = lambda v: _special.gamma_cdf(v, 31.0, 12.5)  # noqa: E731
    assert marginal_tv_check(good, None, cdf, alpha=1e-3).passed
    wrong = rng.gamma(30.0, 1 / 12.5, (16, 500))  # the posterior of a dropped Jacobian
    res = marginal_tv_check(wrong, None, cdf, alpha=1e-3)
    assert not res.passed, res.message
    # unweighted, ks_check is the classical test: its p-value (Stephens' approximation) agrees
    # with SciPy's exact one
    for row in good:
        ours = ks_check(row, None, cdf).p_value
        ref = stats.kstest(row, stats.gamma(31.0, scale=1 / 12.5).cdf).pvalue
        assert ours == pytest.approx(ref, rel=0.05, abs=2e-3)


# --------------------------------------------------------------------------------------- models


def test_gamma_poisson_exact_answers():
    ex = gp.exact()
    a, b = 2.0, 0.5
    y = gp.COUNTS

    def joint(lam):
        return np.exp(stats.gamma.logpdf(lam, a, scale=1 / b)
                      + stats.poisson.logpmf(y, lam).sum())

    z, _ = integrate.quad(joint, 0, 50, epsabs=0, epsrel=1e-12, points=[2.5])
    assert ex.log_evidence == pytest.approx(np.log(z), abs=1e-9)
    m, _ = integrate.quad(lambda v: v * joint(v) / z, 0, 50, epsrel=1e-12, points=[2.5])
    assert ex.mean == pytest.approx(m, rel=1e-9)
    model = gp.make_model()
    lam = jnp.float32(ex.mean)
    per = sum(float(model.log_likelihood_per_datum(lam, i)) for i in range(len(y)))
    assert float(model.log_likelihood(lam)) == pytest.approx(per, rel=1e-5)
    assert float(model.log_likelihood(lam)) == pytest.approx(
        stats.poisson.logpmf(y, ex.mean).sum(), rel=1e-5)
    assert float(model.log_prior(lam)) == pytest.approx(
        stats.gamma.logpdf(ex.mean, a, scale=1 / b), rel=1e-5)
    with pytest.raises(ValueError, match="counts"):
        gp.make_model([1, -2])


def test_discrete_hmm_forward_matches_enumeration():
    p = hmm.default_params()
    _, ys = hmm.simulate(0, p, 6)
    fw = hmm.forward(p, ys)
    total, last = 0.0, np.zeros(3)
    for path in itertools.product(range(3), repeat=6):
        pr = p.initial[path[0]] * p.emission[path[0], ys[0]]
        for t in range(1, 6):
            pr *= p.transition[path[t - 1], path[t]] * p.emission[path[t], ys[t]]
        total += pr
        last[path[-1]] += pr
    assert fw.log_likelihood == pytest.approx(np.log(total), rel=1e-12)
    np.testing.assert_allclose(fw.filtering_probs[-1], last / total, rtol=1e-12)
    with pytest.raises(ValueError, match="sum to 1"):
        hmm.make_model(p._replace(initial=np.array([0.5, 0.5, 0.5])))


def test_discrete_hmm_proposal_is_normalised():
    m = hmm.make_model()
    for x_prev, y in ((0, 0), (2, 3)):
        lp = [float(m.proposal.log_prob(x_prev, j, y, 1)) for j in range(3)]
        assert sum(np.exp(lp)) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------ catalogue


def test_catalogue_builds_and_exact_cdfs_match_exact_moments():
    names = [p.name for p in problems()]
    assert len(names) == len(set(names))
    for required in ("conjugate_gaussian_2d", "nig_regression", "beta_binomial",
                     "gamma_poisson", "bimodal", "linear_gaussian_1d", "linear_gaussian_3d",
                     "discrete_hmm"):
        assert required in names
    for p in problems("bayes"):
        inst = p.build()
        ex = inst.exact
        for i, cdf in ex.marginal_cdfs:  # E[X] and Var[X] from the CDF by quadrature
            sd = math.sqrt(ex.var[i])
            lo, hi = ex.mean[i] - 15 * sd, ex.mean[i] + 15 * sd
            grid = np.linspace(lo, hi, 30001)
            f = cdf(grid)
            assert f[0] < 1e-5 and f[-1] > 1 - 1e-5, p.name
            dens = np.gradient(f, grid)
            m = np.trapezoid(grid * dens, grid)
            v = np.trapezoid((grid - m) ** 2 * dens, grid)
            assert m == pytest.approx(ex.mean[i], abs=1e-4 * sd), p.name
            assert v == pytest.approx(ex.var[i], rel=1e-3), p.name
        # the model's own prior sample has the structure the exact vectors describe
        theta = inst.model.sample_prior(jax.random.key(0))
        assert sum(np.size(a) for a in jax.tree.leaves(theta)) == len(ex.mean), p.name
    with pytest.raises(ValueError, match="unknown problem"):
        get_problem("nope")


def test_catalogue_beta_binomial_and_nig_against_scipy():
    bb = get_problem("beta_binomial").build()
    from smcjax.validate.catalogue import BB_SUCCESSES, BB_TRIALS

    def joint(q):
        return np.exp(stats.beta.logpdf(q, 2, 3)
                      + stats.binom.logpmf(BB_SUCCESSES, BB_TRIALS, q).sum())

    z, _ = integrate.quad(joint, 0, 1, epsrel=1e-12)
    assert bb.exact.log_evidence == pytest.approx(np.log(z), abs=1e-9)
    nig = get_problem("nig_regression").build()
    (_, cdf_b0), (_, cdf_s2) = nig.exact.marginal_cdfs
    from smcjax.models import linear_regression as lr

    x, y = lr.simulate(seed=0, num_data=20, num_features=2)
    post = lr.posterior(x, y, lr.default_prior(2))
    v = np.array([-1.0, 0.3, 2.0])
    t_ref = stats.t.cdf(v, 2 * post.a, post.mean[0], np.sqrt(post.b / post.a * post.cov[0, 0]))
    np.testing.assert_allclose(cdf_b0(v), t_ref, rtol=1e-9)
    s = np.array([0.1, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(cdf_s2(s), stats.invgamma.cdf(s, post.a, scale=post.b), rtol=1e-9)


# --------------------------------------------------------------------------------------- runner


def test_sampler_registry_and_every_sampler_gets_three_quick_problems():
    required = {"bootstrap", "guided", "auxiliary", "tempered_rwmh", "tempered_hmc",
                "tempered_mala", "tempered_nuts", "waste_free", "data_tempering"}
    assert required <= set(SAMPLERS)
    plan = _plan(LEVELS["quick"], True, SAMPLERS, list(problems()), explicit=False)
    for name in SAMPLERS:
        assert sum(s.name == name for s, _ in plan) >= 3, name
    covered = {p.name for _, p in plan}
    assert {p.name for p in problems() if p.quick} <= covered


def test_bad_names_give_clear_errors():
    with pytest.raises(ValueError, match="valid names: .*bootstrap"):
        run_validation(samplers=["bootstrapp"])
    with pytest.raises(ValueError, match="unknown level"):
        run_validation(level="medium")
    with pytest.raises(ValueError, match="unknown problem"):
        run_validation(samplers=["bootstrap"], problems=["kalman"])
    with pytest.raises(ValueError, match="taken by a built-in"):
        run_validation(extra_samplers={"bootstrap": SAMPLERS["bootstrap"]})
    with pytest.raises(ValueError, match="must be a smcjax.validate.Sampler"):
        run_validation(extra_samplers={"x": lambda key: None})
    with pytest.raises(ValueError, match="no problem applies"):
        run_validation(samplers=["bootstrap"], problems=["gamma_poisson"])


def _dropped_constant_filter():
    """A bootstrap filter whose observation density lost its -½ log 2π normalising term."""
    def run(key, inst, n):
        m = inst.model
        broken = m._replace(observation_log_prob=lambda x, y, t: m.observation_log_prob(x, y, t)
                            + 0.5 * math.log(2 * math.pi))
        r = smcjax.particle_filter(key, broken, inst.observations, n, reduce_fn=inst.summary)
        fs = r.final_state
        return SamplerOutput(r.log_evidence, fs.particles, fs.log_weights, r.reduced)
    return Sampler("dropped_constant", ("ssm",), run, "planted defect")


def test_runner_passes_a_correct_filter_and_catches_a_dropped_normalising_constant():
    calls = []
    report = run_validation(samplers=["bootstrap", "broken"], problems=["linear_gaussian_1d",
                                                                       "discrete_hmm"],
                            extra_samplers={"broken": _dropped_constant_filter()},
                            progress=lambda i, n, d: calls.append((i, n, d)), num_runs=8)
    print(report.table())
    assert calls[0] == (0, 4, "bootstrap on linear_gaussian_1d") and calls[-1][0] == 4
    good = [r for r in report.rows if r.sampler == "bootstrap"]
    bad = [r for r in report.rows if r.sampler == "broken"]
    assert good and all(r.passed for r in good)
    assert {r.check for r in good} == {"evidence", "filtering", "marginal[0]", "modes"}
    assert not report.passed
    failed = {(r.problem, r.check) for r in bad if not r.passed}
    # the constant cancels in the normalised weights: only the evidence can see it
    assert failed == {("linear_gaussian_1d", "evidence"), ("discrete_hmm", "evidence")}
    msg = next(r.message for r in bad if r.check == "evidence")
    assert "mean Ẑ/Z = " in msg and "p = " in msg
    table = report.table()
    assert "FAIL broken on discrete_hmm [evidence]" in table
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] is False and len(d["rows"]) == len(report.rows)
    assert set(d["rows"][0]) == {"problem", "sampler", "check", "statistic", "passed",
                                 "seconds", "message"}


def test_fast_normal_problem_passes_and_is_full_only():
    # The 1-d linear-Gaussian model drawing with smcjax.random.normal (that wrong draws fail
    # the same Kalman checks is shown in tests/test_filters.py); it runs with --full only.
    prob = next(p for p in problems() if p.name == "linear_gaussian_1d_fast_normal")
    assert not prob.quick
    report = run_validation(samplers=["bootstrap"], problems=[prob.name], num_runs=16)
    assert report.passed, report.table()
    assert {r.check for r in report.rows} == {"evidence", "filtering", "marginal[0]"}


def _dropped_jacobian(move="rwmh"):
    """Tempered SMC on the model with its bijection's log-Jacobian dropped (a classic bug)."""
    def run(key, inst, n):
        m = inst.model
        if m.bijection is not None:
            m = m._replace(bijection=m.bijection._replace(
                log_det_jacobian=lambda z: jnp.zeros((), jnp.float32)))
        r = smcjax.tempered_smc(key, m, n, move=move)
        return SamplerOutput(r.log_evidence, r.particles, r.log_weights)
    return Sampler("dropped_jacobian", ("bayes",), run, "planted defect")


def test_runner_catches_a_missing_jacobian():
    report = run_validation(samplers=["tempered_rwmh", "no_jacobian"],
                            problems=["gamma_poisson", "conjugate_gaussian_2d"],
                            extra_samplers={"no_jacobian": _dropped_jacobian()}, num_runs=16)
    print(report.table())
    by = {(r.sampler, r.problem, r.check): r for r in report.rows}
    assert all(r.passed for r in report.rows if r.sampler == "tempered_rwmh")
    # the Gaussian model has no bijection, so the broken sampler is right there ...
    assert all(r.passed for r in report.rows
               if r.sampler == "no_jacobian" and r.problem == "conjugate_gaussian_2d")
    # ... and wrong on the Gamma posterior, whose log bijection needs the Jacobian e^z: the
    # moves then target Gamma(a + S - 1, b + n). The evidence check does not see this defect
    # (the increments L^Δβ never use the prior density), the moments and the marginal do.
    for check in ("moments", "marginal[0]"):
        assert not by[("no_jacobian", "gamma_poisson", check)].passed, check
    assert "mean of lambda" in by[("no_jacobian", "gamma_poisson", "moments")].message


def test_user_problem_with_a_known_answer():
    """A user's own model with a known posterior, through a Problem built in a few lines."""
    def build():
        model = smcjax.BayesianModel(
            log_prior=lambda th: -0.5 * jnp.sum(th**2) - 0.5 * np.log(2 * np.pi),
            log_likelihood=lambda th: -0.5 * jnp.sum((th - 1.0) ** 2) - 0.5 * np.log(2 * np.pi),
            sample_prior=lambda k: jax.random.normal(k, (1,)))
        # posterior N(1/2, 1/2); evidence N(1; 0, 2)
        exact = Exact(log_evidence=float(stats.norm.logpdf(1.0, 0.0, np.sqrt(2.0))),
                      mean=np.array([0.5]), var=np.array([0.5]),
                      marginal_cdfs=((0, lambda x: stats.norm.cdf(x, 0.5, np.sqrt(0.5))),))
        return Instance(model, exact)

    report = run_validation(samplers=["tempered_mala"], problems=[Problem("mine", "bayes", build)],
                            num_runs=8)
    assert report.passed, report.table()
    assert [r.check for r in report.rows] == ["evidence", "moments", "marginal[0]"]


def test_a_sampler_that_raises_fails_its_row_only():
    def run(key, inst, n):
        raise RuntimeError("boom\nsecond line")

    report = run_validation(samplers=["bootstrap", "raises"], problems=["linear_gaussian_1d"],
                            extra_samplers={"raises": Sampler("raises", ("ssm",), run)},
                            num_runs=4)
    rows = [r for r in report.rows if r.sampler == "raises"]
    assert len(rows) == 1 and rows[0].check == "error" and not rows[0].passed
    assert rows[0].message == "RuntimeError: boom"


def test_every_sampler_problem_pair_gets_its_own_keys():
    """Samplers on one problem must not share random streams (they would draw the same prior
    particles, and their checks would be correlated); the same pair and seed repeat."""
    seen = {}

    def recorder(name):
        def run(key, inst, n):
            seen.setdefault(name, []).append(np.asarray(jax.random.key_data(key)))
            theta = jax.vmap(inst.model.sample_prior)(jax.random.split(key, n))
            return SamplerOutput(jnp.float32(0.0), theta, jnp.zeros(n))
        return Sampler(name, ("bayes",), run, "records its keys", jit=False)

    problem = get_problem("conjugate_gaussian_2d")
    for name in ("a", "b", "a"):
        run_problem(recorder(name), problem, num_particles=8, num_runs=3, seed=0)
    a, b = np.array(seen["a"]), np.array(seen["b"])
    np.testing.assert_array_equal(a[:3], a[3:])  # reproducible
    assert not np.any(np.all(a[:3, None] == b[None, :], axis=-1))  # no key shared


@pytest.mark.slow
def test_quick_validation_passes_for_every_sampler():
    """The whole ``smcjax validate --quick`` suite (about 3-4 CPU minutes)."""
    report = run_validation("quick")
    print(report.table())
    assert report.passed, report.table()
    assert set(report.samplers) == set(SAMPLERS)
    for name in SAMPLERS:
        assert len({r.problem for r in report.rows if r.sampler == name}) >= 3

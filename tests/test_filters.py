"""Particle filters against the exact Kalman filter (log-evidence in linear space, filtering means).

Tolerances are in Monte Carlo standard errors measured across independent seeds:
``mean(Ẑ/Z)`` within 3 SE of 1 over R >= 200 seeds, and the across-seed average filtering mean
within 4 SE of the Kalman mean at every step and coordinate.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _static_checks import familywise_z
from smcjax.models import linear_gaussian as lg

import smcjax
from smcjax.resampling import SCHEMES
from smcjax.validate import evidence_ratio_check, mean_check_across_runs

NUM_STEPS = 25
# Particles per run. The filtering mean has an O(1/N) bias while the standard error of its
# average over R runs is O(1/sqrt(N R)), so N must not be small next to R: at N = 256 the 3-d
# bootstrap filter (mean ESS ~36) shows |z| ~ 7 and the 1-d multinomial case |z| ~ 4.5 over
# 200 seeds; at N = 1024 the bias is well below the Monte Carlo error, except for the 3-d
# bootstrap filter (mean ESS ~140 of 1024, minimum ~4): there, over 800 runs, the average
# filtering mean was off by 0.0052 (rms over steps and coordinates) at N = 1024 and by 0.0014
# at N = 4096 (the 1/N law), i.e. rms |z| 2.28 and 1.42. It therefore runs at N = 4096.
PARTICLES = {1: 1024, 3: 1024}
BOOTSTRAP_3D_PARTICLES = 4096


def num_particles(method, dim):
    return BOOTSTRAP_3D_PARTICLES if (method, dim) == ("bootstrap", 3) else PARTICLES[dim]


@functools.cache
def problem(dim):
    p = lg.random_params(jax.random.key(10 + dim), dim_x=dim, dim_y=dim)
    _, ys = lg.simulate(jax.random.key(20 + dim), p, NUM_STEPS)
    return p, ys, lg.kalman_filter(p, ys)


def make_model(p, method, *, proposal_inflate=1.3, lookahead_inflate=1.5):
    model = lg.make_model(p)
    if method in ("guided", "auxiliary"):
        # an inflated optimal proposal: valid but not optimal, so f g / q is fully exercised
        model = model._replace(proposal=lg.optimal_proposal(p, inflate=proposal_inflate))
    if method == "auxiliary":
        # an inexact (flattened) look-ahead, so G / eta is fully exercised
        model = model._replace(
            auxiliary_log_weight=lg.predictive_log_prob(p, inflate=lookahead_inflate))
    return model


def many_runs(model, ys, num_particles, num_runs, *, method, resampling, ess_threshold, seed=0):
    keys = jax.random.split(jax.random.key(seed), num_runs)
    run = jax.jit(jax.vmap(lambda k: smcjax.particle_filter(
        k, model, ys, num_particles, method=method, resampling=resampling,
        ess_threshold=ess_threshold)))
    return run(keys)


def check_against_kalman(res, kf, mean_se=4.0):
    ev = evidence_ratio_check(np.asarray(res.log_evidence), kf.log_likelihood, num_se=3.0)
    means = mean_check_across_runs(np.asarray(res.filtering_mean), kf.means, num_se=mean_se)
    return ev, means


CASES = (
    # every method, 1-d and 3-d, ESS-triggered and every-step resampling
    [(m, d, "systematic", thr) for m in ("bootstrap", "guided", "auxiliary") for d in (1, 3)
     for thr in (0.5, 1.0)]
    # every scheme with ESS-triggered resampling (bootstrap, 1-d)
    + [("bootstrap", 1, s, 0.5) for s in sorted(SCHEMES) if s != "systematic"]
)


@pytest.mark.parametrize("method,dim,resampling,ess_threshold", CASES)
def test_filter_matches_kalman(method, dim, resampling, ess_threshold):
    p, ys, kf = problem(dim)
    res = many_runs(make_model(p, method), ys, num_particles(method, dim), 200, method=method,
                    resampling=resampling, ess_threshold=ess_threshold)
    assert not np.any(np.asarray(res.collapsed))
    ev, means = check_against_kalman(res, kf)
    assert ev.passed, ev.message
    assert means.passed, means.message
    resampled = np.asarray(res.resampled)[:, 1:]
    if ess_threshold == 1.0:
        assert np.all(resampled)
    elif method != "auxiliary":  # (the auxiliary filter tests the ESS of W * eta instead)
        n = num_particles(method, dim)
        np.testing.assert_array_equal(resampled, np.asarray(res.ess)[:, :-1] < ess_threshold * n)


GRID_METHODS, GRID_DIMS, GRID_THRESHOLDS = ("bootstrap", "guided", "auxiliary"), (1, 3), (0.5, 1.0)
# Every filtering-mean coordinate at every step in every case of the grid: a per-value
# bound of 4 would fail an exact filter in about one grid run in five (see familywise_z).
GRID_Z = familywise_z(len(SCHEMES) * len(GRID_METHODS) * len(GRID_THRESHOLDS)
                      * sum(NUM_STEPS * d for d in GRID_DIMS))


@pytest.mark.slow
@pytest.mark.parametrize("resampling", sorted(SCHEMES))
@pytest.mark.parametrize("method", GRID_METHODS)
@pytest.mark.parametrize("dim", GRID_DIMS)
@pytest.mark.parametrize("ess_threshold", GRID_THRESHOLDS)
def test_filter_matches_kalman_full_grid(method, dim, resampling, ess_threshold):
    p, ys, kf = problem(dim)
    res = many_runs(make_model(p, method), ys, num_particles(method, dim), 400, method=method,
                    resampling=resampling, ess_threshold=ess_threshold, seed=1)
    ev, means = check_against_kalman(res, kf, mean_se=GRID_Z)
    assert ev.passed, ev.message
    assert means.passed, means.message


def test_fully_adapted_auxiliary_filter():
    """Optimal proposal and exact look-ahead: all weights G/eta equal 1, so the ESS stays N and
    the evidence has a smaller spread than the bootstrap filter's."""  # noqa: D205
    p, ys, kf = problem(3)
    model = make_model(p, "auxiliary", proposal_inflate=1.0, lookahead_inflate=1.0)
    res = many_runs(model, ys, PARTICLES[3], 200, method="auxiliary", resampling="systematic",
                    ess_threshold=1.0)
    ev, means = check_against_kalman(res, kf)
    assert ev.passed and means.passed, (ev.message, means.message)
    # resampling every step from W * eta, then weights G / eta = 1: ESS is N after step 0
    np.testing.assert_allclose(np.asarray(res.ess)[:, 1:], PARTICLES[3], rtol=1e-3)
    boot = many_runs(make_model(p, "bootstrap"), ys, PARTICLES[3], 200, method="bootstrap",
                     resampling="systematic", ess_threshold=0.5)
    assert np.std(np.asarray(res.log_evidence)) < 0.5 * np.std(np.asarray(boot.log_evidence))


@pytest.mark.parametrize("dim", [1, 3])
def test_fast_normal_model_matches_kalman(dim):
    """The model's moves drawn with smcjax.random.normal: the same exact-answer checks pass,
    and the same draws scaled by 0.9 (a wrong transition noise) fail them."""
    p, ys, kf = problem(dim)
    model = lg.make_model(p, normal=smcjax.random.normal)
    res = many_runs(model, ys, PARTICLES[dim], 200, method="bootstrap", resampling="systematic",
                    ess_threshold=0.5, seed=3)
    ev, means = check_against_kalman(res, kf)
    assert ev.passed and means.passed, (ev.message, means.message)
    if dim == 1:
        shrunk = lambda key, shape, dtype: 0.9 * smcjax.random.normal(key, shape, dtype)  # noqa: E731
        res = many_runs(lg.make_model(p, normal=shrunk), ys, PARTICLES[1], 200,
                        method="bootstrap", resampling="systematic", ess_threshold=0.5, seed=3)
        ev, means = check_against_kalman(res, kf)
        assert not ev.passed and not means.passed, (ev.message, means.message)


def test_stochastic_volatility_normal_option():
    """The SV model with smcjax.random.normal: other draws, the same evidence distribution
    (two-sample z-test on log Z-hat over 100 seeds each, 4 standard errors; draws scaled by
    0.9 gave z = 12.8 when this test was written)."""
    from smcjax.models import stochastic_volatility as sv

    _, ys = sv.simulate(jax.random.key(0), 100)
    runs = {}
    for name, normal in (("jax", jax.random.normal), ("smcjax", smcjax.random.normal)):
        model = sv.make_model(normal=normal)
        runs[name] = np.asarray(many_runs(model, ys, 512, 100, method="bootstrap",
                                          resampling="systematic", ess_threshold=0.5,
                                          seed=4).log_evidence, np.float64)
    assert not np.array_equal(runs["jax"], runs["smcjax"])
    a, b = runs["jax"], runs["smcjax"]
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)


def _broken_observation(model, p, *, drop_constant=False, wrong_noise=False):
    """A deliberately wrong weight, to show the exact-answer checks catch it."""
    chol_r = jnp.linalg.cholesky(p.R) * (2.0 if wrong_noise else 1.0)
    dy = p.C.shape[0]

    def observation_log_prob(x, y, t):
        z = jax.scipy.linalg.solve_triangular(chol_r, y - p.C @ x, lower=True)
        out = -0.5 * (z @ z)
        if not drop_constant:
            out = out - jnp.log(jnp.diag(chol_r)).sum() - 0.5 * dy * jnp.log(2 * jnp.pi)
        return out

    return model._replace(observation_log_prob=observation_log_prob)


def test_planted_defects_are_caught():
    p, ys, kf = problem(1)
    model = lg.make_model(p)
    # 1. the correct observation density written the same way passes
    res = many_runs(_broken_observation(model, p), ys, PARTICLES[1], 200, method="bootstrap",
                    resampling="systematic", ess_threshold=0.5)
    ev, means = check_against_kalman(res, kf)
    assert ev.passed and means.passed, (ev.message, means.message)
    # 2. dropping the normalising constant: the evidence check fails, means are unaffected
    res = many_runs(_broken_observation(model, p, drop_constant=True), ys, PARTICLES[1], 200,
                    method="bootstrap", resampling="systematic", ess_threshold=0.5)
    ev, means = check_against_kalman(res, kf)
    assert not ev.passed, ev.message
    # 3. a wrong observation variance: both checks fail
    res = many_runs(_broken_observation(model, p, wrong_noise=True), ys, PARTICLES[1], 200,
                    method="bootstrap", resampling="systematic", ess_threshold=0.5)
    ev, means = check_against_kalman(res, kf)
    assert not ev.passed and not means.passed, (ev.message, means.message)
    # 4. a guided filter that forgets to divide by the proposal density
    gm = make_model(p, "guided")
    bad_q = gm.proposal._replace(log_prob=lambda x_prev, x, y, t: 0.0 * x.sum())
    res = many_runs(gm._replace(proposal=bad_q), ys, PARTICLES[1], 200, method="guided",
                    resampling="systematic", ess_threshold=0.5)
    ev, means = check_against_kalman(res, kf)
    assert not ev.passed and not means.passed, (ev.message, means.message)


def test_pytree_particles_and_observations():
    """Particles and observations may be pytrees (here dicts); results match the array model."""
    p, ys, kf = problem(1)
    base = lg.make_model(p)
    model = smcjax.StateSpaceModel(
        initial_sample=lambda k: {"x": base.initial_sample(k)},
        transition_sample=lambda k, s, t: {"x": base.transition_sample(k, s["x"], t)},
        transition_log_prob=lambda s0, s1, t: base.transition_log_prob(s0["x"], s1["x"], t),
        observation_log_prob=lambda s, y, t: base.observation_log_prob(s["x"], y["y"], t),
    )
    res = smcjax.particle_filter(jax.random.key(0), model, {"y": ys}, 512)
    ref = smcjax.particle_filter(jax.random.key(0), base, ys, 512)
    np.testing.assert_allclose(res.log_evidence, ref.log_evidence, rtol=1e-6)
    np.testing.assert_allclose(res.filtering_mean["x"], ref.filtering_mean, rtol=1e-5, atol=1e-6)



@pytest.mark.timeout(300)
@pytest.mark.parametrize("n", [1, 2, 32])
def test_few_particles_compile_and_run(n):
    """Tiny populations work. With the session-14 resampler, compiling the filter at N = 32
    did not finish in 90 s (it takes about 5 s now, like N = 1000); the cause was not
    pinned down, so this guards it."""
    p, ys, kf = problem(1)
    res = smcjax.particle_filter(jax.random.key(0), lg.make_model(p), ys, n, ess_threshold=1.0)
    assert res.status == "ok"
    assert np.isfinite(float(res.log_evidence))
    # one particle: the estimate is the product of its own likelihoods, so the variance is 0
    if n == 1:
        np.testing.assert_array_equal(np.asarray(res.filtering_var), 0.0)


def test_same_key_bitwise_identical_and_jit_parity():
    p, ys, _ = problem(3)
    model = make_model(p, "guided")
    a = smcjax.particle_filter(jax.random.key(5), model, ys, 300, method="guided")
    b = smcjax.particle_filter(jax.random.key(5), model, ys, 300, method="guided")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    c = smcjax.particle_filter(jax.random.key(6), model, ys, 300, method="guided")
    assert float(a.log_evidence) != float(c.log_evidence)
    # the engine run eagerly (no jit) gives the same result as the compiled filter
    from smcjax.filters import _fk_model

    fk = _fk_model(model, "guided", ys)
    with jax.disable_jit():
        state, infos, _ = smcjax.smc_run(jax.random.key(5), fk, 50, 3)
    short = smcjax.particle_filter(jax.random.key(5), model, ys[:3], 50, method="guided")
    np.testing.assert_allclose(float(state.log_evidence), float(short.log_evidence), rtol=1e-5)


def test_without_moments_same_evidence():
    """``moments=False`` drops the filtering moments and nothing else."""
    params = lg.random_params(jax.random.key(0), dim_x=2, dim_y=1)
    _, ys = lg.simulate(jax.random.key(1), params, 30)
    model = lg.make_model(params)
    full = smcjax.particle_filter(jax.random.key(2), model, ys, 500)
    lean = smcjax.particle_filter(jax.random.key(2), model, ys, 500, moments=False)
    assert lean.filtering_mean is None and lean.filtering_var is None
    np.testing.assert_array_equal(np.asarray(lean.log_evidence), np.asarray(full.log_evidence))
    np.testing.assert_array_equal(np.asarray(lean.ess), np.asarray(full.ess))
    user = smcjax.particle_filter(jax.random.key(2), model, ys, 500, moments=False,
                                  reduce_fn=lambda x, lw, t: jnp.max(x))
    assert user.reduced.shape == (30,)


def test_reduce_fn_output_is_stacked():
    p, ys, _ = problem(1)
    res = smcjax.particle_filter(
        jax.random.key(0), lg.make_model(p), ys, 100,
        reduce_fn=lambda x, lw, t: {"max": x.max(), "t": t})
    assert res.reduced["max"].shape == (NUM_STEPS,)
    np.testing.assert_array_equal(np.asarray(res.reduced["t"]), np.arange(NUM_STEPS))

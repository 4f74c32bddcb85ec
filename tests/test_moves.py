"""MCMC moves: invariance of each BlackJAX adapter, population tuning, composition, user moves."""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _static_checks import assert_exact, run_seeds
from smcjax.models import conjugate_gaussian as cg

import smcjax
from smcjax import moves
from smcjax.moves import mutation, tuning

MEAN = np.array([1.0, -2.0, 0.5])
SCALES = np.array([1.0, 3.0, 0.2])
CORR = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.5], [0.0, -0.5, 1.0]])
COV = CORR * np.outer(SCALES, SCALES)
PREC = jnp.asarray(np.linalg.inv(COV), jnp.float32)
TARGETS = {"rwmh": 0.234, "mala": 0.574, "hmc": 0.8, "nuts": 0.9}


def _log_density(z):
    r = z - jnp.asarray(MEAN, jnp.float32)
    return -0.5 * r @ PREC @ r


@pytest.mark.parametrize("name", ["rwmh", "mala", "hmc", "nuts"])
def test_move_keeps_gaussian_invariant_and_step_size_adapts(name):
    """Exact draws stay exact draws; the step size moves towards the target acceptance."""
    n = 4000
    rng = np.random.default_rng(1)
    z0 = jnp.asarray(rng.multivariate_normal(MEAN, COV, size=n), jnp.float32)
    lw = jnp.full((n,), -np.log(n), jnp.float32)
    move = moves.get_move(name)

    @jax.jit
    def run(key, z, params):
        return moves.mutate(key, z, lw, _log_density, move, params, num_steps=3)

    params = move.init_params(3, jnp.float32)
    z1, info = run(jax.random.key(0), z0, params)
    z1 = np.asarray(z1, np.float64)
    se_mean = np.sqrt(np.diag(COV) / n)
    se_var = np.diag(COV) * np.sqrt(2.0 / n)
    assert np.all(np.abs((z1.mean(0) - MEAN) / se_mean) < 4), z1.mean(0)
    assert np.all(np.abs((z1.var(0) - np.diag(COV)) / se_var) < 4), z1.var(0)
    moved = np.mean(np.any(z1 != np.asarray(z0), axis=1))
    assert moved > 0.5
    assert int(info.num_steps) == 3 and int(info.num_evals) >= 4 * n

    # start 20x too large (acceptance ~0) and adapt between mutations (the kernel is fixed
    # within each): the acceptance must end in the band [a*/2, (1 + a*)/2] around the target
    params = {"step_size": params["step_size"] * 20.0}
    z, accs = z0, []
    for i in range(20):
        z, info = run(jax.random.key(10 + i), z, params)
        params = move.adapt(params, info.mean_info)
        accs.append(float(info.acceptance_rate))
    print(name, np.round(accs, 3), float(params["step_size"]))
    target = TARGETS[name]
    assert accs[0] < 0.05
    assert target / 2 < np.mean(accs[-3:]) < (1 + target) / 2


def test_adaptive_number_of_steps_stops_when_decorrelated():
    n = 1000
    rng = np.random.default_rng(2)
    z0 = jnp.asarray(rng.multivariate_normal(MEAN, COV, size=n), jnp.float32)
    lw = jnp.full((n,), -np.log(n), jnp.float32)
    for name in ("rwmh", "hmc"):
        move = moves.get_move(name)
        z, info = jax.jit(lambda k, mv=move: moves.mutate(
            k, z0, lw, _log_density, mv, mv.init_params(3, jnp.float32), max_steps=40,
            correlation_target=0.1))(jax.random.key(0))
        k = int(info.num_steps)
        print(name, k, float(info.correlation))
        # each group stops on the other group's statistic (cross-fitted), so the whole
        # population's statistic is at the target only up to the groups' difference
        assert 1 < k < 40 and float(info.correlation) <= 0.15
        # with a fixed count the steps are not cut short, and the statistic is still reported
        _, fixed = jax.jit(lambda k, mv=move: moves.mutate(
            k, z0, lw, _log_density, mv, mv.init_params(3, jnp.float32), num_steps=7))(
            jax.random.key(0))
        assert int(fixed.num_steps) == 7 and 0.0 <= float(fixed.correlation) <= 1.0
        # the statistic itself: start vs end, recomputed
        u0 = jax.vmap(tuning.to_white, in_axes=(None, 0))(
            tuning.whitening(*tuning.weighted_moments(z0, lw)), z0)
        u1 = jax.vmap(tuning.to_white, in_axes=(None, 0))(
            tuning.whitening(*tuning.weighted_moments(z0, lw)), z)
        assert float(tuning.decorrelation(u0, u1, lw)) < 0.2
        assert float(tuning.decorrelation(u0, u0, lw)) == pytest.approx(1.0, abs=1e-5)


def test_adaptive_rule_with_an_empty_group_reads_the_whole_population():
    """Labels follow family trees, and one can die out: with group 1 empty, group 0 cannot read
    its statistic and falls back to the population's (else it ran to the cap)."""
    n = 1000
    rng = np.random.default_rng(4)
    z0 = jnp.asarray(rng.multivariate_normal(MEAN, COV, size=n), jnp.float32)
    lw = jnp.full((n,), -np.log(n), jnp.float32)
    labels = jnp.zeros((n,), jnp.int32)
    move = moves.get_move("hmc")
    _, info = jax.jit(lambda k: moves.mutate(
        k, z0, lw, _log_density, move, move.init_params(3, jnp.float32), max_steps=40,
        correlation_target=0.1, labels=labels))(jax.random.key(1))
    assert 1 <= int(info.num_steps) < 20 and float(info.correlation) <= 0.15, info


def test_checkpoints_of_the_adaptive_rule():
    ks = [k for k in range(1, 41) if bool(mutation._is_checkpoint(jnp.int32(k)))]
    assert ks == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 16, 20, 24, 28, 32, 36, 40]
    # the first checkpoint at or after any k overshoots it by less than a quarter
    for k in range(1, 200):
        nxt = next(j for j in range(k, 400) if bool(mutation._is_checkpoint(jnp.int32(j))))
        assert nxt - k < max(1, k / 4), (k, nxt)


def test_split_decorrelation_matches_the_two_pass_formula():
    """``decorrelation`` (start half precomputed, one pass over ``u``) against a direct
    NumPy evaluation of its definition, with dead particles and a non-finite coordinate."""
    rng = np.random.default_rng(11)
    n, d = 3000, 5
    u0 = rng.normal(size=(n, d))
    u = 0.6 * u0 + 0.8 * rng.normal(size=(n, d))
    u[:90] = u0[:90]  # stuck
    lw = rng.normal(size=n)
    lw[-40:] = -np.inf
    u0[5, 1] = np.nan
    w = np.exp(lw - lw.max())
    w /= w.sum()
    live = (w > 0)[:, None] & np.isfinite(u0) & np.isfinite(u)
    a, b = np.where(live, u0, 0.0), np.where(live, u, 0.0)

    def corr(x, y):
        x, y = x - w @ x, y - w @ y
        return (w @ (x * y)) / np.sqrt((w @ (x * x)) * (w @ (y * y)))

    coords = np.mean([abs(corr(a[:, j], b[:, j])) for j in range(d)])
    radius = abs(corr((a * a).sum(1), (b * b).sum(1)))
    stuck = w[np.all(u0 == u, axis=1)].sum()
    want = max(coords, radius, np.sqrt(stuck))
    got = float(tuning.decorrelation(jnp.asarray(u0, jnp.float32), jnp.asarray(u, jnp.float32),
                                     jnp.asarray(lw, jnp.float32)))
    assert got == pytest.approx(want, rel=1e-4)


def test_decorrelation_counts_particles_that_never_moved():
    # independent fresh draws for 96 % of the particles, the other 4 % stuck at their start:
    # the correlations are only about 0.04, but sqrt(0.04) = 0.2 keeps the sampler stepping
    rng = np.random.default_rng(5)
    n, d = 20000, 10
    u0 = rng.normal(size=(n, d)).astype(np.float32)
    u1 = rng.normal(size=(n, d)).astype(np.float32)
    stuck = np.arange(n) < n // 25
    u1[stuck] = u0[stuck]
    lw = jnp.full((n,), -np.log(n), jnp.float32)
    assert float(tuning.decorrelation(jnp.asarray(u0), jnp.asarray(u1), lw)) == pytest.approx(
        0.2, abs=1e-3)
    fresh = jnp.asarray(np.where(stuck[:, None], u1 + 1e-3, u1))
    assert float(tuning.decorrelation(jnp.asarray(u0), fresh, lw)) < 0.1


def test_weighted_moments_and_whitening():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 4))
    lw = rng.normal(size=50)
    lw[:5] = -np.inf
    z[:5] = np.inf  # zero-weight particles may hold anything
    w = np.exp(lw - np.logaddexp.reduce(lw))
    zf = z[5:]
    mean = w[5:] @ zf
    cov = (w[5:, None] * (zf - mean)).T @ (zf - mean)
    m, c = tuning.weighted_moments(jnp.asarray(z), jnp.asarray(lw))
    np.testing.assert_allclose(np.asarray(m), mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(c), cov, rtol=1e-4, atol=1e-6)
    wh = tuning.whitening(jnp.zeros(4), jnp.zeros((4, 4)))  # degenerate: still finite
    assert np.all(np.isfinite(np.asarray(wh.chol)))


def test_cross_whitening_uses_the_other_group():
    rng = np.random.default_rng(4)
    n, d = 60, 3
    z = rng.normal(size=(n, d)) * np.array([1.0, 2.0, 0.5])
    lw = rng.normal(size=n)
    labels = np.arange(n) % 2
    cw = tuning.cross_whitening(jnp.asarray(z), jnp.asarray(lw), jnp.asarray(labels))
    assert not bool(cw.pooled)
    for g in (0, 1):
        other = labels == 1 - g
        w = np.exp(lw[other] - np.logaddexp.reduce(lw[other]))
        mean = w @ z[other]
        cov = (w[:, None] * (z[other] - mean)).T @ (z[other] - mean)
        np.testing.assert_allclose(np.asarray(cw.mean[g]), mean, rtol=1e-4, atol=1e-6)
        chol = np.asarray(cw.chol[g])
        np.testing.assert_allclose(chol @ chol.T, cov, rtol=1e-3, atol=1e-5)
        u = rng.normal(size=d)
        back = tuning.to_white(cw, tuning.from_white(cw, jnp.asarray(u), g), g)
        np.testing.assert_allclose(np.asarray(back), u, rtol=1e-4, atol=1e-5)
    # a group too small for a covariance falls back to the pooled moments
    few = np.where(np.arange(n) < 3, 1, 0)
    assert bool(tuning.cross_whitening(jnp.asarray(z), jnp.asarray(lw), jnp.asarray(few)).pooled)


_RW = blackjax.mcmc.random_walk.build_additive_step()


def test_hmc_path_length_is_one_draw_per_step_shared_by_all_particles():
    """HMC's jittered number of leapfrog steps is drawn once per MCMC step for every particle
    (``Move.shared``), so the vmapped leapfrog loop is never as long as the longest of N
    draws; it still varies between steps over ``[L/2 + 1, 3L/2]``, also inside a composition."""
    n = 512
    rng = np.random.default_rng(5)
    z0 = jnp.asarray(rng.multivariate_normal(MEAN, COV, size=n), jnp.float32)
    lw = jnp.full((n,), -np.log(n), jnp.float32)
    for mv in (moves.get_move("hmc"), moves.compose(moves.rwmh(), moves.hmc())):
        params = mv.init_params(3, jnp.float32)
        wh = tuning.cross_whitening(z0, lw, mutation.initial_labels(n))
        frame = mutation._frame(z0, _log_density, mv, wh, mutation.initial_labels(n))
        states = mutation._init_states(frame, mv)
        counts = []
        for k in range(40):
            key = jax.random.key(k)
            p_k = mutation._with_shared(mv, key, params)
            keys = jax.random.split(key, n)
            _, info = jax.vmap(
                lambda kk, s, f, mv=mv, frame=frame, p_k=p_k: mv.step(kk, s, frame.make_ld(f),
                                                                    p_k))(
                keys, states, frame.aux)
            evals = np.asarray(info.parts[1].num_evals if info.parts else info.num_evals)
            assert np.all(evals == evals[0]), evals[:10]
            counts.append(int(evals[0]))
        h = float((params[1] if info.parts else params)["step_size"])
        big_l = int(np.ceil(1.5 / h))
        assert set(counts) == set(range(big_l // 2 + 1, big_l // 2 + 1 + big_l)), counts
    # without the shared draw (a direct call) each particle draws its own
    hmc = moves.get_move("hmc")
    params = hmc.init_params(3, jnp.float32)
    st = jax.vmap(hmc.init, in_axes=(0, None))(z0, _log_density)
    _, info = jax.vmap(lambda kk, s: hmc.step(kk, s, _log_density, params))(
        jax.random.split(jax.random.key(0), n), st)
    assert len(set(np.asarray(info.num_evals).tolist())) > 1


def user_random_walk(key, state, log_density):
    """A user kernel with BlackJAX's single-particle shape (not whitened, fixed scale)."""
    return _RW(key, state, log_density, blackjax.mcmc.random_walk.normal(jnp.float32(0.3)))


def test_composed_user_and_builtin_moves_are_exact():
    model, ex = cg.make_model(2)
    mv = moves.get_move([user_random_walk, "mala"])
    assert mv.name == "user+mala" and not mv.whiten
    res = run_seeds(lambda k: smcjax.tempered_smc(k, model, 500, move=[user_random_walk, "mala"]),
                    50)
    acc = np.asarray(res.acceptance_rate)[:, 1]
    assert np.all((acc > 0.05) & (acc < 1.0))
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence, label="user+mala")


def test_move_errors():
    with pytest.raises(ValueError, match="unknown move"):
        moves.get_move("gibbs")
    with pytest.raises(ValueError, match="at least one"):
        moves.compose()
    with pytest.raises(ValueError, match="Move"):
        moves.compose(moves.rwmh(), "hmc")
    with pytest.raises(ValueError, match="empty"):
        moves.get_move([])

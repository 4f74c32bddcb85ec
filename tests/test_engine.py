"""Engine, log-weight algebra, per-particle keys, non-finite weights and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from smcjax.models import linear_gaussian as lg

import smcjax
from smcjax import weights as W
from smcjax.engine import FeynmanKac, init, step
from smcjax.random import (
    IMPL,
    as_particle_key,
    draw_once,
    particle_keys,
    split,
    threefry2x32,
    uniform_scalar,
)

# ---------------------------------------------------------------- weights


def test_weights_algebra_float32_stable():
    lw = jnp.array([1000.0, 1000.0, -jnp.inf, 999.0], jnp.float32)
    log_w, total = W.normalize(lw)
    assert np.isfinite(float(total))
    np.testing.assert_allclose(float(jnp.exp(log_w).sum()), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(W.log_mean_exp(jnp.zeros(8))), 0.0, atol=1e-7)
    np.testing.assert_allclose(float(W.ess(jnp.zeros(10))), 10.0, rtol=1e-6)
    np.testing.assert_allclose(float(W.ess(jnp.array([0.0, -jnp.inf, -jnp.inf]))), 1.0)
    w = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(float(W.ess(jnp.log(w))), 1 / np.sum(w**2), rtol=1e-6)


def test_all_zero_weights_do_not_give_nan():
    lw = jnp.full(5, -jnp.inf)
    log_w, total = W.normalize(lw)
    assert float(total) == -np.inf
    assert np.all(np.isfinite(np.asarray(log_w)))
    assert float(W.logsumexp(lw)) == -np.inf


def test_conditional_ess():
    rng = np.random.default_rng(0)
    inc = jnp.asarray(rng.normal(size=50))
    # with uniform current weights the CESS equals the ESS of the increments
    np.testing.assert_allclose(float(W.conditional_ess(jnp.zeros(50), inc)),
                               float(W.ess(inc)), rtol=1e-5)
    lw = jnp.asarray(rng.normal(size=50))
    wn = np.exp(lw - jax.scipy.special.logsumexp(lw))
    g = np.exp(np.asarray(inc))
    expected = 50 * (wn @ g) ** 2 / (wn @ g**2)
    np.testing.assert_allclose(float(W.conditional_ess(lw, inc)), expected, rtol=1e-4)


def test_sanitize_counts_non_finite():
    clean, bad = W.sanitize(jnp.array([0.0, jnp.nan, jnp.inf, -jnp.inf, 1.0]))
    assert int(bad) == 3
    assert np.isneginf(np.asarray(clean)[1:4]).all()


# ---------------------------------------------------------------- random


def test_threefry_known_answer():
    # Random123 known-answer vector for Threefry-2x32-20 (pi digits)
    out = threefry2x32(0x13198A2E, 0x03707344, 0x243F6A88, 0x85A308D3)
    assert [int(v) for v in out] == [0xC4923A9C, 0x483DF7A0]
    k = jnp.array([7, 9], jnp.uint32)
    c = jnp.array([1, 2], jnp.uint32)
    ref = jax.extend.random.threefry_2x32(k, c)
    ours = threefry2x32(k[0], k[1], c[0], c[1])
    assert [int(v) for v in ours] == [int(v) for v in ref]


def test_particle_keys_deterministic_and_well_distributed():
    key = as_particle_key(jax.random.key(3))
    assert jax.random.key_impl(key) == IMPL
    assert as_particle_key(key) is key
    same = as_particle_key(jax.random.key(3))
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(same))
    keys = jax.random.split(key, 200_000)
    z = np.asarray(jax.vmap(lambda k: jax.random.normal(k))(keys), np.float64)
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    # neighbouring particles are uncorrelated
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(n)
    u = np.asarray(jax.vmap(lambda k: jax.random.uniform(k, (3,)))(keys[:1000]))
    assert u.min() >= 0 and u.max() < 1 and len(np.unique(u, axis=0)) == len(u)
    # legacy uint32 keys are accepted too
    assert jax.random.key_impl(as_particle_key(jax.random.PRNGKey(0))) == IMPL



def test_particle_keys_are_independent_streams():
    """The engine's per-particle keys (k0, k1 XOR i): standard normal draws that are
    uncorrelated between neighbouring particles and between two steps' keys, and keys that
    split into distinct children inside a model."""
    n = 200_000
    draw = jax.jit(lambda k: jax.vmap(lambda kk: jax.random.normal(kk))(particle_keys(k, n)))
    z = np.asarray(draw(jax.random.key(5)), np.float64)
    z2 = np.asarray(draw(jax.random.key(6)), np.float64)
    tol = 4 / np.sqrt(n)
    assert abs(z.mean()) < tol
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < tol
    assert abs(np.corrcoef(z[::2], z[1::2])[0, 1]) < 4 / np.sqrt(n / 2)
    assert abs(np.corrcoef(z, z2)[0, 1]) < tol
    # Kolmogorov-Smirnov against N(0, 1): a broken stream (repeats, wrong scale) fails
    assert stats.kstest(z, "norm").pvalue > 1e-4
    keys = particle_keys(jax.random.key(5), 1000)
    data = np.asarray(jax.random.key_data(keys))
    assert len(np.unique(data, axis=0)) == 1000
    children = np.asarray(jax.random.key_data(jax.vmap(lambda k: jax.random.split(k, 2))(keys)))
    assert len(np.unique(children.reshape(-1, 2), axis=0)) == 2000
    # deterministic, and the same for any key that converts to the same particle key
    same = particle_keys(as_particle_key(jax.random.key(5)), 1000)
    np.testing.assert_array_equal(jax.random.key_data(same), data)


def test_uniform_scalar_matches_jax_bit_for_bit():
    typed = jax.random.split(jax.random.key(9), 2000)
    raw = jax.random.key_data(typed)  # the same keys as legacy uint32[2] keys
    for keys in (typed, raw):
        ours = jax.jit(jax.vmap(uniform_scalar))(keys)
        ref = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, ())))(keys)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    # eager, outside jit and vmap
    for k in (jax.random.key(3), jax.random.PRNGKey(3)):
        assert uniform_scalar(k) == jax.random.uniform(k, ())
    # other implementations and dtypes fall back to jax.random.uniform
    pk = as_particle_key(jax.random.key(1))
    assert uniform_scalar(pk) == jax.random.uniform(pk, ())
    assert uniform_scalar(jax.random.key(1), jnp.bfloat16) == \
        jax.random.uniform(jax.random.key(1), (), jnp.bfloat16)


def _data(k):
    return jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k


def test_split_and_particle_key_match_jax_bit_for_bit():
    """The unrolled split and key conversion give jax.random's bits: typed and raw keys, flat
    and shaped splits, eager, jitted and vmapped; other implementations fall back."""
    for key in (jax.random.key(3), jax.random.PRNGKey(3), jax.random.key(2**40 + 7)):
        for num in (2, 5, (3, 2)):
            ours, ref = split(key, num), jax.random.split(key, num)
            assert ours.dtype == ref.dtype and ours.shape == ref.shape
            np.testing.assert_array_equal(np.asarray(_data(ours)), np.asarray(_data(ref)))
    keys = jax.random.split(jax.random.key(11), 500)
    for batch in (keys, jax.random.key_data(keys)):
        ours = jax.jit(jax.vmap(lambda k: _data(split(k, (4, 2)))))(batch)
        ref = jax.vmap(lambda k: _data(jax.random.split(k, (4, 2))))(batch)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
        ours = jax.jit(jax.vmap(lambda k: jax.random.key_data(as_particle_key(k))))(batch)
        ref = jax.vmap(lambda k: jax.random.bits(k, (2,), jnp.uint32))(batch)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    for other in (as_particle_key(jax.random.key(1)), jax.random.key(1, impl="rbg")):
        np.testing.assert_array_equal(np.asarray(_data(split(other, 3))),
                                      np.asarray(_data(jax.random.split(other, 3))))


def test_draw_once_returns_the_draw():
    def draw(k):
        return {"x": jax.vmap(jax.random.normal)(particle_keys(k, 64)), "n": jnp.int32(3)}

    for key in (jax.random.key(2), jax.random.PRNGKey(2), as_particle_key(jax.random.key(2))):
        ref = draw(key)
        for out in (draw_once(draw, key), jax.jit(lambda k: draw_once(draw, k))(key)):
            np.testing.assert_array_equal(np.asarray(out["x"]), np.asarray(ref["x"]))
            assert int(out["n"]) == 3
    keys = jax.random.split(jax.random.key(4), 3)
    batched = jax.vmap(lambda k: draw_once(draw, k))(keys)["x"]
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(jax.vmap(draw)(keys)["x"]))


def test_nan_free_normalisation_matches():
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=1000).astype(np.float32) * 30,
             np.full(7, -np.inf, np.float32),
             np.array([-np.inf, 2.0, -np.inf, 2.0, 1.0], np.float32)]
    for lw in cases:
        a = jax.jit(W.normalize_and_ess)(jnp.asarray(lw))
        b = jax.jit(lambda v: W.normalize_and_ess(v, nan_free=True))(jnp.asarray(lw))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------- engine


def _toy_fk(bad_region=None, all_bad=False):
    def initial_sample(key):
        return jax.random.normal(key)

    def transition_sample(key, x, t, params):
        return 0.9 * x + 0.5 * jax.random.normal(key)

    def log_potential(x_prev, x, t, params):
        out = -0.5 * (x - 0.3) ** 2
        if bad_region is not None:
            out = jnp.where(x > bad_region, jnp.nan, out)
        if all_bad:
            out = -jnp.inf * jnp.ones_like(out)
        return out

    return FeynmanKac(initial_sample, transition_sample, log_potential)


def test_state_structure_and_dtype_preserved_by_step():
    fk = _toy_fk()
    state, _ = init(jax.random.key(0), fk, 64)
    new, info = jax.jit(lambda k, s: step(k, s, jnp.int32(1), fk))(jax.random.key(1), state)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert isinstance(info, smcjax.StepInfo)


def test_step_info_packing_is_exact():
    # run() stores each step's info as one uint32 vector; unpacking must give back every
    # field bit for bit, including -inf, NaN-free negative floats, flags and counts.
    from smcjax.engine import StepInfo, _pack_words, _unpack_words

    info = StepInfo(jnp.float32(3.25e-30), jnp.asarray(True), jnp.float32(-jnp.inf),
                    jnp.int32(2**31 - 1), jnp.asarray(False))
    words, spec = _pack_words(info)
    assert words.dtype == jnp.uint32 and words.shape == (5,)
    back = _unpack_words(jnp.stack([words, words]), spec)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(info), strict=True):
        assert a.dtype == b.dtype and a.shape == (2,)
        assert np.array_equal(np.asarray(a), np.full(2, np.asarray(b)))
    # a 64-bit field (jax_enable_x64) is left unpacked
    with jax.enable_x64(True):
        info64 = info._replace(ess=jnp.float64(0.5))
        assert _pack_words(info64) == (info64, None)


def test_nan_potentials_get_zero_weight_and_are_counted():
    fk = _toy_fk(bad_region=1.0)
    state, infos, _ = smcjax.smc_run(jax.random.key(0), fk, 2000, 10)
    bad = np.asarray(infos.num_invalid)
    assert bad[1:].sum() > 0
    assert np.isfinite(float(state.log_evidence))
    lw = np.asarray(state.log_weights)
    x = np.asarray(state.particles)
    assert np.all(np.isneginf(lw[x > 1.0]))
    assert not bool(state.collapsed)


def test_all_zero_weights_reported_not_nan():
    fk = _toy_fk(all_bad=True)
    state, infos, _ = smcjax.smc_run(jax.random.key(0), fk, 100, 5)
    assert float(state.log_evidence) == -np.inf
    assert bool(state.collapsed)
    assert np.asarray(infos.collapsed)[1:].all()
    assert not np.isnan(np.asarray(infos.ess)).any()
    # through the particle filter: the result says so in words
    p = lg.random_params(jax.random.key(0))
    _, ys = lg.simulate(jax.random.key(1), p, 6)
    model = lg.make_model(p)
    model = model._replace(observation_log_prob=lambda x, y, t: jnp.where(t >= 3, -jnp.inf, 0.0))
    res = smcjax.particle_filter(jax.random.key(0), model, ys, 100)
    assert float(res.log_evidence) == -np.inf
    assert res.status.startswith("all weights zero at step 3")


def test_float64_runs(monkeypatch):
    with jax.enable_x64(True):
        p = lg.random_params(jax.random.key(0), 2, 2, dtype=jnp.float64)
        _, ys = lg.simulate(jax.random.key(1), p, 10)
        res = smcjax.particle_filter(jax.random.key(2), lg.make_model(p), ys, 4000)
        assert res.log_evidence.dtype == jnp.float64
        kf = lg.kalman_filter(p, ys)
        # one run: within 5 sd of var(log Z) ~ 1/N-ish, loose single-run sanity check
        assert abs(float(res.log_evidence) - kf.log_likelihood) < 0.5


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def lg_problem():
    p = lg.random_params(jax.random.key(0), 2, 2)
    _, ys = lg.simulate(jax.random.key(1), p, 8)
    return p, ys


@pytest.mark.parametrize("n", [0, -3, 2.5, "10"])
def test_bad_num_particles(lg_problem, n):
    p, ys = lg_problem
    with pytest.raises(ValueError, match="num_particles"):
        smcjax.particle_filter(jax.random.key(0), lg.make_model(p), ys, n)


@pytest.mark.parametrize("thr", [-0.1, 1.5, float("nan")])
def test_bad_ess_threshold(lg_problem, thr):
    p, ys = lg_problem
    with pytest.raises(ValueError, match="ess_threshold"):
        smcjax.particle_filter(jax.random.key(0), lg.make_model(p), ys, 10, ess_threshold=thr)


def test_observation_axis_mismatch(lg_problem):
    p, ys = lg_problem
    with pytest.raises(ValueError, match="8 steps.*num_steps=9"):
        smcjax.particle_filter(jax.random.key(0), lg.make_model(p), ys, 10, num_steps=9)
    with pytest.raises(ValueError, match="disagree on the leading"):
        smcjax.particle_filter(jax.random.key(0), lg.make_model(p), {"a": ys, "b": ys[:5]}, 10)


def test_wrong_shapes_from_model_functions(lg_problem):
    p, ys = lg_problem
    model = lg.make_model(p)
    bad_transition = model._replace(transition_sample=lambda k, x, t: jnp.zeros(3))
    with pytest.raises(ValueError, match="transition_sample must return one particle"):
        smcjax.particle_filter(jax.random.key(0), bad_transition, ys, 10)
    bad_dtype = model._replace(transition_sample=lambda k, x, t: jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="transition_sample"):
        smcjax.particle_filter(jax.random.key(0), bad_dtype, ys, 10)
    bad_obs = model._replace(observation_log_prob=lambda x, y, t: x - y)
    with pytest.raises(ValueError, match="observation_log_prob must return a scalar"):
        smcjax.particle_filter(jax.random.key(0), bad_obs, ys, 10)
    broken = model._replace(observation_log_prob=lambda x, y, t: x @ jnp.ones((5, 5)))
    with pytest.raises(ValueError, match="observation_log_prob failed"):
        smcjax.particle_filter(jax.random.key(0), broken, ys, 10)


def test_bad_method_and_missing_pieces(lg_problem):
    p, ys = lg_problem
    model = lg.make_model(p)
    with pytest.raises(ValueError, match="unknown method"):
        smcjax.particle_filter(jax.random.key(0), model, ys, 10, method="magic")
    with pytest.raises(ValueError, match="needs model.proposal"):
        smcjax.particle_filter(jax.random.key(0), model, ys, 10, method="guided")
    with pytest.raises(ValueError, match="auxiliary_log_weight"):
        smcjax.particle_filter(jax.random.key(0), model, ys, 10, method="auxiliary")
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        smcjax.particle_filter(jax.random.key(0), model, ys, 10, resampling="nope")
    with pytest.raises(ValueError, match="StateSpaceModel"):
        smcjax.particle_filter(jax.random.key(0), object(), ys, 10)


def test_resample_stage_num_samples():
    """M ancestors out of N (waste-free): M particles with uniform weights; bad input."""
    from smcjax.engine import SMCState, resample_stage

    n, m = 12, 4
    lw = jnp.log(jnp.arange(1.0, n + 1.0) / jnp.sum(jnp.arange(1.0, n + 1.0)))
    state = SMCState(jnp.arange(n, dtype=jnp.float32), lw, jnp.zeros(()), jnp.asarray(False))
    new, anc, resampled, _, _ = resample_stage(jax.random.key(0), state, ess_threshold=1.0,
                                               num_samples=m)
    assert anc.shape == (m,) and new.particles.shape == (m,) and bool(resampled)
    np.testing.assert_allclose(np.exp(np.asarray(new.log_weights)), np.full(m, 1 / m), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new.particles), np.asarray(anc, np.float32))
    with pytest.raises(ValueError, match="ess_threshold=1"):
        resample_stage(jax.random.key(0), state, ess_threshold=0.5, num_samples=m)
    with pytest.raises(ValueError, match="num_samples"):
        resample_stage(jax.random.key(0), state, ess_threshold=1.0, num_samples=0)

"""smcjax's own jit: XLA compile options at top level, a plain jit inside user transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from smcjax.models import linear_gaussian as lg

import smcjax
from smcjax import _compile, filters


def test_compiler_options_default_and_override(monkeypatch):
    monkeypatch.delenv("SMCJAX_CPU_VECTOR_WIDTH", raising=False)
    assert _compile.compiler_options() == {"xla_cpu_prefer_vector_width": 512}
    monkeypatch.setenv("SMCJAX_CPU_VECTOR_WIDTH", "256")
    assert _compile.compiler_options() == {"xla_cpu_prefer_vector_width": 256}
    monkeypatch.setenv("SMCJAX_CPU_VECTOR_WIDTH", " XLA ")
    assert _compile.compiler_options() == {}
    monkeypatch.setenv("SMCJAX_CPU_VECTOR_WIDTH", "1024")
    with pytest.raises(ValueError, match="SMCJAX_CPU_VECTOR_WIDTH"):
        _compile.compiler_options()


@pytest.fixture(scope="module")
def lg_run():
    p = lg.random_params(jax.random.key(0), dim_x=1, dim_y=1)
    _, ys = lg.simulate(jax.random.key(1), p, 15)
    return lg.make_model(p), ys


def test_filter_inside_user_transformations(lg_run):
    # JAX refuses compile options on a nested jit; the sampler must still work under the
    # user's jit (traced or closed-over concrete arguments), vmap and grad-free scans.
    model, ys = lg_run
    key = jax.random.key(2)

    def log_z(k, y):
        return smcjax.particle_filter(k, model, y, 300).log_evidence

    top = float(log_z(key, ys))
    assert float(jax.jit(log_z)(key, ys)) == top
    assert float(jax.jit(lambda: log_z(key, ys))()) == top  # all arguments concrete
    assert float(jax.jit(lambda k: log_z(k, ys))(key)) == top
    batched = jax.vmap(log_z, in_axes=(0, None))(jax.random.split(key, 3), ys)
    keys = jax.random.split(key, 3)
    assert np.allclose(np.asarray(batched), [float(log_z(k, ys)) for k in keys], rtol=1e-6)
    scanned = jax.lax.scan(lambda c, k: (c, log_z(k, ys)), 0.0, keys)[1]
    assert np.allclose(np.asarray(scanned), np.asarray(batched), rtol=1e-6)


@pytest.mark.parametrize("first, second", [("_tuned", "_plain"), ("_serial", "_tuned")])
def test_compilations_agree_bitwise(lg_run, first, second):
    # The vector width changes how XLA vectorises element-wise loops, not the order of the
    # sums that the particles, weights and evidence depend on; without XLA's loop splitting
    # the loops are the same, run whole. Bitwise the same here (1-d model).
    model, ys = lg_run
    kw = dict(model=model, num_particles=1000, method="bootstrap", resampling="systematic",
              ess_threshold=0.5, reduce_fn=None, has_callback=False, moments=True)
    key = jax.random.key(3)
    one, two = (getattr(filters._filter, name) for name in (first, second))
    assert one is not two
    for a, b in zip(jax.tree.leaves(one(key, ys, 0, **kw)), jax.tree.leaves(two(key, ys, 0, **kw)),
                    strict=True):
        assert jnp.array_equal(a, b)


def test_plain_jit_when_the_default_backend_is_not_cpu(lg_run, monkeypatch):
    # The options are CPU options; with a GPU or TPU default backend the plain jit runs.
    model, ys = lg_run
    calls = []
    jitted = filters._filter
    monkeypatch.setattr(jitted, "_plain", lambda *a, **k: calls.append("plain"), raising=True)
    monkeypatch.setattr(jitted, "_tuned", lambda *a, **k: calls.append("tuned"), raising=True)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    jitted(jax.random.key(0), ys, 0, model=model)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    jitted(jax.random.key(0), ys, 0, model=model)
    assert calls == ["plain", "tuned"]


def test_serial_work_bound_and_options(monkeypatch):
    monkeypatch.delenv("SMCJAX_CPU_SERIAL_WORK", raising=False)
    monkeypatch.delenv("SMCJAX_CPU_VECTOR_WIDTH", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert _compile.serial_work_bound() == 3_000_000
    assert "xla_disable_hlo_passes" not in _compile.compiler_options(step_work=3_000_001)
    assert "xla_disable_hlo_passes" not in _compile.compiler_options(step_work=None)
    assert _compile.compiler_options(step_work=3_000_000) == {
        "xla_cpu_prefer_vector_width": 512,
        "xla_disable_hlo_passes": "cpu-parallel-task-assigner"}
    # A compile option replaces the XLA_FLAGS list: the passes named there are kept.
    monkeypatch.setenv("XLA_FLAGS", "--xla_disable_hlo_passes=foo,bar --xla_dump_to=/tmp/x")
    assert _compile.compiler_options(step_work=1)["xla_disable_hlo_passes"] == \
        "foo,bar,cpu-parallel-task-assigner"
    monkeypatch.setenv("SMCJAX_CPU_SERIAL_WORK", "0")
    assert "xla_disable_hlo_passes" not in _compile.compiler_options(step_work=1)
    monkeypatch.setenv("SMCJAX_CPU_SERIAL_WORK", "1_000")
    assert _compile.serial_work_bound() == 1000
    for bad in ("-1", "lots", "1e6"):
        monkeypatch.setenv("SMCJAX_CPU_SERIAL_WORK", bad)
        with pytest.raises(ValueError, match="SMCJAX_CPU_SERIAL_WORK"):
            _compile.serial_work_bound()


def test_sized_dispatch(lg_run, monkeypatch):
    # Steps of at most the bound run the serial compilation; unknown or larger work, and a
    # bound of 0, the default one.
    model, ys = lg_run
    jitted = filters._filter
    calls = []
    for name in ("_plain", "_tuned", "_serial"):
        monkeypatch.setattr(jitted, name, lambda *a, _n=name, **k: calls.append(_n))
    monkeypatch.setattr(_compile, "_SERIAL_BOUND", 1000)
    for work in (10, 1000, 1001, None):
        jitted.sized(work)(jax.random.key(0), ys, 0, model=model)
    monkeypatch.setattr(_compile, "_SERIAL_BOUND", 0)
    jitted.sized(10)(jax.random.key(0), ys, 0, model=model)
    assert calls == ["_serial", "_serial", "_tuned", "_tuned", "_tuned"]


def test_particle_step_work_tracks_the_model_cost():
    # XLA's estimate grows with what one particle's step computes; a function that cannot be
    # lowered on its own gives None (the default compilation is then kept).
    from smcjax.engine import FeynmanKac, particle_step_work

    data = jnp.linspace(-1.0, 1.0, 500)
    move = lambda k, x, t, p: x + jax.random.normal(k)  # noqa: E731
    cheap = FeynmanKac(jax.random.normal, move, lambda x0, x, t, p: -0.5 * x * x)
    heavy = FeynmanKac(jax.random.normal, move,
                       lambda x0, x, t, p: -0.5 * jnp.sum(jnp.log1p((data - x) ** 2)))
    w_cheap, w_heavy = particle_step_work(cheap), particle_step_work(heavy)
    assert 1 < w_cheap < 1000 and w_heavy > w_cheap + 1000
    broken = FeynmanKac(jax.random.normal, move, lambda x0, x, t, p: float(x))
    assert particle_step_work(broken) is None


def test_filter_step_work_estimate(lg_run):
    model, ys = lg_run
    work = filters._check_model_cached(model, "bootstrap", ys)
    assert work is not None and 10 < work < 10_000
    # Unhashable model functions are checked on every call and not estimated.

    class Flat:  # defines equality, so not hashable
        __hash__ = None

        def __eq__(self, other):
            return isinstance(other, Flat)

        def __call__(self, x, y, t):
            return 0.0 * x[0]

    unhashable = model._replace(observation_log_prob=Flat())
    assert filters._check_model_cached(unhashable, "bootstrap", ys) is None


def test_serial_fkc_is_bitwise_identical():
    from smcjax.diffusion import VP, GaussianMixtureScore, anneal, fkc, gmm

    target = anneal(GaussianMixtureScore(gmm.make([0.5, 0.5], [[-2.0], [2.0]], 0.5), VP()), 2.0)
    n, grid, eta, shape, prior_std = fkc._prepare(target, VP(), 500, 40, None, 1.0, None,
                                                  False)
    kw = dict(target=target, sde=VP(), shape=shape, num_particles=n, weighted=True,
              exact_initial=False, prior_std=prior_std, resampling="systematic",
              ess_threshold=0.5)
    key = jax.random.key(5)
    serial = fkc._sample._serial(key, grid, eta, **kw)
    split = fkc._sample._tuned(key, grid, eta, **kw)
    for a, b in zip(jax.tree.leaves(serial), jax.tree.leaves(split), strict=True):
        assert jnp.array_equal(a, b)
    assert fkc._step_work(target, VP(), shape, True, False, prior_std, False, grid.shape[0]) > 10

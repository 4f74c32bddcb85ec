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


def test_tuned_and_plain_compilations_agree(lg_run):
    # The vector width changes how XLA vectorises element-wise loops, not the order of the
    # sums that the particles, weights and evidence depend on: bitwise the same here.
    model, ys = lg_run
    kw = dict(model=model, num_particles=1000, method="bootstrap", resampling="systematic",
              ess_threshold=0.5, reduce_fn=None, has_callback=False, moments=True)
    key = jax.random.key(3)
    tuned = filters._filter._tuned(key, ys, 0, **kw)
    plain = filters._filter._plain(key, ys, 0, **kw)
    for name in ("log_evidence", "ess", "log_evidence_increments", "num_invalid", "resampled"):
        assert jnp.array_equal(getattr(tuned, name), getattr(plain, name)), name
    assert jnp.array_equal(tuned.final_state.particles, plain.final_state.particles)
    assert jnp.array_equal(tuned.final_state.log_weights, plain.final_state.log_weights)


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

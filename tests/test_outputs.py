"""Output formats: progress bars, ArviZ export, plots, posterior summaries."""

import jax
import numpy as np
import pytest
from smcjax.models import linear_gaussian as lg

import smcjax
from smcjax.summary import flatten_particles, posterior_summary, weighted_quantile


@pytest.fixture(scope="module")
def filtered():
    p = lg.random_params(jax.random.key(0), 2, 2)
    _, ys = lg.simulate(jax.random.key(1), p, 20)
    model = lg.make_model(p)
    return model, ys


def test_progress_bar_reports_every_step_without_recompiling(filtered):
    from smcjax.filters import _filter

    model, ys = filtered
    bars, cache_sizes = [], []
    for _ in range(2):
        bar = smcjax.progress.ProgressBar(total=20, disable=False)
        res = smcjax.particle_filter(jax.random.key(0), model, ys, 64, callback=bar)
        res.ess.block_until_ready()
        jax.effects_barrier()
        bar.close()
        bars.append(bar)
        cache_sizes.append(_filter._cache_size())
    assert all(b.bar.n == 20 for b in bars)
    assert bars[0].last_log_evidence == bars[1].last_log_evidence
    # the second bar reused the compiled filter (a traced callback id, not a new closure)
    assert cache_sizes[1] == cache_sizes[0]


def test_progress_off_traces_nothing(filtered):
    model, ys = filtered
    from smcjax.filters import _filter

    low = _filter.lower(jax.random.key(0), ys, np.int32(0), model=model, num_particles=8,
                        method="bootstrap", resampling="systematic", ess_threshold=0.5,
                        reduce_fn=None, has_callback=False)
    assert "callback" not in low.as_text()


def test_weighted_summary_and_quantiles():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    w = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(weighted_quantile(x, w, [0.05, 0.25, 0.5, 0.95]),
                                  [0.0, 1.0, 2.0, 3.0])
    s = posterior_summary({"a": x, "b": np.stack([x, 2 * x], 1)}, np.log(w))
    assert set(s) == {"['a']", "['b'][0]", "['b'][1]"}
    np.testing.assert_allclose(s["['a']"]["mean"], w @ x)
    np.testing.assert_allclose(s["['b'][1]"]["var"], w @ (2 * x - 2 * w @ x) ** 2)
    assert list(flatten_particles(np.zeros((3, 2)))) == ["x[0]", "x[1]"]


def test_to_arviz(filtered):
    import arviz as az
    model, ys = filtered
    res = smcjax.particle_filter(jax.random.key(0), model, ys, 64)
    idata = smcjax.to_arviz(res)
    assert isinstance(idata, az.InferenceData)
    assert idata.posterior["x"].shape == (1, 64, 2)
    weighted = smcjax.to_arviz(res, resample=False)
    np.testing.assert_allclose(np.exp(weighted.sample_stats["log_weights"].values).sum(), 1.0,
                               rtol=1e-5)
    assert weighted.posterior.attrs["smcjax_weighted"] is True


def test_plots(tmp_path, filtered):
    from smcjax import plots

    model, ys = filtered
    res = smcjax.particle_filter(jax.random.key(0), model, ys, 64)
    path = plots.plot_run(res, tmp_path / "run.png", num_particles=64,
                          exact={"x[0]": (0.0, 1.0)})
    assert path.stat().st_size > 1000
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plots.plot_sbc_ranks(ax, np.random.default_rng(0).integers(0, 100, 500), 99)
    fig.savefig(tmp_path / "sbc.png")
    assert (tmp_path / "sbc.png").stat().st_size > 1000


def test_tempering_progress_bar_does_not_recompile():
    from smcjax.models import conjugate_gaussian as cg

    from smcjax.tempering import _run_jit

    model, _ = cg.make_model(2, num_data=5)
    bars, cache_sizes = [], []
    for _ in range(2):
        bar = smcjax.progress.TemperingProgress(disable=True)
        res = smcjax.tempered_smc(jax.random.key(0), model, 64, callback=bar,
                                  num_mcmc_steps=2)
        res.log_evidence.block_until_ready()
        jax.effects_barrier()
        bar.close()
        bars.append(bar)
        cache_sizes.append(_run_jit._cache_size())
    assert all(b.beta == 1.0 and b.steps == int(res.num_steps) for b in bars)
    assert cache_sizes[1] == cache_sizes[0]

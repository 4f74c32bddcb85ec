"""Data tempering (IBIS) against the exact conjugate Gaussian answers."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _static_checks import assert_exact, run_seeds
from smcjax.models import conjugate_gaussian as cg

import smcjax

SEEDS = 50


@pytest.mark.parametrize("move", ["rwmh", "mala"])
def test_data_tempering_conjugate_gaussian_d2(move):
    model, ex = cg.make_model(2)
    res = run_seeds(lambda k: smcjax.data_tempering_smc(k, model, 500, move=move), SEEDS)
    _check_path(res, model.num_data)
    inc = np.asarray(res.log_evidence_increments, np.float64)
    np.testing.assert_allclose(np.nansum(inc, axis=1), np.asarray(res.log_evidence), rtol=1e-5)
    assert np.asarray(res.resampled).sum(axis=1).min() >= 1  # resample-move did happen
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence,
                 label=f"data tempering d2 {move}")


def _check_path(res, n_data):
    """Fractions of data included: increasing, ending at 1, with every k / n_data visited."""
    temps_all = np.asarray(res.temperatures, np.float64)
    for temps, steps in zip(temps_all, np.asarray(res.num_steps), strict=True):
        path = temps[: steps + 1]
        assert np.all(np.diff(path) > 0) and path[-1] == 1.0
        np.testing.assert_allclose(np.intersect1d(np.round(path * n_data, 4),
                                                  np.arange(n_data + 1)), np.arange(n_data + 1))


def test_data_tempering_informative_datum_is_added_in_parts():
    """Each 6-d datum with noise 0.2 under a unit prior would leave an ESS of a few particles:
    the datum is tempered in (fractional steps), and the evidence stays the exact one."""
    model, ex = cg.make_model(6, num_data=3, noise_scale=0.2)
    res = run_seeds(lambda k: smcjax.data_tempering_smc(k, model, 500, move="mala"), 40, seed=1)
    ess = np.asarray(res.ess)[:, 1:]
    assert np.nanmin(ess) >= 0.5 * 500 - 1  # no step took the ESS below the threshold
    _check_path(res, model.num_data)
    temps = np.asarray(res.temperatures)[0, : int(res.num_steps[0]) + 1] * model.num_data
    assert np.any(np.abs(temps - np.round(temps)) > 1e-3), temps  # a datum was split
    assert np.asarray(res.num_steps).min() > model.num_data
    inc = np.asarray(res.log_evidence_increments, np.float64)
    np.testing.assert_allclose(np.nansum(inc, axis=1), np.asarray(res.log_evidence), rtol=1e-5)
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence,
                 label="data tempering informative datum")


@pytest.mark.slow
# d = 50 with 50 seeds on 2 cores: 8 min (MALA, HMC), 57 min (RWMH), about 71 min (NUTS, 85 s a
# seed: ~46 steps of ~3 NUTS moves, each datum's likelihood evaluated separately). Sharing
# a core with other runs, NUTS took 126 min (session 8), and 90 min on one core with the other
# core busy (session 11), hence 3 h.
@pytest.mark.timeout(10800)
@pytest.mark.parametrize("dim", [2, 10, 50])
@pytest.mark.parametrize("move", ["rwmh", "mala", "hmc", "nuts"])
def test_data_tempering_grid(dim, move):
    model, ex = cg.make_model(dim)
    n = 1000 if dim < 50 else 2000
    res = run_seeds(lambda k: smcjax.data_tempering_smc(k, model, n, move=move,
                                                        max_mcmc_steps=max(50, 4 * dim)),
                    SEEDS, seed=dim)
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence,
                 label=f"data tempering grid d{dim} {move} N{n}")


def test_data_tempering_bad_input():
    model, _ = cg.make_model(2)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="log_likelihood_per_datum"):
        smcjax.data_tempering_smc(key, model._replace(log_likelihood_per_datum=None), 10)
    with pytest.raises(ValueError, match="num_data"):
        smcjax.data_tempering_smc(key, model._replace(num_data=0), 10)
    for bad in (1.5, 0.0, 1.0):
        with pytest.raises(ValueError, match="ess_threshold"):
            smcjax.data_tempering_smc(key, model, 10, ess_threshold=bad)
    with pytest.raises(ValueError, match="max_steps"):
        smcjax.data_tempering_smc(key, model, 10, max_steps=0)
    with pytest.raises(ValueError, match="num_particles"):
        smcjax.data_tempering_smc(key, model, 0)

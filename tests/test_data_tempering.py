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
    n_data = model.num_data
    np.testing.assert_allclose(np.asarray(res.temperatures)[0],
                               np.arange(n_data + 1) / n_data, rtol=1e-6)
    inc = np.asarray(res.log_evidence_increments, np.float64)
    np.testing.assert_allclose(inc.sum(axis=1), np.asarray(res.log_evidence), rtol=1e-5)
    assert np.asarray(res.resampled).sum(axis=1).min() >= 1  # resample-move did happen
    assert_exact(res, ex.posterior_mean, ex.posterior_var, ex.log_evidence,
                 label=f"data tempering d2 {move}")


@pytest.mark.slow
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
    with pytest.raises(ValueError, match="ess_threshold"):
        smcjax.data_tempering_smc(key, model, 10, ess_threshold=1.5)
    with pytest.raises(ValueError, match="num_particles"):
        smcjax.data_tempering_smc(key, model, 0)

"""Diffusion problems and samplers for the validation runner.

Problems (kind ``"diffusion"``) come from the Gaussian-mixture test bed of
:mod:`smcjax.diffusion.testbed`: every noised marginal ``q_t`` has a closed-form score, so the
reshaped targets (annealed, products of experts, reward tilts, classifier-free guidance,
linear-Gaussian posteriors) have exact means, variances and mode masses at the sampler's final
time ``t_min`` (closed forms or grid quadrature). Mode masses are the probabilities of the
Voronoi cells of the data means.

``log Z`` is *not* checked for these samplers: Euler-Maruyama steps and Euler-integrated
weights bias the evidence estimate at O(h) (about 0.7-4.5 nats for FKC at K = 100 steps, see
``tests/test_diffusion_fkc.py``), while the moments' bias at K = 100 is below the Monte Carlo
error at the runner's sizes.

Samplers: ``"fkc"`` (:func:`smcjax.diffusion.fkc_sample`, resampling every step) and
``"fkc_control"`` (the same with the control drift, ``control=True``, resampling when
``ESS < N/2``) on the reshaped targets; ``"twisted"`` (:func:`smcjax.diffusion.twisted_sample`)
on the posteriors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from smcjax.diffusion import (
    VP,
    GaussianMixtureScore,
    fkc_sample,
    gmm,
    linear_gaussian_likelihood,
    twisted_sample,
)
from smcjax.diffusion import testbed as tb
from smcjax.validate.catalogue import Exact, Instance, Problem

__all__ = ["DiffusionTask", "PROBLEMS", "SAMPLER_RUNS"]

NUM_STEPS = 100


class DiffusionTask(NamedTuple):
    """What a diffusion sampler needs: a target (or a prior score), the schedule, and for a
    posterior problem the log-likelihood of one particle."""

    target: Any
    sde: Any
    log_likelihood: Callable | None = None
    num_steps: int = NUM_STEPS


def _instance(problem, log_likelihood=None) -> Instance:
    ex = problem.exact
    d = len(ex["mean"])
    exact = Exact(mean=np.asarray(ex["mean"]), var=np.asarray(ex["var"]),
                  mode_masses=np.asarray(ex["masses"]) / np.sum(ex["masses"]),
                  mode_of=gmm.nearest_center(problem.centers))
    return Instance(DiffusionTask(problem.target, problem.sde, log_likelihood), exact,
                    names=tuple(f"x[{i}]" for i in range(d)))


def _posterior(problem) -> Instance:
    a, y, r = problem.extra
    return _instance(problem, linear_gaussian_likelihood(a, y, r))


@functools.cache
def _tilted_observation() -> Instance:
    """The 2-d test mixture observed through ``y = 0.5 x_0 - x_1 + e``, ``y = 1``, ``R = 0.3``."""
    sde = VP()
    t = sde.t_min
    qt = gmm.noised(tb.DATA_2D, float(sde.alpha(t)), float(sde.sigma(t)))
    a, y, r = np.array([[0.5, -1.0]]), np.array([1.0]), np.array([[0.3]])
    post, log_z = gmm.linear_gaussian_posterior(qt, a, y, r)
    sd = np.sqrt(np.max(np.diagonal(qt.covs, axis1=1, axis2=2), axis=0))
    bounds = [(float(lo), float(hi)) for lo, hi in zip(qt.means.min(0) - 8 * sd,
                                                       qt.means.max(0) + 8 * sd, strict=True)]
    g = gmm.grid_summary(lambda x: gmm.log_prob(post, x), bounds, 701,
                         gmm.nearest_center(tb.DATA_2D.means))
    exact = {"mean": g["mean"], "var": np.diag(g["cov"]), "masses": g["masses"], "log_z": log_z}
    problem = tb.Problem("posterior2d_b", GaussianMixtureScore(tb.DATA_2D, sde), sde, exact,
                         tb.DATA_2D.means, extra=(a, y, r))
    return _posterior(problem)


_SDE = VP()
PROBLEMS = (
    Problem("fkc_anneal_1d", "diffusion",
            functools.cache(lambda: _instance(tb.anneal_problem(1, 2.0, _SDE))),
            "annealed 1-d Gaussian mixture q^2 (VP diffusion)"),
    Problem("fkc_product_2d", "diffusion",
            functools.cache(lambda: _instance(tb.product_problem(_SDE))),
            "product of two 2-d Gaussian-mixture experts"),
    Problem("fkc_tilt_2d", "diffusion",
            functools.cache(lambda: _instance(tb.tilt_problem(2.0, _SDE))),
            "2-d mixture tilted by a Gaussian reward exp(2 r)"),
    Problem("fkc_cfg_2d", "diffusion",
            functools.cache(lambda: _instance(tb.cfg_problem(2.0, _SDE))),
            "classifier-free guidance q_c^2 q_u^-1 (grid quadrature)", quick=False),
    Problem("tds_posterior_1d", "diffusion",
            functools.cache(lambda: _posterior(tb.posterior_problem(_SDE, dim=1))),
            "1-d mixture prior, linear-Gaussian observation (exact mixture posterior)"),
    Problem("tds_posterior_2d", "diffusion",
            functools.cache(lambda: _posterior(tb.posterior_problem(_SDE, dim=2))),
            "2-d mixture prior, observation of x_0 + x_1 / 2"),
    Problem("tds_posterior_2d_b", "diffusion", _tilted_observation,
            "2-d mixture prior, observation of x_0 / 2 - x_1"),
)


def run_fkc(key, inst: Instance, n: int, **options):
    task = inst.model
    r = fkc_sample(key, task.target, task.sde, n, task.num_steps, **options)
    return r.samples, r.log_weights, r.log_evidence, ~jnp.any(r.collapsed)


def run_twisted(key, inst: Instance, n: int):
    task = inst.model
    r = twisted_sample(key, task.target, task.sde, task.log_likelihood, n, task.num_steps)
    return r.samples, r.log_weights, r.log_evidence, ~jnp.any(r.collapsed)


SAMPLER_RUNS = {
    "fkc": (run_fkc, "Feynman-Kac correctors (Skreta et al. 2025), 100 reverse steps",
            lambda inst: inst.model.log_likelihood is None),
    "fkc_control": (functools.partial(run_fkc, control=True, ess_threshold=0.5),
                    "FKC with the control drift (control=True; plain FKC on experts with "
                    "beta <= 1), resampling when ESS < N/2, 100 reverse steps",
                    lambda inst: inst.model.log_likelihood is None),
    "twisted": (run_twisted, "twisted diffusion sampler (Wu et al. 2023), 100 reverse steps",
                lambda inst: inst.model.log_likelihood is not None),
}

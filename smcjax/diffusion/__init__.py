"""Diffusion models on the Feynman-Kac core: schedules, score models, Feynman-Kac correctors
(annealing, product of experts, classifier-free guidance, reward tilts), the twisted diffusion
sampler, baselines, exact Gaussian-mixture answers (:mod:`smcjax.diffusion.gmm`) and exact test
problems with a Monte Carlo-error-aware check (:mod:`smcjax.diffusion.testbed`).

Modules: :mod:`~smcjax.diffusion.sde` (VP, VE, EDM), :mod:`~smcjax.diffusion.scores`
(``ScoreModel``, converters, flax adapter, exact mixture score),
:mod:`~smcjax.diffusion.targets` (``Target`` helpers, ``DiffusionResult``),
:mod:`~smcjax.diffusion.fkc` (:func:`fkc_sample`),
:mod:`~smcjax.diffusion.twisted` (:func:`twisted_sample`),
:mod:`~smcjax.diffusion.baselines` (:func:`sde_sample`, :func:`best_of_n`).
"""

from smcjax.diffusion import gmm, testbed
from smcjax.diffusion.baselines import best_of_n, sde_sample
from smcjax.diffusion.fkc import fkc_model, fkc_sample
from smcjax.diffusion.scores import (
    GaussianMixtureScore,
    ScoreModel,
    check_score,
    from_denoiser,
    from_eps,
    from_flax,
    from_velocity,
    score_and_divergence,
)
from smcjax.diffusion.sde import EDM, VE, VP, check_times
from smcjax.diffusion.targets import (
    DiffusionResult,
    Target,
    anneal,
    cfg,
    product,
    product_of_powers,
    reward_tilt,
)
from smcjax.diffusion.twisted import linear_gaussian_likelihood, twisted_model, twisted_sample

__all__ = [
    "VP",
    "VE",
    "EDM",
    "check_times",
    "ScoreModel",
    "GaussianMixtureScore",
    "from_denoiser",
    "from_eps",
    "from_velocity",
    "from_flax",
    "check_score",
    "score_and_divergence",
    "Target",
    "DiffusionResult",
    "product_of_powers",
    "anneal",
    "product",
    "cfg",
    "reward_tilt",
    "fkc_model",
    "fkc_sample",
    "sde_sample",
    "best_of_n",
    "twisted_model",
    "twisted_sample",
    "linear_gaussian_likelihood",
    "gmm",
    "testbed",
]

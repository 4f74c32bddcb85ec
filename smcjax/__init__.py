"""smcjax: particle-based probabilistic inference in JAX on one Feynman-Kac core.

Public API (see each module for the mathematics):

* Feynman-Kac engine: :class:`FeynmanKac`, :class:`SMCState`, :class:`StepInfo`, :func:`smc_init`,
  :func:`smc_step`, :func:`smc_run`.
* Particle filters: :class:`StateSpaceModel`, :class:`Proposal`, :func:`particle_filter`,
  :class:`FilterResult`.
* Modules: :mod:`smcjax.weights` (log-weight algebra, ESS), :mod:`smcjax.resampling` (six
  unbiased schemes), :mod:`smcjax.random` (vectorised per-particle keys),
  :mod:`smcjax.models` (built-in models with exact answers).
"""

from smcjax import progress, resampling, weights
from smcjax.bayes import BayesianModel, Bijection
from smcjax.engine import FeynmanKac, SMCState, StepInfo
from smcjax.export import to_arviz
from smcjax.engine import init as smc_init
from smcjax.engine import run as smc_run
from smcjax.engine import step as smc_step
from smcjax.filters import FilterResult, Proposal, StateSpaceModel, particle_filter

__version__ = "0.1.0"

__all__ = [
    "FeynmanKac",
    "SMCState",
    "StepInfo",
    "smc_init",
    "smc_step",
    "smc_run",
    "StateSpaceModel",
    "Proposal",
    "FilterResult",
    "particle_filter",
    "BayesianModel",
    "Bijection",
    "progress",
    "to_arviz",
    "resampling",
    "weights",
]

"""smcjax: particle-based probabilistic inference in JAX on one Feynman-Kac core.

Public API (see each module for the mathematics):

* Feynman-Kac engine: :class:`FeynmanKac`, :class:`SMCState`, :class:`StepInfo`, :func:`smc_init`,
  :func:`smc_step`, :func:`smc_run`.
* Particle filters: :class:`StateSpaceModel`, :class:`Proposal`, :func:`particle_filter`,
  :class:`FilterResult`.
* Static Bayesian models: :func:`tempered_smc` (adaptive tempering, waste-free),
  :func:`data_tempering_smc` (IBIS), :class:`TemperedResult`, :mod:`smcjax.moves` (BlackJAX
  RWMH / MALA / HMC / NUTS adapters with population tuning).
* NumPyro bridge: :func:`from_numpyro` (a NumPyro model as a :class:`BayesianModel`; NumPyro
  is imported only when it is called).
* Diffusion models: :mod:`smcjax.diffusion` (schedules, score models, Feynman-Kac correctors
  :func:`fkc_sample` for annealing / products / CFG / reward tilts, the twisted diffusion
  sampler :func:`twisted_sample`, baselines, exact Gaussian-mixture answers).
* Modules: :mod:`smcjax.weights` (log-weight algebra, ESS), :mod:`smcjax.resampling` (six
  unbiased schemes), :mod:`smcjax.random` (vectorised per-particle keys and a
  fast :func:`smcjax.random.normal`),
  :mod:`smcjax.models` (built-in models with exact answers).
* Compilation: :func:`compiler_options`, the XLA options smcjax's samplers compile with (for
  code that wraps :func:`smc_run` in its own ``jax.jit``).
"""

from smcjax import diffusion, moves, progress, random, resampling, weights
from smcjax._compile import compiler_options
from smcjax._static_common import TemperedResult
from smcjax.bayes import BayesianModel, Bijection
from smcjax.data_tempering import data_tempering_smc
from smcjax.diffusion import fkc_sample, twisted_sample
from smcjax.engine import FeynmanKac, SMCState, StepInfo
from smcjax.engine import init as smc_init
from smcjax.engine import run as smc_run
from smcjax.engine import step as smc_step
from smcjax.export import to_arviz
from smcjax.filters import FilterResult, Proposal, StateSpaceModel, particle_filter
from smcjax.numpyro_bridge import from_numpyro
from smcjax.tempering import tempered_smc

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
    "tempered_smc",
    "data_tempering_smc",
    "from_numpyro",
    "TemperedResult",
    "moves",
    "progress",
    "to_arviz",
    "random",
    "resampling",
    "compiler_options",
    "weights",
    "diffusion",
    "fkc_sample",
    "twisted_sample",
]

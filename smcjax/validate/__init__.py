"""Validation against exact answers: checks, a catalogue of exact problems, SBC, a runner.

* Checks (:mod:`smcjax.validate.checks`): :func:`evidence_ratio_check`,
  :func:`mean_check_across_runs`, :func:`weighted_moment_check`, :func:`ks_check`,
  :func:`discrete_tv_check`, :func:`marginal_tv_check`, each returning a :class:`CheckResult`.
* Catalogue (:mod:`smcjax.validate.catalogue`): :class:`Problem`, :class:`Instance`,
  :class:`Exact`, :func:`problems`, :func:`get_problem`, :func:`flatten_particles`.
* Calibration (:mod:`smcjax.validate.sbc`): :func:`sbc` (simulation-based calibration),
  :func:`geweke` (joint-distribution test), :func:`resample_draws` (posterior draws from a
  weighted particle set).
* Runner (:mod:`smcjax.validate.runner`, :mod:`smcjax.validate.samplers`,
  :mod:`smcjax.validate.report`): :func:`run_validation`, :func:`run_problem`, :data:`SAMPLERS`,
  :data:`LEVELS`, :class:`Sampler`, :class:`SamplerOutput`, :class:`ValidationReport`,
  :class:`Row`.
"""

from smcjax.validate.catalogue import (
    Exact,
    Instance,
    Problem,
    flatten_particles,
    get_problem,
    problems,
)
from smcjax.validate.checks import (
    CheckResult,
    discrete_tv_check,
    evidence_ratio_check,
    ks_check,
    marginal_tv_check,
    mean_check_across_runs,
    weighted_moment_check,
)
from smcjax.validate.runner import (
    LEVELS,
    SAMPLERS,
    Row,
    Sampler,
    SamplerOutput,
    ValidationReport,
    run_problem,
    run_validation,
)
from smcjax.validate.sbc import GewekeResult, SBCResult, geweke, resample_draws, sbc

__all__ = [
    "CheckResult",
    "evidence_ratio_check",
    "mean_check_across_runs",
    "weighted_moment_check",
    "ks_check",
    "discrete_tv_check",
    "marginal_tv_check",
    "Exact",
    "Instance",
    "Problem",
    "problems",
    "get_problem",
    "flatten_particles",
    "SBCResult",
    "GewekeResult",
    "sbc",
    "geweke",
    "resample_draws",
    "LEVELS",
    "SAMPLERS",
    "Row",
    "Sampler",
    "SamplerOutput",
    "ValidationReport",
    "run_problem",
    "run_validation",
]

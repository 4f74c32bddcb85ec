"""Static Bayesian models: the ``BayesianModel`` plug-in type and its optional bijection.

A Bayesian model is a prior ``p(θ)`` and a likelihood ``L(θ) = p(y | θ)`` over a parameter θ
that may be any pytree. The samplers in :mod:`smcjax.samplers` target the tempered path
``π_β(θ) ∝ p(θ) L(θ)^β`` (β from 0 to 1) or, with data tempering, ``p(θ | y_1..y_t)``; both end
at the posterior, and the product of their incremental weights estimates the evidence
``Z = ∫ p(θ) L(θ) dθ``.

Bounded parameters: a :class:`Bijection` maps an unconstrained ``z ∈ R^d`` (same pytree
structure) to θ. MCMC moves then run on ``z`` with target
``log p(θ(z)) + β log L(θ(z)) + log |det dθ/dz|``; the evidence is unchanged because the
prior density is transported with its Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Bijection", "BayesianModel"]


class Bijection(NamedTuple):
    """A smooth bijection from unconstrained space to the support of θ.

    Attributes:
      forward: ``z -> θ`` (single particle).
      inverse: ``θ -> z``.
      log_det_jacobian: ``z -> log |det ∂θ/∂z|`` (scalar).
    """

    forward: Callable
    inverse: Callable
    log_det_jacobian: Callable


class BayesianModel(NamedTuple):
    """A Bayesian model made of single-particle functions.

    Attributes:
      log_prior: ``θ -> scalar``.
      log_likelihood: ``θ -> scalar``; NaN or ``-inf`` gives that particle zero weight
        (counted in the diagnostics).
      sample_prior: ``key -> θ``.
      log_likelihood_per_datum: optional ``(θ, i) -> scalar`` for datum (or batch) ``i``;
        enables data tempering. ``sum_i`` of it must equal ``log_likelihood``.
      num_data: the number of data (or batches) ``i = 0..num_data-1``; required with
        ``log_likelihood_per_datum``.
      bijection: optional :class:`Bijection` for bounded parameters.
      name: a short name used in reports.
    """

    log_prior: Callable
    log_likelihood: Callable
    sample_prior: Callable
    log_likelihood_per_datum: Callable | None = None
    num_data: int | None = None
    bijection: Bijection | None = None
    name: str = "model"

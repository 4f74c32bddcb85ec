"""Reshaped diffusion targets ``prod_i q_i^{beta_i} exp(lam(t) r)`` and the samplers' result type.

The helpers build a :class:`Target` and check its parameters:

* :func:`anneal` ``q^beta`` (``beta > 0``);
* :func:`product` of experts ``prod_i q_i``;
* :func:`cfg` classifier-free guidance ``q_u^{1-w} q_c^w`` (``w >= 0``);
* :func:`reward_tilt` ``p exp(lam(t) r)`` with a constant or time-varying strength;
* :func:`product_of_powers` for any real exponents with a positive sum.

The samplers (:func:`~smcjax.diffusion.fkc_sample`, :func:`~smcjax.diffusion.sde_sample`,
:func:`~smcjax.diffusion.twisted_sample`) return a :class:`DiffusionResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["Target", "DiffusionResult", "product_of_powers", "anneal", "product", "cfg",
           "reward_tilt"]


class Target(NamedTuple):
    """The reshaped target ``prod_i q_i^{beta_i} exp(lam(t) r)`` (build with the helpers below).

    Attributes:
      scores: score models ``s_i(x, t)``.
      betas: real exponents (negative allowed, e.g. CFG), with ``sum(betas) > 0``.
      reward: optional ``r(x) -> scalar`` for one particle (differentiable if ``guidance``).
      lam: the tilt strength, a float or ``lam(t) -> scalar`` of diffusion time.
      guidance: add ``(1 + eta)/2 g^2 lam grad r`` to the drift (weights correct for it).
    """

    scores: tuple
    betas: tuple
    reward: Callable | None = None
    lam: Any = 0.0
    guidance: bool = True

    @property
    def total_beta(self) -> float:
        return float(sum(self.betas))


class DiffusionResult(NamedTuple):
    """Output of the diffusion samplers.

    Attributes:
      samples: ``[N, *shape]`` final particles (at ``times[-1]``).
      log_weights: ``[N]`` normalised log weights (uniform for unweighted samplers).
      log_evidence: log normaliser estimate of the target (None for unweighted samplers).
      ess: ``[K + 1]`` ESS after each step (step 0 is the initial weighting).
      resampled: ``[K + 1]`` bool.
      num_invalid: ``[K + 1]`` particles with a non-finite log weight increment.
      collapsed: ``[K + 1]`` bool, every weight zero after the step.
      times: ``[K + 1]`` the reverse-time grid.
    """

    samples: jax.Array
    log_weights: jax.Array
    log_evidence: Any
    ess: jax.Array
    resampled: jax.Array
    num_invalid: jax.Array
    collapsed: jax.Array
    times: jax.Array

    @property
    def status(self) -> str:
        """``"ok"`` or a sentence saying at which step every weight became zero."""
        collapsed = np.asarray(self.collapsed)
        if not collapsed.any():
            return "ok"
        return f"all weights zero at step {int(np.argmax(collapsed))}; log_evidence is -inf"


def _finite(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def product_of_powers(scores, betas) -> Target:
    """``prod_i q_i^{beta_i}``: any real exponents with a positive sum."""
    scores, betas = tuple(scores), tuple(_finite("beta", b) for b in betas)
    if len(scores) == 0 or len(scores) != len(betas):
        raise ValueError(f"need as many betas as scores, got {len(betas)} and {len(scores)}")
    if not all(callable(s) for s in scores):
        raise ValueError("every score must be a callable score(x, t)")
    if sum(betas) <= 0:
        raise ValueError(f"the exponents must have a positive sum, got {sum(betas)}")
    return Target(scores, betas)


def anneal(score, beta: float) -> Target:
    """Annealing ``q^beta`` (``beta > 1`` sharpens, ``beta < 1`` flattens)."""
    beta = _finite("beta", beta)
    if beta <= 0:
        raise ValueError(f"anneal needs beta > 0, got {beta}")
    return product_of_powers((score,), (beta,))


def product(*scores) -> Target:
    """Product of experts ``prod_i q_i``."""
    return product_of_powers(scores, (1.0,) * len(scores))


def cfg(uncond, cond, w: float) -> Target:
    """Classifier-free guidance ``q_u^{1-w} q_c^{w}`` with guidance weight ``w >= 0``."""
    w = _finite("w", w)
    if w < 0:
        raise ValueError(f"the CFG weight w must be >= 0, got {w}")
    return product_of_powers((uncond, cond), (1.0 - w, w))


def reward_tilt(base, reward: Callable, lam, *, guidance: bool = True) -> Target:
    """``p(x) exp(lam(t) r(x))`` with ``p`` a score model or a :class:`Target`.

    Args:
      base: a score model (``p = q``) or a target without a reward.
      reward: ``r(x) -> scalar`` for one particle.
      lam: a float or a function of diffusion time ``t``; the final target uses
        ``lam(times[-1])``. A ramp such as ``lambda t: 2.0 * (1.0 - t)`` (VP) keeps the early,
        noisy steps untilted.
      guidance: add the reward gradient to the drift (recommended for large ``lam``).
    """
    if not callable(reward):
        raise ValueError("reward must be a callable r(x) -> scalar")
    if not callable(lam):
        _finite("lam", lam)
    target = base if isinstance(base, Target) else product_of_powers((base,), (1.0,))
    if target.reward is not None:
        raise ValueError("the base target already has a reward")
    return target._replace(reward=reward, lam=lam if callable(lam) else float(lam),
                           guidance=bool(guidance))

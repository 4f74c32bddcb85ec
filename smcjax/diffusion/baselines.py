"""Baselines for the diffusion samplers, under the same API.

* :func:`sde_sample`: "score arithmetic". The reverse SDE of :func:`~smcjax.diffusion.fkc_sample`
  with the same combined drift ``-f + (1 + eta)/2 g^2 (sum_i beta_i s_i + lam grad r)`` and the
  same score evaluations, but no weights and no resampling. Its output law is not
  ``prod_i q_i^{beta_i}`` in general (annealing with ``beta s`` gives the wrong mode masses and
  widths), which the exact tests show.
* :func:`best_of_n`: draw ``n`` samples from the base model and keep the one with the highest
  reward, ``num_samples`` times. It targets ``p`` restricted to its top order statistic, not
  ``p exp(lam r)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from smcjax.diffusion.fkc import _prepare, _run_sample
from smcjax.diffusion.targets import DiffusionResult, Target, product_of_powers

__all__ = ["sde_sample", "best_of_n"]


def sde_sample(key, target: Target, sde, num_particles: int, num_steps: int, *,
               eta: float = 1.0, times=None, shape=None) -> DiffusionResult:
    """The unweighted reverse SDE driven by the target's combined score (no FKC weights).

    Same arguments as :func:`~smcjax.diffusion.fkc_sample` (without the SMC options).

    Returns:
      A :class:`~smcjax.diffusion.DiffusionResult` with uniform weights, no resampling and
      ``log_evidence=None``.
    """
    n, grid, eta, shape, prior_std = _prepare(target, sde, num_particles, num_steps, times, eta,
                                              shape, False)
    return _run_sample(key, grid, eta, target=target, sde=sde, shape=shape, num_particles=n,
                       weighted=False, exact_initial=False, prior_std=prior_std,
                       resampling="systematic", ess_threshold=0.0)


def best_of_n(key, base, sde, reward: Callable, n: int, num_samples: int, num_steps: int, *,
              eta: float = 1.0, times=None, shape=None):
    """Best-of-n: for each of ``num_samples`` groups of ``n`` base samples keep the best.

    Args:
      key: a JAX key.
      base: a score model or a reward-free :class:`~smcjax.diffusion.Target`.
      sde: the schedule.
      reward: ``r(x) -> scalar`` for one sample. A NaN reward ranks below every number (a
        group returns NaN only if all its rewards are NaN).
      n: group size (``n >= 1``).
      num_samples: number of returned samples.
      num_steps: reverse steps of the base sampler.

    Returns:
      ``(samples [num_samples, *shape], rewards [num_samples])``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    target = base if isinstance(base, Target) else product_of_powers((base,), (1.0,))
    if target.reward is not None:
        raise ValueError("best_of_n takes a reward-free base; pass the reward separately")
    res = sde_sample(key, target, sde, n * num_samples, num_steps, eta=eta, times=times,
                     shape=shape)
    x = res.samples.reshape((num_samples, n) + res.samples.shape[1:])
    r = jax.vmap(jax.vmap(reward))(x)
    best = jnp.argmax(jnp.where(jnp.isnan(r), -jnp.inf, r), axis=1)  # a NaN reward ranks last
    pick = jnp.take_along_axis(x, best.reshape((num_samples, 1) + (1,) * (x.ndim - 2)), axis=1)
    return pick[:, 0], jnp.take_along_axis(r, best[:, None], axis=1)[:, 0]

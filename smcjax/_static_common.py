"""Shared pieces of the static-model samplers: result type, checks, buffers, error estimate."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.engine import check_num_particles
from smcjax.resampling import get_scheme

__all__ = ["TemperedResult", "check_common", "divisor_at_most", "increment_variance",
           "new_buffers", "write_buffers", "call_jitted", "LoopConfig", "final_result"]


class LoopConfig(NamedTuple):
    """Static (hashable) options of a static-model sampler run."""

    criterion: str
    target_ess: float
    waste_free: bool
    num_chains: int | None
    num_mcmc_steps: int | None
    max_mcmc_steps: int
    correlation_target: float
    max_steps: int
    resampling: Any
    resample_threshold: float
    has_callback: bool  # the callback itself travels as a traced id (smcjax.progress)
    num_schedule: int
    num_data: int = 0  # data tempering: number of data (or batches)


class TemperedResult(NamedTuple):
    """Output of :func:`smcjax.tempered_smc` and :func:`smcjax.data_tempering_smc`.

    Per-step arrays have ``max_steps + 1`` entries; entry 0 is the prior and entries after
    ``num_steps`` are padding (NaN or 0).

    Attributes:
      particles: θ pytree (constrained space), leaves ``[N, ...]``.
      log_weights: ``float[N]`` normalised log weights of the final particles.
      log_evidence: ``log Ẑ`` (``-inf`` if every weight became zero, never NaN).
      log_evidence_se: the single-run error estimate of ``log Ẑ`` (see
        :mod:`smcjax.tempering`).
      temperatures: β path (data tempering: fraction of the data included, ``(i + λ) / n``
        while datum ``i`` is being added in parts).
      num_steps: number of steps done.
      ess: ESS after each step's reweighting.
      acceptance_rate: mean MCMC acceptance probability of each step's move (NaN if none).
      num_mcmc_steps: MCMC steps per particle at each step.
      log_evidence_increments: ``log Z_t - log Z_{t-1}``.
      num_invalid: particles with a non-finite log-likelihood increment at each step.
      resampled: whether each step resampled.
      likelihood_evals: likelihood (log-density) evaluations at each step, all particles.
      collapsed: True if every weight became zero at some step.
    """

    particles: Any
    log_weights: jax.Array
    log_evidence: jax.Array
    log_evidence_se: jax.Array
    temperatures: jax.Array
    num_steps: jax.Array
    ess: jax.Array
    acceptance_rate: jax.Array
    num_mcmc_steps: jax.Array
    log_evidence_increments: jax.Array
    num_invalid: jax.Array
    resampled: jax.Array
    likelihood_evals: jax.Array
    collapsed: jax.Array

    @property
    def num_likelihood_evals(self):
        """Total likelihood evaluations (int64; per run if the result is batched)."""
        return np.asarray(self.likelihood_evals).astype(np.int64).sum(axis=-1)

    @property
    def status(self) -> str:
        """``"ok"``, or a sentence saying why the run did not end at the posterior."""
        collapsed = np.asarray(self.collapsed)
        temps = np.asarray(self.temperatures)
        steps = np.asarray(self.num_steps)
        final = np.take_along_axis(temps.reshape(-1, temps.shape[-1]),
                                   steps.reshape(-1, 1), axis=-1).ravel()
        msgs = []
        if collapsed.any():
            msgs.append(f"all weights zero in {int(collapsed.sum())} of {collapsed.size} run(s): "
                        "every particle's log-likelihood was -inf or not finite; "
                        "log_evidence is -inf")
        if np.any(final < 1.0):
            msgs.append(f"the last temperature is {final.min()} < 1 after {int(steps.max())} "
                        "steps: raise max_steps (log_evidence is for the tempered target)")
        return "ok" if not msgs else "; ".join(msgs)


def check_common(num_particles, target_ess, max_steps, resampling, resample_threshold) -> int:
    """Validate the options shared by the samplers; returns N."""
    n = check_num_particles(num_particles)
    if isinstance(target_ess, bool) or not isinstance(target_ess, (int, float)) or not (
            0.0 < float(target_ess) < 1.0):
        raise ValueError(f"target_ess must be in (0, 1), got {target_ess!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if not (0.0 <= float(resample_threshold) <= 1.0):
        raise ValueError(f"resample_threshold must be in [0, 1], got {resample_threshold!r}")
    get_scheme(resampling)
    return n


def divisor_at_most(n: int, m: int) -> int:
    """The largest divisor of ``n`` that is at most ``m``."""
    return max(k for k in range(1, max(1, m) + 1) if n % k == 0)


def increment_variance(log_w_prev, log_w_new, num_chains=None):
    """Delta-method variance of one log-evidence increment (see :mod:`smcjax.tempering`).

    ``Σ_i (W_t^i - W_{t-1}^i)²``; with ``num_chains = M`` the chain sums
    ``c_m = M Σ_{p} W_t^{p M + m}`` give ``Σ_m (c_m - 1)² / (M (M - 1))``.
    """
    w_new = jnp.exp(log_w_new)
    if num_chains is None:
        return jnp.sum((w_new - jnp.exp(log_w_prev)) ** 2)
    m = num_chains
    c = m * jnp.sum(w_new.reshape(-1, m), axis=0)
    return jnp.sum((c - 1.0) ** 2) / max(m * (m - 1), 1)


_FLOAT_FIELDS = ("temperatures", "ess", "acceptance_rate", "log_evidence_increments")
_INT_FIELDS = ("num_mcmc_steps", "num_invalid", "likelihood_evals")


def new_buffers(size: int, dtype, n: int, first_evals) -> dict:
    """Per-step buffers with entry 0 filled for the prior."""
    b = {k: jnp.full((size,), jnp.nan, dtype) for k in _FLOAT_FIELDS}
    b.update({k: jnp.zeros((size,), jnp.int32) for k in _INT_FIELDS})
    b["resampled"] = jnp.zeros((size,), bool)
    b["temperatures"] = b["temperatures"].at[0].set(0.0)
    b["ess"] = b["ess"].at[0].set(float(n))
    b["log_evidence_increments"] = b["log_evidence_increments"].at[0].set(0.0)
    b["likelihood_evals"] = b["likelihood_evals"].at[0].set(first_evals)
    return b


def write_buffers(bufs: dict, t, **values) -> dict:
    """Write ``values`` at entry ``t`` of the buffers."""
    out = dict(bufs)
    for k, v in values.items():
        out[k] = bufs[k].at[t].set(jnp.asarray(v).astype(bufs[k].dtype))
    return out


def final_result(to_theta, state, log_evidence_var, num_steps, bufs: dict) -> TemperedResult:
    """The :class:`TemperedResult` of a finished loop (particles mapped back to θ)."""
    return TemperedResult(
        particles=jax.vmap(to_theta)(state.particles),
        log_weights=state.log_weights,
        log_evidence=state.log_evidence,
        log_evidence_se=jnp.sqrt(log_evidence_var),
        num_steps=num_steps,
        collapsed=state.collapsed,
        **bufs,
    )


def call_jitted(jitted, plain, traced: tuple, static: tuple):
    """``jitted(*traced, *static)`` if ``static`` is hashable, else ``plain(...)`` eagerly."""
    try:
        hash(static)
    except TypeError:
        return plain(*traced, *static)
    return jitted(*traced, *static)

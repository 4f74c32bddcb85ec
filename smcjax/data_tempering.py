"""Data tempering (IBIS, Chopin 2002): add one datum, or one batch, per step.

Feynman-Kac model on the sequence of partial posteriors ``π_t(θ) ∝ p(θ) Π_{j<t} p(y_j | θ)``,
``t = 0..n`` (``n = model.num_data``), run on the flat unconstrained vector ``z``. Step ``t``:

1. reweight with ``G_t(z) = p(y_{t-1} | θ(z))`` from ``model.log_likelihood_per_datum(θ, t-1)``
   (a non-finite value gives weight 0, counted), through
   :func:`smcjax.engine.reweight_stage`: ``log Z_t = log Z_{t-1} + log Σ_i W_{t-1}^i G_t^i``, so
   the final ``log Ẑ`` is the sequential marginal likelihood
   ``Σ_t log p̂(y_{t-1} | y_0..y_{t-2}) = log p̂(y)``;
2. if ``ESS < ess_threshold · N``: resample (:func:`smcjax.engine.resample_stage`) and move
   every particle with a π_t-invariant MCMC kernel tuned from the weighted population
   (:func:`smcjax.moves.mutate`); its log density is
   ``log p_z(z) + Σ_j 1[j < t] log p(y_j | θ(z))`` (a masked sum over all ``n`` data, so
   shapes stay fixed).

The loop is one ``lax.scan`` over the ``n`` steps; the result is a
:class:`~smcjax.TemperedResult` whose ``temperatures`` are ``t / n`` and whose
``log_evidence_se`` is the delta-method estimate described in :mod:`smcjax.tempering`.
``likelihood_evals`` counts ``N`` per-datum evaluations per step plus every evaluation of a
partial-posterior log density by the moves.

References: N. Chopin, "A sequential particle filter method for static models",
Biometrika 89 (2002); Chopin & Papaspiliopoulos (2020), ch. 17.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from smcjax import progress
from smcjax._flat_model import flatten_model
from smcjax._static_common import (
    LoopConfig,
    TemperedResult,
    call_jitted,
    increment_variance,
    new_buffers,
    write_buffers,
)
from smcjax.bayes import BayesianModel
from smcjax.engine import SMCState, check_num_particles, resample_stage, reweight_stage
from smcjax.moves.blackjax_moves import Move, get_move
from smcjax.moves.mutation import initial_labels, mutate
from smcjax.moves.tuning import cross_whitening
from smcjax.random import as_particle_key
from smcjax.resampling import check_ess_threshold, get_scheme
from smcjax.tempering import log_increment

__all__ = ["data_tempering_smc"]


def data_tempering_smc(key, model: BayesianModel, num_particles: int, *, move: Any = "rwmh",
                       ess_threshold: float = 0.5, resampling="systematic", callback=None,
                       num_mcmc_steps: int | None = None, max_mcmc_steps: int = 50,
                       correlation_target: float = 0.1) -> TemperedResult:
    """IBIS: one datum (or batch) per step, resample-move when the ESS drops.

    Args:
      key: a JAX key.
      model: a :class:`~smcjax.BayesianModel` with ``log_likelihood_per_datum`` and
        ``num_data``.
      num_particles: N > 0.
      move: as in :func:`smcjax.tempered_smc`.
      ess_threshold: resample and move when ``ESS < ess_threshold · N`` (in [0, 1]).
      resampling: a scheme name or function.
      callback: optional ``callback(step, fraction_of_data, ess, acceptance_rate)`` called every
        step through ``jax.debug.callback``.
      num_mcmc_steps, max_mcmc_steps, correlation_target: MCMC steps per move (see
        :func:`smcjax.tempered_smc`).

    Returns:
      :class:`~smcjax.TemperedResult` with ``num_data + 1`` entries per buffer.
    """
    n = check_num_particles(num_particles)
    check_ess_threshold(ess_threshold)
    get_scheme(resampling)
    for name, v in (("num_mcmc_steps", num_mcmc_steps), ("max_mcmc_steps", max_mcmc_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    flatten_model(model, need_per_datum=True)
    mv = get_move(move)
    cfg = LoopConfig(
        criterion="data", target_ess=float(ess_threshold), waste_free=False, num_chains=None,
        num_mcmc_steps=num_mcmc_steps, max_mcmc_steps=max_mcmc_steps,
        correlation_target=float(correlation_target), max_steps=int(model.num_data),
        resampling=resampling,
        resample_threshold=float(ess_threshold), has_callback=callback is not None,
        num_schedule=0,
    )
    cid = jnp.int32(0 if callback is None else progress.register(callback))
    return call_jitted(_run_jit, _run, (key, cid), (model, mv, cfg, n))


def _run(key, callback_id, model: BayesianModel, move: Move, cfg: LoopConfig, n: int):
    fm = flatten_model(model, need_per_datum=True)
    dtype, num_data = fm.dtype, cfg.max_steps
    k_init, k_loop = jax.random.split(as_particle_key(key))
    z = jax.vmap(fm.sample)(jax.random.split(k_init, n))
    log_unif = jnp.full((n,), -jnp.log(jnp.asarray(n, dtype)), dtype)
    state = SMCState(z, log_unif, jnp.zeros((), dtype), jnp.asarray(False))
    params = move.init_params(fm.dim, dtype)
    bufs = new_buffers(num_data + 1, dtype, n, 0)
    index = jnp.arange(num_data, dtype=jnp.int32)

    def log_density_upto(t):
        def ld(zz):
            per = jax.vmap(fm.log_likelihood_datum, in_axes=(None, 0))(zz, index)
            per = jnp.where(index < t, log_increment(per, 1.0), 0.0)
            out = fm.log_prior(zz) + jnp.sum(per)
            return jnp.where(jnp.isfinite(out), out, -jnp.inf)
        return ld

    def body(carry, t1):
        state, params, var, bufs, labels = carry
        k_res, k_move = jax.random.split(jax.random.fold_in(k_loop, t1))
        inc_i = jax.vmap(fm.log_likelihood_datum, in_axes=(0, None))(state.particles, t1 - 1)
        log_prev = state.log_weights
        state, (ess, inc, bad, _) = reweight_stage(state, log_increment(inc_i, 1.0))
        var = var + increment_variance(log_prev, state.log_weights)
        wh = cross_whitening(state.particles, state.log_weights, labels)
        state, anc, resampled, _, _ = resample_stage(
            k_res, state, resampling=cfg.resampling, ess_threshold=cfg.resample_threshold)
        labels = jnp.take(labels, anc)

        def do_move(args):
            st, prm = args
            z_new, info = mutate(k_move, st.particles, st.log_weights, log_density_upto(t1),
                                 move, prm, num_steps=cfg.num_mcmc_steps,
                                 max_steps=cfg.max_mcmc_steps,
                                 correlation_target=cfg.correlation_target,
                                 wh=wh, labels=labels)
            return (st._replace(particles=z_new), move.adapt(prm, info.mean_info),
                    info.acceptance_rate, info.num_steps, info.num_evals)

        def no_move(args):
            st, prm = args
            return st, prm, jnp.asarray(jnp.nan, dtype), jnp.int32(0), jnp.int32(0)

        state, params, acc, k, evals = lax.cond(resampled & ~state.collapsed, do_move, no_move,
                                                (state, params))
        frac = t1.astype(dtype) / num_data
        bufs = write_buffers(bufs, t1, temperatures=frac, ess=ess, acceptance_rate=acc,
                             log_evidence_increments=inc, num_mcmc_steps=k, num_invalid=bad,
                             resampled=resampled, likelihood_evals=evals + n)
        if cfg.has_callback:
            jax.debug.callback(progress.dispatch, t1, frac, ess, acc, callback_id)
        return (state, params, var, bufs, labels), None

    init = (state, params, jnp.zeros((), dtype), bufs, initial_labels(n))
    steps = jnp.arange(1, num_data + 1, dtype=jnp.int32)
    (state, params, var, bufs, _), _ = lax.scan(body, init, steps)
    return TemperedResult(
        particles=jax.vmap(fm.to_theta)(state.particles),
        log_weights=state.log_weights,
        log_evidence=state.log_evidence,
        log_evidence_se=jnp.sqrt(var),
        num_steps=jnp.int32(num_data),
        collapsed=state.collapsed,
        **bufs,
    )


_run_jit = jax.jit(_run, static_argnums=(2, 3, 4, 5))

"""Adaptive tempered SMC (and waste-free SMC) for static Bayesian models.

Feynman-Kac model on the tempered path ``π_β(θ) ∝ p(θ) L(θ)^β``, ``0 = β_0 < … < β_T = 1``,
run on the flat unconstrained vector ``z`` (see :mod:`smcjax._flat_model`). Step ``t``:

1. choose ``β_t``: the given schedule, or by bisection so that the ESS of ``W_{t-1} G_t``
   (``criterion="ess"``) or the conditional ESS ``N (Σ W w)² / Σ W w²`` (``"cess"``) equals
   ``target_ess · N`` (:func:`next_temperature`). If ``β = 1`` already meets the target,
   ``β_t`` is set to exactly 1;
2. reweight with ``G_t(z) = L(θ(z))^{β_t - β_{t-1}}`` (a non-finite ``log L`` gives weight 0,
   counted): ``log Z_t = log Z_{t-1} + log Σ_i W_{t-1}^i G_t^i``, computed by
   :func:`smcjax.engine.reweight_stage` with the clipped ``β_t``;
3. resample (:func:`smcjax.engine.resample_stage`; always for ``"ess"``, when
   ``ESS < resample_threshold · N`` for ``"cess"``; waste-free: ``M`` ancestors out of ``N``);
4. move (``M_t``): a π_{β_t}-invariant MCMC kernel, tuned from the weighted population
   (:mod:`smcjax.moves`: whitening by the weighted covariance, cross-fitted between two
   family trees of particles so that no particle's kernel depends on its own position; step
   size adapted towards a target acceptance between temperatures), with an adaptive number
   of steps (until the particles have decorrelated from their start), or waste-free chains of
   length ``P = N / M`` keeping every state (Dau & Chopin 2022).

The whole loop is one ``lax.while_loop`` with fixed-size buffers of ``max_steps + 1`` entries
(entry 0 is the prior, β = 0); β and the tuning parameters are traced values.

Error estimate ``log_evidence_se``: ``sqrt(Σ_t v_t)`` with ``v_t`` the delta-method variance of
the step-t increment as if the particles were independent, ``v_t = Σ_i (W_t^i - W_{t-1}^i)²``
(for uniform ``W_{t-1}`` this is ``1/ESS_t - 1/N``). For waste-free steps the ``M`` chains are
the independent units: ``v_t = Σ_m (c_m - 1)² / (M (M - 1))`` with ``c_m = M Σ_{i ∈ chain m}
W_t^i``. It ignores the dependence that resampling leaves when the moves do not fully
decorrelate the particles, so it can understate the error; the tests compare it with the
spread of ``log Ẑ`` over independent runs.

References: Del Moral, Doucet & Jasra (2006); Jasra et al. (2011); Zhou, Johansen & Aston
(2016) for the CESS; Dau & Chopin (2022), "Waste-free sequential Monte Carlo";
Chopin & Papaspiliopoulos (2020), ch. 17.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from smcjax import progress
from smcjax import weights as _w
from smcjax._compile import jit
from smcjax._flat_model import flatten_model
from smcjax._static_common import (
    LoopConfig,
    TemperedResult,
    call_jitted,
    check_common,
    divisor_at_most,
    final_result,
    increment_variance,
    new_buffers,
    write_buffers,
)
from smcjax.bayes import BayesianModel
from smcjax.engine import SMCState, resample_stage, reweight_stage
from smcjax.moves.blackjax_moves import Move, get_move
from smcjax.moves.mutation import initial_labels, mutate, run_chains
from smcjax.moves.tuning import cross_whitening
from smcjax.random import as_particle_key

__all__ = ["TemperedResult", "tempered_smc", "next_temperature", "log_increment"]


def log_increment(log_likelihood, delta):
    """``delta · log L`` with non-finite ``log L`` mapped to ``-inf`` (zero weight)."""
    ok = jnp.isfinite(log_likelihood)
    return jnp.where(ok, delta * jnp.where(ok, log_likelihood, 0.0), -jnp.inf)


def _criterion(log_weights, log_likelihood, delta, criterion: str):
    inc = log_increment(log_likelihood, delta)
    n = log_weights.shape[0]
    if criterion == "cess":
        return _w.conditional_ess(log_weights, inc) / n
    return _w.normalize_and_ess(log_weights + inc, nan_free=True)[2] / n


def next_temperature(log_weights, log_likelihood, beta, target_ess: float = 0.5,
                     criterion: str = "cess", num_iter: int = 50):
    """Next temperature by bisection on ``δ ∈ (0, 1 - β]``.

    Finds ``δ`` with ``crit(δ) = target_ess`` where ``crit`` is ESS/N of ``W · L^δ`` or its
    conditional ESS/N, both non-increasing in ``δ``. Returns exactly 1.0 when
    ``crit(1 - β) ≥ target_ess`` (clipping), otherwise ``β + δ`` with ``δ`` the largest
    value found with ``crit(δ) ≥ target_ess`` (never ``β`` itself).

    Non-finite log weights (NaN, ±inf) count as zero weight, as everywhere in the engine.
    """
    log_weights = _w.sanitize(log_weights)[0]
    dtype = log_weights.dtype
    beta = jnp.asarray(beta, dtype)
    remaining = 1.0 - beta
    crit = lambda d: _criterion(log_weights, log_likelihood, d, criterion)  # noqa: E731

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = crit(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = lax.fori_loop(0, num_iter, bisect, (jnp.zeros((), dtype), remaining))
    delta = jnp.where(lo > 0, lo, hi)
    nxt = jnp.maximum(beta + delta, jnp.nextafter(beta, jnp.asarray(2.0, dtype)))
    nxt = jnp.minimum(nxt, 1.0)
    return jnp.where(crit(remaining) >= target_ess, jnp.ones((), dtype), nxt)


def _check_schedule(schedule, max_steps):
    if schedule is None:
        return None
    if isinstance(schedule, jax.core.Tracer):
        raise ValueError("schedule must be a concrete array (it is validated before tracing)")
    s = np.asarray(schedule, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"schedule must be a non-empty 1-d array, got shape {s.shape}")
    if s[0] == 0.0:
        s = s[1:]
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("schedule must hold finite temperatures in (0, 1] (a leading 0 is ok)")
    if np.any(np.diff(s) <= 0):
        raise ValueError(f"schedule must be strictly increasing, got {np.asarray(schedule)}")
    if s[-1] != 1.0:
        raise ValueError(f"schedule must end at exactly 1, got last value {s[-1]!r}")
    return s


def tempered_smc(key, model: BayesianModel, num_particles: int, *, move: Any = "rwmh",
                 target_ess: float = 0.5, criterion: str = "cess", schedule=None,
                 waste_free: bool = False, num_chains: int | None = None,
                 num_mcmc_steps: int | None = None, max_steps: int = 200,
                 resampling="systematic", callback=None, resample_threshold: float = 0.5,
                 max_mcmc_steps: int = 50, correlation_target: float = 0.1) -> TemperedResult:
    """Adaptive tempered SMC from the prior to the posterior (see the module docstring).

    Args:
      key: a JAX key (the same key gives bitwise-identical results).
      model: a :class:`~smcjax.BayesianModel`.
      num_particles: N > 0.
      move: ``"rwmh" | "mala" | "hmc" | "nuts"``, a :class:`~smcjax.moves.Move`, a sequence of
        moves, or a user kernel ``(key, state, log_density) -> (state, info)``.
      target_ess: ρ ∈ (0, 1); each adaptive step keeps the (C)ESS at ρN.
      criterion: ``"cess"`` or ``"ess"``.
      schedule: optional fixed increasing temperatures ending at exactly 1 (replaces the
        adaptive choice).
      waste_free: run waste-free SMC (resample ``M = num_chains`` particles, chains of length
        ``P = N / M``, keep every state).
      num_chains: M (must divide N; default the largest divisor of N not above N / 10).
      num_mcmc_steps: MCMC steps per temperature; None chooses them adaptively (until the mean
        correlation between the particles' whitened coordinates, and squared radii, before and
        after the steps is at most ``correlation_target``; at most ``max_mcmc_steps``).
      max_steps: size of the per-step buffers (maximum number of temperatures).
      resampling: a scheme name or function (:mod:`smcjax.resampling`).
      callback: optional ``callback(step, beta, ess, acceptance_rate)``, called every step via
        ``jax.debug.callback`` (e.g. for a progress bar).
      resample_threshold: with ``criterion="cess"``, resample when ``ESS < this · N``
        (``"ess"`` resamples every step).
      max_mcmc_steps, correlation_target: the adaptive number of MCMC steps.

    Returns:
      :class:`TemperedResult`.
    """
    n = check_common(num_particles, target_ess, max_steps, resampling, resample_threshold)
    if criterion not in ("ess", "cess"):
        raise ValueError(f"criterion must be 'ess' or 'cess', got {criterion!r}")
    sched = _check_schedule(schedule, max_steps)
    if sched is not None:
        max_steps = max(max_steps, int(sched.size))
    for name, v in (("num_mcmc_steps", num_mcmc_steps), ("max_mcmc_steps", max_mcmc_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    m = None
    if waste_free:
        m = divisor_at_most(n, max(1, n // 10)) if num_chains is None else num_chains
        if isinstance(m, bool) or not isinstance(m, int) or m < 1 or n % m or n // m < 2:
            raise ValueError(f"num_chains must be a positive divisor of num_particles={n} with "
                             f"chain length N / M >= 2, got {m!r}")
    fm = flatten_model(model)  # validate now, with a clear error
    mv = get_move(move)
    random_walk_only = set(mv.name.split("+")) == {"rwmh"}  # compose() joins names with "+"
    if waste_free and random_walk_only and fm.dim >= 20 and n // m < 8 * fm.dim:
        warnings.warn(
            f"waste-free SMC with a random walk in d = {fm.dim}: chains of length "
            f"N / M = {n // m} are too short for a random walk to decorrelate (it needs "
            f"O(d) steps), and the evidence can be off by tens of nats (50-d Gaussian, "
            f"N = 2000, chains of 20: log Z off by 1 to 28; N = 200000 with 500 chains of 400 "
            f"passes the exact-answer test). Use chains of at least 8 d = {8 * fm.dim} steps "
            f"and a few hundred chains, or move='mala' / 'hmc', or waste_free=False.",
            stacklevel=2)
    cfg = LoopConfig(
        criterion=criterion, target_ess=float(target_ess), waste_free=bool(waste_free),
        num_chains=m, num_mcmc_steps=num_mcmc_steps, max_mcmc_steps=max_mcmc_steps,
        correlation_target=float(correlation_target), max_steps=int(max_steps),
        resampling=resampling,
        resample_threshold=1.0 if criterion == "ess" else float(resample_threshold),
        has_callback=callback is not None,
        num_schedule=0 if sched is None else int(sched.size),
    )
    buf = np.ones(max_steps, np.float64)
    if sched is not None:
        buf[: sched.size] = sched
    cid = jnp.int32(0 if callback is None else progress.register(callback))
    return call_jitted(_run_jit, _run, (key, buf, cid), (model, mv, cfg, n))


def _run(key, schedule, callback_id, model: BayesianModel, move: Move, cfg: LoopConfig,
         n: int):
    fm = flatten_model(model)
    dtype = fm.dtype
    schedule = jnp.asarray(schedule, dtype)
    k_init, k_loop = jax.random.split(as_particle_key(key))
    z = jax.vmap(fm.sample)(jax.random.split(k_init, n))
    ll = jax.vmap(fm.log_likelihood)(z)
    log_unif = jnp.full((n,), -jnp.log(jnp.asarray(n, dtype)), dtype)
    state = SMCState(z, log_unif, jnp.zeros((), dtype), jnp.asarray(False))
    params = move.init_params(fm.dim, dtype)
    bufs = new_buffers(cfg.max_steps + 1, dtype, n, n)
    m = cfg.num_chains

    def log_density_at(beta):
        def ld(zz):
            out = fm.log_prior(zz) + log_increment(fm.log_likelihood(zz), beta)
            return jnp.where(jnp.isfinite(out), out, -jnp.inf)
        return ld

    def cond(carry):
        t, beta, state, *_ = carry
        return (t < cfg.max_steps) & (beta < 1.0) & ~state.collapsed

    def body(carry):
        t, beta, state, ll, params, var, bufs, labels = carry
        t1 = t + 1
        k_res, k_move = jax.random.split(jax.random.fold_in(k_loop, t1))
        if cfg.num_schedule:
            beta_new = schedule[t]
        else:
            beta_new = next_temperature(state.log_weights, ll, beta, cfg.target_ess,
                                        cfg.criterion)
        log_prev = state.log_weights
        state, (ess, inc, bad, _) = reweight_stage(state, log_increment(ll, beta_new - beta))
        v_t = increment_variance(log_prev, state.log_weights)
        if cfg.waste_free:  # after the first step the M chains are the independent units
            v_chain = increment_variance(log_prev, state.log_weights, m)
            v_t = jnp.where(t1 > 1, v_chain, v_t)
        var = var + v_t
        # tuning from the weighted population before resampling, cross-fitted between the
        # two family trees (labels inherited at resampling; see smcjax.moves.tuning)
        wh = cross_whitening(state.particles, state.log_weights, labels)
        ld = log_density_at(beta_new)
        if cfg.waste_free:
            state, anc, resampled, _, _ = resample_stage(
                k_res, state, resampling=cfg.resampling, ess_threshold=1.0, num_samples=m)
            start_labels = jnp.take(labels, anc)
            z_new, info = run_chains(k_move, state.particles, wh, start_labels, ld, move,
                                     params, n // m)
            labels = jnp.tile(start_labels, n // m)
            state = state._replace(particles=z_new, log_weights=log_unif)
        else:
            state, anc, resampled, _, _ = resample_stage(
                k_res, state, resampling=cfg.resampling, ess_threshold=cfg.resample_threshold)
            labels = jnp.take(labels, anc)
            z_new, info = mutate(k_move, state.particles, state.log_weights, ld, move, params,
                                 num_steps=cfg.num_mcmc_steps, max_steps=cfg.max_mcmc_steps,
                                 correlation_target=cfg.correlation_target, wh=wh,
                                 labels=labels)
            state = state._replace(particles=z_new)
        ll = jax.vmap(fm.log_likelihood)(z_new)
        params = move.adapt(params, info.mean_info)
        bufs = write_buffers(bufs, t1, temperatures=beta_new, ess=ess,
                             acceptance_rate=info.acceptance_rate,
                             log_evidence_increments=inc, num_mcmc_steps=info.num_steps,
                             num_invalid=bad, resampled=resampled,
                             likelihood_evals=info.num_evals + n)
        if cfg.has_callback:
            jax.debug.callback(progress.dispatch, t1, beta_new, ess, info.acceptance_rate,
                               callback_id)
        return t1, beta_new, state, ll, params, var, bufs, labels

    init = (jnp.int32(0), jnp.zeros((), dtype), state, ll, params, jnp.zeros((), dtype), bufs,
            initial_labels(n))
    t, beta, state, ll, params, var, bufs, _ = lax.while_loop(cond, body, init)
    return final_result(fm.to_theta, state, var, t, bufs)


_run_jit = jit(_run, static_argnums=(3, 4, 5, 6))

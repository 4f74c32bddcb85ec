"""The Feynman-Kac SMC engine: state, per-step info, the three stages of a step, and ``run``.

A Feynman-Kac model over steps ``t = 0..T-1`` is given by single-particle functions

* ``M0(key) -> x0``                               initial distribution;
* ``Mt(key, x_prev, t, params) -> x``             Markov transition (proposal or move);
* ``log G0(x0, params)`` and ``log Gt(x_prev, x, t, params)``  log potentials;
* optionally ``log eta_t(x_prev, t, params)``     auxiliary (look-ahead) log weights.

``params`` is any pytree of *traced* per-run or per-step quantities (a temperature, a step
size, a tuning matrix); it is passed through unchanged, so a changing value never rebuilds a
closure or recompiles.

With normalised weights ``W_{t-1}``, one step does (Chopin & Papaspiliopoulos 2020, ch. 10;
Pitt & Shephard 1999 for the auxiliary weights)::

    V^i   = W_{t-1}^i eta_t(x_{t-1}^i) / sum_j W_{t-1}^j eta_t(x_{t-1}^j)        (eta = 1 by default)
    a     = resample(V) if ESS(V) < threshold * N else identity  (V kept when not resampling)
    x_t^i ~ M_t(x_{t-1}^{a_i}, .)
    g^i   = G_t(x_{t-1}^{a_i}, x_t^i) / eta_t(x_{t-1}^{a_i})
    log Z_t - log Z_{t-1} ~= log sum_j W_{t-1}^j eta_t^j + log sum_i V_post^i g^i
    W_t^i ∝ V_post^i g^i

where ``V_post`` is uniform after resampling and ``V`` otherwise. With ``eta = 1`` the increment
is the familiar ``log sum_i W_{t-1}^i G_t^i``, correct whether or not the step resampled.

Non-finite log potentials (NaN, +inf, -inf) give zero weight and are counted in
``StepInfo.num_invalid``. If every weight becomes zero the state's ``collapsed`` flag is set
for good, ``log_evidence`` becomes ``-inf`` (never NaN) and the weights are reset to uniform so
that the compiled loop can finish; :func:`run` callers report it.

The engine is the one place that vmaps user functions over the particle axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from smcjax import weights as _w
from smcjax.random import as_particle_key, draw_once, particle_keys, split
from smcjax.resampling import check_ess_threshold, get_scheme, resample_and_take

__all__ = [
    "FeynmanKac",
    "SMCState",
    "StepInfo",
    "init",
    "step",
    "run",
    "resample_stage",
    "propagate_stage",
    "reweight_stage",
    "weighted_mean",
    "weighted_mean_and_var",
    "check_num_particles",
    "particle_step_work",
]

PyTree = Any


class FeynmanKac(NamedTuple):
    """A Feynman-Kac model made of single-particle functions (see the module docstring).

    Attributes:
      initial_sample: ``M0(key) -> x``.
      transition_sample: ``Mt(key, x_prev, t, params) -> x``.
      log_potential: ``log Gt(x_prev, x, t, params) -> scalar`` for ``t >= 1``.
      initial_log_potential: ``log G0(x, params) -> scalar``, or None for ``G0 = 1``.
      log_lookahead: ``log eta_t(x_prev, t, params) -> scalar`` auxiliary weights used for
        resampling before step t and divided out of ``Gt``; None for ``eta = 1``.
    """

    initial_sample: Callable
    transition_sample: Callable
    log_potential: Callable
    initial_log_potential: Callable | None = None
    log_lookahead: Callable | None = None


class SMCState(NamedTuple):
    """State of an SMC run.

    Attributes:
      particles: pytree whose leaves have leading axis N.
      log_weights: ``float[N]`` log weights, kept normalised (``logsumexp == 0``).
      log_evidence: running log normalising-constant estimate ``log Z_t``.
      collapsed: bool; True once every weight has been zero at some step.
    """

    particles: PyTree
    log_weights: jax.Array
    log_evidence: jax.Array
    collapsed: jax.Array


class StepInfo(NamedTuple):
    """Per-step diagnostics (stacked over steps by :func:`run`).

    Attributes:
      ess: effective sample size after reweighting.
      resampled: whether this step resampled.
      log_evidence_increment: ``log Z_t - log Z_{t-1}``.
      num_invalid: number of particles whose log potential was not finite.
      collapsed: whether every weight was zero after this step.
    """

    ess: jax.Array
    resampled: jax.Array
    log_evidence_increment: jax.Array
    num_invalid: jax.Array
    collapsed: jax.Array


def check_num_particles(num_particles) -> int:
    """Validate a particle count: a positive Python int."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, int):
        try:
            as_int = int(num_particles)
        except (TypeError, ValueError):
            raise ValueError(f"num_particles must be a positive int, got {num_particles!r}") from None
        if as_int != num_particles:
            raise ValueError(f"num_particles must be a positive int, got {num_particles!r}")
        num_particles = as_int
    if num_particles <= 0:
        raise ValueError(f"num_particles must be a positive int, got {num_particles}")
    return num_particles


def particle_step_work(fk: FeynmanKac, params=None) -> float | None:
    """XLA's cost estimate of one particle's step, for choosing how to compile (see
    :mod:`smcjax._compile`): flops and transcendentals of ``Mt``, ``log Gt`` and
    ``log eta_t`` at one particle (from ``jax.jit(...).lower(...).cost_analysis()``, without
    compiling), plus the particle's number of scalars for the engine's per-particle work.
    ``params`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves. Returns None when the
    functions cannot be lowered on their own or XLA gives no estimate.

    Example:
      >>> import jax
      >>> fk = FeynmanKac(lambda k: jax.random.normal(k),
      ...                 lambda k, x, t, p: x + jax.random.normal(k),
      ...                 lambda x0, x, t, p: -0.5 * x * x)
      >>> particle_step_work(fk) > 1
      True
    """
    try:
        key = jax.eval_shape(lambda: particle_keys(jax.random.key(0), 1)[0])
        x = jax.eval_shape(fk.initial_sample, key)
        t = jax.ShapeDtypeStruct((), jnp.int32)

        def one(key, x_prev, t, params):
            x = fk.transition_sample(key, x_prev, t, params)
            out = [x, fk.log_potential(x_prev, x, t, params)]
            if fk.log_lookahead is not None:
                out.append(fk.log_lookahead(x_prev, t, params))
            return out

        cost = jax.jit(one).lower(key, x, t, params).cost_analysis()
        if isinstance(cost, list | tuple):  # one entry per computation in older JAX
            cost = cost[0] if cost else None
        if not cost:
            return None
        work = float(cost.get("flops", 0.0)) + float(cost.get("transcendentals", 0.0))
    except Exception:  # noqa: BLE001 -- an estimate only; None keeps XLA's own choice
        return None
    return work + sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(x))


def reweight_stage(state: SMCState, log_increments, log_offset=0.0):
    """Multiply the weights by ``exp(log_increments)`` and update the evidence.

    Args:
      state: current state (its ``log_weights`` are the pre-increment weights ``V``: finite or
        ``-inf``, never NaN, as in every state the engine makes).
      log_increments: ``float[N]`` log incremental weights ``log g`` (any values: non-finite
        ones become zero weights and are counted).
      log_offset: extra term added to the evidence increment (the auxiliary-filter constant
        ``log sum_j W_{t-1}^j eta^j``; 0 otherwise).

    Returns:
      ``(new_state, (ess, increment, num_invalid, collapsed_now))``.
    """
    log_increments, num_invalid = _w.sanitize(log_increments)
    log_increments = log_increments.astype(state.log_weights.dtype)
    unnorm = state.log_weights + log_increments
    log_w, log_total, ess = _w.normalize_and_ess(unnorm, nan_free=True)
    collapsed_now = ~jnp.isfinite(log_total)
    increment = jnp.where(collapsed_now, -jnp.inf, log_total + log_offset)
    new_state = SMCState(
        particles=state.particles,
        log_weights=log_w,
        log_evidence=state.log_evidence + increment,
        collapsed=state.collapsed | collapsed_now,
    )
    return new_state, (ess, increment, num_invalid, collapsed_now)


def resample_stage(key, state: SMCState, log_lookahead=None, *, resampling="systematic",
                   ess_threshold=0.5, num_samples: int | None = None):
    """Resample (if the ESS asks for it) on the weights ``W * eta``.

    ``num_samples = M`` (a Python int, default N) draws M ancestors out of N, as waste-free SMC
    does before growing M chains back to N particles; with ``M != N`` the stage always
    resamples (``ess_threshold`` must be 1), and the returned state holds M particles.

    Returns:
      ``(state, ancestors, resampled, log_offset, log_eta_ancestors)``: the state whose
      particles are ``x[a]`` and whose weights are ``V_post``; the ancestors; the flag; the
      evidence offset ``log sum_j W^j eta^j``; and ``log eta`` at the ancestors (to divide out
      of the potential).
    """
    lw = state.log_weights
    if log_lookahead is None:
        aux, log_offset = lw, jnp.zeros((), lw.dtype)
    else:
        log_eta, _ = _w.sanitize(log_lookahead)
        aux, log_offset = _w.normalize(lw + log_eta.astype(lw.dtype))
        log_offset = jnp.where(jnp.isfinite(log_offset), log_offset, 0.0)
    n = lw.shape[0]
    m = n if num_samples is None else num_samples
    take = lambda anc: jax.tree.map(lambda leaf: jnp.take(leaf, anc, axis=0),  # noqa: E731
                                    state.particles)
    if m != n:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"num_samples must be a positive Python int, got {m!r}")
        if ess_threshold < 1.0:
            raise ValueError("num_samples != N needs ess_threshold=1 (always resample), got "
                             f"{ess_threshold!r}")
        ancestors = get_scheme(resampling)(key, aux, m).astype(jnp.int32)
        resampled, particles = jnp.asarray(True), take(ancestors)
    else:
        ancestors, resampled, particles = resample_and_take(
            key, aux, take, state.particles, scheme=resampling, ess_threshold=ess_threshold,
            normalized=True)
    uniform = jnp.full((m,), -jnp.log(jnp.asarray(m, lw.dtype)), lw.dtype)
    post = jnp.where(resampled, uniform, aux) if m == n else uniform
    log_eta_anc = None if log_lookahead is None else jnp.take(log_lookahead, ancestors)
    new_state = state._replace(particles=particles, log_weights=post)
    return new_state, ancestors, resampled, log_offset, log_eta_anc


def propagate_stage(key, particles, t, params, transition_sample):
    """Move every particle: ``x^i ~ M_t(x_prev^i)`` with one key per particle (vmapped)."""
    n = jax.tree.leaves(particles)[0].shape[0]
    keys = particle_keys(key, n)
    return jax.vmap(transition_sample, in_axes=(0, 0, None, None))(keys, particles, t, params)


def init(key, fk: FeynmanKac, num_particles: int, params=None):
    """Draw ``x0 ~ M0``, weight by ``G0`` and start the evidence at ``log mean G0``.

    Returns:
      ``(state, info)`` for step 0.
    """
    num_particles = check_num_particles(num_particles)
    particles = draw_once(lambda k: jax.vmap(fk.initial_sample)(particle_keys(k, num_particles)),
                          key)
    leaves = jax.tree.leaves(particles)
    dtype = jnp.result_type(*[lf.dtype for lf in leaves if jnp.issubdtype(lf.dtype, jnp.floating)]
                            or [jnp.float32])
    lw = jnp.full((num_particles,), -jnp.log(jnp.asarray(num_particles, dtype)), dtype)
    state = SMCState(particles, lw, jnp.zeros((), dtype), jnp.asarray(False))
    if fk.initial_log_potential is None:
        log_g = jnp.zeros((num_particles,), dtype)
    else:
        log_g = jax.vmap(fk.initial_log_potential, in_axes=(0, None))(particles, params)
    state, (ess, inc, bad, col) = reweight_stage(state, log_g)
    return state, StepInfo(ess, jnp.asarray(False), inc, bad, col)


def step(key, state: SMCState, t, fk: FeynmanKac, params=None, *, resampling="systematic",
         ess_threshold=0.5):
    """One SMC step at time ``t >= 1``: resample (maybe), move, reweight.

    Args:
      key: a JAX key.
      state: the state after step ``t - 1``.
      t: the step index (traced int32 is fine).
      fk: the Feynman-Kac model.
      params: traced pytree passed to every model function.
      resampling: a scheme name or function (see :mod:`smcjax.resampling`).
      ess_threshold: resample when ``ESS < ess_threshold * N``.

    Returns:
      ``(state, StepInfo)``.
    """
    k_res, k_move = split(key)
    return _step(k_res, k_move, state, t, fk, params, resampling, ess_threshold)


def _step(k_res, k_move, state, t, fk, params, resampling, ess_threshold):
    log_eta = None
    if fk.log_lookahead is not None:
        log_eta = jax.vmap(fk.log_lookahead, in_axes=(0, None, None))(state.particles, t, params)
    state, ancestors, resampled, log_offset, log_eta_anc = resample_stage(
        k_res, state, log_eta, resampling=resampling, ess_threshold=ess_threshold
    )
    x_prev = state.particles
    x = propagate_stage(k_move, x_prev, t, params, fk.transition_sample)
    log_g = jax.vmap(fk.log_potential, in_axes=(0, 0, None, None))(x_prev, x, t, params)
    if log_eta_anc is not None:
        log_g = log_g - log_eta_anc
    state = state._replace(particles=x)
    state, (ess, inc, bad, col) = reweight_stage(state, log_g, log_offset)
    return state, StepInfo(ess, resampled, inc, bad, col)


def weighted_mean(particles, log_weights, t=None):
    """Weighted mean of every leaf over the particle axis (a ready-made ``reduce_fn``)."""
    w = jnp.exp(log_weights)
    return jax.tree.map(lambda x: jnp.tensordot(w.astype(x.dtype), x, axes=(0, 0)), particles)


def weighted_mean_and_var(particles, log_weights, t=None):
    """Weighted mean and (element-wise) variance of every leaf: ``{"mean": .., "var": ..}``."""
    w = jnp.exp(log_weights)

    def moments(x):
        wx = w.astype(x.dtype)
        mean = jnp.tensordot(wx, x, axes=(0, 0))
        var = jnp.tensordot(wx, (x - mean[None]) ** 2, axes=(0, 0))
        return mean, var

    out = jax.tree.map(moments, particles)
    is_pair = lambda v: isinstance(v, tuple)  # noqa: E731
    return {
        "mean": jax.tree.map(lambda v: v[0], out, is_leaf=is_pair),
        "var": jax.tree.map(lambda v: v[1], out, is_leaf=is_pair),
    }


def _pack_words(info):
    """The scalars of ``info`` as one ``uint32`` vector (exact bit casts; booleans as 0 / 1)
    and the spec to undo it, or ``(info, None)`` when a field is not a 32-bit or boolean
    scalar (e.g. float64 under ``jax_enable_x64``). The loop then stores one small vector per
    step instead of one scalar per field: on CPU each store is a kernel launch of its own
    (about 0.4 us of a 9 us bootstrap-filter step at N = 10^3)."""
    leaves, treedef = jax.tree.flatten(info)
    if not all(jnp.ndim(x) == 0 and (x.dtype == jnp.bool_ or x.dtype.itemsize == 4)
               for x in leaves):
        return info, None
    words = [x.astype(jnp.uint32) if x.dtype == jnp.bool_ else
             lax.bitcast_convert_type(x, jnp.uint32) for x in leaves]
    return jnp.stack(words), (treedef, [x.dtype for x in leaves])


def _unpack_words(words, spec):
    """Inverse of :func:`_pack_words` for packed vectors stacked over steps."""
    if spec is None:
        return words
    treedef, dtypes = spec
    out = [words[:, i] != 0 if dt == jnp.bool_ else lax.bitcast_convert_type(words[:, i], dt)
           for i, dt in enumerate(dtypes)]
    return jax.tree.unflatten(treedef, out)


def _stack_first(first, rest):
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)


def run(key, fk: FeynmanKac, num_particles: int, num_steps: int, params=None, *,
        resampling="systematic", ess_threshold=0.5, reduce_fn: Callable | None = None,
        callback: Callable | None = None, callback_args=()):
    """Run ``num_steps`` steps (``t = 0..num_steps-1``) in one compiled ``lax.scan``.

    Args:
      key: a JAX key; the same key gives bitwise-identical results.
      fk: the Feynman-Kac model.
      num_particles: N > 0.
      num_steps: T >= 1 (step 0 is :func:`init`).
      params: traced pytree passed to every model function.
      resampling, ess_threshold: see :func:`step`.
      reduce_fn: optional ``reduce_fn(particles, log_weights, t) -> pytree`` evaluated after
        every step (e.g. :func:`weighted_mean_and_var`) and stacked over steps, so that a long
        run need not keep every particle.
      callback: optional host function ``callback(step, ess, log_evidence)`` called after every
        step through ``jax.debug.callback`` (e.g. :class:`smcjax.progress.ProgressBar`). With
        None nothing is traced, so it costs nothing.
      callback_args: extra traced values appended to the callback's arguments (the samplers
        pass a registered id here so that a new progress bar does not recompile).

    Compile it with ``jax.jit(..., compiler_options=smcjax.compiler_options())`` to get the
    XLA options smcjax's own samplers use (512-bit CPU vectors; see :mod:`smcjax._compile`).

    Returns:
      ``(final_state, infos, reduced)``; ``infos`` is a :class:`StepInfo` with leading axis T,
      ``reduced`` the stacked ``reduce_fn`` outputs (None without ``reduce_fn``).
    """
    num_particles = check_num_particles(num_particles)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    check_ess_threshold(ess_threshold)
    get_scheme(resampling)
    # Keys stay in the caller's PRNG implementation (split bit for bit as jax.random.split
    # does, with the cipher unrolled for JAX's Threefry; see smcjax.random.split); only the
    # per-particle keys use the vectorising implementation.
    k_init, k_steps = split(key)
    state, info0 = init(k_init, fk, num_particles, params)
    red0 = None if reduce_fn is None else reduce_fn(state.particles, state.log_weights,
                                                   jnp.int32(0))
    if num_steps == 1:
        infos = jax.tree.map(lambda a: a[None], info0)
        reduced = None if red0 is None else jax.tree.map(lambda a: a[None], red0)
        return state, infos, reduced

    packing = {}

    def body(carry, inputs):
        t, k_res, k_move = inputs
        st, info = _step(k_res, k_move, carry, t, fk, params, resampling, ess_threshold)
        red = None if reduce_fn is None else reduce_fn(st.particles, st.log_weights, t)
        if callback is not None:
            jax.debug.callback(callback, t, info.ess, st.log_evidence, *callback_args)
        words, packing["spec"] = _pack_words(info)
        return st, (words, red)

    # All step keys are drawn before the loop: one RNG call outside instead of two per step
    # inside the compiled body (which compiles faster and runs the same).
    ts = jnp.arange(1, num_steps, dtype=jnp.int32)
    step_keys = split(k_steps, (num_steps - 1, 2))
    # The move keys become per-particle keys here, for all steps at once (the same values as
    # converting inside the step), so the loop body holds no scalar key conversion. The
    # resampling keys stay in the caller's implementation (systematic resampling draws its
    # one uniform with smcjax.random.uniform_scalar, the caller's bits without a loop).
    move_keys = jax.vmap(as_particle_key)(step_keys[:, 1])
    state, (infos, reduced) = lax.scan(body, state, (ts, step_keys[:, 0], move_keys))
    infos = _unpack_words(infos, packing["spec"])
    infos = _stack_first(info0, infos)
    if reduce_fn is not None:
        reduced = _stack_first(red0, reduced)
    return state, infos, reduced

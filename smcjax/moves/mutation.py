"""Population-level MCMC mutation: the ``M_t`` of the static-model Feynman-Kac models.

:func:`mutate` applies ``k`` steps of a π-invariant :class:`~smcjax.moves.Move` to every
particle (one vmap per step, through :func:`smcjax.engine.propagate_stage`). The tuning
parameters and the whitening (see :mod:`smcjax.moves.tuning`) are fixed during the mutation,
and a particle of group ``g`` is whitened with the moments of the other group (cross-fitting),
so each particle follows a π-invariant kernel that does not depend on its own position.
``k`` is either fixed or chosen on the fly: steps continue until the correlation between the
particles' whitened start and current coordinates, and between their squared radii, falls
below ``correlation_target`` (:func:`smcjax.moves.tuning.decorrelation`, looked at after
steps 1-8 and then about every 4th step, see :func:`_is_checkpoint`) or ``max_steps`` is
hit. The stopping rule is cross-fitted as well: group ``g`` stops at the first checkpoint at
which the *other* group's statistic is below the target, and keeps its state from that step
while the other group may run on. A particle's number of steps is then independent of its
own path, so it follows a mixture of ``M^k`` over ``k``: still π-invariant. A stopping rule
that reads the whole population, the particle's own path included, is not: it stops when
the population happens to look decorrelated, which selects the particles' positions. On the
10-d conjugate Gaussian (HMC, N = 1000, a fixed temperature schedule, 400 seeds) that made
``E[Ẑ/Z]`` = 0.984 ± 0.005, against 1.006 ± 0.005 with a fixed number of steps; the bias
fell with N (0.995 ± 0.002 at N = 4000). A group's statistic has a noise floor of about
``sqrt(2 / (pi E))`` for ``E`` effective particles in the group, so the target is raised to
1.5 times that where it is higher (fewer than about 140 effective particles per group).
The groups are family trees (labels follow resampling); should one of them fall below 20
effective particles, the other group reads the whole population's statistic instead.

:func:`run_chains` is the waste-free variant (Dau & Chopin 2022): ``M`` chains of length ``P``
from the resampled starts, every state kept, giving ``N = M P`` particles.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from smcjax.engine import propagate_stage
from smcjax.moves.blackjax_moves import Move
from smcjax.moves.tuning import (
    CrossWhitening,
    cross_whitening,
    decorrelation,
    decorrelation_start,
    decorrelation_to,
    from_white,
    mean_squared_jump,
    to_white,
)

__all__ = ["MutationInfo", "mutate", "run_chains", "initial_labels"]


class MutationInfo(NamedTuple):
    """Population summary of one mutation.

    Attributes:
      acceptance_rate: weighted mean acceptance probability over particles and steps.
      num_steps: MCMC steps per particle (with the adaptive rule, the two groups' stopping
        steps averaged over the particles and rounded; the steps run, and counted in
        ``num_evals``, can be more).
      num_evals: total log-density evaluations (all particles, including ``init``).
      mean_info: the population-mean :class:`~smcjax.moves.MoveInfo` (input of ``move.adapt``).
      jump: final weighted mean squared whitened jump distance from the start.
      correlation: final :func:`smcjax.moves.tuning.decorrelation` statistic.
    """

    acceptance_rate: jax.Array
    num_steps: jax.Array
    num_evals: jax.Array
    mean_info: object
    jump: jax.Array
    correlation: jax.Array


def initial_labels(n: int):
    """Alternating group labels ``0, 1, 0, 1, ...`` (``int32[n]``) for the cross-fitting."""
    return jnp.arange(n, dtype=jnp.int32) % 2


def _population_mean(infos, w):
    def red(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.sum(w.astype(leaf.dtype) * leaf)
        return jnp.sum(leaf, dtype=leaf.dtype)
    return jax.tree.map(red, infos)


class _Frame(NamedTuple):
    u0: jax.Array  # starting positions in the move's coordinates
    aux: object  # per-particle group labels
    make_ld: object  # label -> single-particle log density in the move's coordinates
    back: object  # positions [M, d] -> z [M, d]
    white: object  # positions [M, d] -> globally whitened [M, d] (jump distances)


def _frame(z, log_density, move: Move, wh: CrossWhitening, labels) -> _Frame:
    to_w = jax.vmap(to_white, in_axes=(None, 0, 0))
    if move.whiten:
        def make_ld(label):
            return lambda u: log_density(from_white(wh, u, label))

        def back(u):
            return jax.vmap(from_white, in_axes=(None, 0, 0))(wh, u, labels)

        return _Frame(to_w(wh, z, labels), labels, make_ld, back, lambda u: u)
    return _Frame(z, labels, lambda label: log_density, lambda u: u,
                  lambda x: to_w(wh, x, labels))


def _init_states(frame: _Frame, move: Move):
    return jax.vmap(lambda u, f: move.init(u, frame.make_ld(f)))(frame.u0, frame.aux)


def _transition(frame: _Frame, move: Move):
    def transition(key, particle, t, params):
        state, f = particle
        state, info = move.step(key, state, frame.make_ld(f), params)
        return (state, f), info
    return transition


_SHARED_SALT = 0x5EED


def _with_shared(move: Move, key, params):
    """The step's parameters with the move's shared draw (``Move.shared``), from a key that
    the per-particle keys (``propagate_stage`` splits ``key``) never use."""
    if move.shared is None:
        return params
    return move.shared(jax.random.fold_in(key, _SHARED_SALT), params)


def _is_checkpoint(k):
    """Whether the adaptive rule looks at the statistic after ``k`` steps:
    ``k ≤ 4 or k % ⌊k/4⌋ = 0``, i.e. after steps 1-8, 10, 12, 15, 16 and then every 4th step.
    A mutation therefore runs fewer than ``k/4`` steps (and at most 3) past the first step
    ``k`` at which the statistic is below the target.

    The statistic is a handful of small reductions whose latency, not arithmetic, dominates on
    CPU: checking after every step made 25-step mutations of 2000 particles in d = 20 about
    1.4-1.5x slower than the same 25 steps with a fixed count.
    """
    return (k <= 4) | (k % jnp.maximum(k // 4, 1) == 0)


def mutate(key, z, log_weights, log_density, move: Move, params, *, num_steps=None,
           max_steps: int = 50, correlation_target: float = 0.1,
           wh: CrossWhitening | None = None, labels=None):
    """Move every particle with a π-invariant kernel (see the module docstring).

    Args:
      key: a JAX key.
      z: ``float[N, d]`` flat unconstrained particles.
      log_weights: ``float[N]`` their (normalised) log weights, for the jump distance (and the
        whitening when ``wh`` is None).
      log_density: single-particle ``z -> log π(z)`` (temperature already bound, traced).
      move: the :class:`~smcjax.moves.Move`.
      params: its tuning parameters (traced).
      num_steps: a fixed number of steps, or None for the adaptive rule.
      max_steps: cap of the adaptive rule.
      correlation_target: the adaptive rule stops when the start-to-end
        :func:`smcjax.moves.tuning.decorrelation` is at most this.
      wh, labels: the cross-fitted whitening and the particles' group labels ``int32[N]``
        (default: alternating labels and :func:`smcjax.moves.tuning.cross_whitening` of ``z``).

    Returns:
      ``(z_new, MutationInfo)``.
    """
    n, d = z.shape
    w = jnp.exp(log_weights - jax.scipy.special.logsumexp(log_weights))
    if labels is None:
        labels = initial_labels(n)
    if wh is None:
        wh = cross_whitening(z, log_weights, labels)
    frame = _frame(z, log_density, move, wh, labels)
    particles = (_init_states(frame, move), frame.aux)
    transition = _transition(frame, move)
    info_shape = jax.eval_shape(
        lambda k, p: propagate_stage(k, p, 0, _with_shared(move, k, params), transition)[1],
        key, particles)
    zero_info = jax.tree.map(lambda s: jnp.zeros((), s.dtype), info_shape)
    limit = max_steps if num_steps is None else num_steps
    u0_white = frame.white(frame.u0)
    start = decorrelation_start(u0_white, log_weights)

    def step(k, particles, sums, evals):
        key_k = jax.random.fold_in(key, k)
        particles, infos = propagate_stage(key_k, particles, k,
                                           _with_shared(move, key_k, params), transition)
        sums = jax.tree.map(jnp.add, sums, _population_mean(infos, w))
        evals = evals + jnp.sum(infos.num_evals, dtype=jnp.int32)
        return particles, sums, evals

    if num_steps is not None:
        def body(carry):
            k, particles, sums, evals = carry
            return (k + 1, *step(k, particles, sums, evals))

        init = (jnp.int32(0), particles, zero_info, jnp.int32(n))
        k, particles, sums, evals = lax.while_loop(lambda c: c[0] < limit, body, init)
        u_end = particles[0].position
        steps = k
    else:
        k, u_end, steps, sums, evals = _adaptive_steps(
            step, particles, zero_info, n, u0_white, log_weights, labels, frame, start, limit,
            jnp.asarray(correlation_target, z.dtype))
    corr = decorrelation_to(start, frame.white(u_end))
    jump = mean_squared_jump(u0_white, frame.white(u_end), log_weights)
    kf = jnp.maximum(k, 1)
    mean_info = jax.tree.map(
        lambda s: s / kf.astype(s.dtype) if jnp.issubdtype(s.dtype, jnp.floating) else s, sums)
    info = MutationInfo(mean_info.acceptance_rate, steps, evals, mean_info, jump, corr)
    return frame.back(u_end), info


_MIN_GROUP_ESS = 20.0


def _adaptive_steps(step, particles, zero_info, n, u0_white, log_weights, labels, frame,
                    pooled, limit, target):
    """The cross-fitted stopping rule (module docstring).

    Both groups move until each has a stopping step (or ``limit``); group ``g`` stops at the
    first checkpoint where group ``1 - g``'s statistic is at most ``target`` and keeps its
    positions from that step. ``pooled`` is the whole population's
    :func:`~smcjax.moves.tuning.decorrelation_start`.

    Returns:
      ``(steps run, positions, mean steps kept per particle, info sums, evals)``.
    """
    group = jnp.arange(2, dtype=labels.dtype)
    own = labels[None, :] == group[:, None]  # [2, N]
    starts = decorrelation_start(u0_white, jnp.where(own, log_weights[None], -jnp.inf))
    # a correlation between independent samples of effective size E has |corr| about
    # sqrt(2 / (pi E)): a group's statistic cannot go much below that, so the target is at
    # least 1.5 times it (this binds below about 140 effective particles per group)
    kish = lambda w: 1.0 / jnp.sum(w * w, axis=-1)  # noqa: E731  (normalised weights)
    ess = kish(starts.w)
    ess = jnp.where(jnp.isfinite(ess), ess, 0.0)  # an empty group has NaN weights
    floor = lambda e: 1.5 * jnp.sqrt(2.0 / (jnp.pi * e))  # noqa: E731
    target_g = jnp.maximum(target, floor(ess)).astype(target.dtype)
    # a group too small to read (labels follow family trees, which can die out): the other
    # group falls back to the whole population's statistic (the old, O(1/N)-biased rule)
    target_all = jnp.maximum(target, floor(kish(pooled.w)))
    readable = (ess >= _MIN_GROUP_ESS)[::-1]  # [g]: can group g read group 1 - g
    never = jnp.int32(-1)

    def cond(carry):
        k, _, _, _, stop, _ = carry
        return (k < limit) & jnp.any(stop == never)

    def body(carry):
        k, particles, sums, evals, stop, kept = carry
        particles, sums, evals = step(k, particles, sums, evals)
        done = k + 1
        u = particles[0].position

        def check(stop_kept):
            stop, kept = stop_kept
            wu = frame.white(u)
            corr = decorrelation_to(starts, wu)  # [2]: group 0's, group 1's statistic
            pooled_ok = lax.cond(jnp.all(readable), lambda v: jnp.asarray(False),
                                 lambda v: decorrelation_to(pooled, v) <= target_all, wu)
            ok = jnp.where(readable, corr[::-1] <= target_g[::-1], pooled_ok)  # g reads 1 - g
            now = (stop == never) & ok
            keep = now[labels][:, None]
            return jnp.where(now, done, stop), jnp.where(keep, u, kept)

        stop, kept = lax.cond(_is_checkpoint(done), check, lambda sk: sk, (stop, kept))
        return k + 1, particles, sums, evals, stop, kept

    init = (jnp.int32(0), particles, zero_info, jnp.int32(n), jnp.full((2,), never),
            frame.u0)
    k, particles, sums, evals, stop, kept = lax.while_loop(cond, body, init)
    capped = stop == never
    u_end = jnp.where(capped[labels][:, None], particles[0].position, kept)
    stop = jnp.where(capped, k, stop)
    steps = jnp.round(jnp.mean(stop[labels].astype(jnp.float32))).astype(jnp.int32)
    return k, u_end, steps, sums, evals


def run_chains(key, z_start, wh: CrossWhitening, labels, log_density, move: Move, params,
               chain_length: int):
    """Waste-free mutation: ``M`` chains of length ``P`` from ``z_start`` (``float[M, d]``).

    The chains run fixed π-invariant kernels (cross-fitted whitening ``wh`` from the weighted
    population before resampling, ``labels`` the starts' groups ``[M]``, tuning ``params``);
    all ``P`` states of every chain are kept (the start included) and inherit its group.

    Returns:
      ``(z_all, MutationInfo)`` with ``z_all`` of shape ``[P * M, d]``, state ``p`` of chain
      ``m`` at row ``p * M + m``.
    """
    m, d = z_start.shape
    uniform = jnp.zeros((m,), z_start.dtype) - jnp.log(jnp.asarray(m, z_start.dtype))
    frame = _frame(z_start, log_density, move, wh, labels)
    particles = (_init_states(frame, move), frame.aux)
    transition = _transition(frame, move)
    w = jnp.exp(uniform)

    def body(particles, p):
        key_p = jax.random.fold_in(key, p)
        particles, infos = propagate_stage(key_p, particles, p,
                                           _with_shared(move, key_p, params), transition)
        return particles, (particles[0].position, _population_mean(infos, w),
                           jnp.sum(infos.num_evals, dtype=jnp.int32))

    steps = jnp.arange(chain_length - 1, dtype=jnp.int32)
    _, (positions, means, evals) = lax.scan(body, particles, steps)
    all_pos = jnp.concatenate([frame.u0[None], positions], axis=0)
    all_z = jax.vmap(frame.back)(all_pos).reshape(chain_length * m, d)
    mean_info = jax.tree.map(lambda s: jnp.mean(s, axis=0) if jnp.issubdtype(
        s.dtype, jnp.floating) else jnp.sum(s, axis=0, dtype=s.dtype), means)
    start, end = frame.white(frame.u0), frame.white(positions[-1])
    info = MutationInfo(mean_info.acceptance_rate, jnp.int32(chain_length - 1),
                        jnp.sum(evals, dtype=jnp.int32) + m, mean_info,
                        mean_squared_jump(start, end, uniform),
                        decorrelation(start, end, uniform))
    return all_z, info

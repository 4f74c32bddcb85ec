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
hit. That stopping rule looks at the whole population, so one particle's own path changes it
by O(1/N) only.

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
      num_steps: MCMC steps per particle.
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
        lambda k, p: propagate_stage(k, p, 0, params, transition)[1], key, particles)
    zero_info = jax.tree.map(lambda s: jnp.zeros((), s.dtype), info_shape)
    limit = max_steps if num_steps is None else num_steps
    target = jnp.asarray(correlation_target, z.dtype)
    u0_white = frame.white(frame.u0)
    start = decorrelation_start(u0_white, log_weights)

    def cond(carry):
        k, _, _, _, corr = carry
        go = k < limit
        if num_steps is None:
            go = go & ((k < 1) | (corr > target))
        return go

    def body(carry):
        k, particles, sums, evals, corr = carry
        particles, infos = propagate_stage(jax.random.fold_in(key, k), particles, k, params,
                                           transition)
        sums = jax.tree.map(jnp.add, sums, _population_mean(infos, w))
        evals = evals + jnp.sum(infos.num_evals, dtype=jnp.int32)
        if num_steps is None:  # the stopping rule, at the checkpoints only
            done = k + 1
            corr = lax.cond(_is_checkpoint(done),
                            lambda p: decorrelation_to(start, frame.white(p)),
                            lambda p: corr, particles[0].position)
        return k + 1, particles, sums, evals, corr

    init = (jnp.int32(0), particles, zero_info, jnp.int32(n), jnp.ones((), z.dtype))
    k, particles, sums, evals, _ = lax.while_loop(cond, body, init)
    corr = decorrelation_to(start, frame.white(particles[0].position))
    jump = mean_squared_jump(u0_white, frame.white(particles[0].position), log_weights)
    kf = jnp.maximum(k, 1)
    mean_info = jax.tree.map(
        lambda s: s / kf.astype(s.dtype) if jnp.issubdtype(s.dtype, jnp.floating) else s, sums)
    info = MutationInfo(mean_info.acceptance_rate, k, evals, mean_info, jump, corr)
    return frame.back(particles[0].position), info


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
        particles, infos = propagate_stage(jax.random.fold_in(key, p), particles, p, params,
                                           transition)
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

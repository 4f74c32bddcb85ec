"""Composition of moves, and user moves.

* :func:`compose` runs several moves one after the other as one step. Each part starts from
  the position the previous part left (its own state is rebuilt with its ``init``, one extra
  log-density evaluation), so every part keeps ``π`` invariant and so does the sequence.
  Tuning parameters are the tuple of the parts' parameters, adapted part by part.
* :func:`as_move` wraps a user kernel ``fn(key, state, log_density) -> (state, info)`` with the
  single-particle shape of BlackJAX kernels. Its state is built by ``init(position,
  log_density)`` (default: ``blackjax.mcmc.random_walk.init``, a ``RWState(position,
  logdensity)``). ``position`` is the particle's flat unconstrained vector (the
  ``jax.flatten_util.ravel_pytree`` order of θ, or of ``bijection.inverse(θ)``), not whitened;
  ``info.acceptance_rate`` is reported when present. A user move gets no tuning.

Example::

    import blackjax
    kernel = blackjax.mcmc.random_walk.build_additive_step()
    my_move = lambda key, state, ld: kernel(key, state, ld, blackjax.mcmc.random_walk.normal(0.1))
    smcjax.tempered_smc(key, model, 1000, move=[my_move, "hmc"])
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from blackjax.mcmc import random_walk as bj_rw

from smcjax.moves.blackjax_moves import Move, MoveInfo

__all__ = ["compose", "as_move"]


def _acceptance(info):
    acc = getattr(info, "acceptance_rate", None)
    if acc is None and isinstance(info, dict):
        acc = info.get("acceptance_rate")
    return jnp.nan if acc is None else acc


@functools.lru_cache(maxsize=256)
def as_move(fn: Callable, init: Callable | None = None, name: str = "user") -> Move:
    """Wrap ``fn(key, state, log_density) -> (state, info)`` as an untuned :class:`Move`."""
    init = bj_rw.init if init is None else init

    def step(key, state, log_density, params):
        del params
        new_state, info = fn(key, state, log_density)
        dtype = jnp.result_type(new_state.position)
        return new_state, MoveInfo(jnp.asarray(_acceptance(info), dtype),
                                   jnp.asarray(1, jnp.int32))

    return Move(init=init, step=step, init_params=lambda dim, dtype: (),
                adapt=lambda params, mean_info: params, whiten=False, name=name)


def compose(*moves: Move) -> Move:
    """Run ``moves`` in sequence as one step (see the module docstring)."""
    if not moves:
        raise ValueError("compose needs at least one move")
    for m in moves:
        if not isinstance(m, Move):
            raise ValueError(f"compose takes Move objects, got {m!r} (use smcjax.moves.get_move)")
    if len(moves) == 1:
        return moves[0]
    last = moves[-1]

    def step(key, state, log_density, params):
        keys = jax.random.split(key, len(moves))
        position = state.position
        infos = []
        for k, m, p in zip(keys, moves, params, strict=True):
            s = m.init(position, log_density)
            s, info = m.step(k, s, log_density, p)
            position = s.position
            infos.append(info)
        accs = jnp.stack([i.acceptance_rate for i in infos])
        evals = sum(i.num_evals for i in infos) + len(moves)
        return s, MoveInfo(jnp.nanmean(accs), jnp.asarray(evals, jnp.int32), tuple(infos))

    def init_params(dim, dtype):
        return tuple(m.init_params(dim, dtype) for m in moves)

    def adapt(params, mean_info):
        return tuple(m.adapt(p, i) for m, p, i in zip(moves, params, mean_info.parts,
                                                       strict=True))

    def shared(key, params):
        keys = jax.random.split(key, len(moves))
        return tuple(p if m.shared is None else m.shared(k, p)
                     for k, m, p in zip(keys, moves, params, strict=True))

    has_shared = any(m.shared is not None for m in moves)
    return Move(init=last.init, step=step, init_params=init_params, adapt=adapt,
                whiten=all(m.whiten for m in moves),
                name="+".join(m.name for m in moves), shared=shared if has_shared else None)

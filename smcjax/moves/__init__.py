"""MCMC moves for the static-model samplers (tempered SMC, waste-free SMC, IBIS).

* :class:`Move`, :class:`MoveInfo`: the move type (single-particle kernel plus tuning rule).
* :func:`rwmh`, :func:`mala`, :func:`hmc`, :func:`nuts`: BlackJAX adapters, tuned from the
  particle population (whitening by the weighted covariance, step size towards a target
  acceptance rate).
* :func:`compose`, :func:`as_move`: sequences of moves and user kernels
  ``(key, state, log_density) -> (state, info)``.
* :func:`mutate`, :func:`run_chains`: population mutation with an adaptive number of steps,
  and the waste-free chains.
* :mod:`smcjax.moves.tuning`: weighted moments, whitening, jump distances.
"""

from smcjax.moves import tuning
from smcjax.moves.blackjax_moves import (
    Move,
    MoveInfo,
    adapt_step_size,
    get_move,
    hmc,
    mala,
    nuts,
    rwmh,
)
from smcjax.moves.compose import as_move, compose
from smcjax.moves.mutation import MutationInfo, initial_labels, mutate, run_chains

__all__ = [
    "Move",
    "MoveInfo",
    "MutationInfo",
    "rwmh",
    "mala",
    "hmc",
    "nuts",
    "get_move",
    "adapt_step_size",
    "compose",
    "as_move",
    "mutate",
    "run_chains",
    "initial_labels",
    "tuning",
]

"""A small discrete hidden Markov model: exact answers by the forward algorithm.

Model (``K`` hidden states, ``V`` observation symbols)::

    x_0 ~ Categorical(π)
    x_t | x_{t-1} ~ Categorical(P[x_{t-1}])          t = 1..T-1
    y_t | x_t ~ Categorical(E[x_t])                  t = 0..T-1

As a :class:`~smcjax.StateSpaceModel`, every particle is one ``int32`` scalar state and the
observations are ``int32[T]``.

Exact answers (:func:`forward`, NumPy float64). The forward algorithm propagates the
filtering probabilities ``α_t(j) = p(x_t = j | y_0..y_t)``::

    predicted_t(j) = Σ_i α_{t-1}(i) P[i, j]          (predicted_0 = π)
    c_t = Σ_j predicted_t(j) E[j, y_t] = p(y_t | y_0..y_{t-1})
    α_t(j) = predicted_t(j) E[j, y_t] / c_t
    log p(y_0..y_{T-1}) = Σ_t log c_t

These are sums over all ``K^T`` paths done exactly, the "enumerated" answer for a discrete
state space.

Proposals. The locally optimal proposal ``q(x_t = j | x_{t-1} = i, y_t) ∝ P[i, j] E[j, y_t]``
and look-ahead ``log η_t(i) = log Σ_j P[i, j] E[j, y_t] = log p(y_t | x_{t-1} = i)`` are exact
(finite sums), so :func:`make_model` attaches both: the guided filter's weight is then
``p(y_t | x_{t-1})`` and the auxiliary filter's weight is exactly 1 (fully adapted).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.filters import Proposal, StateSpaceModel

__all__ = ["HMMParams", "HMMExact", "default_params", "simulate", "forward", "make_model"]


class HMMParams(NamedTuple):
    """Initial ``[K]``, transition ``[K, K]`` (rows sum to 1) and emission ``[K, V]``."""

    initial: np.ndarray
    transition: np.ndarray
    emission: np.ndarray


class HMMExact(NamedTuple):
    """Exact forward-algorithm results (float64)."""

    log_likelihood: float
    filtering_probs: np.ndarray  # [T, K]
    log_likelihood_increments: np.ndarray  # [T]

    @property
    def filtering_mean(self) -> np.ndarray:
        """``E[x_t | y_0..y_t]`` (states numbered 0..K-1), ``[T]``."""
        return self.filtering_probs @ np.arange(self.filtering_probs.shape[1])


def default_params() -> HMMParams:
    """Three sticky states and four symbols, each state favouring different symbols."""
    initial = np.array([0.5, 0.3, 0.2])
    transition = np.array([[0.80, 0.15, 0.05],
                           [0.10, 0.75, 0.15],
                           [0.10, 0.20, 0.70]])
    emission = np.array([[0.60, 0.25, 0.10, 0.05],
                         [0.10, 0.50, 0.30, 0.10],
                         [0.05, 0.10, 0.25, 0.60]])
    return HMMParams(initial, transition, emission)


def _check(p: HMMParams):
    pi, tr, em = (np.asarray(a, np.float64) for a in p)
    k = pi.shape[0]
    if pi.ndim != 1 or tr.shape != (k, k) or em.ndim != 2 or em.shape[0] != k:
        raise ValueError(f"need initial [K], transition [K, K], emission [K, V]; got "
                         f"{pi.shape}, {tr.shape}, {em.shape}")
    for name, a in (("initial", pi), ("transition", tr), ("emission", em)):
        if np.any(a < 0) or not np.allclose(a.sum(-1), 1.0, atol=1e-10):
            raise ValueError(f"{name} probabilities must be non-negative and sum to 1")
    if np.any(tr == 0) or np.any(em == 0):
        raise ValueError("this model needs strictly positive transition and emission "
                         "probabilities (no -inf log-probabilities)")
    return pi, tr, em


def simulate(seed: int, p: HMMParams, num_steps: int):
    """Draw ``(xs, ys)``, both ``int32[T]``, with NumPy seed ``seed``."""
    pi, tr, em = _check(p)
    rng = np.random.default_rng(seed)
    xs = np.empty(num_steps, np.int32)
    ys = np.empty(num_steps, np.int32)
    x = rng.choice(len(pi), p=pi)
    for t in range(num_steps):
        if t > 0:
            x = rng.choice(len(pi), p=tr[x])
        xs[t] = x
        ys[t] = rng.choice(em.shape[1], p=em[x])
    return xs, ys


def forward(p: HMMParams, ys) -> HMMExact:
    """Exact log-likelihood and filtering probabilities (forward algorithm, float64)."""
    pi, tr, em = _check(p)
    ys = np.asarray(ys)
    if ys.ndim != 1 or np.any(ys < 0) or np.any(ys >= em.shape[1]):
        raise ValueError(f"observations must be ints in [0, {em.shape[1]}), got {ys}")
    alpha, probs, incs = None, [], []
    for t, y in enumerate(ys):
        pred = pi if t == 0 else alpha @ tr
        joint = pred * em[:, y]
        c = joint.sum()
        alpha = joint / c
        probs.append(alpha)
        incs.append(np.log(c))
    incs = np.array(incs)
    return HMMExact(float(incs.sum()), np.array(probs), incs)


def make_model(p: HMMParams | None = None, *, dtype=jnp.float32) -> StateSpaceModel:
    """The HMM as a :class:`~smcjax.StateSpaceModel` with int32 particles.

    The optimal proposal (including ``initial_sample`` at t = 0) and the exact look-ahead
    are attached, so ``method="guided"`` and ``"auxiliary"`` work.
    """
    p = default_params() if p is None else p
    pi, tr, em = _check(p)
    log_pi, log_tr, log_em = (jnp.asarray(np.log(a), dtype) for a in (pi, tr, em))

    def initial_sample(key):
        return jax.random.categorical(key, log_pi).astype(jnp.int32)

    def transition_sample(key, x_prev, t):
        return jax.random.categorical(key, log_tr[x_prev]).astype(jnp.int32)

    def transition_log_prob(x_prev, x, t):
        return log_tr[x_prev, x]

    def observation_log_prob(x, y, t):
        return log_em[x, y]

    def initial_log_prob(x):
        return log_pi[x]

    def _joint(log_pred, y):  # log p(x_t = j, y_t | ...) over j
        return log_pred + log_em[:, y]

    def proposal_sample(key, x_prev, y, t):
        return jax.random.categorical(key, _joint(log_tr[x_prev], y)).astype(jnp.int32)

    def proposal_log_prob(x_prev, x, y, t):
        j = _joint(log_tr[x_prev], y)
        return j[x] - jax.nn.logsumexp(j)

    def proposal_initial_sample(key, y0):
        return jax.random.categorical(key, _joint(log_pi, y0)).astype(jnp.int32)

    def proposal_initial_log_prob(x, y0):
        j = _joint(log_pi, y0)
        return j[x] - jax.nn.logsumexp(j)

    def look_ahead(x_prev, y, t):
        return jax.nn.logsumexp(_joint(log_tr[x_prev], y))

    proposal = Proposal(proposal_sample, proposal_log_prob, proposal_initial_sample,
                        proposal_initial_log_prob)
    return StateSpaceModel(initial_sample, transition_sample, transition_log_prob,
                           observation_log_prob, proposal=proposal,
                           initial_log_prob=initial_log_prob, auxiliary_log_weight=look_ahead)

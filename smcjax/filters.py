"""State-space models and particle filters (bootstrap, guided, auxiliary) as Feynman-Kac models.

A state-space model has a hidden Markov chain ``x_0 ~ p0``, ``x_t ~ f_t(. | x_{t-1})`` and
observations ``y_t ~ g_t(. | x_t)`` for ``t = 0..T-1``. The filters below are Feynman-Kac
models on the shared engine (:mod:`smcjax.engine`):

=========== ============================ =====================================================
method      M_t                          G_t
=========== ============================ =====================================================
bootstrap   f_t(x_t | x_{t-1})           g_t(y_t | x_t)
guided      q_t(x_t | x_{t-1}, y_t)      f_t(x_t | x_{t-1}) g_t(y_t | x_t) / q_t(x_t | x_{t-1}, y_t)
auxiliary   q_t, or f_t without q        as above, divided by eta_t(x_{t-1}); resampling uses
                                         W_{t-1} eta_t(x_{t-1}) (eta from the model's
                                         ``auxiliary_log_weight``)
=========== ============================ =====================================================

The product of the per-step evidence increments estimates the likelihood
``p(y_0, ..., y_{T-1})``; the estimate of ``Z`` (not of ``log Z``) is unbiased.

References: N. Gordon, D. Salmond, A. Smith (1993) (bootstrap); M. Pitt and N. Shephard (1999)
(auxiliary); N. Chopin and O. Papaspiliopoulos, *An Introduction to SMC* (2020), ch. 10.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax import _checks, progress
from smcjax._compile import jit
from smcjax.engine import (
    FeynmanKac,
    SMCState,
    check_num_particles,
    particle_step_work,
    run,
    weighted_mean_and_var,
)
from smcjax.resampling import check_ess_threshold, get_scheme

__all__ = ["Proposal", "StateSpaceModel", "FilterResult", "particle_filter", "METHODS"]

METHODS = ("bootstrap", "guided", "auxiliary")


class Proposal(NamedTuple):
    """A proposal ``q_t(x_t | x_{t-1}, y_t)`` for the guided and auxiliary filters.

    Attributes:
      sample: ``(key, x_prev, y, t) -> x``.
      log_prob: ``(x_prev, x, y, t) -> scalar``.
      initial_sample: optional ``(key, y0) -> x0`` used at t = 0 (needs the model's
        ``initial_log_prob``); without it step 0 samples from ``p0``.
      initial_log_prob: ``(x0, y0) -> scalar``, required with ``initial_sample``.
    """

    sample: Callable
    log_prob: Callable
    initial_sample: Callable | None = None
    initial_log_prob: Callable | None = None


class StateSpaceModel(NamedTuple):
    """A state-space model given by single-particle callables.

    Attributes:
      initial_sample: ``key -> x0``; ``x`` may be any pytree.
      transition_sample: ``(key, x_prev, t) -> x_t``.
      transition_log_prob: ``(x_prev, x, t) -> scalar`` (guided and auxiliary filters).
      observation_log_prob: ``(x, y, t) -> scalar``; ``y`` is the slice ``t`` of the
        observations pytree.
      proposal: optional :class:`Proposal` for the guided (and auxiliary) filter.
      initial_log_prob: optional ``x0 -> scalar``; needed with ``proposal.initial_sample``.
      auxiliary_log_weight: look-ahead ``log eta_t = (x_prev, y_t, t) -> scalar``, ideally close
        to ``log p(y_t | x_{t-1})``; required by the auxiliary filter. It must be finite
        wherever ``p(y_t | x_{t-1}) > 0``, and its tails should not be lighter than the
        predictive's, or the weights ``G / eta`` become heavy-tailed.
    """

    initial_sample: Callable
    transition_sample: Callable
    transition_log_prob: Callable
    observation_log_prob: Callable
    proposal: Proposal | None = None
    initial_log_prob: Callable | None = None
    auxiliary_log_weight: Callable | None = None


class FilterResult(NamedTuple):
    """Output of :func:`particle_filter` (arrays have leading time axis T where stated).

    Attributes:
      log_evidence: ``log p^(y_0..y_{T-1})``; ``-inf`` if every weight became zero.
      filtering_mean: pytree like one particle, leaves ``[T, ...]``: ``E[x_t | y_0..y_t]``
        (None with ``moments=False``).
      filtering_var: element-wise filtering variances, same shapes (None with
        ``moments=False``).
      ess: ``[T]`` effective sample size after each step's reweighting.
      resampled: ``[T]`` bool.
      log_evidence_increments: ``[T]``.
      num_invalid: ``[T]`` particles with non-finite log weight increments at each step.
      collapsed: ``[T]`` bool, whether all weights were zero after the step.
      final_state: the :class:`~smcjax.engine.SMCState` after the last step.
      reduced: stacked outputs of a user ``reduce_fn`` (None unless one was given).
    """

    log_evidence: jax.Array
    filtering_mean: Any
    filtering_var: Any
    ess: jax.Array
    resampled: jax.Array
    log_evidence_increments: jax.Array
    num_invalid: jax.Array
    collapsed: jax.Array
    final_state: SMCState
    reduced: Any = None

    @property
    def status(self) -> str:
        """``"ok"`` or a sentence saying at which step every weight became zero."""
        collapsed = np.asarray(self.collapsed)
        if not collapsed.any():
            return "ok"
        t = int(np.argmax(collapsed))
        return (
            f"all weights zero at step {t}: every particle's log potential was -inf or not "
            f"finite ({int(np.asarray(self.num_invalid)[t])} non-finite); log_evidence is -inf"
        )


def _slice(tree, t):
    return jax.tree.map(lambda a: a[t], tree)


def _fk_model(model: StateSpaceModel, method: str, observations) -> FeynmanKac:
    obs = lambda t: _slice(observations, t)  # noqa: E731
    m = model

    if method == "bootstrap" or (method == "auxiliary" and m.proposal is None):
        def transition(key, x_prev, t, params):
            return m.transition_sample(key, x_prev, t)

        def log_potential(x_prev, x, t, params):
            return m.observation_log_prob(x, obs(t), t)
    else:
        q = m.proposal

        def transition(key, x_prev, t, params):
            return q.sample(key, x_prev, obs(t), t)

        def log_potential(x_prev, x, t, params):
            y = obs(t)
            return (m.transition_log_prob(x_prev, x, t) + m.observation_log_prob(x, y, t)
                    - q.log_prob(x_prev, x, y, t))

    initial = m.initial_sample

    def initial_log_potential(x, params):
        return m.observation_log_prob(x, obs(0), 0)

    q = m.proposal
    if method in ("guided", "auxiliary") and q is not None and q.initial_sample is not None:
        def initial(key):
            return q.initial_sample(key, obs(0))

        def initial_log_potential(x, params):  # noqa: F811 -- the guided version
            y0 = obs(0)
            return m.initial_log_prob(x) + m.observation_log_prob(x, y0, 0) - q.initial_log_prob(x, y0)

    lookahead = None
    if method == "auxiliary":
        def lookahead(x_prev, t, params):
            return m.auxiliary_log_weight(x_prev, obs(t), t)

    return FeynmanKac(initial, transition, log_potential, initial_log_potential, lookahead)


_CHECKED: dict = {}


def _check_model_cached(model: StateSpaceModel, method: str, observations) -> float | None:
    """:func:`_check_model`, skipped when the same (hashable) model, method and observation
    shapes passed before: the shape checks trace every model function, which cost about as
    much as a whole filter at N = 10^3 when a run is repeated. Returns one particle's step
    work (:func:`_particle_work`), or None for a model that cannot be cached."""
    leaves, treedef = jax.tree.flatten(observations)
    sig = (model, method, treedef, tuple((x.shape, x.dtype) for x in leaves))
    try:
        if sig in _CHECKED:
            return _CHECKED[sig]
    except TypeError:  # unhashable model functions (e.g. a functools.partial of an array)
        _check_model(model, method, observations)
        return None  # not estimated on every call: XLA's own compilation choice
    _check_model(model, method, observations)
    if len(_CHECKED) >= 256:
        _CHECKED.clear()
    work = _CHECKED[sig] = _particle_work(model, method, observations)
    return work


def _particle_work(model: StateSpaceModel, method: str, observations) -> float | None:
    """:func:`smcjax.engine.particle_step_work` of the filter's Feynman-Kac model, with the
    observations as shapes (they enter the model through ``params``)."""
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), observations)
    fk = lambda obs: _fk_model(model, method, obs)  # noqa: E731
    return particle_step_work(FeynmanKac(
        initial_sample=model.initial_sample,
        transition_sample=lambda key, x, t, obs: fk(obs).transition_sample(key, x, t, None),
        log_potential=lambda x_prev, x, t, obs: fk(obs).log_potential(x_prev, x, t, None),
        log_lookahead=(lambda x_prev, t, obs: fk(obs).log_lookahead(x_prev, t, None))
        if method == "auxiliary" else None,  # _fk_model has a look-ahead exactly then
    ), shapes)


def _check_model(model: StateSpaceModel, method: str, observations) -> None:
    if not isinstance(model, StateSpaceModel):
        raise ValueError(f"model must be a smcjax.StateSpaceModel, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "guided" and model.proposal is None:
        raise ValueError("method='guided' needs model.proposal (a smcjax.Proposal)")
    if method == "auxiliary" and model.auxiliary_log_weight is None:
        raise ValueError(
            "method='auxiliary' needs model.auxiliary_log_weight, the look-ahead "
            "log eta_t(x_prev, y_t, t) ~ log p(y_t | x_prev)"
        )
    q = model.proposal
    if q is not None and q.initial_sample is not None and method != "bootstrap":
        if q.initial_log_prob is None or model.initial_log_prob is None:
            raise ValueError(
                "proposal.initial_sample needs proposal.initial_log_prob and model.initial_log_prob"
            )
    key = jax.random.key(0)
    t = jnp.int32(1)
    y = _slice(observations, 0)
    x = _checks.shape_struct(model.initial_sample, key, what="initial_sample")
    x1 = _checks.shape_struct(model.transition_sample, key, x, t, what="transition_sample")
    _checks.same_structure(x, x1, what="transition_sample")
    g = _checks.shape_struct(model.observation_log_prob, x, y, t, what="observation_log_prob")
    _checks.scalar(g, what="observation_log_prob")
    if method != "bootstrap" and (q is not None):
        f = _checks.shape_struct(model.transition_log_prob, x, x, t, what="transition_log_prob")
        _checks.scalar(f, what="transition_log_prob")
        xq = _checks.shape_struct(q.sample, key, x, y, t, what="proposal.sample")
        _checks.same_structure(x, xq, what="proposal.sample")
        _checks.scalar(_checks.shape_struct(q.log_prob, x, x, y, t, what="proposal.log_prob"),
                       what="proposal.log_prob")
    if method == "auxiliary" and model.auxiliary_log_weight is not None:
        a = _checks.shape_struct(model.auxiliary_log_weight, x, y, t, what="auxiliary_log_weight")
        _checks.scalar(a, what="auxiliary_log_weight")


@partial(jit, static_argnames=("model", "num_particles", "method", "resampling",
                                   "ess_threshold", "reduce_fn", "has_callback", "moments"))
def _filter(key, observations, callback_id, *, model, num_particles, method, resampling,
            ess_threshold, reduce_fn, has_callback, moments=True):
    num_steps = _checks.leading_axis(observations, what="observations")
    fk = _fk_model(model, method, observations)

    def reduce_all(particles, log_weights, t):
        out = {}
        if moments:
            out["moments"] = weighted_mean_and_var(particles, log_weights)
        if reduce_fn is not None:
            out["user"] = reduce_fn(particles, log_weights, t)
        return out

    state, infos, reduced = run(key, fk, num_particles, num_steps, resampling=resampling,
                                ess_threshold=ess_threshold,
                                reduce_fn=reduce_all if moments or reduce_fn else None,
                                callback=progress.dispatch if has_callback else None,
                                callback_args=(callback_id,))
    reduced = {} if reduced is None else reduced
    return FilterResult(
        log_evidence=state.log_evidence,
        filtering_mean=reduced["moments"]["mean"] if moments else None,
        filtering_var=reduced["moments"]["var"] if moments else None,
        ess=infos.ess,
        resampled=infos.resampled,
        log_evidence_increments=infos.log_evidence_increment,
        num_invalid=infos.num_invalid,
        collapsed=infos.collapsed,
        final_state=state,
        reduced=reduced.get("user"),
    )


def particle_filter(key, model: StateSpaceModel, observations, num_particles: int, *,
                    method: str = "bootstrap", resampling="systematic",
                    ess_threshold: float = 0.5, num_steps: int | None = None,
                    reduce_fn: Callable | None = None,
                    callback: Callable | None = None, moments: bool = True) -> FilterResult:
    """Run a particle filter over all observations in one compiled loop.

    Args:
      key: a JAX key; the same key gives bitwise-identical results.
      model: a :class:`StateSpaceModel`.
      observations: pytree whose leaves share a leading time axis T.
      num_particles: N > 0.
      method: ``"bootstrap"``, ``"guided"`` (needs ``model.proposal``) or ``"auxiliary"``.
      resampling: a name in :data:`smcjax.resampling.SCHEMES` or a scheme function.
      ess_threshold: resample when ``ESS < ess_threshold * N``; 1 resamples every step.
      num_steps: optional check that the observations have exactly this many steps.
      reduce_fn: optional ``(particles, log_weights, t) -> pytree`` evaluated at every step;
        its stacked output is ``FilterResult.reduced``.
      callback: optional host function ``callback(step, ess, log_evidence)`` called after each
        step from inside the compiled loop, e.g. ``smcjax.progress.ProgressBar(T)``; None
        (the default) adds nothing to the compiled program.
      moments: compute the filtering mean and variance at every step (default). With False
        they are None and the run costs less (about 10 % at N = 10^3): for uses that need only
        the likelihood estimate, such as particle marginal Metropolis-Hastings.

    Returns:
      A :class:`FilterResult`.

    Raises:
      ValueError: on bad input (N <= 0, threshold outside [0, 1], unknown method or scheme,
        observations whose leaves disagree on T or whose T differs from ``num_steps``, or model
        functions returning wrongly shaped values), before anything is compiled.

    Example:
      >>> import jax
      >>> from smcjax.models import linear_gaussian as lg
      >>> params = lg.random_params(jax.random.key(0), dim_x=1, dim_y=1)
      >>> _, ys = lg.simulate(jax.random.key(1), params, 20)
      >>> res = particle_filter(jax.random.key(2), lg.make_model(params), ys, 1000)
      >>> bool(abs(res.log_evidence - lg.kalman_filter(params, ys).log_likelihood) < 1.0)
      True
    """
    num_particles = check_num_particles(num_particles)
    ess_threshold = check_ess_threshold(ess_threshold)
    get_scheme(resampling)
    t_obs = _checks.leading_axis(observations, what="observations")
    if num_steps is not None and num_steps != t_obs:
        raise ValueError(
            f"observations have {t_obs} steps on their leading axis but num_steps={num_steps}"
        )
    # Leaves that are already JAX arrays pass untouched, and the callback id goes in as a
    # Python int: each eager conversion is a dispatch of its own (~0.3 ms on CPU, which at
    # N = 10^3 and T = 100 was a fifth of the whole run).
    observations = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else jnp.asarray(x),
                                observations)
    work = _check_model_cached(model, method, observations)
    cid = 0 if callback is None else progress.register(callback)
    run_filter = _filter.sized(None if work is None else num_particles * work)
    return run_filter(key, observations, cid, model=model, num_particles=num_particles,
                      method=method, resampling=resampling, ess_threshold=ess_threshold,
                      reduce_fn=reduce_fn, has_callback=callback is not None,
                      moments=bool(moments))

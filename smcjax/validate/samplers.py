"""Samplers the validation runner knows: the :class:`Sampler` spec and the built-in adapters.

A :class:`Sampler` is a name, the problem kinds it applies to, and
``run(key, instance, num_particles) -> SamplerOutput`` for one run, traced under ``jax.jit``
(unless ``jit=False``) so that the seeds reuse one compilation. :data:`SAMPLERS` holds the
built-in ones: the three particle filters, adaptive tempered SMC with each MCMC move,
waste-free SMC and data tempering, and (where :mod:`smcjax.diffusion` imports) the diffusion
samplers ``"fkc"``, ``"fkc_control"`` and ``"twisted"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp

from smcjax.validate.catalogue import Instance

__all__ = ["SamplerOutput", "Sampler", "SAMPLERS"]


class SamplerOutput(NamedTuple):
    """What a sampler returns for one run (JAX or NumPy values).

    Attributes:
      log_evidence: scalar ``log Ẑ`` (None if the sampler has none).
      particles: pytree, leading axis N: posterior draws θ (bayes) or the final-time states
        (ssm), in the problem's constrained space.
      log_weights: ``[N]`` log weights (any normalisation).
      filtering: ssm: ``[T, S]`` values of ``instance.summary`` at every step.
      ok: bool scalar, False when the run collapsed or did not reach its target.
    """

    log_evidence: Any
    particles: Any
    log_weights: Any
    filtering: Any = None
    ok: Any = True


class Sampler(NamedTuple):
    """A sampler the runner can validate.

    Attributes:
      name: unique name.
      kinds: problem kinds it applies to (``"bayes"``, ``"ssm"``, ``"diffusion"``).
      run: ``(key, instance, num_particles) -> SamplerOutput``.
      description: one line.
      applies: optional ``instance -> bool`` for finer applicability (e.g. needs a proposal).
      jit: trace ``run`` under ``jax.jit`` (one compilation per problem, reused over seeds).
    """

    name: str
    kinds: tuple
    run: Callable
    description: str = ""
    applies: Callable | None = None
    jit: bool = True


def _pf(method: str) -> Callable:
    def run(key, inst: Instance, n: int) -> SamplerOutput:
        from smcjax.filters import particle_filter

        r = particle_filter(key, inst.model, inst.observations, n, method=method,
                            reduce_fn=inst.summary)
        fs = r.final_state
        return SamplerOutput(r.log_evidence, fs.particles, fs.log_weights, r.reduced,
                             ~jnp.any(r.collapsed))
    return run


def _static(data_tempering: bool = False, **options) -> Callable:
    def run(key, inst: Instance, n: int) -> SamplerOutput:
        from smcjax.data_tempering import data_tempering_smc
        from smcjax.tempering import tempered_smc

        sampler = data_tempering_smc if data_tempering else tempered_smc
        r = sampler(key, inst.model, n, **options)
        ok = (r.temperatures[r.num_steps] == 1.0) & ~r.collapsed  # reached the posterior
        return SamplerOutput(r.log_evidence, r.particles, r.log_weights, None, ok)
    return run


def _has(attr):
    return lambda inst: getattr(inst.model, attr, None) is not None


_BUILTIN = [
    Sampler("bootstrap", ("ssm",), _pf("bootstrap"), "bootstrap particle filter"),
    Sampler("guided", ("ssm",), _pf("guided"), "guided particle filter (model's proposal)",
            _has("proposal")),
    Sampler("auxiliary", ("ssm",), _pf("auxiliary"),
            "auxiliary particle filter (model's look-ahead)", _has("auxiliary_log_weight")),
    Sampler("tempered_rwmh", ("bayes",), _static(move="rwmh"),
            "adaptive tempered SMC, random-walk Metropolis moves"),
    Sampler("tempered_mala", ("bayes",), _static(move="mala"), "adaptive tempered SMC, MALA"),
    Sampler("tempered_hmc", ("bayes",), _static(move="hmc"), "adaptive tempered SMC, HMC"),
    Sampler("tempered_nuts", ("bayes",), _static(move="nuts"), "adaptive tempered SMC, NUTS"),
    Sampler("waste_free", ("bayes",), _static(move="rwmh", waste_free=True),
            "waste-free tempered SMC (Dau & Chopin 2022), RWMH chains"),
    Sampler("data_tempering", ("bayes",), _static(data_tempering=True, move="rwmh"),
            "data tempering / IBIS, one datum per step", _has("log_likelihood_per_datum")),
]

def _diffusion_samplers() -> list[Sampler]:
    try:  # registered only where smcjax.diffusion imports (it needs SciPy at present)
        from smcjax.validate import _diffusion
    except ImportError:
        return []

    def adapt(fn):
        def run(key, inst, n):
            samples, log_weights, log_evidence, ok = fn(key, inst, n)
            return SamplerOutput(log_evidence, samples, log_weights, None, ok)
        return run

    # not under an outer jit: these samplers check their schedule with concrete values and
    # compile themselves once per target (the seeds then reuse that compilation)
    return [Sampler(name, ("diffusion",), adapt(fn), doc, applies, jit=False)
            for name, (fn, doc, applies) in _diffusion.SAMPLER_RUNS.items()]


SAMPLERS: dict[str, Sampler] = {s.name: s for s in _BUILTIN + _diffusion_samplers()}

"""Export to ArviZ ``InferenceData`` (ArviZ is an optional extra: ``pip install smcjax[arviz]``).

SMC returns a *weighted* sample. :func:`to_arviz` either resamples it to an unweighted one
(``resample=True``, systematic resampling, the default; ArviZ's summaries then apply directly)
or keeps every particle and stores the normalised log weights as the ``log_weights`` variable of
the ``sample_stats`` group, so that weighted statistics can be formed downstream. Particles go
into the ``posterior`` group as one chain of N draws; per-step diagnostics (ESS, temperatures,
acceptance) go into ``sample_stats`` attributes.
"""

from __future__ import annotations

import jax
import numpy as np

from smcjax.resampling import systematic

__all__ = ["to_arviz"]


def _per_step(result) -> dict:
    attrs = {}
    num = getattr(result, "num_steps", None)
    k = None if num is None else int(np.max(np.asarray(num))) + 1
    for name in ("ess", "temperatures", "acceptance_rate", "log_evidence_increments"):
        if hasattr(result, name):
            v = np.asarray(getattr(result, name), np.float64)
            attrs[name] = (v[:k] if k is not None else v).tolist()
    attrs["log_evidence"] = float(np.asarray(result.log_evidence))
    if hasattr(result, "log_evidence_se"):
        attrs["log_evidence_se"] = float(np.asarray(result.log_evidence_se))
    return attrs


def to_arviz(result, *, resample: bool = True, key=None):
    """Convert a sampler result to ``arviz.InferenceData``.

    Args:
      result: a result with ``particles`` (or ``final_state.particles``) and ``log_weights``:
        :class:`~smcjax.TemperedResult` or :class:`~smcjax.FilterResult` (final filtering
        particles).
      resample: resample to an unweighted sample (True) or keep the weights (False).
      key: JAX key for the resampling (default ``jax.random.key(0)``).

    Returns:
      ``InferenceData`` with a ``posterior`` group (1 chain, N draws) and a ``sample_stats``
      group (``log_weights`` when not resampled).
    """
    try:
        import arviz as az
    except ImportError as err:
        raise ImportError("to_arviz needs ArviZ: pip install 'smcjax[arviz]'") from err
    if hasattr(result, "particles"):
        particles, log_weights = result.particles, result.log_weights
    else:
        particles, log_weights = result.final_state.particles, result.final_state.log_weights
    if resample:
        key = jax.random.key(0) if key is None else key
        idx = np.asarray(systematic(key, log_weights))
        particles = jax.tree.map(lambda a: np.asarray(a)[idx], particles)
    posterior = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(particles)[0]:
        name = jax.tree_util.keystr(path).strip(".[]'\"") or "x"
        posterior[name] = np.asarray(leaf)[None]
    stats = {} if resample else {"log_weights": np.asarray(log_weights)[None]}
    idata = az.from_dict(posterior=posterior, sample_stats=stats or None)
    idata.posterior.attrs.update({"smcjax_weighted": not resample, **_per_step(result)})
    return idata

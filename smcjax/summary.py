"""Weighted posterior summaries of a particle population, per flattened parameter name.

For a weighted sample ``(x_i, W_i)`` of a pytree ``x``, every scalar coordinate gets its weighted
mean, variance and weighted quantiles (the inverse of the weighted empirical CDF at 5 %, 50 %
and 95 %). Names follow the pytree path, e.g. ``theta``, ``beta[2]``, ``['tau']``.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["flatten_particles", "weighted_quantile", "posterior_summary"]


def flatten_particles(particles) -> dict[str, np.ndarray]:
    """``{name: float64[N]}`` for every scalar coordinate of a pytree with leading axis N."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(particles)[0]:
        arr = np.asarray(leaf, np.float64)
        base = jax.tree_util.keystr(path) or "x"
        base = base.lstrip(".")
        n = arr.shape[0]
        flat = arr.reshape(n, -1)
        if arr.ndim == 1:
            out[base] = flat[:, 0]
            continue
        for j, idx in enumerate(np.ndindex(*arr.shape[1:])):
            out[f"{base}[{','.join(map(str, idx))}]"] = flat[:, j]
    return out


def weighted_quantile(x, w, qs):
    """Quantiles of the weighted empirical distribution (``w`` normalised or not)."""
    order = np.argsort(x)
    x, w = np.asarray(x)[order], np.asarray(w)[order]
    cdf = np.cumsum(w)
    cdf = cdf / cdf[-1]
    idx = np.searchsorted(cdf, np.asarray(qs), side="left")
    return x[np.clip(idx, 0, len(x) - 1)]


def posterior_summary(particles, log_weights) -> dict[str, dict[str, float]]:
    """``{name: {"mean", "var", "q05", "q50", "q95"}}`` of a weighted population."""
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    w = np.exp(lw - np.max(lw))
    w = w / w.sum()
    out = {}
    for name, x in flatten_particles(particles).items():
        mean = float(w @ x)
        q05, q50, q95 = weighted_quantile(x, w, [0.05, 0.5, 0.95])
        out[name] = {"mean": mean, "var": float(w @ (x - mean) ** 2),
                     "q05": float(q05), "q50": float(q50), "q95": float(q95)}
    return out

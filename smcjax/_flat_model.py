"""A :class:`~smcjax.BayesianModel` seen on flat unconstrained vectors (shared by the samplers).

For a model with parameter pytree θ and optional bijection ``θ = f(z)``, the static-model
samplers keep every particle as one flat vector ``z ∈ R^d`` (``jax.flatten_util.ravel_pytree``
order of the unconstrained pytree) and use

* ``log_prior_z(z)      = log p(f(z)) + log |det ∂f/∂z|``   (``f = id`` without a bijection);
* ``log_likelihood_z(z) = log L(f(z))``.

The evidence ``∫ p(θ) L(θ) dθ = ∫ p_z(z) L(f(z)) dz`` is unchanged by the change of variables.

:func:`flatten_model` also checks the model once, at trace time, and raises a ``ValueError``
naming the culprit when ``sample_prior`` and ``log_prior`` disagree on the pytree structure,
when a log density is not a scalar, or when a parameter leaf is not floating point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from smcjax import _checks
from smcjax.bayes import BayesianModel

__all__ = ["FlatModel", "flatten_model"]


class FlatModel(NamedTuple):
    """Single-particle functions of a flat unconstrained vector ``z`` (float[d])."""

    sample: Callable  # key -> z
    log_prior: Callable  # z -> scalar (includes the log-Jacobian)
    log_likelihood: Callable  # z -> scalar
    log_likelihood_datum: Callable | None  # (z, i) -> scalar
    to_theta: Callable  # z -> θ pytree (constrained)
    dim: int
    dtype: jnp.dtype


def _check_scalar(fn, arg, what):
    _checks.scalar(_checks.shape_struct(fn, *arg, what=what), what=what)


def flatten_model(model: BayesianModel, *, need_per_datum: bool = False) -> FlatModel:
    """Validate ``model`` and return its flat unconstrained view (see the module docstring)."""
    if not isinstance(model, BayesianModel):
        raise ValueError(f"model must be a smcjax.BayesianModel, got {type(model).__name__}")
    key = jax.random.key(0)
    theta = _checks.shape_struct(model.sample_prior, key, what="sample_prior")
    leaves = jax.tree.leaves(theta)
    if not leaves:
        raise ValueError("sample_prior returned an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(
                f"every parameter leaf must be floating point for the MCMC moves; sample_prior "
                f"returned {_checks.describe(theta)}"
            )
    dtype = jnp.result_type(*[leaf.dtype for leaf in leaves])
    what = f"log_prior (on a draw of sample_prior, {_checks.describe(theta)})"
    _check_scalar(model.log_prior, (theta,), what)
    what = f"log_likelihood (on a draw of sample_prior, {_checks.describe(theta)})"
    _check_scalar(model.log_likelihood, (theta,), what)

    bij = model.bijection
    if bij is None:
        z_tree = theta
    else:
        z_tree = _checks.shape_struct(bij.inverse, theta, what="bijection.inverse")
        _checks.same_structure(theta, _checks.shape_struct(bij.forward, z_tree,
                                                           what="bijection.forward"),
                               what="bijection.forward")
        _check_scalar(bij.log_det_jacobian, (z_tree,), "bijection.log_det_jacobian")
    z0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), z_tree)
    flat0, unravel = ravel_pytree(z0)
    dim = int(flat0.shape[0])

    if need_per_datum:
        if model.log_likelihood_per_datum is None or model.num_data is None:
            raise ValueError("data tempering needs model.log_likelihood_per_datum and "
                             "model.num_data")
        if isinstance(model.num_data, bool) or not isinstance(model.num_data, int) \
                or model.num_data <= 0:
            raise ValueError(f"model.num_data must be a positive int, got {model.num_data!r}")
        _check_scalar(model.log_likelihood_per_datum, (theta, jnp.int32(0)),
                      "log_likelihood_per_datum")

    def to_theta(z):
        tree = unravel(z)
        return tree if bij is None else bij.forward(tree)

    def to_z(th):
        return ravel_pytree(th if bij is None else bij.inverse(th))[0].astype(dtype)

    def sample(k):
        return to_z(model.sample_prior(k))

    def log_prior(z):
        lp = model.log_prior(to_theta(z))
        if bij is not None:
            lp = lp + bij.log_det_jacobian(unravel(z))
        return jnp.reshape(lp, ()).astype(dtype)

    def log_likelihood(z):
        return jnp.reshape(model.log_likelihood(to_theta(z)), ()).astype(dtype)

    datum = None
    if model.log_likelihood_per_datum is not None:
        def datum(z, i):
            return jnp.reshape(model.log_likelihood_per_datum(to_theta(z), i), ()).astype(dtype)

    return FlatModel(sample, log_prior, log_likelihood, datum, to_theta, dim, dtype)

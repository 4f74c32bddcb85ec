"""A bridge from NumPyro models to :class:`~smcjax.BayesianModel` (NumPyro has no SMC).

``from_numpyro(model_fn, *args, **kwargs)`` runs the model with NumPyro's own effect handlers
(``seed``, ``trace``, ``substitute``), its per-site log densities
(:func:`numpyro.infer.util.compute_log_probs`) and its support bijections
(:func:`numpyro.distributions.transforms.biject_to`) to build:

* θ: a dict ``{site name: value}`` of the latent (unobserved) ``sample`` sites, in their
  natural **constrained** space, exactly as ``numpyro.infer.MCMC.get_samples()`` reports them;
* ``log_prior(θ)``: the sum of the latent sites' log densities;
* ``log_likelihood(θ)``: the sum of the observed sites' log densities (``obs=...`` sites and
  ``numpyro.factor`` terms, which are therefore tempered);
* ``sample_prior(key)``: one forward run of the model under ``seed``;
* ``bijection``: ``θ_s = T_s(z_s)`` with ``T_s = biject_to(support_s)`` per site, evaluated by
  replaying the model so that supports which depend on other latent values (e.g.
  ``Uniform(0, a)`` with ``a`` latent) use the current values; ``log_det_jacobian(z) =
  Σ_s log |det ∂T_s/∂z_s|``. The unconstrained ``z_s`` may have a different shape from
  ``θ_s`` (e.g. a simplex of size K has K-1 unconstrained coordinates).

With that bijection the samplers' unconstrained target is ``log p(T(z)) + β log L(T(z)) +
log |det ∂T/∂z|``, the same density as NumPyro's ``potential_energy`` at β = 1 (which the
tests check pointwise), and the evidence ``∫ p(θ) L(θ) dθ`` is unchanged.

Data tempering: when every observed site's log-density array has the same 1-d shape ``[n]``
(one ``numpyro.plate`` over the data), ``log_likelihood_per_datum(θ, i)`` sums the sites'
entries ``i`` and ``num_data = n``; otherwise both are None.

Not supported (clear ``ValueError``): discrete latent sites, ``numpyro.param`` sites,
subsampled plates, models without latent or without observed sites.

NumPyro is an optional dependency (``pip install smcjax[numpyro]``); it is imported only when
:func:`from_numpyro` is called.

References: Phan, Pradhan & Jankowiak (2019), "Composable effects for flexible and
accelerated probabilistic programming in NumPyro".
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from smcjax.bayes import BayesianModel, Bijection

__all__ = ["from_numpyro"]


def _numpyro_scope(fn):
    """Run ``fn`` with implicit rank promotion allowed: NumPyro's distributions rely on it
    internally, and smcjax's tests set ``jax_numpy_rank_promotion="raise"``."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.numpy_rank_promotion("allow"):
            return fn(*args, **kwargs)

    return wrapped


def _import_numpyro():
    try:
        import numpyro  # noqa: F401
        from numpyro import handlers
        from numpyro.distributions.transforms import biject_to
        from numpyro.infer.util import compute_log_probs
    except ImportError as err:  # pragma: no cover - exercised only without numpyro
        raise ImportError("smcjax.from_numpyro needs NumPyro: pip install 'smcjax[numpyro]'") \
            from err
    return handlers, biject_to, compute_log_probs


@_numpyro_scope
def _inspect(handlers, model_fn, args, kwargs):
    """Trace the model once (abstractly, nothing is computed); return ``(latent, observed)``
    site names after the checks."""
    sites = []

    def run():
        tr = handlers.trace(handlers.seed(model_fn, rng_seed=0)).get_trace(*args, **kwargs)
        for name, site in tr.items():
            discrete = site["type"] == "sample" and bool(site["fn"].support.is_discrete)
            sites.append((name, site["type"], site.get("args"), site.get("is_observed"),
                          discrete, type(site.get("fn")).__name__))
        return 0

    try:
        jax.eval_shape(run)
    except Exception as err:  # noqa: BLE001 -- re-raised with context
        raise ValueError(f"running the NumPyro model {_name(model_fn)} failed: {err}") from err
    latent, observed = [], []
    for name, kind, site_args, is_observed, discrete, fn_name in sites:
        if kind == "param":
            raise ValueError(f"site {name!r} is a numpyro.param; from_numpyro needs a Bayesian "
                             "model (give it a prior with numpyro.sample)")
        if kind == "plate":
            size, sub = site_args
            if sub is not None and sub != size:
                raise ValueError(f"plate {name!r} subsamples {sub} of {size}; subsampled plates "
                                 "are not supported (the likelihood must be exact)")
        if kind != "sample":
            continue
        if is_observed:
            observed.append(name)
        elif discrete:
            raise ValueError(f"latent site {name!r} is discrete ({fn_name}); from_numpyro "
                             "supports continuous latent sites only")
        else:
            latent.append(name)
    if not latent:
        raise ValueError(f"the NumPyro model {_name(model_fn)} has no latent sample sites")
    if not observed:
        raise ValueError(f"the NumPyro model {_name(model_fn)} has no observed sites "
                         "(numpyro.sample(..., obs=...) or numpyro.factor): nothing to temper")
    return tuple(latent), tuple(observed)


def _name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def from_numpyro(model_fn: Callable, *args, **kwargs) -> BayesianModel:
    """Wrap a NumPyro model as a :class:`~smcjax.BayesianModel` (see the module docstring).

    Args:
      model_fn: a NumPyro model (a callable using ``numpyro.sample`` etc.).
      *args, **kwargs: the model's arguments (data, sizes); observed values must be passed
        here or fixed with ``numpyro.handlers.condition`` before the call.

    Returns:
      A BayesianModel over θ = ``{latent site: constrained value}`` with the bijection from
      NumPyro's support transforms.

    Example:
      >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
      >>> def model(y):
      ...     sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
      ...     with numpyro.plate("data", y.shape[0]):
      ...         numpyro.sample("y", dist.Normal(0.0, sigma), obs=y)
      >>> m = from_numpyro(model, jnp.array([0.3, -1.2, 0.8]))
      >>> m.num_data
      3
    """
    if not callable(model_fn):
        raise ValueError("model_fn must be a callable NumPyro model, got "
                         f"{type(model_fn).__name__}")
    handlers, biject_to, compute_log_probs = _import_numpyro()
    latent, observed = _inspect(handlers, model_fn, args, kwargs)
    seeded = handlers.seed(model_fn, rng_seed=0)

    @_numpyro_scope
    def log_probs(theta, sum_log_prob=True):
        missing = set(latent) - set(theta)
        if missing:
            raise ValueError(f"θ lacks the latent sites {sorted(missing)}; expected {list(latent)}")
        lps, _ = compute_log_probs(seeded, args, kwargs, dict(theta), sum_log_prob=sum_log_prob)
        return lps

    def log_prior(theta):
        lps = log_probs(theta)
        return sum((lps[s] for s in latent), start=jnp.zeros(()))

    def log_likelihood(theta):
        lps = log_probs(theta)
        return sum((lps[s] for s in observed), start=jnp.zeros(()))

    @_numpyro_scope
    def sample_prior(key):
        tr = handlers.trace(handlers.seed(model_fn, rng_seed=key)).get_trace(*args, **kwargs)
        return {s: tr[s]["value"] for s in latent}

    @_numpyro_scope
    def _replay(values, *, unconstrained):
        """Run the model with latent values substituted; return (θ, z, log|det|)."""
        out_theta, out_z, log_dets = {}, {}, []

        def substitute_fn(site):
            name = site["name"]
            if site["type"] != "sample" or name not in latent:
                return None
            transform = biject_to(site["fn"].support)
            if unconstrained:
                z = values[name]
                theta = transform(z)
            else:
                theta = values[name]
                z = transform.inv(theta)
            log_dets.append(jnp.sum(transform.log_abs_det_jacobian(z, theta)))
            out_theta[name], out_z[name] = theta, z
            return theta

        handlers.trace(handlers.substitute(seeded, substitute_fn=substitute_fn)).get_trace(
            *args, **kwargs)
        return out_theta, out_z, sum(log_dets, start=jnp.zeros(()))

    bijection = Bijection(
        forward=lambda z: _replay(z, unconstrained=True)[0],
        inverse=lambda theta: _replay(theta, unconstrained=False)[1],
        log_det_jacobian=lambda z: _replay(z, unconstrained=True)[2],
    )

    per_datum, num_data = _per_datum(log_probs, sample_prior, observed)
    return BayesianModel(log_prior, log_likelihood, sample_prior,
                         log_likelihood_per_datum=per_datum, num_data=num_data,
                         bijection=bijection, name=_name(model_fn))


def _per_datum(log_probs, sample_prior, observed):
    """Per-datum log-likelihood when every observed site is a 1-d array of the same length."""
    structs = jax.eval_shape(lambda k: log_probs(sample_prior(k), sum_log_prob=False),
                             jax.random.key(0))
    shapes = {structs[s].shape for s in observed}
    if len(shapes) != 1:
        return None, None
    (shape,) = shapes
    if len(shape) != 1 or shape[0] < 1:
        return None, None

    def log_likelihood_per_datum(theta, i):
        lps = log_probs(theta, sum_log_prob=False)
        return sum((lps[s][i] for s in observed), start=jnp.zeros(()))

    return log_likelihood_per_datum, int(shape[0])

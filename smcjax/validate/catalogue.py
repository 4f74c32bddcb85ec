"""A catalogue of problems with exact answers, for validating samplers.

A :class:`Problem` names a model and a builder; the builder returns an :class:`Instance`: the
model (plus observations for a state-space model) and its :class:`Exact` answers. Kinds:

* ``"bayes"``: a :class:`~smcjax.BayesianModel`; exact posterior mean and variance of the
  flattened parameter, ``log Z``, 1-d marginal CDFs, mode masses;
* ``"ssm"``: a :class:`~smcjax.StateSpaceModel` with observations; exact ``log p(y)``, the
  exact values of ``Instance.summary`` at every step (filtering moments or probabilities),
  and the final filtering marginal (CDF or enumerated probabilities).

Flattening: particles are flattened leaf by leaf in ``jax.tree.leaves`` order (dict keys
sorted), each leaf ravelled, giving ``[N, d]`` (:func:`flatten_particles`); the exact vectors
use the same order. A NaN exact value means "unknown" and is not checked.

Built-in problems (:func:`problems`; ``quick`` ones run in ``run_validation(level="quick")``):

============================== ===== ==============================================================
name                           kind  exact answers from
============================== ===== ==============================================================
conjugate_gaussian_2d          bayes Gaussian conjugacy (correlated prior), :mod:`~smcjax.models.conjugate_gaussian`
bimodal                        bayes two-component mixture posterior: mode masses, log Z (:mod:`~smcjax.models.bimodal`)
gamma_poisson                  bayes Gamma posterior, skewed, with a log bijection (:mod:`~smcjax.models.gamma_poisson`)
beta_binomial                  bayes Beta posterior of a binomial rate, logit bijection
nig_regression                 bayes Normal-inverse-Gamma regression (Student t / inverse-Gamma marginals)
conjugate_gaussian_5d          bayes Gaussian conjugacy in 5-d
linear_gaussian_1d             ssm   Kalman filter (T = 25)
linear_gaussian_3d             ssm   Kalman filter (3-d state, 2-d observations, T = 25)
linear_gaussian_1d_fast_normal ssm   the 1-d model drawing with :func:`smcjax.random.normal` (``--full``)
discrete_hmm                   ssm   forward algorithm (3 states, 4 symbols, T = 30), int particles
============================== ===== ==============================================================

Where :mod:`smcjax.diffusion` imports, the Gaussian-mixture test bed adds ``"diffusion"``
problems (``fkc_*`` reshaped targets, ``tds_*`` posteriors; moments and mode masses, see
:mod:`smcjax.validate._diffusion`).

Users add their own: ``Problem("mine", "bayes", lambda: Instance(model, Exact(...)))``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.bayes import BayesianModel, Bijection
from smcjax.validate import _special

__all__ = ["Exact", "Instance", "Problem", "problems", "get_problem", "flatten_particles",
           "KINDS"]

KINDS = ("bayes", "ssm", "diffusion")


class Exact(NamedTuple):
    """Exact answers of a problem (NumPy float64; None = not available).

    Attributes:
      log_evidence: ``log Z`` (bayes) or ``log p(y_0..y_{T-1})`` (ssm).
      mean, var: ``[d]`` posterior mean and variance of the flattened parameter (bayes).
      marginal_cdfs: ``((index, cdf), ...)``: exact CDF of flat coordinate ``index`` of the
        posterior (bayes) or of the final filtering distribution (ssm), vectorised in NumPy.
      mode_masses: ``[K]`` exact probabilities of the cells labelled by ``mode_of``.
      mode_of: ``flat particles [N, d] -> int [N]`` cell labels (e.g. which mode, or the
        discrete state).
      filtering: ``[T, S]`` exact values of ``Instance.summary`` at every step (ssm).
    """

    log_evidence: float | None = None
    mean: np.ndarray | None = None
    var: np.ndarray | None = None
    marginal_cdfs: tuple = ()
    mode_masses: np.ndarray | None = None
    mode_of: Callable | None = None
    filtering: np.ndarray | None = None


class Instance(NamedTuple):
    """A built problem.

    Attributes:
      model: a :class:`~smcjax.BayesianModel` (bayes) or :class:`~smcjax.StateSpaceModel`.
      exact: the :class:`Exact` answers.
      observations: the observations pytree (ssm), leading axis T.
      summary: ssm: ``(particles, log_weights, t) -> float[S]`` computed by the filter at
        every step (a ``reduce_fn``); ``exact.filtering`` holds its exact values.
      names: labels of the flat coordinates (bayes) or of the summary entries (ssm).
    """

    model: Any
    exact: Exact
    observations: Any = None
    summary: Callable | None = None
    names: tuple = ()


class Problem(NamedTuple):
    """A named problem with exact answers.

    Attributes:
      name: unique name.
      kind: ``"bayes"``, ``"ssm"`` or ``"diffusion"``.
      build: ``() -> Instance`` (the built-in builders cache their result).
      description: one line.
      quick: whether ``run_validation(level="quick")`` uses it.
    """

    name: str
    kind: str
    build: Callable[[], Instance]
    description: str = ""
    quick: bool = True


def flatten_particles(particles, num_particles: int | None = None) -> np.ndarray:
    """``[N, d]`` float64 from a particle pytree with leading axis N (see module docstring)."""
    leaves = [np.asarray(a) for a in jax.tree.leaves(particles)]
    n = leaves[0].shape[0] if num_particles is None else num_particles
    return np.concatenate([a.reshape(n, -1).astype(np.float64) for a in leaves], axis=1)


def _norm_cdf(mean, sd):
    return lambda x: _special.norm_cdf((np.asarray(x, np.float64) - mean) / sd)


# ------------------------------------------------------------------------------ bayes problems


@functools.cache
def _conjugate_gaussian(dim: int) -> Instance:
    from smcjax.models import conjugate_gaussian as cg

    model, ex = cg.make_model(dim)
    var = ex.posterior_var
    cdfs = ((0, _norm_cdf(ex.posterior_mean[0], math.sqrt(var[0]))),)
    return Instance(model, Exact(ex.log_evidence, ex.posterior_mean, var, cdfs),
                    names=tuple(f"theta[{i}]" for i in range(dim)))


@functools.cache
def _bimodal() -> Instance:
    from smcjax.models import bimodal

    ex = bimodal.exact(bimodal.default_params())
    m0, sd = ex.component_means[:, 0], np.sqrt(ex.component_vars)
    pis = ex.component_masses

    def cdf0(x):
        x = np.asarray(x, np.float64)[..., None]
        return np.sum(pis * _special.norm_cdf((x - m0) / sd), axis=-1)

    def mode_of(flat):
        return (np.asarray(flat)[:, 0] > 0).astype(np.int64)

    exact = Exact(ex.log_evidence, ex.mean, np.diag(ex.cov), ((0, cdf0),),
                  np.array([1.0 - ex.positive_mass, ex.positive_mass]), mode_of)
    return Instance(bimodal.make_model(), exact, names=("theta[0]", "theta[1]"))


@functools.cache
def _gamma_poisson() -> Instance:
    from smcjax.models import gamma_poisson as gp

    ex = gp.exact()
    cdf = lambda x: _special.gamma_cdf(x, ex.shape, ex.rate)  # noqa: E731
    return Instance(gp.make_model(), Exact(ex.log_evidence, np.array([ex.mean]),
                                           np.array([ex.var]), ((0, cdf),)), names=("lambda",))


BB_SUCCESSES = np.array([3, 5, 2, 4, 6, 3, 1, 4])
BB_TRIALS = np.full(8, 10)


@functools.cache
def _beta_binomial() -> Instance:
    """p ~ Beta(2, 3), y_i ~ Binomial(10, p): posterior Beta(2 + Σy, 3 + Σ(n - y))."""
    a0, b0 = 2.0, 3.0
    y_np, n_np = BB_SUCCESSES.astype(np.float64), BB_TRIALS.astype(np.float64)
    a_n, b_n = a0 + y_np.sum(), b0 + (n_np - y_np).sum()
    lbeta = lambda a, b: math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)  # noqa: E731
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                           for k, n in zip(y_np, n_np, strict=True)])
    log_z = float(log_choose.sum() + lbeta(a_n, b_n) - lbeta(a0, b0))
    mean = a_n / (a_n + b_n)
    var = a_n * b_n / ((a_n + b_n) ** 2 * (a_n + b_n + 1.0))
    y, n, lc = (jnp.asarray(v, jnp.float32) for v in (y_np, n_np, log_choose))

    def log_prior(p):
        out = (a0 - 1.0) * jnp.log(p) + (b0 - 1.0) * jnp.log1p(-p) - lbeta(a0, b0)
        return jnp.where((p > 0) & (p < 1), out, -jnp.inf)

    def log_lik_datum(p, i):
        return lc[i] + y[i] * jnp.log(p) + (n[i] - y[i]) * jnp.log1p(-p)

    def log_likelihood(p):
        return jnp.sum(lc + y * jnp.log(p) + (n - y) * jnp.log1p(-p))

    bij = Bijection(jax.nn.sigmoid, jax.scipy.special.logit,
                    lambda z: jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))
    model = BayesianModel(log_prior, log_likelihood,
                          lambda k: jax.random.beta(k, a0, b0, (), jnp.float32),
                          log_likelihood_per_datum=log_lik_datum, num_data=int(y_np.size),
                          bijection=bij, name="beta_binomial")
    cdf = lambda x: _special.beta_cdf(x, a_n, b_n)  # noqa: E731
    return Instance(model, Exact(log_z, np.array([mean]), np.array([var]), ((0, cdf),)),
                    names=("p",))


@functools.cache
def _nig_regression() -> Instance:
    from smcjax.models import linear_regression as lr

    x, y = lr.simulate(seed=0, num_data=20, num_features=2)
    prior = lr.default_prior(2)
    post = lr.posterior(x, y, prior)
    mean = np.concatenate([post.beta_mean, [post.sigma2_mean]])
    var = np.concatenate([np.diag(post.beta_cov), [post.sigma2_var]])
    df = 2.0 * post.a
    scale = math.sqrt(post.b / post.a * post.cov[0, 0])
    m0 = float(post.mean[0])
    cdf_beta0 = lambda v: _special.t_cdf((np.asarray(v, np.float64) - m0) / scale, df)  # noqa: E731

    def cdf_sigma2(v):  # inverse Gamma(a_n, b_n): P(s2 <= v) = Q(a_n, b_n / v)
        v = np.asarray(v, np.float64)
        return np.where(v > 0, _special.gammaincc(post.a, post.b / np.where(v > 0, v, 1.0)), 0.0)

    exact = Exact(post.log_evidence, mean, var, ((0, cdf_beta0), (2, cdf_sigma2)))
    return Instance(lr.make_model(x, y, prior), exact, names=("beta[0]", "beta[1]", "sigma2"))


# -------------------------------------------------------------------------------- ssm problems


def _moments_summary(particles, log_weights, t):
    w = jnp.exp(log_weights)
    x = particles.astype(w.dtype)
    mean = w @ x
    return jnp.concatenate([mean, w @ (x - mean[None]) ** 2])


@functools.cache
def _linear_gaussian(dim_x: int, dim_y: int, fast_normal: bool = False) -> Instance:
    from smcjax.models import linear_gaussian as lg
    from smcjax.random import normal as smcjax_normal

    p = lg.random_params(jax.random.key(10 + dim_x), dim_x=dim_x, dim_y=dim_y,
                         obs_noise=0.5 if dim_x == 1 else 1.5)
    _, ys = lg.simulate(jax.random.key(20 + dim_x), p, 25)
    kf = lg.kalman_filter(p, ys)
    model = lg.make_model(p, normal=smcjax_normal if fast_normal else jax.random.normal)._replace(
        proposal=lg.optimal_proposal(p, inflate=1.3),  # valid, not optimal: f g / q exercised
        auxiliary_log_weight=lg.predictive_log_prob(p, inflate=1.5))
    filtering = np.concatenate([kf.means, np.diagonal(kf.covs, axis1=1, axis2=2)], axis=1)
    cdf = _norm_cdf(kf.means[-1, 0], math.sqrt(kf.covs[-1, 0, 0]))
    names = (tuple(f"mean x[{i}]" for i in range(dim_x))
             + tuple(f"var x[{i}]" for i in range(dim_x)))
    return Instance(model, Exact(kf.log_likelihood, marginal_cdfs=((0, cdf),),
                                 filtering=filtering), ys, _moments_summary, names)


@functools.cache
def _discrete_hmm() -> Instance:
    from smcjax.models import discrete_hmm as hmm

    p = hmm.default_params()
    _, ys = hmm.simulate(1, p, 30)
    fw = hmm.forward(p, ys)
    k = len(p.initial)

    def summary(particles, log_weights, t):
        return jnp.zeros(k, log_weights.dtype).at[particles].add(jnp.exp(log_weights))

    def mode_of(flat):
        return np.asarray(flat)[:, 0].astype(np.int64)

    exact = Exact(fw.log_likelihood, mode_masses=fw.filtering_probs[-1], mode_of=mode_of,
                  filtering=fw.filtering_probs)
    return Instance(hmm.make_model(p), exact, jnp.asarray(ys), summary,
                    tuple(f"P(x = {j})" for j in range(k)))


_PROBLEMS = (
    Problem("conjugate_gaussian_2d", "bayes", lambda: _conjugate_gaussian(2),
            "Gaussian likelihood, correlated Gaussian prior, d = 2, n = 10"),
    Problem("bimodal", "bayes", _bimodal,
            "mixture likelihood: two separated posterior modes with masses 0.39 / 0.61"),
    Problem("gamma_poisson", "bayes", _gamma_poisson,
            "Gamma prior, Poisson counts: skewed posterior, log bijection"),
    Problem("beta_binomial", "bayes", _beta_binomial,
            "Beta prior, binomial counts: posterior on (0, 1), logit bijection"),
    Problem("nig_regression", "bayes", _nig_regression,
            "linear regression, Normal-inverse-Gamma prior, 2 coefficients + noise variance",
            quick=False),
    Problem("conjugate_gaussian_5d", "bayes", lambda: _conjugate_gaussian(5),
            "Gaussian likelihood, correlated Gaussian prior, d = 5", quick=False),
    Problem("linear_gaussian_1d", "ssm", lambda: _linear_gaussian(1, 1),
            "linear-Gaussian state-space model, 1-d, T = 25 (Kalman filter)"),
    Problem("linear_gaussian_3d", "ssm", lambda: _linear_gaussian(3, 2),
            "linear-Gaussian state-space model, 3-d state, 2-d observations, T = 25"),
    Problem("linear_gaussian_1d_fast_normal", "ssm", lambda: _linear_gaussian(1, 1, True),
            "the 1-d linear-Gaussian model with its normals from smcjax.random.normal",
            quick=False),
    Problem("discrete_hmm", "ssm", _discrete_hmm,
            "3-state hidden Markov model, T = 30 (forward algorithm), int particles"),
)


def _diffusion_problems() -> tuple[Problem, ...]:
    try:  # registered only where smcjax.diffusion imports (it needs SciPy at present)
        from smcjax.validate import _diffusion
    except ImportError:
        return ()
    return _diffusion.PROBLEMS


def _all() -> tuple[Problem, ...]:
    return _PROBLEMS + _diffusion_problems()


def problems(kind: str | None = None) -> tuple[Problem, ...]:
    """The built-in problems, optionally only those of one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown problem kind {kind!r}; choose one of {KINDS}")
    return tuple(p for p in _all() if kind is None or p.kind == kind)


def get_problem(name: str) -> Problem:
    """The built-in problem called ``name`` (``ValueError`` listing the names otherwise)."""
    for p in _all():
        if p.name == name:
            return p
    raise ValueError(f"unknown problem {name!r}; choose one of {[p.name for p in _all()]}")

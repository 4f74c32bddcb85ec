"""Feynman-Kac correctors (FKC): SMC for products of powers of diffusion marginals.

Let ``q^(i)_t`` be the forward-noised marginals of pretrained diffusion models with scores
``s_i = grad log q^(i)_t`` and forward SDE ``dx = f_t(x) dt + g_t dW``. In reverse time
``tau`` (from ``t_max`` down to ``t_min``) FKC targets the reshaped marginals

    p_t(x)  ∝  prod_i q^(i)_t(x)^{beta_i} * exp(lam(t) r(x))          (reward factor optional)

Write ``B = sum_i beta_i`` and ``S = sum_i beta_i s_i``. For any noise multiplier
``eta >= 0`` the weighted SDE (Skreta et al. 2025, derived from the Fokker-Planck equations)

    dx       = [-f_t(x) + (1 + eta)/2 g_t^2 S(x)] dtau + sqrt(eta) g_t dW
    d log w  = [(B - 1) div f_t + g_t^2/2 (|S|^2 - sum_i beta_i |s_i|^2)] dtau

solves the Feynman-Kac PDE of the *unnormalised* ``prod_i q_i^{beta_i}``, so ``E[w]`` is the
ratio of its normalisers at the two ends. Special cases:

===========================  =======================  =============================================
target                       betas                    log-weight rate
===========================  =======================  =============================================
annealing ``q^beta``         ``(beta,)``              ``(beta-1) div f + beta(beta-1)/2 g^2 |s|^2``
product of experts q1 q2     ``(1, 1)``               ``div f + g^2 <s_1, s_2>``
CFG ``q_u^{1-w} q_c^w``      ``(1-w, w)``             ``w(w-1)/2 g^2 |s_c - s_u|^2``
===========================  =======================  =============================================

Control drift (``control=True``). The drift and the weight rate trade against each other:
adding any drift ``b`` to the SDE and ``div b + <b, S>`` to the log-weight rate leaves the
weighted marginals unchanged, because ``div(b p) / p = div b + <b, grad log p>`` and
``grad log p = S`` (Ren et al. 2025 choose ``b`` to control the weight variance). smcjax takes
``b = sum_i theta_i s_i`` with ``theta_i = -(beta_i - 1)^+ g_t^2 / 2``, which cancels the
sharpening self terms ``beta_i (beta_i - 1)/2 g^2 |s_i|^2`` (``beta_i > 1``) of the rate::

    dx       = [-f_t(x) + (1 + eta)/2 g_t^2 S + sum_i theta_i s_i] dtau + sqrt(eta) g_t dW
    d log w  = [rate above + sum_i theta_i (div s_i + <s_i, S>)] dtau

For annealing ``q^beta`` the rate becomes ``(beta - 1)(div f - g^2/2 Lap log q)`` (computed in
that form for a single score, so the cancellation is exact in floating point). On Gaussian
data ``Lap log q_t = -d / v_t`` does not depend on ``x``: the weights are constant and the
drift alone carries ``N(m, v_t / beta)`` exactly, for every ``eta``. On well-separated mixture
components the same holds within each component, so only mass moving between components is
weighted, and the Euler weights lose most of their Jensen bias in ``log Z``. Experts with
``beta_i <= 1`` (products, the unconditional score of CFG) are left alone; measured on the
exact CFG problem (w = 2) the control passes but gives no gain there. The cost is the
divergence of each score with ``beta_i > 1`` (the others are not differentiated). With the
control the weights rarely degenerate: resampling by ESS (``ess_threshold=0.5``) beats
resampling at every step, which only adds noise (40-mode benchmark, N = 10^3: W2 7.7 against
10.0).

Discretisation (one SMC step per grid interval ``t_{k-1} > t_k``, ``h = t_{k-1} - t_k``):
Euler-Maruyama for ``x`` and Euler for the weight at the pre-step state, except the
``x``-independent term ``(B-1) div f``, which is integrated exactly:
``(B-1) d (log alpha_{t_{k-1}} - log alpha_{t_k})``.

The reward factor ``exp(lam(t) r(x))`` (any time-varying ``lam``) is handled in discrete time,
which avoids the Laplacian of ``r`` that the continuous rate contains: the drift gains the
guidance ``delta = h (1+eta)/2 g^2 lam(t_{k-1}) grad r(x)`` and the weight gains the twist
ratio and the Gaussian kernel ratio (a discrete Girsanov factor)::

    log w += lam(t_k) r(x') - lam(t_{k-1}) r(x) - <delta, xi>/sqrt(v) - |delta|^2/(2 v),

with ``x' = x + h drift + delta + sqrt(v) xi``, ``v = eta g^2 h``. As ``h -> 0`` this equals the
continuous FKC rate ``lam' r - lam <f, grad r> + g^2/2 lam Lap r + g^2 lam <S, grad r>
+ g^2/2 lam^2 |grad r|^2`` (Ito's formula).

FK model on the engine: ``M_0 = N(0, sigma_{t_0}^2 / B)`` (the Gaussian approximation of
``prod_i q^(i)_{t_0}^{beta_i}``), ``G_0 = exp(lam(t_0) r)`` (times
``prod_i q_i^{beta_i} / M_0`` with ``exact_initial=True``), ``M_k`` one reverse step, ``G_k``
the accumulated weight above. The log-evidence estimates ``log int prod_i q^(i)_{t_K}^{beta_i}
exp(lam(t_K) r)`` (the Gaussian constant of ``M_0`` is added unless ``exact_initial``).

Pitfall (REFERENCES): for annealing with ``eta = 1/beta`` (tempered noise) and Gaussian data,
the exact solution is an unstable fixed point of the weighted dynamics when
``eta < 1 - 1/B``: the particles settle on the variance ``eta v / (beta - 1)`` instead of
``v / beta``. ``eta = 1`` is the default; smaller ``eta`` warns.

References: M. Skreta, T. Akhound-Sadegh, V. Ohanesian et al., "Feynman-Kac Correctors in
Diffusion: Annealing, Guidance, and Product of Experts", ICML 2025; Y. Ren, W. Gao, L. Ying,
G. M. Rotskoff, J. Han, "DriftLite: Lightweight Drift Control for Inference-Time Scaling of
Diffusion Models", arXiv:2509.21655, 2025 (the drift/potential trade-off).
"""

from __future__ import annotations

import functools
import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax import _checks
from smcjax._compile import jit
from smcjax.diffusion.scores import check_score, score_and_divergence
from smcjax.diffusion.sde import step_grid
from smcjax.diffusion.targets import DiffusionResult, Target, _finite
from smcjax.engine import FeynmanKac, check_num_particles, particle_step_work, run
from smcjax.resampling import check_ess_threshold, get_scheme

__all__ = ["fkc_model", "fkc_sample"]


class _Particle(NamedTuple):
    x: jax.Array
    log_g: jax.Array


def _lam(target, t):
    lam = target.lam
    return jnp.asarray(lam(t) if callable(lam) else lam, jnp.float32)


def _sq(v):
    return jnp.sum(v * v)


def fkc_model(target: Target, sde, shape, *, weighted: bool = True,
              exact_initial: bool = False, prior_std: float | None = None,
              control: bool = False) -> FeynmanKac:
    """The FK model of FKC (``weighted=False``: the same SDE with zero log potentials;
    ``control=True``: the control drift of the module docstring).

    The engine steps ``k = 1..K`` read ``params["times"]`` (``[K + 1]``, decreasing) and
    ``params["eta"]`` (the noise multiplier, traced). Particles are ``_Particle(x, log_g)``:
    the transition computes the scores once and stores the step's log weight, which the
    potential returns. See the module docstring.
    """
    betas = jnp.asarray(target.betas, jnp.float32)
    big_b = target.total_beta
    dim = int(np.prod(shape))
    std0 = sde.prior_std if prior_std is None else prior_std
    init_std = std0 / math.sqrt(big_b)

    def transition(key, p, k, params):
        times, eta = params["times"], params["eta"]
        c = 0.5 * (1.0 + eta)
        t0, t1 = times[k - 1], times[k]
        h = t0 - t1
        x = p.x
        g2 = sde.diffusion_sq(t0)
        if control:  # divergences only where theta_i != 0 (beta_i > 1)
            pairs = [score_and_divergence(score, x, t0) if beta > 1.0
                     else (score(x, t0), jnp.zeros((), x.dtype))
                     for score, beta in zip(target.scores, target.betas, strict=True)]
            s = jnp.stack([a for a, _ in pairs])
            div = jnp.stack([b for _, b in pairs])
            theta = -0.5 * g2 * jnp.maximum(betas - 1.0, 0.0)  # b = sum_i theta_i s_i
        else:
            s = jnp.stack([score(x, t0) for score in target.scores])
        big_s = jnp.tensordot(betas, s, axes=(0, 0))
        # (1 + eta)/2 g^2 S, plus b with the control
        push = (jnp.tensordot(c * g2 * betas + theta, s, axes=(0, 0)) if control
                else c * g2 * big_s)
        mean = x + h * (push - sde.drift(x, t0))
        var = eta * g2 * h
        xi = jax.random.normal(key, x.shape, x.dtype)
        log_g = jnp.zeros((), x.dtype)
        if weighted:
            log_g = (big_b - 1.0) * dim * (sde.log_alpha(t0) - sde.log_alpha(t1))
            if control and len(target.scores) == 1 and target.betas[0] > 1.0:
                # annealing: the |s|^2 terms cancel exactly, leaving theta * div s
                log_g = log_g + h * theta[0] * div[0]
            else:
                norms = jnp.sum(jnp.reshape(s * s, (s.shape[0], -1)), axis=1)
                log_g = log_g + 0.5 * h * g2 * (_sq(big_s) - jnp.dot(betas, norms))
                if control:  # + h (div b + <b, S>), with <s_i, S> as a product and a sum
                    inner = jnp.sum(jnp.reshape(s * big_s[None], (s.shape[0], -1)), axis=1)
                    log_g = log_g + h * jnp.dot(theta, div + inner)
        if target.reward is None:
            return _Particle(mean + jnp.sqrt(var) * xi, log_g)
        lam0, lam1 = _lam(target, t0), _lam(target, t1)
        r0, grad_r = jax.value_and_grad(target.reward)(x)
        delta = h * c * g2 * lam0 * grad_r if target.guidance else jnp.zeros_like(x)
        x_new = mean + delta + jnp.sqrt(var) * xi
        if weighted:
            log_g = log_g + lam1 * target.reward(x_new) - lam0 * r0
            if target.guidance:
                log_g = log_g - jnp.sum(delta * xi) / jnp.sqrt(var) - _sq(delta) / (2.0 * var)
        return _Particle(x_new, log_g)

    def initial(key):
        x = init_std * jax.random.normal(key, tuple(shape), jnp.float32)
        return _Particle(x, jnp.zeros((), jnp.float32))

    def initial_log_potential(p, params):
        t0 = params["times"][0]
        out = jnp.zeros((), jnp.float32)
        if exact_initial:
            log_q = jnp.stack([score.log_prob(p.x, t0) for score in target.scores])
            log_m0 = (-0.5 * _sq(p.x) / init_std**2
                      - dim * (math.log(init_std) + 0.5 * math.log(2 * math.pi)))
            out = out + jnp.dot(betas, log_q) - log_m0
        if target.reward is not None:
            out = out + _lam(target, t0) * target.reward(p.x)
        return out

    def log_potential(p_prev, p, k, params):
        return p.log_g

    return FeynmanKac(initial, transition, log_potential,
                      initial_log_potential if weighted else None)


def _gaussian_log_z(big_b, std, dim):
    """``log int N(x; 0, std^2 I)^B dx``."""
    return -0.5 * dim * (big_b - 1.0) * math.log(2 * math.pi * std * std) - 0.5 * dim * math.log(
        big_b)


@partial(jit, static_argnames=("target", "sde", "shape", "num_particles", "weighted",
                                   "exact_initial", "prior_std", "resampling", "ess_threshold",
                                   "control"))
def _sample(key, times, eta, *, target, sde, shape, num_particles, weighted, exact_initial,
            prior_std, resampling, ess_threshold, control=False):
    fk = fkc_model(target, sde, shape, weighted=weighted, exact_initial=exact_initial,
                   prior_std=prior_std, control=control)
    params = {"times": times, "eta": jnp.asarray(eta, jnp.float32)}
    state, infos, _ = run(key, fk, num_particles, times.shape[0], params,
                          resampling=resampling, ess_threshold=ess_threshold)
    log_z = None
    if weighted:
        log_z = state.log_evidence
        if not exact_initial:
            log_z = log_z + _gaussian_log_z(target.total_beta, prior_std, int(np.prod(shape)))
    return DiffusionResult(state.particles.x, state.log_weights, log_z, infos.ess,
                           infos.resampled, infos.num_invalid, infos.collapsed, times)


@functools.lru_cache(maxsize=64)
def _step_work(target, sde, shape, weighted, exact_initial, prior_std, control, num_times):
    """One particle's step work (:func:`smcjax.engine.particle_step_work`), once per setting."""
    fk = fkc_model(target, sde, shape, weighted=weighted, exact_initial=exact_initial,
                   prior_std=prior_std, control=control)
    params = {"times": jax.ShapeDtypeStruct((num_times,), jnp.float32),
              "eta": jax.ShapeDtypeStruct((), jnp.float32)}
    return particle_step_work(fk, params)


def _run_sample(key, times, eta, **kwargs):
    """:func:`_sample`, compiled without XLA's loop splitting when a step is small (see
    :mod:`smcjax._compile`); for FKC and for the unweighted SDE baseline alike."""
    work = _step_work(kwargs["target"], kwargs["sde"], kwargs["shape"], kwargs["weighted"],
                      kwargs["exact_initial"], kwargs["prior_std"], kwargs.get("control", False),
                      int(np.shape(times)[0]))
    sized = _sample.sized(None if work is None else kwargs["num_particles"] * work)
    return sized(key, times, eta, **kwargs)


def _prepare(target, sde, num_particles, num_steps, times, eta, shape, exact_initial,
             control=False):
    if not isinstance(target, Target):
        raise ValueError("target must be a smcjax.diffusion.Target (use anneal, product, cfg, ...)")
    num_particles = check_num_particles(num_particles)
    grid = step_grid(sde, num_steps, times)
    eta = _finite("eta", eta)
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if shape is None:
        shape = getattr(target.scores[0], "shape", None)
        if shape is None:
            raise ValueError("cannot infer the particle shape from the score: pass shape=(d,)")
    shape = tuple(int(n) for n in shape)
    for i, score in enumerate(target.scores):
        check_score(score, shape, what=f"score {i}")
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    if control:
        t = jax.ShapeDtypeStruct((), jnp.float32)
        for i, (score, beta) in enumerate(zip(target.scores, target.betas, strict=True)):
            if not beta > 1.0:
                continue  # theta_i = 0: no divergence needed
            what = f"score_and_divergence of score {i}"
            out = _checks.shape_struct(partial(score_and_divergence, score), x, t, what=what)
            ok = (isinstance(out, tuple) and len(out) == 2 and out[0].shape == shape
                  and out[1].shape == ())
            if not ok:
                raise ValueError(f"{what} must return (score shaped like x {shape}, scalar "
                                 f"divergence), got {_checks.describe(out)}")
    if target.reward is not None:
        _checks.scalar(_checks.shape_struct(target.reward, x, what="reward"), what="reward")
        if target.guidance and eta == 0:
            raise ValueError("reward guidance needs eta > 0 (the weight divides by the noise)")
        if callable(target.lam):
            t = jax.ShapeDtypeStruct((), jnp.float32)
            _checks.scalar(_checks.shape_struct(target.lam, t, what="lam"), what="lam(t)")
    if exact_initial and not all(hasattr(s, "log_prob") for s in target.scores):
        raise ValueError("exact_initial=True needs every score to have log_prob(x, t)")
    prior_std = float(sde.sigma(grid[0]))
    return num_particles, jnp.asarray(grid), eta, shape, prior_std


def _warn_eta(eta, big_b):
    if big_b > 1.0 and (eta < 1.0 - 1.0 / big_b or math.isclose(eta, 1.0 / big_b, rel_tol=1e-6)):
        warnings.warn(
            f"eta={eta} with sum(beta)={big_b}: for eta = 1/beta (tempered noise) or "
            f"eta < 1 - 1/beta the correct FKC solution is an unstable fixed point and the "
            f"weighted particles drift to the wrong law (on Gaussian data the variance "
            f"eta*v/(beta-1) instead of v/beta). Use eta=1 (the default).",
            UserWarning, stacklevel=3)


def fkc_sample(key, target: Target, sde, num_particles: int, num_steps: int, *,
               eta: float = 1.0, times=None, resampling="systematic",
               ess_threshold: float = 1.0, exact_initial: bool = False,
               shape=None, control: bool = False) -> DiffusionResult:
    """Sample ``target`` with Feynman-Kac correctors (weighted reverse SDE + SMC resampling).

    Args:
      key: a JAX key; the same key gives bitwise-identical results.
      target: a :class:`Target` (:func:`anneal`, :func:`product`, :func:`cfg`,
        :func:`reward_tilt`, :func:`product_of_powers`).
      sde: the forward schedule the scores belong to (:class:`VP`, :class:`VE`, :class:`EDM`).
      num_particles: N > 0.
      num_steps: K >= 1 reverse steps.
      eta: noise multiplier (``eta = 1``: the reverse SDE; ``0``: probability-flow ODE).
      times: optional decreasing grid of ``K + 1`` times in the schedule's range (default
        ``sde.default_times(K)``).
      resampling: a scheme of :mod:`smcjax.resampling`.
      ess_threshold: resample when ``ESS < ess_threshold * N``; 1 (default) resamples at
        every step as in the paper, 0 never.
      exact_initial: weight the Gaussian start by ``prod_i q_i^{beta_i} / M_0`` using every
        score's ``log_prob`` (removes the terminal-law approximation).
      shape: event shape of one particle (default: the first score's ``shape`` attribute).
      control: add the control drift ``-sum_i (beta_i - 1)^+ g^2/2 s_i`` and compensate it
        in the weights with ``div b + <b, S>`` (module docstring). Same targets, same
        estimator of ``log Z``; for annealing the weights lose their ``|s|^2`` term, which
        lowers their variance and the Euler bias of ``log Z`` (on Gaussian data they are
        constant). Needs the divergence of each score with ``beta_i > 1``:
        ``score.score_and_divergence`` if present, else ``x.size`` forward-mode
        Jacobian-vector products per step. Use it with ``ess_threshold=0.5``.

    Returns:
      A :class:`DiffusionResult`; ``log_evidence`` estimates
      ``log int prod_i q_i^{beta_i} exp(lam r)`` at ``times[-1]``.

    Raises:
      ValueError: bad target, N, K, grid (a time outside the schedule's range), eta < 0, a
        score returning the wrong shape, a non-scalar reward.

    Example:
      >>> import jax
      >>> from smcjax.diffusion import VP, GaussianMixtureScore, anneal, fkc_sample, gmm
      >>> mix = gmm.make([0.5, 0.5], [[-2.0], [2.0]], 0.5)
      >>> res = fkc_sample(jax.random.key(0), anneal(GaussianMixtureScore(mix, VP()), 2.0),
      ...                  VP(), 1000, 100)
      >>> res.samples.shape, res.status
      ((1000, 1), 'ok')
    """
    n, grid, eta, shape, prior_std = _prepare(target, sde, num_particles, num_steps, times, eta,
                                              shape, exact_initial, control)
    check_ess_threshold(ess_threshold)
    get_scheme(resampling)
    _warn_eta(eta, target.total_beta)
    return _run_sample(key, grid, eta, target=target, sde=sde, shape=shape, num_particles=n,
                       weighted=True, exact_initial=bool(exact_initial), prior_std=prior_std,
                       resampling=resampling, ess_threshold=float(ess_threshold),
                       control=bool(control))

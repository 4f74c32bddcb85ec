"""Score models: the protocol, converters from other parameterisations, a flax adapter, and the
exact score of a noised Gaussian mixture.

A score model is a single-particle function ``score(x, t) -> array shaped like x`` that
approximates ``grad_x log q_t(x)``, the score of the forward-noised data law at diffusion time
``t``. The samplers vmap it over particles; a user never sees the particle axis.

Converters for the affine path ``x_t = alpha_t x_0 + sigma_t eps`` (Tweedie's formula
``E[x_0 | x_t] = (x_t + sigma_t^2 s) / alpha_t`` and ``E[eps | x_t] = -sigma_t s``):

* denoiser ``D(x, t) ~ E[x_0 | x_t = x]``:   ``s = (alpha_t D - x) / sigma_t^2``;
* noise predictor ``eps(x, t)``:              ``s = -eps / sigma_t``;
* flow velocity ``u(x, t) ~ E[alpha' x_0 + sigma' eps | x_t = x]``:
  ``s = (alpha u - alpha' x) / (alpha' sigma^2 - alpha sigma' sigma)``.

The Gaussian-mixture score is exact: if ``x_0 ~ sum_k w_k N(mu_k, C_k)`` then
``q_t = sum_k w_k N(alpha_t mu_k, alpha_t^2 C_k + sigma_t^2 I)`` and
``grad log q_t(x) = -sum_k r_k(x) (alpha_t^2 C_k + sigma_t^2 I)^{-1} (x - alpha_t mu_k)`` with
responsibilities ``r_k``. It also exposes ``log_prob(x, t)``, which the exact tests use.

References: B. Efron, "Tweedie's formula and selection bias", JASA 2011; Y. Lipman et al.,
"Flow matching for generative modeling", ICLR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from smcjax import _checks

__all__ = [
    "ScoreModel",
    "from_denoiser",
    "from_eps",
    "from_velocity",
    "from_flax",
    "GaussianMixtureScore",
    "check_score",
    "score_and_divergence",
]

KINDS = ("score", "eps", "denoiser", "velocity")


@runtime_checkable
class ScoreModel(Protocol):
    """``score(x, t)``: ``grad_x log q_t(x)`` for one particle ``x`` at diffusion time ``t``.

    Optional attributes used when present: ``shape`` (the event shape of ``x``),
    ``log_prob(x, t)`` (the exact log density of ``q_t``, used by ``exact_initial``) and
    ``score_and_divergence(x, t) -> (s, div s)`` (used by FKC's ``control=True``; without it
    the divergence is computed by forward-mode autodiff, see :func:`score_and_divergence`).
    """

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array: ...


def from_denoiser(denoiser: Callable, sde) -> Callable:
    """Score from a denoiser ``D(x, t) ~ E[x_0 | x_t = x]``: ``s = (alpha_t D - x) / sigma_t^2``."""

    def score(x, t):
        a, s = sde.alpha(t), sde.sigma(t)
        return (a * denoiser(x, t) - x) / (s * s)

    return score


def from_eps(eps_model: Callable, sde) -> Callable:
    """Score from a noise predictor ``eps(x, t) ~ E[eps | x_t = x]``: ``s = -eps / sigma_t``."""

    def score(x, t):
        return -eps_model(x, t) / sde.sigma(t)

    return score


def from_velocity(velocity: Callable, sde) -> Callable:
    """Score from a flow velocity on the path ``x_t = alpha_t x_0 + sigma_t eps``.

    ``s = (alpha u - alpha' x) / (alpha' sigma^2 - alpha sigma' sigma)``, with ``'`` the time
    derivative of the schedule (``sde.alpha_dot``, ``sde.sigma_dot``).
    """

    def score(x, t):
        a, s = sde.alpha(t), sde.sigma(t)
        da, ds = sde.alpha_dot(t), sde.sigma_dot(t)
        return (a * velocity(x, t) - da * x) / (da * s * s - a * ds * s)

    return score


def from_flax(module, params, *, kind: str = "score", sde=None, args: tuple = ()) -> Callable:
    """Wrap a flax (linen) module ``module.apply(variables, x, t, *args)`` as a score model.

    Args:
      module: a ``flax.linen.Module`` whose ``apply`` takes one particle ``x`` and a scalar
        ``t`` (and optionally ``args``, e.g. a class label for guidance).
      params: the variables dict (``{"params": ...}``) or the bare parameter tree.
      kind: what the network predicts: ``"score"``, ``"eps"``, ``"denoiser"`` or ``"velocity"``.
      sde: the schedule (needed for every kind but ``"score"``).
      args: extra positional arguments passed to ``apply`` after ``(x, t)``.

    Returns:
      ``score(x, t)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "score" and sde is None:
        raise ValueError(f"kind={kind!r} needs the schedule: pass sde=")
    variables = params if isinstance(params, dict) and "params" in params else {"params": params}
    args = tuple(args)

    def net(x, t):
        return module.apply(variables, x, t, *args)

    if kind == "score":
        return net
    return {"eps": from_eps, "denoiser": from_denoiser, "velocity": from_velocity}[kind](net, sde)


def score_and_divergence(score: Callable, x, t):
    """``(s(x, t), div s(x, t))`` for one particle, where ``div s = sum_j ds_j / dx_j``.

    Uses ``score.score_and_divergence`` when the model has it (the exact mixture score does;
    for isotropic components at about 1.1x the cost of the score). Otherwise the Jacobian is
    built by forward-mode autodiff: ``D`` Jacobian-vector products for ``D = x.size``, so this
    fallback is for small ``D``.
    """
    own = getattr(score, "score_and_divergence", None)
    if own is not None:
        return own(x, t)
    s, push = jax.linearize(lambda y: score(y, t), x)
    size = math.prod(x.shape)
    basis = jnp.eye(size, dtype=x.dtype).reshape((size, *x.shape))
    columns = jax.vmap(push)(basis).reshape(size, size)  # [j, i] = ds_i / dx_j
    return s, jnp.trace(columns)


def check_score(score: Callable, shape, *, what: str = "score") -> None:
    """Trace ``score(x, t)`` on one particle and require an output of shape ``shape``.

    Raises:
      ValueError: if tracing fails or the output is not a floating array shaped like ``x``.
    """
    x = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    out = _checks.shape_struct(score, x, t, what=what)
    leaves = jax.tree.leaves(out)
    if len(leaves) != 1 or tuple(leaves[0].shape) != tuple(shape):
        raise ValueError(
            f"{what}(x, t) must return one array shaped like x {tuple(shape)}, got "
            f"{_checks.describe(out)}"
        )
    if not jnp.issubdtype(leaves[0].dtype, jnp.floating):
        raise ValueError(f"{what}(x, t) must return floating values, got {leaves[0].dtype}")


_MAX_UNROLLED_DIM = 16


class GaussianMixtureScore:
    """Exact score and log density of a forward-noised Gaussian mixture, in any dimension.

    Args:
      mixture: a :class:`smcjax.diffusion.gmm.GaussianMixture` (weights ``[K]``, means
        ``[K, d]``, covariances ``[K, d, d]``) describing the data law ``q_0``.
      sde: the forward schedule (``alpha_t``, ``sigma_t``).

    Each covariance is diagonalised once, ``C_k = U_k diag(l_k) U_k^T``, so the noised
    covariance ``U_k diag(alpha^2 l_k + sigma^2) U_k^T`` costs ``O(K d^2)`` per call.

    Example:
      >>> from smcjax.diffusion import VP, gmm
      >>> mix = gmm.make([0.5, 0.5], [[-2.0], [2.0]], 0.25)
      >>> s = GaussianMixtureScore(mix, VP())
      >>> s(jnp.array([1.0]), 0.5).shape
      (1,)
    """

    def __init__(self, mixture, sde):
        w = np.asarray(mixture.weights, np.float64)
        means = np.asarray(mixture.means, np.float64)
        covs = np.asarray(mixture.covs, np.float64)
        lam, vecs = np.linalg.eigh(covs)
        if np.any(lam < 0):
            raise ValueError("mixture covariances must be positive semi-definite")
        self.mixture = mixture
        self.sde = sde
        self.shape = (means.shape[1],)
        self._log_w = jnp.asarray(np.log(w), jnp.float32)
        self._means = jnp.asarray(means, jnp.float32)
        self._vecs = jnp.asarray(vecs, jnp.float32)
        self._lam = jnp.asarray(lam, jnp.float32)
        # Isotropic components in few dimensions take a rotation-free path written coordinate
        # by coordinate: every operation is then elementwise over the K components, or a
        # reduction over them, which XLA CPU vectorises across particles. (A [K, d] array with
        # reductions over d = 2, or the rotations as a contraction, became small batched dots
        # under vmap: 1.3-2.6x slower.)
        self._iso_coords = (bool(np.all(lam.max(axis=1) == lam.min(axis=1)))
                            and means.shape[1] <= _MAX_UNROLLED_DIM)

    def _iso_parts(self, x, t):
        """Isotropic path: ``(u, var, quad, log_joint)`` with ``u[j] = x_j - alpha mu_{k,j}``
        (a list of ``[K]`` arrays, one per coordinate) and ``var = alpha^2 l_k + sigma^2``."""
        a, s = self.sde.alpha(t), self.sde.sigma(t)
        d = self.shape[0]
        var = a * a * self._lam[:, 0] + s * s
        u = [x[j] - a * self._means[:, j] for j in range(d)]
        quad = sum(v * v for v in u) / var
        log_joint = (self._log_w - 0.5 * quad - 0.5 * d * jnp.log(var)
                     - 0.5 * d * jnp.log(2.0 * jnp.pi))
        return u, var, quad, log_joint

    def _iso_score(self, x, t):
        u, var, quad, log_joint = self._iso_parts(x, t)
        rv = jax.nn.softmax(log_joint) / var
        return jnp.stack([-jnp.sum(rv * v) for v in u]), rv, quad

    def _parts(self, x, t):
        a, s = self.sde.alpha(t), self.sde.sigma(t)
        z = jnp.einsum("kij,ki->kj", self._vecs, x[None, :] - a * self._means)
        var = a * a * self._lam + s * s
        d = self.shape[0]
        log_n = (-0.5 * jnp.sum(z * z / var, axis=1) - 0.5 * jnp.sum(jnp.log(var), axis=1)
                 - 0.5 * d * jnp.log(2.0 * jnp.pi))
        return z, var, self._log_w + log_n

    def __call__(self, x, t):
        if self._iso_coords:
            return self._iso_score(x, t)[0]
        z, var, log_joint = self._parts(x, t)
        r = jax.nn.softmax(log_joint)
        return -jnp.einsum("k,kij,kj->i", r, self._vecs, z / var)

    def score_and_divergence(self, x, t):
        """``(grad log q_t(x), Laplacian of log q_t(x))``.

        With ``V_k = alpha^2 C_k + sigma^2 I`` and ``m_k = V_k^{-1} (x - alpha mu_k)``:
        ``s = -sum_k r_k m_k`` and ``div s = sum_k r_k (|m_k|^2 - tr V_k^{-1}) - |s|^2`` (the
        Laplacian of ``log q`` is ``Lap q / q - |s|^2``). When every ``C_k`` is a multiple of
        the identity (``V_k = v_k I``), ``|m_k|^2 - tr V_k^{-1}`` is ``(quad_k - d) / v_k`` with
        ``quad_k`` the quadratic form of the density, so the divergence is one more sum over
        the components: about 1.1x the cost of the score on CPU.
        """
        if self._iso_coords:
            s, rv, quad = self._iso_score(x, t)
            return s, jnp.sum(rv * (quad - self.shape[0])) - jnp.sum(s * s)
        z, var, log_joint = self._parts(x, t)
        r = jax.nn.softmax(log_joint)
        m = z / var  # m_k in each component's eigenbasis: the same norm
        feats = jnp.concatenate(
            [jnp.einsum("kij,kj->ki", self._vecs, m),
             (jnp.sum(m * m, axis=1) - jnp.sum(1.0 / var, axis=1))[:, None]], axis=1)
        out = r @ feats
        s = -out[:-1]
        return s, out[-1] - jnp.sum(s * s)

    def log_prob(self, x, t):
        """``log q_t(x)``."""
        if self._iso_coords:
            return jax.nn.logsumexp(self._iso_parts(x, t)[3])
        return jax.nn.logsumexp(self._parts(x, t)[2])

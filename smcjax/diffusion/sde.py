"""Forward noising SDEs with affine marginals: variance-preserving, variance-exploding and EDM.

Every schedule here is a linear forward SDE on ``x in R^d`` (any array shape)::

    dx = f_t(x) dt + g_t dW,      f_t(x) = a(t) x,

whose transition from the data is affine Gaussian, ``x_t | x_0 ~ N(alpha_t x_0, sigma_t^2 I)``,
with ``a(t) = d log alpha_t / dt``, ``g_t^2 = d sigma_t^2 / dt - 2 a(t) sigma_t^2`` and
``div f_t = d * a(t)``.

=========  =========================================  ===================  ==================
schedule   alpha_t, sigma_t                           g_t^2                t range
=========  =========================================  ===================  ==================
VP         exp(-B(t)/2), sqrt(1 - alpha_t^2),          b(t) = b_min +       [0, 1]
           B(t) = b_min t + (b_max - b_min) t^2 / 2    t (b_max - b_min)
VE         1, s_min (s_max / s_min)^t                 2 sigma_t^2 log(s_max/s_min)  [0, 1]
EDM        1, t (time is the noise level)              2 t                  [s_min, s_max]
=========  =========================================  ===================  ==================

Each schedule also fixes the sampler's time interval ``[t_min, t_max]`` inside its valid range
and a default decreasing time grid: uniform in ``t`` for VP and VE (geometric in ``sigma`` for
VE) and the Karras et al. (2022) grid with ``rho = 7`` for EDM. The terminal law used to start
reverse-time samplers is ``N(0, prior_std^2 I)`` with ``prior_std = sigma_{t_max}``, which
ignores ``alpha_{t_max} x_0``; choose ``t_max`` so that this is negligible for your data.

References: Y. Song et al., "Score-based generative modeling through stochastic differential
equations", ICLR 2021 (VP, VE); T. Karras et al., "Elucidating the design space of
diffusion-based generative models", NeurIPS 2022 (EDM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["VP", "VE", "EDM", "check_times"]


def _positive(name, value):
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


class _Affine:
    """Shared methods; subclasses define ``alpha``, ``sigma``, ``log_alpha``, ``drift_coef``,
    ``diffusion_sq``, ``t_range`` and ``default_times``."""

    t_min: float
    t_max: float

    def _check_interval(self):
        lo, hi = self.t_range
        if not (lo <= self.t_min < self.t_max <= hi):
            raise ValueError(
                f"{type(self).__name__}: need {lo} <= t_min < t_max <= {hi}, got "
                f"t_min={self.t_min}, t_max={self.t_max}"
            )

    def drift(self, x, t):
        """``f_t(x) = a(t) x``."""
        return self.drift_coef(t).astype(x.dtype) * x

    def div_drift(self, t, dim: int):
        """``div f_t = dim * a(t)`` for ``dim`` scalar coordinates."""
        return dim * self.drift_coef(t)

    def diffusion(self, t):
        """``g_t``."""
        return jnp.sqrt(self.diffusion_sq(t))

    def alpha_dot(self, t):
        """``d alpha_t / dt`` (forward-mode autodiff of :meth:`alpha`)."""
        return jax.jvp(self.alpha, (jnp.asarray(t, jnp.float32),), (jnp.ones((), jnp.float32),))[1]

    def sigma_dot(self, t):
        """``d sigma_t / dt``."""
        return jax.jvp(self.sigma, (jnp.asarray(t, jnp.float32),), (jnp.ones((), jnp.float32),))[1]

    @property
    def prior_std(self) -> float:
        """Standard deviation of the terminal law ``N(0, prior_std^2 I)`` (``sigma_{t_max}``)."""
        return float(self.sigma(jnp.asarray(self.t_max, jnp.float32)))

    def check_times(self, times) -> np.ndarray:
        """Validate a reverse-time grid (see :func:`check_times`)."""
        return check_times(self, times)


def check_times(sde, times) -> np.ndarray:
    """Validate a reverse-time grid ``t_0 > t_1 > ... > t_K`` for ``sde``.

    Args:
      sde: a schedule of this module.
      times: concrete 1-d array of at least two times, strictly decreasing, inside the
        schedule's valid range ``sde.t_range``.

    Returns:
      The grid as a float32 NumPy array.

    Raises:
      ValueError: if the grid is not concrete, not 1-d, too short, not strictly decreasing,
        not finite, or has a time outside ``sde.t_range``.
    """
    try:
        grid = np.asarray(times, dtype=np.float64)
    except Exception as err:  # noqa: BLE001 -- a traced array cannot be checked
        raise ValueError(f"times must be a concrete 1-d array, got {times!r}") from err
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"times must be a 1-d array of at least 2 times, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("times must be finite")
    lo, hi = sde.t_range
    slack = 1e-6 * max(abs(lo), abs(hi), 1.0)  # float32 rounding of the end points
    if grid.min() < lo - slack or grid.max() > hi + slack:
        raise ValueError(
            f"times must lie in the {type(sde).__name__} schedule's range [{lo}, {hi}]; got "
            f"[{grid.min()}, {grid.max()}]"
        )
    if not np.all(np.diff(grid) < 0):
        raise ValueError("times must be strictly decreasing (reverse time: from noise to data)")
    return grid.astype(np.float32)


def step_grid(sde, num_steps, times=None) -> np.ndarray:
    """The reverse-time grid of a sampler with ``num_steps`` steps: ``times`` checked with
    :func:`check_times`, or ``sde.default_times(num_steps)`` when ``times`` is None.

    Raises:
      ValueError: if ``num_steps`` is not an int ``>= 1``, or ``times`` is not a valid grid of
        ``num_steps + 1`` points.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
    grid = sde.default_times(num_steps) if times is None else sde.check_times(times)
    if grid.shape[0] != num_steps + 1:
        raise ValueError(f"times has {grid.shape[0]} points but num_steps={num_steps} needs "
                         f"{num_steps + 1}")
    return grid


@dataclass(frozen=True)
class VP(_Affine):
    """Variance-preserving SDE with a linear ``b(t)``: ``dx = -b(t)/2 x dt + sqrt(b(t)) dW``.

    Attributes:
      beta_min, beta_max: ``b(0)`` and ``b(1)``.
      t_min, t_max: the sampler's time interval inside ``[0, 1]``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0
    t_range = (0.0, 1.0)

    def __post_init__(self):
        _positive("beta_min", self.beta_min)
        if not float(self.beta_max) >= float(self.beta_min):
            raise ValueError(f"need beta_max >= beta_min, got {self.beta_max} < {self.beta_min}")
        self._check_interval()

    def _int_beta(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def log_alpha(self, t):
        return -0.5 * self._int_beta(jnp.asarray(t, jnp.float32))

    def alpha(self, t):
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        # 1 - alpha^2 = -expm1(-B(t)), accurate for small t.
        return jnp.sqrt(-jnp.expm1(-self._int_beta(jnp.asarray(t, jnp.float32))))

    def diffusion_sq(self, t):
        return self.beta_min + jnp.asarray(t, jnp.float32) * (self.beta_max - self.beta_min)

    def drift_coef(self, t):
        return -0.5 * self.diffusion_sq(t)

    def default_times(self, num_steps: int) -> np.ndarray:
        """Uniform grid from ``t_max`` down to ``t_min``."""
        return np.linspace(self.t_max, self.t_min, num_steps + 1, dtype=np.float32)


@dataclass(frozen=True)
class VE(_Affine):
    """Variance-exploding SDE: ``sigma_t = s_min (s_max/s_min)^t``, ``f = 0``.

    Attributes:
      sigma_min, sigma_max: noise levels at ``t = 0`` and ``t = 1``.
      t_min, t_max: the sampler's time interval inside ``[0, 1]``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = 0.0
    t_max: float = 1.0
    t_range = (0.0, 1.0)

    def __post_init__(self):
        _positive("sigma_min", self.sigma_min)
        if not float(self.sigma_max) > float(self.sigma_min):
            raise ValueError(f"need sigma_max > sigma_min, got {self.sigma_max}, {self.sigma_min}")
        self._check_interval()

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, jnp.float32))

    def sigma(self, t):
        t = jnp.asarray(t, jnp.float32)
        return self.sigma_min * jnp.exp(t * math.log(self.sigma_max / self.sigma_min))

    def diffusion_sq(self, t):
        return 2.0 * jnp.square(self.sigma(t)) * math.log(self.sigma_max / self.sigma_min)

    def drift_coef(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def default_times(self, num_steps: int) -> np.ndarray:
        """Uniform in ``t``, i.e. geometric in ``sigma``."""
        return np.linspace(self.t_max, self.t_min, num_steps + 1, dtype=np.float32)


@dataclass(frozen=True)
class EDM(_Affine):
    """The EDM parameterisation: ``sigma_t = t``, ``alpha_t = 1``, ``g_t^2 = 2 t``.

    Attributes:
      sigma_min, sigma_max: the valid (and sampled) time range; time equals the noise level.
      rho: exponent of the default Karras grid
        ``t_i = (s_max^(1/rho) + i/K (s_min^(1/rho) - s_max^(1/rho)))^rho``.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self):
        _positive("sigma_min", self.sigma_min)
        _positive("rho", self.rho)
        if not float(self.sigma_max) > float(self.sigma_min):
            raise ValueError(f"need sigma_max > sigma_min, got {self.sigma_max}, {self.sigma_min}")

    @property
    def t_range(self):
        return (self.sigma_min, self.sigma_max)

    @property
    def t_min(self):
        return self.sigma_min

    @property
    def t_max(self):
        return self.sigma_max

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, jnp.float32))

    def sigma(self, t):
        return jnp.asarray(t, jnp.float32)

    def diffusion_sq(self, t):
        return 2.0 * jnp.asarray(t, jnp.float32)

    def drift_coef(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def default_times(self, num_steps: int) -> np.ndarray:
        """The Karras et al. (2022) grid with exponent ``rho``."""
        i = np.arange(num_steps + 1, dtype=np.float64) / num_steps
        lo, hi = self.sigma_min ** (1.0 / self.rho), self.sigma_max ** (1.0 / self.rho)
        grid = (hi + i * (lo - hi)) ** self.rho
        grid[0], grid[-1] = self.sigma_max, self.sigma_min
        return grid.astype(np.float32)

"""Eight schools (Rubin 1981), non-centred: reference answers by 1-d quadrature.

Model (``J = 8`` schools, estimated coaching effects ``y_j`` with known standard errors
``sigma_j``)::

    mu       ~ N(0, 5²)
    tau      ~ HalfCauchy(5)
    eta_j    ~ N(0, 1)                          j = 1..8   (non-centred: theta_j = mu + tau eta_j)
    y_j | .  ~ N(mu + tau eta_j, sigma_j²)

θ is the dict ``{"mu": float[], "tau": float[], "eta": float[8]}``; the
:class:`~smcjax.Bijection` is ``tau = exp(z)`` (log-det ``z``). ``log_likelihood_per_datum(θ, j)``
is school ``j``'s Gaussian log-density.

Reference answers (:func:`exact`). Given ``tau``, ``y_j ~ N(mu, v_j)`` with ``v_j = sigma_j² +
tau²``, and ``mu`` integrates out in closed form (Gelman et al., *Bayesian Data Analysis*, 3rd
ed., §5.4)::

    P(tau) = 1/25 + Σ_j 1/v_j,    b(tau) = Σ_j y_j / v_j,    mu_hat = b / P
    log p(y | tau) = -1/2 Σ_j log(2π v_j) - 1/2 Σ_j y_j²/v_j + b²/(2P) - 1/2 log(25 P)
    mu | tau, y ~ N(mu_hat, 1/P)
    theta_j | mu, tau, y ~ N(w_j (y_j/sigma_j² + mu/tau²), w_j),   w_j = 1/(1/sigma_j² + 1/tau²)

leaving one integral over ``tau``. :func:`exact` evaluates it with the trapezoid rule in
``log tau`` (4001 points on [-20, 12]); the tests check it against SciPy's adaptive ``quad``.
Results: ``log Z = -31.31135``, ``E[mu | y] = 4.3968``, ``E[tau | y] = 3.5977``.

Data: D. B. Rubin (1981), "Estimation in parallel randomized experiments", J. Educational
Statistics 6(4), 377-401 (as tabulated in Gelman et al., BDA3, Table 5.2).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smcjax.bayes import BayesianModel, Bijection

__all__ = ["Y", "SIGMA", "MU_SCALE", "TAU_SCALE", "EightSchoolsExact", "make_model", "exact",
           "log_marginal_likelihood"]

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
MU_SCALE = 5.0
TAU_SCALE = 5.0


class EightSchoolsExact(NamedTuple):
    """Reference answers (float64) from :func:`exact`."""

    log_evidence: float
    mu_mean: float
    mu_sd: float
    tau_mean: float
    tau_sd: float
    theta_mean: np.ndarray  # [8], theta_j = mu + tau eta_j
    theta_sd: np.ndarray  # [8]


def _conditionals(tau, y=Y, sigma=SIGMA):
    """``(log p(y | tau), mu_hat, P)`` for an array of ``tau`` (NumPy float64)."""
    tau = np.asarray(tau, np.float64)[..., None]
    v = sigma**2 + tau**2
    prec = 1.0 / MU_SCALE**2 + np.sum(1.0 / v, -1)
    b = np.sum(y / v, -1)
    log_lik = (-0.5 * np.sum(np.log(2 * np.pi * v) + y**2 / v, -1) + 0.5 * b**2 / prec
               - 0.5 * np.log(MU_SCALE**2 * prec))
    return log_lik, b / prec, prec


def log_marginal_likelihood(tau):
    """``log p(y | tau)`` with ``mu`` and ``eta`` integrated out (NumPy, vectorised)."""
    return _conditionals(tau)[0]


def _log_half_cauchy(tau):
    return np.log(2.0 / (np.pi * TAU_SCALE)) - np.log1p((tau / TAU_SCALE) ** 2)


@functools.lru_cache(maxsize=1)
def exact(num_grid: int = 4001) -> EightSchoolsExact:
    """Evidence and posterior moments by trapezoid quadrature over ``log tau`` (see module)."""
    s = np.linspace(-20.0, 12.0, num_grid)
    tau = np.exp(s)
    log_lik, mu_hat, prec = _conditionals(tau)
    log_f = _log_half_cauchy(tau) + s + log_lik  # density of log tau times p(y | tau)
    shift = log_f.max()
    f = np.exp(log_f - shift)
    mass = np.sum(f)
    post = f / mass

    def e(x):
        return np.sum(post * x, -1)

    mu_mean = e(mu_hat)
    mu_var = e(1.0 / prec + mu_hat**2) - mu_mean**2
    tau_mean = e(tau)
    tau_var = e(tau**2) - tau_mean**2
    t, mh, pr = tau[:, None], mu_hat[:, None], prec[:, None]
    w = 1.0 / (1.0 / SIGMA**2 + 1.0 / t**2)
    m_theta = w * (Y / SIGMA**2 + mh / t**2)  # E[theta_j | tau, y]
    v_theta = w + (w / t**2) ** 2 / pr  # Var[theta_j | tau, y]
    theta_mean = np.sum(post[:, None] * m_theta, 0)
    theta_var = np.sum(post[:, None] * (v_theta + m_theta**2), 0) - theta_mean**2
    return EightSchoolsExact(
        log_evidence=float(shift + np.log(mass * (s[1] - s[0]))),
        mu_mean=float(mu_mean), mu_sd=float(np.sqrt(mu_var)),
        tau_mean=float(tau_mean), tau_sd=float(np.sqrt(tau_var)),
        theta_mean=theta_mean, theta_sd=np.sqrt(theta_var),
    )


def _normal_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * np.log(2 * np.pi)


def make_model(*, dtype=jnp.float32) -> BayesianModel:
    """Non-centred eight schools as a :class:`~smcjax.BayesianModel` (θ = ``{mu, tau, eta}``)."""
    y = jnp.asarray(Y, dtype)
    sigma = jnp.asarray(SIGMA, dtype)
    num = Y.shape[0]

    def log_prior(theta):
        mu, tau, eta = theta["mu"], theta["tau"], theta["eta"]
        lp_tau = jnp.where(tau > 0, np.log(2.0 / (np.pi * TAU_SCALE))
                           - jnp.log1p((tau / TAU_SCALE) ** 2), -jnp.inf)
        return (_normal_logpdf(mu, 0.0, MU_SCALE) + lp_tau
                + jnp.sum(_normal_logpdf(eta, 0.0, 1.0)))

    def log_likelihood(theta):
        return jnp.sum(_normal_logpdf(y, theta["mu"] + theta["tau"] * theta["eta"], sigma))

    def log_likelihood_per_datum(theta, j):
        return _normal_logpdf(y[j], theta["mu"] + theta["tau"] * theta["eta"][j], sigma[j])

    def sample_prior(key):
        k_mu, k_tau, k_eta = jax.random.split(key, 3)
        return {"mu": MU_SCALE * jax.random.normal(k_mu, (), dtype),
                "tau": jnp.abs(TAU_SCALE * jax.random.cauchy(k_tau, (), dtype)),
                "eta": jax.random.normal(k_eta, (num,), dtype)}

    bijection = Bijection(
        forward=lambda z: {"mu": z["mu"], "tau": jnp.exp(z["tau"]), "eta": z["eta"]},
        inverse=lambda t: {"mu": t["mu"], "tau": jnp.log(t["tau"]), "eta": t["eta"]},
        log_det_jacobian=lambda z: z["tau"],
    )
    return BayesianModel(log_prior, log_likelihood, sample_prior,
                         log_likelihood_per_datum=log_likelihood_per_datum, num_data=num,
                         bijection=bijection, name="eight_schools")

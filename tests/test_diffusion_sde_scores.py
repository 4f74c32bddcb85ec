"""Schedules, score models, converters, the flax adapter and the exact Gaussian-mixture algebra."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smcjax.diffusion import (
    EDM,
    VE,
    VP,
    GaussianMixtureScore,
    check_score,
    from_denoiser,
    from_eps,
    from_flax,
    from_velocity,
    gmm,
    score_and_divergence,
)

SCHEDULES = [VP(), VE(sigma_min=0.01, sigma_max=20.0), EDM(sigma_min=0.002, sigma_max=80.0)]
MIX2 = gmm.make([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]],
                [[[0.6, 0.2], [0.2, 0.4]], [[0.5, -0.1], [-0.1, 0.7]]])


def _times(sde, n=5):
    lo, hi = sde.t_min, sde.t_max
    return np.linspace(lo + 0.1 * (hi - lo), hi, n, dtype=np.float32)


@pytest.mark.parametrize("sde", SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_coefficients_match_the_marginals(sde):
    """a(t) = d log alpha/dt and g^2 = d sigma^2/dt - 2 a sigma^2 (the affine-SDE identities)."""
    for t in _times(sde):
        t = jnp.float32(t)
        dlog_alpha = jax.grad(sde.log_alpha)(t)
        dvar = jax.grad(lambda u: jnp.square(sde.sigma(u)))(t)
        a = sde.drift_coef(t)
        np.testing.assert_allclose(a, dlog_alpha, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(sde.diffusion_sq(t), dvar - 2 * a * sde.sigma(t) ** 2,
                                   rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(sde.alpha(t), jnp.exp(sde.log_alpha(t)), rtol=1e-6)
        np.testing.assert_allclose(sde.div_drift(t, 3), 3 * a, rtol=1e-6)
    grid = sde.default_times(10)
    assert grid.shape == (11,) and np.all(np.diff(grid) < 0)
    np.testing.assert_allclose([grid[0], grid[-1]], [sde.t_max, sde.t_min], rtol=1e-6)


def test_bad_schedules_and_times():
    with pytest.raises(ValueError, match="t_min"):
        VP(t_min=-0.1)
    with pytest.raises(ValueError, match="t_min"):
        VE(t_min=0.5, t_max=0.4)
    with pytest.raises(ValueError, match="sigma_max"):
        EDM(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="positive"):
        VP(beta_min=0.0)
    with pytest.raises(ValueError, match="range"):
        VP().check_times([1.5, 0.5, 0.1])
    with pytest.raises(ValueError, match="range"):
        EDM().check_times([80.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="decreasing"):
        VP().check_times([0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        VP().check_times([0.5])


# isotropic components with different variances (the coordinate-wise path), in 3-d
MIX_ISO3 = gmm.make([0.2, 0.5, 0.3], [[-1.0, 0.5, 0.0], [1.5, -0.5, 1.0], [0.0, 2.0, -1.0]],
                    [0.3 * np.eye(3), 0.8 * np.eye(3), 0.5 * np.eye(3)])


@pytest.mark.parametrize("mix", [MIX2, MIX_ISO3], ids=["full", "isotropic"])
@pytest.mark.parametrize("sde", SCHEDULES, ids=lambda s: type(s).__name__)
def test_mixture_score_is_the_gradient_of_the_exact_noised_density(sde, mix):
    score = GaussianMixtureScore(mix, sde)
    assert score._iso_coords == (mix is MIX_ISO3)
    d = score.shape[0]
    rng = np.random.default_rng(0)
    log_prob = jax.jit(jax.vmap(score.log_prob, in_axes=(0, None)))
    grad = jax.jit(jax.vmap(jax.grad(score.log_prob), in_axes=(0, None)))
    vscore = jax.jit(jax.vmap(score, in_axes=(0, None)))
    for t in _times(sde, 3):
        qt = gmm.noised(mix, float(sde.alpha(t)), float(sde.sigma(t)))
        x = rng.normal(size=(16, d)) * float(sde.sigma(t) + 1)
        x32 = jnp.asarray(x, jnp.float32)
        np.testing.assert_allclose(log_prob(x32, t), gmm.log_prob(qt, x), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(vscore(x32, t), grad(x32, t), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("sde", SCHEDULES, ids=lambda s: type(s).__name__)
def test_mixture_divergence_matches_the_autodiff_trace(sde):
    """The mixture's analytic ``div s`` (isotropic and general covariances) equals the trace of
    the autodiff Jacobian, which is also the fallback for scores without their own; and it is
    the Laplacian of ``log q_t`` (second differences of the exact log density)."""
    iso = GaussianMixtureScore(gmm.make([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], 0.3), sde)
    full = GaussianMixtureScore(MIX2, sde)
    assert iso._iso_coords and not full._iso_coords
    rng = np.random.default_rng(1)
    for score in (iso, full):
        own = jax.jit(jax.vmap(score.score_and_divergence, in_axes=(0, None)))
        auto = jax.jit(jax.vmap(lambda x, t, f=score: score_and_divergence(
            lambda y, u: f(y, u), x, t), in_axes=(0, None)))
        for t in _times(sde, 3):
            x = jnp.asarray(rng.normal(size=(8, 2)) * float(sde.sigma(t) + 1), jnp.float32)
            (s1, d1), (s2, d2) = own(x, t), auto(x, t)
            np.testing.assert_allclose(s1, jax.vmap(score, in_axes=(0, None))(x, t), rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-5)
    # against the density itself, in float64 NumPy: Lap log q by central second differences
    t = _times(sde, 3)[0]
    qt = gmm.noised(MIX2, float(sde.alpha(t)), float(sde.sigma(t)))
    x0, h = np.array([0.4, -0.3]), 1e-3
    lap = sum((gmm.log_prob(qt, (x0 + h * e)[None])[0] + gmm.log_prob(qt, (x0 - h * e)[None])[0]
               - 2 * gmm.log_prob(qt, x0[None])[0]) / h**2 for e in np.eye(2))
    d = float(full.score_and_divergence(jnp.asarray(x0, jnp.float32), t)[1])
    assert abs(d - lap) < 1e-3 * max(1.0, abs(lap)), (d, lap)


def test_divergence_fallback_handles_shaped_particles():
    """A score on ``[2, 2]`` particles: div of s(x) = A x is the trace of A (as a 4x4 map)."""
    a = jnp.arange(16.0).reshape(4, 4) / 10.0

    def score(x, t):
        return (a @ x.reshape(-1)).reshape(2, 2) * t

    s, d = score_and_divergence(score, jnp.ones((2, 2)), 2.0)
    assert s.shape == (2, 2)
    np.testing.assert_allclose(float(d), 2.0 * float(jnp.trace(a)), rtol=1e-6)


@pytest.mark.parametrize("sde", SCHEDULES, ids=lambda s: type(s).__name__)
def test_converters_recover_the_score(sde):
    """Denoiser, noise predictor and flow velocity built from the exact score convert back to it."""
    s = GaussianMixtureScore(MIX2, sde)

    def denoiser(x, t):
        return (x + sde.sigma(t) ** 2 * s(x, t)) / sde.alpha(t)

    def eps(x, t):
        return -sde.sigma(t) * s(x, t)

    def velocity(x, t):
        return sde.alpha_dot(t) * denoiser(x, t) + sde.sigma_dot(t) * eps(x, t)

    x = jnp.array([0.3, -0.7])
    for t in _times(sde, 3):
        want = s(x, t)
        for conv, fn in [(from_denoiser, denoiser), (from_eps, eps), (from_velocity, velocity)]:
            np.testing.assert_allclose(conv(fn, sde)(x, t), want, rtol=2e-3, atol=1e-5)


class _Eps(nn.Module):
    """A toy eps-network: eps(x, t) = W x + b t (+ a class offset)."""

    @nn.compact
    def __call__(self, x, t, label=0.0):
        return nn.Dense(x.shape[-1])(x) + t * self.param("b", nn.initializers.ones, (2,)) + label


def test_flax_adapter():
    net = _Eps()
    variables = net.init(jax.random.key(0), jnp.zeros(2), 0.5)
    sde = VP()
    x, t = jnp.array([0.4, -1.0]), jnp.float32(0.3)
    expected = -net.apply(variables, x, t) / sde.sigma(t)
    np.testing.assert_allclose(from_flax(net, variables, kind="eps", sde=sde)(x, t), expected,
                               rtol=1e-6)
    np.testing.assert_allclose(from_flax(net, variables["params"], kind="eps", sde=sde)(x, t),
                               expected, rtol=1e-6)
    np.testing.assert_allclose(from_flax(net, variables)(x, t), net.apply(variables, x, t))
    labelled = from_flax(net, variables, kind="eps", sde=sde, args=(2.0,))
    np.testing.assert_allclose(labelled(x, t), -(net.apply(variables, x, t) + 2.0) / sde.sigma(t),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        from_flax(net, variables, kind="logits")
    with pytest.raises(ValueError, match="sde"):
        from_flax(net, variables, kind="eps")


def test_check_score_rejects_wrong_shapes():
    check_score(lambda x, t: -x, (2,))
    with pytest.raises(ValueError, match="shaped like x"):
        check_score(lambda x, t: jnp.sum(x), (2,))
    with pytest.raises(ValueError, match="shaped like x"):
        check_score(lambda x, t: jnp.concatenate([x, x]), (2,))
    with pytest.raises(ValueError, match="traced"):
        check_score(lambda x, t: x @ jnp.ones((3, 3)), (2,))


def _grid(log_density, dim):
    bounds = [(-8.0, 8.0)] * dim
    return gmm.grid_summary(log_density, bounds, 20001 if dim == 1 else 401)


def test_closed_form_mixture_algebra_matches_quadrature():
    """Products, integer powers, Gaussian tilts, CFG and linear-Gaussian posteriors."""
    q2 = gmm.make([0.6, 0.4], [[-1.0, 1.0], [1.5, -1.0]], 1.0)
    gauss = gmm.make([1.0], [[0.0, 0.0]], 2.0)
    cases = [
        (gmm.product(MIX2, q2), lambda x: gmm.log_prob(MIX2, x) + gmm.log_prob(q2, x)),
        (gmm.power(MIX2, 3), lambda x: 3 * gmm.log_prob(MIX2, x)),
        (gmm.gaussian_tilt(MIX2, [1.0, 1.0], 2 * np.eye(2), 1.5),
         lambda x: gmm.log_prob(MIX2, x) - 1.5 * np.sum((x - 1.0) ** 2, -1)),
        (gmm.cfg_target(gauss, MIX2, 2),
         lambda x: 2 * gmm.log_prob(MIX2, x) - gmm.log_prob(gauss, x)),
        (gmm.linear_gaussian_posterior(MIX2, [[1.0, 0.5]], [0.7], [[0.3]]),
         lambda x: gmm.log_prob(MIX2, x) - 0.5 * (0.7 - x[..., 0] - 0.5 * x[..., 1]) ** 2 / 0.3
         - 0.5 * np.log(2 * np.pi * 0.3)),
    ]
    for (mix, log_z), log_density in cases:
        g = _grid(log_density, 2)
        mean, cov = gmm.moments(mix)
        np.testing.assert_allclose(log_z, g["log_z"], atol=1e-8)
        np.testing.assert_allclose(mean, g["mean"], atol=1e-8)
        np.testing.assert_allclose(cov, g["cov"], atol=1e-8)
        np.testing.assert_allclose(gmm.log_prob(mix, np.zeros(2)) + log_z, log_density(np.zeros(2)),
                                   atol=1e-8)


def test_mixture_helpers():
    mix = gmm.make([1.0, 3.0], [-1.0, 2.0], [0.5, 1.0])
    assert mix.means.shape == (2, 1) and np.isclose(mix.weights.sum(), 1.0)
    x = gmm.sample(mix, 200_000, seed=1)
    mean, cov = gmm.moments(mix)
    assert abs(x.mean() - mean[0]) < 4 * np.sqrt(cov[0, 0] / len(x))
    noised = gmm.noised(mix, 0.5, 2.0)
    np.testing.assert_allclose(gmm.moments(noised)[1], 0.25 * cov + 4.0)
    with pytest.raises(ValueError, match="integer"):
        gmm.power(mix, 2.5)
    with pytest.raises(ValueError, match="single-Gaussian"):
        gmm.cfg_target(mix, mix, 2)
    with pytest.raises(ValueError, match="weights"):
        gmm.make([1.0, -1.0], [0.0, 1.0], 1.0)

"""A small class-conditional 2-d diffusion model (flax + optax) with exact reference answers.

Data: eight Gaussian modes on a circle of radius 3 (variance 0.1 each). Class A uses modes 0-4,
class B modes 3-7 (modes 3 and 4 are shared), each with its own weights; the unconditional
law is ``q_u = (q_A + q_B) / 2``. Because the data are Gaussian mixtures, every reshaped target
of the notebook has an exact answer (:mod:`smcjax.diffusion.gmm`): annealing ``q_u^beta``,
the product ``q_A q_B`` (mass only on the shared modes) and classifier-free guidance
``q_A^w q_u^{1-w}``.

Network: an epsilon-predictor ``eps(x, t, label)`` (label 0 = A, 1 = B, 2 = unconditional),
an MLP on ``[x, Fourier features of t, label embedding]``, trained by denoising score matching
on the VP schedule with the label dropped to 2 for 30% of the batch (so one network gives the
conditional and unconditional scores). ``python models/diffusion_toy.py`` trains it (15000
Adam steps, a few minutes on two CPU cores) and writes ``diffusion_toy_params.npz`` next to this file;
:func:`load_params` reads it.
"""

from __future__ import annotations

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from smcjax.diffusion import VP, from_flax, gmm

__all__ = ["ANGLES", "class_mixtures", "EpsNet", "sample_data", "train", "save_params",
           "load_params", "score_models", "SDE", "PARAMS_PATH"]

SDE = VP()
PARAMS_PATH = pathlib.Path(__file__).with_name("diffusion_toy_params.npz")
ANGLES = np.arange(8) * (2 * np.pi / 8)
_MEANS = 3.0 * np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
_VAR = 0.1
_WEIGHTS_A = np.array([0.10, 0.15, 0.20, 0.25, 0.30])   # modes 0..4
_WEIGHTS_B = np.array([0.40, 0.10, 0.20, 0.15, 0.15])   # modes 3..7


def class_mixtures():
    """``(q_A, q_B, q_u)`` as :class:`~smcjax.diffusion.gmm.GaussianMixture`."""
    qa = gmm.make(_WEIGHTS_A, _MEANS[:5], _VAR)
    qb = gmm.make(_WEIGHTS_B, _MEANS[3:], _VAR)
    weights = np.zeros(8)
    weights[:5] += 0.5 * _WEIGHTS_A
    weights[3:] += 0.5 * _WEIGHTS_B
    return qa, qb, gmm.make(weights, _MEANS, _VAR)


def mode_centers():
    """The eight mode means ``[8, 2]`` (mode masses use their Voronoi cells)."""
    return _MEANS.copy()


class EpsNet(nn.Module):
    """``eps(x, t, label)`` for one particle (``x: [2]``, scalar ``t``, integer label)."""

    width: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, x, t, label):
        freqs = jnp.exp(jnp.linspace(0.0, jnp.log(100.0), 8))
        tf = jnp.concatenate([jnp.sin(freqs * t), jnp.cos(freqs * t)])
        emb = nn.Embed(3, 16)(jnp.asarray(label, jnp.int32))
        h = jnp.concatenate([x, tf, emb])
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.width)(h))
        return nn.Dense(2)(h)


def sample_data(key, n):
    """``(x [n, 2], label [n])`` with labels 0/1 equally likely."""
    qa, qb, _ = class_mixtures()
    k1, k2, k3 = jax.random.split(key, 3)
    seeds = np.asarray(jax.random.randint(k1, (2,), 0, 2**31 - 1))
    xa = gmm.sample(qa, n, int(seeds[0]))
    xb = gmm.sample(qb, n, int(seeds[1]))
    label = np.asarray(jax.random.bernoulli(k2, 0.5, (n,))).astype(np.int32)
    x = np.where(label[:, None] == 0, xa, xb)
    return jnp.asarray(x, jnp.float32), jnp.asarray(label)


def train(key, num_steps=15000, batch=1024, learning_rate=2e-3, drop_label=0.3, verbose=False):
    """Denoising score matching on VP: minimise ``|eps_theta(a x0 + s eps, t, c) - eps|^2``.

    Returns the parameters averaged over the last half of training (Polyak averaging), which
    smooths the score; guidance and products are sensitive to score errors.
    """
    net = EpsNet()
    k_init, k_data, key = jax.random.split(key, 3)
    params = net.init(k_init, jnp.zeros(2), 0.5, 0)["params"]
    schedule = optax.cosine_decay_schedule(learning_rate, num_steps)
    opt = optax.adam(schedule)
    state = opt.init(params)
    data_x, data_c = sample_data(k_data, 200_000)
    apply = jax.vmap(lambda p, x, t, c: net.apply({"params": p}, x, t, c),
                     in_axes=(None, 0, 0, 0))

    def loss_fn(p, k):
        ki, kt, ke, kd = jax.random.split(k, 4)
        idx = jax.random.randint(ki, (batch,), 0, data_x.shape[0])
        x0, c = data_x[idx], data_c[idx]
        c = jnp.where(jax.random.bernoulli(kd, drop_label, (batch,)), 2, c)
        t = jax.random.uniform(kt, (batch,), minval=SDE.t_min, maxval=1.0)
        eps = jax.random.normal(ke, x0.shape)
        xt = SDE.alpha(t)[:, None] * x0 + SDE.sigma(t)[:, None] * eps
        return jnp.mean(jnp.sum((apply(p, xt, t, c) - eps) ** 2, axis=1))

    @jax.jit
    def update(p, s, k):
        loss, grads = jax.value_and_grad(loss_fn)(p, k)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    start = num_steps // 2
    average = None
    for i in range(num_steps):
        params, state, loss = update(params, state, jax.random.fold_in(key, i))
        if i >= start:
            n = i - start
            average = params if average is None else jax.tree.map(
                lambda a, p, n=n: a + (p - a) / (n + 1), average, params)
        if verbose and i % 1000 == 0:
            print(f"step {i}: loss {float(loss):.4f}")
    return average


def save_params(params, path=PARAMS_PATH):
    flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v, np.float32)
            for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    np.savez_compressed(path, **flat)


def load_params(path=PARAMS_PATH):
    """The cached parameters (``FileNotFoundError`` if ``train`` was never run)."""
    with np.load(path) as data:
        flat = {k: jnp.asarray(data[k]) for k in data.files}
    tree = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def score_models(params):
    """``(s_A, s_B, s_u)`` score models from the trained network (label 0, 1, 2)."""
    net = EpsNet()
    return tuple(from_flax(net, params, kind="eps", sde=SDE, args=(c,)) for c in (0, 1, 2))


if __name__ == "__main__":
    trained = train(jax.random.key(0), verbose=True)
    save_params(trained)
    print(f"wrote {PARAMS_PATH}")

"""Per-particle random keys that vectorise well, and a faster standard normal for model code.

smcjax runs single-particle user functions under ``jax.vmap``, each with its own key. With
JAX's built-in Threefry implementation, drawing from a *batch of keys* under ``vmap`` is
several times slower on CPU than drawing the same number of values from one key (about
30 ns against 4 ns per draw on a 2-core x86 machine), and that cost dominated every particle
filter step.

This module registers a JAX PRNG implementation, ``smcjax_threefry``, that computes the very
same Threefry-2x32 block cipher (20 rounds; Salmon et al. 2011, checked against the
Random123 known-answer vector in the tests) with plain element-wise ``jax.numpy`` code. XLA
fuses that code into one vectorised loop whether the key is a scalar or a batch, so a
vmapped ``jax.random.normal(key)`` costs about the same as a batched one.

Keys of this implementation are ordinary typed JAX keys: ``jax.random.split``,
``jax.random.normal`` and friends accept them. The engine converts each step's key with
:func:`as_particle_key` and gives particle i the key :func:`particle_keys` derives from it
(the stream number i in the key, no cipher call); the same user key therefore still gives
bitwise-identical results.

Domain separation: ``random_bits`` hashes counters ``(c, 0)``, ``split`` hashes
``(c, 0xFFFFFFFF)`` and ``fold_in`` hashes ``(data, 0xFFFFFFFE)``, so the three never share an
input block for fewer than 2**32 draws per call.

:func:`normal` is a drop-in for ``jax.random.normal`` that spends the same key bits on a
cheaper and more exact uniform-to-normal transform (see its docstring).

References: J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers:
as easy as 1, 2, 3", SC 2011.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import random as jex_random

__all__ = ["as_particle_key", "draw_once", "normal", "particle_keys", "split", "threefry2x32",
           "uniform_scalar", "IMPL"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x, r: int):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds on uint32 arrays (broadcast element-wise).

    Args:
      k0, k1: the two key words.
      x0, x1: the two counter words.

    Returns:
      The two output words, each of the broadcast shape.
    """
    k0, k1, x0, x1 = (jnp.asarray(v, jnp.uint32) for v in (k0, k1, x0, x1))
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def _seed(seed):
    seed = jnp.asarray(seed)
    if jnp.issubdtype(seed.dtype, jnp.integer) and seed.dtype.itemsize == 8:
        hi = (seed >> 32).astype(jnp.uint32)
    else:
        hi = jnp.uint32(0)
    return jnp.stack([hi, seed.astype(jnp.uint32)])


def _split(key, shape):
    n = math.prod(shape)
    c = jnp.arange(n, dtype=jnp.uint32)
    a, b = threefry2x32(key[0], key[1], c, jnp.full_like(c, 0xFFFFFFFF))
    return jnp.stack([a, b], axis=-1).reshape(*shape, 2)


def _fold_in(key, data):
    a, b = threefry2x32(key[0], key[1], jnp.asarray(data, jnp.uint32), jnp.uint32(0xFFFFFFFE))
    return jnp.stack([a, b])


def _random_bits(key, bit_width, shape):
    """Word ``j`` of ``W`` is output ``a`` of block ``j`` for ``j < h = ceil(W / 2)``, else
    output ``b`` of block ``j - h``.

    Each word computes its own block and keeps one output (a select), rather than
    ``concatenate([a, b])`` of ``h`` blocks: under ``vmap`` (one key per particle, e.g.
    ``normal(key, (20,))``) XLA CPU fused that concatenation with the downstream transform
    into a loop it did not vectorise, 5x slower per particle despite the halved cipher work.
    The words are the same either way.
    """
    n = math.prod(shape)
    words = n * (2 if bit_width == 64 else 1)
    half = (words + 1) // 2
    j = jnp.arange(words, dtype=jnp.uint32)
    first = j < half
    c = jnp.where(first, j, j - jnp.uint32(half))
    a, b = threefry2x32(key[0], key[1], c, jnp.zeros_like(c))
    bits = jnp.where(first, a, b)
    if bit_width == 64:
        bits = bits.reshape(2, n)
        out = (bits[0].astype(jnp.uint64) << jnp.uint64(32)) | bits[1].astype(jnp.uint64)
        return out.reshape(shape)
    bits = bits.reshape(shape)
    if bit_width == 32:
        return bits
    dtype = {8: jnp.uint8, 16: jnp.uint16}[bit_width]
    return (bits >> jnp.uint32(32 - bit_width)).astype(dtype)


IMPL = jex_random.define_prng_impl(
    key_shape=(2,),
    seed=_seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="smcjax_threefry",
    tag="sfy",
)


def as_particle_key(key):
    """Convert any JAX key into an ``smcjax_threefry`` key, deterministically.

    A typed key of this implementation is returned unchanged. Any other key (typed, or a
    legacy ``uint32[2]`` ``PRNGKey``) is hashed once with its own implementation into two
    words that seed the new key (``jax.random.bits(key, (2,), uint32)``), so the result
    depends only on the input key. For JAX's default Threefry keys those two words are
    computed with the cipher unrolled (see :func:`split`): the same bits, one fused kernel.
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(key) == IMPL:
            return key
    if key.shape != () and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != (2,):
            raise ValueError(f"expected a scalar JAX key, got an array of shape {key.shape}")
    elif jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape != ():
        raise ValueError(f"expected a single JAX key, got a batch of shape {key.shape}")
    words = _unrolled_words(key)
    data = jax.random.bits(key, (2,), jnp.uint32) if words is None else _bits32(words, (2,))
    return jax.random.wrap_key_data(data, impl=IMPL)


def split(key, num=2):
    """``jax.random.split(key, num)``, bit for bit, without a loop on CPU.

    On CPU JAX runs its Threefry cipher as a rolled loop of five iterations, each a handful of
    tiny kernels. A compiled SMC run splits and converts its key a few times before the loop
    (the initial and step keys, the step keys' particle keys): those three loops cost 6 % of a
    bootstrap-filter run at N = 10^3 and T = 100, about six of its steps. For a Threefry key
    (typed, or a raw ``uint32[2]`` key of the default implementation) under JAX's default
    partitionable Threefry, child ``i`` (row-major index
    over ``num``) is block ``(0, i)`` of the cipher under the parent's key, computed here with
    :func:`threefry2x32` unrolled, which XLA fuses into one vectorised kernel. Any other key
    or configuration falls back to ``jax.random.split``; a test checks that both agree.

    Args:
      key: a single JAX key.
      num: the number of keys, or a shape tuple (fewer than 2**32 keys in all).

    Returns:
      Keys of the input's kind (typed or raw) with leading shape ``num``.
    """
    shape = (num,) if isinstance(num, int) else tuple(num)
    words = _unrolled_words(key)
    if words is None or math.prod(shape) >= 2**32:
        return jax.random.split(key, shape)
    data = jnp.stack(_blocks(words, shape), axis=-1)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data


def _blocks(words, shape):
    """Threefry blocks ``(0, j)``, ``j`` the row-major index over ``shape``, under the key
    ``words``: the counters JAX's partitionable Threefry uses for ``split`` and draws."""
    size = math.prod(shape)
    a, b = threefry2x32(words[0], words[1], jnp.zeros((size,), jnp.uint32),
                        jnp.arange(size, dtype=jnp.uint32))
    return a.reshape(shape), b.reshape(shape)


def _bits32(words, shape):
    """``jax.random.bits(key, shape, uint32)`` for the key ``words``: each 32-bit draw is the
    XOR of the two words of its block."""
    a, b = _blocks(words, shape)
    return a ^ b


def _unrolled_words(key):
    """The key words when :func:`threefry2x32` reproduces JAX's draws for ``key`` (a default
    Threefry key under the partitionable configuration), else None."""
    if not jax.config.jax_threefry_partitionable:
        return None
    return _default_threefry_words(key)


def particle_keys(key, num: int):
    """``num`` keys of the vectorising implementation, one per particle, without a cipher.

    With ``(k0, k1)`` the words of :func:`as_particle_key` ``(key)``, particle ``i`` gets the
    key ``(k0, k1 XOR i)``. This is the Random123 way of giving parallel streams their own
    keys (Salmon et al. 2011: the key holds a seed and a stream number, and every
    distinct key defines an independent-looking stream of the keyed bijection); the key
    words ``(k0, k1)`` themselves come from a hash of the step's key. A ``jax.random.split``
    of the same key would instead run the 20-round cipher once per particle (about 3 ns per
    particle on CPU, 7 % of a bootstrap-filter step at N = 10^3), for keys that are then only
    ever fed to the same cipher.

    What a model does with its key is unchanged: ``jax.random.normal(key)`` hashes counter
    ``(0, 0)`` under the particle's key, and ``jax.random.split(key)`` inside a model runs
    the cipher, so nested keys differ between particles too.
    """
    words = jax.random.key_data(as_particle_key(key))
    stream = jnp.arange(num, dtype=jnp.uint32)
    data = jnp.stack([jnp.broadcast_to(words[0], (num,)), words[1] ^ stream], axis=-1)
    return jax.random.wrap_key_data(data, impl=IMPL)


def draw_once(fn, key):
    """``fn(key)``, computed once however many kernels read its output.

    XLA CPU fuses cheap element-wise producers into each of their consumers, and an unrolled
    Threefry cipher is made of cheap integer operations. Particles drawn outside a loop (a
    run's initial particles, read by the potential, the weights, the moments and the state)
    were therefore recomputed, cipher and all, in up to ten kernels (5-8 us each in a profile
    at N = 10^3). ``lax.optimization_barrier`` does not stop this on CPU (it is removed before
    fusion). A conditional's outputs are buffers, so ``fn`` runs here inside a ``lax.cond`` whose
    predicate is always true (``(w | 1) != 0`` for a word ``w`` of the key; the other branch
    is never taken, so even if XLA folds the predicate the result is the same).

    Args:
      fn: ``key -> pytree`` of arrays.
      key: a JAX key (typed or raw).
    """
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    word = jnp.ravel(jnp.asarray(data)).astype(jnp.uint32)[0]
    out = jax.eval_shape(fn, key)
    never = lambda k: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out)  # noqa: E731
    return jax.lax.cond((word | jnp.uint32(1)) != 0, fn, never, key)


_ONE_F32_BITS = np.uint32(np.array(1.0, np.float32).view(np.uint32))


def _default_threefry_words(key):
    """The two key words of a JAX Threefry-2x32 key (typed, or a raw ``uint32[2]`` key under
    the default implementation), or None for any other key."""
    if not isinstance(key, jax.Array) or key.shape not in ((), (2,)):
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != () or jax.random.key_impl(key) != "threefry2x32":
            return None
        return jax.random.key_data(key)
    if key.shape == (2,) and key.dtype == jnp.uint32 and \
            jax.config.jax_default_prng_impl == "threefry2x32":
        return key
    return None


def uniform_scalar(key, dtype=jnp.float32):
    """``jax.random.uniform(key, (), dtype)``, bit for bit, without a loop on CPU.

    On CPU JAX lowers its Threefry cipher to a rolled loop of five iterations, each a handful
    of tiny kernels; for one scalar draw inside a compiled SMC step that loop cost about
    0.3 us at N = 10^3 (systematic resampling needs exactly one uniform per step). For a
    Threefry key with float32 output (and JAX's default partitionable Threefry) this computes
    the same bits with :func:`threefry2x32` unrolled, which XLA fuses into one small kernel:
    the 32 random bits of a scalar draw are the XOR of the two words of block ``(0, 0)``, and
    the float is built from their top 23 bits with exponent 0 (a value in [1, 2)) minus 1.
    Any other key, dtype or configuration falls back to ``jax.random.uniform``; a test checks
    that both give identical bits.
    """
    dtype = jnp.dtype(dtype)
    words = _unrolled_words(key)
    if words is None or dtype != jnp.float32:
        return jax.random.uniform(key, (), dtype)
    mantissa = (_bits32(words, ()) >> jnp.uint32(9)) | jnp.uint32(_ONE_F32_BITS)
    value = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
    return jnp.maximum(jnp.float32(0.0), value)


# log(1 + x) = x - x^2/2 + x^3 P(x) on [sqrt(1/2) - 1, sqrt(2) - 1]: P of degree 6, fitted for
# this module by weighted least squares on Chebyshev nodes, reweighted towards the minimax
# relative error of log(1 + x) (2.0e-7 with the float32 evaluation below).
_LOG_POLY = (0.33333370089530945, -0.250034898519516, 0.19983989000320435,
             -0.16521504521369934, 0.146413654088974, -0.1461501121520996, 0.09925960004329681)
_SQRT_HALF_BITS = np.int32(np.array(np.sqrt(0.5), np.float32).view(np.int32))
# Phi^{-1}(u) = x P(w) with x = 2u - 1 and w = -log(1 - x^2) (the variable of Giles 2011),
# P a polynomial in t = w / 7.65 - 1, from the constant term up. Fitted for this module:
# Chebyshev least squares of sqrt(2) erfinv(x) / x on w in [0, 15.3] (8001 Chebyshev points;
# float32 midpoints reach w = 22 log 2 = 15.25), degree 14, converted to powers of t.
_QUANTILE_W_HALF = 7.65
_QUANTILE_POLY = (3.675659409378427, 1.9472388218855174, -0.44027420985241683,
                  0.1629608209409522, -0.037285305031101376, -0.03341752224013836,
                  0.061557708826391014, -0.05562542238007584, 0.0410665533468266,
                  -0.02374930387028444, -0.013572208592279098, 0.037999625225936806,
                  -0.014741724780440741, -0.010077241475907725, 0.006233795712134199)


def _polynomial(coefficients, x):
    """``sum_k c_k x^k`` in float32 by Horner's rule, ``coefficients`` from the constant up."""
    p = jnp.float32(coefficients[-1])
    for c in coefficients[-2::-1]:
        p = p * x + jnp.float32(c)
    return p


def _log_f32(y):
    """Natural log of positive, normal float32 ``y`` (no 0, subnormal, inf or NaN: the caller
    guarantees it), with about 2e-7 relative error.

    ``y = 2^e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` is read off the bits (``e`` from the
    distance of ``y``'s bits to those of ``sqrt(1/2)``), and ``log y = e log 2 + log m``
    with ``log m`` from :data:`_LOG_POLY`. Only integer and multiply-add operations, all of
    which XLA CPU vectorises; its own ``log`` costs about twice as much, ``log1p`` three times.
    """
    bits = lax.bitcast_convert_type(y, jnp.int32)
    e = (bits - jnp.int32(_SQRT_HALF_BITS)) >> jnp.int32(23)
    x = lax.bitcast_convert_type(bits - (e << jnp.int32(23)), jnp.float32) - jnp.float32(1.0)
    p = _polynomial(_LOG_POLY, x)
    x2 = x * x
    return e.astype(jnp.float32) * jnp.float32(math.log(2.0)) + (x - 0.5 * x2 + x2 * (x * p))


def _normal_from_bits(bits):
    """Standard normal float32 quantiles of the midpoints ``u = (j + 1/2) / 2^23`` of the
    top 23 bits ``j`` of ``uint32`` words (see :func:`normal`)."""
    a = ((bits >> jnp.uint32(9)).astype(jnp.int32) << 1) | 1      # 2j + 1, odd, < 2^24
    one_plus_x = a.astype(jnp.float32) * jnp.float32(2.0**-23)    # 1 + x = 2u, exact
    x = one_plus_x - jnp.float32(1.0)                             # 2u - 1, exact
    w = -_log_f32(one_plus_x * (jnp.float32(2.0) - one_plus_x))   # -log(1 - x^2), one rounding
    t = w * jnp.float32(1.0 / _QUANTILE_W_HALF) - jnp.float32(1.0)
    return x * _polynomial(_QUANTILE_POLY, t)


def normal(key, shape=(), dtype=jnp.float32):
    """Standard normal draws, a faster drop-in for ``jax.random.normal`` in model code.

    ``z = Phi^{-1}(u)`` for ``u = (j + 1/2) / 2^23``, where ``j`` is the top 23 bits of each
    32-bit word of ``jax.random.bits(key, shape, uint32)``. So the draws use exactly the
    key's bits that ``jax.random.normal`` uses, but the values differ from it: JAX computes
    ``sqrt(2) erfinv(v)`` for a uniform ``v`` on ``[-1 + eps, 1)``, this the quantile of the
    midpoint of each of the ``2^23`` equal cells of ``(0, 1)``. The midpoints make the
    distribution exactly symmetric (``z(j) = -z(2^23 - 1 - j)``, and none is 0 or infinite);
    the largest draw is ``|z| = Phi^{-1}(1 - 2^-24) = 5.29``.

    The quantile is ``sqrt(2) erfinv(x) = x P(w)`` with ``x = 2u - 1`` and
    ``w = -log(1 - x^2)``, the variable of Giles' erfinv approximations, in which
    ``erfinv(x) / x`` is smooth; over the range float32 midpoints reach (``w <= 15.25``) one
    polynomial of degree 14 suffices, with no branch and no square root. Computed as here,
    ``1 + x = (2j + 1) 2^-23`` and ``1 - x`` are exact, ``1 - x^2`` is their product with one
    rounding (no cancellation, unlike ``1 - x*x``), and the logarithm is a bit-level reduction
    plus a polynomial (:func:`_log_f32`) instead of XLA's ``log1p``, the slowest part of
    ``jax.random.normal`` on CPU. Against the exact quantile of the same ``u``, over all
    ``2^23`` values of ``j``, the largest error is ``3.5e-7`` relative and ``6.7e-7``
    absolute (a test checks every value against ``scipy.special.ndtri``, to ``1e-6``);
    XLA's ``erf_inv`` reaches about ``1.5e-5`` absolute near ``|x| = 1``.

    With a per-particle key inside an SMC model (see :func:`particle_keys`) a vmapped
    ``normal(key)`` costs about 1.6 ns against 4.0 ns for ``jax.random.normal(key)`` on one
    AVX-512 x86-64 core with the 512-bit vectors smcjax compiles with (2.5 against 4.1 with
    XLA's default 256-bit vectors; ``benchmarks/normal_draws.py``). In the bootstrap filter of
    ``benchmarks/particle_filter.py`` it cut a step by 17-20 % on one core (11-12 % with two
    threads) from N = 10^3 to 10^6 with 256-bit vectors, and by about 30 % at N = 10^3 on one
    core with 512-bit vectors.

    Args:
      key: a single JAX key (typed or raw ``uint32[2]``), of any implementation.
      shape: output shape (an int or a tuple).
      dtype: ``float32`` (default), ``float16`` or ``bfloat16`` (computed in float32, then
        cast); ``float64`` falls back to ``jax.random.normal``, whose 53-bit uniform this
        23-bit construction cannot match.

    Returns:
      An array of ``shape`` and ``dtype``.

    Example::

        >>> import jax, smcjax
        >>> z = smcjax.random.normal(jax.random.key(0), (3,))
        >>> z.shape, str(z.dtype)
        ((3,), 'float32')

    Reference: M. Giles, "Approximating the erfinv function", in *GPU Computing Gems, Jade
    Edition*, 2011.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64:
        return jax.random.normal(key, shape, dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"normal: dtype must be a floating type, got {dtype}")
    z = _normal_from_bits(jax.random.bits(key, shape, jnp.uint32))
    return z.astype(dtype)

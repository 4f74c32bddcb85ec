"""Where a particle's normal draw goes on CPU: JAX's transform, smcjax's and NumPy's generator.

The bootstrap filter's move is one standard normal per particle, drawn as a user writes it,
``jax.random.normal(key)`` under the particle's own key. ``jax.random.normal`` makes 32 random
bits with the Threefry cipher, maps them to a uniform ``u`` in (-1, 1) and returns
``sqrt(2) erfinv(u)``. This benchmark times each stage per element, inside a compiled
100-step ``lax.scan`` as in a filter, next to NumPy's ``Generator.standard_normal`` (a
ziggurat; what `particles` uses through ``numpy.random``):

* ``bits``, ``uniform``, ``normal``: vmapped over per-particle keys
  (:func:`smcjax.random.particle_keys`), so the cipher runs once per particle;
* ``smcjax_normal``: :func:`smcjax.random.normal` vmapped the same way (the same bits, the
  quantile through a bit-level ``log`` and one fitted polynomial, no ``log1p``);
* ``normal_batched``: ``jax.random.normal(key, (N,))``, one key for the whole vector;
* ``erf_inv``, ``log1p``, ``log``: the transform's parts on their own (XLA's float32 ``erfinv``
  computes ``w = -log1p(-u^2)`` and a degree-8 polynomial in ``w``);
* ``numpy_standard_normal``: ``rng.standard_normal(N, dtype=float32)`` per step.

The JAX stages compile with ``smcjax.compiler_options()`` (512-bit CPU vectors, as smcjax's
samplers do since session 21).

Run: ``python benchmarks/normal_draws.py [--n 10000] [--rounds 40] [--single-core]``. Prints
JSON with ns per element (best over interleaved rounds) and the ratio of each JAX stage to
NumPy's draw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

if "--single-core" in sys.argv[1:]:  # before JAX creates its CPU client and thread pool
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from _timing import interleaved_times  # noqa: E402
from jax import lax  # noqa: E402

import smcjax  # noqa: E402
from smcjax.random import normal as smcjax_normal  # noqa: E402
from smcjax.random import particle_keys  # noqa: E402

T = 100


def _scan(step, n):
    """A compiled T-step loop whose carry is an ``[n]`` float32 vector fed through ``step``."""

    # compiled with the XLA options smcjax's samplers use (512-bit CPU vectors)
    @partial(jax.jit, compiler_options=smcjax.compiler_options())
    def run(keys):
        def body(c, k):
            return c + step(k, c), None

        return lax.scan(body, jnp.zeros(n, jnp.float32), keys)[0]

    keys = jax.random.split(jax.random.key(1), T)
    return lambda: run(keys).block_until_ready()


def _squash(c):
    # a value in (-0.99, 0.99) that depends on the carry, so no stage is hoisted out of the loop
    return 0.99 * jnp.tanh(c)


def stages(n):
    per_particle = lambda draw: lambda k, c: jax.vmap(draw)(particle_keys(k, n))  # noqa: E731
    return {
        "bits": per_particle(lambda k: jax.random.bits(k).astype(jnp.float32)),
        "uniform": per_particle(jax.random.uniform),
        "normal": per_particle(jax.random.normal),
        "smcjax_normal": per_particle(smcjax_normal),
        "normal_batched": lambda k, c: jax.random.normal(k, (n,)),
        "carry_only": lambda k, c: _squash(c),
        "erf_inv": lambda k, c: lax.erf_inv(_squash(c)),
        "log1p": lambda k, c: jnp.log1p(-_squash(c) ** 2),
        "log": lambda k, c: jnp.log((1.0 - _squash(c)) * (1.0 + _squash(c))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--single-core", action="store_true")
    args = ap.parse_args()
    n = args.n
    runs = {name: _scan(step, n) for name, step in stages(n).items()}
    rng = np.random.default_rng(0)

    def numpy_draws():
        acc = np.zeros(n, np.float32)
        for _ in range(T):
            acc += rng.standard_normal(n, dtype=np.float32)
        return acc

    runs["numpy_standard_normal"] = numpy_draws
    best = {name: min(ts) for name, ts in interleaved_times(runs, args.rounds).items()}
    ns = {name: 1e9 * t / (T * n) for name, t in best.items()}
    out = {
        "benchmark": "normal draws per element, in a compiled 100-step loop",
        "machine": machine(),
        "cpus_used": len(os.sched_getaffinity(0)),
        "n": n,
        "rounds": args.rounds,
        "ns_per_element": {k: round(v, 3) for k, v in ns.items()},
        "ratio_to_numpy": {k: round(v / ns["numpy_standard_normal"], 2) for k, v in ns.items()},
        "transform_share_of_normal": round((ns["normal"] - ns["uniform"]) / ns["normal"], 2),
        "smcjax_normal_vs_normal": round(ns["smcjax_normal"] / ns["normal"], 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""Systematic resampling on its own: smcjax against `particles` and a ``searchsorted`` loop.

Each JAX implementation runs inside a compiled 100-step ``lax.scan``, as in a particle filter,
on normalised log weights that change at every step (a roll of one fixed vector, so that no
work is hoisted out of the loop); the figure is ns per particle per step, the best of
``--rounds`` interleaved rounds. Rows:

* ``smcjax``: ``smcjax.resampling.systematic(key, log_w, normalized=True)``, what the engine
  calls (O(N): a blocked cumulative sum, then a histogram and a second sum);
* ``smcjax_cumsum_only``: its first part alone, ``exp`` and the blocked cumulative sum;
* ``smcjax_below``: the first part plus the per-particle point counts
  ``ceil(N C_i - U)``, so that ``smcjax - smcjax_below`` is the counts-to-ancestors part;
* ``searchsorted``: what a user writes without a library: ``jnp.cumsum`` of the weights and
  ``jnp.searchsorted`` of the N points;
* ``particles``: ``particles.resampling.systematic(W, N)`` (NumPy) on the same weights, 100
  calls in a Python loop, its natural use.

Every row draws a fresh uniform per step; the JAX rows compile with ``smcjax.compiler_options()``
(512-bit CPU vectors, as smcjax's samplers do since session 21). Run:
``python benchmarks/resampling.py [--n 1000,10000,100000] [--rounds 30] [--single-core]``.
Prints JSON.
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
from smcjax import resampling as rs  # noqa: E402
from smcjax.random import uniform_scalar  # noqa: E402

T = 100


def _log_weights(n):
    lw = 0.5 * jax.random.normal(jax.random.key(0), (n,))
    return lw - jax.nn.logsumexp(lw)


def _scan(step, lw0):
    """A compiled T-step loop; step ``t`` resamples ``roll(lw0, t)`` with its own key."""

    # compiled with the XLA options smcjax's samplers use (512-bit CPU vectors)
    @partial(jax.jit, compiler_options=smcjax.compiler_options())
    def run(lw0, keys):
        def body(t, k):
            out = step(k, jnp.roll(lw0, t))
            return t + 1, out[-1]

        return lax.scan(body, jnp.int32(0), keys)[1]

    keys = jax.random.split(jax.random.key(1), T)
    return lambda: run(lw0, keys).block_until_ready()


def jax_rows(n):
    def cumsum_only(k, lw):
        return rs._cumsum(jnp.exp(lw))

    def below(k, lw):
        u = uniform_scalar(k, lw.dtype)
        return jnp.ceil(rs._cumsum(jnp.exp(lw)) * n - u).astype(jnp.int32)

    def searchsorted(k, lw):
        c = jnp.cumsum(jnp.exp(lw))
        points = (jax.random.uniform(k) + jnp.arange(n)) / n
        return jnp.clip(jnp.searchsorted(c, points), 0, n - 1)

    return {
        "smcjax": lambda k, lw: rs.systematic(k, lw, normalized=True),
        "smcjax_cumsum_only": cumsum_only,
        "smcjax_below": below,
        "searchsorted": searchsorted,
    }


def particles_row(lw0):
    from particles import resampling as prs

    w0 = np.exp(np.asarray(lw0, np.float64))
    w0 /= w0.sum()

    def run():
        out = 0
        for t in range(T):
            out += int(prs.systematic(np.roll(w0, t), w0.shape[0])[-1])
        return out

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1000,10000,100000")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--single-core", action="store_true")
    args = ap.parse_args()
    results = []
    for n in (int(v) for v in args.n.split(",")):
        lw0 = _log_weights(n)
        runs = {name: _scan(step, lw0) for name, step in jax_rows(n).items()}
        runs["particles"] = particles_row(lw0)
        best = {name: min(ts) for name, ts in interleaved_times(runs, args.rounds).items()}
        ns = {name: 1e9 * t / (T * n) for name, t in best.items()}
        results.append({
            "N": n,
            "ns_per_particle_step": {k: round(v, 3) for k, v in ns.items()},
            "counts_to_ancestors_ns": round(ns["smcjax"] - ns["smcjax_below"], 3),
            "speedup_vs_particles": round(ns["particles"] / ns["smcjax"], 2),
            "speedup_vs_searchsorted": round(ns["searchsorted"] / ns["smcjax"], 2),
        })
        print(f"N={n}: " + ", ".join(f"{k} {v:.2f}" for k, v in ns.items()) + " ns",
              file=sys.stderr)
    print(json.dumps({
        "benchmark": "systematic resampling alone, ns per particle per step (100-step loop)",
        "machine": machine(),
        "cpus_used": len(os.sched_getaffinity(0)),
        "rounds": args.rounds,
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()

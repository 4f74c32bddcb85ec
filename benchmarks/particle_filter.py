"""Bootstrap particle filter: smcjax vs the `particles` library vs a hand-written JAX loop.

Setup (issue 2): 1-d linear-Gaussian model x_t = 0.9 x_{t-1} + N(0, 0.5²), y_t = x_t + N(0, 0.5²),
x_0 ~ N(0, 1); T = 100 steps; systematic resampling at every step; N in {1e3, 1e4, 1e5, 1e6}.
smcjax and the hand-written loop run in float32 on JAX's CPU backend; `particles` (0.3, NumPy)
runs in float64, its native precision. Each figure is the best of ``--repeats`` timed rounds
(ten times as many for N <= 1e4, where a run takes milliseconds; at most 3 for `particles` at
1e6) after one warm-up run (compilation excluded for JAX; reported separately). The rounds
are interleaved: each times every implementation once, so that a slow spell of a shared
machine does not fall on one implementation only. For N <= 1e4 each timed run follows an
untimed run of the same implementation, so that none starts with the caches another one
filled. The median over rounds of the paired ratio `particles / smcjax` is reported beside
the ratio of the best times.

Like for like: ``smcjax`` runs with ``moments=False``, so that, like `particles` (``collect=None``)
and the hand-written loop, it computes the evidence and its per-step diagnostics (ESS,
resampling flags, non-finite counts) but not the filtering moments; ``smcjax_full`` adds the
per-step filtering mean and variance (the default of ``smcjax.particle_filter``) and is
reported beside it. The goals are checked on the like-for-like row. ``smcjax_fast_normal`` is
the ``smcjax`` row with the model's normals drawn by ``smcjax.random.normal`` (the same key
bits as ``jax.random.normal``, through a cheaper uniform-to-normal transform); its ratios and
goals are reported separately, under ``goals_with_smcjax_random_normal``.

The hand-written loop is what a user would write without a library: one ``lax.scan``,
``jax.random.normal(key, (N,))`` for the moves, and systematic resampling with
``jnp.searchsorted`` on the cumulative weights.

``--single-core`` pins the process to one CPU before JAX starts. XLA sizes its thread pool to
the CPUs a process may use, so both libraries then run on one core (`particles` uses one
anyway). On a small shared VM XLA's hand-offs between its two threads for the ~50 small
kernels of a step at N = 10^3 cost more than they gain; at N = 10^6 the second core helps.

Run: ``python benchmarks/particle_filter.py [--quick] [--repeats 5] [--single-core]``. Prints
JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--single-core" in sys.argv[1:]:  # before JAX creates its CPU client and thread pool
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402  (benchmarks/_machine.py; the script directory is on sys.path)
from smcjax.models import linear_gaussian as lg  # noqa: E402

import smcjax  # noqa: E402

RHO, SX, SY, T = 0.9, 0.5, 0.5, 100


def _normal_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi)


def _scalar_lg(normal):
    """The model as a user writes a scalar state-space model: single-particle functions, with
    standard normals from ``normal(key)``."""
    return smcjax.StateSpaceModel(
        initial_sample=lambda key: normal(key),
        transition_sample=lambda key, x, t: RHO * x + SX * normal(key),
        transition_log_prob=lambda x_prev, x, t: _normal_logpdf(x, RHO * x_prev, SX),
        observation_log_prob=lambda x, y, t: _normal_logpdf(y, x, SY),
    )


LG_1D = _scalar_lg(jax.random.normal)
# smcjax.random.normal: the key's bits, a cheaper uniform-to-normal transform than
# jax.random.normal's erfinv on CPU.
LG_1D_FAST_NORMAL = _scalar_lg(smcjax.random.normal)


def simulated_data():
    """The benchmark's model as ``LGParams`` and its T observations (seed 0), shape ``[T]``."""
    p = lg.LGParams(A=jnp.full((1, 1), RHO), Q=jnp.full((1, 1), SX**2), C=jnp.ones((1, 1)),
                    R=jnp.full((1, 1), SY**2), m0=jnp.zeros(1), P0=jnp.ones((1, 1)))
    _, ys = lg.simulate(jax.random.key(0), p, T)
    return p, ys[:, 0]


def smcjax_runner(ys, n, moments=False, model=LG_1D):
    key = jax.random.key(1)

    def go():
        res = smcjax.particle_filter(key, model, ys, n, resampling="systematic",
                                     ess_threshold=1.0, moments=moments)
        return float(res.log_evidence)

    return go


def smcjax_full_runner(ys, n):
    return smcjax_runner(ys, n, moments=True)


def smcjax_fast_normal_runner(ys, n):
    return smcjax_runner(ys, n, model=LG_1D_FAST_NORMAL)


def handwritten_runner(ys, n):
    @jax.jit
    def pf(key, ys):
        k0, kl = jax.random.split(key)
        x = jax.random.normal(k0, (n,))
        lw = -0.5 * ((ys[0] - x) / SY) ** 2 - jnp.log(SY) - 0.5 * jnp.log(2 * jnp.pi)
        logz = jax.nn.logsumexp(lw) - jnp.log(n)

        def body(carry, inp):
            x, lw, logz = carry
            y, k = inp
            ku, kx = jax.random.split(k)
            w = jnp.exp(lw - jax.nn.logsumexp(lw))
            cdf = jnp.cumsum(w)
            u = (jax.random.uniform(ku) + jnp.arange(n)) / n
            idx = jnp.clip(jnp.searchsorted(cdf, u), 0, n - 1)
            x = RHO * x[idx] + SX * jax.random.normal(kx, (n,))
            lw = -0.5 * ((y - x) / SY) ** 2 - jnp.log(SY) - 0.5 * jnp.log(2 * jnp.pi)
            logz = logz + jax.nn.logsumexp(lw) - jnp.log(n)
            return (x, lw, logz), None

        keys = jax.random.split(kl, T - 1)
        (x, lw, logz), _ = jax.lax.scan(body, (x, lw, logz), (ys[1:], keys))
        return logz

    key = jax.random.key(1)
    return lambda: float(pf(key, ys))


def particles_runner(ys, n):
    import particles
    from particles import distributions as dists
    from particles import state_space_models as ssm

    class LG(ssm.StateSpaceModel):
        default_params = {"rho": RHO, "sigmaX": SX, "sigmaY": SY}

        def PX0(self):
            return dists.Normal(loc=0.0, scale=1.0)

        def PX(self, t, xp):
            return dists.Normal(loc=self.rho * xp, scale=self.sigmaX)

        def PY(self, t, xp, x):
            return dists.Normal(loc=x, scale=self.sigmaY)

    data = [np.array(y) for y in np.asarray(ys, np.float64)]

    def go():
        fk = ssm.Bootstrap(ssm=LG(), data=data)
        alg = particles.SMC(fk=fk, N=n, resampling="systematic", ESSrmin=1.0,
                            store_history=False, collect=None)
        alg.run()
        return float(alg.logLt)

    return go


def _paired_median(times, name):
    """Median over rounds of ``particles`` time / ``name`` time (rounds paired in order; at
    N = 10^6 ``particles`` has fewer rounds, paired with the first ones)."""
    return float(np.median([tp / t for tp, t in zip(times["particles"], times[name],
                                                    strict=False)]))


RUNNERS = (("smcjax", smcjax_runner), ("smcjax_full", smcjax_full_runner),
           ("smcjax_fast_normal", smcjax_fast_normal_runner),
           ("handwritten_jax", handwritten_runner), ("particles", particles_runner))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N in {1e3, 1e4} only, 2 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--single-core", action="store_true",
                        help="pin the process to one CPU (set before JAX starts; see above)")
    args = parser.parse_args(argv)
    sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5, 10**6]
    repeats = 2 if args.quick else args.repeats
    p, ys = simulated_data()
    exact = lg.kalman_filter(p, ys[:, None]).log_likelihood
    rows = []
    for n in sizes:
        row, runners = {"N": n}, {}
        for name, make in RUNNERS:
            go = make(ys, n)
            start = time.perf_counter()
            log_z = go()
            row[name] = {"first_call_seconds": time.perf_counter() - start,
                         "log_evidence_error": log_z - exact}
            go()  # warm-up
            runners[name] = go
        # Interleaved rounds: each round times every implementation once, so a slow spell of
        # the machine hits all of them alike. Small runs take milliseconds and vary most from
        # run to run: they get ten times the rounds, and each timed run follows an untimed
        # run of the same implementation. Without it a run started with the caches the
        # previous implementation had filled: in two otherwise identical quick runs on one
        # core, smcjax (timed right after `particles`) took 28.5 ns per particle-step at
        # N = 10^3 without the untimed run and 24.0 ns with it.
        rounds = repeats * 10 if n <= 10**4 else repeats
        times = {name: [] for name in runners}
        for r in range(rounds):
            for name, go in runners.items():
                if name == "particles" and n >= 10**6 and r >= 3:
                    continue  # about 10 s a run
                if n <= 10**4:
                    go()
                start = time.perf_counter()
                go()
                times[name].append(time.perf_counter() - start)
        for name, ts in times.items():
            row[name].update(ns_per_particle_step=min(ts) / (n * T) * 1e9,
                             seconds_per_run=min(ts), runs=len(ts))
        row["speedup_vs_particles_paired_median"] = _paired_median(times, "smcjax")
        s = row["smcjax"]["ns_per_particle_step"]
        row["speedup_vs_particles"] = row["particles"]["ns_per_particle_step"] / s
        row["speedup_vs_handwritten"] = row["handwritten_jax"]["ns_per_particle_step"] / s
        row["smcjax_full_speedup_vs_particles"] = (row["particles"]["ns_per_particle_step"]
                                                   / row["smcjax_full"]["ns_per_particle_step"])
        fast = row["smcjax_fast_normal"]["ns_per_particle_step"]
        row["smcjax_fast_normal_speedup_vs_particles"] = (
            row["particles"]["ns_per_particle_step"] / fast)
        row["smcjax_fast_normal_speedup_vs_particles_paired_median"] = _paired_median(
            times, "smcjax_fast_normal")
        row["smcjax_fast_normal_speedup_vs_handwritten"] = (
            row["handwritten_jax"]["ns_per_particle_step"] / fast)
        rows.append(row)
        print(f"N={n}: smcjax {s:.1f} ns (with moments "
              f"{row['smcjax_full']['ns_per_particle_step']:.1f}, with smcjax.random.normal "
              f"{fast:.1f}), handwritten "
              f"{row['handwritten_jax']['ns_per_particle_step']:.1f} ns, particles "
              f"{row['particles']['ns_per_particle_step']:.1f} ns per particle-step",
              file=sys.stderr, flush=True)  # stdout carries only the JSON
    out = {
        "benchmark": "bootstrap particle filter, 1-d linear Gaussian, T=100, systematic "
                     "resampling every step",
        "machine": machine(),
        "cpus_used": len(os.sched_getaffinity(0)),
        "dtype": {"smcjax": "float32", "smcjax_full": "float32", "smcjax_fast_normal": "float32",
                  "handwritten_jax": "float32", "particles": "float64"},
        "outputs": {"smcjax": "log-evidence, ESS, resampling flags, non-finite counts",
                    "smcjax_full": "as smcjax, plus the filtering mean and variance per step",
                    "smcjax_fast_normal": "as smcjax; the model draws its normals with "
                                          "smcjax.random.normal instead of jax.random.normal",
                    "handwritten_jax": "log-evidence",
                    "particles": "log-evidence, ESS, resampling flags (its default summaries)"},
        "repeats": repeats,
        "exact_log_evidence": exact,
        "results": rows,
        "goals": {
            "vs_particles_N1e3_at_least_10x": rows[0]["speedup_vs_particles"] >= 10,
            "vs_particles_N1e4_at_least_3x": rows[1]["speedup_vs_particles"] >= 3,
            "vs_particles_N1e6_at_least_3x": (rows[-1]["speedup_vs_particles"] >= 3
                                              if sizes[-1] == 10**6 else None),
            "no_slower_than_handwritten": all(r["speedup_vs_handwritten"] >= 1 for r in rows),
        },
        "goals_with_smcjax_random_normal": {
            "vs_particles_N1e3_at_least_10x":
                rows[0]["smcjax_fast_normal_speedup_vs_particles"] >= 10,
            "vs_particles_N1e4_at_least_3x":
                rows[1]["smcjax_fast_normal_speedup_vs_particles"] >= 3,
            "vs_particles_N1e6_at_least_3x": (
                rows[-1]["smcjax_fast_normal_speedup_vs_particles"] >= 3
                if sizes[-1] == 10**6 else None),
            "no_slower_than_handwritten": all(
                r["smcjax_fast_normal_speedup_vs_handwritten"] >= 1 for r in rows),
        },
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

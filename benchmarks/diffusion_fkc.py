"""FKC against score arithmetic on the 40-mode 2-d Gaussian mixture annealed to beta = 3.

Setup (the FKC authors' toy, as used here):

* data: 40 equally weighted components ``N(mu_k, I)`` in 2-d, means uniform in ``[-40, 40]^2``
  (NumPy seed 0);
* schedule: EDM, ``sigma`` from 150 down to 0.01 on the Karras grid (rho = 7); ``sigma_max``
  is well above the data's spread so the Gaussian start is accurate;
* score: exact (:class:`smcjax.diffusion.GaussianMixtureScore`);
* target: ``q_{sigma_min}^3`` (a 11480-term Gaussian mixture; exact samples are drawn from it);
* samplers, all with the same N, the same number of steps K and therefore the same number of
  score evaluations (one per particle per step): FKC with systematic resampling at every step
  (``fkc``), FKC without resampling (``fkc_noresample``), the unweighted reverse SDE with
  the annealed score ``3 s`` (``sde``), and, for information, FKC and the unweighted SDE with
  the noise multipliers ``eta = 2`` and ``eta = 4`` (``fkc_eta2``, ``sde_eta2``, ``fkc_eta4``,
  ``sde_eta4``). The FKC weight rate does not depend on ``eta``: a larger ``eta`` adds
  Langevin-like mixing towards the annealed marginal at no extra score evaluation, which
  lowers the weight variance, at the price of a larger Euler-Maruyama step;
* FKC with the control drift (``control=True``, default ``eta = 1``, resampling when the ESS
  falls below N/2: with the control the weights hardly vary, and resampling at every step
  only adds noise): ``fkc_control`` with the same K, and ``fkc_control_k100`` with K = 100
  steps (fewer evaluations and less time than the K-step SDE). Each step evaluates the score
  *and its divergence* (analytic for the exact mixture score), so at equal K it costs more
  than the SDE: see ``seconds``.

Metrics, against exact target samples:

* ``w2``: exact 2-Wasserstein distance between n = min(N, 2000) equally weighted points
  (weighted samples are first resampled systematically to n points) and n exact draws, by
  optimal assignment (``scipy.optimize.linear_sum_assignment``); ``w2_floor`` is the same
  distance between two independent exact sets of n points (the Monte Carlo floor);
* ``mmd``: weighted MMD with the kernel ``sum_{b in (1, 5, 20)} exp(-|x - y|^2 / (2 b^2))``
  against 5000 exact draws;
* ``mode_tv``: total variation between the mode masses (nearest-mean cells; weighted) and the
  exact masses (from 10^6 exact draws);
* ``seconds``: wall time of one compiled run (median of ``repeats``), and ratios
  ``fkc / sde``;
* every metric is the mean (and ``_sd`` the standard deviation) over ``repeats`` seeds.

The machine may be shared with other jobs: compare wall-time ratios measured in this one
process, not absolute times. Run ``python benchmarks/diffusion_fkc.py [--small]``; it prints
JSON. ``--time-only R`` skips the metrics and times the SDE, FKC and FKC with the control
(K steps, N in {10^3, 10^4}) over R interleaved rounds: on a 2-core VM single timings of these
1-second runs vary by +-30 %, so the time ratio needs more rounds than the metrics do. It
reports the median of the paired per-round ratios with quartiles, the ratio of the medians and
the ratio of the fastest runs.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from _machine import machine  # benchmarks/_machine.py (the script directory is on sys.path)
from scipy.optimize import linear_sum_assignment

from smcjax.diffusion import EDM, GaussianMixtureScore, anneal, fkc_sample, gmm, sde_sample
from smcjax.resampling import systematic

BETA = 3.0
ETAS = (2.0, 4.0)


def _runner(sampler, target, sde, steps, **options):
    return lambda n: (lambda k: sampler(k, target, sde, n, steps, **options))


def make_problem(seed=0, num_modes=40, box=40.0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-box, box, size=(num_modes, 2))
    return gmm.make(np.ones(num_modes), means, 1.0)


def exact_target(mix, sde, beta, n, seed):
    t = sde.t_min
    qt = gmm.noised(mix, float(sde.alpha(t)), float(sde.sigma(t)))
    target, _ = gmm.power(qt, int(beta))
    return gmm.sample(target, n, seed)


def resample_points(key, x, log_w, n):
    idx = systematic(key, jnp.asarray(log_w), n)
    return np.asarray(x)[np.asarray(idx)]


def w2_exact(a, b):
    cost = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


@jax.jit
def _mmd(x, w, y):
    def k(a, b):
        d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, -1)
        return sum(jnp.exp(-d2 / (2.0 * s * s)) for s in (1.0, 5.0, 20.0))

    v = jnp.full((y.shape[0],), 1.0 / y.shape[0])
    return jnp.sqrt(jnp.maximum(w @ k(x, x) @ w + v @ k(y, y) @ v - 2.0 * w @ k(x, y) @ v, 0.0))


def mode_masses(x, w, means):
    labels = gmm.nearest_center(means)(x)
    return np.bincount(labels, weights=w, minlength=len(means))


def timed_round_robin(fns, repeats):
    """Compile every function, then run them in turn ``repeats`` times with seeds 0..repeats-1
    (so that load from other jobs on a shared machine hits all of them alike).

    Returns:
      ``(outputs, seconds)``: per function the list of outputs and the list of wall times.
    """
    for fn in fns.values():
        jax.block_until_ready(fn(jax.random.key(123)))  # compile
    outs = {name: [] for name in fns}
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name].append(jax.block_until_ready(fn(jax.random.key(r))))
            times[name].append(time.perf_counter() - t)
    return outs, times


def metrics(res, ref_a, ref_mmd, exact_mass, means, m):
    x = np.asarray(res.samples, np.float64)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    w /= w.sum()
    pts = resample_points(jax.random.key(7), x, np.log(w), m)
    return {
        "w2": w2_exact(pts, ref_a),
        "mmd": float(_mmd(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), ref_mmd)),
        "mode_tv": float(0.5 * np.abs(mode_masses(x, w, means) - exact_mass).sum()),
    }


def _timed_runners(target, sde, steps):
    """The three samplers of the time goal: the SDE, FKC and FKC with the control."""
    return {"sde": _runner(sde_sample, target, sde, steps),
            "fkc": _runner(fkc_sample, target, sde, steps),
            "fkc_control": _runner(fkc_sample, target, sde, steps, control=True,
                                   ess_threshold=0.5)}


def time_only(target, sde, sizes, steps, rounds):
    """Median wall-time ratios to the SDE over ``rounds`` interleaved runs (paired per round)."""
    runners = _timed_runners(target, sde, steps)
    rows = []
    for n in sizes:
        _, secs = timed_round_robin({name: make(n) for name, make in runners.items()}, rounds)
        row = {"N": n, "steps": steps, "rounds": rounds,
               "sde_median_seconds": float(np.median(secs["sde"])),
               "sde_min_seconds": float(np.min(secs["sde"]))}
        for name in ("fkc", "fkc_control"):
            paired = np.array(secs[name]) / np.array(secs["sde"])
            row[name] = {"time_ratio_median_paired": float(np.median(paired)),
                         "time_ratio_quartiles": [float(np.quantile(paired, q))
                                                  for q in (0.25, 0.75)],
                         "time_ratio_of_medians": float(np.median(secs[name])
                                                        / np.median(secs["sde"])),
                         "time_ratio_of_minima": float(np.min(secs[name])
                                                       / np.min(secs["sde"]))}
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="N in {1000} and fewer steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--time-only", type=int, default=None, metavar="ROUNDS",
                        help="only the time ratios, over this many interleaved rounds")
    args = parser.parse_args(argv)
    sizes = (1000,) if args.small else (1000, 10000)
    steps = args.steps or (100 if args.small else 500)

    sde = EDM(sigma_min=0.01, sigma_max=150.0)
    mix = make_problem()
    score = GaussianMixtureScore(mix, sde)
    target = anneal(score, BETA)
    if args.time_only:
        out = {"benchmark": "diffusion_fkc --time-only", "machine": machine(),
               "goal": "time_ratio <= 1.3 at the same N and steps",
               "results": time_only(target, sde, sizes, steps, args.time_only)}
        print(json.dumps(out, indent=2))
        return out
    ref_big = exact_target(mix, sde, BETA, 1_000_000, seed=1)
    exact_mass = mode_masses(ref_big, np.ones(len(ref_big)) / len(ref_big), mix.means)
    ref_mmd = jnp.asarray(ref_big[:5000], jnp.float32)

    runners = {
        **_timed_runners(target, sde, steps),
        "fkc_control_k100": _runner(fkc_sample, target, sde, 100, control=True,
                                    ess_threshold=0.5),
        "fkc_noresample": _runner(fkc_sample, target, sde, steps, ess_threshold=0.0),
    }
    for eta in ETAS:
        runners[f"fkc_eta{eta:g}"] = _runner(fkc_sample, target, sde, steps, eta=eta)
        runners[f"sde_eta{eta:g}"] = _runner(sde_sample, target, sde, steps, eta=eta)
    results = []
    for n in sizes:
        m = min(n, 2000)
        ref_a, ref_b = ref_big[:m], ref_big[-m:]
        row = {"N": n, "steps": steps, "score_evals_per_method": n * steps,
               "fkc_control_k100_evals": {"scores": n * 100, "divergences": n * 100},
               "w2_floor": w2_exact(ref_a, ref_b)}
        outs, times = timed_round_robin({name: make(n) for name, make in runners.items()},
                                        args.repeats)
        secs = {name: float(np.median(v)) for name, v in times.items()}
        for name, results_r in outs.items():
            per_seed = [metrics(res, ref_a, ref_mmd, exact_mass, mix.means, m)
                        for res in results_r]
            row[name] = {"seconds": secs[name]}
            for key in ("w2", "mmd", "mode_tv"):
                vals = np.array([p[key] for p in per_seed])
                row[name][key] = float(vals.mean())
                row[name][key + "_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
            row[name]["final_ess"] = float(results_r[-1].ess[-1])
            z = results_r[-1].log_evidence
            row[name]["log_evidence"] = None if z is None else float(z)
        row["w2_ratio_fkc_over_sde"] = row["fkc"]["w2"] / row["sde"]["w2"]
        row["time_ratio_fkc_over_sde"] = row["fkc"]["seconds"] / row["sde"]["seconds"]
        for name in ("fkc_control", "fkc_control_k100"):
            row[f"w2_ratio_{name}_over_sde"] = row[name]["w2"] / row["sde"]["w2"]
            row[f"time_ratio_{name}_over_sde"] = row[name]["seconds"] / row["sde"]["seconds"]
        for eta in ETAS:
            fkc_eta, sde_eta = row[f"fkc_eta{eta:g}"], row[f"sde_eta{eta:g}"]
            # the same eta for both samplers, and FKC(eta) against the standard SDE (eta = 1)
            row[f"w2_ratio_eta{eta:g}_fkc_over_sde_eta{eta:g}"] = fkc_eta["w2"] / sde_eta["w2"]
            row[f"w2_ratio_eta{eta:g}_fkc_over_sde"] = fkc_eta["w2"] / row["sde"]["w2"]
            row[f"time_ratio_eta{eta:g}_fkc_over_sde_eta{eta:g}"] = (fkc_eta["seconds"]
                                                                    / sde_eta["seconds"])
        results.append(row)
    out = {
        "benchmark": "diffusion_fkc",
        "problem": "40-mode 2-d GMM (means U[-40,40]^2, cov I, equal weights), annealed to beta=3",
        "sde": "EDM sigma in [0.01, 150], Karras grid rho=7",
        "w2_method": "exact OT (linear_sum_assignment) on min(N, 2000) points",
        "seeds_per_metric": args.repeats,
        "machine": machine() + "; shared machine: use ratios",
        "goals": {"w2_ratio_fkc_over_sde": "<= 0.5", "time_ratio_fkc_over_sde": "<= 1.3",
                  "note": "fkc_control rows: the same two ratios for FKC with control=True"},
        "results": results,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

"""The ``smcjax`` command line.

``smcjax run`` runs a particle filter on the built-in stochastic-volatility model (synthetic
data from a fixed seed) and prints the log-evidence, the filtering mean at the last step, the
ESS history and the wall time. Errors in the arguments give a one-line message and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _sparkline(values, width: int = 60) -> str:
    import numpy as np

    bars = " ▁▂▃▄▅▆▇█"
    values = np.asarray(values, float)
    if len(values) > width:
        values = np.array([chunk.mean() for chunk in np.array_split(values, width)])
    return "".join(bars[int(round(v * (len(bars) - 1)))] for v in np.clip(values, 0, 1))


def _run_filter(args) -> dict:
    import jax
    import numpy as np

    from smcjax.filters import particle_filter
    from smcjax.models import stochastic_volatility as sv

    model = sv.make_model()
    _, ys = sv.simulate(jax.random.key(args.data_seed), args.steps)
    start = time.perf_counter()
    res = particle_filter(jax.random.key(args.seed), model, ys, args.particles,
                          method=args.method, resampling=args.resampling,
                          ess_threshold=args.ess_threshold)
    jax.block_until_ready(res)
    seconds = time.perf_counter() - start
    ess = np.asarray(res.ess)
    return {
        "model": "stochastic_volatility",
        "sampler": f"particle_filter:{args.method}",
        "num_particles": args.particles,
        "num_steps": args.steps,
        "seed": args.seed,
        "log_evidence": float(res.log_evidence),
        "filtering_mean_last": float(np.asarray(res.filtering_mean)[-1]),
        "filtering_sd_last": float(np.sqrt(np.asarray(res.filtering_var)[-1])),
        "ess": ess.tolist(),
        "resampling_steps": int(np.asarray(res.resampled).sum()),
        "invalid_weights": int(np.asarray(res.num_invalid).sum()),
        "seconds": seconds,
        "status": res.status,
    }


def _print_summary(out: dict) -> None:
    import numpy as np

    ess = np.asarray(out["ess"])
    n = out["num_particles"]
    print(f"model            {out['model']} ({out['num_steps']} steps, synthetic data)")
    print(f"sampler          {out['sampler']}, N = {n}, seed = {out['seed']}")
    print(f"status           {out['status']}")
    print(f"log-evidence     {out['log_evidence']:.4f}")
    print(f"filtering mean   x[T-1] = {out['filtering_mean_last']:.4f} "
          f"(sd {out['filtering_sd_last']:.4f})")
    print(f"ESS / N          min {ess.min() / n:.3f}  median {np.median(ess) / n:.3f}  "
          f"resampled {out['resampling_steps']} of {out['num_steps']} steps")
    print(f"ESS history      {_sparkline(ess / n)}")
    print(f"wall time        {out['seconds']:.2f} s (compile included)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smcjax",
        description="Particle-based inference in JAX (Sequential Monte Carlo on one "
                    "Feynman-Kac core).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a sampler on a built-in model and print a summary",
        description="Run a particle filter on the built-in stochastic-volatility model "
                    "(synthetic data) and print the log-evidence, the last filtering mean, "
                    "the ESS history and the wall time.",
    )
    run.add_argument("model", nargs="?", default="stochastic_volatility",
                     choices=["stochastic_volatility"], help="built-in model (default: %(default)s)")
    run.add_argument("--particles", type=_positive_int, default=10_000,
                     help="number of particles N (default: %(default)s)")
    run.add_argument("--steps", type=_positive_int, default=500,
                     help="number of time steps T (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    run.add_argument("--data-seed", type=int, default=42,
                     help="seed of the synthetic data (default: %(default)s)")
    run.add_argument("--method", choices=["bootstrap", "guided", "auxiliary"],
                     default="bootstrap", help="particle filter (default: %(default)s)")
    run.add_argument("--resampling", default="systematic",
                     choices=["multinomial", "stratified", "systematic", "residual", "ssp",
                              "killing"], help="resampling scheme (default: %(default)s)")
    run.add_argument("--ess-threshold", type=_fraction, default=0.5,
                     help="resample when ESS < threshold * N (default: %(default)s)")
    run.add_argument("--output", help="also write the summary as JSON to this file")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.method == "guided":
            raise CLIError("the stochastic-volatility model has no proposal; use bootstrap "
                           "or auxiliary")
        out = _run_filter(args)
        _print_summary(out)
        if args.output:
            try:
                with open(args.output, "w") as fh:
                    json.dump(out, fh, indent=2)
            except OSError as err:
                raise CLIError(f"cannot write {args.output}: {err.strerror}") from None
    except CLIError as err:
        print(f"smcjax: error: {err}", file=sys.stderr)
        return 2
    return 0 if out["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())

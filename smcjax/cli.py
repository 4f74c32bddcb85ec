"""The ``smcjax`` command line: ``smcjax run`` and ``smcjax validate``.

``smcjax run [MODEL] [--sampler NAME] [--particles N] [--seed S] [--output F.json] [--plot F.png]``
runs a sampler on a built-in model or on ``path/to/file.py:attribute`` (a ``BayesianModel``, or a
``(StateSpaceModel, observations)`` pair, or a no-argument function returning one) and prints
a summary. ``smcjax validate [--quick | --full]`` checks every sampler against problems with
exact answers. Bad input gives a one-line message and exit status 2, never a traceback; a run
whose weights all became zero exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from smcjax._targets import BUILTIN, SAMPLERS, TargetError, load_target

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        self.exit(2, f"smcjax: error: {message}\n")


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


_MOVES = {"tempered": "rwmh", "tempered_mala": "mala", "tempered_hmc": "hmc",
          "tempered_nuts": "nuts", "waste_free": "rwmh", "data_tempering": "rwmh"}


def _run_bayes(target, args, progress):
    import smcjax

    key = smcjax_key(args.seed)
    if args.sampler == "data_tempering":
        if target.model.log_likelihood_per_datum is None:
            raise CLIError(f"{target.name} has no log_likelihood_per_datum; data_tempering "
                           "needs one")
        return smcjax.data_tempering_smc(key, target.model, args.particles, move="rwmh",
                                         callback=progress)
    return smcjax.tempered_smc(key, target.model, args.particles, move=_MOVES[args.sampler],
                               waste_free=args.sampler == "waste_free", callback=progress)


def _run_ssm(target, args, progress):
    import smcjax

    m = target.model
    if args.sampler == "guided" and m.proposal is None:
        raise CLIError(f"{target.name} has no proposal; the guided filter needs one")
    if args.sampler == "auxiliary" and m.auxiliary_log_weight is None:
        raise CLIError(f"{target.name} has no auxiliary_log_weight; the auxiliary filter needs "
                       "one")
    return smcjax.particle_filter(smcjax_key(args.seed), m, target.observations, args.particles,
                                  method=args.sampler, resampling=args.resampling,
                                  ess_threshold=args.ess_threshold, callback=progress)


def smcjax_key(seed: int):
    import jax

    return jax.random.key(seed)


def _progress(target, args):
    if not args.progress:
        return None
    from smcjax import progress

    if target.kind == "ssm":
        import jax

        steps = jax.tree.leaves(target.observations)[0].shape[0]
        return progress.ProgressBar(total=steps, desc=args.sampler, file=sys.stderr)
    return progress.TemperingProgress(desc=args.sampler, file=sys.stderr)


def run_command(args) -> dict:
    import jax
    import numpy as np

    from smcjax.summary import posterior_summary

    try:
        target = load_target(args.model, steps=args.steps)
    except TargetError as err:
        raise CLIError(str(err)) from None
    choices = SAMPLERS[target.kind]
    if args.sampler is None:
        args.sampler = choices[0]
    if args.sampler not in choices:
        raise CLIError(f"unknown sampler {args.sampler!r} for a "
                       f"{'Bayesian' if target.kind == 'bayes' else 'state-space'} model; "
                       f"choose one of {', '.join(choices)}")
    bar = _progress(target, args)
    start = time.perf_counter()
    try:
        res = (_run_bayes if target.kind == "bayes" else _run_ssm)(target, args, bar)
        jax.block_until_ready(res)
    except ValueError as err:
        raise CLIError(f"{target.name}: {err}") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if target.kind == "bayes":
        k = int(np.asarray(res.num_steps)) + 1
        particles, log_weights = res.particles, res.log_weights
        ess = np.asarray(res.ess)[:k]
        extra = {"temperatures": np.asarray(res.temperatures)[:k].tolist(),
                 "acceptance_rate": np.nan_to_num(np.asarray(res.acceptance_rate)[:k]).tolist()}
        log_z_se = float(np.asarray(res.log_evidence_se))
        evals = int(res.num_likelihood_evals)
    else:
        particles, log_weights = res.final_state.particles, res.final_state.log_weights
        ess = np.asarray(res.ess)
        extra = {"resampling_steps": int(np.asarray(res.resampled).sum()),
                 "invalid_weights": int(np.asarray(res.num_invalid).sum())}
        log_z_se = None
        evals = int(args.particles * len(ess))
    out = {
        "model": target.name,
        "sampler": args.sampler,
        "num_particles": args.particles,
        "seed": args.seed,
        "log_evidence": float(np.asarray(res.log_evidence)),
        "log_evidence_se": log_z_se,
        "posterior": posterior_summary(particles, log_weights),
        "ess": ess.tolist(),
        "likelihood_evaluations": evals,
        "seconds": seconds,
        "status": res.status,
        **extra,
    }
    if args.plot:
        from smcjax.plots import plot_run

        try:
            plot_run(res, args.plot, num_particles=args.particles, exact=target.exact,
                     title=f"{target.name} — {args.sampler}, N = {args.particles}")
        except (ImportError, OSError) as err:
            raise CLIError(f"cannot write plot {args.plot}: {err}") from None
    return out


def _print_summary(out: dict) -> None:
    import numpy as np

    ess = np.asarray(out["ess"])
    n = out["num_particles"]
    print(f"model            {out['model']}")
    print(f"sampler          {out['sampler']}, N = {n}, seed = {out['seed']}")
    print(f"status           {out['status']}")
    se = out["log_evidence_se"]
    print(f"log-evidence     {out['log_evidence']:.4f}" + ("" if se is None else f" ± {se:.4f}"))
    label = "posterior" if "temperatures" in out else "filtering mean"
    for i, (name, s) in enumerate(out["posterior"].items()):
        if i == 6:
            print(f"{'':17}... {len(out['posterior']) - 6} more (see --output)")
            break
        print(f"{label if i == 0 else '':17}{name:>10} = {s['mean']:.4f} (sd {s['var'] ** 0.5:.4f}"
              f", 90% [{s['q05']:.3f}, {s['q95']:.3f}])")
    print(f"ESS / N          min {ess.min() / n:.3f}  median {np.median(ess) / n:.3f}  "
          f"over {len(ess)} steps")
    print(f"ESS history      {_sparkline(ess / n)}")
    if "temperatures" in out:
        print(f"temperatures     {len(out['temperatures']) - 1} steps to β = "
              f"{out['temperatures'][-1]:.4f}")
    print(f"likelihood evals {out['likelihood_evaluations']}")
    print(f"wall time        {out['seconds']:.2f} s (compile included)")


def validate_command(args) -> int:
    from smcjax import validate

    names = None if not args.sampler else args.sampler
    level = "full" if args.full else "quick"

    def progress(i, total, description):
        print(f"[{i + 1}/{total}] {description}", file=sys.stderr, flush=True)

    try:
        report = validate.run_validation(level=level, samplers=names, seed=args.seed,
                                         progress=progress)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(report.table())
    if args.output:
        _write_json(args.output, report.to_dict())
    print("all checks passed" if report.passed else "SOME CHECKS FAILED")
    return 0 if report.passed else 1


def _write_json(path, data):
    try:
        with open(path, "w") as fh:
            json.dump(data, fh, indent=2)
    except OSError as err:
        raise CLIError(f"cannot write {path}: {err.strerror}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smcjax", description="Particle-based inference in JAX: Sequential "
                     "Monte Carlo on one Feynman-Kac core.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser(
        "run", help="run a sampler on a model and print a summary",
        description="Run a sampler on a built-in model or on a model in your own file and "
                    "print the log-evidence, posterior (or filtering) summary, ESS history and "
                    "wall time.")
    run.add_argument("model", nargs="?", default="stochastic_volatility",
                     help="built-in model (" + ", ".join(sorted(BUILTIN)) + ") or "
                          "path/to/file.py:attribute naming a BayesianModel or a "
                          "(StateSpaceModel, observations) pair (default: %(default)s)")
    run.add_argument("--sampler", help="state-space models: " + ", ".join(SAMPLERS["ssm"]) +
                     " (default bootstrap); Bayesian models: " + ", ".join(SAMPLERS["bayes"]) +
                     " (default tempered)")
    run.add_argument("--particles", type=_positive_int, default=10_000,
                     help="number of particles N (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    run.add_argument("--steps", type=_positive_int, default=500,
                     help="time steps of the built-in state-space data (default: %(default)s)")
    run.add_argument("--resampling", default="systematic",
                     choices=["multinomial", "stratified", "systematic", "residual", "ssp",
                              "killing"], help="particle filters: scheme (default: %(default)s)")
    run.add_argument("--ess-threshold", type=_fraction, default=0.5,
                     help="particle filters: resample when ESS < threshold * N "
                          "(default: %(default)s)")
    run.add_argument("--output", help="write the results as JSON to this file")
    run.add_argument("--plot", help="save a diagnostic figure (PNG) to this file")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction,
                     default=sys.stderr.isatty(), help="progress bar on stderr "
                     "(default: on when stderr is a terminal)")
    val = sub.add_parser(
        "validate", help="check every sampler against problems with exact answers",
        description="Run every sampler (or those named) against the catalogue of problems with "
                    "exact answers and print a table of statistics; exit status 1 on failure.")
    level = val.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="a few minutes on 2 cores (default)")
    level.add_argument("--full", action="store_true", help="more seeds, particles and problems")
    val.add_argument("--sampler", action="append",
                     help="only this sampler (repeatable); default: all")
    val.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    val.add_argument("--output", help="write the report as JSON to this file")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "validate":
            return validate_command(args)
        out = run_command(args)
        _print_summary(out)
        if args.output:
            _write_json(args.output, out)
    except CLIError as err:
        print(f"smcjax: error: {err}", file=sys.stderr)
        return 2
    return 0 if out["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())

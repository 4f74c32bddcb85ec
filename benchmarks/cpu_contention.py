"""How much a busy second CPU slows a filter pinned to the first.

The particle-filter benchmark is slower at N = 10^3 with XLA's default thread pool than with
the process pinned to one core. This script measures one possible cause directly: whether
work on one CPU slows work on the other (as it does when two virtual CPUs are hyperthreads
of one physical core). The process pins itself to its first allowed CPU before JAX starts, so
XLA runs single-threaded, and times the smcjax bootstrap filter (``moments=False``, the
benchmark's ``smcjax`` row) and ``particles`` in five phases:

1. alone;
2. while a child process pinned to the second CPU runs a tight loop (``while True: pass``);
3. while it runs a loop of NumPy sums over a 128 KiB array instead (loads and vector adds);
4. while it runs a POSIX shell's empty loop (``while :; do :; done``, no system calls);
5. alone again.

Each figure is the best and the median of ``--rounds`` interleaved timed runs, each after an
untimed run, in ns per particle-step. A ratio near 1 means the CPUs do not contend; the
busy phases are compared with the mean of the two quiet ones. How much two hyperthreads of a
core slow each other depends on what each runs, hence three kinds of load.

Run: ``python benchmarks/cpu_contention.py [--n 1000] [--rounds 50]`` on an otherwise idle
machine with at least two CPUs. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_CPUS = sorted(os.sched_getaffinity(0))
if len(_CPUS) >= 2:  # before JAX creates its CPU client and thread pool
    os.sched_setaffinity(0, {_CPUS[0]})

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from _timing import interleaved_times  # noqa: E402
from particle_filter import T, particles_runner, simulated_data, smcjax_runner  # noqa: E402

_PIN = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\n"
LOADS = {
    "tight_loop": _PIN + "while True:\n    pass\n",
    "numpy_sums": _PIN + "import numpy as np\na = np.ones(16384)\nwhile True:\n    a.sum()\n",
    "shell_loop": _PIN + "os.execvp('sh', ['sh', '-c', 'while :; do :; done'])\n",
}


def _phase(runners, rounds, n):
    times = interleaved_times(runners, rounds, warm_up=False, untimed_first=True)
    scale = 1e9 / (n * T)
    return {name: {"best_ns": min(ts) * scale, "median_ns": float(np.median(ts)) * scale}
            for name, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    if len(_CPUS) < 2:
        raise SystemExit("needs at least two CPUs in the process's affinity mask")
    _, ys = simulated_data()
    runners = {"smcjax": smcjax_runner(ys, args.n), "particles": particles_runner(ys, args.n)}
    for go in runners.values():
        go()
    phases = {"alone": _phase(runners, args.rounds, args.n)}
    for load, program in LOADS.items():
        spinner = subprocess.Popen([sys.executable, "-c", program, str(_CPUS[1])])
        try:
            time.sleep(0.5)
            phases[load] = _phase(runners, args.rounds, args.n)
        finally:
            spinner.kill()
            spinner.wait()
    phases["alone_again"] = _phase(runners, args.rounds, args.n)
    slowdown = {}
    for load in LOADS:
        for name in runners:
            for stat in ("best_ns", "median_ns"):
                quiet = 0.5 * (phases["alone"][name][stat] + phases["alone_again"][name][stat])
                slowdown[f"{load}: {name} {stat[:-3]}"] = phases[load][name][stat] / quiet
    out = {"benchmark": "bootstrap filter pinned to one CPU, with and without a busy loop on "
                        "another CPU (1-d linear Gaussian, T=100, systematic every step)",
           "machine": machine(), "cpus": [_CPUS[0], _CPUS[1]], "N": args.n,
           "rounds": args.rounds, "loads": LOADS, "phases": phases,
           "slowdown_when_other_cpu_busy": slowdown}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

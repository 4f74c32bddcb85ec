"""Interleaved wall-time rounds, shared by the benchmarks.

Each round runs every implementation once, in turn, so that a slow spell of a shared machine
falls on all of them alike rather than on one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_times(runs: dict[str, Callable[[], object]], rounds: int, *,
                      warm_up: bool = True, untimed_first: bool = False) -> dict[str, list[float]]:
    """Wall times in seconds of ``rounds`` interleaved rounds of ``runs`` (name -> callable).

    Args:
      runs: no-argument callables that block until their result is ready.
      rounds: how many times each callable is timed.
      warm_up: call each once before the first round (compilation, caches).
      untimed_first: in every round, call each callable once untimed right before its timed
        call, so that no run starts with the caches the previous implementation filled.

    Returns:
      For each name, the list of its ``rounds`` wall times.
    """
    if warm_up:
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if untimed_first:
                run()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times

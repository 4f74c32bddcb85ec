"""The machine a benchmark ran on, for its JSON: CPU model, core count, JAX version and backend."""

from __future__ import annotations

import os
import platform

import jax


def machine() -> str:
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}"

"""The machine a benchmark ran on, for its JSON: CPU model, core count, JAX version and backend.

A cloud VM often reports only a brand ("AMD EPYC"), and two VMs with the same brand can differ
by a factor of two or three in these benchmarks. So the CPU's family, model and stepping, its
widest SIMD extension and its clock as ``/proc/cpuinfo`` reports it are recorded too, e.g.
``AMD EPYC (family 26, model 2, stepping 1; AVX-512; 2 vCPUs at 2596 MHz)``.
"""

from __future__ import annotations

import os
import platform

import jax


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_description() -> str:
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(info.get("flags", "").split())
    simd = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                           ("avx", "AVX"), ("sse4_2", "SSE4.2"))
                 if flag in flags), None)
    ids = ", ".join(f"{label} {info[field]}" for field, label in
                    (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
                    if field in info)
    clock = info.get("cpu MHz")
    cores = f"{os.cpu_count()} vCPUs" + (f" at {float(clock):.0f} MHz" if clock else "")
    extra = "; ".join(part for part in (ids, simd, cores) if part)
    return f"{name} ({extra})"


def machine() -> str:
    return f"{cpu_description()}, JAX {jax.__version__} on {jax.default_backend()}"

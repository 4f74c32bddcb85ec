"""Test-suite configuration.

The suite's wall time is mostly XLA compilation (hundreds of distinct programs, each run
briefly). LLVM's optimisation level 0 compiles about a third faster and cut the default run
by about a quarter on 2 cores; the HLO passes (fusion, layout) are unchanged, so the tests
still exercise the programs users run. Set ``XLA_FLAGS`` yourself to override.
"""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)

jax.config.update("jax_numpy_rank_promotion", "raise")

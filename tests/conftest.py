"""Test-suite configuration.

The suite's wall time is mostly XLA compilation (hundreds of distinct programs, each run
briefly). LLVM's optimisation level 0 compiles faster: one process pinned to one core went
from 1890 s to 1300 s, and tests/test_filters.py from 202 s to 165 s on 2 cores (the README
has the figures; the two pytest-xdist workers matter more). The HLO passes (fusion, layout)
are unchanged, so the tests still exercise the programs users run. Set ``XLA_FLAGS``
yourself to override.
"""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)

jax.config.update("jax_numpy_rank_promotion", "raise")

"""The validation report: one :class:`Row` per check, a text table and a JSON-able dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Row", "ValidationReport"]


class Row(NamedTuple):
    """One line of a report (``seconds``: compile + all runs of this sampler on this problem)."""

    problem: str
    sampler: str
    check: str
    statistic: float
    passed: bool
    seconds: float
    message: str


def _json_float(v):
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class ValidationReport:
    """All rows of a validation run; ``passed`` is True when every row passed."""

    rows: list
    level: str = "quick"
    seed: int = 0
    alpha: float = 0.01
    num_runs: int = 0
    seconds: float = 0.0
    samplers: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def failures(self) -> list:
        """The rows that failed."""
        return [r for r in self.rows if not r.passed]

    def table(self) -> str:
        """An aligned text table (problem, sampler, check, statistic, pass/fail, time), then
        one line per failure with its message."""
        head = ("problem", "sampler", "check", "statistic", "result", "time")
        body = [(r.problem, r.sampler, r.check,
                 f"{r.statistic:.2f}" if math.isfinite(r.statistic) else str(r.statistic),
                 "pass" if r.passed else "FAIL", f"{r.seconds:.1f}s") for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
        right = {3, 5}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]
        bad = self.failures()
        lines.append(f"{len(self.rows) - len(bad)} of {len(self.rows)} checks passed "
                     f"({self.level}, {self.num_runs} runs per pair, seed {self.seed}, "
                     f"family-wise α = {self.alpha:g}, {self.seconds:.0f}s)")
        lines += [f"FAIL {r.sampler} on {r.problem} [{r.check}]: {r.message}" for r in bad]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (non-finite statistics become None)."""
        return {
            "level": self.level, "seed": self.seed, "passed": self.passed, "alpha": self.alpha,
            "num_runs": self.num_runs, "seconds": self.seconds,
            "samplers": list(self.samplers), "problems": list(self.problems),
            "rows": [{"problem": r.problem, "sampler": r.sampler, "check": r.check,
                      "statistic": _json_float(r.statistic), "passed": bool(r.passed),
                      "seconds": float(r.seconds), "message": r.message} for r in self.rows],
        }

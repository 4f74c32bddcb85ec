"""Validation against exact answers: statistical checks users can run on their own samplers."""

from smcjax.validate.checks import (
    CheckResult,
    evidence_ratio_check,
    mean_check_across_runs,
    weighted_moment_check,
)

__all__ = [
    "CheckResult",
    "evidence_ratio_check",
    "mean_check_across_runs",
    "weighted_moment_check",
]

"""Run samplers against every applicable catalogue problem and report the checks.

:func:`run_validation` runs each selected :class:`Sampler` on each applicable
:class:`~smcjax.validate.Problem` for ``R`` independent seeds (one compilation per pair, then a
loop over the seeds) and applies the checks for which the problem has an exact answer:

============ ===================================================================================
check        statistic (standard errors from the R independent runs)
============ ===================================================================================
evidence     mean of ``Ẑ/Z`` in linear space (:func:`~smcjax.validate.evidence_ratio_check`)
moments      posterior means and variances, element-wise t-tests (bayes)
filtering    ``Instance.summary`` at every step: filtering means and variances, or the
             enumerated state probabilities (ssm)
marginal[i]  coordinate ``i`` of the posterior / final filtering law, binned at its exact deciles
modes        mode masses, or final-state probabilities (:func:`~smcjax.validate.discrete_tv_check`)
status       present only when a run collapsed (every weight zero) or stopped short of the target
============ ===================================================================================

Error rate: a correct sampler fails a report with probability about ``alpha`` (default 1%):
every check uses the Bonferroni level ``alpha / (number of checks in the report)``, and inside a
check the compared values are Bonferroni-corrected again. The t approximation is what makes
this "about"; ``Ẑ/Z`` is right-skewed, so the problems are sized to keep ``sd(log Ẑ)`` small.

A sampler is a :class:`Sampler`: a name, the problem kinds it applies to, and
``run(key, instance, num_particles) -> SamplerOutput`` (traced under ``jax.jit`` unless
``jit=False``; see :mod:`smcjax.validate.samplers`). Built-in samplers are in
:data:`SAMPLERS`; pass your own with ``extra_samplers``.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from smcjax._compile import jit
from smcjax.validate import catalogue
from smcjax.validate.catalogue import Instance, Problem, flatten_particles
from smcjax.validate.checks import (
    CheckResult,
    discrete_tv_check,
    evidence_ratio_check,
    marginal_tv_check,
    mean_check_across_runs,
    normalized_weights,
)
from smcjax.validate.report import Row, ValidationReport
from smcjax.validate.samplers import SAMPLERS, Sampler, SamplerOutput

__all__ = ["Sampler", "SamplerOutput", "Level", "LEVELS", "SAMPLERS", "Row", "ValidationReport",
           "run_validation", "run_problem"]


class Level(NamedTuple):
    """Sizes of a validation level: runs per pair, particles per kind, problems per sampler."""

    num_runs: int
    num_particles: dict
    max_problems: int | None


LEVELS = {
    "quick": Level(16, {"bayes": 256, "ssm": 512, "diffusion": 1024}, 3),
    "full": Level(32, {"bayes": 2048, "ssm": 4096, "diffusion": 4096}, None),
}


def _check_names(problem: Problem, inst: Instance) -> list[str]:
    ex = inst.exact
    names = []
    if ex.log_evidence is not None:
        names.append("evidence")
    if problem.kind == "ssm":
        if ex.filtering is not None:
            names.append("filtering")
    elif ex.mean is not None or ex.var is not None:
        names.append("moments")
    names += [f"marginal[{i}]" for i, _ in ex.marginal_cdfs]
    if ex.mode_masses is not None:
        names.append("modes")
    return names


def _stack(outs: list[SamplerOutput]):
    host = [jax.device_get(o) for o in outs]
    flat = np.stack([flatten_particles(o.particles, np.shape(o.log_weights)[0]) for o in host])
    lw = np.stack([np.asarray(o.log_weights, np.float64) for o in host])
    log_z = (None if host[0].log_evidence is None
             else np.array([float(o.log_evidence) for o in host]))
    filt = (None if host[0].filtering is None
            else np.stack([np.asarray(o.filtering, np.float64) for o in host]))
    ok = np.array([bool(np.all(o.ok)) for o in host])
    return flat, lw, log_z, filt, ok


def _checks(problem: Problem, inst: Instance, outs, alpha: float) -> list[CheckResult]:
    flat, lw, log_z, filt, ok = _stack(outs)
    ex, r = inst.exact, len(ok)
    if not ok.all():
        return [CheckResult("status", math.inf, 0.0, False,
                            f"{int((~ok).sum())} of {r} runs collapsed (every weight zero) or did "
                            "not reach the target; see the sampler's status")]
    w = normalized_weights(lw)
    results = []
    if ex.log_evidence is not None:
        if log_z is None:
            results.append(CheckResult("evidence", math.nan, 1.0, True,
                                       "the sampler gives no evidence estimate; not checked"))
        else:
            results.append(evidence_ratio_check(log_z, ex.log_evidence, alpha=alpha))
    if problem.kind == "ssm":
        if ex.filtering is not None:
            if filt is None:
                raise ValueError("an ssm sampler must return SamplerOutput.filtering")
            labels = None
            if len(inst.names) == ex.filtering.shape[-1]:
                labels = [[f"{n} at t = {t}" for n in inst.names]
                          for t in range(ex.filtering.shape[0])]
            results.append(mean_check_across_runs(filt, ex.filtering, alpha=alpha,
                                                  name="filtering", labels=labels))
    elif ex.mean is not None or ex.var is not None:
        d = flat.shape[-1]
        m = np.einsum("rn,rnd->rd", w, flat)
        v = np.einsum("rn,rnd->rd", w, (flat - m[:, None]) ** 2)
        nan = np.full(d, np.nan)
        truth = np.concatenate([nan if ex.mean is None else np.asarray(ex.mean, np.float64),
                                nan if ex.var is None else np.asarray(ex.var, np.float64)])
        names = inst.names if len(inst.names) == d else [f"x[{i}]" for i in range(d)]
        labels = [f"mean of {n}" for n in names] + [f"variance of {n}" for n in names]
        results.append(mean_check_across_runs(np.concatenate([m, v], axis=1), truth,
                                              alpha=alpha, name="moments", labels=labels))
    for i, cdf in ex.marginal_cdfs:
        results.append(marginal_tv_check(flat[:, :, i], lw, cdf, alpha=alpha,
                                         name=f"marginal[{i}]"))
    if ex.mode_masses is not None:
        k = len(ex.mode_masses)
        masses = np.stack([np.bincount(ex.mode_of(f), weights=wr, minlength=k)[:k]
                           for f, wr in zip(flat, w, strict=True)])
        total_ess = float(np.sum(1.0 / np.sum(w**2, axis=1)))  # floor for never-seen modes
        results.append(discrete_tv_check(masses, ex.mode_masses, alpha=alpha, name="modes",
                                         num_effective=total_ess))
    return results


def run_problem(sampler: Sampler, problem: Problem, *, num_particles: int, num_runs: int,
                seed: int = 0, alpha: float = 1e-3) -> tuple[list[CheckResult], float]:
    """Run one sampler on one problem ``num_runs`` times and apply its checks.

    Returns ``(check results, seconds)`` where the seconds cover compilation and all runs.
    """
    inst = problem.build()
    start = time.perf_counter()
    fn = lambda k: sampler.run(k, inst, num_particles)  # noqa: E731
    fn = jit(fn) if sampler.jit else fn
    # the seed, the problem's name and the sampler's name pick the keys, so every pair gets
    # its own streams (samplers sharing a problem's keys drew the same prior particles, and
    # their checks were correlated)
    base = jax.random.key(seed)
    for name in (problem.name, sampler.name):
        base = jax.random.fold_in(base, zlib.crc32(name.encode()) >> 1)
    outs = [jax.block_until_ready(fn(k)) for k in jax.random.split(base, num_runs)]
    seconds = time.perf_counter() - start
    return _checks(problem, inst, outs, alpha), seconds


def _resolve_samplers(samplers, extra_samplers) -> dict:
    extra = dict(extra_samplers or {})
    for name, s in extra.items():
        if not isinstance(s, Sampler):
            raise ValueError(f"extra_samplers[{name!r}] must be a smcjax.validate.Sampler")
        if name in SAMPLERS:
            raise ValueError(f"extra sampler name {name!r} is taken by a built-in sampler")
    table = {**SAMPLERS, **{name: s._replace(name=name) for name, s in extra.items()}}
    if samplers is None:
        return table
    if isinstance(samplers, str):
        samplers = [samplers]
    unknown = [s for s in samplers if s not in table]
    if unknown:
        raise ValueError(f"unknown sampler(s) {unknown}; valid names: {sorted(table)}")
    return {s: table[s] for s in dict.fromkeys(samplers)}


def _resolve_problems(problems) -> list[Problem]:
    if problems is None:
        return list(catalogue.problems())
    out = []
    for p in [problems] if isinstance(problems, (str, Problem)) else problems:
        if isinstance(p, Problem):
            if p.kind not in catalogue.KINDS:
                raise ValueError(f"problem {p.name!r} has unknown kind {p.kind!r}")
            out.append(p)
        else:
            out.append(catalogue.get_problem(p))
    return out


def _plan(level: Level, quick: bool, samplers: dict, problems: list[Problem], explicit: bool):
    plan = []
    for s in samplers.values():
        chosen = 0
        for p in problems:
            if p.kind not in s.kinds or (quick and not explicit and not p.quick):
                continue
            if level.max_problems is not None and not explicit and chosen >= level.max_problems:
                break
            if s.applies is not None and not s.applies(p.build()):
                continue
            plan.append((s, p))
            chosen += 1
    return plan


def run_validation(level: str = "quick", samplers=None, seed: int = 0,
                   progress: Callable | None = None, *, extra_samplers: dict | None = None,
                   problems=None, alpha: float = 0.01, num_runs: int | None = None,
                   num_particles: int | None = None) -> ValidationReport:
    """Validate samplers against the catalogue of exact answers.

    Args:
      level: ``"quick"`` (16 runs per pair; N = 256 for static models, 512 for filters,
        1024 for diffusion samplers; at most 3 quick problems per sampler) or ``"full"``
        (32 runs; N = 2048 / 4096 / 4096; every applicable problem). See :data:`LEVELS`.
      samplers: names to run (default: every built-in sampler and every extra one).
      seed: base seed; the same seed gives the same report.
      progress: optional ``progress(i, total, description)``, called before each
        sampler-problem pair (``i = 0..total-1``) and once with ``i = total`` at the end.
      extra_samplers: ``{name: Sampler}`` to validate besides the built-in ones.
      problems: restrict to these problems (names or :class:`Problem` objects, e.g. your own);
        given explicitly, they are all used at any level.
      alpha: family-wise error rate of the whole report (Bonferroni over its checks).
      num_runs, num_particles: override the level's sizes.

    Returns:
      A :class:`ValidationReport`.

    Raises:
      ValueError: unknown level, sampler or problem names (listing the valid ones).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose one of {sorted(LEVELS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    lv = LEVELS[level]
    if num_runs is not None:
        if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 2:
            raise ValueError(f"num_runs must be an int >= 2, got {num_runs!r}")
        lv = lv._replace(num_runs=num_runs)
    chosen = _resolve_samplers(samplers, extra_samplers)
    probs = _resolve_problems(problems)
    plan = _plan(lv, level == "quick", chosen, probs, explicit=problems is not None)
    if not plan:
        raise ValueError(f"no problem applies to the samplers {sorted(chosen)} (problem kinds: "
                         f"{sorted({p.kind for p in probs})})")
    num_checks = sum(max(1, len(_check_names(p, p.build()))) for _, p in plan)
    per_check = alpha / max(num_checks, 1)
    rows, start = [], time.perf_counter()
    for i, (s, p) in enumerate(plan):
        if progress is not None:
            progress(i, len(plan), f"{s.name} on {p.name}")
        n = num_particles if num_particles is not None else lv.num_particles[p.kind]
        try:
            results, secs = run_problem(s, p, num_particles=n, num_runs=lv.num_runs,
                                        seed=seed, alpha=per_check)
        except Exception as e:  # a sampler that raises fails its row, not the whole report
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            results, secs = [CheckResult("error", math.inf, 0.0, False,
                                         f"{type(e).__name__}: {first}")], 0.0
        rows += [Row(p.name, s.name, c.name, float(c.statistic), bool(c.passed), secs,
                     c.message) for c in results]
    if progress is not None:
        progress(len(plan), len(plan), "done")
    return ValidationReport(rows, level, seed, alpha, lv.num_runs, time.perf_counter() - start,
                            list(dict.fromkeys(s.name for s, _ in plan)),
                            list(dict.fromkeys(p.name for _, p in plan)))

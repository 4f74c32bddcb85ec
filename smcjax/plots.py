"""Diagnostic plots (matplotlib is an optional extra: ``pip install smcjax[plots]``).

* :func:`plot_ess`: ESS / N over steps, with the resampling threshold;
* :func:`plot_temperatures`: the adaptive temperature path β_t;
* :func:`plot_marginals`: weighted histograms of 1-d marginals, against the exact density when
  one is known (a ``{name: callable}`` of vectorised pdfs, or ``{name: (mean, sd)}`` Normals);
* :func:`plot_sbc_ranks`: the simulation-based-calibration rank histogram with its 99 % band;
* :func:`plot_run`: a one-figure report of a run, saved to a file.
"""

from __future__ import annotations

import math

import numpy as np

from smcjax.summary import flatten_particles

__all__ = ["plot_ess", "plot_temperatures", "plot_marginals", "plot_sbc_ranks", "plot_run"]


def _plt():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg",) and not _has_display():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'smcjax[plots]'") from err
    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("MPLBACKEND"))


def _steps(result):
    num = getattr(result, "num_steps", None)
    return None if num is None else int(np.asarray(num)) + 1


def plot_ess(ax, ess, num_particles, threshold: float | None = 0.5):
    """ESS / N against the step index."""
    ess = np.asarray(ess, float)
    ax.plot(np.arange(len(ess)), ess / num_particles, lw=1.2)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=0.8, label=f"threshold {threshold}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("ESS / N")
    ax.set_title("effective sample size")


def plot_temperatures(ax, temperatures):
    """The temperature path β_t (0 to 1)."""
    t = np.asarray(temperatures, float)
    ax.plot(np.arange(len(t)), t, marker="o", ms=3, lw=1.2)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("step")
    ax.set_ylabel("β")
    ax.set_title("temperature path")


def _normal_pdf(mean, sd):
    return lambda x: np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def plot_marginals(axes, particles, log_weights, exact=None, max_params: int | None = None):
    """Weighted histograms of each scalar coordinate, with exact densities where given."""
    lw = np.asarray(log_weights, float)
    w = np.exp(lw - np.max(lw))
    w /= w.sum()
    flat = flatten_particles(particles)
    names = list(flat)[: max_params or len(flat)]
    for ax, name in zip(np.ravel(axes), names, strict=False):
        x = flat[name]
        ax.hist(x, bins=40, weights=w, density=True, alpha=0.6, label="smcjax")
        pdf = None if exact is None else exact.get(name)
        if pdf is not None:
            if isinstance(pdf, tuple):
                pdf = _normal_pdf(*pdf)
            grid = np.linspace(*np.quantile(x, [0.001, 0.999]), 200)
            ax.plot(grid, pdf(grid), color="black", lw=1.2, label="exact")
            ax.legend(fontsize=8)
        ax.set_title(name, fontsize=9)
    return names


def plot_sbc_ranks(ax, ranks, num_draws: int, num_bins: int = 20):
    """SBC rank histogram with the 99 % band of a uniform histogram (binomial)."""
    ranks = np.asarray(ranks).ravel()
    edges = np.linspace(-0.5, num_draws + 0.5, num_bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    expected = len(ranks) / num_bins
    sd = math.sqrt(expected * (1 - 1 / num_bins))
    ax.bar(0.5 * (edges[1:] + edges[:-1]), counts, width=np.diff(edges), alpha=0.7)
    ax.axhspan(expected - 2.58 * sd, expected + 2.58 * sd, color="grey", alpha=0.25,
               label="99% band (uniform)")
    ax.set_xlabel("rank of θ among posterior draws")
    ax.set_ylabel("count")
    ax.set_title("SBC rank histogram")
    ax.legend(fontsize=8)


def plot_run(result, path, *, num_particles: int, exact=None, title: str = ""):
    """Save a report figure of one run: ESS, temperature path (if any) and marginals."""
    plt = _plt()
    k = _steps(result)
    has_temps = hasattr(result, "temperatures")
    if hasattr(result, "particles"):
        particles, log_weights = result.particles, result.log_weights
    else:
        particles, log_weights = result.final_state.particles, result.final_state.log_weights
    num_marg = min(4, len(flatten_particles(particles)))
    ncols = 1 + int(has_temps) + num_marg
    fig, axes = plt.subplots(1, ncols, figsize=(3.4 * ncols, 3.0), squeeze=False)
    axes = axes[0]
    ess = np.asarray(result.ess)[:k] if k else np.asarray(result.ess)
    plot_ess(axes[0], ess, num_particles)
    if has_temps:
        plot_temperatures(axes[1], np.asarray(result.temperatures)[:k])
    plot_marginals(axes[1 + int(has_temps):], particles, log_weights, exact=exact,
                   max_params=num_marg)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

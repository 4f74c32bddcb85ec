"""Progress reporting from inside compiled loops (tqdm, through ``jax.debug.callback``).

The samplers accept a ``callback`` that they call on the host after every step, from inside
the compiled ``lax.scan`` / ``lax.while_loop``. The classes below turn those calls into a tqdm
progress bar; with ``callback=None`` (the default) nothing is traced and nothing runs.

* :class:`ProgressBar` for fixed-length runs (particle filters): ``callback(step, ess,
  log_evidence)``; the bar counts steps and shows the ESS and the running log-evidence.
* :class:`TemperingProgress` for adaptive tempering: ``callback(step, beta, ess,
  acceptance_rate)``; the bar runs from β = 0 to 1 and shows the step, ESS and acceptance.

Example:
  >>> import jax
  >>> import smcjax
  >>> from smcjax.models import linear_gaussian as lg
  >>> p = lg.random_params(jax.random.key(0))
  >>> _, ys = lg.simulate(jax.random.key(1), p, 50)
  >>> bar = smcjax.progress.ProgressBar(total=50, disable=True)
  >>> res = smcjax.particle_filter(jax.random.key(2), lg.make_model(p), ys, 100, callback=bar)
  >>> bar.close()
"""

from __future__ import annotations

import numpy as np

__all__ = ["ProgressBar", "TemperingProgress", "register", "dispatch"]

# Host callbacks are looked up by an integer id that travels through the compiled program as a
# traced argument, so a new progress bar does not recompile the sampler.
_REGISTRY: dict[int, object] = {}
_MAX_REGISTERED = 256


def register(callback) -> int:
    """Register a host callback and return its id (pass the id as a traced argument)."""
    cid = id(callback) % (2**31 - 1)
    _REGISTRY[cid] = callback
    while len(_REGISTRY) > _MAX_REGISTERED:
        _REGISTRY.pop(next(iter(_REGISTRY)))
    return cid


def dispatch(*args):
    """Host side: ``dispatch(*values, cid)`` calls the callback registered under ``cid``."""
    *values, cid = args
    callback = _REGISTRY.get(int(np.ravel(np.asarray(cid))[0]))
    if callback is not None:
        callback(*values)


def _tqdm(**kwargs):
    try:
        from tqdm.auto import tqdm
    except ImportError as err:  # pragma: no cover - tqdm is a dependency
        raise ImportError("progress bars need tqdm: pip install tqdm") from err
    return tqdm(**kwargs)


class _Bar:
    """Closes its tqdm bar ``self.bar``; usable as a context manager."""

    def close(self):
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProgressBar(_Bar):
    """A tqdm bar for a run of ``total`` steps; pass the instance as ``callback``.

    Under ``vmap`` the callback fires once per batch element; the bar shows the furthest step.
    """

    def __init__(self, total: int, desc: str = "SMC", disable: bool = False, **tqdm_kwargs):
        self.bar = _tqdm(total=int(total), desc=desc, disable=disable, unit="step", **tqdm_kwargs)
        self.last_ess = None
        self.last_log_evidence = None

    def __call__(self, step, ess, log_evidence):
        step = int(np.max(np.asarray(step))) + 1
        self.last_ess = float(np.min(np.asarray(ess)))
        self.last_log_evidence = float(np.min(np.asarray(log_evidence)))
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        self.bar.set_postfix(ess=f"{self.last_ess:.0f}", logZ=f"{self.last_log_evidence:.2f}",
                             refresh=False)


class TemperingProgress(_Bar):
    """A tqdm bar from β = 0 to β = 1 for adaptive tempering; pass it as ``callback``."""

    def __init__(self, desc: str = "tempering", disable: bool = False, resolution: int = 1000,
                 **tqdm_kwargs):
        self.resolution = resolution
        self.bar = _tqdm(total=resolution, desc=desc, disable=disable, unit="‰β",
                         bar_format="{l_bar}{bar}| β={postfix}", **tqdm_kwargs)
        self.steps = 0
        self.beta = 0.0

    def __call__(self, step, beta, ess, acceptance_rate):
        self.steps = int(np.max(np.asarray(step)))
        self.beta = float(np.min(np.asarray(beta)))
        target = int(round(self.beta * self.resolution))
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        acc = np.asarray(acceptance_rate, float)
        acc_txt = "–" if not np.isfinite(acc).any() else f"{np.nanmean(acc):.2f}"
        self.bar.set_postfix_str(
            f"{self.beta:.4f} step {self.steps} ESS {float(np.min(np.asarray(ess))):.0f} "
            f"acc {acc_txt}", refresh=False)

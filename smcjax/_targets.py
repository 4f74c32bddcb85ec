"""What ``smcjax run`` can run: built-in models, user files, and the samplers for each kind."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from smcjax.bayes import BayesianModel
from smcjax.filters import StateSpaceModel

__all__ = ["Target", "BUILTIN", "SAMPLERS", "load_target", "TargetError"]


class TargetError(Exception):
    """A user-facing problem with a model specification (printed as one line)."""


class Target(NamedTuple):
    """A model ready to run: ``kind`` is ``"bayes"`` or ``"ssm"``."""

    name: str
    kind: str
    model: Any
    observations: Any = None
    exact: dict | None = None  # {flattened name: (mean, sd)} for plots, when known


def _sv(steps: int):
    import jax

    from smcjax.models import stochastic_volatility as sv

    _, ys = sv.simulate(jax.random.key(42), steps)
    return Target("stochastic_volatility", "ssm", sv.make_model(), ys)


def _lg(steps: int):
    import jax

    from smcjax.models import linear_gaussian as lg

    p = lg.random_params(jax.random.key(0), 1, 1)
    _, ys = lg.simulate(jax.random.key(42), p, steps)
    model = lg.make_model(p)._replace(proposal=lg.optimal_proposal(p),
                                      auxiliary_log_weight=lg.predictive_log_prob(p))
    kf = lg.kalman_filter(p, ys)
    return Target("linear_gaussian", "ssm", model, ys,
                  {"x[0]": (float(kf.means[-1, 0]), float(np.sqrt(kf.covs[-1, 0, 0])))})


def _conjugate(steps: int):
    from smcjax.models import conjugate_gaussian as cg

    model, ex = cg.make_model(5)
    sd = np.sqrt(np.diag(ex.posterior_cov))
    exact = {f"x[{i}]": (float(m), float(s)) for i, (m, s) in
             enumerate(zip(ex.posterior_mean, sd, strict=True))}
    return Target("conjugate_gaussian", "bayes", model, None, exact)


def _simple(module: str, attr: str = "make_model"):
    def build(steps: int):
        mod = importlib.import_module(f"smcjax.models.{module}")
        out = getattr(mod, attr)()
        model = out[0] if isinstance(out, tuple) else out
        return Target(module, "bayes", model)

    return build


BUILTIN: dict[str, Callable[[int], Target]] = {
    "stochastic_volatility": _sv,
    "linear_gaussian": _lg,
    "conjugate_gaussian": _conjugate,
    "logistic_regression": _simple("logistic_regression"),
    "eight_schools": _simple("eight_schools"),
    "beta_binomial": _simple("beta_binomial"),
    "bimodal": _simple("bimodal"),
}

SAMPLERS = {
    "ssm": ["bootstrap", "guided", "auxiliary"],
    "bayes": ["tempered", "tempered_mala", "tempered_hmc", "tempered_nuts", "waste_free",
              "data_tempering"],
}


def _as_target(obj, label: str) -> Target:
    if callable(obj) and not isinstance(obj, (BayesianModel, StateSpaceModel)):
        try:
            obj = obj()
        except TypeError as err:
            raise TargetError(f"{label} is callable but calling it with no arguments failed: "
                              f"{err}") from None
    if isinstance(obj, BayesianModel):
        return Target(label, "bayes", obj)
    if isinstance(obj, dict) and "model" in obj:
        obj = (obj["model"], obj.get("observations"))
    if (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], StateSpaceModel)):
        if obj[1] is None:
            raise TargetError(f"{label}: a StateSpaceModel needs observations")
        return Target(label, "ssm", obj[0], obj[1])
    if isinstance(obj, StateSpaceModel):
        raise TargetError(f"{label} is a StateSpaceModel without observations; export "
                          "(model, observations) instead")
    raise TargetError(f"{label} is a {type(obj).__name__}, not a smcjax.BayesianModel or a "
                      "(smcjax.StateSpaceModel, observations) pair")


def load_target(spec: str, steps: int = 500) -> Target:
    """A built-in model name or ``path/to/file.py:attribute``."""
    if spec in BUILTIN:
        return BUILTIN[spec](steps)
    if ":" not in spec:
        raise TargetError(f"unknown model {spec!r}: use a built-in name "
                          f"({', '.join(sorted(BUILTIN))}) or path/to/file.py:attribute")
    path, attr = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    try:
        mod_spec = importlib.util.spec_from_file_location("smcjax_user_model", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 -- any error in user code becomes one line
        raise TargetError(f"cannot import {path}: {type(err).__name__}: {err}") from None
    if not attr or not hasattr(module, attr):
        raise TargetError(f"{path} has no attribute {attr!r}")
    return _as_target(getattr(module, attr), f"{path}:{attr}")

"""Built-in models, importable as ``smcjax.models``. Each module states its exact answers.

* :mod:`smcjax.models.linear_gaussian`: linear-Gaussian state-space model with its Kalman filter.
* :mod:`smcjax.models.stochastic_volatility`: stochastic volatility, the ``smcjax run`` default.
"""

from smcjax.models import linear_gaussian, stochastic_volatility

__all__ = ["linear_gaussian", "stochastic_volatility"]

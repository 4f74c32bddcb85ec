"""Built-in models, importable as ``smcjax.models``. Each module states its exact answers.

* :mod:`smcjax.models.linear_gaussian`: linear-Gaussian state-space model with its Kalman filter.
* :mod:`smcjax.models.stochastic_volatility`: stochastic volatility, the ``smcjax run`` default.
* :mod:`smcjax.models.conjugate_gaussian`: Gaussian likelihood, correlated Gaussian prior, any
  dimension; exact posterior and evidence.
* :mod:`smcjax.models.linear_regression`: Bayesian linear regression, Normal-inverse-Gamma prior;
  exact posterior and evidence.
* :mod:`smcjax.models.beta_binomial`: hierarchical Beta-Binomial (Efron-Morris batting data);
  evidence and moments by quadrature over the hyperparameters.
* :mod:`smcjax.models.logistic_regression`: logistic regression on the Pima data (shipped in
  ``models/data``); reference evidence from importance sampling.
* :mod:`smcjax.models.eight_schools`: non-centred eight schools; reference by 1-d quadrature.
* :mod:`smcjax.models.bimodal`: bimodal posterior from a mixture likelihood; exact mode masses
  and evidence.
* :mod:`smcjax.models.diffusion_toy`: a class-conditional 2-d diffusion model (flax MLP trained
  by denoising score matching, weights cached in ``models/diffusion_toy_params.npz``) on
  Gaussian-mixture data, so annealed / product / guided targets have exact answers.
* :mod:`smcjax.models.gamma_poisson`: conjugate Gamma-Poisson; exact posterior and evidence.
* :mod:`smcjax.models.discrete_hmm`: a 3-state hidden Markov model with int particles; exact
  likelihood and filtering probabilities by the forward algorithm.
"""

from smcjax.models import (
    beta_binomial,
    bimodal,
    conjugate_gaussian,
    diffusion_toy,
    discrete_hmm,
    eight_schools,
    gamma_poisson,
    linear_gaussian,
    linear_regression,
    logistic_regression,
    stochastic_volatility,
)

__all__ = ["conjugate_gaussian", "linear_gaussian", "stochastic_volatility",
           "beta_binomial", "bimodal", "eight_schools", "linear_regression",
           "logistic_regression", "diffusion_toy", "gamma_poisson", "discrete_hmm"]

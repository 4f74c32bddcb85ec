"""particles 0.4 waste-free adaptive-tempering SMC on logistic regression (NumPy reference).

Run by ``benchmarks/tempered_smc.py`` with the interpreter of ``benchmarks/.venv-particles``
(particles 0.4 needs numpy < 2, so it cannot share jax's environment)::

    python _particles_waste_free.py DATA_DIR NUM_PARTICLES NUM_SEEDS LEN_CHAIN PRIOR_SCALE

``DATA_DIR`` holds ``x.npy`` (design with intercept, as built by
``smcjax.models.logistic_regression.load_data``) and ``y.npy`` (0/1 labels). ``NUM_PARTICLES``
is the total N = M · LEN_CHAIN (M resampled particles, each starting a chain of LEN_CHAIN
states, all kept). Prints one JSON line: ``log_z``, ``times`` and ``evals`` per seed.
"""

import json
import sys
import time

import numpy as np
import particles
from particles import distributions as dists
from particles import smc_samplers as ssp
from scipy.special import log_expit


def main():
    data_dir, n, num_seeds, len_chain, prior_scale = sys.argv[1:6]
    n, num_seeds, len_chain, prior_scale = int(n), int(num_seeds), int(len_chain), \
        float(prior_scale)
    x = np.load(f"{data_dir}/x.npy")
    y = np.load(f"{data_dir}/y.npy")
    xs = (2.0 * y - 1.0)[:, None] * x
    p = x.shape[1]
    counter = {"evals": 0}

    class LogisticRegression(ssp.StaticModel):
        def loglik(self, theta, t=None):  # vectorised over particles and data
            beta = theta["beta"]
            counter["evals"] += beta.shape[0]
            return np.sum(log_expit(beta @ xs.T), axis=1)

    prior = dists.StructDist({"beta": dists.MvNormal(scale=prior_scale, cov=np.eye(p))})
    log_z, times, evals = [], [], []
    for seed in range(num_seeds):
        np.random.seed(seed)  # noqa: NPY002 -- particles draws from NumPy's global RNG
        counter["evals"] = 0
        model = LogisticRegression(data=xs, prior=prior)
        fk = ssp.AdaptiveTempering(model=model, len_chain=len_chain, wastefree=True)
        alg = particles.SMC(fk=fk, N=max(1, n // len_chain), verbose=False)
        t0 = time.perf_counter()
        alg.run()
        times.append(time.perf_counter() - t0)
        log_z.append(float(alg.summaries.logLts[-1]))
        evals.append(counter["evals"])
    print(json.dumps(dict(log_z=log_z, times=times, evals=evals,
                          version=getattr(particles, "__version__", "0.4"))))


if __name__ == "__main__":
    main()

import jax
from smcjax.models import linear_gaussian as lg

import smcjax


def test_bootstrap_runs_and_is_close_to_kalman():
    p = lg.random_params(jax.random.key(0), 1, 1)
    _, ys = lg.simulate(jax.random.key(1), p, 30)
    res = smcjax.particle_filter(jax.random.key(2), lg.make_model(p), ys, 2000)
    assert res.status == "ok"
    assert abs(float(res.log_evidence) - lg.kalman_filter(p, ys).log_likelihood) < 1.0

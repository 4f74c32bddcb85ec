"""The ``smcjax run`` command line."""

import json

import jax.numpy as jnp
import pytest

from smcjax import cli
from smcjax.models import stochastic_volatility as sv


def test_run_prints_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["run", "--particles", "200", "--steps", "30", "--output", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for word in ("log-evidence", "filtering mean", "ESS", "wall time", "status           ok"):
        assert word in text
    data = json.loads(out.read_text())
    assert data["num_particles"] == 200 and len(data["ess"]) == 30
    assert data["status"] == "ok"


def test_run_reports_all_zero_weights(monkeypatch, capsys):
    real = sv.make_model

    def broken(*a, **k):
        m = real(*a, **k)
        return m._replace(observation_log_prob=lambda x, y, t: jnp.where(t >= 2, -jnp.inf, 0.0))

    monkeypatch.setattr(sv, "make_model", broken)
    code = cli.main(["run", "--particles", "50", "--steps", "5"])
    text = capsys.readouterr().out
    assert code == 1
    assert "all weights zero at step 2" in text
    assert "log-evidence     -inf" in text


@pytest.mark.parametrize("argv", [["run", "--particles", "0"], ["run", "--particles", "x"],
                                  ["run", "--ess-threshold", "2"], ["run", "--resampling", "bad"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err

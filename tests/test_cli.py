"""The ``smcjax`` command line: run, user model files, JSON output, errors."""

import json
import math
import textwrap

import jax.numpy as jnp
import pytest
from smcjax.models import stochastic_volatility as sv

from smcjax import cli

JSON_KEYS = {"model", "sampler", "num_particles", "seed", "log_evidence", "log_evidence_se",
             "posterior", "ess", "likelihood_evaluations", "seconds", "status"}

USER_FILE = textwrap.dedent('''
    import jax, jax.numpy as jnp
    import smcjax

    # theta ~ N(0, 2^2); y_j ~ N(theta, 1), j = 1..4
    Y = jnp.array([0.8, 1.3, 0.2, 1.1])

    def log_prior(theta):
        return -0.5 * (theta / 2.0) ** 2 - jnp.log(2.0) - 0.5 * jnp.log(2 * jnp.pi)

    def log_likelihood(theta):
        return jnp.sum(-0.5 * (Y - theta) ** 2 - 0.5 * jnp.log(2 * jnp.pi))

    model = smcjax.BayesianModel(log_prior, log_likelihood,
                                 lambda key: 2.0 * jax.random.normal(key))
    not_a_model = 42
''')


def exact_answers():
    y = [0.8, 1.3, 0.2, 1.1]
    prec = 1 / 4 + len(y)
    mean = sum(y) / prec
    var = 1 / prec
    # log Z = log N(y; 0, I + 4 11')
    n, s, ss = len(y), sum(y), sum(v * v for v in y)
    quad = ss - 4 * s * s / (1 + 4 * n)
    log_det = math.log(1 + 4 * n)
    log_z = -0.5 * (quad + log_det + n * math.log(2 * math.pi))
    return mean, var, log_z


def test_run_prints_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["run", "--particles", "200", "--steps", "30", "--output", str(out),
                     "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    for word in ("log-evidence", "filtering mean", "ESS", "wall time", "status           ok"):
        assert word in text
    data = json.loads(out.read_text())
    assert JSON_KEYS <= set(data)
    assert data["num_particles"] == 200 and len(data["ess"]) == 30
    assert data["status"] == "ok"


def test_user_model_file_matches_exact_answer(tmp_path, capsys):
    f = tmp_path / "my_model.py"
    f.write_text(USER_FILE)
    out = tmp_path / "out.json"
    code = cli.main(["run", f"{f}:model", "--particles", "4000", "--seed", "1", "--output",
                     str(out), "--no-progress", "--plot", str(tmp_path / "p.png")])
    assert code == 0, capsys.readouterr()
    data = json.loads(out.read_text())
    assert JSON_KEYS <= set(data)
    assert data["sampler"] == "tempered" and data["status"] == "ok"
    (name, post), = data["posterior"].items()
    assert set(post) == {"mean", "var", "q05", "q50", "q95"}
    mean, var, log_z = exact_answers()
    ess = data["ess"][-1]
    assert abs(post["mean"] - mean) < 4 * math.sqrt(var / ess)
    assert abs(post["var"] - var) < 4 * var * math.sqrt(2 / ess)
    # single-run evidence: within 4 of its own standard errors (plus float32 slack)
    assert abs(data["log_evidence"] - log_z) < 4 * data["log_evidence_se"] + 1e-3
    assert data["likelihood_evaluations"] >= 4000
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_run_reports_all_zero_weights(monkeypatch, capsys):
    real = sv.make_model

    def broken(*a, **k):
        m = real(*a, **k)
        return m._replace(observation_log_prob=lambda x, y, t: jnp.where(t >= 2, -jnp.inf, 0.0))

    monkeypatch.setattr(sv, "make_model", broken)
    code = cli.main(["run", "--particles", "50", "--steps", "5", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 1
    assert "all weights zero at step 2" in text
    assert "log-evidence     -inf" in text


def _one_line_error(capsys, argv, expected):
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("smcjax: error:") and expected in err, err


def test_bad_input_one_line_errors(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text(USER_FILE)
    bad = tmp_path / "bad.py"
    bad.write_text("import nonexistent_module_xyz\n")
    cases = [
        (["run", str(tmp_path / "missing.py") + ":model"], "no such file"),
        (["run", f"{f}:nope"], "has no attribute 'nope'"),
        (["run", f"{f}:not_a_model"], "not a smcjax.BayesianModel"),
        (["run", f"{bad}:model"], "cannot import"),
        (["run", "no_such_builtin"], "unknown model"),
        (["run", "--particles", "0"], "positive integer"),
        (["run", "--particles", "x"], "positive integer"),
        (["run", f"{f}:model", "--sampler", "magic"], "unknown sampler 'magic'"),
        (["run", "--sampler", "tempered"], "unknown sampler 'tempered'"),
        (["run", "--ess-threshold", "2"], "[0, 1]"),
        (["run", "--resampling", "bad"], "invalid choice"),
        (["validate", "--sampler", "nonexistent"], "nonexistent"),
        (["--bogus"], "unrecognized arguments"),
    ]
    for argv, expected in cases:
        _one_line_error(capsys, argv + ["--no-progress"] if argv[0] == "run" else argv, expected)


def test_help_is_complete(capsys):
    for argv in (["--help"], ["run", "--help"], ["validate", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--sampler", "--particles", "--seed", "--output", "--plot", "--quick", "--full",
                 "path/to/file.py:attribute"):
        assert word in text

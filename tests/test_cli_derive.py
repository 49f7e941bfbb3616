"""``meanfield derive``: output formats, values, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from analytic import gaussian
from cli.main import main

MOMENTS = ("nu", "zeta", "mu2", "mu3", "E_phi2", "E_dphi2")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gaussian._expectation.cache_clear()
    gaussian._moments.cache_clear()


def run(*args: str):
    return CliRunner().invoke(main, ["derive", *args])


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_relu_values_and_keys():
    out = run_json("relu")
    assert out["activation"] == "relu" and out["expression"] == "Max(0, x)"
    assert tuple(out["moments"]) == MOMENTS
    for entry in out["moments"].values():
        assert set(entry) == {"value", "exact", "latex"} and entry["exact"] is True
    # independent values: E relu = 1/sqrt(2 pi), E relu' = P(g > 0), E relu^2 = E g^2 / 2
    m = {k: v["value"] for k, v in out["moments"].items()}
    assert m["nu"] == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)
    assert m["zeta"] == m["E_phi2"] == m["E_dphi2"] == 0.5
    assert out["d"] == 100 and out["t2"] == 0.01 and out["lr_ratio"] == 1.0
    assert set(out["affine"]) == {"first", "second", "both"}
    for layer in out["affine"].values():
        assert set(layer) == {"ones", "data", "identity"}
        assert set(layer["data"]) == {"value", "exact", "latex"}
    # the diagonal of each kernel is exact: ones + data + identity = Theta(x, x)
    # (first layer: E phi'^2 = 1/2; second layer: E phi^2 = 1/2)
    for name in ("first", "second"):
        total = sum(out["affine"][name][t]["value"] for t in ("ones", "data", "identity"))
        assert total == pytest.approx(0.5, rel=1e-14)


def test_dimension_and_ratio_options():
    out = run_json("relu", "--d", "50", "--lr-ratio", "2.5")
    assert out["d"] == 50 and out["t2"] == 0.02 and out["lr_ratio"] == 2.5
    both = out["affine"]["both"]["ones"]["value"]
    parts = out["affine"]["first"]["ones"]["value"] + 2.5 * out["affine"]["second"]["ones"]["value"]
    assert both == pytest.approx(parts, rel=1e-14)
    out = run_json("relu", "--t2", "0.05")
    assert out["d"] is None and out["t2"] == 0.05
    # mu2^2 t2 with mu2 = 1/sqrt(2 pi) (relu'' = delta)
    assert out["affine"]["first"]["ones"]["value"] == pytest.approx(0.05 / (2 * math.pi), 1e-14)


def test_numeric_labels_and_infinite_values():
    out = run_json("tanh")
    assert out["moments"]["zeta"]["exact"] is False
    assert out["moments"]["nu"]["value"] == 0.0
    step = run_json("step")
    assert step["moments"]["E_dphi2"] == {"value": None, "exact": True, "latex": r"\infty"}
    json.dumps(step, allow_nan=False)  # strict JSON: no Infinity / NaN tokens


def test_user_expression_and_leaky_relu():
    out = run_json("x*tanh(x)")
    assert out["expression"] == "x*tanh(x)" and not out["moments"]["nu"]["exact"]
    leaky = run_json("leaky_relu:0.1")
    assert leaky["activation"] == "leaky_relu:0.1"
    assert leaky["moments"]["zeta"]["value"] == pytest.approx(0.55, rel=1e-15)  # (1 + 0.1) / 2


def test_table_output():
    result = run("erf")
    assert result.exit_code == 0, result.output
    for name in MOMENTS:
        assert name in result.output
    assert "asin(2/3)" in result.output
    assert "first" in result.output and "identity" in result.output
    numeric = run("sigmoid")
    assert "numeric" in numeric.output and "(* numeric)" in numeric.output


def test_latex_output():
    result = run("erf", "--latex")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(r"\phi(x) =")
    assert len(lines) == 1 + 6 + 9
    assert any(line.startswith(r"\zeta = ") and r"\sqrt{3}" in line for line in lines)
    assert r"\operatorname{asin}" in result.output


@pytest.mark.parametrize("args, problem", [
    (["swish"], "unknown name 'swish'"),
    (["__import__('os')"], "unexpected character"),
    (["x.real"], "unexpected character '.'"),
    (["9**9**9**9"], "exponent"),
    (["1/x"], "singular"),
    (["exp(x**2)"], "diverges"),
    (["relu", "--d", "0"], "--d=0"),
    (["relu", "--d", "1.5"], "--d=1.5"),
    (["relu", "--t2", "0"], "--t2=0"),
    (["relu", "--t2", "2"], "--t2=2"),
    (["relu", "--t2", "nan"], "--t2='nan'"),
    (["relu", "--d", "10", "--t2", "0.1"], "exclusive"),
    (["relu", "--lr-ratio", "-1"], "--lr-ratio=-1"),
    (["relu", "--lr-ratio", "inf"], "--lr-ratio='inf'"),
    (["relu", "--json", "--latex"], "exclusive"),
    (["leaky_relu:2"], "slope"),
    ([], "missing ACTIVATION"),
])
def test_bad_input_one_line_exit_2(args, problem):
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert problem in lines[0] and "allowed" in lines[0]
    assert "Traceback" not in result.output


def test_verify_rows_are_reported(monkeypatch):
    """Wiring of --verify (the computation is tested with meanfield.linear): rows returned by
    verify_affine appear in the JSON and the table."""
    import meanfield.linear as linear

    class Row:
        def __init__(self, d):
            self.d = d

        def to_dict(self):
            err = {"first": 0.1 / self.d, "second": 0.2 / self.d, "both": 0.3 / self.d}
            return {"d": self.d, "n": round(self.d**1.25), "m": 7, "error": err,
                    "error_infinite": err, "width_error": err}

    seen = {}

    def fake(act, lr_ratio):
        seen["args"] = (act.name, lr_ratio)
        return [Row(10), Row(20)]

    monkeypatch.setattr(linear, "verify_affine", fake)
    out = run_json("relu", "--verify", "--lr-ratio", "3")
    assert seen["args"] == ("relu", 3.0)
    assert [r["d"] for r in out["verify"]] == [10, 20]
    table = run("relu", "--verify").output
    assert "Verification" in table and "0.005" in table

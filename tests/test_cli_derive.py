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


def test_kernels_of_polynomials_are_general_and_series_are_labelled():
    """quadratic: the kernel printed under the header that defines q, q' is the exact
    E[u^2 u'^2] = q q' + 2 rho^2 (not its value 1 + 2 rho^2 on the sphere); tanh's truncated
    series says where it holds, in the table, the JSON and the LaTeX."""
    table = run("quadratic", "--section", "kernels").output
    assert "Theta2 = E[phi(u) phi(u')]       = q*q' + 2*rho**2" in table
    out = run_json("cubic", "--section", "kernels")["kernels"]
    assert out["theta2"]["text"] == "9*q*q'*rho + 6*rho**3" and out["theta2"]["exact"]
    assert out["domain"] == "all (rho, q, q')" and out["truncated"] is False
    tanh = run("tanh", "--section", "kernels").output
    lines = [line for line in tanh.splitlines() if "Theta" in line and "~=" in line]
    assert len(lines) == 2 and all(line.endswith("+ O(rho^4)   (at q = q' = 1 only)")
                                   for line in lines)
    out = run_json("tanh", "--section", "kernels")["kernels"]
    assert out["domain"] == "q = q' = 1 only" and not out["theta1"]["exact"]
    latex = run("tanh", "--section", "kernels", "--latex").output
    assert latex.count(r"\quad (q = q' = 1)") == 2


def test_latex_output():
    """--latex prints a complete document holding the closed forms, one equation each (the
    lines --latex printed before the document: phi, 6 moments, 9 affine coefficients)."""
    result = run("erf", "--latex", "--section", "moments")
    assert result.exit_code == 0
    tex = result.output
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    shown = [line for line in tex.splitlines() if line.startswith(r"\fitdisplay{")]
    assert shown[0] == r"\fitdisplay{\phi(x) = \operatorname{erf}{\left(x \right)}}"
    assert len(shown) == 1 + 6
    assert any(line.startswith(r"\fitdisplay{\zeta = ") and r"\sqrt{3}" in line
               for line in shown)
    full = run("erf", "--latex").output
    assert len([line for line in full.splitlines() if line.startswith(r"\fitdisplay{")]) > 16
    assert r"\operatorname{asin}" in full and "Mean-field theory" in full


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


# ----------------------------------------------------------------------------- sections


RELU_NAMED = ["node_da_dt", "node_dw_dt", "kappa", "reduced", "a_of_gamma", "w_par_of_gamma",
              "output", "unsatisfied_set", "density", "V", "train_error", "loss",
              "gamma_equation", "early_slope", "late_asymptote", "asymptote_c", "t_sat"]


def test_all_is_every_section_and_the_existing_keys_stay():
    """--section all (the default) is the union of the sections; the keys the command had
    before the mean-field section keep their order, and "meanfield" comes last."""
    out = run_json("relu")
    assert list(out) == ["activation", "expression", "expression_latex", "kinks", "moments",
                         "affine", "d", "t2", "lr_ratio", "version", "kernels", "meanfield"]
    for section, key in (("moments", "moments"), ("affine", "affine"), ("kernels", "kernels"),
                         ("meanfield", "meanfield")):
        part = run_json("relu", "--section", section)
        assert part[key] == out[key], section
        others = {"moments", "affine", "kernels", "meanfield"} - {key}
        assert not others & set(part), section
    table = run("relu").output
    assert table.startswith(run("relu", "--section", "moments").output.splitlines()[0])
    assert "Mean-field theory of hinge-loss training" in table


def test_meanfield_json_is_the_derived_objects():
    """Every equation is {"latex", "text", "srepr"}; its srepr reads back through the
    whitelisted reader as the expression analytic.hinge derived."""
    from analytic import hinge as H
    from analytic.cache import from_srepr

    mf = run_json("max(x, 0)", "--section", "meanfield")["meanfield"]
    assert mf["closed_form"] is True and "note" not in mf
    assert list(mf["equations"]) == RELU_NAMED
    assert mf["parameters"] == ["alpha", "beta", "h", "sa", "sw", "d"]
    for entry in mf["equations"].values():
        assert set(entry) == {"latex", "text", "srepr"}
    dl = H.data_law("gaussian")
    for name, key in (("V", "V"), ("late_asymptote", "C"), ("early_slope", "early_slope"),
                      ("train_error", "P_U")):
        assert from_srepr(mf["equations"][name]["srepr"]) == dl[key]
    assert from_srepr(mf["equations"]["t_sat"]["srepr"]) == H.relu_solution()["gamma_sat"]
    assert mf["equations"]["late_asymptote"]["latex"] == H.latex_equations(
        "gaussian")["late_asymptote"]


def test_other_activations_get_the_population_drives_and_the_reason():
    mf = run_json("tanh", "--section", "meanfield", "--data", "sphere")["meanfield"]
    assert mf["closed_form"] is False and mf["data"] == "sphere"
    assert list(mf["equations"]) == ["node_da_dt", "node_dw_dt", "density", "population_F_a",
                                     "population_F_w", "population_F_rho", "population_F_f"]
    assert "needs ReLU" in mf["note"] and "x -> -x" in mf["note"]
    text = run("tanh", "--section", "meanfield").output
    assert "needs ReLU" in text and "E_z[F_a]" in text


def test_subs_constants_against_an_independent_evaluation():
    """At --subs d=100 (the other parameters at their defaults, 1): C, c, the early slope."""
    out = run_json("relu", "--section", "meanfield", "--subs", "d=100")
    mf = out["meanfield"]
    C = 16 * math.sqrt(2) * math.sqrt(100) * 1 * 1 / (math.sqrt(math.pi) * 1 * (1 + 1) ** 2)
    assert mf["constants"]["C"]["value"] == pytest.approx(C, rel=1e-12)
    assert mf["constants"]["c"]["value"] == pytest.approx(math.log(4 * C) / 4, rel=1e-12)
    assert mf["constants"]["early_slope"]["value"] == pytest.approx(
        1 / math.sqrt(2 * math.pi * 100), rel=1e-12)
    for entry in mf["constants"].values():
        assert set(entry) == {"value", "exact", "latex"} and entry["exact"] is True
    assert mf["subs"] == {"d": 100}
    assert mf["point"] == {"alpha": 1, "beta": 1, "h": 1, "sa": 1, "sw": 1, "d": 100}
    assert set(mf["substituted"]) == set(mf["equations"])
    late = mf["substituted"]["late_asymptote"]
    assert late["exact"] is True and "d" not in late["text"].split("C = ")[1]
    text = run("relu", "--section", "meanfield", "--subs", "d=100,alpha=2").output
    assert "Constants at alpha = 2, beta = 1, h = 1, sa = 1, sw = 1, d = 100" in text
    assert "at alpha = 2, d = 100 (exact):" in text


def test_subs_d_sets_the_affine_d():
    out = run_json("relu", "--subs", "d=50")
    assert out["d"] == 50 and out["t2"] == 0.02
    assert run_json("relu", "--subs", "d=50", "--d", "50")["affine"] == out["affine"]
    assert run_json("relu", "--subs", "alpha=2", "--d", "40")["d"] == 40


def test_steps_in_the_order_of_analytic_hinge():
    mf = run_json("relu", "--section", "meanfield", "--steps")["meanfield"]
    numbers = [s["step"] for s in mf["steps"]]
    assert numbers[:4] == ["1.1", "1.2", "2.1", "2.2"] and numbers[-1] == "4.10"
    assert [s["name"] for s in mf["steps"]][2:4] == ["theta_even", "relu_odd"]
    assert all(s["reason"] and s["function"].startswith("analytic.hinge.")
               for s in mf["steps"])
    kappa = next(s for s in mf["steps"] if s["name"] == "kappa")
    assert ("theta(u) + theta(-u) = 1 and relu(u) - relu(-u) = u" in kappa["reason"]
            and "x -> -x" in kappa["reason"])
    text = run("relu", "--section", "meanfield", "--steps").output
    assert "Step 3. Hyperbolic solution in gamma (analytic.hinge.relu_solution):" in text
    assert "why: sympy dsolve" in text


@pytest.mark.parametrize("suffix, magic", [(".tex", b"\\documentclass"), (".json", b"{"),
                                           (".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".txt", b"activation relu")])
def test_output_files(tmp_path, suffix, magic):
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / f"derivation{suffix}"
    result = run("relu", "--section", "meanfield", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"derivation written to {path}"
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left
    if suffix == ".json":
        assert json.loads(path.read_text())["meanfield"]["equations"]


@pytest.mark.parametrize("args, problem", [
    (["relu", "--section", "everything"], "--section='everything' is not allowed"),
    (["relu", "--data", "cube"], "--data='cube' is not allowed"),
    (["relu", "--subs", "d"], "is not NAME=NUMBER"),
    (["relu", "--subs", ""], "is not NAME=NUMBER"),
    (["relu", "--subs", "d=100,"], "is not NAME=NUMBER"),
    (["relu", "--subs", "x=1"], "unknown parameter 'x'"),
    (["relu", "--subs", "D=100"], "unknown parameter 'D'"),
    (["relu", "--subs", "__import__('os')"], "is not NAME=NUMBER"),
    (["relu", "--subs", "d=__import__('os').system('true')"], "is not an integer"),
    (["relu", "--subs", "alpha=exp(1)"], "is not a number"),
    (["relu", "--subs", "alpha=nan"], "is not a number"),
    (["relu", "--subs", "alpha=1e999"], "is not a number"),
    (["relu", "--subs", "alpha=1;d=3"], "is not a number"),
    (["relu", "--subs", "d=2.5"], "is not an integer"),
    (["relu", "--subs", "d=1"], "d must be >= 2"),
    (["relu", "--subs", "alpha=0"], "alpha must be > 0"),
    (["relu", "--subs", "sa=0,sw=0"], "sa and sw cannot both be 0"),
    (["relu", "--subs", "sa=-1"], "sa must be >= 0"),
    (["relu", "--subs", "h=1,h=2"], "h given twice"),
    (["relu", "--subs", "d=50", "--d", "40"], "disagree"),
    (["relu", "--subs", "d=50", "--t2", "0.1"], "exclusive"),
    (["relu", "--section", "meanfield", "--verify"], "--verify"),
    (["relu", "--section", "moments", "--steps"], "--steps"),
    (["relu", "--json", "-o", "x.png"], "figure"),
    (["relu", "--latex", "-o", "x.json"], "does not match"),
])
def test_bad_mean_field_input_one_line_exit_2_nothing_evaluated(tmp_path, monkeypatch, args,
                                                                problem):
    """Refused before anything is computed (the derivation, the moments would fail here) and
    before any file is written."""
    import analytic.derivation
    import analytic.gaussian

    def never(*_args, **_kwargs):
        raise AssertionError("evaluated")

    monkeypatch.setattr(analytic.derivation, "derive", never)
    monkeypatch.setattr(analytic.gaussian, "moments", never)
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.chdir(folder)
    result = run(*args, *([] if "-o" in args else ["-o", str(folder / "out.tex")]))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and "allowed" in lines[0], result.output
    assert "Traceback" not in result.output
    assert list(folder.iterdir()) == []


def test_hostile_subs_text_is_never_run(tmp_path):
    import builtins

    for text in ("d=__import__('builtins').setattr(__import__('builtins'),'pwn',1)",
                 "__import__('builtins').setattr(__import__('builtins'),'pwn',1)=1"):
        result = run("relu", "--subs", text)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not hasattr(builtins, "pwn")


def test_missing_output_folder_is_refused(tmp_path):
    result = run("relu", "-o", str(tmp_path / "absent" / "d.tex"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: output folder {str(tmp_path / 'absent')!r} does not exist"]
    assert not (tmp_path / "absent").exists()
    long_name = run("relu", "-o", str(tmp_path / ("a" * 300 + ".tex")))
    assert long_name.exit_code == 2 and "File name too long" in long_name.output
    assert "Traceback" not in long_name.output and list(tmp_path.iterdir()) == []

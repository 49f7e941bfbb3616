"""``meanfield compare``: JSON, --strict, -o, foreign files (exit 2), verdicts of a real run
against its own theory and against wrong ones."""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner

from cli.main import main


def test_cli_json_strict_and_output_file(write_sim_fixture, files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config, scale=1.5)
    runner = CliRunner()
    args = ["compare", str(tmp / "sim.h5"), str(tmp / "theory.h5"), "--no-schedule"]
    res = runner.invoke(main, [*args, "--json", "-o", str(tmp / "c.h5")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["verdict"] == "disagree"
    assert set(report) >= {"verdict", "metrics", "checkpoints"}
    assert report["metrics"]["gamma"]["verdict"] == "disagree"
    with h5py.File(tmp / "c.h5") as f:
        assert f.attrs["meanfield_kind"] == "comparison"
        assert f.attrs["verdict"] == "disagree"
    res = runner.invoke(main, [*args, "--strict"])
    assert res.exit_code == 1
    assert "verdict: disagree" in res.output


def test_cli_refuses_foreign_files_with_exit_2(write_sim_fixture, files, tmp_path):
    config, tmp = files
    (tmp / "text.h5").write_text("not hdf5")
    with h5py.File(tmp / "plain.h5", "w") as f:
        f["x"] = 1
    runner = CliRunner()
    for name in ("text.h5", "plain.h5", "missing.h5"):
        res = runner.invoke(main, ["compare", str(tmp / name)])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and name in res.output
    write_sim_fixture(tmp / "sim.h5", config)
    res = runner.invoke(main, ["compare", str(tmp / "sim.h5"), str(tmp / "plain.h5")])
    assert res.exit_code == 2 and "not a meanfield output" in res.output
    res = runner.invoke(main, ["compare", str(tmp / "sim.h5"), "--plot", str(tmp / "f.svg")])
    assert res.exit_code == 2 and "--plot" in res.output


def _json_compare(*args):
    res = CliRunner().invoke(main, ["compare", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_real_run_agrees_with_its_theory(real_run):
    report = _json_compare(real_run / "sim.h5", real_run / "right.h5")
    assert report["verdict"] == "agree", report["metrics"]
    # the schedule theory removes most of the time-step error: gamma is closer to it than to
    # the flow (Euler with dt = 1 at rate ~ 0.09 per unit time is a few % off the flow)
    g = report["metrics"]["gamma"]
    assert g["value_schedule"] < g["value_flow"]
    assert [c["level"] for c in report["checkpoints"]][:3] == [0.9, 0.7, 0.5]
    # the same verdict when the theory is computed from the simulation's own config
    report2 = _json_compare(real_run / "sim.h5")
    assert report2["verdict"] == "agree"
    assert report2["metrics"]["gamma"]["value"] == pytest.approx(g["value"], rel=1e-6)


@pytest.mark.parametrize(("name", "field", "must_fail"), [
    ("other_d", "d", ("gamma", "S", "train_error", "x_par")),
    ("other_h", "h", ("S", "loss", "x_par")),
])
def test_a_wrong_theory_disagrees(real_run, name, field, must_fail):
    report = _json_compare(real_run / "sim.h5", real_run / f"{name}.h5")
    assert report["verdict"] == "disagree"
    assert field in report["differing_parameters"]
    for metric in must_fail:
        assert report["metrics"][metric]["verdict"] == "disagree", (metric, report["metrics"])
    res = CliRunner().invoke(main, ["compare", str(real_run / "sim.h5"),
                                    str(real_run / f"{name}.h5"), "--strict"])
    assert res.exit_code == 1
    assert f"{field} (simulation" in res.output  # the warning names the parameter


def test_output_and_plot_on_one_file_are_refused(write_sim_fixture, files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config)
    for plot in ("fig.PNG", "fig_errors.PNG"):
        res = CliRunner().invoke(main, ["compare", str(tmp / "sim.h5"), "-o",
                                        str(tmp / plot), "--plot", str(tmp / "fig.PNG")])
        assert res.exit_code == 2 and "name the same file" in res.output
    assert sorted(p.name for p in tmp.iterdir()) == ["sim.h5", "theory.h5"]

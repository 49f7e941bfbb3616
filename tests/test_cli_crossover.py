"""``meanfield crossover`` from the command line (cli/crossover.py, meanfield.files.crossover,
meanfield.crossover_plots): the file round trip and xarray, the JSON contract, reruns, and bad
input refused with one line, exit status 2 and no file."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.files.crossover import read_crossover

TINY = ["--M", "40", "--N", "600", "--d", "10", "--n-test", "300", "--tau-max", "2",
        "--n-times", "8", "--n-probe", "30"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crossover")
    res = CliRunner().invoke(main, ["crossover", "--alphas", "1,30", *TINY, "--rewind-at",
                                    "0.5", "-o", str(folder / "c.h5"), "--json", "--plot",
                                    str(folder / "c.png")])
    assert res.exit_code == 0, res.output
    return folder, json.loads(res.output)


def test_json_and_file_agree(run):
    folder, doc = run
    r = read_crossover(folder / "c.h5")
    assert doc["kind"] == "crossover" and doc["alphas"] == [1.0, 30.0]
    assert doc["alpha_c"] == pytest.approx(4 * np.sqrt(10) / 2, rel=1e-15)
    assert doc["error_level"] == 0.3
    for name, values in doc["at_error"].items():
        stored = r.at_alpha[name]
        assert [None if not np.isfinite(v) else v for v in stored] == values, name
    for name in ("tau_at_error_net", "tau_at_error_lin", "tau_at_error_theory",
                 "tau_at_error_lazy", "gamma_at_error_net", "gamma_at_error_theory",
                 "kernel_change_at_error_net", "test_misclassification_at_error_net",
                 "test_misclassification_at_error_lin", "S_star", "mp_signs", "maw_shuffle",
                 "gamma_at_rewind"):
        assert name in doc["at_error"], name
    assert (folder / "c.png").stat().st_size > 0


def test_file_opens_in_xarray_with_the_issue_layout(run):
    import xarray as xr

    folder, _ = run
    with xr.open_dataset(folder / "c.h5", engine="h5netcdf") as ds:
        assert ds.attrs["meanfield_kind"] == "crossover"
        assert dict(ds.sizes) == {"alpha": 2, "t": len(ds["t"]), "node": 40, "probe": 30}
        for name in ("train_error_net", "train_error_lin", "train_error_theory",
                     "train_error_lazy", "kernel_change_net", "kernel_velocity_net",
                     "train_error_signs", "train_error_shuffle_theory", "time"):
            assert ds[name].dims == ("alpha", "t"), name
        assert ds["gamma_at_error_net"].dims == ("alpha",)
        assert ds["t"].values[0] == 0 and ds["t"].values[-1] == pytest.approx(2.0)
        # t is lazy time: the mean-field time of a record scales like 1/alpha^2
        ratio = ds["time"].values[0, -1] / ds["time"].values[1, -1]
        assert ratio == pytest.approx(30.0**2, rel=1e-12)
        assert ds.attrs["rewind_at"] == 0.5
        # before the rewinding time the arms are NaN, and labelled so
        before = ds["t"].values < 0.5
        assert np.isnan(ds["train_error_signs"].values[:, before]).all()
        assert "non_finite" in ds["train_error_signs"].attrs


def test_rerun_is_untouched_same_seed_same_numbers_other_inputs_refused(run, tmp_path):
    folder, _ = run
    before = (folder / "c.h5").read_bytes()
    runner = CliRunner()
    args = ["crossover", "--alphas", "1,30", *TINY, "--rewind-at", "0.5"]
    again = runner.invoke(main, [*args, "-o", str(folder / "c.h5")])
    assert again.exit_code == 0 and "left untouched" in again.output
    assert (folder / "c.h5").read_bytes() == before
    other = runner.invoke(main, [*args, "--seed", "1", "-o", str(folder / "c.h5")])
    assert other.exit_code == 2 and "--overwrite" in other.output
    fresh = runner.invoke(main, [*args, "-o", str(tmp_path / "d.h5")])
    assert fresh.exit_code == 0
    a, b = read_crossover(folder / "c.h5"), read_crossover(tmp_path / "d.h5")
    for name in a.series:
        np.testing.assert_array_equal(a.series[name], b.series[name], err_msg=name)


BAD = [
    (["--alphas", "3,1"], "alphas"), (["--alphas", "0"], "alphas"),
    (["--alphas", "nan"], "alphas"), (["--alphas", "a"], "alphas"), (["--alphas", ""], "alphas"),
    (["--M", "41"], "M"), (["--rewind-at", "5"], "rewind_at"), (["--rewind-at", "0"],
                                                                "rewind_at"),
    (["--tau-max", "0"], "tau_max"), (["--tau-max", "1e300"], "tau-max"),
    (["--n-probe", "301"], "n_probe"), (["--n-times", "1"], "n_times"),
    (["--error-level", "1"], "error_level"), (["--dtau", "1e-12", "--growth", "0"], "steps"),
    (["--growth", "-1"], "growth"), (["--data", "cube"], "data"),
    (["--beta", "nan"], "beta"), (["--plot", "c.txt"], "--plot"),
    (["--max-memory", "1K"], "needs about"),
]


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_no_file(extra, named, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["crossover", *(["--alphas", "1"] if "--alphas" not in extra else []), *TINY,
            *extra, "-o", "c.h5"]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and named in lines[0], res.output
    assert sorted(p.name for p in Path(".").iterdir()) == []

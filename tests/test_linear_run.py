"""``meanfield linear`` end to end (meanfield.linear_run, meanfield.files.linear,
cli/linear.py): nesting and members bitwise, files that xarray reads, the physics the papers
predict at small size, and bad input refused with one line and no file."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import ConfigError
from meanfield.files.linear import VARIABLES, read_linear, write_linear
from meanfield.linear_config import make_linear_config
from meanfield.linear_run import run_linear

SMALL = dict(activation="erf", d=6, n=10, n_test=7, steps=20, n_times=6, lr=0.5)


@pytest.fixture(scope="module")
def nested():
    return run_linear(make_linear_config(**SMALL, widths=(8, 16, 32), seeds=3))


PER_MEMBER = ("f_net", "f_net_test", "f_lin_test", "f_inf", "f_hu_test", "ntk0",
              "W_distance", "ntk_change", "kernel_velocity", "affine_error")


def test_widths_are_nested_bitwise(nested):
    """Width 16 of a (8, 16, 32) run equals, bitwise, a single-width run of 16."""
    alone = run_linear(make_linear_config(**SMALL, widths=(16,), seeds=3))
    for name in PER_MEMBER:
        np.testing.assert_array_equal(nested[name][:, 1], alone[name][:, 0], err_msg=name)
    np.testing.assert_array_equal(nested["W0"][:, :16], alone["W0"])


def test_members_do_not_depend_on_the_ensemble_size(nested):
    """Member 0 of three equals a one-member run; member 1 equals member 1 of two."""
    one = run_linear(make_linear_config(**SMALL, widths=(8, 16, 32), seeds=1))
    two = run_linear(make_linear_config(**SMALL, widths=(8, 16, 32), seeds=2))
    for name in PER_MEMBER:
        np.testing.assert_array_equal(nested[name][:1], one[name], err_msg=name)
        np.testing.assert_array_equal(nested[name][1], two[name][1], err_msg=name)
    assert np.isnan(one["ens_var"]).all() and np.isfinite(nested["ens_var"]).all()


def test_same_seed_same_numbers_and_the_file_round_trips(nested, tmp_path):
    import xarray as xr

    again = run_linear(make_linear_config(**SMALL, widths=(8, 16, 32), seeds=3))
    for name in nested.arrays:
        np.testing.assert_array_equal(nested[name], again[name], err_msg=name)
    write_linear(nested, tmp_path / "a.h5")
    back = read_linear(tmp_path / "a.h5")
    assert back.config == nested.config and back.attrs == nested.attrs
    for name in nested.arrays:
        np.testing.assert_array_equal(back[name], nested[name], err_msg=name)
    with xr.open_dataset(tmp_path / "a.h5", engine="h5netcdf") as ds:
        assert ds.attrs["meanfield_kind"] == "linear"
        for name, (dims, _) in VARIABLES.items():
            assert ds[name].dims == dims, name
        assert list(ds["width"].values) == [8, 16, 32]
        assert ds["t"].values[0] == 0 and ds["t"].values[-1] == 20
        assert ds["f_lin"].sel(width=16, seed=2).shape == (len(ds["t"]), 10)


def test_models_start_from_the_network_and_records_are_consistent(nested):
    """At t = 0 every model equals the network; ``change`` is the RMS of the motion;
    ``W_distance`` and ``ntk_change`` are 0 at t = 0; ``loss`` is (1/2n) sum (f - y)^2."""
    for model in ("lin", "inf", "hu"):
        np.testing.assert_allclose(nested[f"f_{model}"][:, :, 0], nested["f_net"][:, :, 0],
                                   rtol=0, atol=1e-12)
    f = nested["f_net"]
    np.testing.assert_allclose(nested["change"][0, 1, 3],
                               np.sqrt(np.mean((f[0, 1, 3] - f[0, 1, 0]) ** 2)), rtol=1e-14)
    np.testing.assert_allclose(nested["loss_net"][2, 0, -1],
                               0.5 * np.mean((f[2, 0, -1] - nested["y"]) ** 2), rtol=1e-14)
    assert (nested["W_distance"][:, :, 0] == 0).all() and (nested["ntk_change"][:, :, 0] == 0).all()
    assert np.isnan(nested["kernel_velocity"][:, :, 0]).all()


def test_lee_linearization_gets_better_with_width_as_predicted():
    """erf, n = 24, d = 8, widths 64..4096: the network-linearization gap falls about like
    1/m (Lee et al.'s bound is m^-1/2; two layers do better), W_distance like m^-1/2,
    ntk_change like 1/m; the widest gap is below 1% of the function change."""
    r = run_linear(make_linear_config(activation="erf", d=8, n=24, n_test=24, steps=60,
                                      widths=(64, 256, 1024, 4096), seeds=2, lr=0.5))
    assert float(r["slope_disc_lin_test"]) < -0.7
    assert -0.7 < float(r["slope_W_distance"]) < -0.35
    assert float(r["slope_ntk_change"]) < -0.7
    widest = r.final_means("disc_lin_test")[-1] / r.final_means("change_test")[-1]
    assert widest < 0.01
    # the infinite-width model is approached too
    assert r.final_means("disc_inf_test")[-1] < r.final_means("disc_inf_test")[0] / 4


def test_lr_at_or_above_the_limit_is_refused_before_training():
    c = make_linear_config(**{**SMALL, "lr": 0.5}, widths=(16,))
    lr_max = run_linear(c).attrs["lr_max"]
    with pytest.raises(ConfigError, match="lr must be below lr_max"):
        run_linear(make_linear_config(**{**SMALL, "lr": lr_max * 1.0001}, widths=(16,)))
    below = run_linear(make_linear_config(**{**SMALL, "lr": lr_max * 0.999}, widths=(16,)))
    assert np.isfinite(below["f_lin"]).all()


def test_train_first_leaves_v_alone_and_second_leaves_w():
    first = run_linear(make_linear_config(**SMALL, widths=(8,), train="first"))
    second = run_linear(make_linear_config(**SMALL, widths=(8,), train="second"))
    assert (first["v_distance"] == 0).all() and (first["W_distance"][:, :, -1] > 0).all()
    assert (second["W_distance"] == 0).all() and (second["v_distance"][:, :, -1] > 0).all()
    assert first.attrs["lr2"] == 0 and second.attrs["lr1"] == 0


def test_hu_coefficients_are_those_derive_prints():
    r = run_linear(make_linear_config(activation="relu", d=6, n=8, n_test=4, steps=3,
                                      widths=(8,)))
    out = CliRunner().invoke(main, ["derive", "relu", "--json", "--d", "6"])
    derived = json.loads(out.output)["affine"]["both"]
    for term in ("ones", "data", "identity"):
        assert r.attrs[f"c_{term}"] == pytest.approx(derived[term]["value"], rel=1e-15)


# --------------------------------------------------------------------------- command line

TINY = ["--activation", "erf", "--d", "6", "--n", "10", "--n-test", "7", "--steps", "20",
        "--n-times", "6", "--lr", "0.5", "--widths", "8,16"]


def test_command_writes_the_file_json_and_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["linear", *TINY, "--seeds", "2", "-o", "a.h5", "--json",
                               "--plot", "a.png"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "linear" and doc["widths"] == [8, 16] and doc["seeds"] == 2
    assert set(doc["final"]) == {"disc_lin", "disc_lin_test", "disc_hu_test",
                                 "change_test", "W_distance", "ntk_change",
                                 "kernel_distance"}
    assert all(len(v) == 2 for v in doc["final"].values())
    r = read_linear("a.h5")
    assert doc["slopes"]["disc_lin_test"] == float(r["slope_disc_lin_test"])
    assert doc["lr_max"] == r.attrs["lr_max"]
    assert len(doc["t_escape_hu"]) == 2 and len(doc["t_escape_lin"]) == 2
    from pathlib import Path

    assert Path("a.png").stat().st_size > 0 and Path("a_gp.png").stat().st_size > 0
    before = Path("a.h5").read_bytes()
    again = runner.invoke(main, ["linear", *TINY, "--seeds", "2", "-o", "a.h5"])
    assert again.exit_code == 0 and "left untouched" in again.output
    assert Path("a.h5").read_bytes() == before
    other = runner.invoke(main, ["linear", *TINY, "--seeds", "3", "-o", "a.h5"])
    assert other.exit_code == 2 and "--overwrite" in other.output
    assert Path("a.h5").read_bytes() == before
    forced = runner.invoke(main, ["linear", *TINY, "--seeds", "3", "-o", "a.h5",
                                  "--overwrite"])
    assert forced.exit_code == 0 and read_linear("a.h5").config.seeds == 3


BAD = [
    (["--widths", "16,8"], "widths"), (["--widths", "0"], "widths"),
    (["--widths", "8,8"], "widths"), (["--widths", "1.5"], "widths"),
    (["--widths", "a,b"], "widths"), (["--lr", "nan"], "lr"), (["--lr", "0"], "lr"),
    (["--lr", "-1"], "lr"), (["--lr", "1e9"], "lr"), (["--lr", "100"], "lr_max"),
    (["--steps", "0"], "steps"), (["--n", "-1"], "n"), (["--seeds", "0"], "seeds"),
    (["--train", "all"], "train"), (["--target", "x"], "target"), (["--data", "cube"], "data"),
    (["--activation", "nope"], "activation"),
    (["--activation", "__import__('os').system('touch PWNED')"], "activation"),
    (["--activation", "sign(x)"], "activation"), (["--times", "5,3"], "times"),
    (["--times", "50"], "times"), (["--dtype", "float16"], "dtype"),
    (["--tol", "0"], "tol"), (["-o", "missing/a.h5"], "missing"),
    (["--plot", "a.txt"], "--plot"), (["--max-memory", "1K"], "needs about"),
]


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_no_file(extra, named, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    argv = ["linear", *TINY, *(["-o", "a.h5"] if "-o" not in extra else []), *extra]
    res = runner.invoke(main, argv)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and named in lines[0], res.output
    from pathlib import Path

    assert sorted(p.name for p in Path(".").rglob("*")) == []


def test_memory_estimate_counts_the_big_arrays():
    from meanfield.memory import linear_estimate

    c = make_linear_config(d=100, n=1000, n_test=256, widths=(4000,), seeds=8, steps=10)
    est = linear_estimate(c)
    assert est.parts["initial NTKs"] == 8 * 1000 * 1000 * 8
    assert est.total > 2 * 8 * 1000 * 1000 * 8 and math.isfinite(est.total)

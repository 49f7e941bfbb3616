"""Every kind of meanfield output opens with xarray (engine h5netcdf): dimensions, coordinates,
attributes. Real files: ``meanfield simulate``, ``meanfield theory``, ``meanfield compare``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main

xr = pytest.importorskip("xarray")

TINY = ["--M", "30", "--N", "1500", "--d", "10", "--n-test", "300", "--t-max", "100",
        "--growth", "0.05", "--n-times", "20", "--seed", "3"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xr")
    runner = CliRunner()
    for args in (["simulate", *TINY, "-o", str(tmp / "sim.h5")],
                 ["theory", "--d", "10", "--t-max", "100", "-o", str(tmp / "theory.h5")],
                 ["compare", str(tmp / "sim.h5"), str(tmp / "theory.h5"),
                  "-o", str(tmp / "compare.h5")]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    return tmp


def test_simulation_file(outputs):
    with xr.open_dataset(outputs / "sim.h5", engine="h5netcdf") as ds:
        assert ds.attrs["meanfield_kind"] == "simulation"
        assert ds["a"].dims == ("t", "node") and ds["w_par"].dims == ("t", "node")
        assert ds["t_sat"].dims == ("example",) and ds.sizes["example"] == 1500
        for name in ("gamma", "S", "train_error", "test_error", "test_misclassification",
                     "loss"):
            assert ds[name].dims == ("t",)
        assert json.loads(ds.attrs["config"])["M"] == 30
        assert float(ds["t"][0]) == 0.0 and float(ds["t"][-1]) == 100.0


def test_theory_file(outputs):
    with xr.open_dataset(outputs / "theory.h5", engine="h5netcdf") as ds:
        assert ds.attrs["meanfield_kind"] == "theory"
        for name in ("gamma", "S", "X", "train_error", "loss"):
            assert ds[name].dims == ("t",)
        assert np.isfinite(float(ds.attrs["asymptote_c"]))
        assert json.loads(ds.attrs["config"])["d"] == 10


def test_comparison_file(outputs):
    with xr.open_dataset(outputs / "compare.h5", engine="h5netcdf") as ds, \
            xr.open_dataset(outputs / "sim.h5", engine="h5netcdf") as sim:
        assert ds.attrs["meanfield_kind"] == "comparison"
        assert ds.attrs["verdict"] in ("agree", "disagree")
        assert set(json.loads(ds.attrs["metrics"])) >= {"gamma", "S", "train_error", "loss"}
        # the comparison is on the simulation's grid and holds its data unchanged
        assert np.array_equal(ds["t"].values, sim["t"].values)
        assert np.array_equal(ds["gamma_simulation"].values, sim["gamma"].values)
        assert ds["a_theory"].dims == ("t", "node")
        assert ds["x_par"].dims == ("example",)

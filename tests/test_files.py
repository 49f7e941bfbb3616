"""meanfield.files: each kind of output file is written and read back by its one owner.

Round trips go through the real writers (``write_*``) and readers (``read_*``): the object read
back equals the object written, array by array and bit by bit; readers refuse a file of another
kind or a newer format version with the one-line error of ``NotMeanfieldFile``.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import xarray as xr

from meanfield import theory as T
from meanfield.compare import compare
from meanfield.config import make_config
from meanfield.files.checkpoint import checkpoint_path, resume_decision
from meanfield.files.comparison import read_comparison, write_comparison
from meanfield.files.simulation import NODE_SERIES, SERIES, read_simulation, write_simulation
from meanfield.files.theory import read_theory, write_theory
from meanfield.io import FORMAT_VERSION, NotMeanfieldFile
from meanfield.simulate import simulate

SMALL = dict(M=20, N=400, d=8, n_test=100, dt=0.5, t_max=10.0, n_times=12, seed=4)


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "sim.h5"
    result = simulate(make_config(**SMALL, record_nodes=7))
    write_simulation(result, path)
    return result, path


def _same_arrays(a, b, name):
    assert a.dtype == b.dtype or name in ("step", "n_evaluated"), name
    np.testing.assert_array_equal(a, b, err_msg=name)


def test_simulation_round_trip(sim_file):
    result, path = sim_file
    back = read_simulation(path)
    assert back.config == result.config and back.source == str(path)
    for name in SERIES:
        _same_arrays(result.series[name], back.series[name], name)
    for name in NODE_SERIES:
        _same_arrays(result.nodes[name], back.nodes[name], name)
    for name in ("t", "node", "a0", "w_par0", "t_sat", "x_par", "y", "test_t_sat",
                 "test_x_par"):
        _same_arrays(getattr(result, name), getattr(back, name), name)
    assert back.init_moments == result.init_moments  # a field, not an attribute convention
    for key in ("n_steps", "evaluated_total", "t_sat_resolution", "numba_threads"):
        assert back.attrs[key] == result.attrs[key], key
    assert not any(k.startswith(("config", "init_")) for k in back.attrs)
    # written again from what was read: the same datasets
    write_simulation(back, path.with_name("again.h5"))
    with h5py.File(path) as f, h5py.File(path.with_name("again.h5")) as g:
        assert set(f) == set(g)
        for name in f:
            assert f[name][()].tobytes() == g[name][()].tobytes(), name


def test_theory_round_trip_and_layout(tmp_path):
    c = make_config(d=20, t_max=100.0, n_times=20, x_par=(0.0, 0.5, 1.0))
    r = T.compute(c, x_par=c.x_par)
    assert r.t[0] == 0 and r.t[-1] == 100.0
    path = tmp_path / "theory.h5"
    write_theory(r, path)
    back = read_theory(path)
    for name in ("t", "gamma", "S", "X", "train_error", "loss", "slope", "validity",
                 "f_spread", "x_par", "t_sat", "f_spread_x"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name), err_msg=name)
    assert back.gamma_minus is None and r.gamma_minus is None
    assert (back.asymptote_C, back.asymptote_c) == (r.asymptote_C, r.asymptote_c)
    assert back.latex == r.latex and back.method == r.method and back.config == c
    ds = xr.open_dataset(path, engine="h5netcdf")
    for name in ("gamma", "S", "X", "train_error", "loss", "slope", "validity", "f_spread"):
        assert ds[name].dims == ("t",)
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds["t_sat"].dims == ("x_par",)
    assert ds["t"].attrs["units"] == ds["t_sat"].attrs["units"] == "mean-field time (1/beta)"
    ds.close()
    with h5py.File(path) as f:
        assert f.attrs["meanfield_kind"] == "theory"
        assert "gamma" in f.attrs["latex_gamma_equation"]
        assert f.attrs["config"] == c.to_json()


def test_comparison_file_holds_the_report(sim_file, tmp_path):
    result, path = sim_file
    cmp = compare(path)
    write_comparison(cmp, tmp_path / "cmp.h5")
    data = read_comparison(tmp_path / "cmp.h5")
    assert data["attrs"]["verdict"] == cmp.verdict
    np.testing.assert_array_equal(data["gamma_simulation"], result.series["gamma"])
    np.testing.assert_array_equal(data["a_theory"], cmp.a_theory)
    assert data["window"].tolist() == cmp.window.astype(int).tolist()


def test_readers_refuse_other_kinds_and_newer_versions(sim_file, tmp_path):
    _, path = sim_file
    with pytest.raises(NotMeanfieldFile, match="expected theory"):
        read_theory(path)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(path.read_bytes())
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(NotMeanfieldFile, match="newer than this meanfield reads"):
        read_simulation(newer)


def test_resume_decision(tmp_path):
    c = make_config(**SMALL, checkpoint_every=3)
    ckpt = checkpoint_path(tmp_path / "sim.h5")
    assert resume_decision(ckpt, c) is False
    with pytest.raises(ValueError, match="no checkpoint"):
        resume_decision(ckpt, c, resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        resume_decision(ckpt, c, resume=True, fresh=True)
    with pytest.raises(Exception):  # noqa: B017 (the stop request)
        simulate(c, checkpoint=ckpt, should_stop=lambda: True)
    assert ckpt.exists()
    # same run (checkpoint_every is not part of the run hash): resumed, asked for or not
    assert resume_decision(ckpt, dataclasses.replace(c, checkpoint_every=5)) is True
    with pytest.raises(ValueError, match="another configuration"):
        resume_decision(ckpt, c.replace(seed=9))
    assert resume_decision(ckpt, c.replace(seed=9), fresh=True) is False
    assert not ckpt.exists()

"""HDF5 layout: atomic writes, dimension scales readable by xarray, provenance."""

import json

import h5py
import numpy as np
import pytest

from meanfield.config import Config
from meanfield.io import (
    NotMeanfieldFile,
    atomic_h5,
    open_meanfield,
    provenance,
    set_attrs,
    write_coordinate,
    write_variable,
)


def _write(path, fail=False):
    with atomic_h5(path) as f:
        set_attrs(f, provenance("theory", Config().to_json(), seed=7))
        write_coordinate(f, "t", np.linspace(0, 1, 300), {"units": "mean-field time"})
        write_coordinate(f, "node", np.arange(5))
        write_variable(f, "gamma", np.linspace(0, 2, 300), ["t"], {"long_name": "gamma"})
        write_variable(f, "a", np.ones((300, 5)), ["t", "node"])
        if fail:
            raise KeyboardInterrupt


def test_atomic_write_leaves_no_file_on_interrupt(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        _write(path, fail=True)
    assert list(tmp_path.iterdir()) == []
    _write(path)
    # an interrupted rewrite leaves the previous file intact
    with pytest.raises(KeyboardInterrupt):
        _write(path, fail=True)
    with open_meanfield(path, "theory") as f:
        assert f["gamma"][-1] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]


def test_xarray_reads_dimensions_and_attributes(tmp_path):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "x.h5"
    _write(path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["a"].dims == ("t", "node")
        assert ds["gamma"].attrs["long_name"] == "gamma"
        assert json.loads(ds.attrs["config"])["M"] == 400
        assert ds.attrs["config_M"] == 400
        assert ds.attrs["seed"] == 7
        assert ds.attrs["config_hash"] == Config().hash()  # the run name of Config.hash
        assert "numba" in json.loads(ds.attrs["versions"])


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(NotMeanfieldFile, match="not an HDF5 file"):
        open_meanfield(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(NotMeanfieldFile, match="not a meanfield output"):
        open_meanfield(tmp_path / "other.h5")
    with pytest.raises(NotMeanfieldFile, match="does not exist"):
        open_meanfield(tmp_path / "nope.h5")
    _write(tmp_path / "t.h5")
    with pytest.raises(NotMeanfieldFile, match="expected simulation"):
        open_meanfield(tmp_path / "t.h5", "simulation")

"""``meanfield sweep --study NAME --quick`` end to end, as a user runs it (slow: a few minutes
each on two cores): the sweep on its own local Dask cluster, the analysis, ``study.h5``,
``study.json``, the figure and the table; the re-run from the files in seconds.

The verdicts of the quick studies are indicative only (SE_max = 0.25): the test checks that the
study ran, was judged on every point and wrote consistent outputs, not that it agrees; the
full studies' numbers are reported in the closing notes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from meanfield.studies import STUDIES, study_spec

ROOT = Path(__file__).resolve().parents[1]
MEANFIELD = [sys.executable, "-c",
             "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*MEANFIELD, "sweep", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_a_quick_study_runs_judges_and_reruns_from_its_files(name, tmp_path):
    first = sweep("--study", name, "--quick", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads(first.stdout)
    out = tmp_path / f"study-{name}-quick"
    n = len(study_spec(name, True))
    assert doc["output"] == f"study-{name}-quick" and doc["points"] == n
    assert doc["ran"] == n and doc["failed"] == 0 and doc["engine"] == "local"
    assert all(r["numba_cache_misses"] == 0 for r in doc["runs"])
    study = doc["study"]
    assert study["name"] == name and study["quick"] is True
    assert study["n_points_used"] == n
    assert study["verdict"] in ("agree", "disagree", "inconclusive")
    assert study["criteria"] and all(c["verdict"] in ("agree", "disagree", "inconclusive")
                                     for c in study["criteria"])
    assert json.loads((out / "study.json").read_text()) == study
    assert (out / f"{name}.png").stat().st_size > 10_000
    ds = xr.open_dataset(out / "study.h5", engine="h5netcdf")
    assert ds.attrs["meanfield_kind"] == "study"
    merged = xr.open_dataset(out / "sweep.nc", engine="h5netcdf")
    assert int(merged.attrs["n_complete"]) == n and bool(merged["complete"].all())

    start = time.monotonic()
    again = sweep("--study", name, "--quick", "--json", cwd=tmp_path)
    seconds = time.monotonic() - start
    assert again.returncode == 0, again.stderr[-3000:]
    redo = json.loads(again.stdout)
    assert redo["skipped"] == n and redo["workers"] == 0 and redo["engine"] == "none"
    assert redo["study"] == study
    assert seconds < 20, seconds  # python start, imports, reading the points and the figure

    table = sweep("--study", name, "--quick", cwd=tmp_path)
    assert table.returncode == 0
    assert f"{n} points: 0 ran, 0 resumed, {n} skipped, 0 failed" in table.stdout
    assert "verdict" in table.stdout and "expected" in table.stdout

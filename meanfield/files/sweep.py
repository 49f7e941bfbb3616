"""Merged sweep files (kind ``sweep``, ``OUTDIR/sweep.nc``): the time series of every point of
a sweep on one ``(run, t)`` grid, netCDF4/HDF5 so that xarray opens it.

Layout:

- dimensions ``run`` (every point of the spec, in run order) and ``t`` (the sorted union of
  the points' record times);
- coordinates ``run`` (``0 .. n-1``) and ``t``; on ``(run,)``: one coordinate per swept field,
  named as the field (``M``, ``seed``, ``alpha``, ...), ``run_hash`` (string) and ``complete``
  (bool, stored as int8 with attribute ``dtype = "bool"``, as xarray writes booleans); every
  data variable lists them in its ``coordinates`` attribute, so that
  ``xarray.open_dataset(path, engine="h5netcdf")`` shows them as coordinates and
  ``ds.set_index(run=["M", "seed"]).unstack("run")`` gives ``(t, M, seed)`` arrays;
- data variables on ``(run, t)``: every simulation series
  (:data:`meanfield.files.simulation.SERIES`), float64, NaN where a point has no record at
  that time or is not complete; on ``(run,)``: ``elapsed_seconds`` and ``git_revision``;
- global attributes: the provenance of every meanfield file, ``sweep_spec`` (the resolved
  spec as TOML), ``sweep_hash``, ``swept`` (JSON list), ``n_points``, ``n_complete``.

Node- and example-level arrays stay in the point files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from meanfield.files.simulation import SERIES, SimulationRecords
from meanfield.io import (
    TIME_UNITS,
    atomic_h5,
    provenance,
    reading,
    set_attrs,
    text_attr,
    write_coordinate,
    write_variable,
)

KIND = "sweep"
_STRING = h5py.string_dtype()


def sweep_hash(spec_toml: str) -> str:
    """The first 12 hex digits of SHA-256 of the resolved spec's TOML."""
    return hashlib.sha256(spec_toml.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class MergedPoint:
    """One row of the merged file: the point's run hash, swept values and, when complete,
    its records (``None`` otherwise)."""

    hash: str
    values: Mapping[str, Any]
    records: SimulationRecords | None


def _column(values: Sequence[Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A swept field's values as a stored array and its extra attributes."""
    if all(isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int8), {"dtype": "bool"}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64), {}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64), {}
    return np.asarray([str(v) for v in values], dtype=_STRING), {}


def _variable(f: h5py.File, name: str, data: np.ndarray, dims: list[str],
              attrs: dict[str, Any]) -> None:
    """``write_variable`` for strings too (variable-length UTF-8)."""
    if data.dtype.kind in "OU":
        dset = f.create_dataset(name, data=np.asarray(data, dtype=_STRING))
        for axis, dim in enumerate(dims):
            dset.dims[axis].attach_scale(f[dim])
        set_attrs(dset, attrs)
    else:
        write_variable(f, name, data, dims, attrs)


def write_sweep(path: str | Path, points: Sequence[MergedPoint], swept: Sequence[str],
                spec_toml: str, name: str | None) -> None:
    """Write the merged file of ``points`` (every point of the spec, in run order) to
    ``path``, atomically."""
    complete = [p for p in points if p.records is not None]
    t = np.unique(np.concatenate([p.records.t for p in complete])) if complete else \
        np.zeros(0)
    n = len(points)
    coords = [*swept, "run_hash", "complete"]
    shown = " ".join(coords)
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND))
        set_attrs(f, {"sweep_spec": spec_toml, "sweep_hash": sweep_hash(spec_toml),
                      "sweep_name": name or "", "swept": json.dumps(list(swept)),
                      "n_points": n, "n_complete": len(complete)})
        write_coordinate(f, "run", np.arange(n, dtype=np.int64), {
            "units": "1", "long_name": "run index of the point in the sweep spec"})
        write_coordinate(f, "t", t, {"units": TIME_UNITS,
                                     "long_name": "record time (union over the points)"})
        for field in swept:
            data, extra = _column([p.values[field] for p in points])
            _variable(f, field, data, ["run"], {"long_name": f"swept config field {field}",
                                                **extra})
        _variable(f, "run_hash", np.asarray([p.hash for p in points], dtype=object), ["run"],
                  {"long_name": "run hash of the point's config (its file points/<hash>.h5)"})
        write_variable(f, "complete", np.asarray([p.records is not None for p in points],
                                                 dtype=np.int8), ["run"],
                       {"dtype": "bool", "long_name": "the point's file is complete"})
        for var, (units, long_name) in SERIES.items():
            data = np.full((n, len(t)), np.nan)
            for row, p in enumerate(points):
                if p.records is not None:
                    data[row, np.searchsorted(t, p.records.t)] = p.records.series[var]
            write_variable(f, var, data, ["run", "t"], {
                "units": units, "long_name": long_name, "coordinates": shown,
                "non_finite": "NaN where the point has no record at t or is not complete, "
                              "or where its own file holds NaN (see its non_finite)"})
        elapsed = np.asarray([np.nan if p.records is None else p.records.elapsed_seconds
                              for p in points])
        write_variable(f, "elapsed_seconds", elapsed, ["run"], {
            "units": "s", "long_name": "wall time of the point's run",
            "non_finite": "NaN where the point is not complete", "coordinates": shown})
        _variable(f, "git_revision", np.asarray(
            ["" if p.records is None else p.records.git_revision for p in points],
            dtype=object), ["run"], {
            "long_name": "git revision that computed the point (empty: not complete)",
            "coordinates": shown})


def merged_state(path: str | Path) -> tuple[str, tuple[str, ...]] | None:
    """``(sweep_hash, run hashes of the complete points)`` of an existing merged file, or
    ``None`` when there is none or it cannot be read."""
    try:
        with reading(path, KIND) as f:
            hashes = [h.decode() if isinstance(h, bytes) else str(h) for h in f["run_hash"][()]]
            done = f["complete"][()].astype(bool)
            return (str(text_attr(f, "sweep_hash")),
                    tuple(h for h, c in zip(hashes, done, strict=True) if c))
    except Exception:  # any unreadable file is simply rewritten
        return None

"""Files of the built-in studies of ``meanfield sweep --study NAME`` (kind ``study``): what
:func:`meanfield.studies.analyse` returns, written and read back.

Layout (netCDF4-valid, :mod:`meanfield.io`; opens with ``xarray.open_dataset(path,
engine="h5netcdf")``): the study's coordinates (e.g. ``run``, the run indices of the points
whose files were used; ``M``, ``N`` or ``alpha``, the swept values; ``record``, ``sample``,
``R_bin``, ``alpha_grid``) and its measured and fitted arrays on them, each with ``units`` and
``long_name`` (and ``non_finite`` where it holds NaN: not measured). Global attributes:
provenance (no configuration: a study has many), ``study_name``, ``quick``, ``verdict``,
``n_points_used``, ``n_points_total``, ``criteria`` (JSON: a list of ``{quantity, expected,
measured, verdict}``), ``fits`` (JSON: the fitted and derived numbers, NaN as ``null``; each
also as a ``fit_<name>`` attribute), ``notes`` (JSON: what is reported but not judged),
``spec_toml`` (the sweep that made the points), ``used_hashes`` (JSON: the run hashes of the
points used) and ``inputs_hash`` (:func:`study_identity`).

The figure of a study (:func:`meanfield.plots.study_figure`) is drawn from this file only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meanfield.io import (
    atomic_h5,
    provenance,
    reading,
    set_attrs,
    text_attr,
    write_coordinate,
    write_variable,
)

KIND = "study"
#: the verdict of a criterion and of a study
VERDICTS = ("agree", "disagree", "inconclusive")
#: the ``non_finite`` attribute of an array holding NaN
NOT_MEASURED = ("NaN: not measured (no point file, no record where the quantity is defined, "
                "a level never reached, or too few values for a fit)")
_FIT = "fit_"


@dataclass(frozen=True)
class StudyCriterion:
    """One row of a study's table: the ``quantity``, what is ``expected`` (text), the
    ``measured`` value (``None`` when it could not be measured) and the ``verdict`` (one of
    :data:`VERDICTS`)."""

    quantity: str
    expected: str
    measured: float | None
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; "
                             f"got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a measured value that is not finite becomes ``None``)."""
        return {"quantity": self.quantity, "expected": self.expected,
                "measured": json_number(self.measured), "verdict": self.verdict}


@dataclass(frozen=True)
class StudyArray:
    """An array of a study file: its dimensions, values, units and meaning."""

    dims: tuple[str, ...]
    values: np.ndarray
    units: str
    long_name: str


def overall_verdict(criteria: Sequence[StudyCriterion], n_points_used: int,
                    n_points_total: int) -> str:
    """``disagree`` if any criterion disagrees; else ``inconclusive`` if any is inconclusive,
    there is none, or some points had no file; else ``agree``."""
    verdicts = [c.verdict for c in criteria]
    if "disagree" in verdicts:
        return "disagree"
    if not verdicts or "inconclusive" in verdicts or n_points_used < n_points_total:
        return "inconclusive"
    return "agree"


@dataclass
class StudyResult:
    """The analysis of a study: its ``criteria`` (the table), the ``fits`` (fitted and derived
    numbers, NaN where not measured), ``notes`` (reported, not judged), how many of the sweep's
    points had a file (``n_points_used`` of ``n_points_total``; ``used_hashes`` their run
    hashes), the arrays of its figure (``coords``: dimension name -> 1-d
    :class:`StudyArray`; ``arrays``: the others), the sweep spec as TOML and, when read back,
    the ``source`` file. ``result[name]`` is the values of a coordinate or array."""

    name: str
    quick: bool
    criteria: list[StudyCriterion]
    n_points_used: int
    n_points_total: int
    fits: dict[str, float] = field(default_factory=dict)
    coords: dict[str, StudyArray] = field(default_factory=dict)
    arrays: dict[str, StudyArray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    spec_toml: str = ""
    used_hashes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def verdict(self) -> str:
        """The overall verdict (:func:`overall_verdict`)."""
        return overall_verdict(self.criteria, self.n_points_used, self.n_points_total)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.coords:
            return self.coords[name].values
        return self.arrays[name].values

    def __contains__(self, name: object) -> bool:
        return name in self.coords or name in self.arrays


def json_number(value: Any) -> float | int | None:
    """A finite number as a float (an int stays an int), anything else (NaN, inf, None) as
    ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def study_identity(result: StudyResult) -> str:
    """What determines a study's numbers: its name, quick flag, sweep spec and the points used
    (12 hex digits)."""
    inputs = {"name": result.name, "quick": bool(result.quick), "spec": result.spec_toml,
              "used": sorted(result.used_hashes)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def _fits_json(fits: Mapping[str, Any]) -> str:
    return json.dumps({k: json_number(v) for k, v in fits.items()})


def write_study(result: StudyResult, path: str | Path) -> None:
    """Write ``result`` to ``path`` (netCDF4-valid HDF5, atomically: a failed write leaves the
    previous file or none)."""
    for name, coord in result.coords.items():
        if coord.dims != (name,):
            raise ValueError(f"coordinate {name!r} must have dims ({name!r},), "
                             f"got {coord.dims}")
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND))
        set_attrs(f, {
            "study_name": result.name, "quick": bool(result.quick), "verdict": result.verdict,
            "n_points_used": int(result.n_points_used),
            "n_points_total": int(result.n_points_total),
            "criteria": json.dumps([c.to_dict() for c in result.criteria]),
            "fits": _fits_json(result.fits), "notes": json.dumps(list(result.notes)),
            "spec_toml": result.spec_toml, "used_hashes": json.dumps(list(result.used_hashes)),
            "inputs_hash": study_identity(result),
        })
        set_attrs(f, {_FIT + k: float("nan") if v is None else float(v)
                      for k, v in result.fits.items()})
        for name, coord in result.coords.items():
            write_coordinate(f, name, np.asarray(coord.values),
                             {"units": coord.units, "long_name": coord.long_name})
        for name, arr in result.arrays.items():
            values = np.asarray(arr.values)
            attrs = {"units": arr.units, "long_name": arr.long_name}
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                attrs["non_finite"] = NOT_MEASURED
            write_variable(f, name, values, arr.dims, attrs)


def _json_attr(f: Any, name: str) -> Any:
    return json.loads(str(text_attr(f, name)))


def read_study(path: str | Path) -> StudyResult:
    """The :class:`StudyResult` stored in ``path``; :class:`meanfield.io.NotMeanfieldFile`
    (one line) for a missing, foreign, damaged or newer file."""
    with reading(path, KIND) as f:
        coords: dict[str, StudyArray] = {}
        arrays: dict[str, StudyArray] = {}
        for name, var in f.items():
            units = str(text_attr(var, "units", ""))
            long_name = str(text_attr(var, "long_name", ""))
            if var.is_scale:
                coords[name] = StudyArray((name,), var[()], units, long_name)
            else:
                dims = tuple(dim[0].name.rsplit("/", 1)[-1] for dim in var.dims)
                arrays[name] = StudyArray(dims, var[()], units, long_name)
        criteria = [StudyCriterion(c["quantity"], c["expected"],
                                   None if c["measured"] is None else float(c["measured"]),
                                   c["verdict"]) for c in _json_attr(f, "criteria")]
        fits = {k: float("nan") if v is None else v for k, v in _json_attr(f, "fits").items()}
        return StudyResult(
            name=str(text_attr(f, "study_name")), quick=bool(f.attrs["quick"]),
            criteria=criteria, n_points_used=int(f.attrs["n_points_used"]),
            n_points_total=int(f.attrs["n_points_total"]), fits=fits, coords=coords,
            arrays=arrays, notes=list(_json_attr(f, "notes")),
            spec_toml=str(text_attr(f, "spec_toml", "")),
            used_hashes=list(_json_attr(f, "used_hashes")), source=str(path))

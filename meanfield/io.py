"""HDF5 input/output: netCDF4-valid layout, provenance, atomic writes.

Layout:

- every dimension is a coordinate variable made an HDF5 dimension scale (``t``, ``node``,
  ``example``, ``x_par``, ...), and every variable has its dimensions attached, so the file
  opens with ``xarray.open_dataset(path, engine="h5netcdf")``;
- variables carry ``units`` and ``long_name`` attributes;
- global attributes: ``meanfield_kind`` (``theory``, ``simulation``, ``comparison``), the
  resolved configuration as canonical JSON (``config``) and as one attribute per field, the
  seed, package and library versions, git revision, command line and creation time;
- gzip + shuffle compression with chunks along the first dimension (never LZF);
- crash safety: a file is written as ``name.tmp`` and renamed with :func:`os.replace` only
  after it is closed, so a reader sees either the old complete file, the new one, or none.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KINDS = ("theory", "simulation", "comparison", "sweep")
#: layout version of each kind's files; a reader refuses a file of a newer version
FORMAT_VERSION = 1

# units attributes, one spelling each
TIME_UNITS = "mean-field time (1/beta)"
DIMENSIONLESS = "1"
PAPERS = (
    "Pellegrini & Biroli 2020, arXiv:2006.11209",
    "Hu, Xiao, Adlam & Pennington 2020, arXiv:2006.14599",
    "Lee et al. 2019, arXiv:1902.06720",
    "Frankle, Schwab & Morcos 2020, arXiv:2002.10365",
)
#: global attributes written by :func:`provenance` (besides one ``config_<field>`` per field)
PROVENANCE_KEYS = frozenset({
    "meanfield_kind", "meanfield_version", "git_revision", "versions", "command_line",
    "created", "papers", "Conventions", "format_version", "config", "config_hash", "seed",
})
_LIBRARIES = ("numpy", "numba", "sympy", "scipy", "h5py", "click")


class NotMeanfieldFile(ValueError):
    """The path is missing, not HDF5, or not written by meanfield."""


# --------------------------------------------------------------------------- provenance


def package_version() -> str:
    from meanfield import __version__

    return __version__


def git_revision() -> str:
    """The git commit of the source tree, with ``-dirty`` if it has uncommitted changes.

    Falls back to the revision recorded in the version string at install time
    (``X.Y.devN+gHASH``), then to ``"unknown"``.
    """
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        version = package_version()
        if "+g" in version:
            return version.split("+g", 1)[1].split(".", 1)[0]
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "meanfield": package_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def provenance(kind: str, config_json: str | None = None, seed: int | None = None) -> dict:
    """Global attributes every meanfield file carries."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    attrs: dict[str, Any] = {
        "meanfield_kind": kind,
        "meanfield_version": package_version(),
        "git_revision": git_revision(),
        "versions": json.dumps(library_versions(), sort_keys=True),
        "command_line": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "papers": "; ".join(PAPERS),
        "Conventions": "CF-1.8",
        "format_version": FORMAT_VERSION,
    }
    if config_json is not None:
        attrs["config"] = config_json
        attrs["config_hash"] = hashlib.sha256(config_json.encode()).hexdigest()[:12]
        for key, value in json.loads(config_json).items():
            attrs[f"config_{key}"] = value
    if seed is not None:
        attrs["seed"] = int(seed)
    return attrs


# --------------------------------------------------------------------------- writing


def _attr_value(value: Any) -> Any:
    """A netCDF-valid attribute value (str, number or 1-D numeric array)."""
    if isinstance(value, bool | np.bool_):
        return np.int8(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 0:
            return np.zeros(0, dtype=np.float64)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return np.asarray(value, dtype=np.float64)
        return json.dumps(list(value))
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "none"
    return str(value)


def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


def _creation_kwargs(data: np.ndarray) -> dict[str, Any]:
    if data.ndim == 0 or data.size < 64 or data.dtype.kind not in "fiub":
        return {}
    chunks = (min(data.shape[0], 256), *data.shape[1:])
    return {"compression": "gzip", "compression_opts": 4, "shuffle": True, "chunks": chunks}


def write_coordinate(
    f: h5py.File, name: str, values: Any, attrs: Mapping[str, Any] | None = None
) -> h5py.Dataset:
    """A 1-D coordinate variable that is also the dimension scale ``name``."""
    data = np.asarray(values)
    if data.ndim != 1:
        raise ValueError(f"coordinate {name!r} must be 1-D, got shape {data.shape}")
    dset = f.create_dataset(name, data=data, **_creation_kwargs(data))
    dset.make_scale(name)
    set_attrs(dset, attrs or {})
    return dset


def write_variable(
    f: h5py.File,
    name: str,
    values: Any,
    dims: Sequence[str],
    attrs: Mapping[str, Any] | None = None,
) -> h5py.Dataset:
    """A variable on existing coordinate dimensions ``dims`` (``()`` for a scalar)."""
    data = np.asarray(values)
    if data.ndim != len(dims):
        raise ValueError(f"variable {name!r} has shape {data.shape} but dims {tuple(dims)}")
    for axis, dim in enumerate(dims):
        if dim not in f:
            raise ValueError(f"dimension {dim!r} of {name!r} has no coordinate variable")
        if f[dim].shape[0] != data.shape[axis]:
            raise ValueError(
                f"variable {name!r} axis {axis} has length {data.shape[axis]}, "
                f"dimension {dim!r} has length {f[dim].shape[0]}"
            )
    dset = f.create_dataset(name, data=data, **_creation_kwargs(data))
    for axis, dim in enumerate(dims):
        dset.dims[axis].attach_scale(f[dim])
    set_attrs(dset, attrs or {})
    return dset


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Open ``path.tmp`` for writing; on success close it and rename it to ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and the
    previous content of ``path``, if any, is untouched.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    f = h5py.File(tmp, "w", track_order=True)
    try:
        yield f
        f.flush()
        f.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def check_writable(path: str | Path) -> Path:
    """Fail early (before any computation) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NotMeanfieldFile(f"output folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise NotMeanfieldFile(f"output folder {str(parent)!r} is not writable")
    if path.is_dir():
        raise NotMeanfieldFile(f"output path {str(path)!r} is a folder")
    return path


# --------------------------------------------------------------------------- reading


def open_meanfield(path: str | Path, kind: str | None = None) -> h5py.File:
    """Open a meanfield HDF5 file for reading, checking that it is one (and of ``kind``)."""
    path = Path(path)
    if not path.is_file():
        raise NotMeanfieldFile(f"{str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise NotMeanfieldFile(f"{str(path)!r} is not an HDF5 file") from None
    found = f.attrs.get("meanfield_kind")
    if isinstance(found, bytes):
        found = found.decode()
    if found not in KINDS:
        f.close()
        raise NotMeanfieldFile(f"{str(path)!r} is an HDF5 file but not a meanfield output")
    if kind is not None and found != kind:
        f.close()
        raise NotMeanfieldFile(f"{str(path)!r} is a meanfield {found} file, expected {kind}")
    version = int(f.attrs.get("format_version", 1))
    if version > FORMAT_VERSION:
        f.close()
        raise NotMeanfieldFile(f"{str(path)!r} has format version {version}, newer than this "
                               f"meanfield reads ({FORMAT_VERSION}); upgrade meanfield")
    return f


def text_attr(obj: h5py.HLObject, name: str, default: str | None = None) -> str | None:
    """A string attribute (h5py may return ``bytes``); ``default`` when absent."""
    value = obj.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def read_config_json(f: h5py.File) -> str:
    return str(text_attr(f, "config"))


def read_array(f: h5py.File, name: str) -> np.ndarray | None:
    """The variable ``name`` as stored, ``None`` when the file has none."""
    return f[name][()] if name in f else None

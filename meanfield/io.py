"""HDF5 input/output: netCDF4-valid layout, provenance, atomic writes.

Layout:

- every dimension is a coordinate variable made an HDF5 dimension scale (``t``, ``node``,
  ``example``, ``x_par``, ...), and every variable has its dimensions attached, so the file
  opens with ``xarray.open_dataset(path, engine="h5netcdf")``;
- variables carry ``units`` and ``long_name`` attributes;
- global attributes: ``meanfield_kind`` (``theory``, ``simulation``, ``comparison``), the
  resolved configuration as canonical JSON (``config``) and as one attribute per field, the
  seed, package and library versions, git revision, command line and creation time;
- every non-empty numeric array is chunked along its first dimension and carries HDF5's
  Fletcher-32 checksum, so flipped bits in the data are detected on read; arrays of 64 values
  or more are also compressed (gzip + shuffle, never LZF);
- crash safety (:func:`atomic_h5`): a file is built in memory, written to a temporary name
  unique to the writer (``name.<pid>.<random>.tmp``), synced and renamed with
  :func:`os.replace`, so a reader sees either the old complete file, the new one, or none, and
  two processes writing the same file (two workers of a sweep) cannot corrupt each other; a
  write that fails (disk full, file-size limit, folder read-only or gone) raises
  :class:`WriteFailed` and leaves the previous file as it was and no temporary file;
- reading (:func:`reading`): a missing, foreign, truncated or damaged file, a failed checksum
  or a variable missing from its kind's layout raise :class:`NotMeanfieldFile` with a
  one-line message.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KINDS = ("theory", "simulation", "comparison", "sweep", "linear", "crossover", "study")
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
    """The path is missing, not HDF5, not written by meanfield, truncated or damaged (the
    message is one line naming the path)."""


class WriteFailed(NotMeanfieldFile):
    """Writing an output failed (disk full, file-size limit, folder read-only or removed); the
    previous file, if any, is untouched and no partial file is left. One line naming the path
    and the system's reason."""


#: what h5py raises for unreadable or inconsistent content (missing objects: KeyError; failed
#: checksums, truncated files, broken metadata: OSError or RuntimeError; malformed values:
#: ValueError or TypeError)
_READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)
#: HDF5 files begin with this signature (at offset 0 for the files meanfield writes)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _one_line(err: BaseException, limit: int = 160) -> str:
    """The error's message on one line (HDF5 messages span lines), at most ``limit`` chars."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = " ".join(str(err.args[0]).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def creation_kwargs(data: np.ndarray, compress: bool = True) -> dict[str, Any]:
    """Storage of an array: chunks along the first dimension with the Fletcher-32 checksum for
    every non-empty numeric array; gzip + shuffle from 64 values on (when ``compress``).
    Scalars, empty arrays and text are stored contiguously (HDF5 cannot chunk them)."""
    if data.ndim == 0 or data.size == 0 or data.dtype.kind not in "fiub":
        return {}
    kwargs: dict[str, Any] = {"chunks": (min(data.shape[0], 256), *data.shape[1:]),
                              "fletcher32": True}
    if compress and data.size >= 64:
        kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
    return kwargs


def create_dataset(group: h5py.Group, name: str, data: Any, compress: bool = True
                   ) -> h5py.Dataset:
    """``group[name] = data`` stored as :func:`creation_kwargs` says (checksummed)."""
    data = np.asarray(data)
    return group.create_dataset(name, data=data, **creation_kwargs(data, compress))


def write_coordinate(
    f: h5py.File, name: str, values: Any, attrs: Mapping[str, Any] | None = None
) -> h5py.Dataset:
    """A 1-D coordinate variable that is also the dimension scale ``name``."""
    data = np.asarray(values)
    if data.ndim != 1:
        raise ValueError(f"coordinate {name!r} must be 1-D, got shape {data.shape}")
    dset = create_dataset(f, name, data)
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
    dset = create_dataset(f, name, data)
    for axis, dim in enumerate(dims):
        dset.dims[axis].attach_scale(f[dim])
    set_attrs(dset, attrs or {})
    return dset


_memory_names = itertools.count()


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """An HDF5 file to fill, written to ``path`` atomically when the block ends.

    The file is built in memory (HDF5's core driver, so the library never meets a disk
    error); on success its image is written by :func:`write_atomic`. On any exception
    (including KeyboardInterrupt) nothing is written, or the temporary file is removed, and the
    previous content of ``path``, if any, is untouched; a failed write raises
    :class:`WriteFailed` (one line: the path and the system's reason).
    """
    path = Path(path)
    name = f"meanfield-{os.getpid()}-{next(_memory_names)}-{path.name}"
    f = h5py.File(name, "w", driver="core", backing_store=False, block_size=1 << 20,
                  track_order=True)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    write_atomic(path, image)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file unique to this writer
    (:func:`temporary_name`), synced, renamed with :func:`os.replace`. Temporary files of the
    same path left by killed processes of this machine are removed first
    (:func:`remove_stale_temporaries`). A failure raises :class:`WriteFailed` (one line: the
    path and the system's reason) and leaves ``path`` as it was and no temporary file."""
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name))
    try:
        remove_stale_temporaries(path)
        _write_replace(data, tmp, path)
    except OSError as err:
        reason = err.strerror or _one_line(err)
        kept = "the previous file is unchanged" if path.exists() else "no file was written"
        raise WriteFailed(f"cannot write {_short(path)!r}: {reason}; {kept}") from None


def temporary_name(name: str) -> str:
    """``name.<pid>.<random>.tmp``: the temporary name a writer of ``name`` uses."""
    return f"{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


_TEMPORARY = re.compile(r"\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or no such pid
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` whose writer is no longer running on this
    machine (and the ``name.tmp`` of older versions); those of live writers are kept."""
    folder = path.parent if str(path.parent) else Path(".")
    prefix = path.name + "."
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if not entry.name.startswith(prefix):
                continue
            rest = entry.name[len(path.name):]
            match = _TEMPORARY.fullmatch(rest)
            if rest == ".tmp" or (match and not _alive(int(match.group(1)))):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(entry.path)


def _write_replace(image: bytes, tmp: Path, path: Path) -> None:
    """Write ``image`` to ``tmp``, sync it, rename it to ``path`` and sync the folder; on
    any failure (or interrupt) remove ``tmp`` and re-raise."""
    try:
        with open(tmp, "xb") as out:
            out.write(image)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power loss
        fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(path: str | Path) -> Path:
    """Fail early (before any computation) when ``path`` cannot be written: one-line
    :class:`NotMeanfieldFile` for a missing or read-only folder, a folder in its place, a name
    the system refuses (too long, ...)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        if not parent.is_dir():
            raise NotMeanfieldFile(f"output folder {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK):
            raise NotMeanfieldFile(f"output folder {str(parent)!r} is not writable")
        if path.is_dir():
            raise NotMeanfieldFile(f"output path {str(path)!r} is a folder")
        os.stat(path)
    except NotMeanfieldFile:
        raise
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or _one_line(err)
        raise NotMeanfieldFile(f"cannot write {_short(path)!r}: {reason}") from None
    return path


def _short(path: Path, limit: int = 120) -> str:
    """``path`` as text, cut in the middle past ``limit`` characters (for messages)."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


# --------------------------------------------------------------------------- reading


def open_meanfield(path: str | Path, kind: str | None = None) -> h5py.File:
    """Open a meanfield HDF5 file for reading, checking that it is one (and of ``kind``).

    Raises :class:`NotMeanfieldFile` (one line) for a missing, foreign or truncated file, one
    of another kind or of a newer format. Read it inside :func:`reading`, which also turns
    damaged content into :class:`NotMeanfieldFile`.
    """
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError) as err:  # a name the system refuses (too long, NUL)
        reason = getattr(err, "strerror", None) or _one_line(err)
        raise NotMeanfieldFile(f"{_short(path)!r} cannot be read: {reason}") from None
    if not found:
        raise NotMeanfieldFile(f"{str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NotMeanfieldFile(_unopenable(path, err)) from None
    try:
        with damaged_as(path):
            _check_kind(f, path, kind)
    except BaseException:
        f.close()
        raise
    return f


def _unopenable(path: Path, err: OSError) -> str:
    """Why h5py could not open ``path``: not HDF5 at all, or an HDF5 file cut short or
    damaged."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(len(_HDF5_SIGNATURE))
    except OSError as read_err:
        return f"{str(path)!r} cannot be read: {read_err.strerror or _one_line(read_err)}"
    if head != _HDF5_SIGNATURE:
        return f"{str(path)!r} is not an HDF5 file"
    return f"{str(path)!r} is a damaged or truncated HDF5 file ({_one_line(err)})"


def _check_kind(f: h5py.File, path: Path, kind: str | None) -> None:
    found = f.attrs.get("meanfield_kind")
    if isinstance(found, bytes):
        found = found.decode()
    if found not in KINDS:
        raise NotMeanfieldFile(f"{str(path)!r} is an HDF5 file but not a meanfield output")
    if kind is not None and found != kind:
        raise NotMeanfieldFile(f"{str(path)!r} is a meanfield {found} file, expected {kind}")
    version = int(f.attrs.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise NotMeanfieldFile(f"{str(path)!r} has format version {version}, newer than this "
                               f"meanfield reads ({FORMAT_VERSION}); upgrade meanfield")


@contextlib.contextmanager
def damaged_as(path: str | Path, error: type[Exception] = NotMeanfieldFile, hint: str = ""
               ) -> Iterator[None]:
    """Turn what h5py raises for unreadable content inside the block (a failed checksum, a
    truncated or broken structure, a missing variable, a malformed attribute) into
    ``error`` with one line naming ``path`` and the reason, followed by ``hint``.
    :class:`NotMeanfieldFile` and ``error`` itself pass unchanged."""
    try:
        yield
    except (NotMeanfieldFile, error):
        raise
    except _READ_ERRORS as err:
        raise error(f"{str(path)!r} is damaged or incomplete: {_one_line(err)}{hint}"
                    ) from None


@contextlib.contextmanager
def reading(path: str | Path, kind: str | None = None) -> Iterator[h5py.File]:
    """``with reading(path, kind) as f``: :func:`open_meanfield`, and everything read from
    ``f`` inside the block that fails because the file is damaged, incomplete or not of
    ``kind``'s layout raises :class:`NotMeanfieldFile` (one line). The file is closed at the
    end of the block."""
    f = open_meanfield(path, kind)
    with f, damaged_as(path):
        yield f


def text_attr(obj: h5py.HLObject, name: str, default: str | None = None) -> str | None:
    """A string attribute (h5py may return ``bytes``); ``default`` when absent."""
    value = obj.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def read_config_json(f: h5py.File) -> str:
    return str(text_attr(f, "config"))


def read_array(f: h5py.File, name: str) -> np.ndarray | None:
    """The variable ``name`` as stored, ``None`` when the file has none."""
    return f[name][()] if name in f else None

"""The sweep file of ``meanfield sweep``: reading, checking and expanding it into points.

A sweep file is TOML with up to four tables::

    [sweep]                # optional
    seeds = 8              # n (seeds 0..n-1) or a list of distinct integers >= 0
    name = "width"         # optional label

    [base]                 # any config field
    N = 20000

    [grid]                 # cartesian product of these lists (the first field varies slowest)
    M = [50, 100, 200]

    [zip]                  # lists of one common length, taken together
    alpha = [0.5, 1.0]
    beta = [4.0, 1.0]

The points are the grid product x the zip rows x the seeds, in that order (the seed varies
fastest); their position is their run index. Any scalar config field may be swept in
``[grid]`` or ``[zip]`` (``seed`` too, instead of ``[sweep].seeds``); the tuple fields only in
``[base]``. Points get ``threads = 1`` unless the file sets ``threads``. Every point's config is
validated (:func:`meanfield.config.make_config`) before :func:`parse_spec` returns; every
refusal is a :class:`SpecError` with one line naming the field. This module runs nothing and
writes no file.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from meanfield.config import (
    _TUPLE_FIELDS,
    FIELD_NAMES,
    Config,
    ConfigError,
    make_config,
    run_hash,
)

MAX_POINTS = 100_000
"""The most points one sweep may have."""

TABLES = ("sweep", "base", "grid", "zip")
SWEEP_KEYS = ("seeds", "name")
NOT_SWEPT = ("checkpoint_every",)
"""Scalar fields that may be set in ``[base]`` but not swept (they do not change results)."""
DEFAULT_THREADS = 1


class SpecError(ConfigError):
    """A sweep file is unreadable, malformed, or one of its points is not a valid config."""


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())


def _fail(source: str, message: str) -> SpecError:
    return SpecError(_one_line(f"{source}: {message}"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | str) or (
        isinstance(value, float) and math.isfinite(value))


def _show_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its run index, the swept fields' values (``seed`` included), its
    validated config and that config's :func:`~meanfield.config.run_hash`."""

    run: int
    values: dict[str, Any]
    config: Config
    hash: str


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file: the resolved tables and the expanded, validated points.

    ``seeds`` is ``None`` when the file gives no ``[sweep].seeds`` (the seed then comes from
    ``[base]``, the default, or a swept ``seed``). ``swept`` lists the fields of each point's
    ``values`` in order: the grid fields, the zip fields, then ``seed``.
    """

    source: str
    name: str | None
    seeds: tuple[int, ...] | None
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]]
    zip: dict[str, tuple[Any, ...]]
    swept: tuple[str, ...]
    _points: tuple[Point, ...] = field(repr=False, compare=False)

    def points(self) -> list[Point]:
        """The points in run order."""
        return list(self._points)

    def __len__(self) -> int:
        return len(self._points)

    def to_toml(self) -> str:
        """The resolved spec as TOML (``threads`` explicit, values in their config types);
        :func:`parse_spec` of it gives the same points."""
        doc: dict[str, Any] = {}
        sweep: dict[str, Any] = {}
        if self.seeds is not None:
            sweep["seeds"] = list(self.seeds)
        if self.name is not None:
            sweep["name"] = self.name
        if sweep:
            doc["sweep"] = sweep
        if self.base:
            doc["base"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in self.base.items()}
        if self.grid:
            doc["grid"] = {k: list(v) for k, v in self.grid.items()}
        if self.zip:
            doc["zip"] = {k: list(v) for k, v in self.zip.items()}
        return tomli_w.dumps(doc)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check the sweep file ``path`` (see :func:`parse_spec`)."""
    source = f"sweep file {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{source} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SpecError(_one_line(f"{source} is not valid TOML: {err}")) from None
    except OSError as err:
        raise SpecError(_one_line(f"{source} cannot be read: {err.strerror}")) from None
    return parse_spec(raw, source=source)


def _table(spec: Mapping[str, Any], name: str, source: str) -> dict[str, Any]:
    value = spec.get(name, {})
    if not isinstance(value, Mapping):
        raise _fail(source, f"[{name}] must be a table, got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise _fail(source, f"[{name}] has a key that is not a string: {key!r}")
    return dict(value)


def _seeds(sweep: Mapping[str, Any], source: str) -> tuple[int, ...] | None:
    if "seeds" not in sweep:
        return None
    seeds = sweep["seeds"]
    if _is_int(seeds):
        if seeds < 1:
            raise _fail(source, f"[sweep] seeds must be a positive integer or a list of "
                                f"distinct integers >= 0, got {seeds!r}")
        if seeds > MAX_POINTS:
            raise _fail(source, f"[sweep] seeds = {seeds} gives more than {MAX_POINTS} points")
        return tuple(range(seeds))
    if (isinstance(seeds, list | tuple) and seeds and all(_is_int(s) and s >= 0 for s in seeds)
            and len(set(seeds)) == len(seeds)):
        return tuple(seeds)
    raise _fail(source, f"[sweep] seeds must be a positive integer or a non-empty list of "
                        f"distinct integers >= 0, got {seeds!r}")


def _lists(table: Mapping[str, Any], name: str, source: str) -> dict[str, tuple[Any, ...]]:
    out = {}
    for key, value in table.items():
        if key not in FIELD_NAMES:
            raise _fail(source, f"unknown config field {key!r} in [{name}]; allowed fields: "
                                f"{', '.join(FIELD_NAMES)}")
        if key in _TUPLE_FIELDS:
            raise _fail(source, f"{key} is a list-valued field: set it in [base], not [{name}]")
        if key in NOT_SWEPT:
            raise _fail(source, f"{key} cannot be swept in [{name}] (it does not change "
                                f"results); set it in [base]")
        if not isinstance(value, list | tuple) or not value:
            raise _fail(source, f"[{name}] {key} must be a non-empty list of values, "
                                f"got {value!r}")
        for item in value:
            if not _is_scalar(item):
                raise _fail(source, f"[{name}] {key} must hold numbers, strings or booleans, "
                                    f"got {item!r}")
        out[key] = tuple(value)
    return out


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def parse_spec(spec: Mapping[str, Any], source: str = "sweep spec") -> SweepSpec:
    """Check the tables of a sweep file (as :func:`tomllib.loads` gives them), expand its
    points and validate each point's config; raises :class:`SpecError` (one line, naming the
    field; for a bad point also its run index and swept values). ``source`` prefixes every
    message."""
    if not isinstance(spec, Mapping):
        raise _fail(source, f"a sweep spec must be a table, got {type(spec).__name__}")
    for key in spec:
        if key not in TABLES:
            raise _fail(source, f"unknown top-level table or key {key!r}; allowed: "
                                f"{', '.join(f'[{t}]' for t in TABLES)}")
    sweep = _table(spec, "sweep", source)
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise _fail(source, f"unknown key {key!r} in [sweep]; allowed: "
                                f"{', '.join(SWEEP_KEYS)}")
    name = sweep.get("name")
    if name is not None and not isinstance(name, str):
        raise _fail(source, f"[sweep] name must be a string, got {name!r}")
    seeds = _seeds(sweep, source)

    base = _table(spec, "base", source)
    for key, value in base.items():
        if key not in FIELD_NAMES:
            raise _fail(source, f"unknown config field {key!r} in [base]; allowed fields: "
                                f"{', '.join(FIELD_NAMES)}")
        if value is None:
            raise _fail(source, f"[base] {key} has no value")
    grid = _lists(_table(spec, "grid", source), "grid", source)
    zipped = _lists(_table(spec, "zip", source), "zip", source)

    for a, b, ta, tb in (("base", "grid", base, grid), ("base", "zip", base, zipped),
                         ("grid", "zip", grid, zipped)):
        both = [k for k in ta if k in tb]
        if both:
            raise _fail(source, f"{both[0]} is in both [{a}] and [{b}]; give it in one table")
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        other = next(k for k in lengths if lengths[k] != lengths[first])
        raise _fail(source, f"[zip] lists must have one common length: {first} has "
                            f"{lengths[first]} values, {other} has {lengths[other]}")
    if seeds is not None:
        where = "base" if "seed" in base else "grid" if "seed" in grid else \
            "zip" if "seed" in zipped else None
        if where is not None:
            raise _fail(source, f"seed is given both in [{where}] and as [sweep] seeds; "
                                f"give one")
    if _is_zero(base.get("threads")) or any(
            _is_zero(v) for v in grid.get("threads", ()) + zipped.get("threads", ())):
        raise _fail(source, "threads = 0 (all cores) is not reproducible across machines; "
                            "give a number of threads >= 1")

    n_rows = next(iter(lengths.values())) if lengths else 1
    seed_list = seeds if seeds is not None else (None,)
    count = math.prod(len(v) for v in grid.values()) * n_rows * len(seed_list)
    if count > MAX_POINTS:
        raise _fail(source, f"the sweep has {count} points, more than {MAX_POINTS} "
                            f"(fields: {', '.join([*grid, *zipped, 'seed'])})")

    if not any("threads" in t for t in (base, grid, zipped)):
        base["threads"] = DEFAULT_THREADS
    swept = (*grid, *zipped, *(() if "seed" in grid or "seed" in zipped else ("seed",)))

    points: list[Point] = []
    indices: list[tuple[int, ...]] = []
    seen: dict[str, int] = {}
    resolved_base: dict[str, Any] = {}
    resolved_grid: dict[str, dict[int, Any]] = {k: {} for k in grid}
    resolved_zip: dict[str, dict[int, Any]] = {k: {} for k in zipped}
    for combo in itertools.product(*(range(len(v)) for v in grid.values())):
        for row in range(n_rows):
            for seed in seed_list:
                run = len(points)
                given = {k: grid[k][i] for k, i in zip(grid, combo, strict=True)}
                given.update({k: v[row] for k, v in zipped.items()})
                if seed is not None:
                    given["seed"] = seed
                try:
                    config = make_config(**base, **given)
                except (ConfigError, OverflowError) as err:
                    shown = dict(given)
                    if "seed" not in shown:
                        shown["seed"] = base.get("seed", Config().seed)
                    raise _fail(source, f"run {run} ({_show_values(shown)}): {err}") from None
                if not resolved_base:
                    resolved_base = {k: getattr(config, k) for k in base}
                for k, i in zip(grid, combo, strict=True):
                    resolved_grid[k].setdefault(i, getattr(config, k))
                for k in zipped:
                    resolved_zip[k].setdefault(row, getattr(config, k))
                values = {k: getattr(config, k) for k in swept}
                digest = run_hash(config)
                if digest in seen:
                    other = seen[digest]
                    differ = [k for k, i, j in zip(grid, indices[other][:-1], combo, strict=True)
                              if i != j]
                    if indices[other][-1] != row:
                        differ += list(zipped)
                    fields_text = ", ".join(differ or list(swept))
                    raise _fail(source, f"{fields_text}: run {run} ({_show_values(values)}) "
                                        f"has the same run hash {digest} as run {other}; "
                                        f"every point must differ")
                seen[digest] = run
                indices.append((*combo, row))
                points.append(Point(run=run, values=values, config=config, hash=digest))

    return SweepSpec(
        source=source, name=name, seeds=seeds, base=resolved_base,
        grid={k: tuple(v[i] for i in range(len(v))) for k, v in resolved_grid.items()},
        zip={k: tuple(v[r] for r in range(len(v))) for k, v in resolved_zip.items()},
        swept=swept, _points=tuple(points))


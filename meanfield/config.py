"""Validated, frozen run configurations.

One flat set of names is shared by ``meanfield theory``, ``meanfield simulate``, the TOML files
and the HDF5 attributes (see DESIGN.md, section 2):

    f(x) = (alpha / M) sum_i a_i sigma(w_i . x / sqrt(d)),
    a_i(0) ~ N(0, sa^2),  w_i(0) ~ N(0, sw^2 I_d),
    L = (1/N) sum_mu l(y_mu f(x_mu)),  l(z) = (h - z)_+  (linear hinge, threshold h),
    d theta_i / dt = -beta M dL / d theta_i   (mean-field time t).

A :class:`Config` is immutable; :func:`make_config` builds one from keyword overrides (TOML
file, then command-line options) and checks every field, raising :class:`ConfigError` with a
message that names the field and its allowed range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

DATA_LAWS = ("gaussian", "sphere")
LOSSES = ("hinge", "squared", "logistic")
INTEGRATORS = ("euler", "heun")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A configuration field is unknown or outside its allowed range."""


@dataclass(frozen=True)
class Config:
    """Every parameter of a run, with its default.

    Model and data (units: none; times in mean-field time units of ``beta``):

    - ``M``: number of hidden nodes; ``N``: training examples; ``d``: input dimension.
    - ``alpha``: output scale; ``sa``, ``sw``: initial standard deviations of ``a`` and ``w``.
    - ``activation``: a named activation or an expression in ``x`` (see ``analytic.activations``).
    - ``data``: ``gaussian`` (``x ~ N(0, I_d)``) or ``sphere`` (uniform, radius ``sqrt(d)``).
    - ``label_noise``: probability that a training label is flipped.
    - ``margin``: examples with ``|x_par| < margin`` are dropped (``kappa`` in DESIGN.md).
    - ``n_test``: held-out examples; ``online``: fresh examples at every step.

    Training:

    - ``loss``: ``hinge`` (threshold ``h``), ``squared`` or ``logistic``; ``beta``: rate.
    - ``dt``: time step; ``growth``: geometric schedule ``dt_n = max(dt, growth * t_n)``.
    - ``t_max``: final time; ``integrator``: ``euler`` or ``heun``.
    - ``batch``: mini-batch size (0 = full batch).
    - ``dtype``: ``float32`` or ``float64``; ``seed``; ``threads`` (0 = all cores).

    Recording:

    - ``n_times``: number of log-spaced record times in ``[t_first, t_max]`` (plus ``t = 0``).
    - ``times``: explicit record times (strictly increasing); replaces the log grid if given.
    - ``record_nodes``: nodes whose trajectories are stored (0 = all).
    - ``checkpoint_every``: steps between checkpoints (0 = none).
    - ``x_par``: values of ``x_par`` at which the theory reports ``t_sat``.
    """

    M: int = 400
    N: int = 100_000
    d: int = 100
    h: float = 1.0
    alpha: float = 1.0
    beta: float = 1.0
    sa: float = 1.0
    sw: float = 1.0
    activation: str = "relu"
    loss: str = "hinge"
    data: str = "gaussian"
    label_noise: float = 0.0
    margin: float = 0.0
    n_test: int = 10_000
    online: bool = False
    batch: int = 0
    dt: float = 1.0
    growth: float = 0.0
    t_max: float = 2000.0
    integrator: str = "euler"
    dtype: str = "float64"
    seed: int = 0
    threads: int = 0
    n_times: int = 100
    times: tuple[float, ...] = field(default=())
    record_nodes: int = 0
    checkpoint_every: int = 0
    x_par: tuple[float, ...] = field(default=())

    def replace(self, **changes: Any) -> Config:
        """A validated copy with some fields changed."""
        return make_config(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dictionary (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("times", "x_par"):
            out[key] = list(out[key])
        return out

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; stable across runs."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """12 hex digits of SHA-256 of :meth:`to_json`, for run names."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


FIELD_NAMES = tuple(f.name for f in fields(Config))
_INT_FIELDS = {f.name for f in fields(Config) if f.type == "int"}
_FLOAT_FIELDS = {f.name for f in fields(Config) if f.type == "float"}
_TUPLE_FIELDS = {"times", "x_par"}


def _coerce(name: str, value: Any) -> Any:
    """Convert a TOML / CLI value to the field's type, or raise ConfigError."""
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {value!r}")
        return value
    if name in _TUPLE_FIELDS:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a list of numbers, got {value!r}") from None
        if not all(math.isfinite(v) for v in out):
            raise ConfigError(f"{name} must hold finite numbers, got {value!r}")
        return out
    if name == "online":
        if not isinstance(value, bool):
            raise ConfigError(f"online must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value.strip()


def _check(c: Config) -> None:
    """Range checks; each message names the field and the allowed range."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(c.M >= 1, f"M must be >= 1, got {c.M}")
    need(c.N >= 1, f"N must be >= 1, got {c.N}")
    need(c.d >= 2, f"d must be >= 2 (x_par plus at least one other direction), got {c.d}")
    need(c.h > 0, f"h must be > 0, got {c.h}")
    need(c.alpha > 0, f"alpha must be > 0, got {c.alpha}")
    need(c.beta > 0, f"beta must be > 0, got {c.beta}")
    need(c.sa >= 0, f"sa must be >= 0, got {c.sa}")
    need(c.sw >= 0, f"sw must be >= 0, got {c.sw}")
    need(c.sa + c.sw > 0, "sa and sw cannot both be 0 (the network would never move)")
    need(c.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}; got {c.loss!r}")
    need(c.data in DATA_LAWS, f"data must be one of {', '.join(DATA_LAWS)}; got {c.data!r}")
    need(0 <= c.label_noise < 0.5, f"label_noise must be in [0, 0.5), got {c.label_noise}")
    need(c.margin >= 0, f"margin must be >= 0, got {c.margin}")
    need(c.n_test >= 0, f"n_test must be >= 0, got {c.n_test}")
    need(0 <= c.batch <= c.N, f"batch must be in [0, N={c.N}] (0 = full batch), got {c.batch}")
    need(c.dt > 0, f"dt must be > 0, got {c.dt}")
    need(c.growth >= 0, f"growth must be >= 0, got {c.growth}")
    need(c.t_max > 0, f"t_max must be > 0, got {c.t_max}")
    need(
        c.integrator in INTEGRATORS,
        f"integrator must be one of {', '.join(INTEGRATORS)}; got {c.integrator!r}",
    )
    need(c.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}; got {c.dtype!r}")
    need(c.seed >= 0, f"seed must be >= 0, got {c.seed}")
    need(c.threads >= 0, f"threads must be >= 0 (0 = all cores), got {c.threads}")
    need(c.n_times >= 2, f"n_times must be >= 2, got {c.n_times}")
    need(
        all(t >= 0 for t in c.times) and all(b > a for a, b in itertools.pairwise(c.times)),
        f"times must be non-negative and strictly increasing, got {list(c.times)}",
    )
    need(0 <= c.record_nodes <= c.M, f"record_nodes must be in [0, M={c.M}] (0 = all)")
    need(c.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {c.checkpoint_every}")
    need(all(v >= 0 for v in c.x_par), f"x_par values must be >= 0, got {list(c.x_par)}")
    _check_activation(c.activation)


def _check_activation(spec: str) -> None:
    from analytic.activations import ActivationError, get_activation

    try:
        get_activation(spec)
    except ActivationError as err:
        raise ConfigError(f"activation: {err}") from None


def make_config(base: Config | None = None, **overrides: Any) -> Config:
    """A validated Config: ``base`` (default: all defaults) with ``overrides`` applied.

    ``None`` values in ``overrides`` are ignored (an option the user did not give).
    """
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown config field {unknown[0]!r}; allowed fields: {', '.join(FIELD_NAMES)}"
        )
    values = dataclasses.asdict(base or Config())
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    config = Config(**values)
    _check(config)
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (sections, if any, are merged)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):  # allow [model], [data], [train] sections
            flat.update(value)
        else:
            flat[key] = value
    return flat


def from_sources(path: str | Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file, then explicit overrides (CLI options)."""
    from_file = load_toml(path) if path is not None else {}
    base = make_config(**from_file)
    return make_config(base, **overrides)


def from_json(text: str) -> Config:
    """Inverse of :meth:`Config.to_json` (used to read a config back from HDF5)."""
    return make_config(**json.loads(text))

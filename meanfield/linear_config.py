"""Validated, frozen configuration of ``meanfield linear``.

Conventions (those of :mod:`analytic.kernels` and :mod:`meanfield.linear`):
``f(x) = v . phi(W x / sqrt d) / sqrt m`` with ``W`` (``m x d``) and ``v`` (``m``) standard
Gaussian; loss ``L = (1/2n) sum_mu (f(x_mu) - y_mu)^2``; full-batch gradient descent
``W <- W - lr lr1 dL/dW``, ``v <- v - lr lr2 dL/dv`` (both gradients at the same point); the
NTK without ``1/n``, ``Theta = lr1 Theta1 + lr2 Theta2``, so that a linear model moves as
``f <- f - (lr/n) Theta (f - y)``. ``train`` picks ``(lr1, lr2)``: ``both`` = ``(1, R)``,
``first`` = ``(1, 0)``, ``second`` = ``(0, 1)`` with ``R = lr_ratio``. Times are integer GD
steps.

As for :class:`meanfield.config.Config`, every fact about a field is declared once with it
(meaning, range, default); the command's options and their help lines are generated from
:data:`LINEAR_FIELDS`. Defaults that depend on other fields (``n = round(d^1.25)``,
``widths = 4n``) are resolved by :func:`make_linear_config`, so a stored configuration is
complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from meanfield.config import (
    MAX_SCALE,
    MAX_SEED,
    MIN_SCALE,
    ConfigError,
    Interval,
    OneOf,
    Range,
    Rule,
    check_ranges,
    load_toml,
)

TRAIN = ("both", "first", "second")
TARGETS = ("teacher", "sign", "linear")
DATA_LAWS = ("gaussian", "sphere")
DTYPES = ("float64", "float32")
#: sizes beyond these are refused as unsupported (the memory check refuses what does not fit)
MAX_SIZE = 10**7
MAX_STEPS = 10**8
MAX_RECORDS = 10_000
MAX_SEEDS = 100_000
MAX_WIDTHS = 64


def _widths_problem(c: LinearConfig) -> str | None:
    w = c.widths
    if len(w) > MAX_WIDTHS:
        return f"widths must hold at most {MAX_WIDTHS} values, got {len(w)}"
    if not all(1 <= m <= MAX_SIZE for m in w):
        return f"widths must be positive integers of at most {MAX_SIZE:g}, got {list(w)[:8]}"
    if not all(b > a for a, b in itertools.pairwise(w)):
        return f"widths must be strictly increasing, got {list(w)[:8]}"
    return None


def _times_problem(c: LinearConfig) -> str | None:
    t = c.times
    if len(t) > MAX_RECORDS:
        return f"times must hold at most {MAX_RECORDS} values, got {len(t)}"
    if not all(0 <= s <= c.steps for s in t) or not all(
            b > a for a, b in itertools.pairwise(t)):
        return (f"times must be integers in [0, steps={c.steps}], strictly increasing, "
                f"got {list(t)[:8]}")
    return None


def _activation_problem(c: LinearConfig) -> str | None:
    from analytic.activations import ActivationError, get_activation
    from analytic.kernels import numeric_activation

    try:
        numeric_activation(get_activation(c.activation))
    except ActivationError as err:
        return f"activation: {err}"
    return None


def _field(default: Any, *, help: str, range: Range, metavar: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "range": range,
                                            "metavar": metavar})


@dataclass(frozen=True)
class LinearConfig:
    """Every parameter of ``meanfield linear`` (see the module docstring for conventions)."""

    activation: str = _field(
        "relu", help="activation phi, e.g. relu, erf, tanh, abs, leaky_relu:0.1 or an "
        "expression in x", range=Rule("a named activation or an expression in x",
                                      _activation_problem, late=True))
    d: int = _field(50, help="input dimension", range=Interval(1, cap=MAX_SIZE))
    n: int = _field(0, help="number of training examples",
                    range=Interval(0, cap=MAX_SIZE, note="0 = round(d^1.25)"))
    n_test: int = _field(256, help="number of held-out test examples",
                         range=Interval(1, cap=MAX_SIZE))
    data: str = _field("gaussian", help="input law: gaussian x ~ N(0, I_d), or sphere "
                       "(uniform on the sphere of radius sqrt(d))", range=OneOf(DATA_LAWS))
    target: str = _field(
        "teacher", help="targets: teacher y = tanh(b.x/sqrt d) + 0.3 (x_1^2 - 1) with b ~ "
        "N(0, I_d) drawn once; sign y = sign(x_1); linear y = x_1", range=OneOf(TARGETS))
    widths: tuple[int, ...] = _field(
        (), help="network widths m, nested (width m uses the first m nodes of the widest)",
        range=Rule("positive integers, strictly increasing (empty = 4n)", _widths_problem),
        metavar="M1,M2,...")
    train: str = _field("both", help="trained layers: both (lr1 = 1, lr2 = lr_ratio), first "
                        "(lr1 = 1, lr2 = 0), second (lr1 = 0, lr2 = 1)", range=OneOf(TRAIN))
    lr_ratio: float = _field(
        1.0, help="learning-rate ratio R = lr2/lr1 of the second layer (with --train both)",
        range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE))
    lr: float = _field(
        1.0, help="learning rate of gradient descent on L = (1/2n) sum (f - y)^2; must be "
        "below lr_max = 2n / lambda_max(Theta_0)",
        range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE))
    steps: int = _field(1000, help="number of gradient-descent steps",
                        range=Interval(1, cap=MAX_STEPS))
    n_times: int = _field(30, help="number of log-spaced record steps in [1, steps], plus 0 "
                          "and steps", range=Interval(1, cap=MAX_RECORDS))
    times: tuple[int, ...] = _field(
        (), help="explicit record steps (replacing the log-spaced ones; 0 and steps are "
        "always recorded)", range=Rule("integers in [0, steps], strictly increasing",
                                       _times_problem), metavar="T1,T2,...")
    seeds: int = _field(1, help="number of ensemble members (independent initialisations "
                        "on the same data)", range=Interval(1, cap=MAX_SEEDS))
    seed: int = _field(0, help="random seed (data, teacher and every member's weights)",
                       range=Interval(0, cap=MAX_SEED))
    tol: float = _field(
        0.25, help="escape tolerance: a model is left when disc_test > tol * change_test",
        range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE))
    dtype: str = _field("float64", help="precision of the network's forward and backward "
                        "passes (every stored number is float64)", range=OneOf(DTYPES))

    @property
    def lr1(self) -> float:
        """Relative learning rate of the first layer."""
        return 0.0 if self.train == "second" else 1.0

    @property
    def lr2(self) -> float:
        """Relative learning rate of the second layer."""
        return {"both": self.lr_ratio, "first": 0.0, "second": 1.0}[self.train]

    @property
    def layer(self) -> str:
        """The affine-coefficient layer of :func:`analytic.kernels.affine_coefficients`."""
        return self.train

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in _TUPLE_FIELDS:
            out[key] = list(out[key])
        return out

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """12 hex digits of SHA-256 of :meth:`to_json` (the run's identity)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


LINEAR_FIELDS = tuple(f.name for f in fields(LinearConfig))
_TYPES = {f.name: f.type for f in fields(LinearConfig)}
_TUPLE_FIELDS = {name for name, t in _TYPES.items() if t.startswith("tuple")}
_META = {f.name: f.metadata for f in fields(LinearConfig)}


def field_meta(name: str) -> Mapping[str, Any]:
    """``help``, ``range`` and ``metavar`` of field ``name``."""
    return _META[name]


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _coerce(name: str, value: Any) -> Any:
    """A TOML / command-line value as the field's type, or :class:`ConfigError`."""
    kind = _TYPES[name]
    if kind == "int":
        return _as_int(name, value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name} must be finite, got {value!r}")
        return float(value)
    if kind.startswith("tuple"):
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                value = [float(p) if any(ch in p for ch in ".eE") else int(p) for p in parts]
            except ValueError:
                raise ConfigError(f"{name} must be comma-separated integers, got "
                                  f"{value[:80]!r}") from None
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list of integers, got {value!r}")
        return tuple(_as_int(name, v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value.strip()


def make_linear_config(**overrides: Any) -> LinearConfig:
    """A validated, resolved :class:`LinearConfig`: the defaults with ``overrides`` (``None``
    values ignored); ``n = 0`` becomes ``round(d^1.25)`` and empty ``widths`` become
    ``(4n,)``. Raises :class:`ConfigError` naming the field and its range."""
    unknown = sorted(set(overrides) - set(LINEAR_FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}; allowed fields: "
                          f"{', '.join(LINEAR_FIELDS)}")
    values = dataclasses.asdict(LinearConfig())
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    for name in ("d", "n"):  # the bounds the defaults below need, before they are used
        msg = _META[name]["range"].problem(name, values[name], None)
        if msg is not None:
            raise ConfigError(msg)
    if values["n"] == 0:
        values["n"] = max(1, round(values["d"] ** 1.25))
    if not values["widths"]:
        values["widths"] = (4 * values["n"],)
    config = LinearConfig(**values)
    check_ranges(config, _META)
    return config


def linear_config_from_sources(path: str | Path | None = None,
                               **overrides: Any) -> LinearConfig:
    """Defaults, then the TOML file (flat, or in sections), then command-line options."""
    from_file = load_toml(path) if path is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    return make_linear_config(**{**from_file, **given})


def linear_config_from_json(text: str) -> LinearConfig:
    """Inverse of :meth:`LinearConfig.to_json`."""
    return make_linear_config(**json.loads(text))

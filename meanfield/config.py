"""Validated, frozen run configurations.

One flat set of names is shared by ``meanfield theory``, ``meanfield simulate``, the TOML files
and the HDF5 attributes; the conventions of the whole project:

    f(x) = (alpha / M) sum_i a_i sigma(w_i . x / sqrt(d)),
    a_i(0) ~ N(0, sa^2),  w_i(0) ~ N(0, sw^2 I_d)   (init = "iid"; init = "symmetric": M/2
        nodes drawn so and mirrored, a_{i+M/2} = -a_i, w_{i+M/2} = w_i, so f = 0 at t = 0),
    L = (1/N) sum_mu l(y_mu f(x_mu)),  l(z) = (h - z)_+  (linear hinge, threshold h),
    d theta_i / dt = -beta M dL / d theta_i   (mean-field time t).

Every fact about a field lives once, in its declaration (:func:`_field`): its meaning and unit
(``help``), its ``role`` (``physics``, ``numerics`` or ``recording``), its allowed ``range``
(a structured :class:`Interval`, :class:`OneOf`, :class:`Each`, :class:`Rule` or
:class:`AllOf`, which generates both the check and its text), the commands that take it as an
option, whether the mean-field theory depends on it and whether it enters the run hash. The
groups the rest of the package needs are derived from that: :func:`options_for`,
:data:`THEORY_FIELDS`, :data:`RUN_HASH_EXCLUDED` / :func:`run_hash`, :data:`LATER_FIELDS`,
:func:`help_text`.

Identity: :meth:`Config.to_json` is the canonical JSON of the config and names its results
(:meth:`Config.hash`, :func:`run_hash`; the files of a run, a checkpoint's owner, a comparison's
``inputs_hash``). A field added after the first release (``later=True``, listed in
:data:`LATER_FIELDS`) enters the canonical JSON (and the TOML) only when it differs from its
default: every configuration that could be written before the field existed keeps its JSON and
its hash, so earlier result files keep their identity (a rerun into them is recognised, not
refused), and :func:`from_json` reads a JSON without the field as its default.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

DATA_LAWS = ("gaussian", "sphere")
LOSSES = ("hinge", "squared", "logistic")
INTEGRATORS = ("euler", "heun")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
INITS = ("iid", "symmetric")

ROLES = ("physics", "numerics", "recording")

# The ranges the numerics support. Sizes: counts of nodes, examples, dimensions stay exact in
# float64 and far beyond any memory (the memory check refuses what does not fit). Scales: alpha,
# beta, h, sa, sw within 1e6 keep alpha * beta * t and every output below 1e40 for t <= MAX_TIME,
# far from float32 and float64 overflow. Times: from 1e-9 to 1e15 (the closed-form theory is
# accurate there; gamma ~ log(t)/4 stays below 10). Scales below 1e-9 (other than an exact 0
# where allowed) reach subnormal numbers in the theory's interpolations. x_par: beyond 1e6 an
# example is satisfied at t ~ 0 and its t_sat carries no information.
MAX_COUNT = 10**12
MAX_SCALE = 1e6
MIN_SCALE = 1e-9
MIN_TIME = 1e-9
MAX_TIME = 1e15
MAX_GROWTH = 10.0
MAX_MARGIN = 10.0
MAX_RECORDS = 10**6
MAX_SEED = 2**63 - 1
MAX_THREADS = 4096
MAX_X_PAR = 1e6
MAX_X_PAR_VALUES = 10_000
COMMANDS = ("simulate", "theory")


class ConfigError(ValueError):
    """A configuration field is unknown or outside its allowed range."""


# --- allowed ranges: each gives the text of the range and the message of a violation --------


def _show(value: Any, short: bool = False) -> str:
    """A number for a message: as given (``short``: ``%g``), and an integer too large for a
    float by its leading digits and length (never an ``OverflowError``)."""
    if isinstance(value, int) and abs(value) >= 10**16:
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
    return f"{value:g}" if short else f"{value}"


@dataclass(frozen=True)
class Interval:
    """``lo <= value <= hi`` (``<`` where ``lo_open`` / ``hi_open``); a missing bound is
    unbounded; a bound given as a string names another field (``batch`` in ``[0, N]``).
    ``note`` explains a special value and is shown in parentheses after the range. ``cap`` and
    ``floor`` are the largest and smallest magnitudes the numerics support (beyond them a value
    is refused as unsupported, not as meaningless)."""

    lo: float | str | None = None
    hi: float | str | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""
    cap: float | None = None
    floor: float | None = None

    def _bound(self, bound: float | str, config: Config | None) -> str:
        if isinstance(bound, str) and config is not None:
            return f"{bound}={getattr(config, bound)}"
        return f"{bound}"

    def _range(self, config: Config | None) -> str:
        if self.lo is not None and self.hi is not None:
            return (f"in {'(' if self.lo_open else '['}{self._bound(self.lo, config)}, "
                    f"{self._bound(self.hi, config)}{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self._bound(self.lo, config)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self._bound(self.hi, config)}"
        return "any number"

    def _support(self) -> str:
        parts = ([f"at least {self.floor:g}"] if self.floor is not None else []) + (
            [f"at most {self.cap:g}"] if self.cap is not None else [])
        return ", ".join(parts)

    def text(self, config: Config | None = None) -> str:
        """``>= 1``, ``> 0``, ``in [0, 0.5)``, ``in [0, N] (0 = full batch)`` (with a config:
        ``in [0, N=300] (0 = full batch)``), then the supported magnitudes, e.g. ``>= 1
        (at most 1e+12)``."""
        notes = [n for n in (self.note, self._support()) if n]
        return f"{self._range(config)} ({'; '.join(notes)})" if notes else self._range(config)

    def holds(self, value: float, config: Config) -> bool:
        lo = getattr(config, self.lo) if isinstance(self.lo, str) else self.lo
        hi = getattr(config, self.hi) if isinstance(self.hi, str) else self.hi
        if lo is not None and (value <= lo if self.lo_open else value < lo):
            return False
        return hi is None or (value < hi if self.hi_open else value <= hi)

    def supported(self, value: float) -> bool:
        """Within ``cap``, and (0 aside, where the range allows it) not below ``floor``."""
        return ((self.cap is None or value <= self.cap)
                and (self.floor is None or value == 0 or abs(value) >= self.floor))

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        if not self.holds(value, config):
            notes = f" ({self.note})" if self.note else ""
            return f"{name} must be {self._range(config)}{notes}, got {_show(value)}"
        if not self.supported(value):
            return (f"{name} must be {self._support()} (the supported range), "
                    f"got {_show(value, short=True)}")
        return None


@dataclass(frozen=True)
class OneOf:
    """``value`` is one of ``choices``."""

    choices: tuple[str, ...]

    def text(self, config: Config | None = None) -> str:
        return f"one of {', '.join(self.choices)}"

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        if value in self.choices:
            return None
        return f"{name} must be {self.text(config)}; got {value!r}"


@dataclass(frozen=True)
class Each:
    """Every element of a tuple field lies in ``inner``."""

    inner: Interval

    def text(self, config: Config | None = None) -> str:
        return f"each {self.inner.text(config)}"

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        for v in value:
            if not self.inner.holds(v, config):
                return f"{name} values must be {self.inner._range(config)}, got {list(value)[:8]}"
            if not self.inner.supported(v):
                return (f"{name} values must be {self.inner._support()} (the supported range), "
                        f"got {_show(v, short=True)}")
        return None


@dataclass(frozen=True)
class Rule:
    """A rule that is not a plain bound (cross-field, order, parser): ``check(config)`` returns
    the message of a violation or ``None``; ``text`` describes it for the help. ``late`` rules
    run after all the others (the activation parser imports sympy)."""

    description: str
    check: Callable[[Config], str | None]
    late: bool = False

    def text(self, config: Config | None = None) -> str:
        return self.description

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        return self.check(config)


@dataclass(frozen=True)
class AllOf:
    """Several constraints, checked in order (the first violation is reported)."""

    parts: tuple[Interval | OneOf | Each | Rule, ...]

    def text(self, config: Config | None = None) -> str:
        return "; ".join(p.text(config) for p in self.parts if p.text(config))

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        for part in self.parts:
            msg = part.problem(name, value, config)
            if msg is not None:
                return msg
        return None


@dataclass(frozen=True)
class Free:
    """No constraint beyond the field's type (``online``)."""

    def text(self, config: Config | None = None) -> str:
        return ""

    def problem(self, name: str, value: Any, config: Config) -> str | None:
        return None


Range = Interval | OneOf | Each | Rule | AllOf | Free


def _sa_sw_problem(c: Config) -> str | None:
    if c.sa + c.sw > 0:
        return None
    return "sa and sw cannot both be 0 (the network would never move)"


def _times_problem(c: Config) -> str | None:
    if len(c.times) > MAX_RECORDS:
        return f"times must hold at most {MAX_RECORDS} values, got {len(c.times)}"
    if c.times and max(c.times) > MAX_TIME:
        return f"times must be <= {MAX_TIME:g}, got {max(c.times):g}"
    if all(t >= 0 for t in c.times) and all(b > a for a, b in itertools.pairwise(c.times)):
        return None
    return f"times must be non-negative and strictly increasing, got {list(c.times)[:8]}"


def _x_par_count_problem(c: Config) -> str | None:
    if len(c.x_par) <= MAX_X_PAR_VALUES:
        return None
    return f"x_par must hold at most {MAX_X_PAR_VALUES} values, got {len(c.x_par)}"


def _record_nodes_problem(c: Config) -> str | None:
    if 0 <= c.record_nodes <= c.M:
        return None
    return f"record_nodes must be in [0, M={c.M}] (0 = all)"


def _init_problem(c: Config) -> str | None:
    if c.init != "symmetric" or c.M % 2 == 0:
        return None
    return f"init = symmetric needs an even M (node i + M/2 mirrors node i), got M={c.M}"


def _activation_problem(c: Config) -> str | None:
    from analytic.activations import ActivationError, get_activation

    try:
        get_activation(c.activation)
    except ActivationError as err:
        return f"activation: {err}"
    return None


def _field(default: Any, *, help: str, role: str, range: Range, commands: tuple[str, ...] = (),
           theory: bool = False, hashed: bool = True, later: bool = False) -> Any:
    """A Config field with its metadata:

    - ``help``: meaning and unit (times in mean-field time units of ``1/beta``);
    - ``role``: one of :data:`ROLES`;
    - ``range``: the allowed values (generates the check and its text);
    - ``commands``: the commands of :data:`COMMANDS` that take it as an option;
    - ``theory``: the mean-field theory depends on it (:data:`THEORY_FIELDS`);
    - ``hashed``: it enters :func:`run_hash` (a field that does not is reset to its default);
    - ``later``: added after the first release; it enters the canonical JSON only when it
      differs from its default (:data:`LATER_FIELDS`), so existing hashes stay valid.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not set(commands) <= set(COMMANDS):
        raise ValueError(f"commands must be among {COMMANDS}, got {commands!r}")
    return field(default=default, metadata={
        "help": help, "role": role, "range": range, "commands": tuple(commands),
        "theory": theory, "hashed": hashed, "later": later,
    })


_BOTH = ("simulate", "theory")
_SIM = ("simulate",)
_TH = ("theory",)
_T = "in mean-field time units of 1/beta"


@dataclass(frozen=True)
class Config:
    """Every parameter of a run, with its default.

    Each field's meaning, unit, role and allowed range are declared with it (see
    :func:`_field`, :func:`help_text`, ``meanfield simulate --help``).
    """

    M: int = _field(
        400, help="number of hidden nodes (network width)",
        role="physics", range=Interval(1, cap=MAX_COUNT), commands=_BOTH)
    N: int = _field(
        100_000, help="number of training examples",
        role="physics", range=Interval(1, cap=MAX_COUNT), commands=_BOTH)
    d: int = _field(
        100, help="input dimension",
        role="physics",
        range=Interval(2, cap=MAX_COUNT, note="x_par plus at least one other direction"),
        commands=_BOTH, theory=True)
    h: float = _field(
        1.0, help="hinge threshold: l(z) = (h - z)_+",
        role="physics", range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE),
        commands=_BOTH,
        theory=True)
    alpha: float = _field(
        1.0, help="output scale: f(x) = (alpha/M) sum_i a_i sigma(w_i . x / sqrt(d))",
        role="physics", range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE),
        commands=_BOTH,
        theory=True)
    beta: float = _field(
        1.0, help="learning rate: d theta_i/dt = -beta M dL/d theta_i (sets the time unit 1/beta)",
        role="physics", range=Interval(0, lo_open=True, cap=MAX_SCALE, floor=MIN_SCALE),
        commands=_BOTH,
        theory=True)
    sa: float = _field(
        1.0, help="initial standard deviation of the second-layer weights a_i",
        role="physics", range=Interval(0, cap=MAX_SCALE, floor=MIN_SCALE), commands=_BOTH,
        theory=True)
    sw: float = _field(
        1.0, help="initial standard deviation of each component of the first-layer weights w_i",
        role="physics",
        range=AllOf((Interval(0, cap=MAX_SCALE, floor=MIN_SCALE),
                     Rule("sa and sw not both 0", _sa_sw_problem))),
        commands=_BOTH, theory=True)
    init: str = _field(
        "iid", help="initial weights: iid (every node drawn independently) or symmetric "
        "(antisymmetric pairs: M/2 nodes drawn alike, node i + M/2 has a = -a_i and w = w_i, so "
        "f = 0 at t = 0 for every alpha)",
        role="physics",
        range=AllOf((OneOf(INITS), Rule("M even for symmetric", _init_problem))),
        commands=_SIM, later=True)
    activation: str = _field(
        "relu", help="activation function sigma, e.g. relu, tanh, erf, leaky_relu:0.1 or "
        "'max(x, 0)**2'",
        role="physics",
        range=Rule("a named activation or an expression in x", _activation_problem, late=True),
        commands=_BOTH, theory=True)
    loss: str = _field(
        "hinge", help="training loss l(y f(x)) (hinge uses the threshold h)",
        role="physics", range=OneOf(LOSSES), commands=_SIM, theory=True)
    data: str = _field(
        "gaussian", help="input law (gaussian: x ~ N(0, I_d); sphere: uniform on the sphere of "
        "radius sqrt(d)); labels y = sign(x_par)",
        role="physics", range=OneOf(DATA_LAWS), commands=_BOTH, theory=True)
    label_noise: float = _field(
        0.0, help="probability that a training label is flipped",
        role="physics", range=Interval(0, 0.5, hi_open=True), commands=_SIM, theory=True)
    margin: float = _field(
        0.0, help="examples with |x_par| < margin (kappa) are dropped and redrawn",
        role="physics", range=Interval(0, cap=MAX_MARGIN), commands=_SIM, theory=True)
    n_test: int = _field(
        10_000, help="number of held-out test examples",
        role="recording", range=Interval(0, cap=MAX_COUNT), commands=_SIM)
    online: bool = _field(
        False, help="draw fresh examples at every step instead of a fixed training set",
        role="physics", range=Free(), commands=_SIM)
    batch: int = _field(
        0, help="mini-batch size (examples per step)",
        role="physics", range=Interval(0, "N", note="0 = full batch"), commands=_SIM)
    dt: float = _field(
        1.0, help=f"time step, {_T}",
        role="numerics", range=Interval(0, lo_open=True, cap=MAX_TIME, floor=MIN_TIME),
        commands=_BOTH)
    growth: float = _field(
        0.0, help="geometric step schedule dt_n = max(dt, growth * t_n) (0 = fixed dt)",
        role="numerics", range=Interval(0, cap=MAX_GROWTH), commands=_BOTH)
    t_max: float = _field(
        2000.0, help=f"final time, {_T}",
        role="numerics", range=Interval(0, lo_open=True, cap=MAX_TIME, floor=MIN_TIME),
        commands=_BOTH)
    integrator: str = _field(
        "euler", help="time integrator",
        role="numerics", range=OneOf(INTEGRATORS), commands=_SIM)
    dtype: str = _field(
        "float64", help="floating-point precision of the simulation",
        role="numerics", range=OneOf(DTYPES), commands=_SIM)
    seed: int = _field(
        0, help="random seed (initial weights, data, mini-batches)",
        role="numerics", range=Interval(0, cap=MAX_SEED), commands=_SIM)
    threads: int = _field(
        0, help="number of worker threads",
        role="numerics", range=Interval(0, note="0 = all cores", cap=MAX_THREADS), commands=_SIM)
    device: str = _field(
        "cpu", help="where the step runs: cpu (Numba and BLAS) or cuda (one GPU through CuPy, "
        "pip install 'meanfield[gpu]'; dense step, same seeds and data); part of the run hash, "
        "since the rounding differs",
        role="numerics", range=OneOf(DEVICES), commands=_SIM, later=True)
    n_times: int = _field(
        100, help="number of log-spaced record times in [t_first, t_max], plus t = 0",
        role="recording", range=Interval(2, cap=MAX_RECORDS), commands=_BOTH)
    times: tuple[float, ...] = _field(
        (), help=f"explicit record times, {_T}, replacing the log-spaced grid",
        role="recording", range=Rule("non-negative and strictly increasing", _times_problem),
        commands=_BOTH)
    record_nodes: int = _field(
        0, help="number of nodes whose trajectories are stored",
        role="recording", range=Rule("in [0, M] (0 = all)", _record_nodes_problem),
        commands=_SIM)
    checkpoint_every: int = _field(
        0, help="steps between checkpoints (0 = none); not part of the run hash",
        role="recording", range=Interval(0, cap=MAX_SEED), commands=_SIM, hashed=False)
    x_par: tuple[float, ...] = _field(
        (), help="values of x_par (input component along the teacher w* = e_1) at which the "
        "theory reports t_sat",
        role="recording",
        range=AllOf((Each(Interval(0, cap=MAX_X_PAR)),
                     Rule(f"at most {MAX_X_PAR_VALUES} values", _x_par_count_problem))),
        commands=_TH)

    def replace(self, **changes: Any) -> Config:
        """A validated copy with some fields changed."""
        return make_config(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dictionary (tuples become lists) of every field, less the
        :data:`LATER_FIELDS` that hold their default (so that a configuration that existed
        before such a field keeps its JSON, TOML and hash)."""
        out = dataclasses.asdict(self)
        for key in _TUPLE_FIELDS:
            out[key] = list(out[key])
        for key in LATER_FIELDS:
            if out[key] == _DEFAULTS[key]:
                del out[key]
        return out

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, the :data:`LATER_FIELDS` only where not
        at their default; stable across runs and across releases."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """12 hex digits of SHA-256 of :meth:`to_json`, for run names."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())




FIELD_NAMES = tuple(f.name for f in fields(Config))
_INT_FIELDS = {f.name for f in fields(Config) if f.type == "int"}
_FLOAT_FIELDS = {f.name for f in fields(Config) if f.type == "float"}
_TUPLE_FIELDS = {f.name for f in fields(Config) if f.type.startswith("tuple")}
_META = {f.name: f.metadata for f in fields(Config)}
_DEFAULTS = {f.name: f.default for f in fields(Config)}


def options_for(command: str) -> tuple[str, ...]:
    """The Config fields that ``meanfield COMMAND`` takes as options, in field order."""
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}; got {command!r}")
    return tuple(name for name, meta in _META.items() if command in meta["commands"])


def fields_with_role(role: str) -> tuple[str, ...]:
    """The Config fields of one role (``physics``, ``numerics``, ``recording``)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    return tuple(name for name, meta in _META.items() if meta["role"] == role)


THEORY_FIELDS = tuple(name for name, meta in _META.items() if meta["theory"])
"""Fields the mean-field theory depends on (a simulation and a theory can be compared only if
these agree)."""
RUN_HASH_EXCLUDED = tuple(name for name, meta in _META.items() if not meta["hashed"])
"""Fields that do not change a run's numbers; :func:`run_hash` resets them to their defaults."""
LATER_FIELDS = tuple(name for name, meta in _META.items() if meta["later"])
"""Fields added after the first release (``init``, ``device``). Each enters the canonical JSON,
the TOML and hence every hash only when it differs from its default, so the results of every
configuration that existed before it keep their names and identities (a field's default must
therefore be the behaviour from before it existed); JSON and TOML without it read back as the
default."""


def run_hash(config: Config) -> str:
    """Hash of everything that determines a run's numbers: :meth:`Config.hash` of the config
    with the :data:`RUN_HASH_EXCLUDED` fields (``checkpoint_every``: a resumed run may
    checkpoint at another period) reset to their defaults."""
    defaults = Config()
    return config.replace(**{name: getattr(defaults, name) for name in RUN_HASH_EXCLUDED}).hash()


def field_help(name: str) -> str:
    """What field ``name`` means, with its unit."""
    return _META[name]["help"]


def range_text(name: str) -> str:
    """The allowed values of field ``name`` (``>= 0``, ``in [0, 0.5)``, ``one of ...``); empty
    where only the type is checked."""
    return _META[name]["range"].text()


def help_text(name: str) -> str:
    """``meaning; range`` of field ``name`` (the default is left to the caller)."""
    rng = range_text(name)
    return f"{field_help(name)}; {rng}" if rng else field_help(name)


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


def check_ranges(obj: Any, meta: Mapping[str, Mapping[str, Any]]) -> None:
    """Range checks generated from each field's ``range`` (``meta``: field name -> its
    metadata), in field order with ``late`` rules last; raises :class:`ConfigError` whose
    message names the field and the allowed range."""
    late = []
    for name, m in meta.items():
        rng = m["range"]
        if isinstance(rng, Rule) and rng.late:
            late.append((name, rng))
            continue
        msg = rng.problem(name, getattr(obj, name), obj)
        if msg is not None:
            raise ConfigError(msg)
    for name, rng in late:
        msg = rng.problem(name, getattr(obj, name), obj)
        if msg is not None:
            raise ConfigError(msg)


def _check(c: Config) -> None:
    """The range checks of every :class:`Config` field (:func:`check_ranges`)."""
    check_ranges(c, _META)


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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror}") from None
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

"""Theory files (kind ``theory``): what :func:`meanfield.theory.compute` returns, written and
read back.

Layout (netCDF4-valid, :mod:`meanfield.io`): dimension ``t`` with the curves of :data:`SERIES`
(those the solver computed); with ``x_par`` values also a dimension ``x_par`` with ``t_sat``
and ``f_spread_x(t, x_par)``. Global attributes: provenance, the asymptote constants
``asymptote_C``, ``asymptote_c``, the solver ``method`` and the derived equations (``latex``,
one ``latex_<name>`` each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meanfield.config import Config, from_json
from meanfield.io import (
    DIMENSIONLESS,
    TIME_UNITS,
    atomic_h5,
    provenance,
    read_array,
    read_config_json,
    reading,
    set_attrs,
    text_attr,
    write_coordinate,
    write_variable,
)

KIND = "theory"

# name -> (units, long_name) of the curves on dimension t
SERIES: dict[str, tuple[str, str]] = {
    "gamma": (DIMENSIONLESS, "gamma(t): a = a0 cosh gamma + w0 sinh gamma, w_par = w0 cosh "
                             "gamma + a0 sinh gamma"),
    "S": (DIMENSIONLESS, "slope of the mean-field output f(x) = S x_par"),
    "X": (DIMENSIONLESS, "edge of the unsatisfied set |x_par| < X (inf at t = 0, where "
                         "f = 0)"),
    "train_error": (DIMENSIONLESS, "fraction of training examples with y f < h (unsatisfied)"),
    "loss": (DIMENSIONLESS, "mean linear hinge loss <(h - y f)_+>"),
    "slope": (DIMENSIONLESS, "d gamma / d log t"),
    "validity": (DIMENSIONLESS, "finite-N indicator: |drive orthogonal to w*| / parallel "
                                "drive = sqrt(E[|x_perp|^2 1_U]/(2N)) / V"),
    "f_spread": (DIMENSIONLESS, "sqrt(E_x Var f(x)) over draws of M initial nodes (finite-M "
                                "spread)"),
    "gamma_minus": (DIMENSIONLESS, "gamma_- = -sum log|1 - eps_n| of the Euler push"),
}
#: the curves every theory file has (the others are written when the solver computed them)
REQUIRED = ("gamma", "S", "X", "train_error", "loss")
_LATEX = "latex_"  # prefix of the one-equation attributes


@dataclass(frozen=True)
class TheoryResult:
    """The theory on a time grid ``t`` (every array is indexed by ``t`` first).

    ``gamma``: the scalar of the ReLU hyperbolae (for the schedule push: ``gamma_+ =
    sum log(1 + eps_n)``, which the simulator's estimator measures; for the population solver:
    the same estimator on the population). ``S``: slope of ``f = S x_par``. ``X``: edge of the
    unsatisfied set ``|x_par| < X`` (``inf`` at ``t = 0``, where ``f = 0``). ``train_error``:
    fraction of unsatisfied examples. ``loss``: mean hinge loss. ``slope``:
    ``d gamma / d log t``. ``validity``, ``f_spread``, ``f_spread_x``: the finite-``N`` and
    finite-``M`` indicators of :mod:`meanfield.theory`. ``asymptote_C``, ``asymptote_c``:
    ``gamma -> log(t)/4 + c``, ``c = log(4 C)/4`` (NaN where not derived).
    ``t_sat``: first satisfaction time of ``|x_par|`` for each value of ``x_par``.
    ``gamma_minus``: ``gamma_-`` of the Euler push (else None). ``extra``: the population
    solver's node arrays ``a``, ``w_par``, ``rho`` ``[t, node]`` and ``node_weight`` ``[node]``
    (in memory only). ``source``: the file it was read from (empty when computed).
    """

    t: np.ndarray
    gamma: np.ndarray
    S: np.ndarray
    X: np.ndarray
    train_error: np.ndarray
    loss: np.ndarray
    config: Config
    slope: np.ndarray | None = None
    validity: np.ndarray | None = None
    f_spread: np.ndarray | None = None
    asymptote_C: float = math.nan
    asymptote_c: float = math.nan
    latex: dict[str, str] = field(default_factory=dict)
    method: str = ""
    x_par: np.ndarray | None = None
    t_sat: np.ndarray | None = None
    f_spread_x: np.ndarray | None = None
    gamma_minus: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""


def write_theory(result: TheoryResult, path: str | Path) -> None:
    """Write ``result`` as a netCDF4-valid HDF5 file (atomically).

    Example:
        >>> from meanfield.config import make_config
        >>> from meanfield.theory import compute
        >>> write_theory(compute(make_config(d=50, t_max=100.0)), "theory.h5")  # doctest: +SKIP
    """
    c = result.config
    with atomic_h5(path) as f:
        set_attrs(f, provenance(KIND, c.to_json()))
        set_attrs(f, {
            "asymptote_C": float(result.asymptote_C),
            "asymptote_c": float(result.asymptote_c),
            "asymptote": "gamma -> log(t)/4 + c, c = log(4 C)/4; d gamma/dt ~ C exp(-4 gamma)",
            "method": result.method,
            "latex": "\n".join(f"{k}: {v}" for k, v in result.latex.items()),
        })
        for key, value in result.latex.items():
            f.attrs[_LATEX + key] = value
        write_coordinate(f, "t", result.t, {"units": TIME_UNITS, "long_name": "mean-field time"})
        for name, (units, long_name) in SERIES.items():
            value = getattr(result, name)
            if value is None:
                continue
            attrs = {"units": units, "long_name": long_name}
            if not np.all(np.isfinite(value)):
                attrs["non_finite"] = "inf/nan are exact values (e.g. X = inf at t = 0) or " \
                                      "not computed for this solver"
            write_variable(f, name, value, ("t",), attrs)
        if result.x_par is not None:
            write_coordinate(f, "x_par", result.x_par, {
                "units": DIMENSIONLESS, "long_name": "|x_par| = |w*.x| of an example"})
            if result.t_sat is not None:
                write_variable(f, "t_sat", result.t_sat, ("x_par",), {
                    "units": TIME_UNITS, "long_name": "first time with S(t)|x_par| >= h",
                    "non_finite": "inf: never satisfied (x_par = 0), or satisfied only after "
                                  "t = 1e15, the largest supported time"})
            if result.f_spread_x is not None:
                write_variable(f, "f_spread_x", result.f_spread_x, ("t", "x_par"), {
                    "units": DIMENSIONLESS, "long_name": "std of f(x) at fixed x_par over "
                                                         "draws of M nodes and of x_perp"})


def read_theory(path: str | Path) -> TheoryResult:
    """The :class:`TheoryResult` stored in ``path`` (without the in-memory ``extra``).

    Raises :class:`meanfield.io.NotMeanfieldFile` for anything but a meanfield theory file,
    and for one that is damaged or lacks a curve of :data:`REQUIRED`.

    Example:
        >>> th = read_theory("theory.h5")         # doctest: +SKIP
        >>> th.asymptote_c, th.gamma[-1]          # doctest: +SKIP
    """
    with reading(path, KIND) as f:
        latex = {k[len(_LATEX):]: text_attr(f, k) for k in f.attrs if k.startswith(_LATEX)}
        return TheoryResult(
            config=from_json(read_config_json(f)),
            t=f["t"][()],
            **{name: f[name][()] if name in REQUIRED else read_array(f, name)
               for name in SERIES},
            asymptote_C=float(f.attrs["asymptote_C"]),
            asymptote_c=float(f.attrs["asymptote_c"]),
            latex=latex,
            method=str(text_attr(f, "method", "")),
            x_par=read_array(f, "x_par"),
            t_sat=read_array(f, "t_sat"),
            f_spread_x=read_array(f, "f_spread_x"),
            source=str(path),
        )

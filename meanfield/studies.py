r"""The built-in studies of ``meanfield sweep --study NAME``: their sweeps and their analyses.

Each study is a sweep (:func:`study_mapping`, :func:`study_spec`; ``--quick`` replaces some
values to run in a few minutes on two cores) and an analysis of the sweep's point files
(:func:`analyse`, seconds once the points exist), whose numbers go to ``study.h5`` (kind
``study``, :mod:`meanfield.files.study`), ``study.json`` and the figure ``NAME.png`` drawn
from ``study.h5`` only (:func:`write_outputs`), and a table of expected and measured values
with a verdict per row (:func:`format_table`). Every study uses ReLU, the linear hinge,
Gaussian data, ``h = sa = sw = 1``, the explicit Euler integrator (the schedule theory is its
exact ``M, N -> infinity`` limit), float64 and 10 recorded nodes; threads are left to the
sweep (one per point).

Fits and verdicts. Slopes are ordinary least squares, their standard error ``SE`` from the
residuals, ``sqrt(sum r^2 / (n - 2) / sum (x - mean x)^2)`` (undefined below three values). A
slope verdict is ``agree`` when ``|b - b_expected| <= 2.5 SE`` and ``SE <= SE_max``,
``inconclusive`` when ``SE > SE_max`` (or undefined), else ``disagree``; ``SE_max = 0.1``
(full), ``0.25`` (``--quick``, whose verdicts are indicative only). A study's verdict is
``disagree`` if any row disagrees, else ``inconclusive`` if any row is inconclusive or some
points have no file, else ``agree``.

``finite-m``: finite-width scaling of the gamma error. Online (``N`` fresh examples a step),
``N = 20000``, ``d = 100``, ``dt = 0.5``, ``growth = 0.02``, ``t_max = 1000``,
``n_test = 10000``, 100 log-spaced records, ``M = 50 .. 3200`` (doubling), seeds 0..7 (56
points); quick ``M = 50 .. 400``, ``d = 50``, ``N = 5000``, ``t_max = 300``, 6 seeds (24).
Per run, for two theories on the run's own step schedule
(:func:`meanfield.theory.compute_on_schedule`), with population moments and with the run's
initial sample moments: ``delta`` = the mean over the record times where *that* theory's
training error is in ``[0.2, 0.9]`` of ``gamma_sim / gamma_th - 1``. ``E(M)`` = root mean
square of ``delta`` over the seeds; fit ``ln E = a + b ln M``. Expected ``b = -1/2`` against
the population theory (the sample fluctuation of ``<a0 w0>`` and ``<a0^2 + w0^2>/2`` entering
``S``), ``b = -1`` against the sample-moment theory (second order in the ``O(M^-1/2)`` output
noise).

``finite-n``: breakdown of the infinite-``N`` theory. Full batch, ``M = 400``, ``d = 100``,
``dt = 0.5``, ``growth = 0.02``, ``t_max = 2000``, ``n_test = 10000``, 150 log-spaced records,
``N = 2500 .. 80000`` (doubling), 4 seeds (24 points); quick ``M = 200``, ``d = 50``,
``N = 1000 .. 8000``, 2 seeds, ``t_max = 1000`` (8). At every record time ``t > 0`` where the
sample-moment schedule theory's training error is at least 0.05 and the simulation has at least
100 unsatisfied training examples (``round(N err_sim) >= 100``): ``de = err_sim / err_th - 1``
against ``R``, the theory's ``validity`` indicator. Fit ``de = -k R^2`` (least squares through
the origin, ``SE`` from the residuals with ``n - 1`` degrees of freedom) over ``R <= 1.5``.
Expected ``k = 0.07 +/- 0.03`` (``agree`` when ``0.03 <= k <= 0.12``; ``inconclusive`` with
fewer than 3 values or none at ``R >= 1``); mean ``|de| <= 0.04`` over ``R < 0.5``
(``inconclusive`` without values there); the mean of ``de`` in bins of ``R`` of width 0.1 (bins
of at least 3 values, up to ``R = 5``) first reaches ``-10%`` (linear interpolation between bin
centres: ``R_10``) at ``1.0 <= R_10 <= 1.5`` (``disagree`` when it does not reach it although
the bins reach ``R = 1.5``, ``inconclusive`` when they do not).

``alpha``: the rich <-> lazy crossover. Full batch, ``d = 20``, ``M = 3200``, ``N = 20000``,
``n_test = 10000``, ``dt = 0.01``, ``growth = 0.02``, ``t_max = 400``, 200 log-spaced records,
``alpha = 0.05 .. 100`` zipped with ``beta = 1/alpha^2`` (lazy time scaling), 4 seeds (44
points); quick ``M = 800``, ``N = 5000``, ``alpha = 0.1, 0.5, 2, 10, 50``, 2 seeds (10).
Measured at the first time the simulation's training error reaches 0.5 (linear interpolation
in ``ln t`` between the two records around it, of the time and of every quantity): ``gamma*``,
``W_distance*``, ``sign_flip_fraction*`` (reported and drawn, not judged). Theory, exact at
``M, N = infinity``:

    gamma*_th = (1/2) asinh(kappa/alpha),  kappa = 4 sqrt(d) h / ((sa^2 + sw^2) X*),
    X* = sqrt(2) erfinv(0.5) = 0.67449  (kappa = 13.261 at d = 20),
    W_distance*_th = sqrt(sa^2 sinh^2 gamma* + sw^2 (cosh gamma* - 1)^2) / (sw sqrt d),

lazy for ``alpha >> kappa`` (``gamma* -> kappa/(2 alpha)``), rich for ``alpha << kappa``
(``gamma* -> (1/2) ln(2 kappa/alpha)``). Finite ``M``: the initial output noise
``sigma_f0 = alpha sa sw sqrt((d-1)/d) / sqrt(2M)`` reaches ``h/4`` at ``alpha_M`` (20.5 at
``M = 3200``, ``d = 20``). Judged over ``alpha <= alpha_M``, one row per alpha:
``|mean gamma*_sim / gamma*_th - 1| <= 0.05`` and ``|mean W_distance*_sim / W_distance*_th -
1| <= 0.10`` (means over the seeds); the least-squares slope of ``gamma*_sim`` (every run)
against ``ln alpha`` over ``alpha <= 1`` within 0.05 of ``-1/2`` (the slope of the theory at
the same alphas is reported), with ``SE <= SE_max``. Beyond ``alpha_M`` the departure is
reported, not judged.

:func:`analyse` works on any sweep whose points have the study's swept field (``M``, ``N`` or
``alpha``): it reads ``<hash>.h5`` of every point that has one and groups by the configs'
values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from meanfield.config import ConfigError, run_hash
from meanfield.files.simulation import SimulationResult, read_simulation
from meanfield.files.study import (
    StudyArray,
    StudyCriterion,
    StudyResult,
    json_number,
    overall_verdict,
    write_study,
)
from meanfield.io import DIMENSIONLESS, TIME_UNITS, NotMeanfieldFile, write_atomic
from meanfield.sweep_spec import Point, SweepSpec, parse_spec

__all__ = [
    "STUDIES", "StudyCriterion", "StudyResult", "analyse", "format_table", "overall_verdict",
    "study_document", "study_mapping", "study_spec", "write_outputs",
]

STUDIES: tuple[str, ...] = ("finite-m", "finite-n", "alpha")

SE_FACTOR = 2.5
#: the largest standard error of a slope that can be judged, full and quick
SE_MAX = {False: 0.1, True: 0.25}
#: slack for float rounding in the inequalities of the verdicts
_SLACK = 1e-12

#: what every study shares (module docstring)
MODEL: dict[str, Any] = {
    "activation": "relu", "loss": "hinge", "data": "gaussian", "h": 1.0, "sa": 1.0,
    "sw": 1.0, "integrator": "euler", "dtype": "float64", "record_nodes": 10,
}

# finite-m
FM_BAND = (0.2, 0.9)
FM_EXPECTED = {"population": -0.5, "sample": -1.0}
# finite-n
FN_MIN_ERROR = 0.05
FN_MIN_UNSATISFIED = 100
FN_FIT_R = 1.5
FN_K_RANGE = (0.03, 0.12)
FN_LOW_R, FN_LOW_MAX = 0.5, 0.04
FN_LEVEL = -0.10
FN_R10_RANGE = (1.0, 1.5)
FN_BIN_WIDTH, FN_BIN_MAX, FN_BIN_MIN_COUNT = 0.1, 5.0, 3
FN_MIN_FIT, FN_LEVER_R = 3, 1.0
# alpha
ALPHA_LEVEL = 0.5
ALPHA_GAMMA_TOL, ALPHA_W_TOL = 0.05, 0.10
ALPHA_SLOPE, ALPHA_SLOPE_TOL, ALPHA_SLOPE_MAX_ALPHA = -0.5, 0.05, 1.0
ALPHA_NOISE_FRACTION = 0.25  # sigma_f0 = h/4 at alpha_M
ALPHAS_FULL = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
ALPHAS_QUICK = (0.1, 0.5, 2.0, 10.0, 50.0)


def _check_name(name: str) -> None:
    if name not in STUDIES:
        raise ConfigError(f"study must be one of {', '.join(STUDIES)}; got {name!r}")


def lazy_beta(alpha: float) -> float:
    """``beta = 1/alpha^2`` rounded to 12 significant digits (``400.0``, not
    ``399.99999999999994``, at ``alpha = 0.05``)."""
    return float(f"{1.0 / (alpha * alpha):.12g}")


def study_mapping(name: str, quick: bool) -> dict[str, Any]:
    """The sweep of study ``name`` as the tables a TOML sweep file gives (``sweep``, ``base``,
    ``grid`` or ``zip``); ``quick``: the quick values replace the full ones."""
    _check_name(name)
    common = {"dt": 0.5, "growth": 0.02, "n_test": 10_000, "alpha": 1.0, "beta": 1.0}
    if name == "finite-m":
        base = {**MODEL, **common, "online": True, "N": 20_000, "d": 100, "t_max": 1000.0,
                "n_times": 100}
        Ms, seeds = [50, 100, 200, 400, 800, 1600, 3200], 8
        if quick:
            base.update(d=50, N=5000, t_max=300.0)
            Ms, seeds = [50, 100, 200, 400], 6
        table = {"grid": {"M": Ms}}
    elif name == "finite-n":
        base = {**MODEL, **common, "online": False, "M": 400, "d": 100, "t_max": 2000.0,
                "n_times": 150}
        Ns, seeds = [2500, 5000, 10_000, 20_000, 40_000, 80_000], 4
        if quick:
            base.update(M=200, d=50, t_max=1000.0)
            Ns, seeds = [1000, 2000, 4000, 8000], 2
        table = {"grid": {"N": Ns}}
    else:
        base = {**MODEL, "online": False, "d": 20, "M": 3200, "N": 20_000, "n_test": 10_000,
                "dt": 0.01, "growth": 0.02, "t_max": 400.0, "n_times": 200}
        alphas, seeds = list(ALPHAS_FULL), 4
        if quick:
            base.update(M=800, N=5000)
            alphas, seeds = list(ALPHAS_QUICK), 2
        table = {"zip": {"alpha": alphas, "beta": [lazy_beta(a) for a in alphas]}}
    label = f"{name}-quick" if quick else name
    return {"sweep": {"name": label, "seeds": seeds}, "base": base, **table}


def study_spec(name: str, quick: bool) -> SweepSpec:
    """:func:`~meanfield.sweep_spec.parse_spec` of :func:`study_mapping`."""
    return parse_spec(study_mapping(name, quick), source=f"study {name}")


# ----------------------------------------------------------------------------- fits


@dataclass(frozen=True)
class LineFit:
    """``y = intercept + slope x`` by ordinary least squares over ``n`` finite pairs; ``se``
    is the slope's standard error from the residuals (NaN below three pairs)."""

    slope: float
    intercept: float
    se: float
    n: int


def fit_line(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LineFit:
    """Ordinary least squares of ``y`` on ``x`` over the pairs where both are finite; NaN
    slope and intercept below two pairs or for a constant ``x``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    nan = float("nan")
    if n < 2:
        return LineFit(nan, nan, nan, n)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx == 0:
        return LineFit(nan, nan, nan, n)
    slope = float(xc @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    if n < 3:
        return LineFit(slope, intercept, nan, n)
    resid = y - intercept - slope * x
    se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
    return LineFit(slope, intercept, se, n)


def slope_verdict(slope: float, se: float, expected: float, se_max: float,
                  tolerance: float | None = None) -> str:
    """``inconclusive`` when ``se`` is undefined or above ``se_max``; else ``agree`` when
    ``|slope - expected| <= tolerance`` (default ``2.5 se``), else ``disagree``."""
    if not (math.isfinite(slope) and math.isfinite(se)) or se > se_max:
        return "inconclusive"
    bound = SE_FACTOR * se if tolerance is None else tolerance
    return "agree" if abs(slope - expected) <= bound + _SLACK else "disagree"


def fit_parabola(R: np.ndarray, de: np.ndarray, r_max: float = FN_FIT_R
                 ) -> tuple[float, float, int]:
    """``(k, se, n)``: the least-squares ``de = -k R^2`` (through the origin) over the finite
    pairs with ``R <= r_max``; ``se`` from the residuals with ``n - 1`` degrees of freedom
    (NaN below two pairs)."""
    R = np.asarray(R, dtype=np.float64)
    de = np.asarray(de, dtype=np.float64)
    ok = np.isfinite(R) & np.isfinite(de) & (R <= r_max)
    r2, y = R[ok] ** 2, de[ok]
    n = int(r2.size)
    s4 = float(r2 @ r2)
    if n == 0 or s4 == 0:
        return float("nan"), float("nan"), n
    k = -float(r2 @ y) / s4
    if n < 2:
        return k, float("nan"), n
    resid = y + k * r2
    return k, math.sqrt(float(resid @ resid) / (n - 1) / s4), n


def binned_mean(R: np.ndarray, de: np.ndarray, width: float = FN_BIN_WIDTH,
                r_max: float = FN_BIN_MAX, min_count: int = FN_BIN_MIN_COUNT
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, mean, count)`` of ``de`` in the bins ``[k width, (k+1) width)`` of ``R``
    that cover the data up to ``r_max``; the mean is NaN in a bin of fewer than
    ``min_count`` values."""
    R = np.asarray(R, dtype=np.float64)
    de = np.asarray(de, dtype=np.float64)
    ok = np.isfinite(R) & np.isfinite(de) & (R >= 0) & (R < r_max)
    R, de = R[ok], de[ok]
    idx = np.floor(R / width).astype(np.int64)
    n_bins = int(idx.max()) + 1 if R.size else 0
    lo = np.arange(n_bins) * width
    hi = lo + width
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    total = np.bincount(idx, weights=de, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= min_count, total / np.maximum(count, 1), np.nan)
    return lo, hi, mean, count


def level_crossing(centres: np.ndarray, means: np.ndarray, level: float = FN_LEVEL) -> float:
    """The first ``R`` (increasing) where the binned mean reaches ``level`` (from above): the
    linear interpolation between the centres of the last bin above it and the first at or
    below it (the first bin's centre when that one already is); NaN when it never does. Bins
    with a NaN mean are skipped."""
    prev = None
    for c, m in zip(centres, means, strict=True):
        if not math.isfinite(m):
            continue
        if m <= level:
            if prev is None:
                return float(c)
            pc, pm = prev
            return float(pc + (pm - level) / (pm - m) * (c - pc))
        prev = (c, m)
    return float("nan")


def at_first_crossing(t: np.ndarray, y: np.ndarray, level: float,
                      others: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """``{"t": t*, name: value at t*}``: the first time the series ``y`` reaches ``level``
    (``y <= level``), linearly interpolated in ``ln t`` between the record before it and the
    first at or below it (in ``t`` when the record before is ``t = 0``), and every series of
    ``others`` interpolated at the same fraction. Records where ``y`` is NaN are skipped; all
    NaN when ``y`` never reaches ``level``; the first record's values when it starts there."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    others = {k: np.asarray(v, dtype=np.float64) for k, v in (others or {}).items()}
    ok = np.flatnonzero(np.isfinite(y))
    below = ok[y[ok] <= level]
    out = {"t": float("nan"), **{k: float("nan") for k in others}}
    if below.size == 0:
        return out
    i = int(below[0])
    before = ok[ok < i]
    if before.size == 0:
        return {"t": float(t[i]), **{k: float(v[i]) for k, v in others.items()}}
    j = int(before[-1])
    frac = (y[j] - level) / (y[j] - y[i])
    if t[j] > 0:
        out["t"] = float(math.exp(math.log(t[j]) + frac * (math.log(t[i]) - math.log(t[j]))))
    else:
        out["t"] = float(t[j] + frac * (t[i] - t[j]))
    for k, v in others.items():
        out[k] = float(v[j] + frac * (v[i] - v[j]))
    return out


# ----------------------------------------------------------------------------- alpha theory


def x_star(level: float = ALPHA_LEVEL) -> float:
    """``X* = sqrt(2) erfinv(level)``: the edge ``X`` with ``P(|x_par| < X) = level`` for
    Gaussian data (0.67449 at 0.5)."""
    return math.sqrt(2.0) * float(special.erfinv(level))


def kappa(d: float, h: float = 1.0, sa: float = 1.0, sw: float = 1.0,
          level: float = ALPHA_LEVEL) -> float:
    """``kappa = 4 sqrt(d) h / ((sa^2 + sw^2) X*)`` (13.261 at ``d = 20``)."""
    return 4.0 * math.sqrt(d) * h / ((sa**2 + sw**2) * x_star(level))


def gamma_star_theory(alpha: Any, d: float, h: float = 1.0, sa: float = 1.0, sw: float = 1.0
                      ) -> np.ndarray:
    """``gamma*_th = (1/2) asinh(kappa / alpha)``."""
    return 0.5 * np.arcsinh(kappa(d, h, sa, sw) / np.asarray(alpha, dtype=np.float64))


def w_distance_theory(gamma: Any, d: float, sa: float = 1.0, sw: float = 1.0) -> np.ndarray:
    """``|W - W0|_F / |W0|_F = sqrt(sa^2 sinh^2 g + sw^2 (cosh g - 1)^2) / (sw sqrt d)``."""
    g = np.asarray(gamma, dtype=np.float64)
    return np.sqrt(sa**2 * np.sinh(g) ** 2 + sw**2 * (np.cosh(g) - 1.0) ** 2) / (
        sw * math.sqrt(d))


def sigma_f0(alpha: Any, M: int, d: float, sa: float = 1.0, sw: float = 1.0) -> np.ndarray:
    """The initial output noise ``alpha sa sw sqrt((d-1)/d) / sqrt(2 M)``."""
    return (np.asarray(alpha, dtype=np.float64) * sa * sw * math.sqrt((d - 1) / d)
            / math.sqrt(2.0 * M))


def alpha_M(M: int, d: float, h: float = 1.0, sa: float = 1.0, sw: float = 1.0) -> float:
    """The ``alpha`` at which :func:`sigma_f0` reaches ``h/4`` (20.5 at ``M = 3200``,
    ``d = 20``)."""
    return ALPHA_NOISE_FRACTION * h * math.sqrt(2.0 * M) / (sa * sw * math.sqrt((d - 1) / d))


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Run:
    point: Point
    sim: SimulationResult


def _load(spec: SweepSpec, points_dir: Path, notes: list[str]) -> list[_Run]:
    """The points of ``spec`` that have a readable file of their own run in ``points_dir``;
    unreadable or foreign files are skipped with a note."""
    runs = []
    for p in spec.points():
        path = Path(points_dir) / f"{p.hash}.h5"
        if not path.exists():
            continue
        try:
            sim = read_simulation(path)
        except NotMeanfieldFile as err:
            notes.append(f"run {p.run}: point file skipped: {err}")
            continue
        if run_hash(sim.config) != p.hash:
            notes.append(f"run {p.run}: point file skipped: {path.name} holds another run "
                         f"(run hash {run_hash(sim.config)})")
            continue
        runs.append(_Run(p, sim))
    return runs


def _schedule_theory(run: _Run, sample: bool, notes: list[str]):
    """The theory on the run's own step schedule (population or the run's sample moments), or
    ``None`` with a note when there is none for it."""
    from meanfield.schedule import schedule
    from meanfield.theory import compute_on_schedule

    sim = run.sim
    try:
        steps, record = schedule(sim.config)
        moments = sim.init_moments.second_moments() if sample else None
        th = compute_on_schedule(sim.config, steps, init_moments=moments, record=record)
    except ConfigError as err:
        notes.append(f"run {run.point.run}: no theory: {err}")
        return None
    if th.t.shape != sim.t.shape or not np.allclose(th.t, sim.t, rtol=1e-12, atol=0):
        notes.append(f"run {run.point.run}: skipped: its record times are not those of its "
                     f"schedule")
        return None
    return th


def _arr(dims: Sequence[str], values: Any, long_name: str, units: str = DIMENSIONLESS
         ) -> StudyArray:
    return StudyArray(tuple(dims), np.asarray(values), units, long_name)


def _values(spec: SweepSpec, field: str) -> list[Any]:
    """The distinct values of config ``field`` over the sweep's points, sorted."""
    return sorted({getattr(p.config, field) for p in spec.points()})


def _run_coords(runs: Sequence[_Run]) -> dict[str, StudyArray]:
    return {"run": _arr(["run"], np.array([r.point.run for r in runs], dtype=np.int64),
                        "run index of a point whose file was used")}


def _run_arrays(runs: Sequence[_Run], field: str, text: str) -> dict[str, StudyArray]:
    return {
        f"run_{field}": _arr(["run"], np.array([getattr(r.sim.config, field) for r in runs]),
                             f"{text} of the run"),
        "run_seed": _arr(["run"], np.array([r.sim.config.seed for r in runs], dtype=np.int64),
                         "seed of the run"),
    }


def _bound_verdict(value: float, ok: bool) -> str:
    return "inconclusive" if not math.isfinite(value) else ("agree" if ok else "disagree")


def _measured(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------------- finite-m


def _analyse_finite_m(spec: SweepSpec, runs: list[_Run], quick: bool, notes: list[str]
                      ) -> dict[str, Any]:
    se_max = SE_MAX[quick]
    deltas = {k: np.full(len(runs), np.nan) for k in FM_EXPECTED}
    counts = {k: np.zeros(len(runs), dtype=np.int64) for k in FM_EXPECTED}
    for i, r in enumerate(runs):
        g = r.sim.series["gamma"]
        for key in FM_EXPECTED:
            th = _schedule_theory(r, key == "sample", notes)
            if th is None:
                continue
            window = ((th.train_error >= FM_BAND[0]) & (th.train_error <= FM_BAND[1])
                      & np.isfinite(g) & (th.gamma > 0))
            counts[key][i] = int(window.sum())
            if window.any():
                deltas[key][i] = float(np.mean(g[window] / th.gamma[window] - 1.0))
    Ms = np.array(_values(spec, "M"), dtype=np.int64)
    run_M = np.array([r.sim.config.M for r in runs], dtype=np.int64)
    E = {k: np.full(len(Ms), np.nan) for k in FM_EXPECTED}
    n_seeds = np.zeros(len(Ms), dtype=np.int64)
    for j, M in enumerate(Ms):
        for key in FM_EXPECTED:
            d = deltas[key][(run_M == M) & np.isfinite(deltas[key])]
            if d.size:
                E[key][j] = math.sqrt(float(np.mean(d**2)))
        n_seeds[j] = int(np.sum((run_M == M) & np.isfinite(deltas["population"])))
    fits: dict[str, float] = {"se_max": se_max}
    criteria = []
    labels = {"population": "population moments", "sample": "the run's sample moments"}
    texts = {"population": "-1/2", "sample": "-1"}
    for key, expected in FM_EXPECTED.items():
        ok = np.isfinite(E[key]) & (E[key] > 0)
        fit = fit_line(np.log(Ms[ok]), np.log(E[key][ok]))
        fits.update({f"b_{key}": fit.slope, f"se_{key}": fit.se, f"a_{key}": fit.intercept,
                     f"n_fit_{key}": fit.n})
        criteria.append(StudyCriterion(
            f"slope b of ln E(M) vs ln M, theory with {labels[key]}",
            f"{texts[key]} (|b - ({texts[key]})| <= {SE_FACTOR:g} SE, SE <= {se_max:g})",
            _measured(fit.slope), slope_verdict(fit.slope, fit.se, expected, se_max)))
    if len(runs) and not np.isfinite(deltas["population"]).any():
        notes.append("no record of any run has the theory's training error in "
                     f"[{FM_BAND[0]:g}, {FM_BAND[1]:g}]")
    coords = {"M": _arr(["M"], Ms, "network width M"), **_run_coords(runs)}
    arrays = {
        **_run_arrays(runs, "M", "width M"),
        **{f"delta_{k}": _arr(["run"], deltas[k],
                              f"mean of gamma_sim / gamma_th - 1 over the records with the "
                              f"theory's training error in [0.2, 0.9] (theory with "
                              f"{labels[k]})") for k in FM_EXPECTED},
        **{f"n_window_{k}": _arr(["run"], counts[k], f"records in the window (theory with "
                                                     f"{labels[k]})") for k in FM_EXPECTED},
        **{f"E_{k}": _arr(["M"], E[k], f"E(M): root mean square of delta_{k} over the seeds")
           for k in FM_EXPECTED},
        "n_seeds": _arr(["M"], n_seeds, "runs with a measured delta"),
    }
    return {"criteria": criteria, "fits": fits, "coords": coords, "arrays": arrays}


# ----------------------------------------------------------------------------- finite-n


def _analyse_finite_n(spec: SweepSpec, runs: list[_Run], quick: bool, notes: list[str]
                      ) -> dict[str, Any]:
    n_rec = max((len(r.sim.t) for r in runs), default=0)
    curves = {k: np.full((len(runs), n_rec), np.nan)
              for k in ("t", "train_error_sim", "train_error_theory", "R")}
    samples: dict[str, list[np.ndarray]] = {"R": [], "de": [], "run": [], "N": [], "t": []}
    for i, r in enumerate(runs):
        sim, N = r.sim, r.sim.config.N
        th = _schedule_theory(r, True, notes)
        if th is None:
            continue
        err, err_th, R = sim.series["train_error"], th.train_error, th.validity
        k = len(sim.t)
        for name, v in (("t", sim.t), ("train_error_sim", err),
                        ("train_error_theory", err_th), ("R", R)):
            curves[name][i, :k] = v
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = ((sim.t > 0) & (err_th >= FN_MIN_ERROR)
                    & (np.rint(err * N) >= FN_MIN_UNSATISFIED) & np.isfinite(R)
                    & np.isfinite(err))
            de = err / err_th - 1.0
        samples["R"].append(R[keep])
        samples["de"].append(de[keep])
        samples["run"].append(np.full(int(keep.sum()), r.point.run, dtype=np.int64))
        samples["N"].append(np.full(int(keep.sum()), N, dtype=np.int64))
        samples["t"].append(sim.t[keep])
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in samples.items()}
    R, de = cat["R"].astype(np.float64), cat["de"].astype(np.float64)

    k, k_se, n_fit = fit_parabola(R, de, FN_FIT_R)
    fit_R = R[R <= FN_FIT_R]
    low = np.abs(de[R < FN_LOW_R])
    mean_low = float(np.mean(low)) if low.size else float("nan")
    lo, hi, means, count = binned_mean(R, de)
    centres = (lo + hi) / 2
    R10 = level_crossing(centres, means, FN_LEVEL)
    binned_top = float(hi[np.isfinite(means)].max()) if np.isfinite(means).any() else 0.0

    if n_fit < FN_MIN_FIT or not (fit_R >= FN_LEVER_R).any():
        k_verdict = "inconclusive"
    else:
        k_verdict = _bound_verdict(k, FN_K_RANGE[0] - _SLACK <= k <= FN_K_RANGE[1] + _SLACK)
    if math.isfinite(R10):
        r10_verdict = ("agree" if FN_R10_RANGE[0] - _SLACK <= R10 <= FN_R10_RANGE[1] + _SLACK
                       else "disagree")
    else:
        r10_verdict = "disagree" if binned_top >= FN_R10_RANGE[1] else "inconclusive"
    criteria = [
        StudyCriterion(f"k in de = -k R^2 (fit over R <= {FN_FIT_R:g})",
                       f"0.07 +/- 0.03 ({FN_K_RANGE[0]:g} <= k <= {FN_K_RANGE[1]:g})",
                       _measured(k), k_verdict),
        StudyCriterion(f"mean |de| over R < {FN_LOW_R:g}", f"<= {FN_LOW_MAX:g}",
                       _measured(mean_low),
                       _bound_verdict(mean_low, mean_low <= FN_LOW_MAX + _SLACK)),
        StudyCriterion("R_10: binned mean de first reaches -10%",
                       f"{FN_R10_RANGE[0]:.1f} <= R_10 <= {FN_R10_RANGE[1]:.1f}",
                       _measured(R10), r10_verdict),
    ]
    fits = {"k": k, "k_se": k_se, "n_fit": n_fit, "mean_abs_de_low_R": mean_low,
            "n_low_R": int(low.size), "R_10": R10, "R_binned_max": binned_top,
            "n_samples": int(R.size)}
    Ns = np.array(_values(spec, "N"), dtype=np.int64)
    coords = {
        "N": _arr(["N"], Ns, "number of training examples N"),
        **_run_coords(runs),
        "record": _arr(["record"], np.arange(n_rec, dtype=np.int64),
                       "index of a record time of a run"),
        "sample": _arr(["sample"], np.arange(R.size, dtype=np.int64),
                       "a (run, record time) pair that passed the selection"),
        "R_bin": _arr(["R_bin"], centres, "centre of a bin of R"),
    }
    arrays = {
        **_run_arrays(runs, "N", "number of training examples N"),
        "t": _arr(["run", "record"], curves["t"], "record time (NaN: the run has fewer)",
                  TIME_UNITS),
        "train_error_sim": _arr(["run", "record"], curves["train_error_sim"],
                                "training error of the simulation"),
        "train_error_theory": _arr(["run", "record"], curves["train_error_theory"],
                                   "training error of the theory on the run's schedule with "
                                   "its sample moments"),
        "R_curve": _arr(["run", "record"], curves["R"], "the theory's validity indicator R"),
        "R": _arr(["sample"], R, "the theory's validity indicator R"),
        "de": _arr(["sample"], de, "err_sim / err_th - 1"),
        "sample_run": _arr(["sample"], cat["run"].astype(np.int64), "run index of the sample"),
        "sample_N": _arr(["sample"], cat["N"].astype(np.int64), "N of the sample's run"),
        "sample_t": _arr(["sample"], cat["t"].astype(np.float64), "record time of the sample",
                         TIME_UNITS),
        "bin_lo": _arr(["R_bin"], lo, "lower edge of the bin of R"),
        "bin_hi": _arr(["R_bin"], hi, "upper edge of the bin of R"),
        "bin_mean_de": _arr(["R_bin"], means, f"mean of de in the bin (NaN below "
                                              f"{FN_BIN_MIN_COUNT} values)"),
        "bin_count": _arr(["R_bin"], count, "values of de in the bin"),
    }
    return {"criteria": criteria, "fits": fits, "coords": coords, "arrays": arrays}


# ----------------------------------------------------------------------------- alpha


def _alpha_theory(alpha: Any, c: Any) -> dict[str, np.ndarray]:
    """``gamma*_th`` and ``W_distance*_th`` at ``alpha`` for the model of config ``c``."""
    g = gamma_star_theory(alpha, c.d, c.h, c.sa, c.sw)
    return {"gamma": g, "W_distance": w_distance_theory(g, c.d, c.sa, c.sw)}


_STAR_TEXT = {"gamma": "gamma at the first crossing of training error 0.5 (gamma*)",
              "W_distance": "|W - W0|_F / |W0|_F at the crossing (W_distance*)",
              "sign_flip_fraction": "fraction of first-layer weights whose sign changed, at "
                                    "the crossing (sign_flip_fraction*)"}
_CURVE_TEXT = {"gamma_theory_curve": "theory gamma* = (1/2) asinh(kappa/alpha)",
               "gamma_lazy_curve": "lazy asymptote kappa/(2 alpha)",
               "gamma_rich_curve": "rich asymptote (1/2) ln(2 kappa/alpha)",
               "W_distance_theory_curve": "theory W_distance* at gamma*_th"}


def _analyse_alpha(spec: SweepSpec, runs: list[_Run], quick: bool, notes: list[str]
                   ) -> dict[str, Any]:
    se_max = SE_MAX[quick]
    measured = tuple(_STAR_TEXT)  # gamma, W_distance, sign_flip_fraction
    judged = ("gamma", "W_distance")
    star = {k: np.full(len(runs), np.nan) for k in ("t", *measured)}
    theory = {k: np.full(len(runs), np.nan) for k in judged}
    for i, r in enumerate(runs):
        s, c = r.sim.series, r.sim.config
        found = at_first_crossing(r.sim.t, s["train_error"], ALPHA_LEVEL,
                                  {k: s[k] for k in measured})
        for k in star:
            star[k][i] = found[k]
        for k, v in _alpha_theory(c.alpha, c).items():
            theory[k][i] = float(v)
    configs: dict[float, Any] = {}
    for p in spec.points():
        configs.setdefault(p.config.alpha, p.config)
    alphas = np.array(sorted(configs), dtype=np.float64)
    ref = configs[alphas[0]] if len(alphas) else None
    aM = min((alpha_M(c.M, c.d, c.h, c.sa, c.sw) for c in configs.values()),
             default=float("nan"))
    run_alpha = np.array([r.sim.config.alpha for r in runs], dtype=np.float64)

    stats = ("mean", "std", "min", "max")
    per = {f"{k}_{st}": np.full(len(alphas), np.nan) for k in measured for st in stats}
    per.update({f"{k}_{st}": np.full(len(alphas), np.nan)
                for k in judged for st in ("theory", "ratio")})
    per["t_mean"] = np.full(len(alphas), np.nan)
    n_seeds = np.zeros(len(alphas), dtype=np.int64)
    for j, a in enumerate(alphas):
        th = _alpha_theory(a, configs[a])
        mine = run_alpha == a
        n_seeds[j] = int(np.sum(mine & np.isfinite(star["gamma"])))
        t_here = star["t"][mine & np.isfinite(star["t"])]
        if t_here.size:
            per["t_mean"][j] = float(np.mean(t_here))
        for k in measured:
            v = star[k][mine & np.isfinite(star[k])]
            if v.size:
                per[f"{k}_mean"][j] = float(np.mean(v))
                per[f"{k}_std"][j] = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
                per[f"{k}_min"][j], per[f"{k}_max"][j] = float(v.min()), float(v.max())
        for k in judged:
            per[f"{k}_theory"][j] = float(th[k])
            per[f"{k}_ratio"][j] = per[f"{k}_mean"][j] / float(th[k]) - 1.0

    criteria = []
    for j, a in enumerate(alphas):
        if not a <= aM:
            continue
        for k, tol, label in (("gamma", ALPHA_GAMMA_TOL, "gamma*"),
                              ("W_distance", ALPHA_W_TOL, "W_distance*")):
            v = per[f"{k}_ratio"][j]
            criteria.append(StudyCriterion(
                f"mean {label}_sim / {label}_th - 1 at alpha = {a:g}", f"|.| <= {tol:g}",
                _measured(v), _bound_verdict(v, abs(v) <= tol + _SLACK)))
    in_slope = np.isfinite(star["gamma"]) & (run_alpha <= ALPHA_SLOPE_MAX_ALPHA) & (
        run_alpha <= aM)
    fit = fit_line(np.log(run_alpha[in_slope]), star["gamma"][in_slope])
    fit_th = fit_line(np.log(run_alpha[in_slope]), theory["gamma"][in_slope])
    criteria.append(StudyCriterion(
        f"slope of gamma*_sim vs ln alpha over alpha <= {ALPHA_SLOPE_MAX_ALPHA:g}",
        f"-1/2 within {ALPHA_SLOPE_TOL:g} (theory at these alphas: "
        f"{fit_th.slope:.4f}), SE <= {se_max:g}",
        _measured(fit.slope),
        slope_verdict(fit.slope, fit.se, ALPHA_SLOPE, se_max, tolerance=ALPHA_SLOPE_TOL)))
    for j, a in enumerate(alphas):
        if a > aM:
            g, w = per["gamma_ratio"][j], per["W_distance_ratio"][j]
            notes.append(f"alpha = {a:g} > alpha_M = {aM:.3g} (reported, not judged): "
                         f"gamma*_sim / gamma*_th - 1 = {g:+.3g}, W_distance*_sim / "
                         f"W_distance*_th - 1 = {w:+.3g}")

    nan = float("nan")
    kap = kappa(ref.d, ref.h, ref.sa, ref.sw) if ref is not None else nan
    fits = {"kappa": kap, "X_star": x_star(), "alpha_M": aM, "slope": fit.slope,
            "slope_se": fit.se, "slope_intercept": fit.intercept, "slope_n": fit.n,
            "slope_theory": fit_th.slope, "se_max": se_max,
            "sigma_f0_at_alpha_M": (float(sigma_f0(aM, ref.M, ref.d, ref.sa, ref.sw))
                                    if ref is not None else nan)}
    if ref is not None:
        grid = np.geomspace(alphas[0] / 2, alphas[-1] * 2, 200)
        th_grid = _alpha_theory(grid, ref)
        curve = {"gamma_theory_curve": th_grid["gamma"], "gamma_lazy_curve": kap / (2 * grid),
                 "gamma_rich_curve": 0.5 * np.log(2 * kap / grid),
                 "W_distance_theory_curve": th_grid["W_distance"]}
    else:
        grid = np.zeros(0)
        curve = {k: np.zeros(0) for k in _CURVE_TEXT}

    coords = {"alpha": _arr(["alpha"], alphas, "output scale alpha (beta = 1/alpha^2)"),
              **_run_coords(runs),
              "alpha_grid": _arr(["alpha_grid"], grid, "alpha of the theory curves")}
    arrays: dict[str, StudyArray] = {**_run_arrays(runs, "alpha", "alpha")}
    arrays["t_star"] = _arr(["run"], star["t"], "time of the first crossing of training "
                                                "error 0.5 (interpolated in ln t)", TIME_UNITS)
    what = {"mean": "mean over seeds", "std": "standard deviation over seeds (ddof 1)",
            "min": "smallest over seeds", "max": "largest over seeds", "theory": "theory",
            "ratio": "mean over seeds / theory - 1"}
    for k in measured:
        arrays[f"{k}_star"] = _arr(["run"], star[k], _STAR_TEXT[k])
        if k in judged:
            arrays[f"{k}_star_theory_run"] = _arr(["run"], theory[k],
                                                  f"theory: {_STAR_TEXT[k]}")
        for st in (*stats, *(("theory", "ratio") if k in judged else ())):
            arrays[f"{k}_star_{st}"] = _arr(["alpha"], per[f"{k}_{st}"],
                                            f"{what[st]}: {_STAR_TEXT[k]}")
    arrays["t_star_mean"] = _arr(["alpha"], per["t_mean"], "mean over seeds of t_star",
                                 TIME_UNITS)
    arrays["n_seeds"] = _arr(["alpha"], n_seeds, "runs that reached training error 0.5")
    for k, v in curve.items():
        arrays[k] = _arr(["alpha_grid"], v, _CURVE_TEXT[k])
    return {"criteria": criteria, "fits": fits, "coords": coords, "arrays": arrays}


_ANALYSES = {"finite-m": _analyse_finite_m, "finite-n": _analyse_finite_n,
             "alpha": _analyse_alpha}


def analyse(name: str, quick: bool, spec: SweepSpec, points_dir: Path) -> StudyResult:
    """The analysis of study ``name`` on the point files ``points_dir/<hash>.h5`` of
    ``spec``'s points (those without a file are skipped and counted; see the module
    docstring for what each study computes)."""
    _check_name(name)
    notes: list[str] = []
    runs = _load(spec, Path(points_dir), notes)
    parts = _ANALYSES[name](spec, runs, quick, notes)
    missing = len(spec) - len(runs)
    if missing:
        notes.insert(0, f"{missing} of {len(spec)} points have no usable file yet")
    return StudyResult(
        name=name, quick=bool(quick), criteria=parts["criteria"], n_points_used=len(runs),
        n_points_total=len(spec), fits=parts["fits"], coords=parts["coords"],
        arrays=parts["arrays"], notes=notes, spec_toml=spec.to_toml(),
        used_hashes=[r.point.hash for r in runs])


# ----------------------------------------------------------------------------- outputs


def study_document(result: StudyResult) -> dict[str, Any]:
    """The JSON document of a study: name, quick, verdict, criteria, the fitted numbers
    (``fits``), notes and how many points were used."""
    return {
        "name": result.name, "quick": bool(result.quick), "verdict": result.verdict,
        "criteria": [c.to_dict() for c in result.criteria],
        "fits": {k: json_number(v) for k, v in result.fits.items()},
        "notes": list(result.notes),
        "n_points_used": int(result.n_points_used),
        "n_points_total": int(result.n_points_total),
    }


def figure_name(name: str) -> str:
    """``NAME.png``."""
    _check_name(name)
    return f"{name}.png"


def write_outputs(result: StudyResult, outdir: Path) -> list[Path]:
    """Write ``outdir/study.h5``, ``outdir/study.json`` and ``outdir/NAME.png`` (drawn from
    ``study.h5`` only), each atomically; returns their paths."""
    from meanfield.plots import study_figure

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    h5 = outdir / "study.h5"
    write_study(result, h5)
    doc = outdir / "study.json"
    write_atomic(doc, (json.dumps(study_document(result), indent=2) + "\n").encode())
    png = study_figure(h5, outdir / figure_name(result.name))
    return [h5, doc, Path(png)]


def _show(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def format_table(result: StudyResult) -> str:
    """The study's table (quantity, expected, measured, verdict), its notes and the overall
    verdict line."""
    mode = "quick" if result.quick else "full"
    rows = [("quantity", "expected", "measured", "verdict")]
    rows += [(c.quantity, c.expected, _show(c.measured), c.verdict) for c in result.criteria]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"study {result.name} ({mode}): {result.n_points_used} of "
             f"{result.n_points_total} points"]
    for k, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                     .rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for note in result.notes:
        lines.append(f"note: {note}")
    extra = " (quick: indicative only)" if result.quick else ""
    lines.append(f"verdict: {result.verdict}{extra}")
    return "\n".join(lines)

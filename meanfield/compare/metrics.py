"""Measures, tolerances, the comparison window and verdicts (all dimensionless).

Measures of a simulation against theory curves on its record grid (:mod:`.curves`):

- ``gamma``, ``S``, ``train_error``, ``loss``: ``max_t |sim(t) - th(t)| / |th(t)|`` over the
  comparison window (:func:`max_relative_error`); for ``S`` only once the theory's training
  error is below ``S_RESOLVED`` (the simulation measures ``S`` by regression of ``f`` on
  ``x_par``, with an absolute noise ``~ sigma_f / sqrt(n_test)`` that swamps the tiny early
  ``S``);
- ``a``, ``w_par``: relative RMS distance of the recorded nodes from the closed form
  ``a_i(t) = a_i(0) cosh gamma + w_par_i(0) sinh gamma``,
  ``w_par_i(t) = w_par_i(0) cosh gamma + a_i(0) sinh gamma`` with the theory's ``gamma``:
  ``sqrt(sum_{t,i} (sim - th)^2 / sum_{t,i} th^2)`` (:func:`relative_rms`);
- ``slope``: the local slope ``d gamma / d log t`` (centred differences on the simulation grid,
  the same operator for both curves, :func:`log_slope`) as relative RMS distance;
- ``x_par``: each example first satisfied at ``t_sat`` should have ``|x_par| = X(gamma(t_sat))``
  (``X = h / S`` the edge of the unsatisfied set; between ``X(t_n)`` and ``X(t_{n-1})`` for
  ``t_sat = t_n`` on the simulation's grid): the largest relative distance between the median
  ``|x_par|`` of a ``log t_sat`` bin and the median prediction for the same examples
  (:func:`x_par_bins`, :func:`binned_x_par_error`);
- ``x_par_band``: the fraction of those examples outside the finite-``M`` band
  ``[(h - k sigma_f) / S, (h + k sigma_f) / S]`` (``k = BAND_K``, :func:`fraction_outside_band`).

The comparison window (:func:`comparison_window`) is ``0 < t`` up to the first time the theory
stops being applicable: the theory's finite-``N`` validity indicator (ratio of the drive
orthogonal to ``w*`` to the parallel drive) exceeds ``VALIDITY_MAX``, or fewer than
``MIN_UNSATISFIED`` training examples are predicted unsatisfied (``N * train_error``), where the
counting noise of the unsatisfied set dominates. A metric agrees when its value is at most its
tolerance (:func:`tolerances`, :func:`verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from meanfield.compare.curves import BAND_K, Curves, band_edges, warp
from meanfield.config import Config
from meanfield.files.simulation import SimulationResult

#: the theory is applicable while its finite-N validity indicator (orthogonal over parallel
#: drive) stays below this: beyond, w_perp moves as fast as w_par and cannot be held frozen
VALIDITY_MAX = 1.0
#: the window ends when fewer training examples than this are predicted unsatisfied: the
#: counting noise of the unsatisfied set is then above 1/sqrt(MIN_UNSATISFIED) ~ 3%
MIN_UNSATISFIED = 1000
#: S counts in the verdict once the theory's training error is below this
S_RESOLVED = 0.99

Measure = Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]


def verdict(value: float | None, tolerance: float) -> str:
    """``agree`` when ``value <= tolerance``, ``disagree`` above, ``n/a`` without a value."""
    if value is None:
        return "n/a"
    return "agree" if value <= tolerance else "disagree"


@dataclass(frozen=True)
class Metric:
    """One compared quantity: values against the flow and the schedule theory, a tolerance
    with its reason, and the verdict (``agree``, ``disagree`` or ``n/a``)."""

    name: str
    value: float | None  # against the theory that decides the verdict
    value_flow: float | None
    value_schedule: float | None
    schedule_effect: float | None  # same measure between flow and schedule theory
    tolerance: float
    reason: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "value_flow": self.value_flow,
            "value_schedule": self.value_schedule,
            "schedule_effect": self.schedule_effect,
            "tolerance": self.tolerance,
            "reason": self.reason,
            "verdict": self.verdict,
        }


# --------------------------------------------------------------------------- measures


def max_relative_error(sim: np.ndarray, th: np.ndarray, mask: np.ndarray) -> float | None:
    """``max |sim - th| / |th|`` over ``mask`` (None when the mask is empty)."""
    ok = mask & np.isfinite(sim) & np.isfinite(th) & (th != 0)
    if not ok.any():
        return None
    return float(np.max(np.abs(sim[ok] - th[ok]) / np.abs(th[ok])))


def relative_rms(sim: np.ndarray, th: np.ndarray, mask: np.ndarray) -> float | None:
    """``sqrt(sum (sim - th)^2 / sum th^2)`` over the rows (times) in ``mask``."""
    sim, th = np.asarray(sim)[mask], np.asarray(th)[mask]
    ok = np.isfinite(sim) & np.isfinite(th)
    den = float(np.sum(th[ok] ** 2))
    if not ok.any() or den == 0:
        return None
    return float(math.sqrt(np.sum((sim[ok] - th[ok]) ** 2) / den))


def log_slope(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy / d log t`` by centred (second-order, non-uniform) differences over the positive
    times; NaN at ``t <= 0``."""
    out = np.full(len(t), np.nan)
    pos = t > 0
    if pos.sum() >= 3:
        out[pos] = np.gradient(y[pos], np.log(t[pos]))
    return out


def fraction_outside_band(
    sim: SimulationResult, curves: Curves, h: float, window: np.ndarray
) -> tuple[float | None, int]:
    """Fraction of the examples first satisfied inside the window whose ``|x_par|`` is outside
    the band, and their number. An example first found satisfied at the grid time ``t_n``
    (a step, or a record time, as the simulation resolves ``t_sat``) was not at ``t_{n-1}``,
    so it should lie between the lower edge at ``t_n`` and the upper edge at ``t_{n-1}``
    (edges interpolated in ``asinh t``)."""
    t_in = sim.t[window]
    if t_in.size == 0:
        return None, 0
    sat = np.isfinite(sim.t_sat) & (sim.t_sat > 0) & (sim.t_sat <= t_in.max())
    if not sat.any():
        return None, 0
    lo, hi = band_edges(curves, h)
    t1 = float(sim.t[sim.t > 0][0])
    u, us = warp(sim.t, t1), warp(sim.t_sat[sat], t1)
    ok_lo, ok_hi = np.isfinite(lo), np.isfinite(hi)
    if ok_hi.sum() < 2:
        return None, 0
    # satisfied at grid time t_n, not yet at t_{n-1}: |x_par| in [lo(t_n), hi(t_{n-1})]
    grid = sim.t_sat_grid()
    prev = grid[np.maximum(np.searchsorted(grid, sim.t_sat[sat]) - 1, 0)]
    lo_at = np.interp(us, u[ok_lo], lo[ok_lo])
    hi_at = np.interp(warp(prev, t1), u[ok_hi], hi[ok_hi], left=np.inf)
    x = np.abs(sim.x_par[sat])
    outside = (x < lo_at) | (x > hi_at)
    return float(np.mean(outside)), int(sat.sum())


def predicted_x_par(sim: SimulationResult, curves: Curves, t_sat: np.ndarray) -> np.ndarray:
    """The theory's ``|x_par|`` of an example first found satisfied at grid time
    ``t_sat = t_n``: between ``X(t_n)`` and ``X(t_{n-1})`` (it was not satisfied at
    ``t_{n-1}``), their geometric mean; ``X`` interpolated in ``asinh t``."""
    t1 = float(sim.t[sim.t > 0][0])
    finite = np.isfinite(curves.X)
    u, X = warp(curves.t[finite], t1), curves.X[finite]
    grid = sim.t_sat_grid()
    prev = grid[np.maximum(np.searchsorted(grid, t_sat) - 1, 0)]
    x_now = np.interp(warp(t_sat, t1), u, X, left=np.nan)
    x_prev = np.interp(warp(prev, t1), u, X, left=np.nan)
    return np.where(np.isfinite(x_prev), np.sqrt(x_now * x_prev), x_now)


def x_par_bins(sim: SimulationResult, curves: Curves, n_bins: int = 12
               ) -> dict[str, np.ndarray]:
    """``|x_par|`` of the satisfied examples binned in ``log t_sat``: bin centres (geometric)
    and upper edges, median and quartiles of ``|x_par|``, counts, and the median of the
    theory's prediction :func:`predicted_x_par` for the same examples (``X``)."""
    keys = ("t_sat", "t_hi", "median", "q25", "q75", "count", "X")
    sat = np.isfinite(sim.t_sat) & (sim.t_sat > 0)
    if sat.sum() < 2:
        return {k: np.zeros(0) for k in keys}
    ts, x = sim.t_sat[sat], np.abs(sim.x_par[sat])
    pred = predicted_x_par(sim, curves, ts)
    edges = np.geomspace(ts.min(), ts.max() * (1 + 1e-12), n_bins + 1)
    which = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            q25, med, q75 = np.percentile(x[inside], [25, 50, 75])
            rows.append((math.sqrt(edges[b] * edges[b + 1]), edges[b + 1], med, q25, q75,
                         inside.sum(), np.nanmedian(pred[inside])))
    arr = np.asarray(rows, dtype=np.float64)
    return {k: arr[:, i] for i, k in enumerate(keys)}


def binned_x_par_error(
    bins: dict[str, np.ndarray], window: np.ndarray, t: np.ndarray, min_count: int = 30
) -> float | None:
    """``max |median |x_par| - X| / X`` over the bins that end inside the window and hold at
    least ``min_count`` examples."""
    if not window.any() or bins["t_sat"].size == 0:
        return None
    ok = (bins["t_hi"] <= t[window].max() * (1 + 1e-12)) & (bins["count"] >= min_count)
    ok &= np.isfinite(bins["X"])
    if not ok.any():
        return None
    return float(np.max(np.abs(bins["median"][ok] - bins["X"][ok]) / bins["X"][ok]))


# --------------------------------------------------------------------------- tolerances


def tolerances(config: Config) -> dict[str, tuple[float, str]]:
    """Tolerance and its reason for each metric, for a simulation with ``config``.

    The schedule theory removes the time-step error and the finite-sample initial moments;
    what is left:

    - finite ``M``: ``f`` fluctuates around ``S x_par`` with a relative spread ``~ 1/sqrt(M)``,
      which blurs the edge of the unsatisfied set (and the regression estimate of ``S``);
    - finite ``N``, per node: each node's drive is an average over ``N`` examples of
      ``y relu(w_i.x/sqrt d)``, whose fluctuation ``sqrt(E relu^2 / N)`` against a mean
      ``~ 1/sqrt(d)`` is ``sqrt(d/N)`` relative, and accumulates coherently on a fixed
      training set (the nodes average it out in ``gamma``, not in their own trajectories);
    - finite ``N``, counting: the unsatisfied fraction ``e`` of ``N`` examples has relative
      noise ``1/sqrt(N e)``, at most ``1/sqrt(MIN_UNSATISFIED)`` inside the window.
    """
    m = 1.0 / math.sqrt(config.M)
    node = math.sqrt(config.d / config.N)
    count = 1.0 / math.sqrt(MIN_UNSATISFIED)
    fm = "2/sqrt(M) for the finite-M spread of f"
    return {
        "gamma": (2 * m, f"{fm}, which blurs the unsatisfied set that drives gamma"),
        "S": (2 * m, f"{fm} (S follows gamma; measured by regression of f on x_par)"),
        "train_error": (2 * m + 3 * count,
                        f"{fm} at the edge X, plus 3 sigma of the counting noise of >= "
                        f"{MIN_UNSATISFIED} unsatisfied examples (3/sqrt({MIN_UNSATISFIED}))"),
        "loss": (2 * m + 3 * count, "as the training error (the loss is carried by the "
                                    "unsatisfied examples)"),
        "a": (2 * m + 2 * node, f"{fm}, plus 2 sqrt(d/N) for the finite-N fluctuation of "
                                "each node's own drive"),
        "w_par": (2 * m + 2 * node, "as a"),
        "slope": (4 * m, "a log-derivative of gamma: twice the gamma tolerance"),
        "x_par": (2 * m + 2 * node, "the median |x_par| of a t_sat bin estimates X = h/S: "
                                    "the S tolerance, plus 2 sqrt(d/N) for the example-to-"
                                    "example fluctuation of f that the median averages"),
        "x_par_band": (0.1, f"fraction outside the +-{BAND_K:g} sigma finite-M band "
                            "(Gaussian: 0.3%), allowing for non-Gaussian tails of f"),
    }


# --------------------------------------------------------------------------- window


def comparison_window(sim: SimulationResult, curves: Curves) -> tuple[np.ndarray, list[str]]:
    """Times that count in the verdict, and the reasons the window ends where it does."""
    window = (sim.t > 0) & np.isfinite(curves.gamma)
    limits = []
    if curves.validity is not None:
        bad = window & (curves.validity > VALIDITY_MAX)
        if bad.any():
            t_bad = float(sim.t[np.argmax(bad)])
            limits.append(
                f"finite N: from t = {t_bad:.4g} the drive orthogonal to w* exceeds "
                f"{VALIDITY_MAX:g} of the parallel drive (validity indicator), so w_perp is no "
                "longer frozen"
            )
            window &= sim.t < t_bad
    if curves.edge_spread is not None:
        # once the edge X is inside the data (training error below S_RESOLVED)
        wide = (sim.t > 0) & (curves.train_error < S_RESOLVED)
        wide &= BAND_K * np.nan_to_num(curves.edge_spread) >= sim.config.h
        if wide.any():
            limits.append(
                f"finite M: from t = {float(sim.t[np.argmax(wide)]):.4g} the spread of f at "
                f"the edge X ({BAND_K:g} sigma) reaches h: the band of panel (d) touches "
                "x_par = 0, the unsatisfied set is blurred over its whole width"
            )
    few = window & (sim.config.N * curves.train_error < MIN_UNSATISFIED)
    if few.any():
        t_few = float(sim.t[np.argmax(few)])
        limits.append(
            f"finite N: from t = {t_few:.4g} fewer than {MIN_UNSATISFIED} of the N = "
            f"{sim.config.N} training examples are predicted unsatisfied; the unsatisfied set "
            "is then a few examples, not the continuum of the theory"
        )
        window &= sim.t < t_few
    return window, limits


def breakdown(sim: SimulationResult, ref: Curves, window: np.ndarray, tol: float) -> list[str]:
    """Where the simulation's gamma or training error first leaves the reference theory by more
    than its tolerance."""
    out = []
    for q in ("gamma", "train_error"):
        s, th = sim.series[q], getattr(ref, q)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(s - th) / np.abs(th)
        off = (sim.t > 0) & np.isfinite(rel) & (rel > tol)
        if off.any():
            i = int(np.argmax(off))
            where = "inside" if window[i] else "after the end of"
            out.append(
                f"{q}: the simulation first leaves the theory by more than {tol:.3g} at "
                f"t = {sim.t[i]:.4g} ({where} the comparison window), relative error "
                f"{rel[i]:.3g}"
            )
    return out


def curve_metric(
    name: str,
    sim: np.ndarray,
    flow: np.ndarray,
    schedule: np.ndarray | None,
    window: np.ndarray,
    tol: tuple[float, str],
    measure: Measure = max_relative_error,
) -> Metric:
    """The metric ``name`` of ``sim`` against the flow and (if given) the schedule theory; the
    schedule theory decides the verdict when there is one."""
    v_flow = measure(sim, flow, window)
    v_sched = None if schedule is None else measure(sim, schedule, window)
    effect = None if schedule is None else measure(schedule, flow, window)
    value = v_sched if schedule is not None else v_flow
    return Metric(name, value, v_flow, v_sched, effect, tol[0], tol[1], verdict(value, tol[0]))

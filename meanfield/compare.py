"""Theory against simulation: metrics, tolerances, verdicts.

A simulation file (``meanfield simulate``) is compared with the mean-field theory of
Pellegrini & Biroli (``meanfield theory``), either read from a theory file or computed for the
simulation's own configuration. Everything is put on the simulation's record grid ``t``.

Two versions of the theory are used:

- the *flow*: ``gamma(t)`` of the gradient flow ``d theta/dt = -beta M dL/dtheta`` with the
  population moments of the initialisation (``<a0^2> = sa^2``, ``<w0^2> = sw^2``,
  ``<a0 w0> = 0``);
- the *schedule* theory: the same equations pushed through the simulation's own explicit-Euler
  step schedule and its own initial sample moments (``meanfield.theory.compute_on_schedule``).
  It is the exact large-``M``, large-``N`` limit of that simulation, so the distance
  "simulation - schedule theory" carries no time-step error and no finite-sample error of the
  initial moments; the distance "schedule theory - flow" is exactly those two effects.

Verdicts are taken against the schedule theory when it can be computed (a ReLU hinge theory),
else against the flow. Metrics (all dimensionless):

- ``gamma``, ``S``, ``train_error``, ``loss``: ``max_t |sim(t) - th(t)| / |th(t)|`` over the
  comparison window (below); for ``S`` only once the theory's training error is below
  ``S_RESOLVED`` (the simulation measures ``S`` by regression of ``f`` on ``x_par``, with an
  absolute noise ``~ sigma_f / sqrt(n_test)`` that swamps the tiny early ``S``);
- ``a``, ``w_par``: relative RMS distance of the recorded nodes from the closed form
  ``a_i(t) = a_i(0) cosh gamma + w_par_i(0) sinh gamma``,
  ``w_par_i(t) = w_par_i(0) cosh gamma + a_i(0) sinh gamma`` with the theory's ``gamma``:
  ``sqrt(sum_{t,i} (sim - th)^2 / sum_{t,i} th^2)``;
- ``slope``: the local slope ``d gamma / d log t`` (centred differences on the simulation grid,
  the same operator for both curves) as relative RMS distance
  ``sqrt(sum (s_sim - s_th)^2 / sum s_th^2)``;
- ``x_par``: each example first satisfied at ``t_sat`` should have ``|x_par| = X(gamma(t_sat))``
  (``X = h / S`` the edge of the unsatisfied set; between ``X(t_n)`` and ``X(t_{n-1})`` for
  ``t_sat = t_n`` on the simulation's grid): the largest relative distance between the median
  ``|x_par|`` of a ``log t_sat`` bin and the median prediction for the same examples;
- ``x_par_band``: the fraction of those examples outside the finite-``M`` band
  ``[(h - k sigma_f) / S, (h + k sigma_f) / S]`` (``k = BAND_K``, ``sigma_f`` the standard
  deviation of ``f`` at ``|x_par| = X`` over draws of ``M`` nodes, from the theory).

The comparison window is ``0 < t`` up to the first time the theory stops being applicable:
the theory's finite-``N`` validity indicator (ratio of the drive orthogonal to ``w*`` to the
parallel drive) exceeds ``VALIDITY_MAX``, or fewer than ``MIN_UNSATISFIED`` training examples
are predicted unsatisfied (``N * train_error``), where the counting noise of the unsatisfied set
dominates. Later times are still reported (where the simulation leaves the theory and why), but
do not count in the verdict.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from meanfield.config import Config, from_json
from meanfield.io import (
    atomic_h5,
    open_meanfield,
    provenance,
    read_config_json,
    set_attrs,
    write_coordinate,
    write_variable,
)
from meanfield.schedule import schedule

#: training-error levels at which the comparison is also reported
CHECKPOINT_LEVELS = (0.9, 0.7, 0.5, 0.3, 0.2, 0.1)
#: half-width of the finite-M band, in standard deviations of f
BAND_K = 3.0
#: the theory is applicable while its finite-N validity indicator (orthogonal over parallel
#: drive) stays below this: beyond, w_perp moves as fast as w_par and cannot be held frozen
VALIDITY_MAX = 1.0
#: the window ends when fewer training examples than this are predicted unsatisfied: the
#: counting noise of the unsatisfied set is then above 1/sqrt(MIN_UNSATISFIED) ~ 3%
MIN_UNSATISFIED = 1000
#: S counts in the verdict once the theory's training error is below this
S_RESOLVED = 0.99
#: config fields the hinge theory depends on (a difference in one of them changes its numbers)
THEORY_FIELDS = (
    "d", "h", "alpha", "beta", "sa", "sw", "activation", "loss", "data", "label_noise", "margin",
)
CURVES = ("gamma", "S", "train_error", "loss")


class CompareWarning(UserWarning):
    """The theory was made for other parameters than the simulation."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Simulation:
    """What the comparison needs from a simulation file (dimension names in brackets)."""

    path: str
    config: Config
    t: np.ndarray  # [t] record times (mean-field time)
    gamma: np.ndarray  # [t]
    S: np.ndarray  # [t] slope of f against x_par
    train_error: np.ndarray  # [t] unsatisfied fraction of the training set
    loss: np.ndarray  # [t]
    test_error: np.ndarray | None  # [t] held-out unsatisfied fraction
    a: np.ndarray  # [t, node]
    w_par: np.ndarray  # [t, node]
    a0: np.ndarray  # [node] initial values
    w_par0: np.ndarray  # [node]
    t_sat: np.ndarray  # [example] first satisfaction time (not finite: never satisfied)
    x_par: np.ndarray  # [example]
    t_sat_grid: np.ndarray  # the times t_sat can take (every step, or the record times)
    init_moments: dict[str, float]  # a2, w2, aw of the initial nodes


@dataclass(frozen=True)
class Curves:
    """Theory curves on a time grid (``validity`` and ``f_spread`` may be absent)."""

    label: str
    t: np.ndarray
    gamma: np.ndarray
    S: np.ndarray
    X: np.ndarray
    train_error: np.ndarray
    loss: np.ndarray
    validity: np.ndarray | None = None
    f_spread: np.ndarray | None = None  # std of f over draws of M nodes, averaged over x
    edge_spread: np.ndarray | None = None  # the same at the edge |x_par| = X(t)
    gamma_minus: np.ndarray | None = None  # gamma_- of an Euler push (decaying branch)


@dataclass(frozen=True)
class Theory:
    """A theory: its configuration, its curves, the asymptote ``gamma -> log(t)/4 + c``."""

    config: Config
    curves: Curves
    asymptote_c: float
    source: str  # a file path, or "computed"


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


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; every array is on the simulation grid ``sim.t``."""

    sim: Simulation
    theory: Theory
    flow: Curves  # theory (flow) on sim.t
    schedule: Curves | None  # theory pushed through the simulation's schedule, on sim.t
    window: np.ndarray  # [t] bool, times that count in the verdict
    metrics: dict[str, Metric]
    checkpoints: list[dict[str, Any]]
    limits: list[str]  # where and why the theory stops holding
    differing: dict[str, tuple[Any, Any]]  # theory field -> (simulation value, theory value)
    a_theory: np.ndarray  # [t, node]
    w_par_theory: np.ndarray  # [t, node]
    band: tuple[np.ndarray, np.ndarray]  # [t] edges of the |x_par| band at t_sat = t
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> Curves:
        """The theory that decides the verdicts."""
        return self.schedule if self.schedule is not None else self.flow

    @property
    def verdict(self) -> str:
        decided = [m.verdict for m in self.metrics.values() if m.verdict != "n/a"]
        return "agree" if decided and all(v == "agree" for v in decided) else "disagree"


# --------------------------------------------------------------------------- reading


def _read(f, name: str) -> np.ndarray:
    return np.asarray(f[name][()], dtype=np.float64)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def read_simulation(path: str | Path) -> Simulation:
    """Read a ``meanfield simulate`` file (raises ``NotMeanfieldFile`` for anything else)."""
    with open_meanfield(path, "simulation") as f:
        config = from_json(read_config_json(f))
        t = _read(f, "t")
        a = _read(f, "a")
        w_par = _read(f, "w_par")
        a0 = _read(f, "a0") if "a0" in f else a[0]
        w_par0 = _read(f, "w_par0") if "w_par0" in f else w_par[0]
        return Simulation(
            path=str(path),
            config=config,
            t=t,
            gamma=_read(f, "gamma"),
            S=_read(f, "S"),
            train_error=_read(f, "train_error"),
            loss=_read(f, "loss"),
            test_error=_read(f, "test_error") if "test_error" in f else None,
            a=a,
            w_par=w_par,
            a0=a0,
            w_par0=w_par0,
            t_sat=_read(f, "t_sat"),
            x_par=_read(f, "x_par"),
            t_sat_grid=t if _text(f["t_sat"].attrs.get("resolution")) == "record times"
            else schedule(config)[0],
            init_moments=initial_moments(f, a0, w_par0),
        )


def read_theory(path: str | Path) -> Theory:
    """Read a ``meanfield theory`` file."""
    with open_meanfield(path, "theory") as f:
        curves = Curves(
            label="theory file",
            t=_read(f, "t"),
            gamma=_read(f, "gamma"),
            S=_read(f, "S"),
            X=_read(f, "X"),
            train_error=_read(f, "train_error"),
            loss=_read(f, "loss"),
            validity=_read(f, "validity") if "validity" in f else None,
            f_spread=_read(f, "f_spread") if "f_spread" in f else None,
        )
        return Theory(
            config=from_json(read_config_json(f)),
            curves=curves,
            asymptote_c=float(f.attrs["asymptote_c"]),
            source=str(path),
        )


def _curves_from_result(result: Any, label: str) -> Curves:
    """Curves from a ``meanfield.theory.TheoryResult``."""

    def get(name: str) -> np.ndarray | None:
        value = getattr(result, name, None)
        return None if value is None else np.asarray(value, dtype=np.float64)

    return Curves(
        label=label,
        t=get("t"),
        gamma=get("gamma"),
        S=get("S"),
        X=get("X"),
        train_error=get("train_error"),
        loss=get("loss"),
        validity=get("validity"),
        f_spread=get("f_spread"),
        gamma_minus=get("gamma_minus"),
    )


def compute_theory(config: Config, times: np.ndarray) -> Theory:
    """The flow theory for ``config`` at ``times`` (``meanfield.theory.compute``)."""
    from meanfield import theory

    result = theory.compute(config, times=np.asarray(times, dtype=np.float64))
    return Theory(
        config=config,
        curves=_curves_from_result(result, "flow"),
        asymptote_c=float(result.asymptote_c),
        source="computed",
    )


def initial_moments(f: Any, a0: np.ndarray, w_par0: np.ndarray) -> dict[str, float]:
    """Sample moments of the initial nodes, ``<a0^2>``, ``<w0^2>``, ``<a0 w0>`` (means over
    nodes, ``w0`` the component along ``w*``): over all ``M`` nodes from the simulation
    file's attributes (``init_a_mean``, ``init_a_var``, ``init_w_par_mean``,
    ``init_w_par_var``, ``init_a_w_par_mean``) when present, else over the recorded nodes."""
    keys = ("init_a_mean", "init_a_var", "init_w_par_mean", "init_w_par_var",
            "init_a_w_par_mean")
    if all(k in f.attrs for k in keys):
        v = {k: float(f.attrs[k]) for k in keys}
        return {"a2": v["init_a_var"] + v["init_a_mean"] ** 2,
                "w2": v["init_w_par_var"] + v["init_w_par_mean"] ** 2,
                "aw": v["init_a_w_par_mean"]}
    return {"a2": float(np.mean(a0 * a0)), "w2": float(np.mean(w_par0 * w_par0)),
            "aw": float(np.mean(a0 * w_par0))}


def schedule_theory(config: Config, sim: Simulation) -> Curves:
    """The theory for ``config`` pushed through the simulation's Euler step schedule and its
    initial sample moments, sampled at the simulation's record times."""
    from meanfield import theory

    steps, record = schedule(sim.config)
    result = theory.compute_on_schedule(config, steps, init_moments=sim.init_moments,
                                        record=record)
    return _curves_from_result(result, "schedule")


def _warp(t: np.ndarray, t1: float) -> np.ndarray:
    """``asinh(t / t1)``: linear near 0, ``log t`` at large t; the interpolation variable of
    log-spaced grids that include ``t = 0``."""
    return np.arcsinh(np.asarray(t, dtype=np.float64) / t1)


def resample(curves: Curves, t: np.ndarray) -> Curves:
    """``curves`` linearly interpolated in ``asinh(t / t_1)`` onto ``t`` (``t_1`` the first
    positive time of ``curves``). Times outside the curves' range get NaN."""
    positive = curves.t[curves.t > 0]
    t1 = float(positive[0]) if positive.size else 1.0
    src, dst = _warp(curves.t, t1), _warp(t, t1)

    def interp(y: np.ndarray | None) -> np.ndarray | None:
        if y is None or y.shape != curves.t.shape:
            return None
        return np.interp(dst, src, y, left=np.nan, right=np.nan)

    return Curves(
        label=curves.label,
        t=np.asarray(t, dtype=np.float64),
        gamma=interp(curves.gamma),
        S=interp(curves.S),
        X=interp(curves.X),
        train_error=interp(curves.train_error),
        loss=interp(curves.loss),
        validity=interp(curves.validity),
        f_spread=interp(curves.f_spread),
        gamma_minus=interp(curves.gamma_minus),
    )


# --------------------------------------------------------------------------- measures


def initial_rate(curves: Curves) -> float:
    """The theory's initial rate ``dgamma/dt`` at ``t = 0``, as ``gamma(t_1) / t_1`` at the
    first positive time of its own grid (``gamma`` is smooth with ``gamma(0) = 0``, so the
    error is ``O(t_1)`` relative)."""
    i = int(np.argmax(curves.t > 0))
    return float(curves.gamma[i] / curves.t[i])


def node_trajectories(a0: np.ndarray, w0: np.ndarray, curves: Curves):
    """Closed-form ReLU trajectories ``(a, w_par)`` of shape ``[t, node]`` along ``curves``
    (``meanfield.theory.node_trajectories``; an Euler push uses its own ``gamma_-`` for the
    decaying branch ``a - w_par``)."""
    from meanfield import theory

    return theory.node_trajectories(np.asarray(a0), np.asarray(w0), curves.gamma,
                                    curves.gamma_minus)


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


def with_edge_spread(curves: Curves, config: Config) -> Curves:
    """``curves`` with ``edge_spread``: the finite-``M`` standard deviation of ``f`` at
    ``|x_par| = X(t)`` (``meanfield.theory.f_spread_x``, over draws of ``M`` nodes and of
    ``x_perp``), for the ReLU theory; other activations keep ``f_spread`` only."""
    if config.activation.strip() != "relu":
        return curves
    from meanfield import theory

    edge = np.full(len(curves.t), np.nan)
    for i, (g, x) in enumerate(zip(curves.gamma, curves.X, strict=True)):
        if np.isfinite(g) and np.isfinite(x):
            edge[i] = theory.f_spread_x(config, np.array([g]), np.array([x]))[0, 0]
    return replace(curves, edge_spread=edge)


def band_edges(curves: Curves, h: float, k: float = BAND_K) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the ``|x_par|`` band at satisfaction: an example is first satisfied when
    ``S |x_par| + eta = h`` with ``eta`` the finite-``M`` fluctuation of ``f`` at the edge
    (standard deviation ``sigma = edge_spread``, else the x-averaged ``f_spread``), so
    ``|x_par|`` lies in ``[(h - k sigma)/S, (h + k sigma)/S]``. Without either the band is the
    line ``X``."""
    spread = curves.edge_spread if curves.edge_spread is not None else curves.f_spread
    spread = np.zeros_like(curves.S) if spread is None else np.nan_to_num(spread)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(curves.S > 0, np.maximum(h - k * spread, 0.0) / curves.S, np.inf)
        hi = np.where(curves.S > 0, (h + k * spread) / curves.S, np.inf)
    return lo, hi


def fraction_outside_band(
    sim: Simulation, curves: Curves, h: float, window: np.ndarray
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
    u, us = _warp(sim.t, t1), _warp(sim.t_sat[sat], t1)
    ok_lo, ok_hi = np.isfinite(lo), np.isfinite(hi)
    if ok_hi.sum() < 2:
        return None, 0
    # satisfied at grid time t_n, not yet at t_{n-1}: |x_par| in [lo(t_n), hi(t_{n-1})]
    grid = sim.t_sat_grid
    prev = grid[np.maximum(np.searchsorted(grid, sim.t_sat[sat]) - 1, 0)]
    lo_at = np.interp(us, u[ok_lo], lo[ok_lo])
    hi_at = np.interp(_warp(prev, t1), u[ok_hi], hi[ok_hi], left=np.inf)
    x = np.abs(sim.x_par[sat])
    outside = (x < lo_at) | (x > hi_at)
    return float(np.mean(outside)), int(sat.sum())


def predicted_x_par(sim: Simulation, curves: Curves, t_sat: np.ndarray) -> np.ndarray:
    """The theory's ``|x_par|`` of an example first found satisfied at grid time
    ``t_sat = t_n``: between ``X(t_n)`` and ``X(t_{n-1})`` (it was not satisfied at
    ``t_{n-1}``), their geometric mean; ``X`` interpolated in ``asinh t``."""
    t1 = float(sim.t[sim.t > 0][0])
    finite = np.isfinite(curves.X)
    u, X = _warp(curves.t[finite], t1), curves.X[finite]
    grid = sim.t_sat_grid
    prev = grid[np.maximum(np.searchsorted(grid, t_sat) - 1, 0)]
    x_now = np.interp(_warp(t_sat, t1), u, X, left=np.nan)
    x_prev = np.interp(_warp(prev, t1), u, X, left=np.nan)
    return np.where(np.isfinite(x_prev), np.sqrt(x_now * x_prev), x_now)


def x_par_bins(
    sim: Simulation, curves: Curves, n_bins: int = 12
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


# --------------------------------------------------------------------------- comparison


def differing_fields(sim_config: Config, theory_config: Config) -> dict[str, tuple[Any, Any]]:
    """Theory-relevant fields that differ: name -> (simulation value, theory value)."""
    out = {}
    for name in THEORY_FIELDS:
        s, t = getattr(sim_config, name), getattr(theory_config, name)
        if s != t:
            out[name] = (s, t)
    return out


def comparison_window(sim: Simulation, curves: Curves) -> tuple[np.ndarray, list[str]]:
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


def _curve_metric(
    name: str,
    sim: np.ndarray,
    flow: np.ndarray,
    schedule: np.ndarray | None,
    window: np.ndarray,
    tol: tuple[float, str],
    measure=max_relative_error,
) -> Metric:
    v_flow = measure(sim, flow, window)
    v_sched = None if schedule is None else measure(sim, schedule, window)
    effect = None if schedule is None else measure(schedule, flow, window)
    value = v_sched if schedule is not None else v_flow
    verdict = "n/a" if value is None else ("agree" if value <= tol[0] else "disagree")
    return Metric(name, value, v_flow, v_sched, effect, tol[0], tol[1], verdict)


def _checkpoints(sim: Simulation, flow: Curves, schedule: Curves | None) -> list[dict]:
    """At the first record time where the flow theory's training error falls below each level
    of CHECKPOINT_LEVELS: simulation, flow and schedule values of gamma, S, train_error, loss,
    and the relative errors against the reference theory."""
    out = []
    ref = schedule if schedule is not None else flow
    for level in CHECKPOINT_LEVELS:
        below = np.flatnonzero(flow.train_error < level)
        if below.size == 0:
            continue
        i = int(below[0])
        row: dict[str, Any] = {"level": level, "t": float(sim.t[i])}
        for q in CURVES:
            s, th = float(getattr(sim, q)[i]), float(getattr(ref, q)[i])
            row[q] = {"simulation": s, "flow": float(getattr(flow, q)[i])}
            if schedule is not None:
                row[q]["schedule"] = float(getattr(schedule, q)[i])
            row[q]["relative_error"] = abs(s - th) / abs(th) if th != 0 else None
        out.append(row)
    return out


def _breakdown(
    sim: Simulation, ref: Curves, window: np.ndarray, tol: float
) -> list[str]:
    """Where the simulation's gamma or training error first leaves the reference theory by more
    than its tolerance, outside the window."""
    out = []
    for q in ("gamma", "train_error"):
        s, th = getattr(sim, q), getattr(ref, q)
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


def compare(
    sim: Simulation | str | Path,
    theory: Theory | str | Path | None = None,
    on_schedule: bool = True,
) -> Comparison:
    """Compare a simulation with a theory (a file, a :class:`Theory`, or ``None``: computed
    for the simulation's configuration).

    With ``on_schedule`` (ReLU theory, Euler simulation) the theory is also pushed through the
    simulation's step schedule and initial sample moments, and the verdicts use that version.
    A theory made for other parameters is compared all the same, with a
    :class:`CompareWarning` naming the fields that differ.
    """
    if not isinstance(sim, Simulation):
        sim = read_simulation(sim)
    if theory is None:
        theory = compute_theory(sim.config, sim.t)
    elif not isinstance(theory, Theory):
        theory = read_theory(theory)
    differing = differing_fields(sim.config, theory.config)
    if differing:
        names = ", ".join(f"{k} (simulation {s}, theory {t})" for k, (s, t) in differing.items())
        warnings.warn(
            f"the theory was made for other parameters than the simulation: {names}",
            CompareWarning,
            stacklevel=2,
        )
    notes = []
    if on_schedule and theory.config.activation.strip() != "relu":
        notes.append("the theory on the simulation's schedule exists for ReLU only: verdicts "
                     "against the flow")
        on_schedule = False
    if on_schedule and sim.config.integrator != "euler":
        notes.append(f"the simulation integrates with {sim.config.integrator}, the schedule "
                     "theory is an explicit Euler push: verdicts against the flow")
        on_schedule = False
    if sim.config.online or sim.config.batch:
        mode = "online" if sim.config.online else f"mini-batch (batch = {sim.config.batch})"
        notes.append(f"the simulation trains {mode}; the theory is the full-batch mean-field "
                     "limit, so the verdicts include the gradient noise of the batches")
    # the finite-size indicators (validity ~ 1/sqrt(N), spread of f ~ 1/sqrt(M)) are those of
    # the simulation's N and M, whatever sizes the theory file was made for
    sized = theory.config.replace(M=sim.config.M, N=sim.config.N, batch=0, record_nodes=0)
    flow = resample(theory.curves, sim.t)
    if flow.validity is not None:
        flow = replace(flow, validity=flow.validity * math.sqrt(theory.config.N / sim.config.N))
    flow = with_edge_spread(flow, sized)
    schedule = (with_edge_spread(schedule_theory(sized, sim), sized) if on_schedule else None)
    ref = schedule if schedule is not None else flow
    window, limits = comparison_window(sim, ref)
    tol = tolerances(sim.config)
    if np.isnan(flow.gamma[sim.t > 0]).any():
        notes.append("the theory does not cover the whole simulated time range; the comparison "
                     "uses the overlap only")

    # S is measured by regression over examples: its noise is absolute (~ f_spread /
    # sqrt(n_test)), so its relative error counts once S|x_par| reaches h for some examples
    resolved = {"S": window & (ref.train_error < S_RESOLVED)}
    metrics = {
        q: _curve_metric(q, getattr(sim, q), getattr(flow, q),
                         None if schedule is None else getattr(schedule, q),
                         resolved.get(q, window), tol[q])
        for q in CURVES
    }
    a_flow, w_flow = node_trajectories(sim.a0, sim.w_par0, flow)
    a_ref, w_ref = node_trajectories(sim.a0, sim.w_par0, ref)
    for q, s, fl, rf in (("a", sim.a, a_flow, a_ref), ("w_par", sim.w_par, w_flow, w_ref)):
        metrics[q] = _curve_metric(q, s, fl, None if schedule is None else rf, window, tol[q],
                                   measure=relative_rms)
    slope_sim = log_slope(sim.t, sim.gamma)
    metrics["slope"] = _curve_metric(
        "slope", slope_sim, log_slope(sim.t, flow.gamma),
        None if schedule is None else log_slope(sim.t, schedule.gamma),
        window & np.isfinite(slope_sim), tol["slope"], measure=relative_rms,
    )
    h = theory.config.h
    out_flow, _ = fraction_outside_band(sim, flow, h, window)
    out_ref, n_sat = fraction_outside_band(sim, ref, h, window)
    metrics["x_par_band"] = Metric(
        "x_par_band", out_ref, out_flow, out_ref if schedule is not None else None, None,
        tol["x_par_band"][0], tol["x_par_band"][1] + f" ({n_sat} examples)",
        "n/a" if out_ref is None else ("agree" if out_ref <= tol["x_par_band"][0]
                                       else "disagree"),
    )
    bins_flow = binned_x_par_error(x_par_bins(sim, flow), window, sim.t)
    bins_ref = binned_x_par_error(x_par_bins(sim, ref), window, sim.t)
    metrics["x_par"] = Metric(
        "x_par", bins_ref, bins_flow, bins_ref if schedule is not None else None, None,
        tol["x_par"][0], tol["x_par"][1],
        "n/a" if bins_ref is None else ("agree" if bins_ref <= tol["x_par"][0] else "disagree"),
    )
    if ref.f_spread is None and ref.edge_spread is None:
        notes.append("the theory gives no finite-M spread of f: the x_par band is the line X")
    limits += _breakdown(sim, ref, window, tol["gamma"][0])
    return Comparison(
        sim=sim, theory=theory, flow=flow, schedule=schedule, window=window,
        metrics=metrics, checkpoints=_checkpoints(sim, flow, schedule), limits=limits,
        differing=differing, a_theory=a_ref, w_par_theory=w_ref,
        band=band_edges(ref, h), notes=notes,
    )


# --------------------------------------------------------------------------- reports


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def report_dict(cmp: Comparison) -> dict[str, Any]:
    """The ``--json`` report: ``{"verdict", "metrics", "checkpoints", ...}``."""
    return _clean({
        "verdict": cmp.verdict,
        "metrics": {k: m.to_dict() for k, m in cmp.metrics.items()},
        "checkpoints": cmp.checkpoints,
        "reference": cmp.reference.label,
        "window": [float(cmp.sim.t[cmp.window].min()), float(cmp.sim.t[cmp.window].max())]
        if cmp.window.any() else None,
        "limits": cmp.limits,
        "differing_parameters": {k: list(v) for k, v in cmp.differing.items()},
        "notes": cmp.notes,
        "simulation": cmp.sim.path,
        "theory": cmp.theory.source,
    })


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def format_report(cmp: Comparison) -> str:
    """Human-readable table of the metrics, checkpoints and limits."""
    lines = [
        f"simulation: {cmp.sim.path}",
        f"theory:     {cmp.theory.source}"
        + ("" if cmp.schedule is None else " (verdicts against it pushed through the "
           "simulation's Euler schedule and initial sample moments)"),
    ]
    if cmp.window.any():
        tw = cmp.sim.t[cmp.window]
        lines.append(f"window:     {tw.min():.4g} <= t <= {tw.max():.4g} "
                     f"({int(cmp.window.sum())} record times)")
    for k, (s, t) in cmp.differing.items():
        lines.append(f"WARNING: {k} differs: simulation {s}, theory {t}")
    lines.append("")
    head = f"{'metric':<12}{'vs theory':>11}{'vs flow':>10}{'sched.eff':>11}{'tol':>8}  verdict"
    lines += [head, "-" * len(head)]
    for name, m in cmp.metrics.items():
        lines.append(
            f"{name:<12}{_fmt(m.value):>11}{_fmt(m.value_flow):>10}"
            f"{_fmt(m.schedule_effect):>11}{_fmt(m.tolerance):>8}  {m.verdict}"
        )
    if cmp.checkpoints:
        lines += ["", "checkpoints (theory training error first below level):",
                  f"{'level':>6}{'t':>10}{'gamma sim':>11}{'gamma th':>10}"
                  f"{'err sim':>9}{'err th':>9}"]
        ref = "schedule" if cmp.schedule is not None else "flow"
        for row in cmp.checkpoints:
            lines.append(
                f"{row['level']:>6g}{row['t']:>10.4g}{row['gamma']['simulation']:>11.4g}"
                f"{row['gamma'][ref]:>10.4g}{row['train_error']['simulation']:>9.3g}"
                f"{row['train_error'][ref]:>9.3g}"
            )
    if cmp.limits:
        lines += ["", "where the theory stops holding:"] + [f"  - {s}" for s in cmp.limits]
    for note in cmp.notes:
        lines.append(f"note: {note}")
    lines += ["", "tolerances:"] + [f"  {k}: {m.reason}" for k, m in cmp.metrics.items()]
    lines += ["", f"verdict: {cmp.verdict}"]
    return "\n".join(lines)


def write_comparison(cmp: Comparison, path: str | Path) -> None:
    """A meanfield file of kind ``comparison``: simulation and theory curves on the
    simulation grid, node trajectories, satisfied examples, the ``x_par`` bins; metrics,
    checkpoints and verdict as global attributes (JSON)."""
    sim, ref, flow = cmp.sim, cmp.reference, cmp.flow
    sat = np.isfinite(sim.t_sat)
    bins = x_par_bins(sim, ref)
    with atomic_h5(path) as f:
        set_attrs(f, provenance("comparison", sim.config.to_json(), seed=sim.config.seed))
        report = report_dict(cmp)
        set_attrs(f, {
            "verdict": cmp.verdict,
            "metrics": json.dumps(report["metrics"]),
            "checkpoints": json.dumps(report["checkpoints"]),
            "limits": json.dumps(cmp.limits),
            "theory_config": cmp.theory.config.to_json(),
            "theory_source": cmp.theory.source,
            "simulation_source": sim.path,
            "reference": ref.label,
            "asymptote_c": cmp.theory.asymptote_c,
            "gamma_rate0": initial_rate(cmp.theory.curves),
            "h": cmp.theory.config.h,
        })
        time_units = {"units": "mean-field time"}
        write_coordinate(f, "t", sim.t, {**time_units, "long_name": "simulation record time"})
        write_coordinate(f, "node", np.arange(sim.a.shape[1]))
        write_coordinate(f, "example", np.flatnonzero(sat))
        write_coordinate(f, "x_par_bin", np.arange(len(bins["t_sat"])))
        write_variable(f, "window", cmp.window.astype(np.int8), ["t"],
                       {"long_name": "1 where the time counts in the verdict"})
        for q in CURVES:
            write_variable(f, f"{q}_simulation", getattr(sim, q), ["t"])
            write_variable(f, f"{q}_theory", getattr(flow, q), ["t"],
                           {"long_name": f"{q}, theory (flow)"})
            if cmp.schedule is not None:
                write_variable(f, f"{q}_schedule", getattr(cmp.schedule, q), ["t"],
                               {"long_name": f"{q}, theory on the simulation's schedule"})
        if sim.test_error is not None:
            write_variable(f, "test_error_simulation", sim.test_error, ["t"])
        write_variable(f, "X_theory", ref.X, ["t"], {"long_name": "edge of the unsatisfied set"})
        spread = ref.edge_spread if ref.edge_spread is not None else ref.f_spread
        if spread is not None:
            write_variable(f, "f_spread_edge", spread, ["t"], {
                "long_name": "finite-M std of f at the edge |x_par| = X (the band's sigma)"})
        write_variable(f, "band_lo", cmp.band[0], ["t"])
        write_variable(f, "band_hi", cmp.band[1], ["t"])
        write_variable(f, "slope_simulation", log_slope(sim.t, sim.gamma), ["t"])
        write_variable(f, "slope_theory", log_slope(sim.t, ref.gamma), ["t"])
        write_variable(f, "a_simulation", sim.a, ["t", "node"])
        write_variable(f, "w_par_simulation", sim.w_par, ["t", "node"])
        write_variable(f, "a_theory", cmp.a_theory, ["t", "node"])
        write_variable(f, "w_par_theory", cmp.w_par_theory, ["t", "node"])
        write_variable(f, "t_sat", sim.t_sat[sat], ["example"], time_units)
        write_variable(f, "x_par", sim.x_par[sat], ["example"])
        for k, v in bins.items():
            write_variable(f, f"bin_{k}", v, ["x_par_bin"])

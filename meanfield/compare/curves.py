"""Theory curves on the simulation's record grid: what the comparison measures against.

A :class:`Curves` is a theory (:class:`meanfield.files.theory.TheoryResult`) reduced to what
the comparison needs, on one time grid:

- the *flow*: the theory resampled onto the simulation's record times (:func:`resample`,
  linear in ``asinh(t / t_1)``);
- the *schedule* theory: the theory pushed through the simulation's own explicit-Euler step
  schedule and its own initial sample moments (:func:`schedule_theory`,
  ``meanfield.theory.compute_on_schedule``), sampled at the record times;
- with :func:`with_edge_spread`, the finite-``M`` standard deviation of ``f`` at the edge
  ``|x_par| = X(t)`` (ReLU theory), which sets the width of the ``|x_par|`` band of
  :func:`band_edges`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from analytic.activations import is_relu
from meanfield.config import Config
from meanfield.files.simulation import SimulationResult
from meanfield.files.theory import TheoryResult
from meanfield.schedule import schedule

#: half-width of the finite-M band, in standard deviations of f
BAND_K = 3.0


@dataclass(frozen=True)
class Curves:
    """Theory curves on a time grid (``validity`` and the spreads may be absent).

    ``label``: ``flow``, ``schedule`` or ``theory file`` (a flow read from a file).
    ``edge_spread``: std of ``f`` over draws of ``M`` nodes at the edge ``|x_par| = X(t)``;
    ``f_spread``: the same averaged over ``x``; ``gamma_minus``: ``gamma_-`` of an Euler push
    (decaying branch ``a - w_par``).
    """

    label: str
    t: np.ndarray
    gamma: np.ndarray
    S: np.ndarray
    X: np.ndarray
    train_error: np.ndarray
    loss: np.ndarray
    validity: np.ndarray | None = None
    f_spread: np.ndarray | None = None
    edge_spread: np.ndarray | None = None
    gamma_minus: np.ndarray | None = None


def curves_of(result: TheoryResult, label: str) -> Curves:
    """The curves of a theory result (float64 arrays)."""

    def get(name: str) -> np.ndarray | None:
        value = getattr(result, name)
        return None if value is None else np.asarray(value, dtype=np.float64)

    return Curves(label=label, t=get("t"), gamma=get("gamma"), S=get("S"), X=get("X"),
                  train_error=get("train_error"), loss=get("loss"), validity=get("validity"),
                  f_spread=get("f_spread"), gamma_minus=get("gamma_minus"))


def warp(t: np.ndarray, t1: float) -> np.ndarray:
    """``asinh(t / t1)``: linear near 0, ``log t`` at large t; the interpolation variable of
    log-spaced grids that include ``t = 0``."""
    return np.arcsinh(np.asarray(t, dtype=np.float64) / t1)


def resample(curves: Curves, t: np.ndarray) -> Curves:
    """``curves`` linearly interpolated in ``asinh(t / t_1)`` onto ``t`` (``t_1`` the first
    positive time of ``curves``). Times outside the curves' range get NaN."""
    positive = curves.t[curves.t > 0]
    t1 = float(positive[0]) if positive.size else 1.0
    src, dst = warp(curves.t, t1), warp(t, t1)

    def interp(y: np.ndarray | None) -> np.ndarray | None:
        if y is None or y.shape != curves.t.shape:
            return None
        return np.interp(dst, src, y, left=np.nan, right=np.nan)

    return Curves(
        label=curves.label, t=np.asarray(t, dtype=np.float64), gamma=interp(curves.gamma),
        S=interp(curves.S), X=interp(curves.X), train_error=interp(curves.train_error),
        loss=interp(curves.loss), validity=interp(curves.validity),
        f_spread=interp(curves.f_spread), gamma_minus=interp(curves.gamma_minus),
    )


def schedule_theory(config: Config, sim: SimulationResult) -> Curves:
    """The theory for ``config`` pushed through the simulation's Euler step schedule and its
    initial sample moments, sampled at the simulation's record times."""
    from meanfield import theory

    steps, record = schedule(sim.config)
    result = theory.compute_on_schedule(config, steps,
                                        init_moments=sim.init_moments.second_moments(),
                                        record=record)
    return curves_of(result, "schedule")


def initial_rate(curves: Curves | TheoryResult) -> float:
    """The theory's initial rate ``dgamma/dt`` at ``t = 0``, as ``gamma(t_1) / t_1`` at the
    first positive time of its own grid (``gamma`` is smooth with ``gamma(0) = 0``, so the
    error is ``O(t_1)`` relative)."""
    i = int(np.argmax(curves.t > 0))
    return float(curves.gamma[i] / curves.t[i])


def node_trajectories(a0: np.ndarray, w0: np.ndarray, curves: Curves
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ReLU trajectories ``(a, w_par)`` of shape ``[t, node]`` along ``curves``
    (``meanfield.theory.node_trajectories``; an Euler push uses its own ``gamma_-`` for the
    decaying branch ``a - w_par``)."""
    from meanfield import theory

    return theory.node_trajectories(np.asarray(a0), np.asarray(w0), curves.gamma,
                                    curves.gamma_minus)


def with_edge_spread(curves: Curves, config: Config) -> Curves:
    """``curves`` with ``edge_spread``: the finite-``M`` standard deviation of ``f`` at
    ``|x_par| = X(t)`` (``meanfield.theory.f_spread_x``, over draws of ``M`` nodes and of
    ``x_perp``), for the ReLU theory; other activations keep ``f_spread`` only."""
    if not is_relu(config.activation):
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

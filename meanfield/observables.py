"""Measurements on a network state (pure functions, float64 results).

Notation of :mod:`meanfield.config`: ``f(x) = (alpha/M) sum_i a_i sigma(w_i.x/sqrt d)``,
teacher ``e_1``, ``w_par_i = W[i, 0]``, ``w_perp_i = W[i, 1:]``; initial values carry a ``0``.

- ``gamma`` (:func:`gamma_from_nodes`): for ReLU the flow moves every node on the hyperbola
  ``a + w_par = (a0 + w_par0) e^gamma`` with one scalar ``gamma(t)``; the least-squares
  estimate of ``e^gamma`` over the nodes is ``sum (a+w_par)(a0+w_par0) / sum (a0+w_par0)^2``.
- ``S`` (:func:`output_slope`): least-squares slope of ``f(x_mu)`` against ``x_par_mu`` (with an
  intercept), ``S = cov(f, x_par) / var(x_par)`` over the sample.
- Unsatisfied fraction: ``y f < h``; misclassified fraction: ``y f <= 0``.
- Invariant: ``a_i^2 - |w_i|^2`` is conserved by the flow of any positively 1-homogeneous
  activation (ReLU, leaky ReLU, linear), since ``sigma'(z) z = sigma(z)`` gives
  ``a_i da_i/dt = w_i . dw_i/dt``.
- Early-phase measures (Frankle, Schwab & Morcos 2020): relative distance from initialisation
  ``|theta - theta0|_F / |theta0|_F`` and the fraction of first-layer weights whose sign changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gamma_from_nodes(
    a: np.ndarray, w_par: np.ndarray, a0: np.ndarray, w_par0: np.ndarray
) -> float:
    """``log(sum (a+w_par)(a0+w_par0) / sum (a0+w_par0)^2)``; NaN when the ratio is not
    positive (possible only away from the ReLU flow) or the denominator vanishes."""
    u0 = np.asarray(a0, np.float64) + np.asarray(w_par0, np.float64)
    u = np.asarray(a, np.float64) + np.asarray(w_par, np.float64)
    den = float(u0 @ u0)
    num = float(u @ u0)
    if den <= 0 or num <= 0:
        return float("nan")
    return float(np.log(num / den))


def output_slope(f: np.ndarray, x_par: np.ndarray) -> float:
    """Least-squares slope ``S`` of ``f`` on ``x_par`` with intercept; NaN for fewer than two
    distinct ``x_par``."""
    x = np.asarray(x_par, np.float64)
    g = np.asarray(f, np.float64)
    if x.size < 2:
        return float("nan")
    xc = x - x.mean()
    den = float(xc @ xc)
    if den == 0:
        return float("nan")
    return float(xc @ (g - g.mean())) / den


def unsatisfied_fraction(f: np.ndarray, y: np.ndarray, h: float) -> float:
    """Fraction of examples with ``y f < h`` (NaN for an empty set)."""
    if np.size(f) == 0:
        return float("nan")
    return float(np.mean(np.asarray(y, np.float64) * np.asarray(f, np.float64) < h))


def misclassified_fraction(f: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples with ``y f <= 0`` (a zero output counts as wrong; NaN if empty)."""
    if np.size(f) == 0:
        return float("nan")
    return float(np.mean(np.asarray(y, np.float64) * np.asarray(f, np.float64) <= 0))


def w_perp_norm(W: np.ndarray) -> np.ndarray:
    """``|w_perp_i| = |W[i, 1:]|`` per node (float64)."""
    return np.linalg.norm(np.asarray(W[:, 1:], np.float64), axis=1)


def invariant(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``a_i^2 - |w_i|^2`` per node (float64)."""
    a64 = np.asarray(a, np.float64)
    W64 = np.asarray(W, np.float64)
    return a64 * a64 - np.einsum("ij,ij->i", W64, W64)


def invariant_drift(a: np.ndarray, W: np.ndarray, a0: np.ndarray, W0: np.ndarray) -> float:
    """``max_i |(a_i^2 - |w_i|^2) - (a0_i^2 - |w0_i|^2)|`` (units: weight^2)."""
    return float(np.max(np.abs(invariant(a, W) - invariant(a0, W0))))


def relative_distance(x: np.ndarray, x0: np.ndarray) -> float:
    """``|x - x0|_F / |x0|_F`` (NaN if ``x0 = 0``)."""
    x0_64 = np.asarray(x0, np.float64)
    ref = float(np.linalg.norm(x0_64))
    if ref == 0:
        return float("nan")
    return float(np.linalg.norm(np.asarray(x, np.float64) - x0_64)) / ref


def sign_flip_fraction(W: np.ndarray, W0: np.ndarray) -> float:
    """Fraction of entries with ``sign(W) != sign(W0)`` (first-layer weights)."""
    return float(np.mean(np.signbit(W) != np.signbit(W0)))


@dataclass(frozen=True)
class InitialMoments:
    """Sample moments of the initial nodes over all ``M`` of them (``w_par0 = W0[:, 0]``):
    means and variances of ``a0`` and ``w_par0``, ``<a0 w_par0>``, ``<|w_perp0|^2>`` and
    ``<(a0 + w_par0)^2>``. The schedule theory uses the second moments of a run's own sample."""

    a_mean: float
    a_var: float
    w_par_mean: float
    w_par_var: float
    a_w_par_mean: float
    w_perp_norm2_mean: float
    u0_sq_mean: float

    def second_moments(self) -> dict[str, float]:
        """``{"a2": <a0^2>, "w2": <w_par0^2>, "aw": <a0 w_par0>}``."""
        return {"a2": self.a_var + self.a_mean ** 2,
                "w2": self.w_par_var + self.w_par_mean ** 2,
                "aw": self.a_w_par_mean}


def initial_moments(a0: np.ndarray, W0: np.ndarray) -> InitialMoments:
    """The :class:`InitialMoments` of the nodes ``(a0, W0)`` (float64 sums)."""
    a = a0.astype(np.float64)
    wp = W0[:, 0].astype(np.float64)
    perp2 = w_perp_norm(W0) ** 2
    return InitialMoments(
        a_mean=float(a.mean()), a_var=float(a.var()),
        w_par_mean=float(wp.mean()), w_par_var=float(wp.var()),
        a_w_par_mean=float((a * wp).mean()),
        w_perp_norm2_mean=float(perp2.mean()),
        u0_sq_mean=float(((a + wp) ** 2).mean()),
    )

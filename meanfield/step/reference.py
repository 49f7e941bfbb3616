"""Plain NumPy reference of the step: obvious, readable, memory-hungry.

Builds the full ``(N, M)`` pre-activation matrix; the velocities and losses are those of
:mod:`meanfield.step`. Used by the tests and the benchmarks as an independent route.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from meanfield.step.params import (
    ERF,
    LEAKY_RELU,
    LINEAR,
    RELU,
    TANH,
    TWO_OVER_SQRT_PI,
    StepParams,
)

Pair = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _relu(s: float) -> Pair:
    return (lambda u: np.maximum(u, 0)), (lambda u: (u > 0).astype(u.dtype))


def _leaky_relu(s: float) -> Pair:
    return ((lambda u: np.where(u > 0, u, u.dtype.type(s) * u)),
            (lambda u: np.where(u > 0, 1.0, s).astype(u.dtype)))


def _erf(s: float) -> Pair:
    from scipy.special import erf

    c = TWO_OVER_SQRT_PI
    return erf, (lambda u: (c * np.exp(-u * u)).astype(u.dtype))


def _tanh(s: float) -> Pair:
    return np.tanh, (lambda u: 1 - np.tanh(u) ** 2)


def _linear(s: float) -> Pair:
    return (lambda u: u), (lambda u: np.ones_like(u))


NUMPY_ACTIVATIONS: dict[int, Callable[[float], Pair]] = {
    RELU: _relu, LEAKY_RELU: _leaky_relu, ERF: _erf, TANH: _tanh, LINEAR: _linear,
}
"""Per activation code: ``slope -> (sigma, sigma')`` as NumPy callables."""


def _generic(activation: str) -> Pair:
    """``(sigma, sigma')`` of an expression, through sympy's ``lambdify``."""
    import sympy

    from analytic.activations import X, get_activation

    act = get_activation(activation)
    f = sympy.lambdify(X, act.expr, modules=["scipy", "numpy"])
    df = sympy.lambdify(X, act.derivative(1), modules=["scipy", "numpy"])

    def sigma(u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(f(u), u.shape).astype(u.dtype)

    def dsigma(u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(df(u), u.shape).astype(u.dtype)

    return sigma, dsigma


def numpy_activation(params: StepParams) -> Pair:
    """NumPy callables ``(sigma, sigma')`` of the activation."""
    make = NUMPY_ACTIVATIONS.get(params.code)
    return _generic(params.activation) if make is None else make(params.slope)


def numpy_loss(params: StepParams, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss ``l(m)`` and derivative ``l'(m)`` (float64) of the signed outputs ``m = y f``."""
    m = m.astype(np.float64)
    if params.loss == "hinge":
        return np.maximum(params.h - m, 0.0), np.where(m < params.h, -1.0, 0.0)
    if params.loss == "squared":
        return 0.5 * (1.0 - m) ** 2, m - 1.0
    e = np.exp(-np.abs(m))
    loss = np.maximum(-m, 0.0) + np.log1p(e)
    dl = np.where(m >= 0, -e / (1.0 + e), -1.0 / (1.0 + e))
    return loss, dl


def numpy_velocity(
    X: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    W: np.ndarray,
    params: StepParams,
    v_a_out: np.ndarray,
    v_W_out: np.ndarray,
) -> tuple[float, int]:
    """Fills ``v_a_out``, ``v_W_out`` with the velocities of :mod:`meanfield.step` over the
    rows of ``X``; returns ``(L, n_unsat)``."""
    sigma, dsigma = numpy_activation(params)
    N, d = X.shape
    M = a.shape[0]
    Z = X @ W.T / math.sqrt(d)
    S = sigma(Z)
    f = (params.alpha / M) * (S.astype(np.float64) @ a.astype(np.float64))
    m = y * f
    loss, dl = numpy_loss(params, m)
    g = (-dl * y).astype(X.dtype)  # -l'(y f) y
    v_a_out[...] = (params.alpha / N) * (S.T @ g)
    G = dsigma(Z) * g[:, None]
    v_W_out[...] = (params.alpha / (N * math.sqrt(d))) * a[:, None] * (G.T @ X)
    return float(loss.mean()), int(np.count_nonzero(m < params.h))


def numpy_outputs(a: np.ndarray, W: np.ndarray, X: np.ndarray, params: StepParams) -> np.ndarray:
    """``f(x_mu)`` (float64) for every row of ``X`` (plain NumPy)."""
    sigma, _ = numpy_activation(params)
    Z = X @ W.T / math.sqrt(X.shape[1])
    return (params.alpha / a.shape[0]) * (sigma(Z).astype(np.float64) @ a.astype(np.float64))

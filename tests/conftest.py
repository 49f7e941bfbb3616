"""Shared small problems of the tests (as fixtures returning plain functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest


def _problem(N, M, d, dtype="float64", seed=0):
    """Gaussian inputs ``X`` (N, d), teacher labels ``y = sign(x_0)``, Gaussian ``a``, ``W``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)).astype(dtype)
    y = np.where(X[:, 0] >= 0, 1.0, -1.0).astype(dtype)
    a = rng.standard_normal(M).astype(dtype)
    W = rng.standard_normal((M, d)).astype(dtype)
    return X, y, a, W


def _sigma(act, u):
    """Activations written independently of :mod:`meanfield.step` (float64)."""
    from scipy.special import erf

    return {
        "relu": lambda: np.maximum(u, 0.0),
        "leaky_relu:0.1": lambda: np.where(u > 0, u, 0.1 * u),
        "erf": lambda: erf(u),
        "tanh": lambda: np.tanh(u),
        "linear": lambda: u,
        "x**3/3 + x": lambda: u**3 / 3 + u,
    }[act]()


def _loss(loss, m, h):
    if loss == "hinge":
        return np.maximum(h - m, 0.0)
    if loss == "squared":
        return 0.5 * (1.0 - m) ** 2
    return np.logaddexp(0.0, -m)


def _plain_loss(X, y, a, W, act, loss, h, alpha):
    """L = (1/N) sum l(y f), plain float64 NumPy."""
    d = X.shape[1]
    f = alpha / a.shape[0] * (_sigma(act, X @ W.T / math.sqrt(d)) @ a)
    return float(np.mean(_loss(loss, y * f, h)))


@pytest.fixture
def problem():
    """``problem(N, M, d, dtype="float64", seed=0) -> (X, y, a, W)``."""
    return _problem


@pytest.fixture
def sigma():
    """``sigma(act, u)``: the activations of the step tests, in plain NumPy (float64)."""
    return _sigma


@pytest.fixture
def plain_loss():
    """``plain_loss(X, y, a, W, act, loss, h, alpha) -> L`` in plain float64 NumPy."""
    return _plain_loss

"""Tests of meanfield.step.reference (plain NumPy): against central finite differences of a
loss written independently, and against independent forward outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step.params import StepParams
from meanfield.step.reference import numpy_outputs, numpy_velocity

ACTS = ["relu", "leaky_relu:0.1", "erf", "tanh", "linear", "x**3/3 + x"]
LOSSES = ["hinge", "squared", "logistic"]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_reference_matches_finite_differences(act, loss, problem, sigma, plain_loss,
                                              fd_velocity):
    M, d, h, alpha = 5, 4, 0.3, 1.7
    X, y, a, W = problem(60, M, d, seed=1)
    Z = X @ W.T / math.sqrt(d)
    f = alpha / M * (sigma(act, Z) @ a)
    # away from the kinks (see tests/test_step_engine.py)
    keep = (np.min(np.abs(Z), axis=1) > 1e-3) & (np.abs(y * f - h) > 1e-3)
    X, y = X[keep], y[keep]
    p = StepParams(act, loss, h, alpha, "float64")
    va, vW = np.empty(M), np.empty((M, d))
    L, n_unsat = numpy_velocity(X, y, a, W, p, va, vW)
    assert L == pytest.approx(plain_loss(X, y, a, W, act, loss, h, alpha), rel=1e-12)
    assert n_unsat == int(np.sum(y * f[keep] < h))
    v = np.concatenate([va, vW.ravel()])
    np.testing.assert_allclose(v, fd_velocity(X, y, a, W, act, loss, h, alpha), rtol=0,
                               atol=1e-6 * np.max(np.abs(v)))


@pytest.mark.parametrize("act", ACTS)
def test_reference_outputs(act, problem, sigma):
    X, _, a, W = problem(300, 7, 5, seed=2)
    p = StepParams(act, "hinge", 1.0, 1.3, "float64")
    ref = 1.3 / 7 * (sigma(act, X @ W.T / math.sqrt(5)) @ a)
    np.testing.assert_allclose(numpy_outputs(a, W, X, p), ref, rtol=0,
                               atol=1e-13 * np.abs(ref).max())

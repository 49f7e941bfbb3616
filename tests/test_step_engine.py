"""Tests of meanfield.step.engine: velocities of the blocked loop, blocking, outputs, the BLAS
row period.

Independent routes: central finite differences of a loss written in plain NumPy
(``tests/conftest.py``); the plain-NumPy reference ``numpy_velocity``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step import FullBatchStepper, StepParams, dense_velocity, numpy_velocity
from meanfield.step.engine import row_period

ACTS = ["relu", "leaky_relu:0.1", "erf", "tanh", "linear", "x**3/3 + x"]
LOSSES = ["hinge", "squared", "logistic"]


@pytest.mark.parametrize("velocity", [dense_velocity, numpy_velocity],
                         ids=["engine", "reference"])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_velocity_matches_finite_differences(velocity, act, loss, problem, sigma, plain_loss,
                                             fd_velocity):
    """The blocked engine and the NumPy reference, each against central differences of the
    plain loss written in conftest."""
    M, d, h, alpha = 5, 4, 0.3, 1.7
    X, y, a, W = problem(60, M, d, seed=1)
    # keep away from the kinks: drop examples with some |z| < 1e-3 (relu family) or
    # |y f - h| < 1e-3 (hinge), far beyond the finite-difference step 1e-6 times the
    # parameter sensitivity (O(|x|) ~ 3)
    Z = X @ W.T / math.sqrt(d)
    f = alpha / M * (sigma(act, Z) @ a)
    keep = (np.min(np.abs(Z), axis=1) > 1e-3) & (np.abs(y * f - h) > 1e-3)
    X, y, Z, f = X[keep], y[keep], Z[keep], f[keep]
    N = X.shape[0]
    assert N >= 40
    p = StepParams(act, loss, h, alpha, "float64")
    va, vW = np.empty(M), np.empty((M, d))
    L, n_unsat = velocity(X, y, a, W, p, va, vW)
    assert L == pytest.approx(plain_loss(X, y, a, W, act, loss, h, alpha), rel=1e-12)
    assert n_unsat == int(np.sum(y * f < h))
    v = np.concatenate([va, vW.ravel()])
    # v = -M dL/dtheta; central differences: truncation O(eps^2) ~ 1e-12, rounding
    # ~ 1e-16 / eps = 1e-10 relative to L: 1e-6 of the largest component is a wide margin
    np.testing.assert_allclose(v, fd_velocity(X, y, a, W, act, loss, h, alpha), rtol=0,
                               atol=1e-6 * np.max(np.abs(v)))


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("act", ACTS)
def test_numba_matches_numpy_reference(dtype, tol, act, problem):
    N, M, d = 1500, 24, 9
    X, y, a, W = problem(N, M, d, dtype, seed=2)
    for loss in LOSSES:
        p = StepParams(act, loss, 0.05, 1.3, dtype)
        # the float64 NumPy reference on the same (rounded) inputs
        p64 = StepParams(act, loss, 0.05, 1.3, "float64")
        ra, rW = np.empty(M), np.empty((M, d))
        L0, n0 = numpy_velocity(*(v.astype(np.float64) for v in (X, y, a, W)), p64, ra, rW)
        va, vW = np.empty(M, dtype), np.empty((M, d), dtype)
        L1, n1 = dense_velocity(X, y, a, W, p, va, vW, block=500)
        # float32: sums of N = 1500 terms in single precision (u = 6e-8, random-walk growth):
        # 1e-5 of the largest component; float64: same with u = 1.1e-16 -> 1e-12
        np.testing.assert_allclose(va, ra, rtol=0, atol=tol * np.max(np.abs(ra)))
        np.testing.assert_allclose(vW, rW, rtol=0, atol=tol * np.max(np.abs(rW)))
        assert L1 == pytest.approx(L0, rel=tol)
        # counts can differ only for outputs within rounding of the threshold
        assert abs(n1 - n0) <= (0 if dtype == "float64" else 2)


def test_blocking_changes_nothing_beyond_rounding(problem):
    N, M, d = 2000, 30, 8
    X, y, a, W = problem(N, M, d, seed=3)
    p = StepParams("relu", "hinge", 0.1, 1.0, "float64")
    out = []
    for block in (7, 64, 500, 2000):
        va, vW = np.empty(M), np.empty((M, d))
        L, n = dense_velocity(X, y, a, W, p, va, vW, block=block)
        out.append((L, n, va, vW))
    for L, n, va, vW in out[1:]:
        assert n == out[0][1]
        assert L == pytest.approx(out[0][0], rel=1e-13)
        # only the grouping of the same float64 sums changes: 1e-12 relative
        np.testing.assert_allclose(va, out[0][2], rtol=0, atol=1e-12 * np.abs(va).max())
        np.testing.assert_allclose(vW, out[0][3], rtol=0, atol=1e-12 * np.abs(vW).max())


def test_logistic_is_stable_at_large_outputs(problem):
    N, M, d = 200, 10, 5
    X, y, a, W = problem(N, M, d, seed=4)
    alpha = 3e4  # |f| up to ~1e4: exp(|f|) overflows, log(1 + exp(-m)) must not
    p = StepParams("relu", "logistic", 1.0, alpha, "float64")
    va, vW = np.empty(M), np.empty((M, d))
    L, _ = dense_velocity(X, y, a, W, p, va, vW)
    f = alpha / M * (np.maximum(X @ W.T / math.sqrt(d), 0) @ a)
    m = y * f
    assert np.max(np.abs(m)) > 800
    assert np.isfinite(L) and np.all(np.isfinite(va)) and np.all(np.isfinite(vW))
    # independent stable route: logaddexp; for m < -40, l = -m to 1e-17 relative
    assert L == pytest.approx(np.mean(np.logaddexp(0.0, -m)), rel=1e-12)
    # -l'(m) = sigmoid(-m) = 1 - sigmoid(m) via scipy.special.expit
    from scipy.special import expit

    g = expit(-m) * y
    Z = X @ W.T / math.sqrt(d)
    ref_a = alpha / N * (np.maximum(Z, 0).T @ g)
    np.testing.assert_allclose(va, ref_a, rtol=0, atol=1e-12 * np.abs(ref_a).max())


def test_outputs_and_generic_activation(problem, sigma):
    N, M, d = 700, 12, 6
    X, y, a, W = problem(N, M, d, seed=7)
    for act in ("tanh", "x**3/3 + x"):
        p = StepParams(act, "hinge", 1.0, 1.5, "float64")
        st = FullBatchStepper(X, y, p, threads=1, block=100)
        ref = 1.5 / M * (sigma(act, X @ W.T / math.sqrt(d)) @ a)
        np.testing.assert_allclose(st.outputs(a, W), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
        np.testing.assert_allclose(st.outputs(a, W, X[:37]), ref[:37], rtol=0,
                                   atol=1e-13 * np.abs(ref).max())
    assert not FullBatchStepper(X, y, StepParams("x**3/3 + x"), threads=1).skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_row_period_keeps_the_bits_of_every_row(dtype):
    """With the measured period, a row of ``Z`` has the same bits in another block, at another
    position of the same residue (the premise of the bitwise skipping)."""
    M, d, block = 40, 20, 96
    P = row_period(dtype, M, d, block)
    if P == 0:
        pytest.skip("no BLAS row period on this machine (skipping is off)")
    rng = np.random.default_rng(5)
    WT = rng.standard_normal((M, d)).astype(dtype).T
    n = -(-block // P) * P
    A = rng.standard_normal((n, d)).astype(dtype)
    B = rng.standard_normal((n, d)).astype(dtype)
    B[n - P:] = A[:P]                    # the first P rows, moved to the last residue group
    np.testing.assert_array_equal((B @ WT)[n - P:], (A @ WT)[:P])

"""Tests of meanfield.kernels: velocities, blocking, exact forward skipping, state, threads.

Independent routes: central finite differences of a loss written here in plain NumPy; the
plain-NumPy reference ``numpy_velocity``; dense forward outputs for the skipping certificates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.kernels import (
    FullBatchStepper,
    StepParams,
    dense_velocity,
    numpy_velocity,
    thread_settings,
)

ACTS = ["relu", "leaky_relu:0.1", "erf", "tanh", "linear", "x**3/3 + x"]
LOSSES = ["hinge", "squared", "logistic"]


def _problem(N, M, d, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)).astype(dtype)
    y = np.where(X[:, 0] >= 0, 1.0, -1.0).astype(dtype)
    a = rng.standard_normal(M).astype(dtype)
    W = rng.standard_normal((M, d)).astype(dtype)
    return X, y, a, W


def _sigma(act, u):
    """Activations written independently of the module (float64)."""
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


def _L(X, y, a, W, act, loss, h, alpha):
    """L = (1/N) sum l(y f), plain float64 NumPy."""
    d = X.shape[1]
    f = alpha / a.shape[0] * (_sigma(act, X @ W.T / math.sqrt(d)) @ a)
    return float(np.mean(_loss(loss, y * f, h)))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_velocity_matches_finite_differences(act, loss):
    M, d, h, alpha = 5, 4, 0.3, 1.7
    X, y, a, W = _problem(60, M, d, seed=1)
    # keep away from the kinks: drop examples with some |z| < 1e-3 (relu family) or
    # |y f - h| < 1e-3 (hinge), far beyond the finite-difference step 1e-6 times the
    # parameter sensitivity (O(|x|) ~ 3)
    Z = X @ W.T / math.sqrt(d)
    f = alpha / M * (_sigma(act, Z) @ a)
    keep = (np.min(np.abs(Z), axis=1) > 1e-3) & (np.abs(y * f - h) > 1e-3)
    X, y, Z, f = X[keep], y[keep], Z[keep], f[keep]
    N = X.shape[0]
    assert N >= 40
    p = StepParams(act, loss, h, alpha, "float64")
    va, vW = np.empty(M), np.empty((M, d))
    L, n_unsat = dense_velocity(X, y, a, W, p, va, vW)
    assert L == pytest.approx(_L(X, y, a, W, act, loss, h, alpha), rel=1e-12)
    assert n_unsat == int(np.sum(y * f < h))
    eps = 1e-6
    theta = np.concatenate([a, W.ravel()])
    grad = np.empty_like(theta)
    for k in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += eps
        tm[k] -= eps
        grad[k] = (_L(X, y, tp[:M], tp[M:].reshape(M, d), act, loss, h, alpha)
                   - _L(X, y, tm[:M], tm[M:].reshape(M, d), act, loss, h, alpha)) / (2 * eps)
    v = np.concatenate([va, vW.ravel()])
    # v = -M dL/dtheta; central differences: truncation O(eps^2) ~ 1e-12, rounding
    # ~ 1e-16 / eps = 1e-10 relative to L: 1e-6 of the largest component is a wide margin
    np.testing.assert_allclose(v, -M * grad, rtol=0, atol=1e-6 * np.max(np.abs(v)))


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("act", ACTS)
def test_numba_matches_numpy_reference(dtype, tol, act):
    N, M, d = 1500, 24, 9
    X, y, a, W = _problem(N, M, d, dtype, seed=2)
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


def test_blocking_changes_nothing_beyond_rounding():
    N, M, d = 2000, 30, 8
    X, y, a, W = _problem(N, M, d, seed=3)
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


def test_logistic_is_stable_at_large_outputs():
    N, M, d = 200, 10, 5
    X, y, a, W = _problem(N, M, d, seed=4)
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


def _euler(stepper, a, W, dt, steps, check=None):
    va, vW = np.empty_like(a), np.empty_like(W)
    hist = []
    for n in range(steps):
        L, nu = stepper.velocity(a, W, va, vW)
        hist.append((L, nu, va.copy(), vW.copy(), stepper.n_evaluated))
        if check is not None:
            check(n, a, W)
        a = a + dt * va
        W = W + dt * vW
    return a, W, hist


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_skipping_is_bitwise_equal_to_dense_and_certificates_hold(dtype):
    N, M, d, h, alpha = 3000, 40, 10, 1.0, 2.0
    X, y, a, W = _problem(N, M, d, dtype, seed=5)
    p = StepParams("relu", "hinge", h, alpha, dtype)
    skip = FullBatchStepper(X, y, p, threads=2, skip=True, directions=np.eye(d)[0],
                            block=512)
    dense = FullBatchStepper(X, y, p, threads=2, skip=False, block=512)
    X64 = X.astype(np.float64)
    va1, vW1 = np.empty_like(a), np.empty_like(W)
    va0, vW0 = np.empty_like(a), np.empty_like(W)
    evaluated = []
    for _ in range(60):
        L1, n1 = skip.velocity(a, W, va1, vW1)
        L0, n0 = dense.velocity(a, W, va0, vW0)
        # the trajectory is the dense one, bit for bit
        assert L1 == L0 and n1 == n0
        assert np.array_equal(va1, va0) and np.array_equal(vW1, vW0)
        # the status of every example is exact (certified ones included)
        assert np.array_equal(skip.satisfied, dense.satisfied)
        # rigour of the bound, against an independent float64 forward F: for every example
        # with a positive margin at its last evaluation,
        # |F_now - f_then| <= accumulated bound + rounding allowance of f_then
        F = alpha / M * (np.maximum(X64 @ W.astype(np.float64).T / math.sqrt(d), 0)
                         @ a.astype(np.float64))
        ok = skip.margin > 0
        f_then = (skip.margin[ok] + h) * y[ok]
        excess = np.abs(F[ok] - f_then) - (skip.bound[ok] + skip.tau[ok])
        assert np.all(excess <= 1e-12), excess.max()
        assert skip.n_evaluated >= n1  # unsatisfied examples are always evaluated
        evaluated.append(skip.n_evaluated)
        a = a + va1
        W = W + vW1
    # the skipping must actually skip in the late steps
    assert max(evaluated[-10:]) < 0.8 * N, evaluated[-10:]


def test_state_round_trip_resumes_bitwise():
    N, M, d = 2000, 20, 6
    X, y, a, W = _problem(N, M, d, seed=6)
    p = StepParams("relu", "hinge", 1.0, 2.0, "float64")
    ref = FullBatchStepper(X, y, p, threads=1, skip=True, block=256)
    a, W, _ = _euler(ref, a, W, 1.0, 20)
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v)
             for k, v in ref.get_state().items()}
    resumed = FullBatchStepper(X, y, p, threads=1, skip=True, block=256)
    resumed.set_state(state)
    _, _, h_ref = _euler(ref, a.copy(), W.copy(), 1.0, 15)
    _, _, h_res = _euler(resumed, a.copy(), W.copy(), 1.0, 15)
    for r, s in zip(h_ref, h_res, strict=True):
        assert r[0] == s[0] and r[1] == s[1] and r[4] == s[4]
        assert np.array_equal(r[2], s[2]) and np.array_equal(r[3], s[3])


def test_outputs_and_generic_activation():
    N, M, d = 700, 12, 6
    X, y, a, W = _problem(N, M, d, seed=7)
    for act in ("tanh", "x**3/3 + x"):
        p = StepParams(act, "hinge", 1.0, 1.5, "float64")
        st = FullBatchStepper(X, y, p, threads=1, block=100)
        ref = 1.5 / M * (_sigma(act, X @ W.T / math.sqrt(d)) @ a)
        np.testing.assert_allclose(st.outputs(a, W), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
        np.testing.assert_allclose(st.outputs(a, W, X[:37]), ref[:37], rtol=0,
                                   atol=1e-13 * np.abs(ref).max())
    assert not FullBatchStepper(X, y, StepParams("x**3/3 + x"), threads=1).skip


def test_thread_settings_reports_both_pools():
    s = thread_settings()
    assert s["numba_threads"] >= 1
    assert any(p["internal_api"] for p in s["blas"])
    assert s["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_row_sums_do_not_depend_on_the_rows_address(dtype):
    """The fast-math (vectorized) row sums must give the same bits for a row wherever it sits
    (the skipping path evaluates an example at another slot, hence another address, than the
    dense path), and agree with a float64 sum to the rounding of the dtype."""
    from meanfield import kernels as K

    rng = np.random.default_rng(11)
    u = float(np.finfo(dtype).eps)
    slope = np.asarray(0.1, dtype)
    sigmas = ((0, lambda z: np.maximum(z, 0)), (1, lambda z: np.where(z > 0, z, slope * z)),
              (4, lambda z: z))
    for M in (7, 25, 33, 101, 400):
        a = rng.standard_normal(M).astype(dtype)
        row = rng.standard_normal(M).astype(dtype)
        for kind, sig in sigmas:
            exact = float(a.astype(np.float64) @ sig(row).astype(np.float64))
            sums = set()
            for off in range(9):
                buf = np.zeros(3 * M + 16, dtype)
                Z = buf[off:off + 2 * M].reshape(2, M)
                Z[1] = row
                sums.add(K._row_sum(Z, Z, 1, a, kind, 0.1))
            assert len(sums) == 1, (M, kind, sums)
            s = sums.pop()
            assert abs(s - exact) <= (M + 1) * u * float(np.abs(a) @ np.abs(row)) + 1e-300


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_out_of_subspace_norm_bound_holds_and_is_tight_for_low_rank_motion(dtype):
    """``zp >= |DW_perp x|_2`` for every example, for motions of every rank (including rank
    r + 1, just past the eigenpairs kept, and 0); equal to it up to the padding when the rank
    is at most ``perp_dirs``; far below ``|DW_perp|_op |x|`` for a low-rank motion."""
    N, M, d = 2000, 50, 30
    X, y, _, _ = _problem(N, M, d, dtype, seed=12)
    st = FullBatchStepper(X, y, StepParams("relu", "hinge", 1.0, 1.0, dtype), threads=1,
                          perp_dirs=6)
    X64 = X.astype(np.float64)
    rng = np.random.default_rng(13)
    for rank in (0, 1, 3, 6, 7, 12, 30):
        D = (rng.standard_normal((M, rank)) @ rng.standard_normal((rank, d))
             * rng.uniform(1e-6, 1e2)) if rank else np.zeros((M, d))
        exact = np.linalg.norm(X64 @ D.T, axis=1)
        zp = st._perp_norms(D, 0.0)
        assert np.all(zp >= exact), (rank, np.max(exact - zp))
        if rank == 0:
            assert np.all(zp == 0)
        elif rank <= 6:
            np.testing.assert_allclose(zp, exact, rtol=1e-4, atol=1e-4 * exact.max())
            op = np.linalg.norm(D, 2) * st.xnorm
            assert np.median(zp / op) < 0.6

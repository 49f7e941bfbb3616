"""Tests of meanfield.step.certificate through the stepper: the skipping path is bitwise the
dense one, the accumulated bounds hold against an independent float64 forward, the state
round trip resumes bitwise, the out-of-subspace bound holds and is tight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.step import FullBatchStepper, StepParams
from meanfield.step.certificate import perp_norms
from meanfield.step.policy import SkipPolicy


def _euler(stepper, a, W, dt, steps):
    va, vW = np.empty_like(a), np.empty_like(W)
    hist = []
    for _ in range(steps):
        L, nu = stepper.velocity(a, W, va, vW)
        hist.append((L, nu, va.copy(), vW.copy(), stepper.n_evaluated,
                     stepper.satisfied.copy()))
        a = a + dt * va
        W = W + dt * vW
    return a, W, hist


def _same(h1, h2):
    for r, s in zip(h1, h2, strict=True):
        assert r[0] == s[0] and r[1] == s[1] and r[4] == s[4]
        assert np.array_equal(r[2], s[2]) and np.array_equal(r[3], s[3])
        assert np.array_equal(r[5], s[5])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu:0.1", "erf", "tanh", "linear"])
def test_skipping_is_bitwise_equal_to_dense_and_certificates_hold(act, dtype, problem, sigma):
    N, M, d, h, alpha = 3000, 40, 10, 1.0, 2.0
    X, y, a, W = problem(N, M, d, dtype, seed=5)
    p = StepParams(act, "hinge", h, alpha, dtype)
    skip = FullBatchStepper(X, y, p, threads=2, skip=True, directions=np.eye(d)[0],
                            block=512, adaptive=False)
    dense = FullBatchStepper(X, y, p, threads=2, skip=False, block=512)
    cert = skip.certificate
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
        F = alpha / M * (sigma(act, X64 @ W.astype(np.float64).T / math.sqrt(d))
                         @ a.astype(np.float64))
        ok = cert.margin > 0
        f_then = (cert.margin[ok] + h) * y[ok]
        excess = np.abs(F[ok] - f_then) - (cert.bound[ok] + cert.tau[ok])
        assert np.all(excess <= 1e-12), excess.max()
        assert skip.n_evaluated >= n1  # unsatisfied examples are always evaluated
        evaluated.append(skip.n_evaluated)
        a = a + va1
        W = W + vW1
    # the skipping must actually skip in the late steps
    assert max(evaluated[-10:]) < 0.8 * N, evaluated[-10:]


@pytest.mark.parametrize("calls", [1, 2, 20, 26])
def test_state_round_trip_resumes_bitwise(calls, problem):
    """From a checkpoint after any number of calls (1: ``W_anchor`` not set yet; 26: just after
    a refresh of ``Q``), a new stepper continues exactly as the original."""
    N, M, d = 2000, 20, 6
    X, y, a, W = problem(N, M, d, seed=6)
    p = StepParams("relu", "hinge", 1.0, 2.0, "float64")
    ref = FullBatchStepper(X, y, p, threads=1, skip=True, block=256, adaptive=False)
    a, W, _ = _euler(ref, a, W, 1.0, calls)
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v)
             for k, v in ref.get_state().items()}
    assert set(state) == {"margin", "bound", "dist", "tau", "s2", "phi", "V", "Q", "a_prev",
                          "W_prev", "W_anchor", "satisfied", "calls", "p", "k",
                          *(f"policy_{k}" for k in SkipPolicy._STATE)}
    assert state["calls"] == calls
    resumed = FullBatchStepper(X, y, p, threads=1, skip=True, block=256, adaptive=False)
    resumed.set_state(state)
    _, _, h_ref = _euler(ref, a.copy(), W.copy(), 1.0, 15)
    _, _, h_res = _euler(resumed, a.copy(), W.copy(), 1.0, 15)
    _same(h_ref, h_res)
    assert min(r[4] for r in h_ref) < N


def test_state_before_any_call_and_of_a_dense_stepper(problem):
    X, y, a, W = problem(300, 8, 4, seed=8)
    p = StepParams("relu", "hinge", 1.0, 2.0, "float64")
    st = FullBatchStepper(X, y, p, threads=1)
    assert st.get_state() == {"calls": 0}
    dense = FullBatchStepper(X, y, p, threads=1, skip=False)
    _euler(dense, a, W, 1.0, 3)
    assert dense.get_state() == {"calls": 0}
    st.set_state({"calls": 0})
    assert st.certificate.calls == 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_out_of_subspace_norm_bound_holds_and_is_tight_for_low_rank_motion(dtype, problem):
    """``zp >= |DW_perp x|_2`` for every example, for motions of every rank (including rank
    r + 1, just past the eigenpairs kept, and 0); equal to it up to the padding when the rank
    is at most ``perp_dirs``; far below ``|DW_perp|_op |x|`` for a low-rank motion."""
    N, M, d = 2000, 50, 30
    X, _, _, _ = problem(N, M, d, dtype, seed=12)
    X64 = X.astype(np.float64)
    xnorm = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    rng = np.random.default_rng(13)
    for rank in (0, 1, 3, 6, 7, 12, 30):
        D = (rng.standard_normal((M, rank)) @ rng.standard_normal((rank, d))
             * rng.uniform(1e-6, 1e2)) if rank else np.zeros((M, d))
        exact = np.linalg.norm(X64 @ D.T, axis=1)
        zp = perp_norms(X, xnorm, D, 0.0, 6)
        assert np.all(zp >= exact), (rank, np.max(exact - zp))
        if rank == 0:
            assert np.all(zp == 0)
        elif rank <= 6:
            np.testing.assert_allclose(zp, exact, rtol=1e-4, atol=1e-4 * exact.max())
            op = np.linalg.norm(D, 2) * xnorm
            assert np.median(zp / op) < 0.6
    assert np.all(np.isinf(perp_norms(X, xnorm, D, 0.0, 0)))


@pytest.mark.slow
@pytest.mark.parametrize("act,dtype", [("relu", "float32"), ("tanh", "float64")])
def test_long_skipping_run_is_bitwise_dense(act, dtype, problem):
    """Larger (M = 100, N = 2e4, d = 50), 100 Euler steps (four refreshes of ``Q``), blocks of
    the default size: the skipping path is the dense one, bit for bit."""
    N, M, d = 20_000, 100, 50
    X, y, a, W = problem(N, M, d, dtype, seed=9)
    p = StepParams(act, "hinge", 1.0, 1.0, dtype)
    skip = FullBatchStepper(X, y, p, threads=0, directions=np.eye(d)[0], adaptive=False)
    dense = FullBatchStepper(X, y, p, threads=0, skip=False)
    a1, W1, h_skip = _euler(skip, a.copy(), W.copy(), 1.0, 100)
    a0, W0, h_dense = _euler(dense, a.copy(), W.copy(), 1.0, 100)
    for r, s in zip(h_skip, h_dense, strict=True):
        assert r[0] == s[0] and r[1] == s[1]
        assert np.array_equal(r[2], s[2]) and np.array_equal(r[3], s[3])
        assert np.array_equal(r[5], s[5])
    assert np.array_equal(a1, a0) and np.array_equal(W1, W0)
    assert min(r[4] for r in h_skip[-20:]) < 0.8 * N

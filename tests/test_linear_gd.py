"""Discrete gradient descent in closed form (meanfield.linear_gd), each formula against an
independent route: explicit GD in weight space with an explicit Jacobian, explicit GD on Hu's
feature weights, Monte Carlo over initial outputs, high-precision arithmetic, the flattened
cosine."""

import math
from fractions import Fraction

import numpy as np
import pytest

from analytic.kernels import NumericActivation
from meanfield.linear import empirical_ntk, forward, init_params
from meanfield.linear_gd import (
    KernelGD,
    NetworkGD,
    escape_step,
    gp_moments,
    growth,
    kernel_distance,
    loglog_slope,
    max_learning_rate,
    record_steps,
)

TANH = NumericActivation(np.tanh, lambda x: 1 / np.cosh(x) ** 2, (), None)
RELU = NumericActivation(lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float),
                         (0.0,), "relu")
RATES = {"both": (1.0, 0.5), "first": (1.0, 0.0), "second": (0.0, 1.0)}


def _jacobian(W, v, X, act):
    """``[J_W | J_v]`` (``n x (m d + m)``), parameter by parameter."""
    m, d = W.shape
    Z = X @ W.T / math.sqrt(d)
    J_v = act.phi(Z) / math.sqrt(m)
    J_W = np.einsum("ni,nj->nij", act.dphi(Z) * v / math.sqrt(m), X / math.sqrt(d))
    return np.hstack([J_W.reshape(len(X), -1), J_v])


def _problem(seed=0, n=6, d=4, m=7, n_test=3, act=TANH):
    rng = np.random.default_rng(seed)
    X, X_test = rng.standard_normal((n, d)), rng.standard_normal((n_test, d))
    W, v = init_params(d, m, rng)
    return X, X_test, rng.standard_normal(n), W, v


@pytest.mark.parametrize("train", sorted(RATES))
@pytest.mark.parametrize("act", [TANH, RELU], ids=["tanh", "relu"])
def test_lee_closed_form_equals_explicit_gd_of_the_linearized_network(train, act):
    """``f_lin = f_0 + J_0 (theta - theta_0)`` trained by GD in weight space with rates
    ``lr lr1`` (W) and ``lr lr2`` (v) on ``L = (1/2n) sum (f - y)^2`` equals the eigen closed
    form at t = 1, 10, 100 (to 1e-10: the closed form and 100 explicit steps each round at
    ~1e-15 per operation)."""
    X, X_test, y, W, v = _problem(act=act)
    lr1, lr2 = RATES[train]
    lr, n = 0.7, len(y)
    J, J_test = _jacobian(W, v, X, act), _jacobian(W, v, X_test, act)
    rates = np.concatenate([np.full(W.size, lr * lr1), np.full(v.size, lr * lr2)])
    f0, f0_test = forward(W, v, X, act.phi), forward(W, v, X_test, act.phi)
    t1, t2 = empirical_ntk(W, v, X, act.phi, act.dphi)
    c1, c2 = empirical_ntk(W, v, X_test, act.phi, act.dphi, X)
    gd = KernelGD.fit(lr1 * t1 + lr2 * t2, y, f0, lr)
    steps = np.array([1, 10, 100])
    train_cf, test_cf = gd.train(steps), gd.test(lr1 * c1 + lr2 * c2, f0_test, steps)
    delta = np.zeros(J.shape[1])
    for t in range(1, 101):
        delta -= rates * (J.T @ (f0 + J @ delta - y)) / n
        if t in steps:
            k = list(steps).index(t)
            np.testing.assert_allclose(train_cf[k], f0 + J @ delta, rtol=0, atol=1e-10)
            np.testing.assert_allclose(test_cf[k], f0_test + J_test @ delta, rtol=0,
                                       atol=1e-10)


def test_singular_kernel_keeps_the_null_space_still_as_explicit_gd_does():
    """Two equal training points and more points than parameters directions: ``Theta_0`` is
    singular; the closed form (null space: no motion on the training set, limit ``lr t/n`` on
    the test side) still equals explicit GD."""
    X, X_test, y, W, v = _problem(n=9, d=2, m=2, act=RELU)
    X[1] = X[0]
    J, J_test = _jacobian(W, v, X, RELU), _jacobian(W, v, X_test, RELU)
    K = J @ J.T
    assert np.linalg.matrix_rank(K) < len(y)
    f0, f0_test = forward(W, v, X, RELU.phi), forward(W, v, X_test, RELU.phi)
    gd = KernelGD.fit(K, y, f0, 0.3)
    delta = np.zeros(J.shape[1])
    for _ in range(50):
        delta -= 0.3 * J.T @ (f0 + J @ delta - y) / len(y)
    np.testing.assert_allclose(gd.train(np.array([50]))[0], f0 + J @ delta, atol=1e-10)
    np.testing.assert_allclose(gd.test(J_test @ J.T, f0_test, np.array([50]))[0],
                               f0_test + J_test @ delta, atol=1e-10)


def test_hu_model_closed_form_equals_explicit_gd_on_beta():
    """``g = f_0 + Psi beta``, ``beta(0) = 0``, ``beta <- beta - (lr/n) Psi^T (g - y)``: the
    kernel closed form with ``K = Psi Psi^T`` (rank d + 1 < n) at t = 1, 10, 100 (1e-10)."""
    from analytic.kernels import feature_map

    rng = np.random.default_rng(3)
    n, d = 12, 4
    X, X_test, y = rng.standard_normal((n, d)), rng.standard_normal((5, d)), rng.normal(size=n)
    f0, f0_test = rng.normal(size=n) * 0.3, rng.normal(size=5) * 0.3
    psi = feature_map({"ones": 0.16, "data": 0.5})
    P, P_test = psi(X), psi(X_test)
    gd = KernelGD.fit(P @ P.T, y, f0, 0.9)
    steps = np.array([1, 10, 100])
    train, test = gd.train(steps), gd.test(P_test @ P.T, f0_test, steps)
    beta = np.zeros(d + 1)
    for t in range(1, 101):
        beta -= 0.9 * P.T @ (f0 + P @ beta - y) / n
        if t in steps:
            k = list(steps).index(t)
            np.testing.assert_allclose(train[k], f0 + P @ beta, atol=1e-10)
            np.testing.assert_allclose(test[k], f0_test + P_test @ beta, atol=1e-10)


def test_growth_is_accurate_for_tiny_rates_and_exact_at_integer_powers():
    """``1 - (1 - a)^t`` against exact rational arithmetic: a = 1e-12 (where the naive formula
    loses 4 digits), a = 0.75 and 1.5 (negative base, odd and even t); relative 1e-14."""
    lam = np.array([1e-12, 0.75, 1.5, 0.0])
    steps = np.array([1, 7, 1000])
    got = growth(lam, 1.0, 1, steps)
    for i, t in enumerate(steps):
        for j, a in enumerate(lam):
            exact = 1 - (1 - Fraction(float(a))) ** int(t)
            assert got[i, j] == pytest.approx(float(exact), rel=1e-14, abs=0)


def test_max_learning_rate_separates_convergence_from_divergence():
    """GD on a kernel model at 0.99 lr_max converges to y; at 1.01 lr_max it blows up (the
    top eigen-direction is multiplied by |1 - lr lam/n| > 1 each step)."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    K = A @ A.T + 0.5 * np.eye(5)
    y, n = rng.standard_normal(5), 5
    lr_max = max_learning_rate(K, n)
    assert lr_max == pytest.approx(2 * n / np.linalg.eigvalsh(K)[-1], rel=1e-15)
    far = np.array([20000])
    ok = KernelGD.fit(K, y, np.zeros(5), 0.99 * lr_max).train(far)[0]
    np.testing.assert_allclose(ok, y, atol=1e-8)
    bad = KernelGD.fit(K, y, np.zeros(5), 1.01 * lr_max).train(np.array([2000]))[0]
    assert np.max(np.abs(bad)) > 1e6


def test_gp_moments_match_monte_carlo_of_initial_outputs():
    """``f_t(x) = f_0(x) + A_t (y - f_0(X))`` with ``(f_0(X), f_0(x)) ~ N(0, Kf)`` jointly:
    2e4 draws; mean and variance within 4 standard errors of the formulas."""
    rng = np.random.default_rng(5)
    n, nt = 6, 4
    B = rng.standard_normal((n + nt, n + nt))
    Kf = B @ B.T / (n + nt) + 0.1 * np.eye(n + nt)     # joint NNGP covariance
    C = rng.standard_normal((n + nt, n + nt))
    Theta = C @ C.T / (n + nt) + 0.2 * np.eye(n + nt)  # joint NTK
    y = rng.standard_normal(n)
    gd = KernelGD.fit(Theta[:n, :n], y, np.zeros(n), 0.5)
    steps = np.array([0, 3, 40])
    A = gd.weights(Theta[n:, :n], steps)
    mean, var = gp_moments(A, y, Kf[:n, :n], Kf[n:, :n], np.diag(Kf)[n:])
    draws = rng.multivariate_normal(np.zeros(n + nt), Kf, size=20000)
    f0, f0_test = draws[:, :n], draws[:, n:]
    for k in range(len(steps)):
        pushed = f0_test + (y - f0) @ A[k].T
        se_mean = np.sqrt(var[k] / len(draws))
        assert np.all(np.abs(pushed.mean(axis=0) - mean[k]) <= 4 * se_mean + 1e-12)
        se_var = var[k] * math.sqrt(2 / (len(draws) - 1))
        assert np.all(np.abs(pushed.var(axis=0, ddof=1) - var[k]) <= 4 * se_var)
    # the weights are those of the test formula: A_t (y - f0) is the test-side motion
    f0v = rng.standard_normal(n)
    np.testing.assert_allclose(gd.restarted(y, f0v).test(Theta[n:, :n], np.zeros(nt), steps),
                               (y - f0v) @ A.transpose(0, 2, 1), atol=1e-12)


def test_kernel_distance_is_one_minus_the_flattened_cosine():
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((2, 5, 5))
    K1, K2 = A @ A.T, B @ B.T
    a, b = K1.ravel(), K2.ravel()
    cosine = a @ b / math.sqrt((a @ a) * (b @ b))
    assert kernel_distance(K1, K2) == pytest.approx(1 - cosine, abs=1e-15)
    assert kernel_distance(K1, 3.7 * K1) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(K1, K2) == pytest.approx(kernel_distance(K2, K1), abs=1e-15)
    for _ in range(20):
        P, Q = rng.standard_normal((2, 4, 6))
        assert -1e-15 <= kernel_distance(P @ P.T, Q @ Q.T) <= 1.0
    assert math.isnan(kernel_distance(K1, np.zeros_like(K1)))


@pytest.mark.parametrize("train", sorted(RATES))
def test_network_step_moves_outputs_by_the_ntk_to_first_order(train):
    """One GD step of the network changes ``f`` by ``-(lr/n) Theta (f - y)`` up to O(lr^2):
    the error divided by lr^2 stays bounded as lr shrinks 10x (it would grow 10x if the
    rates ``lr1``, ``lr2`` were paired with the wrong layers)."""
    X, _, y, W, v = _problem(m=9)
    lr1, lr2 = RATES[train]
    t1, t2 = empirical_ntk(W, v, X, TANH.phi, TANH.dphi)
    Theta = lr1 * t1 + lr2 * t2
    f0 = forward(W, v, X, TANH.phi)
    ratios = []
    for lr in (1e-2, 1e-3):
        net = NetworkGD(W, v, X, y, TANH.phi, TANH.dphi, lr, lr1, lr2)
        net.step()
        predicted = f0 - lr / len(y) * Theta @ (f0 - y)
        ratios.append(np.max(np.abs(net.outputs(X) - predicted)) / lr**2)
    assert ratios[1] <= 2 * ratios[0] + 1e-6
    assert net.steps_taken == 1


def test_network_float32_passes_stay_close_to_float64():
    X, X_test, y, W, v = _problem(m=50)
    nets = [NetworkGD(W, v, X, y, TANH.phi, TANH.dphi, 0.5, 1.0, 1.0, dtype)
            for dtype in ("float64", "float32")]
    for net in nets:
        for _ in range(20):
            net.step()
    # float32 rounding (6e-8 relative) accumulated over 20 steps of O(1) outputs
    np.testing.assert_allclose(nets[1].outputs(X_test), nets[0].outputs(X_test), atol=1e-5)
    assert nets[1].W.dtype == np.float64


def test_escape_step_needs_the_model_left_for_good():
    steps = np.array([0, 1, 2, 5, 10, 20])
    change = np.ones(6)
    # left at 10 and after: escape at 10 (a noisy excursion at 1 does not count)
    assert escape_step(steps, np.array([0, .5, .1, .1, .4, .5]), change, 0.25) == 10
    assert escape_step(steps, np.array([0, .5, .5, .5, .5, .5]), change, 0.25) == 1
    assert escape_step(steps, np.array([0, .5, .5, .5, .5, .1]), change, 0.25) == math.inf


def test_loglog_slope_and_record_steps():
    w = np.array([64.0, 256.0, 1024.0])
    assert loglog_slope(w, 3.0 * w**-0.5) == pytest.approx(-0.5, abs=1e-12)
    assert math.isnan(loglog_slope(w[:1], w[:1]))
    assert math.isnan(loglog_slope(w, np.array([1.0, 0.0, 2.0])))
    steps = record_steps(1000, 30)
    assert steps[0] == 0 and steps[-1] == 1000 and steps[1] == 1
    assert np.all(np.diff(steps) > 0) and len(steps) <= 31
    assert list(record_steps(50, 3, (7, 9))) == [0, 7, 9, 50]


@pytest.mark.parametrize(("lr1", "lr2"), [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_fused_relu_step_is_bitwise_the_numpy_passes(lr1, lr2):
    """The fused Numba relu kernels (taken for the project's own relu in float64) give the
    weights of the NumPy passes bit for bit after 5 steps; other activations are not taken
    for relu."""
    from analytic.activations import get_activation
    from analytic.kernels import numeric_activation

    act = numeric_activation(get_activation("relu"))
    assert NetworkGD.relu_convention(act.phi, act.dphi) is not None
    assert NetworkGD.relu_convention(TANH.phi, TANH.dphi) is None
    leaky = numeric_activation(get_activation("leaky_relu:0.1"))
    assert NetworkGD.relu_convention(leaky.phi, leaky.dphi) is None
    X, _, y, W, v = _problem(n=37, d=7, m=53, act=RELU)
    nets = [NetworkGD(W, v, X, y, act.phi, act.dphi, 0.9, lr1, lr2, fused=fused)
            for fused in (True, False)]
    assert nets[0]._relu is not None and nets[1]._relu is None
    for net in nets:
        for _ in range(5):
            net.step()
    np.testing.assert_array_equal(nets[0].W, nets[1].W)
    np.testing.assert_array_equal(nets[0].v, nets[1].v)
    assert not np.array_equal(nets[0].W, W) or lr1 == 0

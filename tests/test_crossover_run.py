"""The crossover runs (meanfield.crossover_run): the linearized twin against finite differences
and against the network at large alpha, the node-wise kernel at gamma = 0 against the
network's Jacobian, the runs against the theory, rewinding arms' moments, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield import crossover_theory as ct
from meanfield import data as _data
from meanfield.config import ConfigError, make_config
from meanfield.crossover_run import (
    ARMS,
    LinearizedTwin,
    first_crossing,
    record_times,
    run_crossover,
    step_floor,
    tau_grid,
)


def _small_config(**kw):
    base = dict(M=200, N=4000, d=10, n_test=2000, h=1.0, sa=1.0, sw=1.0, beta=1.0, seed=0)
    base.update(kw)
    return make_config(**base)


@pytest.fixture(scope="module")
def alpha_one_run():
    """M = 200 (100 pairs), N = 4000, d = 10, alpha = 1, to tau = 4."""
    return run_crossover(_small_config(), [1.0], tau_max=4.0, n_times=20, n_probe=100)


# ----------------------------------------------------------------------------- time grid


def test_grid_lands_on_records_and_bounds_steps():
    taus = record_times(5.0, 12, rewind_at=0.7)
    assert taus[0] == 0.0 and taus[-1] == 5.0 and 0.7 in taus and len(taus) == 14
    assert taus[1] == pytest.approx(5e-3, rel=1e-12)
    delta, growth = 0.01, 0.05
    grid, at = tau_grid(taus, delta, growth)
    np.testing.assert_array_equal(grid[at], taus)
    steps = np.diff(grid)
    assert np.all(steps > 0)
    # every step is max(delta, growth tau), or shorter where it lands on a record
    full = np.maximum(delta, growth * grid[:-1])
    assert np.all(steps <= full * (1 + 1e-12))
    short = steps < full * (1 - 1e-9)
    assert set(np.flatnonzero(short) + 1) <= set(at)


def test_step_floor_bounds_gamma_per_step():
    # while every example is unsatisfied, d gamma/dtau = 2 sqrt(2d/pi)/(alpha (sa^2+sw^2))
    c = _small_config(d=50, sa=1.5, sw=0.5)
    for alpha in (0.1, 1.0, 100.0):
        delta = step_floor(c, alpha, 0.02, 0.01)
        rate = 2 * math.sqrt(2 * 50 / math.pi) / (alpha * (1.5**2 + 0.5**2))
        assert delta * rate <= 0.01 * (1 + 1e-12) and delta <= 0.02
    assert step_floor(c, 0.1, 0.02, 0.01) * 2 * math.sqrt(100 / math.pi) / (0.1 * 2.5) == (
        pytest.approx(0.01, rel=1e-12))


def test_first_crossing_interpolates_in_log_tau():
    tau = np.array([0.0, 0.1, 1.0, 10.0])
    err = np.array([1.0, 0.8, 0.4, 0.2])
    out = first_crossing(tau, err, 0.3, {"q": np.array([0.0, 1.0, 2.0, 4.0])})
    # halfway between records 2 and 3 in log tau: sqrt(10)
    assert out["tau"] == pytest.approx(math.sqrt(10.0), rel=1e-12)
    assert out["q"] == pytest.approx(3.0, rel=1e-12)
    never = first_crossing(tau, err, 0.1, {"q": tau})
    assert math.isnan(never["tau"]) and math.isnan(never["q"])


# ----------------------------------------------------------------------------- the twin


def _twin_problem(N=60, M=6, d=3, alpha=1.7, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = np.where(X[:, 0] >= 0, 1.0, -1.0)
    a0 = rng.standard_normal(M)
    W0 = rng.standard_normal((M, d))
    return X, y, a0, W0, alpha


@pytest.mark.parametrize("h", [0.05, 0.3], ids=["fewer-than-half-unsatisfied",
                                              "more-than-half-unsatisfied"])
def test_twin_velocity_matches_finite_differences(h):
    """Both backward paths: a sum over the unsatisfied rows (h = 0.05: 48% of them) and the
    precomputed total minus the satisfied rows (h = 0.3: 73%)."""
    X, y, a0, W0, alpha = _twin_problem()
    twin = LinearizedTwin(X, y, a0, W0, alpha, h)
    rng = np.random.default_rng(4)
    da, dW = 0.3 * rng.standard_normal(a0.shape), 0.3 * rng.standard_normal(W0.shape)
    margins = y * twin.outputs(da, dW)
    # a smooth point: every margin at least 1e-3 away from the hinge, and some on each side
    assert np.min(np.abs(margins - h)) > 1e-3
    assert 0 < np.sum(margins < h) < len(y)
    v_a, v_W = np.empty_like(a0), np.empty_like(W0)
    loss, n_unsat = twin.velocity(da, dW, v_a, v_W)
    assert n_unsat == np.sum(margins < h)
    assert loss == pytest.approx(np.maximum(h - margins, 0).mean(), rel=1e-14)
    # L_lin is linear in theta between kinks, so the central difference is exact up to
    # rounding: ~1e-16 |L| / eps ~ 1e-10 for eps = 1e-6 (no margin moves by 1e-3 at that eps)
    eps, M = 1e-6, len(a0)
    for i in range(len(a0)):
        e = np.zeros_like(a0)
        e[i] = eps
        g = (twin.loss(da + e, dW) - twin.loss(da - e, dW)) / (2 * eps)
        assert v_a[i] == pytest.approx(-M * g, abs=1e-8)
    for i in range(W0.shape[0]):
        for k in range(W0.shape[1]):
            e = np.zeros_like(W0)
            e[i, k] = eps
            g = (twin.loss(da, dW + e) - twin.loss(da, dW - e)) / (2 * eps)
            assert v_W[i, k] == pytest.approx(-M * g, abs=1e-8)


def test_twin_is_the_first_order_taylor_expansion():
    X, y, a0, W0, alpha = _twin_problem(N=40)
    twin = LinearizedTwin(X, y, a0, W0, alpha, 1.0)
    rng = np.random.default_rng(5)
    da, dW = rng.standard_normal(a0.shape), rng.standard_normal(W0.shape)
    d = X.shape[1]

    def f(a, W):
        return alpha / len(a) * np.maximum(X @ W.T / math.sqrt(d), 0) @ a

    # f(theta0 + s dtheta) = f_lin(s dtheta) + O(s^2); the relu kinks add O(s) only where a
    # unit is within s of its kink, so take s small enough that none is (checked)
    s = 1e-7
    assert np.min(np.abs(X @ W0.T)) > 1e3 * s * np.abs(X @ dW.T).max()
    exact = f(a0 + s * da, W0 + s * dW)
    lin = twin.outputs(s * da, s * dW)
    scale = np.abs(f(a0, W0)).max()
    np.testing.assert_allclose(lin, exact, rtol=0, atol=1e-12 * scale + 1e-14)
    # and the displacement's first-order term, against the explicit Jacobian
    U = X @ W0.T / math.sqrt(d)
    direct = f(a0, W0) + alpha / len(a0) * (
        np.maximum(U, 0) @ da + ((U > 0) * a0 * (X @ dW.T / math.sqrt(d))).sum(1))
    np.testing.assert_allclose(twin.outputs(da, dW), direct, rtol=1e-12, atol=1e-12)


def test_twin_equals_network_at_large_alpha():
    # alpha = 1e4: gamma ~ 1e-4, so the network's unit signs hardly change and the two train
    # on the same unsatisfied sets; 1e-3 of N = 1000 is one example
    c = _small_config(M=20, N=1000, n_test=200)
    r = run_crossover(c, [1e4], tau_max=2.0, n_times=10, n_probe=20)
    sel = r.t <= 2.0
    diff = np.abs(r.series["train_error_net"][0] - r.series["train_error_lin"][0])[sel]
    assert diff.max() <= 1e-3
    np.testing.assert_allclose(r.series["S_lin"][0], r.series["S_net"][0], rtol=1e-3,
                               atol=1e-6)
    assert r.series["train_error_net"][0, -1] < 0.9  # it did learn


# ----------------------------------------------------------------------------- kernel


def test_nodewise_kernel_at_gamma_zero_is_the_initial_jacobian_kernel():
    c = _small_config(M=20, N=100, n_test=30)
    r = run_crossover(c, [0.5], tau_max=1.0, n_times=3, n_probe=12)
    rngs = _data.streams(c.seed)
    _data.training_set(c, rngs["train"])
    probe = _data.held_out_set(c, rngs["test"]).X[:12]
    a0, W0 = _data.initial_weights(c.replace(init="symmetric"), rngs["init"])
    np.testing.assert_array_equal(r.a0, a0)
    np.testing.assert_array_equal(r.w_par0, W0[:, 0])
    # the run's theory and measurement start from the same kernel
    assert r.series["kernel_change_theory"][0, 0] == 0.0
    assert r.series["kernel_change_net"][0, 0] == 0.0
    # the node-wise kernel at gamma = 0, (M/alpha^2) J J^T with J by central differences of
    # f (piecewise linear in each weight: exact up to rounding away from the kinks)
    K = ct.tangent_kernel(*ct.move_nodes(a0, W0, 0.0), probe)
    M, d, alpha = len(a0), W0.shape[1], 0.5
    theta0 = np.concatenate([a0, W0.ravel()])

    def f(theta):
        a, W = theta[:M], theta[M:].reshape(M, d)
        return alpha / M * np.maximum(probe @ W.T / math.sqrt(d), 0) @ a

    eps = 1e-7
    assert np.min(np.abs(probe @ W0.T)) > 1e3 * eps
    J = np.stack([(f(theta0 + eps * e) - f(theta0 - eps * e)) / (2 * eps)
                  for e in np.eye(len(theta0))], axis=1)
    np.testing.assert_allclose(K, M / alpha**2 * J @ J.T, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- vs theory


def test_network_follows_theory_and_twin_the_lazy_limit(alpha_one_run):
    r = alpha_one_run
    s = r.series
    sel = (r.t >= 0.5) & (r.t <= 4.0)
    assert sel.sum() >= 5
    # finite M = 200 (100 independent pairs) and N = 4000: the theory is that of M, N = inf
    net = np.abs(s["train_error_net"][0] - s["train_error_theory"][0])[sel]
    assert net.max() <= 0.03  # measured 0.020
    # the twin's rate is the sample version of c_X = (sa^2+sw^2)/4 of its 100 independent
    # pairs, whose relative scatter is sqrt(4/100)/2 = 0.1: about 0.045 in training error at
    # error 0.5, more than 0.03. Its lazy curve is therefore taken at the sample lazy time
    # tau <(a0^2 + w_par0^2)>/(sa^2 + sw^2), which removes that scatter (seeds 0-7: all
    # within 0.025, against up to 0.057 at the population lazy time)
    q = np.mean(r.a0**2 + r.w_par0**2) / (r.config.sa**2 + r.config.sw**2)
    lazy = ct.crossover_theory(r.config, r.t * q).train_error_lazy
    lin = np.abs(s["train_error_lin"][0] - lazy)[sel]
    assert lin.max() <= 0.03  # measured 0.013
    # and the crossover itself: the rich network learns faster than its lazy twin
    assert np.all((s["train_error_lin"][0] - s["train_error_net"][0])[r.t >= 1.0] > 0.1)
    # gamma and the kernel's change follow the theory (gamma_theory ~ 1 to 2 here)
    g = s["gamma_theory"][0][sel]
    np.testing.assert_allclose(s["gamma_net"][0][sel], g, rtol=0.1)
    np.testing.assert_allclose(s["kernel_change_net"][0][sel],
                               s["kernel_change_theory"][0][sel], rtol=0.2)
    assert r.at_alpha["gamma_at_error_net"][0] == pytest.approx(
        r.at_alpha["gamma_at_error_theory"][0], rel=0.05)


def test_same_seed_same_numbers(alpha_one_run):
    again = run_crossover(_small_config(), [1.0], tau_max=4.0, n_times=20, n_probe=100)
    r = alpha_one_run
    assert set(again.series) == set(r.series)
    for k, v in r.series.items():
        np.testing.assert_array_equal(again.series[k], v, err_msg=k)
    for k, v in r.at_alpha.items():
        np.testing.assert_array_equal(again.at_alpha[k], v, err_msg=k)
    other = run_crossover(_small_config(seed=1), [1.0], tau_max=4.0, n_times=20, n_probe=100)
    assert not np.array_equal(other.series["train_error_net"], r.series["train_error_net"])


def test_same_data_and_nodes_for_every_alpha():
    c = _small_config(M=20, N=300, n_test=50)
    two = run_crossover(c, [0.5, 50.0], tau_max=1.0, n_times=4, n_probe=10)
    one = run_crossover(c, [50.0], tau_max=1.0, n_times=4, n_probe=10)
    np.testing.assert_array_equal(two.series["train_error_net"][1],
                                  one.series["train_error_net"][0])
    np.testing.assert_array_equal(two.time[1], ct.mean_field_time(c.replace(alpha=50.0),
                                                                  two.t))


def test_rewind_arms_moments_follow_theory():
    c = _small_config()
    tau_k = 0.5
    r = run_crossover(c, [1.0], tau_max=2.0, n_times=8, n_probe=20, rewind_at=tau_k,
                      linearized=False)
    v = r.at_alpha
    M = c.M
    for arm in ARMS:
        mp_th, maw_th = v[f"mp_{arm}_theory"][0], v[f"maw_{arm}_theory"][0]
        # 4 standard errors of a mean over M/2 independent pairs, plus 0.02 for the
        # network's gamma at tau_k differing from the theory's (finite M, N)
        bound = 4 * mp_th / math.sqrt(M / 2) + 0.02
        assert abs(v[f"mp_{arm}"][0] - mp_th) <= bound, arm
        assert abs(v[f"maw_{arm}"][0] - maw_th) <= bound, arm
        err = r.series[f"train_error_{arm}"][0]
        assert np.all(np.isnan(err[r.t < tau_k])) and np.all(np.isfinite(err[r.t >= tau_k]))
        th = r.series[f"train_error_{arm}_theory"][0]
        assert np.all(np.isnan(th[r.t < tau_k]))
    # the signs arm starts from moments unlike the shuffle's: the draws are not the same
    assert v["maw_signs"][0] > 0.2 and abs(v["maw_shuffle"][0]) < 0.3
    assert "train_error_lin" not in r.series
    assert v["gamma_at_rewind"][0] == pytest.approx(v["gamma_at_rewind_theory"][0], rel=0.1)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw, args, word", [
    ({"activation": "tanh"}, {}, "activation"),
    ({"loss": "squared"}, {}, "loss"),
    ({"M": 21}, {}, "M"),
    ({}, {"alphas": [1.0, 1.0]}, "increasing"),
    ({}, {"alphas": [-1.0]}, "positive"),
    ({}, {"rewind_at": 5.0}, "rewind_at"),
    ({}, {"tau_max": 0.0}, "tau_max"),
    ({}, {"n_probe": 1000}, "n_probe"),
])
def test_bad_input_is_refused(kw, args, word):
    c = _small_config(**{"M": 20, "N": 100, "n_test": 50, **kw})
    call = {"alphas": [1.0], "tau_max": 2.0, "n_probe": 10, **args}
    with pytest.raises(ConfigError, match=word):
        run_crossover(c, call.pop("alphas"), **call)

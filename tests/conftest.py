"""Shared small problems of the tests (as fixtures returning plain functions): networks for the
step kernels, fixture files for the comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from meanfield.files.simulation import SERIES, SimulationResult, write_simulation
from meanfield.files.theory import TheoryResult, write_theory
from meanfield.observables import InitialMoments


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


def _fd_velocity(X, y, a, W, act, loss, h, alpha, eps=1e-6):
    """``-M dL/dtheta`` of :func:`_plain_loss` by central differences, flattened as
    ``(a, W.ravel())``: truncation ``O(eps^2) ~ 1e-12``, rounding ``~ 1e-16 / eps = 1e-10``
    relative to ``L``."""
    M, d = W.shape
    theta = np.concatenate([a, W.ravel()])
    grad = np.empty_like(theta)
    for k in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += eps
        tm[k] -= eps
        grad[k] = (_plain_loss(X, y, tp[:M], tp[M:].reshape(M, d), act, loss, h, alpha)
                   - _plain_loss(X, y, tm[:M], tm[M:].reshape(M, d), act, loss, h, alpha)
                   ) / (2 * eps)
    return -M * grad


@pytest.fixture
def problem():
    """``problem(N, M, d, dtype="float64", seed=0) -> (X, y, a, W)``."""
    return _problem


@pytest.fixture
def sigma():
    """``sigma(act, u)``: the activations of the step tests, in plain NumPy (float64)."""
    return _sigma


@pytest.fixture
def fd_velocity():
    """``fd_velocity(X, y, a, W, act, loss, h, alpha) -> -M dL/dtheta`` by central
    differences of the plain loss."""
    return _fd_velocity


@pytest.fixture
def plain_loss():
    """``plain_loss(X, y, a, W, act, loss, h, alpha) -> L`` in plain float64 NumPy."""
    return _plain_loss


# --------------------------------------------------------------------------- compare files
# Small synthetic theory and simulation files, written through the real writers (FIXTURES: not
# outputs of the simulator or the theory): a theory with a known gamma(t), and a "simulation"
# whose gamma, S, errors and node trajectories are that theory distorted by known factors, so
# every metric has an expected value computed independently in the tests.

COMPARE_CONFIG = dict(M=100, N=20_000, d=20, n_test=1000, t_max=1000.0, dt=1.0, n_times=40)
#: a small real run, for the end-to-end comparisons
E2E = dict(M=100, N=4000, d=20, n_test=1000, t_max=300.0, growth=0.05, n_times=30, seed=1)


def fixture_theory_curves(config, t):
    """FIXTURE curves with the structure of the ReLU hinge theory: a chosen gamma(t),
    S = k sinh(2 gamma) with k = alpha (sa^2 + sw^2) / (4 sqrt d), X = h / S, Gaussian
    training error erf(X / sqrt 2) and loss h e - S sqrt(2/pi) (1 - exp(-X^2/2))."""
    gamma = 0.6 * np.log1p(t)
    k = config.alpha * (config.sa**2 + config.sw**2) / (4 * math.sqrt(config.d))
    S = k * np.sinh(2 * gamma)
    with np.errstate(divide="ignore"):
        X = np.where(S > 0, config.h / S, np.inf)
    err = np.where(np.isfinite(X), erf(X / math.sqrt(2)), 1.0)
    tail = np.where(np.isfinite(X), 1 - np.exp(-np.minimum(X, 50) ** 2 / 2), 1.0)
    loss = config.h * err - S * math.sqrt(2 / math.pi) * tail
    return {"gamma": gamma, "S": S, "X": X, "train_error": err, "loss": loss}


def _write_theory_fixture(path, config, t, f_spread=None):
    """FIXTURE theory file of :func:`fixture_theory_curves`, through the real writer."""
    curves = fixture_theory_curves(config, t)
    write_theory(TheoryResult(t=t, config=config, f_spread=f_spread, asymptote_C=1.0,
                              asymptote_c=math.log(4.0) / 4, **curves), path)
    return curves


def _write_sim_fixture(path, config, scale=1.0, node_noise=0.0, seed=1):
    """FIXTURE simulation: the fixture theory with gamma multiplied by ``scale``; nodes on the
    exact hyperbolae of that gamma (plus ``node_noise`` relative Gaussian noise); examples
    satisfied exactly when S(t) |x_par| >= h on the record grid. Written by the real writer;
    the series the comparison does not read are NaN, the initial moments those of the
    recorded nodes."""
    from meanfield.schedule import schedule

    steps, record = schedule(config)
    t = steps[record]
    th = fixture_theory_curves(config, t)
    gamma = th["gamma"] * scale
    k = config.alpha * (config.sa**2 + config.sw**2) / (4 * math.sqrt(config.d))
    S = k * np.sinh(2 * gamma)
    rng = np.random.default_rng(seed)
    a0, w0 = rng.normal(size=config.M), rng.normal(size=config.M)
    a = np.outer(np.cosh(gamma), a0) + np.outer(np.sinh(gamma), w0)
    w = np.outer(np.cosh(gamma), w0) + np.outer(np.sinh(gamma), a0)
    a *= 1 + node_noise * rng.normal(size=a.shape)
    w *= 1 + node_noise * rng.normal(size=w.shape)
    x = rng.normal(size=2000)
    sat = S[None, :] * np.abs(x)[:, None] >= config.h
    t_sat = np.where(sat.any(axis=1), t[np.argmax(sat, axis=1)], np.inf)
    with np.errstate(divide="ignore"):
        X = np.where(S > 0, config.h / S, np.inf)
    err = np.where(np.isfinite(X), erf(X / math.sqrt(2)), 1.0)
    loss = th["loss"] * scale
    series = dict.fromkeys(SERIES, np.full(t.size, np.nan))
    series.update(step=np.arange(t.size), n_evaluated=np.zeros(t.size))
    series.update(gamma=gamma, S=S, train_error=err, loss=loss, test_error=err)
    moments = InitialMoments(a_mean=0.0, a_var=float(np.mean(a0 * a0)), w_par_mean=0.0,
                             w_par_var=float(np.mean(w0 * w0)),
                             a_w_par_mean=float(np.mean(a0 * w0)),
                             w_perp_norm2_mean=math.nan, u0_sq_mean=math.nan)
    write_simulation(SimulationResult(
        config=config, t=t, series=series, node=np.arange(config.M),
        nodes={"a": a, "w_par": w, "w_perp_norm": np.full(a.shape, np.nan)}, a0=a0,
        w_par0=w0, t_sat=t_sat, x_par=x, y=np.sign(x), test_t_sat=np.zeros(0),
        test_x_par=np.zeros(0), init_moments=moments,
        attrs={"t_sat_resolution": "record times", "test_t_sat_resolution": "record times"},
    ), path)
    return {"t": t, "gamma": gamma, "S": S, "a0": a0, "w0": w0, "a": a, "w": w,
            "train_error": err, "loss": loss, "th": th}


@pytest.fixture(scope="session")
def write_theory_fixture():
    """``write_theory_fixture(path, config, t, f_spread=None) -> curves``."""
    return _write_theory_fixture


@pytest.fixture(scope="session")
def write_sim_fixture():
    """``write_sim_fixture(path, config, scale=1.0, node_noise=0.0, seed=1) -> arrays``."""
    return _write_sim_fixture


@pytest.fixture
def files(tmp_path):
    """``(config, folder)`` with the fixture theory in ``folder / "theory.h5"``."""
    from meanfield.config import make_config

    config = make_config(**COMPARE_CONFIG)
    t_th = np.concatenate([[0.0], np.geomspace(0.01, 2000, 400)])
    _write_theory_fixture(tmp_path / "theory.h5", config, t_th)
    return config, tmp_path


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """A real simulation ``sim.h5`` of :data:`E2E` and theories made for it (``right.h5``)
    and for another d, h or N (``other_d.h5``, ``other_h.h5``, ``other_N.h5``)."""
    from meanfield.config import make_config
    from meanfield.files.simulation import write_simulation
    from meanfield.files.theory import write_theory
    from meanfield.simulate import simulate
    from meanfield.theory import compute

    tmp = tmp_path_factory.mktemp("e2e")
    config = make_config(**E2E)
    write_simulation(simulate(config), tmp / "sim.h5")
    for name, changes in (("right", {}), ("other_d", {"d": 2 * config.d}),
                          ("other_h", {"h": 2.0}), ("other_N", {"N": 50 * config.N})):
        write_theory(compute(config.replace(**changes)), tmp / f"{name}.h5")
    return tmp

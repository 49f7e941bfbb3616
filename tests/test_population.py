"""meanfield.population: the population solver against the ReLU closed form, a hand-derived
linear-activation ODE, Monte Carlo drives of tanh nodes, and a direct tanh network simulation."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from meanfield import population as PS
from meanfield import theory as T
from meanfield.config import make_config


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_population_solver_reproduces_relu_closed_form(data):
    """The general-activation solver given relu: gamma, S, train error, loss to 1e-6 (ODE
    rtol 1e-9; the quadratures are exact for ReLU thanks to the symmetric point sets)."""
    c = make_config(d=20, data=data)
    t = np.array([0.0, 1.0, 10.0, 100.0])
    pop = PS.compute_population(c, t, n_node=4, n_rho=1, n_z=4, rtol=1e-9,
                               x_par=[0.05, 0.5, 2.0])
    ref = T.compute(c, times=t, x_par=[0.05, 0.5, 2.0])
    for name in ("gamma", "S", "train_error", "loss", "slope"):
        np.testing.assert_allclose(getattr(pop, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-12, err_msg=name)
    # t_sat(0.05) is beyond t = 100: inf for the grid-bound population solver
    assert pop.t_sat[0] == np.inf and ref.t_sat[0] > t[-1]
    # root of the dense ODE output (DOP853 interpolant, rtol 1e-9): 1e-5 relative
    np.testing.assert_allclose(pop.t_sat[1:], ref.t_sat[1:], rtol=1e-5)


def test_population_solver_linear_activation_against_hand_derived_ode():
    """sigma(x) = x, derived by hand for this test: da/dt = 2 kappa w_par, dw_par/dt =
    2 kappa a (kappa = beta alpha V/sqrt d), f = alpha E[a w_par] x_par/sqrt d =
    2 S_relu(gamma) x_par, so gamma' = 2 beta alpha V(h/(2 S_relu))/sqrt d, solved here with
    solve_ivp; relative 1e-6."""
    c = make_config(d=20, activation="linear")
    t = np.array([0.0, 2.0, 20.0, 100.0])
    pop = PS.compute_population(c, t, n_node=4, n_rho=1, n_z=4, rtol=1e-9)
    K = c.alpha * (c.sa**2 + c.sw**2) / (4 * math.sqrt(c.d))

    def rate(_t, g):
        X = c.h / (2 * K * math.sinh(2 * g[0])) if g[0] > 0 else math.inf
        V = -math.expm1(-X * X / 2) / math.sqrt(2 * math.pi)
        return [2 * c.beta * c.alpha * V / math.sqrt(c.d)]

    ref = solve_ivp(rate, (0, t[-1]), [0.0], t_eval=t, rtol=1e-12, atol=1e-14).y[0]
    np.testing.assert_allclose(pop.gamma, ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(pop.S, 2 * K * np.sinh(2 * ref), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_population_drives_of_a_tanh_node_against_monte_carlo(data):
    """The population solver's drives (da, dw_par, drho for rho = |w_perp|/sqrt d) of single
    tanh nodes with U = {|x_par| < 1.1}, against Monte Carlo of the data averages of the node
    equations written here: beta alpha <y tanh(u) 1_U>, beta alpha a <y tanh'(u) x_par 1_U>
    /sqrt d, and beta alpha a <y tanh'(u) (e.x_perp) 1_U>/d with e the unit w_perp direction.
    Within 6 standard errors of the sample means (10^6 examples in 5e5 antithetic pairs,
    counted as 5e5 draws); 64 z-points (the z quadrature is then accurate to ~1e-5 relative,
    well inside the statistical error)."""
    rng = np.random.default_rng(10)
    d, n, X = 8, 500_000, 1.1
    c = make_config(d=d, data=data, activation="tanh", alpha=1.3, beta=0.7)
    a = np.array([0.8, -1.5, 0.3])
    w_par = np.array([1.2, 0.4, -2.0])
    rho = np.array([0.9, 0.3, 1.6])
    quad = PS.population_quadrature(c, 4, 1, 64)
    pop = PS._Population(c, quad)
    s, ws = pop.s_nodes([(0.0, X)])
    state = (a, w_par, rho)
    drive = [c.beta * c.alpha * (pop._eval(name, state, s) @ ws)
             for name in ("F_a", "F_w", "F_rho")]
    x = rng.normal(size=(n, d))
    if data == "sphere":
        x *= math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)
    x = np.concatenate([x, -x])
    y = np.sign(x[:, 0])
    inside = np.abs(x[:, 0]) < X
    e = np.zeros(d)
    e[1] = 1.0  # w_perp direction (any unit vector orthogonal to e_1, by symmetry)
    for i in range(3):
        u = (w_par[i] * x[:, 0] + rho[i] * math.sqrt(d) * x[:, 1]) / math.sqrt(d)
        dphi = 1 - np.tanh(u) ** 2
        terms = [
            c.beta * c.alpha * y * np.tanh(u) * inside,
            c.beta * c.alpha * a[i] * y * dphi * x[:, 0] * inside / math.sqrt(d),
            c.beta * c.alpha * a[i] * y * dphi * (x @ e) * inside / d,
        ]
        for k, term in enumerate(terms):
            assert drive[k][i] == pytest.approx(term.mean(), abs=6 * term.std() / math.sqrt(n))


@pytest.mark.slow
def test_population_solver_follows_a_direct_tanh_simulation():
    """tanh network on the sphere (where the population closure is exact), M = 500 nodes,
    N = 10^4 examples, d = 20, explicit Euler dt = 0.1 (written here from the network), against
    the population solver at t = 5, 10: gamma (simulator's estimator) within 3% and the
    training error within 0.03. Tolerances: the sources are the Euler error of dt = 0.1, the
    sample mean over N = 10^4 examples (~1% on the drive), finite M, and the binomial sd of the
    training error (0.005); a run with M = 1000, N = 2e4 (same dt) was 0.8% / 0.2% from the
    population on gamma at t = 5 / 10 and 0.01 on the training error, and the bounds leave
    room for the smaller M and N here."""
    rng = np.random.default_rng(11)
    M, N, d, dt = 500, 10_000, 20, 0.1
    c = make_config(d=d, M=M, N=N, data="sphere", activation="tanh", alpha=2.0)
    a0, W0 = rng.normal(0, c.sa, M), rng.normal(0, c.sw, (M, d))
    x = rng.normal(size=(N, d))
    x *= math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(x[:, 0])
    a, W = a0.copy(), W0.copy()
    u0 = a0 + W0[:, 0]
    sim = {}
    for n in range(1, 101):
        act = np.tanh(x @ W.T / math.sqrt(d))
        yu = y * (y * (c.alpha / M * act @ a) < c.h) / N
        da = c.beta * c.alpha * (yu @ act)
        dW = c.beta * c.alpha * a[:, None] * (((1 - act**2) * yu[:, None]).T @ x) / math.sqrt(d)
        a, W = a + dt * da, W + dt * dW
        if n in (50, 100):
            f = c.alpha / M * np.tanh(x @ W.T / math.sqrt(d)) @ a
            sim[n * dt] = (math.log(np.sum((a + W[:, 0]) * u0) / np.sum(u0**2)),
                           np.mean(y * f < c.h))
    pop = PS.compute_population(c, [0.0, 5.0, 10.0], n_node=8, n_rho=2, n_z=32)
    for i, t in enumerate((5.0, 10.0), start=1):
        assert sim[t][0] == pytest.approx(pop.gamma[i], rel=0.03)
        assert sim[t][1] == pytest.approx(pop.train_error[i], abs=0.03)


def test_a_solve_past_its_evaluation_budget_is_refused(monkeypatch):
    """Ordinary solves take a few hundred evaluations of the drives; past the budget the solver
    stops with a one-line TheoryError instead of running for minutes (erf at d = 3 is stiff)."""
    monkeypatch.setattr(PS, "MAX_DRIVE_EVALUATIONS", 5)
    c = make_config(d=8, activation="tanh")
    with pytest.raises(T.TheoryError, match="more than 5 evaluations of the drives"):
        PS.compute_population(c, [0.0, 1.0, 10.0], n_node=4, n_rho=1, n_z=8)

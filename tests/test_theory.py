"""meanfield.theory: gamma(t) two ways, asymptotes, observables against Monte Carlo, the Euler
push against a direct numpy simulation."""

import math

import numpy as np
import pytest

from meanfield import theory as T
from meanfield.config import make_config

TIMES = np.concatenate([[0.0], np.geomspace(1e-4, 1e12, 10_000)])


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_ode_and_quadrature_agree_to_1e9_up_to_1e12(data):
    """The two independent routes (DOP853 ODE in log(1 + t/t0), Gauss-Legendre quadrature of
    t(gamma) + Newton) on 10^4 log-spaced times up to 1e12; finite everywhere."""
    for c in (make_config(d=20, data=data), make_config(d=400, data=data, alpha=3.0, h=0.5,
                                                        sa=0.5, sw=2.0, beta=2.0)):
        gq = T.gamma_of_t(c, TIMES, "quad")
        go = T.gamma_of_t(c, TIMES, "ode")
        assert np.all(np.isfinite(gq)) and np.all(np.isfinite(go))
        assert gq[0] == 0 and np.all(np.diff(gq) > 0)
        np.testing.assert_allclose(go[1:], gq[1:], rtol=1e-9)


@pytest.mark.parametrize(("d", "data"), [(2, "sphere"), (3, "sphere"), (2, "gaussian"),
                                         (10_000, "sphere")])
def test_ode_and_quadrature_agree_at_extreme_dimensions(d, data):
    """d = 2 sphere: the x_par density (arcsine law) makes V(X) a square root at the support
    edge; d = 10^4: log-gamma ratios. Same 1e-9 agreement, finite asymptote."""
    c = make_config(d=d, data=data)
    t = TIMES[::50]
    np.testing.assert_allclose(T.gamma_of_t(c, t, "ode")[1:], T.gamma_of_t(c, t, "quad")[1:],
                               rtol=1e-9)
    r = T.compute(c, times=t)
    assert math.isfinite(r.asymptote_c) and abs(r.slope[-1] - 0.25) < 1e-5


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_late_asymptote_and_early_slope(data):
    """slope d gamma/d log t -> 1/4 and gamma - log(t)/4 - c -> 0, both O(t^-1/2) (checked
    shrinking); gamma(t)/t -> the early slope (relative O(t))."""
    c = make_config(d=50, data=data)
    r = T.compute(c, times=TIMES)
    late = r.t > 1e6
    resid = r.gamma - np.log(np.maximum(r.t, 1e-300)) / 4 - r.asymptote_c
    assert abs(resid[-1]) < 1e-5 and abs(r.slope[-1] - 0.25) < 1e-5
    assert np.all(np.diff(np.abs(resid[late])) < 0)
    # quadratic-in-t0 check of the early slope with an independent ODE value
    early = T.gamma_of_t(c, [1e-7], "ode")[0] / 1e-7
    assert early == pytest.approx(T._Relu.of(c).rate0, rel=1e-6)


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_t_sat_is_when_S_x_reaches_h(data):
    """t_sat by quadrature; at that time the ODE's gamma gives S |x_par| = h (1e-8)."""
    c = make_config(d=20, data=data)
    xs = np.array([0.02, 0.3, 1.0, 2.5])
    ts = T.t_sat(c, xs)
    assert np.all(np.diff(ts) < 0)
    g = T.gamma_of_t(c, ts[::-1], "ode")[::-1]
    S = np.exp(T._Relu.of(c).log_S(g))
    np.testing.assert_allclose(S * xs, c.h, rtol=1e-8)
    assert T.t_sat(c, [0.0])[0] == np.inf


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_train_error_and_loss_against_sampled_data(data):
    """P(y f < h) and <(h - y f)_+> with f = S x_par over 10^6 sampled examples, within 5
    standard errors of the sample means."""
    rng = np.random.default_rng(5)
    d, n = 12, 1_000_000
    c = make_config(d=d, data=data)
    r = T.compute(c, times=[0.0, 3.0, 30.0, 300.0])
    x = rng.normal(size=(n, d))
    if data == "sphere":
        x *= math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)
    margin = np.abs(x[:, 0])
    for S, P, L in zip(r.S, r.train_error, r.loss, strict=True):
        uns = S * margin < c.h
        hinge = np.maximum(c.h - S * margin, 0)
        assert P == pytest.approx(uns.mean(), abs=5 * uns.std() / math.sqrt(n) + 1e-12)
        assert L == pytest.approx(hinge.mean(), abs=5 * hinge.std() / math.sqrt(n) + 1e-12)


def test_node_trajectories_overflow_safe_and_exact():
    a0, w0 = np.array([0.3, -1.0]), np.array([0.5, 1.0])
    g = np.array([0.0, 0.7, 400.0])
    a, w = T.node_trajectories(a0, w0, g)
    np.testing.assert_allclose(a[:2], a0 * np.cosh(g[:2, None]) + w0 * np.sinh(g[:2, None]),
                               rtol=1e-14)
    np.testing.assert_allclose(w[:2], w0 * np.cosh(g[:2, None]) + a0 * np.sinh(g[:2, None]),
                               rtol=1e-14)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(w))
    # node 1 has a0 = -w0: it decays as exp(-gamma) exactly
    assert a[2, 1] == pytest.approx(-math.exp(-400.0), rel=1e-12)


def test_f_spread_against_monte_carlo():
    """f_spread (data-RMS std of f over draws of M nodes) and f_spread_x (std at fixed x_par)
    against the sample variance of per-node terms (M = 1 spread / sqrt(M)); 3% relative,
    about 5 standard errors of a variance from 10^6 terms."""
    rng = np.random.default_rng(6)
    d, n = 10, 1_000_000
    c = make_config(d=d, M=100, sa=0.9, sw=1.2, alpha=1.5)
    g = 0.8
    a0, W = rng.normal(0, c.sa, n), rng.normal(0, c.sw, (n, d))
    a, w = T.node_trajectories(a0, W[:, 0], np.array([g]))
    W[:, 0] = w[0]
    x = rng.normal(size=(n, d))  # one example per node: E_x Var_node
    terms = c.alpha * a[0] * np.maximum(np.sum(W * x, axis=1) / math.sqrt(d), 0)
    S = math.exp(T._Relu.of(c).log_S(np.array([g]))[0])
    var_total = np.mean((terms - S * x[:, 0]) ** 2)  # E_x Var_node, E_node term = S x_par
    assert T.f_spread(c, np.array([g]), np.array([S]))[0] == pytest.approx(
        math.sqrt(var_total / c.M), rel=0.03)
    x_par = 1.3
    xx = rng.normal(size=(n, d))
    xx[:, 0] = x_par
    terms_x = c.alpha * a[0] * np.maximum(np.sum(W * xx, axis=1) / math.sqrt(d), 0)
    # Gaussian x_perp: |x_perp|^2 fluctuates around d - 1, which the formula takes fixed;
    # the effect is O(1/d) on the variance of a term and inside the tolerance
    assert T.f_spread_x(c, np.array([g]), np.array([x_par]))[0, 0] == pytest.approx(
        terms_x.std() / math.sqrt(c.M), rel=0.03)


def test_validity_against_sampled_drive():
    """|(1/N) sum y theta(u) x_perp 1_U| / V from sampled data sets (RMS over repetitions)
    against sqrt(E[|x_perp|^2 1_U]/(2N)) / V; 10% (40 repetitions of a norm of 29 components
    gives a standard error of the RMS under 3%)."""
    rng = np.random.default_rng(7)
    d, N = 30, 4000
    c = make_config(d=d, N=N)
    r = T.compute(c, times=[0.0, 20.0])
    X = r.X[1]
    w = rng.normal(size=d)
    norms = []
    for _ in range(40):
        x = rng.normal(size=(N, d))
        y = np.sign(x[:, 0])
        uns = np.abs(x[:, 0]) < X
        g = ((y * (x @ w > 0) * uns)[:, None] * x).mean(axis=0)
        norms.append(np.sum(g[1:] ** 2))
    V = float(T.hinge.numerics("gaussian").V(X, d))
    assert r.validity[1] == pytest.approx(math.sqrt(np.mean(norms)) / V, rel=0.1)


def test_euler_push_converges_to_the_flow_at_first_order():
    """Halving dt halves the distance between the Euler push and the flow (first order)."""
    c = make_config(d=20)
    errs = []
    for dt in (0.2, 0.1, 0.05):
        steps = np.arange(0, 40 + dt / 2, dt)
        r = T.compute_on_schedule(c, steps)
        errs.append(abs(r.gamma[-1] - T.gamma_of_t(c, [steps[-1]])[0]))
    assert errs[0] / errs[1] == pytest.approx(2, rel=0.05)
    assert errs[1] / errs[2] == pytest.approx(2, rel=0.05)


def test_euler_push_follows_a_direct_numpy_simulation():
    """M = 1000 ReLU nodes, N = 20000 Gaussian examples, d = 20, 6 explicit Euler steps of
    dt = 2 of -beta M dL/dtheta (written here from the network, not from the theory), against
    compute_on_schedule with the sample's own initial moments.

    Stated statistical error (relative, on gamma): the sample mean of |x_par| 1_U that sets V
    has relative std sqrt(Var|x_par| / N)/E|x_par| (~0.5%), and each node's a-drive carries
    an O(validity) fluctuation averaged over M nodes by the estimator (validity/sqrt(M));
    tolerance = 4 x their sum."""
    rng = np.random.default_rng(8)
    M, N, d, dt, n_steps = 1000, 20_000, 20, 2.0, 6
    c = make_config(d=d, M=M, N=N)
    a0 = rng.normal(0, c.sa, M)
    W0 = rng.normal(0, c.sw, (M, d))
    x = rng.normal(size=(N, d))
    y = np.sign(x[:, 0])
    a, W = a0.copy(), W0.copy()
    gam = [0.0]
    u0 = a0 + W0[:, 0]
    for _ in range(n_steps):
        pre = x @ W.T / math.sqrt(d)
        act = np.maximum(pre, 0)
        f = c.alpha / M * act @ a
        yu = y * (y * f < c.h) / N
        da = c.beta * c.alpha * (yu @ act)
        dW = c.beta * c.alpha * a[:, None] * (((pre > 0) * yu[:, None]).T @ x) / math.sqrt(d)
        a, W = a + dt * da, W + dt * dW
        gam.append(math.log(np.sum((a + W[:, 0]) * u0) / np.sum(u0**2)))
    moments = {"a2": np.mean(a0**2), "w2": np.mean(W0[:, 0] ** 2),
               "aw": np.mean(a0 * W0[:, 0])}
    r = T.compute_on_schedule(c, dt * np.arange(n_steps + 1), init_moments=moments)
    rel_V = math.sqrt(1 - 2 / math.pi) / math.sqrt(2 / math.pi) / math.sqrt(N)
    tol = 4 * (rel_V + r.validity[1] / math.sqrt(M))
    np.testing.assert_allclose(np.array(gam[1:]), r.gamma[1:], rtol=tol)
    assert r.gamma[-1] > 0.5  # the test covers a real change of gamma


def test_euler_push_with_sample_moments_equals_pushing_the_sample():
    """A finite set of nodes pushed by Euler steps of da/dt = kappa w_par, dw_par/dt = kappa a,
    with kappa from the nodes' own S = alpha mean(a w_par)/(2 sqrt d) and the Gaussian V
    (written here): gamma_+ (the estimator), gamma_- and S equal compute_on_schedule with the
    sample's moments to 1e-10 (only rounding differs). Large steps (eps up to ~1) make the
    gamma_+ / gamma_- distinction visible."""
    rng = np.random.default_rng(9)
    c = make_config(d=5, alpha=2.0, sa=1.3, sw=0.6)
    a0, w0 = rng.normal(0, c.sa, 50), rng.normal(0, c.sw, 50)
    steps = np.array([0.0, 3.0, 5.0, 9.0, 10.0, 30.0])
    a, w = a0.copy(), w0.copy()
    gp, gm, S_list = [0.0], [0.0], []
    u0, v0 = a0 + w0, a0 - w0
    for dt in np.diff(steps):
        S = c.alpha * np.mean(a * w) / (2 * math.sqrt(c.d))
        S_list.append(S)
        X = c.h / S if S > 0 else math.inf
        kappa = c.beta * c.alpha * -math.expm1(-X * X / 2) / math.sqrt(2 * math.pi * c.d)
        a, w = a + dt * kappa * w, w + dt * kappa * a
        gp.append(math.log(np.sum((a + w) * u0) / np.sum(u0**2)))
        gm.append(-math.log(abs(np.sum((a - w) * v0) / np.sum(v0**2))))
    moments = {"a2": np.mean(a0**2), "w2": np.mean(w0**2), "aw": np.mean(a0 * w0)}
    r = T.compute_on_schedule(c, steps, init_moments=moments)
    np.testing.assert_allclose(r.gamma, gp, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.gamma_minus, gm, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.S[:-1], S_list, rtol=1e-10, atol=1e-14)
    assert abs(r.gamma[-1] - r.gamma_minus[-1]) > 0.01


def test_node_trajectories_of_the_euler_push_use_both_exponents():
    """Nodes pushed by Euler steps (every eps_n = dt_n kappa_n < 1, as in any simulation) are
    the closed form with gamma_+ for a + w_par and gamma_- for a - w_par, to rounding; with
    gamma_- replaced by gamma_+ (the flow's form) they are not."""
    rng = np.random.default_rng(4)
    c = make_config(d=5, alpha=2.0, sa=1.3, sw=0.6)
    a0, w0 = rng.normal(0, c.sa, 40), rng.normal(0, c.sw, 40)
    steps = np.array([0.0, 1.0, 2.0, 2.5, 4.0, 6.0])  # kappa <= 0.36, so eps_n <= 0.72
    moments = {"a2": np.mean(a0**2), "w2": np.mean(w0**2), "aw": np.mean(a0 * w0)}
    r = T.compute_on_schedule(c, steps, init_moments=moments)
    a, w = a0.copy(), w0.copy()
    for n, dt in enumerate(np.diff(steps)):
        S = c.alpha * np.mean(a * w) / (2 * math.sqrt(c.d))
        assert S == pytest.approx(r.S[n], rel=1e-10)
        X = c.h / S if S > 0 else math.inf
        kappa = c.beta * c.alpha * -math.expm1(-X * X / 2) / math.sqrt(2 * math.pi * c.d)
        assert dt * kappa < 1
        a, w = a + dt * kappa * w, w + dt * kappa * a
    a_th, w_th = T.node_trajectories(a0, w0, r.gamma[-1:], r.gamma_minus[-1:])
    np.testing.assert_allclose(a_th[0], a, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(w_th[0], w, rtol=1e-10, atol=1e-13)
    a_one, _ = T.node_trajectories(a0, w0, r.gamma[-1:])
    assert np.max(np.abs(a_one[0] - a)) > 1e-2


def test_theory_refuses_what_it_does_not_cover():
    with pytest.raises(T.TheoryError, match="hinge"):
        T.compute(make_config(loss="squared"), times=[0, 1])
    with pytest.raises(T.TheoryError, match="relu"):
        T.compute_on_schedule(make_config(activation="tanh"), [0, 1])
    with pytest.raises(T.TheoryError, match="increasing"):
        T.compute(make_config(), times=[0, 2, 1])
    with pytest.raises(T.TheoryError, match="jump"):
        T.compute(make_config(activation="step"), times=[0, 1])
    with pytest.raises(T.TheoryError, match="margin"):
        T.compute(make_config(margin=0.1), times=[0, 1])




# ----------------------------------------------------------------------------- any record times


def test_explicit_times_to_1e12_need_no_schedule():
    """--times 1e3,1e6,1e9,1e12 with dt = 1: the record times are themselves (plus 0), in
    well under a second (the uniform schedule to 1e12 is never built); gamma agrees with the
    independent ODE route to 1e-9 and approaches the asymptote log(t)/4 + c."""
    import time

    c = make_config(d=20, times="1e3,1e6,1e9,1e12", dt=1.0)
    start = time.perf_counter()
    r = T.compute(c)
    assert time.perf_counter() - start < 5.0
    np.testing.assert_array_equal(r.t, [0.0, 1e3, 1e6, 1e9, 1e12])
    np.testing.assert_allclose(r.gamma[1:], T.gamma_of_t(c, r.t, "ode")[1:], rtol=1e-9)
    assert abs(r.gamma[-1] - (math.log(1e12) / 4 + r.asymptote_c)) < 1e-3


@pytest.mark.parametrize(("times", "dt", "growth"), [("1,10,100", 1.0, 0.0),
                                                     ("0.3,2,7.5,40", 0.5, 0.1),
                                                     ("0,2.5,1000", 0.25, 0.0)])
def test_explicit_times_are_the_schedule_record_times_bitwise(times, dt, growth):
    """The record times without a schedule equal the schedule's (the route of the simulator,
    steps[record]) exactly, and so do all the curves (same inputs, same bits)."""
    from meanfield.schedule import schedule

    c = make_config(times=times, dt=dt, growth=growth, x_par=(0.2, 1.5))
    steps, record = schedule(c)
    np.testing.assert_array_equal(T.default_times(c), steps[record])
    new, old = T.compute(c), T.compute(c, times=steps[record])
    for name in ("t", "gamma", "S", "X", "train_error", "loss", "slope", "validity",
                 "f_spread", "t_sat", "f_spread_x"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)


def test_t_max_path_is_the_schedule_record_times_and_bounded():
    """Without explicit times: the simulator's record times where the schedule is small (exact
    equality), log-spaced times where it would be huge, also for a geometric schedule whose
    uniform start alone has 1e12 steps (count_steps decides, in milliseconds)."""
    from meanfield.schedule import schedule

    c = make_config(d=20, t_max=1e4, growth=0.01)
    steps, record = schedule(c)
    np.testing.assert_array_equal(T.compute(c).t, steps[record])
    for c in (make_config(t_max=1e12, dt=1.0), make_config(t_max=1e12, dt=1e-3, growth=1e-12)):
        t = T.default_times(c)
        assert t[0] == 0 and t[-1] == 1e12 and len(t) == c.n_times + 1
        np.testing.assert_allclose(np.diff(np.log(t[1:])), np.log(1e12 / c.dt) / (c.n_times - 1),
                                   rtol=1e-9)


def test_many_times_in_chunks_equal_one_call(monkeypatch):
    """More than CHUNK times are evaluated in chunks (CHUNK lowered to 1000 here, and the
    (t, x_par) blocks of f_spread_x to 64 pairs): the same gamma as the independent ODE route
    (1e-9), and the same f_spread_x, t_sat and curves as one unchunked call (1e-12; the
    chunks only split elementwise work)."""
    c = make_config(d=30, x_par=(0.05, 0.5, 2.0))
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e12, 2500)])
    whole = T.compute(c, times=t)
    monkeypatch.setattr(T, "CHUNK", 1000)
    monkeypatch.setattr(T, "_SPREAD_PAIRS", 64)
    r = T.compute(c, times=t)
    pick = np.array([1, 999, 1000, 1001, t.size - 1])
    np.testing.assert_allclose(r.gamma[pick], T.gamma_of_t(c, t[pick], "ode"), rtol=1e-9)
    for name in ("gamma", "S", "X", "train_error", "loss", "f_spread", "t_sat", "f_spread_x"):
        np.testing.assert_allclose(getattr(r, name), getattr(whole, name), rtol=1e-12,
                                   err_msg=name)
    monkeypatch.setattr(T, "_SPREAD_PAIRS", 2)  # fewer pairs than x_par values: per time
    np.testing.assert_allclose(T._spread_x(c, whole.gamma[:7], np.asarray(c.x_par)),
                               whole.f_spread_x[:7], rtol=1e-12)


def test_refusals_name_the_limit_instead_of_allocating(monkeypatch):
    """The closed form, the Euler push and the population solver refuse more times or steps
    than their stated limits with a TheoryError naming the limit, before any work (limits
    lowered here so that the boundary itself is tested: the limit passes, one more fails)."""
    import time

    from meanfield import population

    monkeypatch.setattr(T, "MAX_TIMES", 10)
    c = make_config(d=20)
    assert T.compute(c, times=np.arange(11.0)).t.size == 11  # 10 besides t = 0
    with pytest.raises(T.TheoryError, match="at most 10 record times besides t = 0; got 11"):
        T.compute(c, times=np.arange(12.0))
    with pytest.raises(T.TheoryError, match="n_times: at most 10"):
        T.default_times(make_config(n_times=11))
    monkeypatch.setattr(T, "MAX_SCHEDULE_STEPS", 50)
    assert T.compute_on_schedule(c, np.arange(51.0)).t.size == 51
    with pytest.raises(T.TheoryError, match=r"at most 50 steps .*; got 51"):
        T.compute_on_schedule(c, np.arange(52.0))
    monkeypatch.setattr(population, "MAX_POPULATION_TIMES", 3)
    start = time.perf_counter()
    with pytest.raises(T.TheoryError, match="at most 3 record times"):
        T.compute(make_config(d=10, activation="tanh"), times=[0, 1, 2, 3])
    assert time.perf_counter() - start < 1.0


def test_t_sat_past_the_supported_times_is_a_labelled_inf(tmp_path):
    """An x_par so small that S(t)|x_par| reaches h only after t = 1e15 (tiny x_par need t
    far past the float range) gets t_sat = inf, quickly, labelled in the file; ordinary values
    keep their finite t_sat (compared with the closed form of t(gamma) written here)."""
    import time

    import h5py

    from meanfield.files.theory import write_theory

    c = make_config(d=20, t_max=100.0, x_par=(0.0, 1e-273, 1e-15, 0.5))
    start = time.perf_counter()
    out = T.t_sat(c, c.x_par)
    assert time.perf_counter() - start < 5.0
    assert np.isinf(out[:3]).all() and np.isfinite(out[3])
    # x_par = 0.5 is satisfied when K sinh(2 gamma) 0.5 = h, K = alpha (sa^2+sw^2)/(4 sqrt d):
    # gamma(t_sat) by the ODE route equals that gamma (both solvers agree to 1e-9)
    K = c.alpha * (c.sa**2 + c.sw**2) / (4 * math.sqrt(c.d))
    g = T.gamma_of_t(c, [out[3]], "ode")[0]
    assert g == pytest.approx(0.5 * math.asinh(c.h / (K * 0.5)), rel=1e-8)
    r = T.compute(c, x_par=c.x_par)
    write_theory(r, tmp_path / "t.h5")
    with h5py.File(tmp_path / "t.h5") as f:
        assert "after t = 1e15" in f["t_sat"].attrs["non_finite"]


def test_too_many_spread_pairs_are_refused_before_work():
    c = make_config(d=20, x_par=tuple(float(i) for i in range(1, 31)))
    times = np.linspace(0.0, 1e3, 100_000)
    with pytest.raises(T.TheoryError, match="at most 2e\\+06 \\(time, x_par\\) pairs"):
        T.compute(c, times=times)

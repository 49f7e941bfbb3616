"""analytic.hinge: every derived expression against an independent numerical route.

Routes: finite differences of the network's hinge loss (node equations), numerical ODE
integration (trajectories), Monte Carlo over nodes and data (S, reduction, sphere law),
scipy quadrature of the data densities (V, P(U), E[x_par^2 1_U], normalisation), and hand
derivations typed in the test only (C, early slope), never copied from the code under test.
"""

import math

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad, solve_ivp
from scipy.special import gammaln

from analytic import hinge as H


def _lam(expr, *args):
    return sp.lambdify(args, expr, modules=["scipy", "numpy"])


def test_node_equations_match_finite_differences_of_the_loss():
    """-beta M dL/dtheta by central differences of the hinge loss of a small tanh network.

    Tolerance 1e-7: central differences with step 1e-6 have O(1e-12) truncation error for
    this smooth activation; no example sits within 1e-4 of the hinge (checked), so the
    kink of the hinge is never crossed."""
    rng = np.random.default_rng(1)
    M, d, N, alpha, beta, h = 3, 4, 9, 1.7, 0.6, 0.3
    a = rng.normal(size=M)
    W = rng.normal(size=(M, d))
    Xd = rng.normal(size=(N, d))
    y = np.sign(Xd[:, 0])

    def loss(a_, W_):
        f = alpha / M * np.tanh(Xd @ W_.T / math.sqrt(d)) @ a_
        return np.mean(np.maximum(0.0, h - y * f))

    f = alpha / M * np.tanh(Xd @ W.T / math.sqrt(d)) @ a
    assert np.min(np.abs(h - y * f)) > 1e-4
    eq = H.node_equations()
    subs_sigma = {H.sigma(H.u): sp.tanh(H.u)}
    da_expr = eq["da_dt"].subs(subs_sigma).doit()
    dw_expr = eq["dw_dt"].subs(subs_sigma).doit()
    syms = (H.u, H.f_sym, H.y, H.x_l, H.a, H.alpha, H.beta, H.h, H.d)
    da_fn, dw_fn = _lam(da_expr, *syms), _lam(dw_expr, *syms)
    eps = 1e-6
    j, l = 1, 2
    u_j = Xd @ W[j] / math.sqrt(d)
    da_theory = np.mean(da_fn(u_j, f, y, 0.0, a[j], alpha, beta, h, d))
    dw_theory = np.mean(dw_fn(u_j, f, y, Xd[:, l], a[j], alpha, beta, h, d))
    e_a = np.zeros(M)
    e_a[j] = eps
    e_w = np.zeros((M, d))
    e_w[j, l] = eps
    da_fd = -beta * M * (loss(a + e_a, W) - loss(a - e_a, W)) / (2 * eps)
    dw_fd = -beta * M * (loss(a, W + e_w) - loss(a, W - e_w)) / (2 * eps)
    assert da_theory == pytest.approx(da_fd, rel=1e-7, abs=1e-9)
    assert dw_theory == pytest.approx(dw_fd, rel=1e-7, abs=1e-9)


def test_relu_reduction_against_antithetic_monte_carlo():
    """<y relu(u) 1_U> = kappa w_par/(beta alpha) and <y theta(u) x 1_U> = V e_1 for a random
    node, with x_par drawn Gaussian and U = {|x_par| < X}.

    Antithetic pairs (x, -x) make the symmetry exact in the sample; the remaining error comes
    from x_perp (mean zero) and is bounded by 6 standard errors of the sample means."""
    rng = np.random.default_rng(2)
    d, n, X = 6, 400_000, 0.8
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    x = np.concatenate([x, -x])
    y = np.sign(x[:, 0])
    inside = np.abs(x[:, 0]) < X
    u = x @ w / math.sqrt(d)
    V = 0.5 * np.mean(np.abs(x[:, 0]) * inside)
    red = H.relu_reduction()
    kappa = _lam(red["kappa"], H.V, H.alpha, H.beta, H.d)(V, 1.0, 1.0, d)
    terms_a = y * np.maximum(u, 0) * inside
    assert np.mean(terms_a) == pytest.approx(kappa * w[0], abs=6 * terms_a.std() / math.sqrt(n))
    terms_w = (y * (u > 0) * inside)[:, None] * x
    drive = terms_w.mean(axis=0)
    err = 6 * terms_w.std(axis=0) / math.sqrt(n)
    assert drive[0] == pytest.approx(V, abs=err[0])
    assert np.all(np.abs(drive[1:]) < err[1:])  # w_perp frozen
    assert red["dw_perp_dt"] == 0


def test_closed_form_trajectories_solve_the_reduced_equations():
    """a(gamma), w_par(gamma) from dsolve against solve_ivp of da/dg = w, dw/dg = a
    (rtol 1e-12, so 1e-9 relative agreement is a real check)."""
    sol = H.relu_solution()
    fa = _lam(sol["a"], H.a0, H.w0, H.gamma)
    fw = _lam(sol["w_par"], H.a0, H.w0, H.gamma)
    a0, w0 = 0.7, -1.3
    gs = np.linspace(0, 3, 7)
    num = solve_ivp(lambda g, v: [v[1], v[0]], (0, 3), [a0, w0], t_eval=gs, rtol=1e-12,
                    atol=1e-14)
    np.testing.assert_allclose(fa(a0, w0, gs), num.y[0], rtol=1e-9)
    np.testing.assert_allclose(fw(a0, w0, gs), num.y[1], rtol=1e-9)


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_output_slope_against_monte_carlo_of_many_nodes(data):
    """f(x) of 400000 nodes moved by the closed form equals S x_par within 6 standard errors
    of the node average (computed from the sample itself)."""
    rng = np.random.default_rng(3)
    M, d, alpha, sa, sw, g = 400_000, 10, 1.3, 0.8, 1.1, 0.6
    a0 = rng.normal(0, sa, M)
    W0 = rng.normal(0, sw, (M, d))
    sol = H.relu_solution()
    a = _lam(sol["a"], H.a0, H.w0, H.gamma)(a0, W0[:, 0], g)
    W = W0.copy()
    W[:, 0] = _lam(sol["w_par"], H.a0, H.w0, H.gamma)(a0, W0[:, 0], g)
    S = _lam(sol["S"], H.alpha, H.sa, H.sw, H.d, H.gamma)(alpha, sa, sw, d, g)
    for _ in range(3):
        x = rng.normal(size=d)
        if data == "sphere":
            x *= math.sqrt(d) / np.linalg.norm(x)
        terms = alpha * a * np.maximum(W @ x / math.sqrt(d), 0)
        assert terms.mean() == pytest.approx(S * x[0], abs=6 * terms.std() / math.sqrt(M))


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
@pytest.mark.parametrize("d", [3, 20, 500])
def test_data_law_against_quadrature(data, d):
    """V, P(U), E[x_par^2 1_U], E[|x_perp|^2 1_U] against scipy.quad of the density written
    here (Gaussian; sphere marginal c_d (1 - x^2/d)^((d-3)/2), c_d by log-gamma); relative
    1e-9 (quad is accurate to ~1e-13 on these smooth integrands)."""
    num = H.numerics(data)
    if data == "gaussian":
        def p(x):
            return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    else:
        log_cd = gammaln(d / 2) - gammaln((d - 1) / 2) - 0.5 * math.log(math.pi * d)

        def p(x):
            return math.exp(log_cd) * (1 - x * x / d) ** ((d - 3) / 2)
    top = math.sqrt(d) if data == "sphere" else np.inf
    assert quad(p, -top, top, epsabs=0, epsrel=1e-12)[0] == pytest.approx(1.0, rel=1e-10)
    for X in (1e-3, 0.4, 1.7):
        V = quad(lambda x: x * p(x), 0, X, epsabs=0, epsrel=1e-13)[0]
        P = 2 * quad(p, 0, X, epsabs=0, epsrel=1e-13)[0]
        M2 = 2 * quad(lambda x: x * x * p(x), 0, X, epsabs=0, epsrel=1e-13)[0]
        assert float(num.V(X, d)) == pytest.approx(V, rel=1e-9)
        assert float(num.P_U(X, d)) == pytest.approx(P, rel=1e-9)
        assert float(num.M2_U(X, d)) == pytest.approx(M2, rel=1e-9)
        perp = (d - 1) * P if data == "gaussian" else d * P - M2
        assert float(num.perp_sq_U(X, d)) == pytest.approx(perp, rel=1e-9)
        assert float(num.density(X, d)) == pytest.approx(p(X), rel=1e-9)
    V_max = quad(lambda x: x * p(x), 0, top, epsabs=0, epsrel=1e-13)[0]
    assert float(num.V_max(d)) == pytest.approx(V_max, rel=1e-9)


def test_sphere_law_against_sampled_sphere():
    """P(|x_par| < X) for points uniform on the sphere of radius sqrt(d) (normalised Gaussian
    vectors): within 5 binomial standard errors."""
    rng = np.random.default_rng(4)
    d, n, X = 7, 400_000, 0.9
    x = rng.normal(size=(n, d))
    x_par = math.sqrt(d) * x[:, 0] / np.linalg.norm(x, axis=1)
    frac = np.mean(np.abs(x_par) < X)
    P = float(H.numerics("sphere").P_U(X, d))
    assert frac == pytest.approx(P, abs=5 * math.sqrt(P * (1 - P) / n))


@pytest.mark.parametrize("data", ["gaussian", "sphere"])
def test_asymptote_and_early_slope_against_hand_derivation(data):
    """C, c and the early slope against the hand derivation (typed here):
    Gaussian C = 32 beta h^2 sqrt(d) / (sqrt(2 pi) alpha (sa^2+sw^2)^2), sphere
    C = C_gauss c_d sqrt(2 pi); c = log(4 C)/4; early slope = beta alpha <|x_par|>/(2 sqrt d).
    Also C as exp(4 gamma) d gamma/dt at gamma = 12 (relative 1e-9: the correction is
    O(exp(-4 gamma)))."""
    num = H.numerics(data)
    alpha, beta, h, d, sa, sw = 1.4, 0.7, 0.9, 20.0, 0.8, 1.2
    s2 = sa**2 + sw**2
    C_g = 32 * beta * h**2 * math.sqrt(d) / (math.sqrt(2 * math.pi) * alpha * s2**2)
    c_d = math.exp(gammaln(d / 2) - gammaln((d - 1) / 2)) / math.sqrt(math.pi * d)
    C_hand = C_g if data == "gaussian" else C_g * c_d * math.sqrt(2 * math.pi)
    C = float(num.C(alpha, beta, h, d, sa, sw))
    assert C == pytest.approx(C_hand, rel=1e-12)
    assert float(num.c(alpha, beta, h, d, sa, sw)) == pytest.approx(math.log(4 * C) / 4,
                                                                      rel=1e-12)
    g = 12.0
    S = float(num.S_coef(alpha, sa, sw, d)) * math.sinh(2 * g)
    rate = float(num.kappa_coef(alpha, beta, d)) * float(num.V(h / S, d))
    assert math.exp(4 * g) * rate == pytest.approx(C, rel=1e-9)
    mean_abs = math.sqrt(2 / math.pi) if data == "gaussian" else 2 * c_d * d / (d - 1)
    assert float(num.early_slope(alpha, beta, d)) == pytest.approx(
        beta * alpha * mean_abs / (2 * math.sqrt(d)), rel=1e-12)


def test_gamma_sat_solves_S_x_equals_h():
    num = H.numerics("gaussian")
    alpha, h, d, sa, sw = 1.1, 0.8, 30.0, 1.0, 0.5
    for x in (0.05, 1.0, 4.0):
        g = float(num.gamma_sat(x, alpha, h, d, sa, sw))
        S = float(num.S_coef(alpha, sa, sw, d)) * math.sinh(2 * g)
        assert S * x == pytest.approx(h, rel=1e-12)


def test_relu_square_mean_against_quadrature():
    fn = H.numerics("gaussian").relu_square_mean
    for b, r in ((0.3, 0.7), (-1.2, 0.4), (2.0, 1.5)):
        ref = quad(lambda z, b=b, r=r: max(b + r * z, 0) ** 2 * math.exp(-z * z / 2)
                   / math.sqrt(2 * math.pi), -np.inf, np.inf, epsabs=0, epsrel=1e-12)[0]
        assert float(fn(b, r)) == pytest.approx(ref, rel=1e-9)


# Probe points for the LaTeX check, by symbol name (exact rationals; sigma is tanh there).
_LATEX_PROBES = (
    {"alpha": "13/10", "beta": "7/10", "h": "9/10", "d": "11", "sa": "4/5", "sw": "6/5",
     "gamma": "3/5", "a_0": "2/5", "w_0": "-11/10", "X": "4/5", "V": "3/10", "S": "1/2",
     "x_par": "13/10", "u": "1/5", "f": "1/10", "y": "-1", "x_l": "1/2", "a": "7/10",
     "w_par": "-3/10", "C": "5/2", "s": "9/10", "rho": "3/5", "k": "19/20", "z": "2/5"},
    {"alpha": "1/3", "beta": "5/2", "h": "3/2", "d": "59/2", "sa": "3/2", "sw": "1/4",
     "gamma": "17/10", "a_0": "-3/4", "w_0": "1/8", "X": "5/2", "V": "7/4", "S": "9/4",
     "x_par": "-1/3", "u": "-6/5", "f": "2", "y": "1", "x_l": "-2", "a": "-1/2",
     "w_par": "6/5", "C": "1/7", "s": "3/2", "rho": "1/5", "k": "1/2", "z": "-7/5"},
)


def _at(expr, probe):
    """``expr`` at a probe point (30 digits), with ``sigma = tanh``."""
    e = expr.replace(H.sigma, sp.tanh)
    e = e.replace(lambda n: isinstance(n, sp.Derivative), lambda n: n.doit())
    return sp.N(e.subs({sym: sp.Rational(probe[sym.name]) for sym in e.free_symbols}), 30)


def _latex_table(law, eq, red, sol, dl):
    """Each equation as its text parts and (derived expression, formula typed here) pairs.

    The typed formulas are those of the module docstring of analytic.hinge and the hand
    derivations of the tests above."""
    al, be, h, d, sa, sw, g = H.alpha, H.beta, H.h, H.d, H.sa, H.sw, H.gamma
    X, V, S, C, xp = H.X, H.V, H.S, H.C, H.x_par
    theta = sp.Heaviside(h - H.y * H.f_sym)
    kappa = be * al * V / sp.sqrt(d)
    s_coef = al * (sa**2 + sw**2) / (4 * sp.sqrt(d))
    c_gauss = 32 * be * h**2 * sp.sqrt(d) / (sp.sqrt(2 * sp.pi) * al * (sa**2 + sw**2) ** 2)
    if law == "gaussian":
        p = sp.exp(-xp**2 / 2) / sp.sqrt(2 * sp.pi)
        V_X = (1 - sp.exp(-X**2 / 2)) / sp.sqrt(2 * sp.pi)
        P_X = sp.erf(X / sp.sqrt(2))
        mean_abs, C_hand = sp.sqrt(2 / sp.pi), c_gauss
    else:
        c_d = sp.gamma(d / 2) / (sp.gamma((d - 1) / 2) * sp.sqrt(sp.pi * d))
        p = c_d * (1 - xp**2 / d) ** ((d - 3) / 2)
        V_X = c_d * d / (d - 1) * (1 - (1 - X**2 / d) ** ((d - 1) / 2))
        q = sp.Symbol("q", real=True)
        P_X = sp.Integral(p.subs(xp, q), (q, -X, X))  # quadrature at the probe
        mean_abs, C_hand = 2 * c_d * d / (d - 1), c_gauss * c_d * sp.sqrt(2 * sp.pi)
    rate = r"\frac{d\gamma}{dt}"
    return {
        "node_da_dt": [r"\frac{da}{dt} = \left\langle ",
                       (eq["da_dt"], be * al * H.y * H.sigma(H.u) * theta), r" \right\rangle"],
        "node_dw_dt": [r"\frac{dw_l}{dt} = \left\langle ",
                       (eq["dw_dt"], be * al * H.a * H.y * sp.Derivative(H.sigma(H.u), H.u)
                        * H.x_l / sp.sqrt(d) * theta), r" \right\rangle"],
        "kappa": [r"\kappa = ", (red["kappa"], kappa),
                  r",\quad V = \tfrac12\langle |x_\parallel| 1_U\rangle"],
        "reduced": [r"\frac{da}{dt} = ", (red["da_dt"], kappa * H.w_par),
                    r",\quad \frac{dw_\parallel}{dt} = ", (red["dw_par_dt"], kappa * H.a),
                    r",\quad \frac{dw_\perp}{dt} = 0"],
        "a_of_gamma": ["a = ", (sol["a"], H.a0 * sp.cosh(g) + H.w0 * sp.sinh(g))],
        "w_par_of_gamma": [r"w_\parallel = ", (sol["w_par"], H.w0 * sp.cosh(g)
                                                + H.a0 * sp.sinh(g))],
        "output": [r"f(x) = S x_\parallel,\quad S = ", (sol["S"], s_coef * sp.sinh(2 * g))],
        "unsatisfied_set": [r"U = \{|x_\parallel| < X\},\quad X = ", (sol["X"], h / S)],
        "density": [r"p(x_\parallel) = ",
                    (dl["density"].subs(sp.Symbol("x", real=True), xp), p)],
        "V": ["V = ", (dl["V"], V_X)],
        "gamma_equation": [rate + " = ", (dl["gamma_rate"], kappa.subs(V, V_X))],
        "early_slope": [r"\left." + rate + r"\right|_{t=0} = ",
                        (dl["early_slope"], be * al * mean_abs / (2 * sp.sqrt(d)))],
        "late_asymptote": [rate + r" \sim C e^{-4\gamma},\quad C = ", (dl["C"], C_hand)],
        "asymptote_c": [r"\gamma = \frac{\log t}{4} + c,\quad c = ",
                        (dl["c_of_C"], sp.log(4 * C) / 4)],
        "t_sat": [r"t_{sat}(x_\parallel) = t(\gamma_{sat}),\quad \gamma_{sat} = ",
                  (sol["gamma_sat"], sp.asinh(h / (s_coef * sp.Abs(xp))) / 2)],
        "train_error": ["P_{U} = ", (dl["P_U"], P_X)],
        "loss": [r"\mathcal{L} = ", (dl["loss"], h * P_X - 2 * S * V_X)],
    }


def _population_table(act_expr, ints):
    """The population integrands for ``phi``: summing ``x_par = +-s`` (``y = +-1``) in the node
    equations, with ``u_pm = +-w_par s/sqrt(d) + rho k z`` (typed here)."""
    a, s, d = H.a, H.s, H.d
    up = H.w_par * s / sp.sqrt(d) + H.rho * H.k_perp * H.z
    um = -H.w_par * s / sp.sqrt(d) + H.rho * H.k_perp * H.z
    phi = sp.Lambda(H.u, act_expr)
    dphi = sp.Lambda(H.u, sp.diff(act_expr, H.u))
    hand = {
        "F_a": phi(up) - phi(um),
        "F_w": a * s / sp.sqrt(d) * (dphi(up) + dphi(um)),
        "F_rho": a * H.k_perp * H.z * (dphi(up) - dphi(um)) / d,
        "F_f": a * phi(up),
    }
    return {f"population_{name}": [f"{name} = ", (ints[name], hand[name])] for name in hand}


@pytest.mark.parametrize("law", H.DATA_LAWS)
def test_latex_equations_are_the_derived_expressions(law):
    """Every LaTeX equation is exactly ``sympy.latex`` of the derived expressions in their
    places (the text around them typed here), and each such expression equals the documented
    formula (typed here) at two probe points to 20 digits; the LaTeX is also unchanged when
    the expression comes back from the disk cache (srepr through the whitelist reader).

    (Parsing the LaTeX back with ``sympy.parsing.latex`` would need antlr4, not a dependency.)
    """
    from analytic.activations import X as ACT_X
    from analytic.activations import get_activation
    from analytic.cache import from_srepr

    parts = {law: _latex_table(law, H.node_equations(), H.relu_reduction(), H.relu_solution(),
                               H.data_law(law))}
    tanh = get_activation("tanh")
    with_pop = {**parts[law], **_population_table(tanh.expr.subs(ACT_X, H.u),
                                                  H.population_integrands(tanh))}
    for eqs, table in ((H.latex_equations(law), parts[law]),
                       (H.latex_equations(law, get_activation("relu")), parts[law]),
                       (H.latex_equations(law, tanh), with_pop)):
        assert list(eqs) == list(table)  # every equation checked, in derivation order
        for name, pieces in table.items():
            text = "".join(p if isinstance(p, str) else sp.latex(p[0]) for p in pieces)
            assert eqs[name] == text, name
    for name, pieces in with_pop.items():
        for derived, typed in (p for p in pieces if not isinstance(p, str)):
            rebuilt = from_srepr(sp.srepr(derived), functions={"sigma": H.sigma})
            assert sp.latex(rebuilt) == sp.latex(derived), name
            for probe in _LATEX_PROBES:
                got, want = _at(derived, probe), _at(typed, probe)
                assert abs(got - want) <= 1e-20 * max(1, abs(want)), (name, probe, got, want)

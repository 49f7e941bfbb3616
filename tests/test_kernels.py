"""Infinite-width kernels and affine NTK coefficients (analytic.kernels), each checked
against an independent route: closed form vs 2-D quadrature vs Mehler series, symbolic
Taylor coefficients vs the affine coefficients, infinite width vs a wide empirical NTK."""

import math
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from scipy.special import erf
from scipy.stats import norm

from analytic.kernels import (
    CLOSED_FORMS,
    QP,
    RHO,
    NumericActivation,
    Q,
    affine_coefficients,
    dual_kernel_quadrature,
    erf_kernels,
    feature_map,
    gaussian_expectation,
    gaussian_rule,
    identify_closed_form,
    mehler_kernel,
    mehler_series,
    relu_kernels,
    two_layer_kernels,
)
from meanfield.linear import (
    affine_kernel,
    empirical_ntk,
    infinite_width_ntk,
    init_params,
    relative_error,
    sample_inputs,
)


def relu(x):
    return np.maximum(x, 0.0)


def step(x):
    return (x > 0).astype(float)


def derf(x):
    return 2 / np.sqrt(np.pi) * np.exp(-x * x)


def dtanh(x):
    return 1 / np.cosh(x) ** 2


RELU = NumericActivation(relu, step, (0.0,), "relu")
ERF = NumericActivation(erf, derf, (), "erf")
TANH = NumericActivation(np.tanh, dtanh, (), None)
# the same relu without its closed form: forces the Mehler / quadrature route
RELU_SERIES = NumericActivation(relu, step, (0.0,), None)

POINTS = [(0.3, 1.0, 1.0), (0.5, 1.2, 0.8), (-0.7, 1.0, 1.1), (0.05, 0.9, 1.05), (0.9, 1.0, 1.0)]


def quadrature_moments(act):
    """nu, zeta, mu2 (Stein: E phi'' = E[phi' g]), E_phi2, E_dphi2 by 1-D quadrature."""
    e = lambda F: gaussian_expectation(F, act.kinks)  # noqa: E731
    return {"nu": e(act.phi), "zeta": e(act.dphi), "mu2": e(lambda x: x * act.dphi(x)),
            "E_phi2": e(lambda x: act.phi(x) ** 2), "E_dphi2": e(lambda x: act.dphi(x) ** 2)}


# --------------------------------------------------------------------------- quadrature


def test_gaussian_rule_integrates_moments_and_kinked_functions():
    x, w = gaussian_rule([0.3])
    # E g^(2k) = (2k-1)!!; 1e-13: the rule is exact for polynomials up to round-off
    for k in range(6):
        assert w @ x ** (2 * k) == pytest.approx(math.prod(range(1, 2 * k, 2)), rel=1e-13)
    assert w @ relu(x) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-13)
    assert w @ relu(x) ** 2 == pytest.approx(0.5, rel=1e-13)
    assert w @ (x > 0.3) == pytest.approx(norm.sf(0.3), rel=1e-13)  # jump at the kink 0.3
    # plain Gauss-Hermite without the split is only ~1e-3 on relu: the split matters
    xh, wh = np.polynomial.hermite_e.hermegauss(20)
    assert abs(wh @ relu(xh) / math.sqrt(2 * math.pi) - 1 / math.sqrt(2 * math.pi)) > 1e-5


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("rho,q,qp", POINTS)
def test_closed_forms_match_two_dimensional_quadrature(rho, q, qp):
    # nested 2-D quadrature split at the kink lines: ~1e-14 accurate (smooth pieces)
    nngp, dd = relu_kernels(rho, q, qp)
    assert dual_kernel_quadrature(relu, relu, [0], [0], rho, q, qp) == pytest.approx(
        float(nngp), abs=1e-12)
    assert dual_kernel_quadrature(step, step, [0], [0], rho, q, qp) == pytest.approx(
        float(dd), abs=1e-12)
    nngp, dd = erf_kernels(rho, q, qp)
    assert dual_kernel_quadrature(erf, erf, [], [], rho, q, qp) == pytest.approx(
        float(nngp), abs=1e-12)
    assert dual_kernel_quadrature(derf, derf, [], [], rho, q, qp) == pytest.approx(
        float(dd), abs=1e-12)


@pytest.mark.parametrize("rho,q,qp", POINTS)
def test_closed_forms_match_mehler_series_within_its_bound(rho, q, qp):
    # |truncated series - exact| <= the returned Cauchy-Schwarz tail bound (+1e-12 round-off)
    one, qa, qb = np.array([[rho]]), np.array([q]), np.array([qp])
    for act, fns in ((RELU, relu_kernels), (ERF, erf_kernels)):
        nngp, dd = fns(rho, q, qp)
        for f, ref in ((act.phi, nngp), (act.dphi, dd)):
            val, bound = mehler_kernel(f, act.kinks, one, qa, qb, order=40)
            assert abs(val[0, 0] - ref) <= bound[0, 0] + 1e-12
    # and the bound is useful where the series converges fast: |r| = 0.3
    val, bound = mehler_kernel(relu, [0], np.array([[0.3]]), np.ones(1), np.ones(1), order=40)
    assert bound[0, 0] < 1e-20


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_sympy_closed_forms_agree_with_numeric_ones(name):
    forms = CLOSED_FORMS[name]()
    numeric = {"relu": relu_kernels, "erf": erf_kernels}[name]
    f2 = sp.lambdify((RHO, Q, QP), forms.theta2, "numpy")
    f1 = sp.lambdify((RHO, Q, QP), forms.theta1, "numpy")
    for rho, q, qp in POINTS:
        nngp, dd = numeric(rho, q, qp)
        assert f2(rho, q, qp) == pytest.approx(float(nngp), rel=1e-13)
        assert f1(rho, q, qp) == pytest.approx(rho * float(dd), rel=1e-13)


def _relu_hermite_exact(order):
    """c_k = E[relu(g) He_k(g)]: c0 = 1/sqrt(2 pi), c1 = 1/2 and, by Stein,
    c_k = E[delta(g) He_{k-2}(g)] = He_{k-2}(0)/sqrt(2 pi) for k >= 2."""
    x = sp.Symbol("x")
    c = [1 / sp.sqrt(2 * sp.pi), sp.Rational(1, 2)]
    for k in range(2, order + 1):
        c.append(sp.hermite_prob(k - 2, x).subs(x, 0) / sp.sqrt(2 * sp.pi))
    return c


def _erf_hermite_exact(order):
    """c_k = E[erf(g) He_k(g)] = E[erf^(k)(g)] by direct symbolic integration."""
    x = sp.Symbol("x", real=True)
    dens = sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)
    c = [sp.Integer(0)]
    for k in range(1, order + 1):
        c.append(sp.simplify(sp.integrate(sp.diff(sp.erf(x), x, k) * dens, (x, -sp.oo, sp.oo))))
    return c


@pytest.mark.parametrize("name,coefficients", [("relu", _relu_hermite_exact),
                                                ("erf", _erf_hermite_exact)])
def test_mehler_series_is_the_taylor_series_of_the_closed_form(name, coefficients):
    order = 5
    series = mehler_series(coefficients(order))
    forms = CLOSED_FORMS[name]()
    for key, closed in (("theta2", forms.theta2), ("theta1", forms.theta1)):
        at_one = closed.subs({Q: 1, QP: 1})
        taylor = sp.series(at_one, RHO, 0, order).removeO()
        # mehler theta1 has terms up to rho^order, theta2 up to rho^order: compare below order
        mine = sum(series[key].coeff(RHO, k) * RHO**k for k in range(order))
        assert sp.simplify(sp.expand(taylor - mine)) == 0


def test_generic_route_matches_closed_form_and_quadrature():
    for rho, q, qp in POINTS:
        t1, t2 = two_layer_kernels(RELU_SERIES, rho, q, qp)
        r1, r2 = two_layer_kernels(RELU, rho, q, qp)
        # series with 40 terms: the |r| = 0.9 point converges slowest (relu's Theta1 tail
        # bound ~3e-4; tanh's ~1e-8); elsewhere |r| <= 0.7 and the tails are < 1e-8
        tol = 1e-3 if abs(rho) > 0.8 else 1e-7
        assert float(t2) == pytest.approx(float(r2), abs=tol)
        assert float(t1) == pytest.approx(float(r1), abs=tol)
        # tanh (no closed form): Mehler series vs 2-D quadrature
        t1, t2 = two_layer_kernels(TANH, rho, q, qp)
        tol = 1e-7 if abs(rho) > 0.8 else 1e-10
        assert float(t2) == pytest.approx(
            dual_kernel_quadrature(np.tanh, np.tanh, [], [], rho, q, qp), abs=tol)
        assert float(t1) == pytest.approx(
            rho * dual_kernel_quadrature(dtanh, dtanh, [], [], rho, q, qp), abs=tol)
    # the diagonal u = u' goes through 1-D quadrature
    t1, t2 = two_layer_kernels(RELU_SERIES, 1.2, 1.2, 1.2)
    assert (float(t1), float(t2)) == pytest.approx((0.6, 0.6), rel=1e-13)


def test_identify_closed_form_by_values():
    assert identify_closed_form(lambda x: (x + np.abs(x)) / 2) == "relu"
    assert identify_closed_form(erf) == "erf"
    assert identify_closed_form(np.tanh) is None
    assert identify_closed_form(lambda x: np.maximum(x, 0.0) + 1e-6 * x) is None


@pytest.mark.parametrize("act", [RELU, ERF, TANH], ids=["relu", "erf", "tanh"])
def test_infinite_width_kernel_matches_wide_empirical_ntk(act):
    """Empirical NTK entries are means over m neurons: the error is ~ std / sqrt(m).
    With m = 2e5 the standard error is ~1e-3; we allow 5 standard errors per entry."""
    rng = np.random.default_rng(3)
    d, n, m = 20, 4, 200_000
    X = sample_inputs(n, d, rng)
    W, v = init_params(d, m, rng)
    e1, e2 = empirical_ntk(W, v, X, act.phi, act.dphi)
    i1, i2 = infinite_width_ntk(act, X)
    Z = X @ W.T / math.sqrt(d)
    P, D = act.phi(Z), act.dphi(Z) * np.abs(v)
    for a in range(n):
        for b in range(n):
            se2 = np.std(P[a] * P[b]) / math.sqrt(m)
            se1 = abs(X[a] @ X[b] / d) * np.std(D[a] * D[b]) / math.sqrt(m)
            assert abs(e2[a, b] - i2[a, b]) < 5 * se2 + 1e-12
            assert abs(e1[a, b] - i1[a, b]) < 5 * se1 + 1e-12


# --------------------------------------------------------------------------- affine


RELU_EXACT = {"nu": 1 / sp.sqrt(2 * sp.pi), "zeta": sp.Rational(1, 2),
              "mu2": 1 / sp.sqrt(2 * sp.pi), "E_phi2": sp.Rational(1, 2),
              "E_dphi2": sp.Rational(1, 2)}


class _V:
    """Value-like stand-in (value, exact, expr) for moments."""

    def __init__(self, expr, exact=True):
        self.expr, self.exact, self.value = expr, exact, float(expr)


def test_affine_coefficients_exact_for_relu():
    c = affine_coefficients({k: _V(v) for k, v in RELU_EXACT.items()}, Fraction(1, 100), 2)
    pi = sp.pi
    expected = {
        "first": {"ones": 1 / (200 * pi), "data": sp.Rational(1, 4),
                  "identity": sp.Rational(1, 4) - 1 / (200 * pi)},
        "second": {"ones": 1 / (2 * pi) + 1 / (400 * pi), "data": sp.Rational(1, 4),
                   "identity": sp.Rational(1, 4) - 1 / (2 * pi) - 1 / (400 * pi)},
    }
    expected["both"] = {k: expected["first"][k] + 2 * expected["second"][k]
                        for k in ("ones", "data", "identity")}
    for layer, terms in expected.items():
        for term, value in terms.items():
            got = c[layer][term]
            assert got.exact and sp.simplify(got.expr - value) == 0
            assert got.value == pytest.approx(float(value), rel=1e-14)
            assert got.latex == sp.latex(got.expr)
    # a float t2 or a non-exact moment gives labelled numeric values
    numeric = affine_coefficients({k: _V(v) for k, v in RELU_EXACT.items()}, 0.01)
    assert not numeric["first"]["ones"].exact
    assert numeric["first"]["ones"].value == pytest.approx(1 / (200 * math.pi), rel=1e-14)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_affine_coefficients_are_the_taylor_coefficients_of_the_kernel(name):
    """Independent route: expand the closed-form kernel at q = q' = 1 to second order in rho,
    keep the mean t2 of rho^2 in 'ones', fix 'identity' by the diagonal (rho = 1)."""
    forms = CLOSED_FORMS[name]()
    act = {"relu": RELU, "erf": ERF}[name]
    t2 = 0.013
    c = affine_coefficients(quadrature_moments(act), t2)
    for layer, k in (("first", forms.theta1), ("second", forms.theta2)):
        k1 = k.subs({Q: 1, QP: 1})
        d0 = float(sp.limit(k1, RHO, 0))
        d1 = float(sp.limit(sp.diff(k1, RHO), RHO, 0))
        d2 = float(sp.limit(sp.diff(k1, RHO, 2), RHO, 0))
        diag = float(sp.limit(k1, RHO, 1, "-"))
        assert c[layer]["ones"].value == pytest.approx(d0 + d2 / 2 * t2, abs=1e-13)
        assert c[layer]["data"].value == pytest.approx(d1, abs=1e-13)
        assert c[layer]["identity"].value == pytest.approx(
            diag - d0 - d1 - d2 / 2 * t2, abs=1e-13)


def test_feature_map_reproduces_the_non_identity_part():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 5))
    c = affine_coefficients(quadrature_moments(RELU), 0.2, 0.5)["both"]
    P = feature_map(c)(X)
    K = affine_kernel(c, X)
    np.testing.assert_allclose(P @ P.T + c["identity"].value * np.eye(7), K, rtol=1e-13)
    np.testing.assert_allclose(P @ P.T, affine_kernel(c, X, X), rtol=1e-13)


def _affine_errors(act, d, t2=None):
    """Relative spectral errors of the affine kernels against the infinite-width NTK on
    n = d^1.25 Gaussian inputs, per layer (lr_ratio 1)."""
    rng = np.random.default_rng([11, d])
    n = round(d**1.25)
    X = sample_inputs(n, d, rng)
    i1, i2 = infinite_width_ntk(act, X)
    c = affine_coefficients(quadrature_moments(act), 1 / d if t2 is None else t2)
    inf = {"first": i1, "second": i2, "both": i1 + i2}
    return {layer: relative_error(affine_kernel(c[layer], X), inf[layer]) for layer in inf}


@pytest.mark.parametrize("act", [RELU, ERF, TANH], ids=["relu", "erf", "tanh"])
def test_affine_error_against_infinite_width_kernel_falls_with_d(act):
    """Measured: the error goes ~ d^(-1/2)..d^(-3/4) (0.09-0.12 at d = 50, 0.03-0.04 at
    d = 400); a fall by at least 2x between d = 50 and d = 400 fails if a coefficient is off."""
    e50, e400 = _affine_errors(act, 50), _affine_errors(act, 400)
    for layer in e50:
        assert e400[layer] < 0.5 * e50[layer], (layer, e50, e400)
        assert e400[layer] < 0.05


def test_keeping_t2_in_ones_matters_for_relu_first_layer():
    """Dropping mu2^2 t2 11^T leaves an error ~0.25 that does not fall with d (measured
    0.24-0.27 for d = 50..400); keeping it gives < 0.05 at d = 200."""
    kept = _affine_errors(RELU, 200)["first"]
    dropped = _affine_errors(RELU, 200, t2=0.0)["first"]
    assert kept < 0.05 and dropped > 0.2 and dropped > 4 * kept


@pytest.mark.parametrize("act", [RELU, ERF, TANH], ids=["relu", "erf", "tanh"])
def test_affine_first_layer_against_empirical_ntk_falls_with_d(act):
    """Empirical NTK at width m = 4n: for the first layer the width error is small (each
    neuron contributes a rank-d term); measured 0.13-0.22 at d = 50 and 0.05-0.07 at d = 200
    (the approximation error falls ~ d^(-1/2), i.e. 2x over this range)."""
    errs = []
    for d in (50, 200):
        rng = np.random.default_rng([5, d])
        n = round(d**1.25)
        X = sample_inputs(n, d, rng)
        W, v = init_params(d, 4 * n, rng)
        e1, _ = empirical_ntk(W, v, X, act.phi, act.dphi)
        c = affine_coefficients(quadrature_moments(act), 1 / d)
        errs.append(relative_error(affine_kernel(c["first"], X), e1))
    assert errs[1] < 0.7 * errs[0] and errs[1] < 0.09, errs


# --------------------------------------------------------------------------- with analytic.*


def test_numeric_activation_from_the_activation_module():
    from analytic.activations import ActivationError, get_activation
    from analytic.kernels import numeric_activation

    x = np.linspace(-3, 3, 13)
    relu_act = numeric_activation(get_activation("relu"))
    assert relu_act.closed_form == "relu" and relu_act.kinks == (0.0,)
    np.testing.assert_array_equal(relu_act.dphi(x[x != 0]), step(x[x != 0]))
    assert numeric_activation(get_activation("erf")).closed_form == "erf"
    gelu = numeric_activation(get_activation("gelu"))
    assert gelu.closed_form is None
    np.testing.assert_allclose(gelu.dphi(x), norm.cdf(x) + x * norm.pdf(x), rtol=1e-13)
    with pytest.raises(ActivationError, match="jumps"):
        numeric_activation(get_activation("step"))


def test_affine_coefficients_from_gaussian_moments_and_mehler_from_its_coefficients():
    from analytic.gaussian import hermite_coefficients, moments

    c = affine_coefficients(moments("relu"), Fraction(1, 100))
    assert c["first"]["ones"].exact
    assert sp.simplify(c["first"]["ones"].expr - 1 / (200 * sp.pi)) == 0
    assert sp.simplify(c["second"]["identity"].expr
                       - (sp.Rational(1, 4) - 1 / (2 * sp.pi) - 1 / (400 * sp.pi))) == 0
    # analytic.gaussian's Hermite coefficients vs the Stein derivation above
    mine = mehler_series(_relu_hermite_exact(6))
    theirs = mehler_series(hermite_coefficients("relu", 6))
    for key in mine:
        assert sp.simplify(mine[key] - theirs[key]) == 0
    # numeric moments (tanh) give labelled numeric coefficients equal to the quadrature ones
    c = affine_coefficients(moments("tanh"), Fraction(1, 100))
    ref = affine_coefficients(quadrature_moments(TANH), 0.01)
    for layer in c:
        for term in c[layer]:
            assert c[layer][term].value == pytest.approx(ref[layer][term].value, abs=1e-12)
    assert not c["first"]["data"].exact


def test_kernel_report_closed_forms_and_series():
    from analytic.activations import get_activation
    from analytic.gaussian import moments
    from analytic.kernels import kernel_report

    relu_report = kernel_report(get_activation("relu"), moments("relu"))
    assert relu_report["theta1"]["exact"] and not relu_report["truncated"]
    assert sp.simplify(relu_report["theta2"]["expr"] - CLOSED_FORMS["relu"]().theta2) == 0
    # gelu: series through rho^3 at q = q' = 1 vs the 40-term numeric series at rho = 0.05;
    # the neglected rho^4 term is c_4^2/24 rho^4 < 1e-6 (c_4 = E gelu'''' = O(1))
    gelu = get_activation("gelu")
    report = kernel_report(gelu, moments(gelu))
    assert report["truncated"] and report["coefficients_exact"]
    assert not report["theta2"]["exact"] and "O(rho^4)" in report["theta2"]["text"]
    x = np.linspace(-4, 4, 9)
    gelu_num = NumericActivation(lambda u: u * norm.cdf(u),
                                 lambda u: norm.cdf(u) + u * norm.pdf(u), (), None)
    np.testing.assert_allclose(gelu_num.phi(x), x * (1 + erf(x / np.sqrt(2))) / 2, rtol=1e-14)
    t1, t2 = two_layer_kernels(gelu_num, 0.05)
    assert float(report["theta2"]["expr"].subs(RHO, 0.05)) == pytest.approx(float(t2), abs=1e-6)
    assert float(report["theta1"]["expr"].subs(RHO, 0.05)) == pytest.approx(float(t1), abs=1e-6)


def test_generic_route_with_a_kink_away_from_zero():
    """phi = relu(x - 0.5): the kink moves with the scale q (at g = 0.5/sqrt(q)); Mehler
    series (per-q quadrature) and the u = -u' diagonal vs nested 2-D quadrature, to 1e-12."""
    f = lambda x: np.maximum(x - 0.5, 0.0)  # noqa: E731
    df = lambda x: (x > 0.5).astype(float)  # noqa: E731
    act = NumericActivation(f, df, (0.5,), None)
    for rho, q, qp in [(-1.2, 1.0, 1.44), (1.2, 1.0, 1.44), (0.3, 1.0, 1.2), (-0.2, 0.8, 1.1)]:
        t1, t2 = two_layer_kernels(act, rho, q, qp)
        assert float(t2) == pytest.approx(
            dual_kernel_quadrature(f, f, [0.5], [0.5], rho, q, qp), abs=1e-12)
        assert float(t1) == pytest.approx(
            rho * dual_kernel_quadrature(df, df, [0.5], [0.5], rho, q, qp), abs=1e-12)


@pytest.mark.parametrize("a,b", [(0.1, 0.9), (-1.0, 2.0), (1.0, 0.0), (0.3, -0.5)])
def test_piecewise_linear_forms_match_quadrature(a, b):
    """phi = a x + b relu(x) (leaky relu, abs, linear, ...) vs nested 2-D quadrature."""
    from analytic.kernels import piecewise_linear_forms

    forms = piecewise_linear_forms(a, b)
    f2 = sp.lambdify((RHO, Q, QP), forms.theta2, "numpy")
    f1 = sp.lambdify((RHO, Q, QP), forms.theta1, "numpy")
    phi = lambda x: a * x + b * np.maximum(x, 0.0)  # noqa: E731
    dphi = lambda x: a + b * (x > 0)  # noqa: E731
    for rho, q, qp in POINTS[:4]:
        assert f2(rho, q, qp) == pytest.approx(
            dual_kernel_quadrature(phi, phi, [0], [0], rho, q, qp), abs=1e-12)
        assert f1(rho, q, qp) == pytest.approx(
            rho * dual_kernel_quadrature(dphi, dphi, [0], [0], rho, q, qp), abs=1e-12)


def test_kernel_report_recognises_piecewise_linear_and_low_polynomials():
    from analytic.activations import get_activation
    from analytic.gaussian import moments
    from analytic.kernels import kernel_report, piecewise_linear_forms

    for spec, (a, b) in (("abs", (-1, 2)), ("x*Heaviside(x) - 2*x", (-2, 1))):
        report = kernel_report(get_activation(spec), moments(spec))
        assert report["theta2"]["exact"]
        assert sp.simplify(report["theta2"]["expr"] - piecewise_linear_forms(a, b).nngp) == 0
    # quadratic: c_k = 0 beyond k = 2, the series is exact: E[u^2 u'^2] = 1 + 2 rho^2
    report = kernel_report(get_activation("quadratic"), moments("quadratic"))
    assert report["theta2"]["exact"] and not report["truncated"]
    assert sp.expand(report["theta2"]["expr"] - (1 + 2 * RHO**2)) == 0
    assert sp.expand(report["theta1"]["expr"] - 4 * RHO**2) == 0  # rho E[2u 2u'] = 4 rho^2

"""Generated NumPy and scalar (Numba) code against sympy's own evaluation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

from analytic.activations import NAMES, X, get_activation
from analytic.codegen import (
    CodegenError,
    latex,
    numba_activation,
    numba_source,
    to_numba,
    to_numpy,
    to_python,
)

# includes the kinks (0, 1, -1, 2) where the Heaviside/sign conventions matter
POINTS = [-3.1, -1.0, -0.2, 0.0, 0.45, 1.0, 2.0, 3.7]
USER = ["Max(x, x**2 - 2) + sign(x)*tanh(x)", "Abs(x - 1)*exp(x/3)", "Heaviside(x + 1)*erfc(x)",
        "x**5/120 - sqrt(cosh(x))", "atan(x)*Min(0, x, 1 - x)", "2**x + pi*E**(-x**2)"]


def reference(expr: sympy.Expr, x: float) -> float:
    """sympy's own evaluation at 30 digits, with the numeric convention Heaviside(0) = 0
    (sympy's default is 1/2; sign(0) = 0 in both)."""
    expr = expr.replace(lambda e: isinstance(e, sympy.Heaviside),
                        lambda e: sympy.Heaviside(e.args[0], 0))
    return float(sympy.N(expr.xreplace({X: sympy.Float(x, 30)}), 30))


@pytest.mark.parametrize("spec", [*NAMES, *USER])
def test_python_and_numpy_match_sympy(spec):
    act = get_activation(spec)
    for expr in (act.expr, act.derivative(1), act.derivative(2)):
        want = np.array([reference(expr, x) for x in POINTS])
        scalar = to_python(expr)
        got_scalar = np.array([scalar(x) for x in POINTS])
        got_numpy = np.broadcast_to(to_numpy(expr)(np.array(POINTS)), want.shape)
        # double precision vs 30 digits on short expressions: 1e-13 relative
        np.testing.assert_allclose(got_scalar, want, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(got_numpy, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("spec", [*NAMES, *USER])
def test_source_uses_only_math_and_builtins(spec):
    src = numba_source(get_activation(spec).derivative(1), "dphi")
    assert src.startswith("def dphi(x):")
    body = src.split(":", 1)[1]
    for module, attr in re.findall(r"([A-Za-z_]\w*)\.([A-Za-z_]\w*)", body):
        assert module == "math", src
        assert attr in dir(__import__("math")), src
    for call in re.findall(r"([A-Za-z_]\w*)\(", body):
        assert call in {"float", "abs", "max", "min", *dir(__import__("math"))}, src


def test_numba_matches_python():
    for spec in ("relu", "gelu", "step", USER[0]):
        act = get_activation(spec)
        phi, dphi = numba_activation(act)
        for x in POINTS:
            assert phi(x) == pytest.approx(reference(act.expr, x), rel=1e-13, abs=1e-14)
            assert dphi(x) == pytest.approx(reference(act.derivative(1), x), rel=1e-13,
                                            abs=1e-14)


def test_jump_convention():
    """relu'(0) = step(0) = 0 in every numeric path (the simulator's convention)."""
    relu, step = get_activation("relu"), get_activation("step")
    assert to_python(relu.derivative(1))(0.0) == 0.0
    assert to_numpy(step.expr)(np.array([0.0, 1e-300]))[0] == 0.0
    assert to_numpy(step.expr)(np.array([0.0, 1e-300]))[1] == 1.0
    assert numba_activation(relu)[1](0.0) == 0.0


def test_numba_callable_inside_njit():
    import numba

    phi = to_numba(get_activation("softplus").expr, "softplus")

    @numba.njit
    def total(xs):
        s = 0.0
        for v in xs:
            s += phi(v)
        return s

    xs = np.linspace(-3, 3, 7)
    assert total(xs) == pytest.approx(float(np.sum(np.logaddexp(0.0, xs))), rel=1e-14)


def test_multivariate_numpy():
    rho = sympy.Symbol("rho")
    f = to_numpy(sympy.asin(rho) * X, args=(X, rho))
    assert f(2.0, 0.5) == pytest.approx(2 * np.arcsin(0.5), rel=1e-15)


def test_errors():
    with pytest.raises(CodegenError, match="identifier"):
        numba_source(X, "not a name")
    with pytest.raises(CodegenError, match="symbols"):
        numba_source(X + sympy.Symbol("y"))
    with pytest.raises(CodegenError, match="no scalar code"):
        numba_source(sympy.DiracDelta(X))


def test_latex():
    assert latex(sympy.erf(X)) == r"\operatorname{erf}{\left(x \right)}"

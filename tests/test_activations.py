"""Named activations, derivatives, kinks and the safe expression parser."""

from __future__ import annotations

import contextlib
import math
import re
import time
from unittest import mock

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import erf, expit

from analytic.activations import (
    CONSTANTS,
    FUNCTIONS,
    MAX_LENGTH,
    NAMES,
    Activation,
    ActivationError,
    X,
    get_activation,
)

POINTS = np.array([-2.3, -1.1, -0.4, 0.3, 0.9, 1.7, 2.8])  # away from every kink (0)

# independent numpy references for the named activations
REFERENCE = {
    "relu": lambda x: np.maximum(x, 0.0),
    "abs": np.abs,
    "linear": lambda x: x,
    "quadratic": lambda x: x**2,
    "cubic": lambda x: x**3,
    "step": lambda x: (x > 0).astype(float),
    "erf": erf,
    "tanh": np.tanh,
    "sigmoid": expit,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "gelu": lambda x: x * 0.5 * (1 + erf(x / np.sqrt(2))),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
}


def values(expr: sympy.Expr, xs: np.ndarray) -> np.ndarray:
    return np.array([float(expr.subs(X, sympy.Float(v, 30))) for v in xs])


@pytest.mark.parametrize("name", NAMES)
def test_named_activation_matches_reference(name):
    act = get_activation(name)
    assert isinstance(act, Activation)
    # exact sympy evaluation vs float64 references: agreement to ~1e-15 relative
    np.testing.assert_allclose(values(act.expr, POINTS), REFERENCE[name](POINTS),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_match_finite_differences(name):
    act = get_activation(name)
    f = REFERENCE[name]
    h = 1e-4
    # central differences: error ~ h^2 f''' / 6 ~ 1e-8 (and h^2 f'''' / 12 for the second)
    fd1 = (f(POINTS + h) - f(POINTS - h)) / (2 * h)
    fd2 = (f(POINTS + h) - 2 * f(POINTS) + f(POINTS - h)) / h**2
    np.testing.assert_allclose(values(act.derivative(1), POINTS), fd1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(values(act.derivative(2), POINTS), fd2, rtol=1e-4, atol=1e-5)


def test_kinked_derivatives_are_heaviside_without_delta():
    relu = get_activation("relu")
    assert relu.derivative() == sympy.Heaviside(X)
    assert relu.derivative(2) == 0  # the DiracDelta is dropped (documented)
    assert get_activation("step").derivative() == 0
    assert not get_activation("abs").derivative(3).has(sympy.DiracDelta)
    assert relu.derivative(0) == relu.expr
    with pytest.raises(ActivationError):
        relu.derivative(-1)


@pytest.mark.parametrize("name, kinks", [
    ("relu", (0.0,)), ("abs", (0.0,)), ("step", (0.0,)), ("leaky_relu", (0.0,)),
    ("tanh", ()), ("gelu", ()), ("quadratic", ()),
    ("Abs(x - 1)", (1.0,)), ("Max(x, x**2 - 2)", (-1.0, 2.0)), ("Heaviside(2*x+1)", (-0.5,)),
    ("sign(x**2 - 2)", (-math.sqrt(2), math.sqrt(2))), ("Min(0, x) + Abs(x + 3)", (-3.0, 0.0)),
    ("Heaviside(exp(x) - 2)", (math.log(2),)), ("x**2 + tanh(x)", ()),
    ("Max(x**2 - E, 0)", (-math.exp(0.5), math.exp(0.5))), ("Abs(x - pi)", (math.pi,)),
    ("Abs(x**2 + 1)*x", ()),
])
def test_kinks(name, kinks):
    assert get_activation(name).kinks == pytest.approx(kinks, abs=1e-12)


def test_kinks_of_transcendental_arguments_scan():
    kinks = get_activation("Abs(sin(x))").kinks
    pi_multiples = np.round(np.array(kinks) / math.pi)
    np.testing.assert_allclose(kinks, pi_multiples * math.pi, atol=1e-12)
    assert 0.0 in kinks and len(kinks) >= 10


def test_leaky_relu_spellings():
    a = get_activation("leaky_relu:0.1")
    b = get_activation("leaky_relu", slope=0.1)
    assert a == b and a.name == "leaky_relu:0.1"
    np.testing.assert_allclose(values(a.expr, POINTS), np.where(POINTS > 0, POINTS, 0.1 * POINTS),
                               rtol=1e-15)
    assert get_activation("leaky_relu:0").expr == get_activation("relu").expr
    for bad in ("leaky_relu:1", "leaky_relu:-0.1", "leaky_relu:abc", "leaky_relu:nan"):
        with pytest.raises(ActivationError, match="slope"):
            get_activation(bad)
    with pytest.raises(ActivationError, match="slope"):
        get_activation("leaky_relu", slope=float("inf"))
    with pytest.raises(ActivationError, match="allowed: slope"):
        get_activation("leaky_relu", alpha=0.1)
    with pytest.raises(ActivationError, match="takes no parameters"):
        get_activation("relu", slope=0.1)
    with pytest.raises(ActivationError, match="given twice"):
        get_activation("leaky_relu:0.1", slope=0.2)


def test_key_is_canonical():
    assert get_activation("relu").key == get_activation("max(0, x)").key
    assert get_activation(" Relu ").key == get_activation("relu").key
    assert get_activation("x*x").key == get_activation("quadratic").key
    assert get_activation("tanh").key != get_activation("erf").key
    assert sympy.sympify(get_activation("gelu").key) == get_activation("gelu").expr


@pytest.mark.parametrize("text, expected", [
    ("2^3^2*x", 512 * X),  # right-associative power
    ("-x**2", -X**2),  # unary minus binds weaker than **
    ("2**-1*x", X / 2),
    ("1e-3*x + .5 + 2.5E+1", X / 1000 + sympy.Rational(51, 2)),
    ("x/2/2", X / 4),
    ("pi*x + E", sympy.pi * X + sympy.E),
    ("relu(x - 1)", sympy.Max(0, X - 1)),
    ("sigmoid(x)", 1 / (1 + sympy.exp(-X))),
    ("max(x, 0, -x)", sympy.Max(X, -X)),
    ("--+x", X),
])
def test_parser_semantics(text, expected):
    # sympy may keep equal expressions in different forms (Max(0, -x, x)): compare values
    np.testing.assert_allclose(values(get_activation(text).expr, POINTS),
                               values(expected, POINTS), rtol=1e-15)


@pytest.mark.parametrize("text, problem", [
    ("9**9**9**9", "exponent"),
    ("x**100", "exponent"),
    ("10**10**10", "exponent"),
    ("(1e12)**64", "beyond"),
    ("1e13*x", "larger"),
    ("__import__('os').system('ls')", "unexpected character"),
    ("x.real", "unexpected character '.'"),
    ("exp.__class__", "unexpected character '.'"),
    ("lambda x: x", "':'"),
    ("[x]", "unexpected character '\\['"),
    ("x, x", "unexpected ','"),
    ("foo(x)", "unknown name 'foo'"),
    ("y + 1", "unknown name 'y'"),
    ("exp x", "must be followed by"),
    ("exp(x, x)", "takes 1 argument"),
    ("max(x)", "takes 2 to 8"),
    ("(x", "expected '\\)'"),
    ("x)", "unexpected '\\)'"),
    ("", "empty"),
    ("x +", "end of input"),
    ("x/0", "division by zero"),
    ("log(x)", "not real"),
    ("sqrt(-1)*x", "not real"),
    ("x" + "+x" * MAX_LENGTH, "characters long"),
    ("(" * 30 + "x" + ")" * 30, "nested"),
    ("-" * 30 + "x", "nested"),
    ("relu:2", "only leaky_relu"),
    ("1/x", "singular at x = 0"),
    ("(x**64)**64", "beyond 64"),
    ("x**40*x**40", "beyond 64"),
    ("x/(x**2 - 4)", "singular at x = -2"),
    ("log(Abs(x - 1))", "singular at x = 1"),
    ("1/(exp(x) - 2)", "singular at x = 0.693147"),
])
def test_parser_refuses(text, problem):
    t0 = time.perf_counter()
    with pytest.raises(ActivationError, match=problem) as info:
        get_activation(text)
    assert time.perf_counter() - t0 < 1.0
    message = str(info.value)
    assert "\n" not in message
    assert "allowed" in message


def test_error_names_allowed_choices():
    with pytest.raises(ActivationError) as info:
        get_activation("swish")
    message = str(info.value)
    for name in ("relu", "gelu", "leaky_relu", "tanh", "exp", "Heaviside"):
        assert name in message
    assert issubclass(ActivationError, ValueError)


def test_non_string_refused():
    with pytest.raises(ActivationError, match="string"):
        get_activation(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- fuzzing

ALLOWED_NAMES = {"x", *CONSTANTS, *FUNCTIONS, *NAMES}
DANGEROUS = ["__import__", "lambda", "os", "system", "eval", "exec", "open", ".", "[", "]",
             "{", "}", "'", '"', ";", ":", "=", "@", "`", "\\", "import", "X", "Symbol",
             "sympify", "__class__", "getattr", "y", "_", "#", "!", "<", ">", "&", "|", "%"]
SAFE_TOKENS = ["x", "1", "2.5", "1e-3", "+", "-", "*", "/", "**", "^", "(", ")", ",",
               "pi", "E", "exp", "tanh", "Abs", "max", "Heaviside", "sigmoid"]


def only_whitelisted(text: str) -> bool:
    """Independent check: the text contains only whitelisted characters and names."""
    if re.search(r"[^0-9A-Za-z\s.+\-*/^(),]", text):
        return False
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"\d+\.?\d*[eE][+-]?\d+", "", text))
    return all(n in ALLOWED_NAMES for n in names)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def no_text_evaluation():
    """Make any string evaluation fail loudly: ``eval`` and sympy's string parser (where
    ``sympify(str)`` and ``parse_expr`` end up)."""
    boom = AssertionError("text was evaluated")
    with mock.patch("builtins.eval", side_effect=boom), \
            mock.patch("sympy.parsing.sympy_parser.parse_expr", side_effect=boom), \
            mock.patch("sympy.parsing.sympy_parser.eval_expr", side_effect=boom):
        yield


def test_guard_detects_text_evaluation():
    with no_text_evaluation():
        with pytest.raises(AssertionError, match="evaluated"):
            sympy.sympify("x + 1")
        with pytest.raises(AssertionError, match="evaluated"):
            eval("1 + 1")
        assert get_activation("tanh(x) + Abs(x - 1)").kinks == (1.0,)


def _parse_or_refuse(text):
    """The parsed activation, or None after checking the refusal is a one-line
    ActivationError; any other exception, or any evaluation of text, fails the test."""
    try:
        with no_text_evaluation():
            return get_activation(text)
    except ActivationError as err:
        assert "\n" not in str(err)
        return None


@FUZZ
@given(st.text(alphabet=st.sampled_from("x0123456789.eE+-*/^(),_[]{}'\":; abcdlmprstw@#"),
               max_size=40))
def test_fuzz_random_strings(text):
    act = _parse_or_refuse(text)
    if act is None:
        return
    assert only_whitelisted(text)
    assert act.expr.free_symbols <= {X}


@FUZZ
@given(st.lists(st.sampled_from(SAFE_TOKENS + DANGEROUS), min_size=1, max_size=14))
def test_fuzz_token_sequences(tokens):
    text = " ".join(tokens)
    dangerous = any(tok in DANGEROUS for tok in tokens)
    act = _parse_or_refuse(text)
    if act is None:
        return
    assert not dangerous, f"accepted {text!r}"
    assert act.expr.free_symbols <= {X}


# random well-formed expressions, rendered as text and evaluated independently with math
_UNARY = {
    "tanh": math.tanh, "atan": math.atan, "sin": math.sin, "cos": math.cos, "erf": math.erf,
    "abs": abs, "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
}


def _expr_tree(depth: int):
    leaf = st.one_of(
        st.just(("x", lambda v: v)),
        st.integers(0, 9).map(lambda n: (str(n), lambda v, n=n: float(n))),
        st.sampled_from([("0.25", 0.25), ("1.5e-1", 0.15), ("pi", math.pi)]).map(
            lambda p: (p[0], lambda v, c=p[1]: c)),
    )
    if depth == 0:
        return leaf
    sub = _expr_tree(depth - 1)

    def binop(args):
        (a, fa), op, (b, fb) = args
        funcs = {"+": lambda v: fa(v) + fb(v), "-": lambda v: fa(v) - fb(v),
                 "*": lambda v: fa(v) * fb(v)}
        return f"({a}) {op} ({b})", funcs[op]

    def call(args):
        name, (a, fa) = args
        return f"{name}({a})", lambda v: _UNARY[name](fa(v))

    def power(args):
        (a, fa), k = args
        return f"({a})^{k}", lambda v: fa(v) ** k

    def maxmin(args):
        name, (a, fa), (b, fb) = args
        op = max if name == "max" else min
        return f"{name}({a}, {b})", lambda v: op(fa(v), fb(v))

    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from("+-*"), sub).map(binop),
        st.tuples(st.sampled_from(sorted(_UNARY)), sub).map(call),
        st.tuples(sub, st.integers(0, 3)).map(power),
        st.tuples(st.sampled_from(["max", "min"]), sub, sub).map(maxmin),
        sub.map(lambda p: (f"-({p[0]})", lambda v, f=p[1]: -f(v))),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expr_tree(3), st.sampled_from([-1.37, 0.41, 2.03]))
def test_fuzz_valid_expressions_evaluate_like_math(tree, point):
    text, func = tree
    if len(text) > MAX_LENGTH:
        with pytest.raises(ActivationError, match="characters long"):
            get_activation(text)
        return
    try:
        act = get_activation(text)
    except ActivationError as err:  # only the documented size limits may refuse it
        assert re.search("exponent|beyond|nested|larger", str(err)), str(err)
        return
    expected = func(point)
    got = float(act.expr.subs(X, sympy.Float(point, 30)))
    # sympy at 30 digits vs float64 math on at most ~100 operations: 1e-9 relative is loose
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("spec, expected", [
    ("relu", True), ("RELU", True), (" relu ", True), ("max(x, 0)", True), ("max(0,x)", True),
    ("Max(0, x)", True), ("relu(x)", True), ("2*max(x, 0)/2", True), ("max(x, 0) + 0", True),
    ("leaky_relu:0", True), ("max(x, 0, -1)", True),
    ("leaky_relu:0.1", False), ("leaky_relu", False), ("abs", False), ("x", False),
    ("linear", False), ("max(x, 1)", False), ("max(2*x, 0)", False),
    ("relu(x - 1)", False), ("x*Heaviside(x)", False), ("(x + abs(x))/2", False),
    ("gelu", False), ("step", False),
])
def test_is_relu(spec, expected):
    """``is_relu`` is ``get_activation(spec).expr == sympy.Max(0, X)`` (the test used by
    ``meanfield.theory`` for the ReLU closed form); an ``Activation`` is accepted too."""
    from analytic.activations import is_relu

    assert is_relu(spec) is expected
    assert is_relu(get_activation(spec)) is expected
    assert (get_activation(spec).expr == sympy.Max(0, X)) is expected


def test_is_relu_refuses_what_get_activation_refuses():
    from analytic.activations import is_relu

    for spec in ("relu:1", "__import__('os')", "max(y, 0)", ""):
        with pytest.raises(ActivationError):
            is_relu(spec)

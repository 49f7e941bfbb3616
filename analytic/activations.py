"""Named activations and a safe parser for user activation expressions.

An activation ``phi(x)`` is a sympy expression in the real symbol :data:`X` (``x``), with the
points where it or one of its low derivatives is not smooth (``kinks``). Named activations:

    relu        max(0, x)                     kink at 0
    leaky_relu  s x + (1 - s) max(0, x)       slope s (default 0.01; "leaky_relu:0.1"), kink at 0
    abs         |x|                           kink at 0
    linear      x
    quadratic   x^2
    cubic       x^3
    step        Heaviside(x)  (value 1/2 at 0) kink at 0
    erf         erf(x)
    tanh        tanh(x)
    sigmoid     1 / (1 + exp(-x))
    softplus    log(1 + exp(x))
    gelu        x Phi(x) = x (1 + erf(x / sqrt 2)) / 2

``x`` is the dimensionless preactivation and ``phi(x)`` is dimensionless. Anything else is
parsed as an expression in ``x``. The parser never calls ``eval``, ``sympify`` or
``parse_expr`` on the text: it tokenizes the string itself and builds the sympy expression
by recursive descent over a whitelist (the symbol ``x``; numbers; ``+ - * / **`` and ``^`` for
``**``; parentheses; unary minus; the constants ``pi`` and ``E``; the functions in
:data:`FUNCTIONS`). Length, nesting depth, number size and numeric exponents are bounded so that
no input can hang (``9**9**9**9`` is refused). Every other input raises :class:`ActivationError`
with a one-line message naming the position and the allowed tokens.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import sympy

X = sympy.Symbol("x", real=True)

MAX_LENGTH = 200  # characters of a user expression
MAX_DEPTH = 24  # nesting of parentheses / function calls / unary signs / powers
MAX_NUMBER = 1e12  # magnitude of a literal number
MAX_EXPONENT = 64  # magnitude of a numeric exponent
MAX_LOG10 = 300  # a power of numbers must stay within float range: |q log10|b|| <= this
KINK_RANGE = 40.0  # numeric kink search interval [-KINK_RANGE, KINK_RANGE] (Gaussian mass ~0)
MAX_KINKS = 64

DEFAULT_LEAKY_SLOPE = 0.01


class ActivationError(ValueError):
    """An activation name, parameter or expression is not allowed (the message names the
    problem and the allowed choices)."""


def _sigmoid(a: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-a))


def _softplus(a: sympy.Expr) -> sympy.Expr:
    return sympy.log(1 + sympy.exp(a))


def _relu(a: sympy.Expr) -> sympy.Expr:
    return sympy.Max(0, a)


def _gelu(a: sympy.Expr) -> sympy.Expr:
    return a * (1 + sympy.erf(a / sympy.sqrt(2))) / 2


# name in an expression -> (sympy builder, minimum args, maximum args)
FUNCTIONS: dict[str, tuple[Callable[..., sympy.Expr], int, int]] = {
    "exp": (sympy.exp, 1, 1),
    "log": (sympy.log, 1, 1),
    "sqrt": (sympy.sqrt, 1, 1),
    "erf": (sympy.erf, 1, 1),
    "erfc": (sympy.erfc, 1, 1),
    "tanh": (sympy.tanh, 1, 1),
    "sinh": (sympy.sinh, 1, 1),
    "cosh": (sympy.cosh, 1, 1),
    "sin": (sympy.sin, 1, 1),
    "cos": (sympy.cos, 1, 1),
    "atan": (sympy.atan, 1, 1),
    "Abs": (sympy.Abs, 1, 1),
    "abs": (sympy.Abs, 1, 1),
    "Max": (sympy.Max, 2, 8),
    "max": (sympy.Max, 2, 8),
    "Min": (sympy.Min, 2, 8),
    "min": (sympy.Min, 2, 8),
    "Heaviside": (sympy.Heaviside, 1, 1),
    "sign": (sympy.sign, 1, 1),
    "sigmoid": (_sigmoid, 1, 1),
    "softplus": (_softplus, 1, 1),
    "relu": (_relu, 1, 1),
    "gelu": (_gelu, 1, 1),
}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}

_NAMED: dict[str, tuple[sympy.Expr, tuple[float, ...]]] = {
    "relu": (sympy.Max(0, X), (0.0,)),
    "abs": (sympy.Abs(X), (0.0,)),
    "linear": (X, ()),
    "quadratic": (X**2, ()),
    "cubic": (X**3, ()),
    "step": (sympy.Heaviside(X), (0.0,)),
    "erf": (sympy.erf(X), ()),
    "tanh": (sympy.tanh(X), ()),
    "sigmoid": (_sigmoid(X), ()),
    "softplus": (_softplus(X), ()),
    "gelu": (_gelu(X), ()),
}
NAMES: tuple[str, ...] = (*_NAMED, "leaky_relu")

_ALLOWED = (
    f"a named activation ({', '.join(NAMES)}; leaky_relu takes slope, e.g. leaky_relu:0.1) "
    f"or an expression in x with numbers, + - * / ** ^ ( ), constants {', '.join(CONSTANTS)} "
    f"and functions {', '.join(sorted(FUNCTIONS, key=lambda s: (s.lower(), s)))}"
)


@dataclass(frozen=True)
class Activation:
    """An activation function ``phi(x)``.

    ``expr`` is a sympy expression in :data:`X`; ``kinks`` are the sorted points where ``phi``
    or a low derivative is not smooth (quadrature splits there).
    """

    name: str
    expr: sympy.Expr
    kinks: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        """Canonical string of the expression (``sympy.srepr``), for caching and hashing."""
        return sympy.srepr(self.expr)

    def derivative(self, k: int = 1) -> sympy.Expr:
        """Classical ``k``-th derivative ``phi^(k)(x)``, valid away from the kinks.

        Jumps appear as ``Heaviside`` (``relu' = Heaviside(x)``); the ``DiracDelta`` terms
        that a kink produces in higher derivatives are DROPPED. Hence Gaussian moments of
        derivatives must NOT be computed from this expression when there are kinks: use Stein's
        identity ``E phi^(k)(g) = E[phi(g) He_k(g)]`` (``analytic.gaussian``) instead.
        """
        if not isinstance(k, int) or k < 0:
            raise ActivationError(f"derivative order k={k!r}: allowed: an integer >= 0")
        return _derivative(self.expr, k)


@functools.lru_cache(maxsize=256)
def _derivative(expr: sympy.Expr, k: int) -> sympy.Expr:
    out = sympy.diff(expr, X, k) if k else expr
    return out.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)


def get_activation(spec: str, **params: float) -> Activation:
    """The activation named ``spec`` (see the module docstring), or the user expression
    ``spec`` in ``x``. ``leaky_relu`` takes ``slope`` (keyword, or ``"leaky_relu:0.1"``).

    Raises :class:`ActivationError` for an unknown name, a bad parameter, or an expression
    outside the whitelist.
    """
    if not isinstance(spec, str):
        raise ActivationError(f"activation must be a string, got {type(spec).__name__}; "
                              f"allowed: {_ALLOWED}")
    text = spec.strip()
    head, sep, tail = text.partition(":")
    name = head.strip().lower()
    if name == "leaky_relu":
        return _leaky_relu(text, tail.strip() if sep else None, params)
    if sep:
        raise ActivationError(f"activation {text!r}: only leaky_relu takes a ':' parameter; "
                              f"allowed: {_ALLOWED}")
    if name in _NAMED:
        if params:
            raise ActivationError(f"activation {name!r} takes no parameters "
                                  f"(got {', '.join(sorted(params))}); "
                                  "only leaky_relu takes slope")
        expr, kinks = _NAMED[name]
        return Activation(name, expr, kinks)
    if params:
        raise ActivationError(f"activation {text!r}: parameters ({', '.join(sorted(params))}) "
                              "are only allowed for leaky_relu (slope)")
    expr = parse_expression(text)
    return Activation(text, expr, find_kinks(expr))


def is_relu(spec: str | Activation) -> bool:
    """Whether the activation is ReLU: its expression, as built by :func:`get_activation`
    (which evaluates it automatically), is ``sympy.Max(0, X)`` (sympy ``==``, i.e. the same
    expression tree). So ``"relu"``, ``"max(x, 0)"``, ``"Max(0, x)"``, ``"relu(x)"``,
    ``"2*max(x, 0)/2"`` and ``"leaky_relu:0"`` are ReLU; ``"leaky_relu:0.1"``, ``"abs"``,
    ``"x"`` are not, nor is an equal function written otherwise (``"(x + abs(x))/2"``).

    Raises :class:`ActivationError` for a ``spec`` that :func:`get_activation` refuses.
    """
    act = spec if isinstance(spec, Activation) else get_activation(spec)
    return act.expr == sympy.Max(0, X)


def _leaky_relu(text: str, inline: str | None, params: dict[str, float]) -> Activation:
    extra = set(params) - {"slope"}
    if extra:
        raise ActivationError(f"leaky_relu: unknown parameter(s) {', '.join(sorted(extra))}; "
                              "allowed: slope")
    if inline is not None and "slope" in params:
        raise ActivationError(f"activation {text!r}: slope given twice (':' and slope=)")
    if inline is not None:
        if not _NUMBER_RE.fullmatch(inline):
            raise ActivationError(f"activation {text!r}: slope {inline!r} is not a number; "
                                  "allowed: leaky_relu:S with a number 0 <= S < 1, e.g. 0.1")
        slope = sympy.Rational(inline)
    elif "slope" in params:
        value = params["slope"]
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ActivationError(f"leaky_relu: slope={value!r} is not a number; "
                                  "allowed: 0 <= slope < 1")
        sval = str(value).strip()
        if not _NUMBER_RE.fullmatch(sval.lstrip("-")):
            raise ActivationError(f"leaky_relu: slope={value!r} is not a finite number; "
                                  "allowed: 0 <= slope < 1")
        slope = sympy.Rational(sval)
    else:
        slope = sympy.Rational(str(DEFAULT_LEAKY_SLOPE))
    if not 0 <= slope < 1:
        raise ActivationError(f"leaky_relu: slope={float(slope):g} out of range; "
                              "allowed: 0 <= slope < 1")
    expr = slope * X + (1 - slope) * sympy.Max(0, X)
    return Activation(f"leaky_relu:{_fmt(slope)}", expr, (0.0,))


def _fmt(q: sympy.Rational) -> str:
    return repr(float(q)).removesuffix(".0") if q.q != 1 else str(q.p)


# ----------------------------------------------------------------------------- parser

_NUMBER_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z][A-Za-z0-9]*)"
    r"|(?P<op>\*\*|[-+*/^(),])"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


def _error(text: str, pos: int, problem: str) -> ActivationError:
    return ActivationError(f"activation {text!r}: {problem} at position {pos}; "
                           f"allowed: {_ALLOWED}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tok = m.group()
            if kind == "name" and m.end() < len(text) and text[m.end()] in "_.":
                raise _error(text, m.end(), f"unexpected character {text[m.end()]!r}")
            tokens.append(_Token(kind, tok, pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the grammar

        expr   := term (('+' | '-') term)*
        term   := unary (('*' | '/') unary)*
        unary  := ('+' | '-') unary | power
        power  := atom (('**' | '^') unary)?        (right associative: 2**3**2 = 2**9)
        atom   := NUMBER | 'x' | CONSTANT | FUNCTION '(' expr (',' expr)* ')' | '(' expr ')'
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, problem: str, tok: _Token | None = None) -> ActivationError:
        return _error(self.text, (tok or self.tok).pos, problem)

    def describe(self, tok: _Token) -> str:
        return "end of input" if tok.kind == "end" else repr(tok.text)

    def advance(self) -> _Token:
        tok = self.tok
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        if self.tok.kind != "op" or self.tok.text != op:
            raise self.fail(f"expected {op!r}, found {self.describe(self.tok)}")
        self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested deeper than {MAX_DEPTH} levels")

    def parse(self) -> sympy.Expr:
        expr = self.expr()
        if self.tok.kind != "end":
            raise self.fail(f"unexpected {self.describe(self.tok)}")
        return expr

    def expr(self) -> sympy.Expr:
        out = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.advance().text
            rhs = self.term()
            out = out + rhs if op == "+" else out - rhs
        return out

    def term(self) -> sympy.Expr:
        out = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self.advance()
            rhs = self.unary()
            if op.text == "*":
                out = out * rhs
            else:
                if rhs.is_zero:
                    raise self.fail("division by zero", op)
                out = out / rhs
        return out

    def unary(self) -> sympy.Expr:
        if self.tok.kind == "op" and self.tok.text in "+-":
            op = self.advance().text
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return -operand if op == "-" else operand
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.tok.kind == "op" and self.tok.text in ("**", "^"):
            op = self.advance()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            self.check_power(base, exponent, op)
            return base**exponent
        return base

    def check_power(self, base: sympy.Expr, exponent: sympy.Expr, op: _Token) -> None:
        """Bound numeric exponents so that no power can take long to build or evaluate."""
        if not exponent.is_number:
            return
        q = _finite_float(exponent)
        if q is None or abs(q) > MAX_EXPONENT:
            raise self.fail(f"numeric exponent must be at most {MAX_EXPONENT} in magnitude", op)
        if base.is_number:
            b = _finite_float(base)
            if b is None:
                raise self.fail("base of a power is not a finite real number", op)
            if b == 0 and q < 0:
                raise self.fail("division by zero", op)
            if b != 0 and abs(q * math.log10(abs(b))) > MAX_LOG10:
                raise self.fail(f"power of numbers beyond 1e{MAX_LOG10}", op)

    def atom(self) -> sympy.Expr:
        tok = self.advance()
        if tok.kind == "num":
            value = sympy.Rational(tok.text)
            if abs(value) > MAX_NUMBER:
                raise self.fail(f"number larger than {MAX_NUMBER:g}", tok)
            return value
        if tok.kind == "name":
            if tok.text == "x":
                return X
            if tok.text in CONSTANTS:
                return CONSTANTS[tok.text]
            if tok.text in FUNCTIONS:
                return self.call(tok)
            raise self.fail(f"unknown name {tok.text!r}", tok)
        if tok.kind == "op" and tok.text == "(":
            self.enter()
            inner = self.expr()
            self.expect(")")
            self.depth -= 1
            return inner
        raise self.fail(f"unexpected {self.describe(tok)}", tok)

    def call(self, name: _Token) -> sympy.Expr:
        builder, lo, hi = FUNCTIONS[name.text]
        if self.tok.kind != "op" or self.tok.text != "(":
            raise self.fail(f"function {name.text!r} must be followed by '('")
        self.advance()
        self.enter()
        args = [self.expr()]
        while self.tok.kind == "op" and self.tok.text == ",":
            self.advance()
            args.append(self.expr())
        self.expect(")")
        self.depth -= 1
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.fail(f"function {name.text!r} takes {want} argument(s), "
                            f"got {len(args)}", name)
        return builder(*args)


def _finite_float(e: sympy.Expr) -> float | None:
    """``float(e)`` for a real number ``e`` of modest size, else ``None``."""
    try:
        value = complex(sympy.N(e, 20))
    except (TypeError, ValueError, OverflowError):
        return None
    if value.imag != 0 or not math.isfinite(value.real):
        return None
    return value.real


def parse_expression(text: str) -> sympy.Expr:
    """Parse a user activation expression in ``x`` (whitelist only; see the module docstring).

    Raises :class:`ActivationError` for anything outside the whitelist or the size limits.
    """
    if not isinstance(text, str):
        raise ActivationError(f"activation must be a string; allowed: {_ALLOWED}")
    if len(text) > MAX_LENGTH:
        raise ActivationError(f"activation expression is {len(text)} characters long; "
                              f"allowed: at most {MAX_LENGTH}")
    if not text.strip():
        raise ActivationError(f"activation is empty; allowed: {_ALLOWED}")
    if not text.isascii():
        pos = next(i for i, c in enumerate(text) if not c.isascii())
        raise _error(text, pos, f"unexpected character {text[pos]!r}")
    expr = _Parser(text).parse()
    for node in sympy.preorder_traversal(expr):
        # sympy merges powers ((x**64)**64 = x**4096, x**40*x**40 = x**80): bound the result
        if (isinstance(node, sympy.Pow) and node.exp.is_number and node.base.has(X)
                and abs(_finite_float(node.exp) or math.inf) > MAX_EXPONENT):
            raise ActivationError(f"activation {text!r}: power {node} has an exponent beyond "
                                  f"{MAX_EXPONENT}; allowed: numeric exponents at most "
                                  f"{MAX_EXPONENT} in magnitude")
    if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ActivationError(f"activation {text!r} is not finite; allowed: {_ALLOWED}")
    for point in _PROBES:
        if _finite_float(expr.subs(X, point)) is None:
            raise ActivationError(f"activation {text!r} is not real and finite at "
                                  f"x = {float(point)}; allowed: a real function of real x")
    pole = _first_pole(expr)
    if pole is not None:
        raise ActivationError(f"activation {text!r} is singular at x = {pole:.6g}; "
                              "allowed: a function finite on the whole real line")
    return expr


def _first_pole(expr: sympy.Expr) -> float | None:
    """A real zero of a denominator or of a logarithm's argument in ``expr``, if any."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_negative and node.base.has(X):
            site = node.base
        elif isinstance(node, sympy.log) and node.args[0].has(X):
            site = node.args[0]
        else:
            continue
        zeros = _zeros(site)
        if zeros:
            return zeros[0]
    return None


# irregular probe points where a user expression must evaluate to a finite real number
_PROBES = tuple(sympy.Rational(p) for p in ("-2.7", "-1.3", "-0.45", "0.35", "1.15", "2.6"))


# ----------------------------------------------------------------------------- kinks

def find_kinks(expr: sympy.Expr) -> tuple[float, ...]:
    """Real points where ``expr`` (in :data:`X`) or a low derivative may be non-smooth: zeros
    of the arguments of ``Abs``, ``sign``, ``Heaviside`` and of the pairwise differences of the
    arguments of ``Max``/``Min``. Polynomial (and rational) arguments are solved exactly; other
    arguments are scanned for sign changes on ``[-KINK_RANGE, KINK_RANGE]`` and refined by
    bisection; if that fails, ``0.0`` is returned conservatively.
    """
    sites: list[sympy.Expr] = []
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Abs | sympy.sign | sympy.Heaviside):
            sites.append(node.args[0])
        elif isinstance(node, sympy.Max | sympy.Min):
            args = node.args
            sites.extend(a - b for i, a in enumerate(args) for b in args[i + 1:])
    points: set[float] = set()
    for site in sites:
        if not site.has(X):
            continue
        found = _zeros(site)
        points.update(found if found is not None else (0.0,))
    out = sorted(round(p, 15) + 0.0 for p in points if abs(p) <= KINK_RANGE)
    return tuple(out[:MAX_KINKS])


def _zeros(site: sympy.Expr) -> list[float] | None:
    exact = exact_real_zeros(site)
    if exact is not None:
        return sorted({float(r) for r in exact})
    return _scan_zeros(site)


def exact_real_zeros(site: sympy.Expr) -> list[sympy.Expr] | None:
    """The real zeros of ``site`` as exact sympy numbers, if ``site`` is a polynomial (or the
    numerator of a rational function) of degree <= 12 with numeric coefficients whose roots
    sympy can find (``real_roots``; ``roots`` for coefficients such as ``pi`` or ``sqrt 2``);
    else ``None``."""
    num, _ = sympy.fraction(sympy.together(site))
    try:
        poly = sympy.Poly(num, X)
    except sympy.PolynomialError:
        return None
    if poly.degree() > 12 or not all(c.is_number for c in poly.all_coeffs()):
        return None
    if poly.degree() < 1:
        return []
    try:
        return list(sympy.real_roots(poly))
    except (NotImplementedError, sympy.PolynomialError, TypeError, ValueError):
        pass
    try:
        found = sympy.roots(poly)
    except (NotImplementedError, sympy.PolynomialError, TypeError, ValueError):
        return None
    if sum(found.values()) != poly.degree():
        return None
    out = []
    for r in found:
        z = complex(sympy.N(r, 30))
        if abs(z.imag) <= 1e-20 * max(1.0, abs(z.real)):
            out.append(sympy.re(r) if r.has(sympy.I) else r)
    return out


def _scan_zeros(site: sympy.Expr) -> list[float] | None:
    """Sign changes of ``site`` on a grid over ``[-KINK_RANGE, KINK_RANGE]``, bisected."""
    import numpy as np

    try:
        f = sympy.lambdify(X, site, modules=["numpy", {"erf": _np_erf, "erfc": _np_erfc}])
        grid = np.linspace(-KINK_RANGE, KINK_RANGE, 4001)
        with np.errstate(all="ignore"):
            vals = np.broadcast_to(np.asarray(f(grid), dtype=float), grid.shape)
    except Exception:  # an expression numpy cannot evaluate: be conservative
        return None
    zeros = [float(g) for g, v in zip(grid, vals, strict=True) if v == 0]
    s = np.sign(vals)
    for i in np.flatnonzero((s[:-1] * s[1:]) < 0):
        a, b = float(grid[i]), float(grid[i + 1])
        fa = float(vals[i])
        for _ in range(60):
            m = 0.5 * (a + b)
            with np.errstate(all="ignore"):
                fm = float(f(m))
            if not math.isfinite(fm):
                break
            if (fm < 0) == (fa < 0):
                a, fa = m, fm
            else:
                b = m
        zeros.append(0.5 * (a + b))
    if not zeros and not np.all(np.isfinite(vals)):
        return None
    return zeros


def _np_erf(a):
    from scipy.special import erf

    return erf(a)


def _np_erfc(a):
    from scipy.special import erfc

    return erfc(a)

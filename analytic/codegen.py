"""Derived sympy expressions as LaTeX, NumPy callables and Numba scalar code.

- :func:`latex` -- the closed form for reports.
- :func:`to_numpy` -- a vectorised callable (``sympy.lambdify`` on NumPy, ``erf``/``erfc`` from
  ``scipy.special``).
- :func:`to_array` -- the same on another NumPy-compatible array namespace (CuPy).
- :func:`numba_source` / :func:`to_numba` -- scalar Python source using only ``math`` functions
  and builtins (``math.erf``, ``math.exp``, ``abs``, ``max``; ``Heaviside(u)`` becomes
  ``(1.0 if u > 0 else 0.0)``, ``sign(u)`` becomes ``(0.0 if u == 0 else math.copysign(1.0,
  u))``), with common subexpressions hoisted. The simulator compiles it into its Numba kernels
  for any user activation and its derivative.
- :func:`c_source` -- the same scalar function in C99 (``math.h`` functions, which CUDA
  device code also has), for the GPU kernels of ``--device cuda``: ``Heaviside(u)`` becomes
  ``((u) > 0 ? 1.0 : 0.0)``, ``sign(u)`` ``((u) == 0 ? 0.0 : copysign(1.0, u))``, ``Max`` and
  ``Min`` ``fmax`` and ``fmin``, constants and rationals double literals.

Convention at a jump: numeric code uses ``Heaviside(0) = 0`` (so ``relu'(0) = 0``, as in the
simulator's NumPy and Numba paths), where sympy's symbolic ``Heaviside(0)`` is ``1/2``; the two
differ only on a set of Gaussian measure zero, so no expectation depends on it.

The generated source is printed from a sympy expression (built by the whitelist parser of
``analytic.activations`` or by derivation), never from user text, so executing it is safe.
Numba's ``cache=True`` does not work on functions created by ``exec``: it is not used.
Units: none are introduced; the generated code computes the expression in the units of its
arguments (dimensionless for activations).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import sympy
from sympy.printing.c import C99CodePrinter
from sympy.printing.pycode import PythonCodePrinter

from analytic.activations import Activation, X


class CodegenError(ValueError):
    """An expression cannot be turned into scalar code (unsupported function, bad name)."""


def latex(expr: sympy.Expr) -> str:
    """LaTeX of a derived expression."""
    return sympy.latex(expr)


_STEP = sympy.Function("_step0")  # Heaviside with value 0 at 0, for the numeric code


def _numeric_switches(expr: sympy.Expr) -> sympy.Expr:
    return expr.replace(lambda e: isinstance(e, sympy.Heaviside), lambda e: _STEP(e.args[0]))


def _np_step(u: Any) -> Any:
    import numpy as np

    return np.where(np.asarray(u) > 0, 1.0, 0.0)


def to_numpy(expr: sympy.Expr, args: Sequence[sympy.Symbol] = (X,)) -> Callable:
    """Vectorised NumPy function of ``args`` computing ``expr`` (``erf`` from scipy;
    ``Heaviside(0) = 0``, see the module docstring)."""
    from scipy import special

    modules = [{"erf": special.erf, "erfc": special.erfc, "_step0": _np_step}, "numpy"]
    return sympy.lambdify(tuple(args), _numeric_switches(expr), modules=modules)


def to_array(expr: sympy.Expr, xp: Any, special: Any, args: Sequence[sympy.Symbol] = (X,)
             ) -> Callable:
    """:func:`to_numpy` on another NumPy-compatible array namespace ``xp`` (a module whose name
    ``sympy.lambdify`` knows: ``numpy`` or ``cupy``), with ``erf``/``erfc`` from ``special``
    (``scipy.special``, ``cupyx.scipy.special``) and ``Heaviside(0) = 0``."""

    def step(u: Any) -> Any:
        return xp.where(u > 0, 1.0, 0.0)

    modules = [{"erf": special.erf, "erfc": special.erfc, "_step0": step}, xp.__name__]
    return sympy.lambdify(tuple(args), _numeric_switches(expr), modules=modules)


class _ScalarPrinter(PythonCodePrinter):
    """Python printer restricted to ``math`` and builtins, with float-valued switches."""

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "strict": True})

    def _print_Heaviside(self, expr: sympy.Heaviside) -> str:
        return f"(1.0 if ({self._print(expr.args[0])}) > 0 else 0.0)"

    def _print_sign(self, expr: sympy.sign) -> str:
        arg = self._print(expr.args[0])
        return f"(0.0 if ({arg}) == 0 else math.copysign(1.0, {arg}))"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return repr(float(expr.p)) if abs(expr.p) < 2**53 else repr(float(expr))

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 0 < int(exp) <= 8:  # integer powers as products (exact, fast)
            b = self.parenthesize(base, 100)
            return "(" + "*".join([b] * int(exp)) + ")"
        return super()._print_Pow(expr, rational)


def numba_source(expr: sympy.Expr, name: str = "phi", arg: sympy.Symbol = X) -> str:
    """Source of ``def name(x): return expr`` using ``math`` functions only (see module
    docstring), common subexpressions as local variables. Raises :class:`CodegenError` for
    a function with no scalar equivalent or an invalid ``name``."""
    if not name.isidentifier() or name in ("math", "x"):
        raise CodegenError(f"function name {name!r} is not a valid identifier")
    expr = sympy.sympify(expr)
    bad = expr.free_symbols - {arg}
    if bad:
        raise CodegenError(f"expression has symbols {sorted(map(str, bad))} besides {arg}")
    printer = _ScalarPrinter()
    temps, (reduced,) = sympy.cse(expr, symbols=sympy.numbered_symbols("_t"))
    lines = [f"def {name}({arg}):"]
    try:
        for sym, sub in temps:
            lines.append(f"    {sym} = {printer.doprint(sub)}")
        lines.append(f"    return float({printer.doprint(reduced)})")
    except sympy.printing.codeprinter.PrintMethodNotImplementedError as err:
        raise CodegenError(f"no scalar code for {expr}: {err}") from None
    return "\n".join(lines) + "\n"


def to_python(expr: sympy.Expr, name: str = "phi") -> Callable[[float], float]:
    """The plain-Python scalar function of :func:`numba_source` (no compilation)."""
    namespace: dict[str, object] = {"math": math}
    exec(compile(numba_source(expr, name), f"<meanfield codegen {name}>", "exec"), namespace)
    return namespace[name]  # type: ignore[return-value]


def to_numba(expr: sympy.Expr, name: str = "phi") -> Callable[[float], float]:
    """``numba.njit`` of :func:`to_python` (compiled lazily on first call; no ``cache``)."""
    import numba

    return numba.njit(to_python(expr, name))


def numba_activation(activation: Activation) -> tuple[Callable, Callable]:
    """Compiled scalar ``(phi, phi')`` of an activation (``phi'`` classical, Heaviside at
    kinks; see ``Activation.derivative``)."""
    return (to_numba(activation.expr, "phi"), to_numba(activation.derivative(1), "dphi"))


class _CPrinter(C99CodePrinter):
    """C99 printer for scalar ``double`` code: switches as conditionals, every number a double
    literal (no ``M_PI``: NVRTC, which compiles CuPy's kernels, has no ``math.h`` macros)."""

    def __init__(self) -> None:
        super().__init__({"strict": True})

    def _print_Heaviside(self, expr: sympy.Heaviside) -> str:
        return f"(({self._print(expr.args[0])}) > 0 ? 1.0 : 0.0)"

    def _print_sign(self, expr: sympy.sign) -> str:
        arg = self._print(expr.args[0])
        return f"(({arg}) == 0 ? 0.0 : copysign(1.0, {arg}))"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return repr(float(expr.p)) if abs(expr.p) < 2**53 else repr(float(expr))

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    def _print_NumberSymbol(self, expr: sympy.Expr) -> str:
        return repr(float(expr))

    _print_Pi = _print_NumberSymbol
    _print_Exp1 = _print_NumberSymbol

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 0 < int(exp) <= 8:  # integer powers as products (exact, fast)
            b = self.parenthesize(base, 100)
            return "(" + "*".join([b] * int(exp)) + ")"
        if exp.is_Integer and -8 <= int(exp) < 0:
            b = self.parenthesize(base, 100)
            return "(1.0/(" + "*".join([b] * -int(exp)) + "))"
        return super()._print_Pow(expr)


def c_source(expr: sympy.Expr, name: str = "phi", arg: sympy.Symbol = X,
             qualifier: str = "") -> str:
    """C99 source of ``double name(double x) { return expr; }`` (see the module docstring),
    common subexpressions as local variables; ``qualifier`` is put in front (``__device__``
    for CUDA). Raises :class:`CodegenError` for a function with no C equivalent or an invalid
    ``name``."""
    if not name.isidentifier() or name == str(arg):
        raise CodegenError(f"function name {name!r} is not a valid identifier")
    expr = sympy.sympify(expr)
    bad = expr.free_symbols - {arg}
    if bad:
        raise CodegenError(f"expression has symbols {sorted(map(str, bad))} besides {arg}")
    printer = _CPrinter()
    temps, (reduced,) = sympy.cse(_numeric_constants(_numeric_heaviside(expr)),
                                  symbols=sympy.numbered_symbols("_t"))
    head = f"{qualifier} " if qualifier else ""
    lines = [f"{head}double {name}(double {arg}) {{"]
    try:
        for sym, sub in temps:
            lines.append(f"    double {sym} = {printer.doprint(sub)};")
        lines.append(f"    return {printer.doprint(reduced)};")
    except (sympy.printing.codeprinter.PrintMethodNotImplementedError, ValueError) as err:
        raise CodegenError(f"no C code for {expr}: {err}") from None
    return "\n".join([*lines, "}"]) + "\n"


def _numeric_heaviside(expr: sympy.Expr) -> sympy.Expr:
    """``Heaviside(u, H0)`` without its second argument (the numeric code has ``H(0) = 0``)."""
    return expr.replace(lambda e: isinstance(e, sympy.Heaviside) and len(e.args) > 1,
                        lambda e: sympy.Heaviside(e.args[0]))


def _numeric_constants(expr: sympy.Expr) -> sympy.Expr:
    """Every maximal constant subexpression that is not a rational (``sqrt(2)``,
    ``1/sqrt(pi)``, ``log(2)``) as a double (17 digits): C has no exact form of them."""
    if expr.is_number and not expr.is_Rational:
        return sympy.Float(expr.evalf(20), 20)
    if not expr.args:
        return expr
    return expr.func(*(_numeric_constants(a) for a in expr.args))

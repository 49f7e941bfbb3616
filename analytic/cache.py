"""The on-disk cache of the symbolic results of :mod:`analytic` (``gaussian`` and ``hinge``).

One JSON file per entry, under :func:`cache_dir` (``$XDG_CACHE_HOME/meanfield``, default
``~/.cache/meanfield``):

    <cache_dir>/<kind>-<h>.json,   h = sha256(salt "\\n" kind "\\n" key)[:40] (hex digits),
    salt = version(meanfield) ":" version(sympy) ":" sha256(source of SOURCES),
    content = {"kind": kind, "key": key, "data": data}   (data: JSON chosen by the caller).

``kind`` names the caller (``gauss``, ``hinge``); ``key`` identifies the result within it.
``SOURCES`` are the modules whose code determines the cached values (the derivations, the
parser that builds their inputs, and this reader), so any change to them, to the package
version or to sympy's version gives new file names and the old entries are never read. No
physical quantities here; sizes are in characters, bits (``Float`` precision) and hex digits.

Expressions are stored as ``sympy.srepr`` text and rebuilt by :func:`from_srepr`, which walks
the Python AST over a whitelist and never calls ``eval``, ``sympify`` or ``pickle``:

- calls of the classes in :data:`CLASSES`, whose arguments must be sympy objects (rebuilt by
  the same walk), except ``Integer(n)`` and ``Rational(p, q)`` (integer literals) and
  ``Float('digits', precision=bits)`` (a decimal literal string, ``bits <= MAX_PRECISION``);
  no keyword arguments otherwise (a text argument would reach sympy's ``sympify``, which
  evaluates it as Python code);
- ``Symbol('name', flag=True, ...)`` with flags from :data:`SYMBOL_FLAGS`; a caller may restrict
  symbols to its own (exactly equal, assumptions included);
- ``Function('name')(args)`` only for the undefined functions a caller names;
- the atoms in :data:`ATOMS`; a unary minus only on an integer or float literal;
- evaluation that could take unbounded time is refused: integer or rational exponents and
  arguments of ``gamma``/``loggamma`` beyond :data:`MAX_EXACT` in size.

Everything else raises :class:`SreprError` (a ``ValueError``). Reading never fails: a missing,
corrupt, foreign or refused entry is a miss (:func:`load` returns ``None``). Writing is atomic
(a temporary file in the same folder, then ``os.replace``), so a reader sees a whole entry or
none; a read-only, missing or full cache folder only costs speed (:func:`store` does nothing).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import sympy

T = TypeVar("T")

SOURCES = ("activations.py", "cache.py", "gaussian.py", "hinge.py")  # files of this package

CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (
        sympy.Add, sympy.Mul, sympy.Pow, sympy.Integer, sympy.Rational, sympy.Float,
        sympy.Tuple, sympy.Derivative,
        sympy.exp, sympy.log, sympy.erf, sympy.erfc, sympy.gamma, sympy.loggamma,
        sympy.betainc_regularized,
        sympy.sin, sympy.cos, sympy.asin, sympy.acos, sympy.atan,
        sympy.sinh, sympy.cosh, sympy.tanh, sympy.asinh,
        sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max,
    )
}
ATOMS: dict[str, sympy.Basic] = {"pi": sympy.pi, "E": sympy.E, "EulerGamma": sympy.EulerGamma,
                                 "oo": sympy.oo, "zoo": sympy.zoo, "nan": sympy.nan}
SYMBOL_FLAGS = frozenset({"real", "positive", "nonnegative", "integer"})
MAX_PRECISION = 4096  # bits of a Float
MAX_EXACT = 10_000  # |p|, |q| of an exponent or a gamma argument that sympy would evaluate

_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|nan")
_KIND = re.compile(r"[a-z]+")


class SreprError(ValueError):
    """A ``srepr`` text is malformed or outside the whitelist of :func:`from_srepr`."""


# ----------------------------------------------------------------------------- files


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/meanfield`` (default ``~/.cache/meanfield``), read at every call."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meanfield"


@functools.lru_cache(maxsize=1)
def salt() -> str:
    """Package version, sympy version and a hash of the source of :data:`SOURCES`."""
    try:
        version = metadata.version("meanfield")
    except metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in SOURCES:
        digest.update(name.encode() + b"\n" + (here / name).read_bytes() + b"\n")
    return f"{version}:{sympy.__version__}:{digest.hexdigest()}"


def path(kind: str, key: str) -> Path:
    """The file of entry ``key`` of ``kind`` (see the module docstring)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"cache kind {kind!r}: allowed: lower-case letters")
    digest = hashlib.sha256(f"{salt()}\n{kind}\n{key}".encode()).hexdigest()[:40]
    return cache_dir() / f"{kind}-{digest}.json"


def load(kind: str, key: str, decode: Callable[[Any], T]) -> T | None:
    """``decode(data)`` of the entry, or ``None`` when it is missing, unreadable, corrupt, for
    another kind or key, or when ``decode`` fails (e.g. :class:`SreprError`)."""
    target = path(kind, key)
    try:
        record = json.loads(target.read_text())
        if record["kind"] != kind or record["key"] != key:
            return None
        return decode(record["data"])
    except Exception:  # any failure to read back an entry is a miss, never an error
        return None


def store(kind: str, key: str, data: Any) -> None:
    """Write the entry atomically; ``data`` must be JSON-serialisable (else ``TypeError``).
    Any ``OSError`` (read-only, missing or full folder) is ignored."""
    text = json.dumps({"kind": kind, "key": key, "data": data})
    target = path(kind, key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return


# ----------------------------------------------------------------------------- srepr reader


def from_srepr(text: str, symbols: Iterable[sympy.Symbol] | None = None,
               functions: Mapping[str, Callable] | None = None) -> sympy.Basic:
    """Rebuild a sympy expression from its ``sympy.srepr`` text over the whitelist of the
    module docstring, without ``eval``. ``symbols``: if given, the only symbols allowed (each
    occurrence is replaced by the given object); ``functions``: the undefined functions allowed,
    by name (``Function('sigma')(u)`` needs ``{"sigma": sigma}``). Raises :class:`SreprError`.
    """
    allowed = None if symbols is None else {s: s for s in symbols}
    try:
        tree = ast.parse(text, mode="eval")
        return _Reader(allowed, dict(functions or {})).expr(tree.body)
    except SreprError:
        raise
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise SreprError(f"srepr: cannot read ({type(exc).__name__})") from None
    except Exception as exc:  # a whitelisted constructor refused its (whitelisted) arguments
        raise SreprError(f"srepr: sympy refused it ({type(exc).__name__}: {exc})") from None


class _Reader:
    def __init__(self, symbols: dict | None, functions: dict[str, Callable]) -> None:
        self.symbols = symbols
        self.functions = functions

    def expr(self, node: ast.AST) -> sympy.Basic:
        """A sympy object: an atom, a symbol, a whitelisted call."""
        if isinstance(node, ast.Name) and node.id in ATOMS:
            return ATOMS[node.id]
        if not isinstance(node, ast.Call):
            raise SreprError(f"srepr: {_show(node)} is not allowed")
        func = node.func
        if isinstance(func, ast.Call):  # Function('name')(args)
            return self._undefined(func, node)
        if not isinstance(func, ast.Name):
            raise SreprError(f"srepr: {_show(func)} is not allowed")
        if func.id == "Symbol":
            return self._symbol(node)
        cls = CLASSES.get(func.id)
        if cls is None:
            raise SreprError(f"srepr: {func.id} is not allowed")
        if cls is sympy.Float:
            return self._float(node)
        if node.keywords:
            raise SreprError(f"srepr: {func.id} takes no keywords")
        if cls in (sympy.Integer, sympy.Rational):
            ints = [self.literal(a) for a in node.args]
            if not ints or len(ints) > 2 - (cls is sympy.Integer) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in ints):
                raise SreprError(f"srepr: {func.id} takes integer literals")
            return cls(*ints)
        args = [self.expr(a) for a in node.args]
        _check_bounded(cls, args)
        return cls(*args)

    def literal(self, node: ast.AST) -> object:
        """A number or text literal, with an optional unary minus on numbers."""
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.literal(node.operand)
            if isinstance(inner, int | float) and not isinstance(inner, bool):
                return -inner
        raise SreprError(f"srepr: {_show(node)} is not a literal")

    def _symbol(self, node: ast.Call) -> sympy.Symbol:
        if len(node.args) != 1 or not isinstance(name := self.literal(node.args[0]), str):
            raise SreprError("srepr: Symbol takes one name")
        flags = {}
        for kw in node.keywords:
            if kw.arg not in SYMBOL_FLAGS or self.literal(kw.value) is not True:
                raise SreprError("srepr: unexpected symbol assumption")
            flags[kw.arg] = True
        sym = sympy.Symbol(name, **flags)
        if self.symbols is None:
            return sym
        found = self.symbols.get(sym)  # equal name and assumptions
        if found is None:
            raise SreprError(f"srepr: unexpected symbol {name!r}")
        return found

    def _float(self, node: ast.Call) -> sympy.Float:
        if len(node.args) != 1 or any(kw.arg != "precision" for kw in node.keywords):
            raise SreprError("srepr: Float takes a number and precision=")
        value = self.literal(node.args[0])
        if isinstance(value, str) and not _FLOAT_TEXT.fullmatch(value):
            raise SreprError("srepr: Float takes a decimal literal")
        precision = 53
        for kw in node.keywords:
            precision = self.literal(kw.value)
        if isinstance(precision, bool) or not isinstance(precision, int) or not (
                0 < precision <= MAX_PRECISION):
            raise SreprError(f"srepr: Float precision must be 1..{MAX_PRECISION} bits")
        return sympy.Float(value, precision=precision)

    def _undefined(self, func: ast.Call, node: ast.Call) -> sympy.Basic:
        if not (isinstance(func.func, ast.Name) and func.func.id == "Function"
                and len(func.args) == 1 and not func.keywords and not node.keywords):
            raise SreprError(f"srepr: {_show(func)} is not allowed")
        name = self.literal(func.args[0])
        if not isinstance(name, str) or name not in self.functions:
            raise SreprError(f"srepr: unexpected function {name!r}")
        return self.functions[name](*(self.expr(a) for a in node.args))


def _check_bounded(cls: type, args: list[sympy.Basic]) -> None:
    """Refuse exact evaluations whose cost grows with the numbers (``10**(10**9)``,
    ``gamma(10**9)``); such numbers never occur in the derived results."""
    if cls is sympy.Pow and len(args) == 2:
        checked = args[1:]
    elif cls in (sympy.gamma, sympy.loggamma):
        checked = args
    else:
        return
    for arg in checked:
        if isinstance(arg, sympy.Rational) and max(abs(arg.p), abs(arg.q)) > MAX_EXACT:
            raise SreprError(f"srepr: {cls.__name__} of a number beyond {MAX_EXACT}")


def _show(node: ast.AST) -> str:
    return ast.dump(node)[:60]

"""analytic.cache: the one disk cache of analytic.gaussian and analytic.hinge.

File layout and salt, atomic writes, misses on corrupt/foreign/unwritable entries, the srepr
whitelist (refusals, including text that sympy's sympify would execute, and round trips), and
that values read back from disk are identical to the computed ones for both users."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import pytest
import sympy

from analytic import cache, gaussian
from analytic import hinge as H
from analytic.activations import NAMES, X, get_activation
from analytic.cache import SreprError, from_srepr
from analytic.gaussian import moments


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test uses an empty on-disk cache and a cleared in-process Gaussian cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gaussian._expectation.cache_clear()
    gaussian._moments.cache_clear()


def _clear_gaussian():
    gaussian._expectation.cache_clear()
    gaussian._moments.cache_clear()


def _folder(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "meanfield"


# ----------------------------------------------------------------------------- files


def test_store_load_round_trip_and_layout(tmp_path):
    data = {"a": [1, 2.5, None, "x"], "b": float("inf")}
    cache.store("test", "some key", data)
    target = cache.path("test", "some key")
    assert target.parent == _folder(tmp_path) == cache.cache_dir()
    assert target.name.startswith("test-") and len(target.stem) == len("test-") + 40
    assert json.loads(target.read_text()) == {"kind": "test", "key": "some key", "data": data}
    assert cache.load("test", "some key", lambda d: d) == data
    assert cache.load("test", "other key", lambda d: d) is None  # never written
    assert cache.path("other", "some key") != target
    assert [p.name for p in _folder(tmp_path).iterdir()] == [target.name]  # no temporary left


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "meanfield"


def test_bad_kind_is_refused():
    for kind in ("", "Gauss", "a/b", "../x", "gauss-1"):
        with pytest.raises(ValueError, match="kind"):
            cache.path(kind, "k")


def test_foreign_and_corrupt_entries_are_misses(tmp_path):
    cache.store("test", "k", {"v": 1})
    target = cache.path("test", "k")
    good = target.read_text()
    for text in ("{not json", "", "[]", "null", '{"kind": "test"}',
                 good.replace('"key": "k"', '"key": "j"'),
                 good.replace('"kind": "test"', '"kind": "other"'),
                 good[: len(good) // 2], "\x00\xff"):
        target.write_text(text)
        assert cache.load("test", "k", lambda d: d["v"]) is None, text
    target.write_text(good)

    def failing_decode(data):
        raise RuntimeError("decode failed")

    assert cache.load("test", "k", failing_decode) is None
    assert cache.load("test", "k", lambda d: d["v"]) == 1


def test_unwritable_or_full_cache_dir_costs_only_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file: mkdir fails
    cache.store("test", "k", {"v": 1})
    assert cache.load("test", "k", lambda d: d) is None
    assert moments("abs")["nu"].exact
    # a full disk: the write fails after the temporary file exists; it is removed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "full"))

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", no_space)
    cache.store("test", "k", {"v": 1})
    assert list((tmp_path / "full" / "meanfield").iterdir()) == []
    assert cache.load("test", "k", lambda d: d) is None


def test_unserialisable_data_is_a_programming_error():
    with pytest.raises(TypeError):
        cache.store("test", "k", {"v": object()})


def test_salt_covers_versions_and_sources(tmp_path, monkeypatch):
    """The salt (hence every file name) changes with sympy's version and with the source of
    each module in SOURCES, the union of what the two earlier caches covered."""
    assert set(cache.SOURCES) >= {"activations.py", "gaussian.py", "hinge.py", "cache.py"}
    salt = cache.salt()
    assert sympy.__version__ in salt
    copy = tmp_path / "src"
    copy.mkdir()
    for name in cache.SOURCES:
        shutil.copy(Path(cache.__file__).with_name(name), copy / name)
    monkeypatch.setattr(cache, "__file__", str(copy / "cache.py"))
    try:
        cache.salt.cache_clear()
        assert cache.salt() == salt  # same bytes, same salt
        for name in cache.SOURCES:
            original = (copy / name).read_bytes()
            (copy / name).write_bytes(original + b"\n")
            cache.salt.cache_clear()
            assert cache.salt() != salt, name
            (copy / name).write_bytes(original)
    finally:
        cache.salt.cache_clear()


# ----------------------------------------------------------------------------- reader

PAYLOAD = "setattr(__import__('builtins'), 'meanfield_srepr_ran', True)"


@pytest.mark.parametrize("text", [
    "__import__('os').system('x')",
    "__import__('os')",
    PAYLOAD,
    "Integer(1).__class__",  # attribute access
    "Integer(1).__class__.__base__.__subclasses__()",
    "Add(Integer(1), Integer(2)).func",
    # text arguments reach sympify (which evaluates them) in these constructors: refused
    f"erf({PAYLOAD!r})",
    f"exp({PAYLOAD!r})",
    f"Add({PAYLOAD!r}, Integer(1))",
    f"Max(Integer(0), {PAYLOAD!r})",
    f"Integer({PAYLOAD!r})",
    f"Rational({PAYLOAD!r}, Integer(2))",
    f"Float({PAYLOAD!r}, precision=53)",
    f"Symbol('x', real={PAYLOAD})",
    f"Function({PAYLOAD!r})(Symbol('u', real=True))",
    "Symbol('y', real=False)",
    "Symbol('y', commutative=True)",
    "Symbol(name='y')",
    "Symbol(Integer(1))",
    "Function('sigma')(Symbol('u', real=True))",  # no undefined function given
    "Function('f')(Symbol('u', real=True))",
    "Add(Integer(1), foo)",
    "Add(Integer(1), evaluate=False)",
    "Mul(*[Integer(1)])",
    "Add(**{})",
    "lambda: 1",
    "Integer(1) + Integer(2)",
    "[Integer(1)]",
    "(Integer(1), Integer(2))",
    "Integer(1.5)",
    "Integer(True)",
    "Integer('1')",
    "Rational(1, 2, 3)",
    "Float('1e5', precision=10**6)",
    "Float('1e5', precision=100000)",
    "Float('0x10', precision=53)",
    "Pow(Integer(10), Integer(1000000000))",
    "gamma(Integer(1000000000))",
    "loggamma(Rational(1000000001, 2))",
    "Derivative",
    "sympify('x')",
    "eval('1')",
    "S.One",
    "-pi",
    "x",
    "Integer(1); Integer(2)",
    "",
    "(" * 500 + "Integer(1)" + ")" * 500,
])
def test_whitelist_refuses(text):
    """Anything but whitelisted calls on literals is refused without running it; text is only
    accepted as a Symbol/Function name or Float digits, since a text argument given to a sympy
    constructor (``erf('...')``) would be evaluated as Python by its ``sympify``."""
    with pytest.raises(SreprError):
        from_srepr(text)
    assert not hasattr(builtins, "meanfield_srepr_ran")


def test_symbols_and_functions_are_the_callers():
    u = sympy.Symbol("u", real=True)
    assert from_srepr(sympy.srepr(u)) == u
    assert gaussian.from_srepr(sympy.srepr(X)) is X  # X is the only symbol of gaussian
    for text in ("Symbol('y', real=True)", "Symbol('x')", "Symbol('x', positive=True)"):
        with pytest.raises(SreprError, match="symbol"):
            gaussian.from_srepr(text)
    text = sympy.srepr(H.sigma(u) + sympy.Derivative(H.sigma(u), u))
    with pytest.raises(SreprError, match="function"):
        from_srepr(text)
    rebuilt = from_srepr(text, functions={"sigma": H.sigma})
    assert rebuilt == H.sigma(u) + sympy.Derivative(H.sigma(u), u)
    assert (rebuilt - sympy.Derivative(H.sigma(u), u)).subs(H.sigma(u), 2) == 2


def _structural_round_trip(expr, **kw):
    text = sympy.srepr(expr)
    rebuilt = from_srepr(text, **kw)
    assert rebuilt == expr
    assert sympy.srepr(rebuilt) == text
    assert sympy.latex(rebuilt) == sympy.latex(expr)


def test_round_trip_of_expressions():
    for e in (sympy.Float("0.125") * X + sympy.pi, sympy.Float("-2.5e-7", 30) * sympy.E,
              sympy.Rational(-3, 7) * sympy.sqrt(2) * sympy.EulerGamma, -sympy.oo * X,
              sympy.zoo + X, sympy.nan, sympy.Integer(-10) ** 20 * sympy.erfc(X),
              sympy.asin(X) + sympy.acos(X / 2) + sympy.atan(X) + sympy.sin(X) * sympy.cos(X),
              sympy.asinh(X) * sympy.sinh(X) + sympy.cosh(X) - sympy.tanh(X),
              sympy.Abs(X) + sympy.sign(X) + sympy.Heaviside(X) + sympy.Max(0, X),
              sympy.gamma(X) + sympy.loggamma(X) + sympy.log(X) + sympy.exp(X),
              sympy.betainc_regularized(sympy.S.Half, X, 0, X**2),
              sympy.Tuple(X, 1), sympy.Derivative(sympy.erf(X), X)):
        _structural_round_trip(e)
    for name in (*NAMES, "leaky_relu:0.1", "x*tanh(x)"):
        act = get_activation(name)
        _structural_round_trip(act.expr, symbols=(X,))


# ----------------------------------------------------------------------------- gaussian


def _same(v, w):
    assert v == w
    assert v.value.hex() == w.value.hex()
    assert sympy.srepr(v.expr) == sympy.srepr(w.expr)
    assert v.latex == w.latex


@pytest.mark.parametrize("name", ["gelu", "tanh", "relu", "step", "x*tanh(x)",
                                  "Heaviside(exp(x) - 2)"])
def test_gaussian_values_read_back_identical(tmp_path, name):
    """Cold (computed) and warm (read back) values are identical: float bits, srepr, LaTeX."""
    cold = moments(name)
    files = list(_folder(tmp_path).glob("gauss-*.json"))
    assert len(files) >= 5
    _clear_gaussian()
    warm = moments(name)
    for key in cold:
        _same(cold[key], warm[key])
    for path in files:  # every entry written is read back
        record = json.loads(path.read_text())
        assert cache.load("gauss", record["key"], gaussian._decode) is not None


def test_gaussian_corrupt_and_hostile_entries_are_recomputed(tmp_path):
    reference = moments("relu")["nu"]
    folder = _folder(tmp_path)
    for path in folder.glob("gauss-*.json"):
        path.write_text("{not json")
    _clear_gaussian()
    assert moments("relu")["nu"] == reference
    # syntactically valid but hostile entries: refused by the srepr whitelist, recomputed
    hostile = 0
    for path in folder.glob("gauss-*.json"):
        record = json.loads(path.read_text())
        if record["data"]["exact"]:
            record["data"]["expr"] = f"erf({PAYLOAD!r})"
            record["data"]["value"] = 123.0
            path.write_text(json.dumps(record))
            hostile += 1
    assert hostile
    _clear_gaussian()
    assert moments("relu")["nu"] == reference
    assert not hasattr(builtins, "meanfield_srepr_ran")


# ----------------------------------------------------------------------------- hinge


def test_hinge_steps_read_back_identical(tmp_path):
    """Every cached derivation step reads back equal (and with the same srepr) to what was
    stored; a corrupt entry or one holding anything outside the whitelist is ignored."""
    values = {
        "node_equations": H.node_equations(),
        "relu_reduction": H.relu_reduction(),
        "relu_solution": H.relu_solution(),
        "data_law:gaussian": H.data_law("gaussian"),
        "data_law:sphere": H.data_law("sphere"),
        "relu_square_mean": H.relu_square_mean(),
    }
    for key, value in values.items():
        H._cache_store(key, value)
        back = H._cache_load(key)
        assert back == value, key
        if isinstance(value, dict):
            assert {k: sympy.srepr(e) for k, e in back.items()} == {
                k: sympy.srepr(e) for k, e in value.items()}, key
        else:
            assert sympy.srepr(back) == sympy.srepr(value)
    path = H._cache_file("relu_square_mean")
    assert path.exists() and path.name.startswith("hinge-")
    path.write_text("{not json")
    assert H._cache_load("relu_square_mean") is None
    for text in ("__import__('os').system('true')", f"exp({PAYLOAD!r})"):
        path.write_text(json.dumps({"kind": "hinge", "key": "relu_square_mean",
                                    "data": {"single": True, "exprs": {"_": text}}}))
        assert H._cache_load("relu_square_mean") is None
    assert not hasattr(builtins, "meanfield_srepr_ran")


def test_hinge_disk_cached_step_uses_the_entry(tmp_path):
    """The disk-cached wrapper stores a cold result and returns the entry when warm."""
    calls = []

    def probe_step(law: str) -> sympy.Expr:
        calls.append(law)
        return sympy.Integer(1)

    step = H._disk_cached(probe_step)
    assert step("gaussian") == 1 and calls == ["gaussian"]  # cold: computed and stored
    assert H._cache_load("probe_step:gaussian") == 1
    assert step("gaussian") == 1 and calls == ["gaussian"]  # warm: read back
    H._cache_store("probe_step:gaussian", sympy.Integer(7))
    assert step("gaussian") == 7

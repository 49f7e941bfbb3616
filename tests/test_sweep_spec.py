"""The sweep file: expansion order, refusals, to_toml round trip."""

import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meanfield.config import ConfigError, make_config, run_hash
from meanfield.sweep_spec import MAX_POINTS, SpecError, load_spec, parse_spec

WIDTH = """\
# width.toml: finite-width scaling at three output scales (7 x 3 x 8 = 168 points)
[sweep]
seeds = 8
name = "width"

[base]
N = 20000
d = 100
online = true
t_max = 1000

[grid]
M = [50, 100, 200, 400, 800, 1600, 3200]

[zip]
alpha = [0.5, 1.0, 2.0]
beta  = [4.0, 1.0, 0.25]
"""


@pytest.fixture
def width(tmp_path):
    path = tmp_path / "width.toml"
    path.write_text(WIDTH)
    return load_spec(path)


def test_width_example_order_and_count(width):
    points = width.points()
    assert len(points) == len(width) == 7 * 3 * 8 == 168
    assert [p.run for p in points] == list(range(168))
    assert width.name == "width"
    assert width.swept == ("M", "alpha", "beta", "seed")
    assert points[0].values == {"M": 50, "alpha": 0.5, "beta": 4.0, "seed": 0}
    assert points[1].values == {"M": 50, "alpha": 0.5, "beta": 4.0, "seed": 1}
    assert points[8].values == {"M": 50, "alpha": 1.0, "beta": 1.0, "seed": 0}
    assert points[24].values == {"M": 100, "alpha": 0.5, "beta": 4.0, "seed": 0}
    assert points[-1].values == {"M": 3200, "alpha": 2.0, "beta": 0.25, "seed": 7}
    p = points[8]
    assert p.config == make_config(N=20000, d=100, online=True, t_max=1000, M=50, alpha=1.0,
                                   beta=1.0, seed=0, threads=1)
    assert p.hash == run_hash(p.config)
    assert len({q.hash for q in points}) == 168
    assert all(q.config.threads == 1 for q in points)


def test_threads_from_file_and_seed_swept_in_grid():
    spec = parse_spec({"base": {"threads": 2}, "grid": {"seed": [5, 3], "M": [10, 20]}})
    points = spec.points()
    assert [p.values for p in points] == [
        {"seed": 5, "M": 10}, {"seed": 5, "M": 20}, {"seed": 3, "M": 10}, {"seed": 3, "M": 20}]
    assert all(p.config.threads == 2 for p in points)
    assert spec.swept == ("seed", "M")


def test_no_seeds_one_point_per_combination_with_base_seed():
    spec = parse_spec({"base": {"seed": 4}, "zip": {"M": [10, 20], "dtype": ["float32",
                                                                           "float64"]}})
    assert [p.values for p in spec.points()] == [
        {"M": 10, "dtype": "float32", "seed": 4}, {"M": 20, "dtype": "float64", "seed": 4}]
    empty = parse_spec({})
    assert len(empty) == 1 and empty.points()[0].config == make_config(threads=1)


def test_seed_list_and_values_in_config_types():
    spec = parse_spec({"sweep": {"seeds": [9, 2]}, "grid": {"t_max": [10, 20.0]}})
    assert [p.values for p in spec.points()] == [
        {"t_max": 10.0, "seed": 9}, {"t_max": 10.0, "seed": 2},
        {"t_max": 20.0, "seed": 9}, {"t_max": 20.0, "seed": 2}]
    assert isinstance(spec.points()[0].values["t_max"], float)


def test_to_toml_round_trip(width):
    text = width.to_toml()
    again = parse_spec(tomllib.loads(text))
    assert [(p.run, p.values, p.config, p.hash) for p in again.points()] == \
        [(p.run, p.values, p.config, p.hash) for p in width.points()]
    assert again.name == "width"
    assert again.to_toml() == text
    other = parse_spec({"base": {"times": [1, 2.5], "threads": 3}, "grid": {"seed": [1, 0]}})
    back = parse_spec(tomllib.loads(other.to_toml()))
    assert [p.config for p in back.points()] == [p.config for p in other.points()]


def _refused(spec, *words):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message, (word, message)
    assert isinstance(info.value, ConfigError)
    return message


@pytest.mark.parametrize(("spec", "words"), [
    ({"model": {"M": 3}}, ["model"]),
    ({"M": 3}, ["'M'"]),
    ({"sweep": {"seeds": 2, "colour": "red"}}, ["colour"]),
    ({"sweep": {"name": 3}}, ["name"]),
    ({"base": {"Mm": 3}}, ["Mm"]),
    ({"grid": {"Mm": [3]}}, ["Mm"]),
    ({"zip": {"Mm": [3]}}, ["Mm"]),
    ({"base": {"M": 3}, "grid": {"M": [4]}}, ["M", "[base]", "[grid]"]),
    ({"base": {"M": 3}, "zip": {"M": [4]}}, ["M", "[base]", "[zip]"]),
    ({"grid": {"M": [3]}, "zip": {"M": [4]}}, ["M", "[grid]", "[zip]"]),
    ({"grid": {"M": 3}}, ["M", "non-empty list"]),
    ({"grid": {"M": []}}, ["M", "non-empty list"]),
    ({"zip": {"M": []}}, ["M", "non-empty list"]),
    ({"grid": {"M": [[3]]}}, ["M"]),
    ({"zip": {"alpha": [1.0, 2.0], "beta": [1.0]}}, ["alpha", "beta", "length"]),
    ({"sweep": {"seeds": 0}}, ["seeds"]),
    ({"sweep": {"seeds": -1}}, ["seeds"]),
    ({"sweep": {"seeds": True}}, ["seeds"]),
    ({"sweep": {"seeds": 2.0}}, ["seeds"]),
    ({"sweep": {"seeds": []}}, ["seeds"]),
    ({"sweep": {"seeds": [1, 1]}}, ["seeds"]),
    ({"sweep": {"seeds": [1, -2]}}, ["seeds"]),
    ({"sweep": {"seeds": [1, 2.5]}}, ["seeds"]),
    ({"sweep": {"seeds": 2}, "base": {"seed": 1}}, ["seed", "[base]"]),
    ({"sweep": {"seeds": 2}, "grid": {"seed": [1]}}, ["seed", "[grid]"]),
    ({"sweep": {"seeds": 2}, "zip": {"seed": [1]}}, ["seed", "[zip]"]),
    ({"grid": {"M": [20, 0]}}, ["run 1", "M=0", "seed=0", "M must"]),
    ({"sweep": {"seeds": 3}, "zip": {"alpha": [1.0, -1.0]}}, ["run 3", "alpha=-1.0", "seed=0",
                                                               "alpha must"]),
    ({"grid": {"M": [20, 20]}}, ["M", "run 1", "run 0", "same run hash"]),
    ({"zip": {"alpha": [1, 1.0], "beta": [2, 2]}}, ["alpha", "run 1", "same run hash"]),
    ({"grid": {"checkpoint_every": [0, 10]}}, ["checkpoint_every"]),
    ({"zip": {"checkpoint_every": [10]}}, ["checkpoint_every"]),
    ({"base": {"threads": 0}}, ["threads"]),
    ({"grid": {"threads": [1, 0]}}, ["threads"]),
    ({"zip": {"threads": [0]}}, ["threads"]),
    ({"grid": {"times": [1.0, 2.0]}}, ["times", "[base]"]),
    ({"zip": {"x_par": [1.0]}}, ["x_par", "[base]"]),
    ({"sweep": {"seeds": MAX_POINTS + 1}}, ["seeds", str(MAX_POINTS)]),
    ({"sweep": {"seeds": 10}, "grid": {"M": list(range(1, 101)), "N": list(range(1, 102))}},
     [str(MAX_POINTS), "M", "N", "seed"]),
    ({"base": {"M": "wide"}}, ["run 0", "M must be an integer"]),
    ({"grid": 3}, ["[grid]", "table"]),
])
def test_refusals(spec, words):
    _refused(spec, *words)


def test_point_count_checked_before_building_configs():
    # 10^12 points would take forever to build: the count must be refused first
    huge = {"sweep": {"seeds": MAX_POINTS}, "grid": {"M": list(range(1, 10_001))}}
    _refused(huge, "more than")


def test_file_refusals(tmp_path):
    with pytest.raises(SpecError, match="does not exist") as info:
        load_spec(tmp_path / "nothere.toml")
    assert "nothere.toml" in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nM = [1, 2]\n")
    with pytest.raises(SpecError, match="not valid TOML") as info:
        load_spec(bad)
    assert "\n" not in str(info.value) and "bad.toml" in str(info.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(binary)
    point = tmp_path / "point.toml"
    point.write_text("[grid]\nM = [20, 0]\n")
    with pytest.raises(SpecError, match=r"point\.toml.*run 1 \(M=0, seed=0\)"):
        load_spec(point)


_FIELDS = ["M", "N", "d", "alpha", "beta", "seed", "threads", "dtype", "online", "batch",
           "checkpoint_every", "times", "init", "loss", "Mm", "sa", "sw", "t_max"]
_SCALARS = st.one_of(
    st.integers(-3, 40), st.integers(-(2**63), 2**63 - 1), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["relu", "float32", "float64", "symmetric", "hinge", "x"]))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3),
                    st.dictionaries(st.just("a"), _SCALARS, max_size=1))
_TABLE = st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=4)
_SWEEP = st.dictionaries(st.sampled_from(["seeds", "name", "other"]), _VALUES, max_size=2)
_PLAUSIBLE = st.fixed_dictionaries({}, optional={
    "M": st.lists(st.integers(-1, 12), min_size=1, max_size=3),
    "alpha": st.lists(st.floats(-0.5, 5, width=32), min_size=1, max_size=3),
    "dtype": st.lists(st.sampled_from(["float32", "float64", "half"]), min_size=1, max_size=2),
})
_SPECS = st.one_of(
    st.dictionaries(st.sampled_from(["sweep", "base", "grid", "zip", "extra"]),
                    st.one_of(_TABLE, _SWEEP, _SCALARS), max_size=4),
    st.fixed_dictionaries({}, optional={
        "sweep": st.fixed_dictionaries({"seeds": st.integers(0, 3)}),
        "base": st.fixed_dictionaries({}, optional={"N": st.integers(0, 100),
                                                    "seed": st.integers(-1, 3)}),
        "grid": _PLAUSIBLE, "zip": _PLAUSIBLE}))


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_SPECS)
def test_any_spec_is_accepted_or_refused_with_one_line(spec):
    try:
        parsed = parse_spec(spec)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    points = parsed.points()
    assert 1 <= len(points) <= MAX_POINTS
    assert len({p.hash for p in points}) == len(points)
    assert all(p.config.threads >= 1 for p in points)
    again = parse_spec(tomllib.loads(parsed.to_toml()))
    assert [p.config for p in again.points()] == [p.config for p in points]

"""Config validation, TOML round trip, canonical hash, field metadata and derived groups."""

import hashlib
from dataclasses import fields

import pytest

from meanfield.config import (
    RUN_HASH_EXCLUDED,
    THEORY_FIELDS,
    Config,
    ConfigError,
    fields_with_role,
    from_json,
    from_sources,
    help_text,
    make_config,
    options_for,
    range_text,
    run_hash,
)


def test_defaults_are_valid_and_round_trip_json():
    c = make_config()
    assert c == Config()
    assert from_json(c.to_json()) == c
    assert c.hash() == make_config().hash()
    assert c.replace(d=50).hash() != c.hash()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("d", 0, "d must be >= 2"),
        ("h", -1.0, "h must be > 0"),
        ("beta", 0.0, "beta must be > 0"),
        ("data", "cube", "data must be one of gaussian, sphere"),
        ("loss", "hingey", "loss must be one of"),
        ("times", "3,2", "strictly increasing"),
        ("M", 2.5, "M must be an integer"),
        ("alpha", float("inf"), "alpha must be finite"),
        ("online", "yes", "online must be true or false"),
        ("activation", "__import__('os')", "activation"),
    ],
)
def test_bad_fields_are_named(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        make_config(**{field: value})


def test_unknown_field_lists_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown config field .depth.*allowed fields: M, N"):
        make_config(depth=3)


def test_toml_file_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(Config(d=20, M=10).replace(h=2.0).to_toml())
    c = from_sources(path, h=None, alpha=3.0)
    assert (c.d, c.M, c.h, c.alpha) == (20, 10, 2.0, 3.0)
    (tmp_path / "bad.toml").write_text("d = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        from_sources(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        from_sources(tmp_path / "missing.toml")


# --- field metadata and the groups derived from it ------------------------------------------

ALL_FIELDS = (
    "M", "N", "d", "h", "alpha", "beta", "sa", "sw", "init", "activation", "loss", "data",
    "label_noise", "margin", "n_test", "online", "batch", "dt", "growth", "t_max",
    "integrator", "dtype", "seed", "threads", "device", "n_times", "times", "record_nodes",
    "checkpoint_every", "x_par",
)


def test_derived_groups_equal_the_former_hand_lists():
    assert options_for("simulate") == (
        "M", "N", "d", "h", "alpha", "beta", "sa", "sw", "init", "activation", "loss", "data",
        "label_noise", "margin", "n_test", "online", "batch", "dt", "growth", "t_max",
        "integrator", "dtype", "seed", "threads", "device", "n_times", "times", "record_nodes",
        "checkpoint_every",
    )
    assert options_for("theory") == (
        "M", "N", "d", "h", "alpha", "beta", "sa", "sw", "activation", "data", "dt", "growth",
        "t_max", "n_times", "times", "x_par",
    )
    assert THEORY_FIELDS == (
        "d", "h", "alpha", "beta", "sa", "sw", "activation", "loss", "data", "label_noise",
        "margin",
    )
    assert RUN_HASH_EXCLUDED == ("checkpoint_every",)
    with pytest.raises(ValueError, match="command must be one of simulate, theory"):
        options_for("compare")


def test_every_field_has_help_role_and_range():
    assert tuple(f.name for f in fields(Config)) == ALL_FIELDS
    roles = {r: fields_with_role(r) for r in ("physics", "numerics", "recording")}
    assert sorted(sum(roles.values(), ())) == sorted(ALL_FIELDS)  # each field has one role
    for f in fields(Config):
        meta = f.metadata
        assert isinstance(meta["help"], str) and len(meta["help"]) > 10, f.name
        assert meta["role"] in roles, f.name
        assert hasattr(meta["range"], "text") and hasattr(meta["range"], "problem"), f.name
        assert set(meta["commands"]) <= {"simulate", "theory"}, f.name
        assert isinstance(meta["theory"], bool) and isinstance(meta["hashed"], bool), f.name
        assert isinstance(meta["later"], bool), f.name
        assert range_text(f.name) or f.name == "online", f.name  # only online is type-only
    assert help_text("sa") == ("initial standard deviation of the second-layer weights a_i; "
                               ">= 0 (at least 1e-09, at most 1e+06)")
    assert range_text("label_noise") == "in [0, 0.5)"
    assert range_text("batch") == "in [0, N] (0 = full batch)"
    assert range_text("loss") == "one of hinge, squared, logistic"
    assert range_text("x_par") == "each >= 0 (at most 1e+06); at most 10000 values"
    assert "1/beta" in help_text("dt") and "1/beta" in help_text("t_max")


# Independent of the metadata under test: (other overrides, field, allowed value at the
# boundary, first value past it, the exact message). Every field but ``online`` (type only).
BOUNDARIES = [
    ({}, "M", 1, 0, "M must be >= 1, got 0"),
    ({}, "N", 1, 0, "N must be >= 1, got 0"),
    ({}, "d", 2, 1, "d must be >= 2 (x_par plus at least one other direction), got 1"),
    ({}, "h", 1e-9, 0.0, "h must be > 0, got 0.0"),
    ({}, "alpha", 1e-9, 0.0, "alpha must be > 0, got 0.0"),
    ({}, "beta", 1e-9, 0, "beta must be > 0, got 0.0"),
    ({}, "sa", 0.0, -1e-12, "sa must be >= 0, got -1e-12"),
    ({}, "sw", 0.0, -1e-12, "sw must be >= 0, got -1e-12"),
    ({"sa": 0.0}, "sw", 1e-9, 0.0, "sa and sw cannot both be 0 (the network would never move)"),
    ({}, "init", "symmetric", "Symmetric",
     "init must be one of iid, symmetric; got 'Symmetric'"),
    ({"init": "symmetric"}, "M", 2, 1,
     "init = symmetric needs an even M (node i + M/2 mirrors node i), got M=1"),
    ({}, "activation", "tanh", "nosuch", "activation: activation 'nosuch'"),  # prefix
    ({}, "loss", "logistic", "Hinge", "loss must be one of hinge, squared, logistic; got 'Hinge'"),
    ({}, "data", "sphere", "cube", "data must be one of gaussian, sphere; got 'cube'"),
    ({}, "label_noise", 0.0, -1e-12, "label_noise must be in [0, 0.5), got -1e-12"),
    ({}, "label_noise", 0.4999, 0.5, "label_noise must be in [0, 0.5), got 0.5"),
    ({}, "margin", 0.0, -1e-12, "margin must be >= 0, got -1e-12"),
    ({}, "n_test", 0, -1, "n_test must be >= 0, got -1"),
    ({}, "batch", 0, -1, "batch must be in [0, N=100000] (0 = full batch), got -1"),
    ({"N": 300}, "batch", 300, 301, "batch must be in [0, N=300] (0 = full batch), got 301"),
    ({}, "dt", 1e-9, 0.0, "dt must be > 0, got 0.0"),
    ({}, "growth", 0.0, -1e-12, "growth must be >= 0, got -1e-12"),
    ({}, "t_max", 1e-9, 0.0, "t_max must be > 0, got 0.0"),
    ({}, "integrator", "heun", "rk4", "integrator must be one of euler, heun; got 'rk4'"),
    ({}, "dtype", "float32", "float16", "dtype must be one of float32, float64; got 'float16'"),
    ({}, "device", "cpu", "gpu", "device must be one of cpu, cuda; got 'gpu'"),
    ({}, "seed", 0, -1, "seed must be >= 0, got -1"),
    ({}, "threads", 0, -1, "threads must be >= 0 (0 = all cores), got -1"),
    ({}, "n_times", 2, 1, "n_times must be >= 2, got 1"),
    ({}, "times", "0,1e-12", "0,0", "times must be non-negative and strictly increasing, "
     "got [0.0, 0.0]"),
    ({}, "times", "0", "-1e-12", "times must be non-negative and strictly increasing, "
     "got [-1e-12]"),
    ({}, "record_nodes", 0, -1, "record_nodes must be in [0, M=400] (0 = all)"),
    ({"M": 10}, "record_nodes", 10, 11, "record_nodes must be in [0, M=10] (0 = all)"),
    ({}, "checkpoint_every", 0, -1, "checkpoint_every must be >= 0, got -1"),
    ({}, "x_par", "0,1", "0,-1e-12", "x_par values must be >= 0, got [0.0, -1e-12]"),
]


@pytest.mark.parametrize(("others", "name", "ok", "bad", "message"), BOUNDARIES,
                         ids=[f"{b[1]}={b[3]}" for b in BOUNDARIES])
def test_every_range_check_fires_at_its_boundary(others, name, ok, bad, message):
    make_config(**others, **{name: ok})
    with pytest.raises(ConfigError) as err:
        make_config(**others, **{name: bad})
    if name == "activation":  # the rest of the message is the parser's
        assert str(err.value).startswith(message)
    else:
        assert str(err.value) == message


# The largest (and smallest) magnitudes the numerics support, written out independently:
# (others, field, largest allowed, first refused, the exact message).
CAPS = [
    ({}, "M", 10**12, 10**12 + 1, "M must be at most 1e+12 (the supported range), got 1e+12"),
    ({}, "N", 10**12, 10**13, "N must be at most 1e+12 (the supported range), got 1e+13"),
    ({}, "d", 10**12, 10**13, "d must be at most 1e+12 (the supported range), got 1e+13"),
    ({}, "h", 1e6, 1.5e6, "h must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 1.5e+06"),
    ({}, "h", 1e-9, 1e-320, "h must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 9.99989e-321"),
    ({}, "sa", 0.0, 1e-320, "sa must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 9.99989e-321"),
    ({}, "alpha", 1e6, 1e7, "alpha must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 1e+07"),
    ({}, "beta", 1e6, 1e300, "beta must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 1e+300"),
    ({}, "sa", 1e6, 2e6, "sa must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 2e+06"),
    ({}, "sw", 1e6, 2e6, "sw must be at least 1e-09, at most 1e+06 (the supported range), "
     "got 2e+06"),
    ({}, "margin", 10.0, 11.0, "margin must be at most 10 (the supported range), got 11"),
    ({}, "n_test", 10**12, 10**13,
     "n_test must be at most 1e+12 (the supported range), got 1e+13"),
    ({}, "dt", 1e15, 1e16, "dt must be at least 1e-09, at most 1e+15 (the supported range), "
     "got 1e+16"),
    ({}, "dt", 1e-9, 1e-10, "dt must be at least 1e-09, at most 1e+15 (the supported range), "
     "got 1e-10"),
    ({}, "growth", 10.0, 11.0, "growth must be at most 10 (the supported range), got 11"),
    ({}, "t_max", 1e15, 2e15, "t_max must be at least 1e-09, at most 1e+15 (the supported "
     "range), got 2e+15"),
    ({}, "seed", 2**63 - 1, 2**63, "seed must be at most 9.22337e+18 (the supported range), "
     "got 9.223e+18"),
    ({}, "seed", 0, 10**400, "seed must be at most 9.22337e+18 (the supported range), "
     "got 1.000e+400"),
    ({}, "threads", 4096, 4097, "threads must be at most 4096 (the supported range), got 4097"),
    ({}, "n_times", 10**6, 10**6 + 1,
     "n_times must be at most 1e+06 (the supported range), got 1e+06"),
    ({}, "checkpoint_every", 2**63 - 1, 2**64,
     "checkpoint_every must be at most 9.22337e+18 (the supported range), got 1.844e+19"),
    ({}, "x_par", "1e6", "0,2e6", "x_par values must be at most 1e+06 (the supported range), "
     "got 2e+06"),
    ({}, "times", "1e15", "1,2e15", "times must be <= 1e+15, got 2e+15"),
]


@pytest.mark.parametrize(("others", "name", "ok", "bad", "message"), CAPS,
                         ids=[f"{c[1]}={c[3]}" for c in CAPS])
def test_every_supported_range_is_enforced(others, name, ok, bad, message):
    make_config(**others, **{name: ok})
    with pytest.raises(ConfigError) as err:
        make_config(**others, **{name: bad})
    assert str(err.value) == message


def test_too_many_x_par_values_are_refused():
    with pytest.raises(ConfigError, match="x_par must hold at most 10000 values, got 10001"):
        make_config(x_par=",".join(["1"] * 10_001))


def test_too_many_record_times_are_refused_quickly():
    with pytest.raises(ConfigError, match="at most 1000000 values"):
        make_config(times=",".join(str(i) for i in range(10**6 + 1)))


def test_boundary_table_covers_every_constrained_field():
    assert {b[1] for b in BOUNDARIES} == set(ALL_FIELDS) - {"online"}


def test_first_violation_in_field_order_is_reported_activation_last():
    with pytest.raises(ConfigError, match=r"^M must be >= 1"):
        make_config(M=0, d=1)
    with pytest.raises(ConfigError, match=r"^sa must be >= 0"):
        make_config(sa=-1.0, sw=0.0)
    with pytest.raises(ConfigError, match=r"^x_par values"):
        make_config(activation="nosuch", x_par="-1")


# --- canonical JSON, hash and TOML: literals captured before the metadata refactoring --------

DEFAULT_JSON = (
    '{"M":400,"N":100000,"activation":"relu","alpha":1.0,"batch":0,"beta":1.0,'
    '"checkpoint_every":0,"d":100,"data":"gaussian","dt":1.0,"dtype":"float64","growth":0.0,'
    '"h":1.0,"integrator":"euler","label_noise":0.0,"loss":"hinge","margin":0.0,'
    '"n_test":10000,"n_times":100,"online":false,"record_nodes":0,"sa":1.0,"seed":0,"sw":1.0,'
    '"t_max":2000.0,"threads":0,"times":[],"x_par":[]}'
)
CONFIG_A = dict(M=10, N=300, d=20, h=2.0, activation="tanh", loss="squared", data="sphere",
                label_noise=0.1, margin=0.25, times="0,1,2.5,10", record_nodes=5,
                checkpoint_every=7, x_par="0.1,0.5", dtype="float32", batch=30,
                integrator="heun")
CONFIG_A_JSON = (
    '{"M":10,"N":300,"activation":"tanh","alpha":1.0,"batch":30,"beta":1.0,'
    '"checkpoint_every":7,"d":20,"data":"sphere","dt":1.0,"dtype":"float32","growth":0.0,'
    '"h":2.0,"integrator":"heun","label_noise":0.1,"loss":"squared","margin":0.25,'
    '"n_test":10000,"n_times":100,"online":false,"record_nodes":5,"sa":1.0,"seed":0,"sw":1.0,'
    '"t_max":2000.0,"threads":0,"times":[0.0,1.0,2.5,10.0],"x_par":[0.1,0.5]}'
)


@pytest.mark.parametrize(
    ("overrides", "config_hash", "run", "toml_sha"),
    [
        ({}, "a708338d013e", "a708338d013e", "db50d6b9458e669f"),
        (CONFIG_A, "b9952d03ee74", "050128f2a4d0", "f16152460dc15f72"),
        (dict(online=True, growth=0.01, t_max=500.0, seed=42, threads=3, n_times=17, sa=0.0,
              sw=0.5), "cce9819d4f02", "cce9819d4f02", "d6375018d2be7669"),
        (dict(checkpoint_every=100), "9e39781763eb", "a708338d013e", "67c321d97dcaa1a9"),
        (dict(activation="x**2 + sin(x)", alpha=3.0, beta=0.5, dt=0.1, n_test=0),
         "2fc3f464336f", "2fc3f464336f", "379551b72d6434c8"),
    ],
)
def test_hash_run_hash_and_toml_are_unchanged(overrides, config_hash, run, toml_sha):
    c = make_config(**overrides)
    assert c.hash() == config_hash
    assert run_hash(c) == run == c.replace(checkpoint_every=0).hash()
    assert hashlib.sha256(c.to_toml().encode()).hexdigest()[:16] == toml_sha
    assert from_json(c.to_json()) == c


def test_canonical_json_is_unchanged():
    assert Config().to_json() == make_config().to_json() == DEFAULT_JSON
    assert make_config(**CONFIG_A).to_json() == CONFIG_A_JSON


# --- fields added after the first release (init) keep every earlier identity ---------------

# Canonical JSON, Config.hash and run_hash of three configurations, computed once by the
# revision before the field ``init`` existed and pasted here as literals: an independent
# reference (the code under test did not produce them).
EARLIER = [
    ({}, DEFAULT_JSON, "a708338d013e", "a708338d013e"),
    (dict(M=7, N=50, d=3, alpha=100.0, seed=5, checkpoint_every=3, dtype="float32"),
     '{"M":7,"N":50,"activation":"relu","alpha":100.0,"batch":0,"beta":1.0,'
     '"checkpoint_every":3,"d":3,"data":"gaussian","dt":1.0,"dtype":"float32","growth":0.0,'
     '"h":1.0,"integrator":"euler","label_noise":0.0,"loss":"hinge","margin":0.0,'
     '"n_test":10000,"n_times":100,"online":false,"record_nodes":0,"sa":1.0,"seed":5,'
     '"sw":1.0,"t_max":2000.0,"threads":0,"times":[],"x_par":[]}',
     "2dfc5ecdff12", "0cc95a1142de"),
    (dict(loss="logistic", data="sphere", online=True, batch=16, n_times=5, times="0,0.5,4",
          record_nodes=2, M=2),
     '{"M":2,"N":100000,"activation":"relu","alpha":1.0,"batch":16,"beta":1.0,'
     '"checkpoint_every":0,"d":100,"data":"sphere","dt":1.0,"dtype":"float64","growth":0.0,'
     '"h":1.0,"integrator":"euler","label_noise":0.0,"loss":"logistic","margin":0.0,'
     '"n_test":10000,"n_times":5,"online":true,"record_nodes":2,"sa":1.0,"seed":0,"sw":1.0,'
     '"t_max":2000.0,"threads":0,"times":[0.0,0.5,4.0],"x_par":[]}',
     "995de0d30ff3", "995de0d30ff3"),
]


@pytest.mark.parametrize(("overrides", "json_text", "config_hash", "run"), EARLIER)
def test_a_later_field_at_its_default_keeps_the_earlier_json_and_hashes(overrides, json_text,
                                                                        config_hash, run):
    for c in (make_config(**overrides), make_config(**overrides, init="iid")):
        assert c.to_json() == json_text
        assert c.hash() == config_hash and run_hash(c) == run
        assert "init" not in c.to_toml()
    old = from_json(json_text)  # a file written before the field existed
    assert old.init == "iid" and old == make_config(**overrides)
    if overrides.get("M", 400) % 2 == 0:
        sym = make_config(**overrides, init="symmetric")
        assert '"init":"symmetric"' in sym.to_json() and 'init = "symmetric"' in sym.to_toml()
        assert sym.hash() != config_hash and run_hash(sym) != run
        assert from_json(sym.to_json()) == sym


def test_later_fields_are_declared_and_default_to_the_earlier_behaviour():
    from meanfield.config import LATER_FIELDS

    assert LATER_FIELDS == ("init", "device")
    assert Config().init == "iid"
    assert "init" in options_for("simulate") and "init" not in options_for("theory")
    assert "init" not in THEORY_FIELDS and "init" not in RUN_HASH_EXCLUDED
    assert "init" in fields_with_role("physics")
    assert range_text("init") == "one of iid, symmetric; M even for symmetric"


def test_symmetric_init_needs_an_even_M(tmp_path):
    assert make_config(M=4, init="symmetric").init == "symmetric"
    with pytest.raises(ConfigError, match=r"^init = symmetric needs an even M .*got M=5$"):
        make_config(M=5, init="symmetric")
    with pytest.raises(ConfigError, match=r"^init must be one of iid, symmetric; got 'pairs'$"):
        make_config(init="pairs")
    path = tmp_path / "run.toml"
    path.write_text('M = 8\ninit = "symmetric"\n')
    assert from_sources(path).init == "symmetric"
    with pytest.raises(ConfigError, match="got M=9"):
        from_sources(path, M=9)

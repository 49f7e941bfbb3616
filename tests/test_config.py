"""Config validation, TOML round trip, canonical hash."""

import pytest

from meanfield.config import Config, ConfigError, from_json, from_sources, make_config


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

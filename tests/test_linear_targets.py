"""The linear targets of ``meanfield reproduce`` (lee-width, lee-gp, hu-early): criteria on
synthetic results whose answer is known (a criterion that must fail does), the settings, the
command's refusals, and the quick targets end to end (hu-early by default, the others slow)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import ConfigError
from meanfield.linear_config import make_linear_config
from meanfield.linear_run import LinearResult
from meanfield.linear_targets import (
    TARGETS,
    Criterion,
    evaluate,
    format_criteria,
    hu_early_criteria,
    identity,
    lee_gp_criteria,
    lee_width_criteria,
    linear_configs,
    variance_ratio,
    verdict,
)
from meanfield.reproduce import FIGURES, figure_config


def by_name(criteria: list[Criterion]) -> dict[str, Criterion]:
    return {c.name: c for c in criteria}


# ----------------------------------------------------------------------------- lee-width

def width_result(slopes=(-0.9, -0.5, -0.9), widest=(0.005, 1.0), seeds=2) -> LinearResult:
    """Three widths, two records; the widest width's final disc_lin_test / change_test means
    are ``widest``."""
    config = make_linear_config(d=4, n=8, n_test=8, widths=(16, 32, 64), seeds=seeds, steps=5)
    disc = np.full((seeds, 3, 2), 0.5)
    change = np.ones((seeds, 3, 2))
    # members differ, their means are what the criterion uses
    disc[:, -1, -1] = widest[0] * np.linspace(0.5, 1.5, seeds)
    change[:, -1, -1] = widest[1] * np.linspace(1.5, 0.5, seeds)
    arrays = {"disc_lin_test": disc, "change_test": change,
              **{f"slope_{n}": np.array(s) for n, s in
                 zip(("disc_lin_test", "W_distance", "ntk_change"), slopes, strict=True)}}
    return LinearResult(config, arrays)


def test_lee_width_criteria_hold_and_fail_where_they_must():
    ok = lee_width_criteria(width_result())
    assert [c.name for c in ok] == ["slope_disc_lin_test", "slope_W_distance",
                                    "slope_ntk_change", "widest disc_lin_test/change_test"]
    assert all(c.holds for c in ok) and verdict(ok) == "agree"
    # the ratio of the means over members (0.005 / 1.0), not the mean of the ratios
    # (0.0025/1.5 and 0.0075/0.5 average to 0.00833)
    assert by_name(ok)["widest disc_lin_test/change_test"].value == pytest.approx(0.005)
    assert by_name(ok)["slope_W_distance"].value == -0.5
    # each bound, one at a time
    for slopes, failing in (((-0.4, -0.5, -0.9), "slope_disc_lin_test"),
                            ((-0.9, -0.3, -0.9), "slope_W_distance"),
                            ((-0.9, -0.85, -0.9), "slope_W_distance"),
                            ((-0.9, -0.5, -0.44), "slope_ntk_change"),
                            ((math.nan, -0.5, -0.9), "slope_disc_lin_test")):
        crit = lee_width_criteria(width_result(slopes=slopes))
        assert [c.name for c in crit if not c.holds] == [failing]
        assert verdict(crit) == "disagree"
    # the widest ratio: 0.015 passes the quick bound 0.02, not the full-size 0.01
    mid = width_result(widest=(0.015, 1.0))
    assert by_name(lee_width_criteria(mid, quick=True))[
        "widest disc_lin_test/change_test"].holds
    full = by_name(lee_width_criteria(mid))["widest disc_lin_test/change_test"]
    assert not full.holds and full.bound == "<= 0.01"
    # a network that did not move: no ratio, no agreement
    still = lee_width_criteria(width_result(widest=(0.0, 0.0)))
    assert verdict(still) == "disagree"


# -------------------------------------------------------------------------------- lee-gp

def gp_result(S=50, T=4, P=6, seed=0) -> tuple[LinearResult, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    config = make_linear_config(d=4, n=8, n_test=P, widths=(16,), seeds=S, steps=5)
    gp_mean = rng.standard_normal((T, P))
    gp_var = rng.uniform(0.5, 2.0, (T, P))
    arrays = {"gp_mean": gp_mean, "gp_var": gp_var, "ens_mean": gp_mean[None].copy(),
              "ens_var": gp_var[None].copy()}
    return LinearResult(config, arrays), gp_mean, gp_var


def test_lee_gp_criteria_exact_values_and_failures():
    S = 50
    r, *_ = gp_result(S)
    spread = 2 * math.sqrt(2 / (S - 1)) + 0.05
    crit = by_name(lee_gp_criteria(r))
    assert crit["ens_mean - gp_mean"].value == 0 and crit["ens_var/gp_var"].value == 0
    assert verdict(list(crit.values())) == "agree"
    assert f"{spread:.3g}" in crit["ens_var/gp_var"].bound

    # one point's mean off by 0.9 or 1.1 of its allowance 5 sqrt(gp_var/S) + 0.02
    for factor, holds in ((0.9, True), (1.1, False)):
        r, _, gp_var = gp_result(S)
        r.arrays["ens_mean"][0, 2, 3] += factor * (5 * math.sqrt(gp_var[2, 3] / S) + 0.02)
        c = by_name(lee_gp_criteria(r))["ens_mean - gp_mean"]
        assert c.value == pytest.approx(factor) and c.holds is holds

    # the variance: the mean over points at one record 1 + 0.9 or 1.1 spread
    for factor, holds in ((0.9, True), (1.1, False)):
        r, _, gp_var = gp_result(S)
        r.arrays["ens_var"][0, 1] = gp_var[1] * (1 - factor * spread)
        c = by_name(lee_gp_criteria(r))["ens_var/gp_var"]
        assert c.value == pytest.approx(factor * spread, rel=1e-4) and c.holds is holds

    # one member: no variance over members, no agreement
    r, *_ = gp_result(S=1)
    r.arrays["ens_var"][:] = np.nan
    assert [c.holds for c in lee_gp_criteria(r)] == [True, False]


def test_vanishing_gp_variance_is_handled():
    gp = np.array([[1.0, 2.0, 0.0, -1e-17]])
    # both vanish where the GP's does: agreement there (quotient 1), exactly
    assert variance_ratio(np.array([[1.0, 2.0, 0.0, 0.0]]), gp)[0] == pytest.approx(1.0)
    # the ensemble varies where the GP says it cannot: a huge quotient, not inf or NaN
    big = variance_ratio(np.array([[1.0, 2.0, 0.5, 0.0]]), gp)[0]
    assert math.isfinite(big) and big > 1e4
    # a GP variance zero everywhere does not divide by zero
    assert variance_ratio(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 1.0
    # the mean criterion: a vanishing GP variance leaves the 0.02 allowance
    r, *_ = gp_result(S=10)
    r.arrays["gp_var"][0, 0] = -1e-18
    r.arrays["ens_var"][0, 0, 0] = 0.0
    r.arrays["ens_mean"][0, 0, 0] += 0.019
    crit = by_name(lee_gp_criteria(r))
    assert crit["ens_mean - gp_mean"].value == pytest.approx(0.95)
    assert all(c.holds for c in crit.values())


# ------------------------------------------------------------------------------ hu-early

T_STEPS = np.array([0, 1, 5, 10, 20, 100])


def hu_result(d: int, early, final, affine) -> LinearResult:
    """Members' early ratios (at t = 10, the first record >= 10) and final ratios; a ratio of
    ``early`` at t = 1 and 5 too, growing linearly to ``final`` after."""
    early, final = np.asarray(early, float), np.asarray(final, float)
    S = len(early)
    config = make_linear_config(activation="relu", d=d, seeds=S, steps=100)
    change = np.ones((S, 1, len(T_STEPS)))
    change[:, :, 0] = 0.0
    ratio = np.stack([early, early, early, early, (early + final) / 2, final], axis=-1)
    ratio[:, 0] = 0.0
    arrays = {"t": T_STEPS, "change_test": change, "disc_hu_test": (ratio * change[:, 0])[:, None],
              "affine_error": np.asarray(affine, float)[:, None]}
    return LinearResult(config, arrays)


def hu_case(changes=None):
    runs = {25: ([0.20, 0.22], [0.5, 0.6], [0.2, 0.2]),
            50: ([0.15, 0.13], [0.4, 0.5], [0.1, 0.1])}
    runs.update(changes or {})
    return {d: hu_result(d, *v) for d, v in runs.items()}


def test_hu_early_criteria_exact_values():
    crit = by_name(hu_early_criteria(hu_case()))
    assert list(crit) == [
        "early ratio decreasing in d",
        "d=25 early ratio", "d=25 early ratio/(2 affine_error + 0.05)",
        "d=25 final ratio/early ratio",
        "d=50 early ratio", "d=50 early ratio/(2 affine_error + 0.05)",
        "d=50 final ratio/early ratio"]
    assert crit["early ratio decreasing in d"].value == pytest.approx(0.14 / 0.21)
    assert crit["d=25 early ratio"].value == pytest.approx(0.22)
    assert crit["d=50 early ratio/(2 affine_error + 0.05)"].value == pytest.approx(0.15 / 0.25)
    # per member: min(0.5/0.2, 0.6/0.22)
    assert crit["d=25 final ratio/early ratio"].value == pytest.approx(0.5 / 0.2)
    assert all(c.holds for c in crit.values())


@pytest.mark.parametrize("changes, failing", [
    # the mean early ratio grows with d
    ({50: ([0.25, 0.2], [0.5, 0.6], [0.2, 0.2])}, ["early ratio decreasing in d"]),
    # equal means are not decreasing
    ({50: ([0.20, 0.22], [0.5, 0.6], [0.2, 0.2])}, ["early ratio decreasing in d"]),
    # one member's early ratio above 0.3 (the mean 0.2 still falls with d)
    ({25: ([0.31, 0.15], [0.8, 0.6], [0.2, 0.2])}, ["d=25 early ratio"]),
    # above 2 affine_error + 0.05 = 0.15 for one member
    ({25: ([0.20, 0.22], [0.5, 0.6], [0.2, 0.05])},
     ["d=25 early ratio/(2 affine_error + 0.05)"]),
    # one member does not escape: final ratio 1.4 x its early one (the mean still would)
    ({50: ([0.15, 0.13], [0.21, 0.5], [0.1, 0.1])}, ["d=50 final ratio/early ratio"]),
])
def test_hu_early_criteria_fail_where_they_must(changes, failing):
    crit = hu_early_criteria(hu_case(changes))
    assert [c.name for c in crit if not c.holds] == failing
    assert verdict(crit) == "disagree"


def test_hu_early_without_an_early_record_disagrees():
    runs = hu_case()
    short = runs[50]
    short.arrays["t"] = np.array([0, 1, 2, 3, 4, 5])  # stops before t = 10
    crit = by_name(hu_early_criteria(runs))
    assert math.isnan(crit["d=50 early ratio"].value) and not crit["d=50 early ratio"].holds
    assert verdict(list(crit.values())) == "disagree"


# ---------------------------------------------------------------------- verdict, settings

def test_verdict_and_json_of_a_criterion():
    assert verdict([]) == "disagree"
    assert verdict([Criterion("a", 1.0, "<= 2", True)]) == "agree"
    assert Criterion("a", math.nan, "<= 2", False).to_dict() == {
        "name": "a", "value": None, "bound": "<= 2", "holds": False}
    table = format_criteria([Criterion("a", 1.5, "<= 2", True),
                             Criterion("longer name", 3.0, "<= 2", False)])
    assert table.splitlines()[0].startswith("criterion") and "NO" in table.splitlines()[2]


def test_settings_are_the_issues():
    lw = linear_configs("lee-width")["lee_width.h5"]
    assert (lw.activation, lw.d, lw.n, lw.n_test, lw.target, lw.lr, lw.steps, lw.seeds) == (
        "erf", 32, 128, 128, "teacher", 0.5, 800, 4)
    assert lw.widths == (256, 512, 1024, 2048, 4096, 8192, 16384)
    q = linear_configs("lee-width", quick=True)["lee_width.h5"]
    assert (q.widths, q.steps, q.seeds) == ((256, 1024, 4096), 300, 2)
    gp = linear_configs("lee-gp")["lee_gp.h5"]
    assert (gp.activation, gp.d, gp.n, gp.n_test, gp.widths, gp.seeds, gp.lr, gp.steps) == (
        "erf", 8, 32, 16, (2048,), 128, 0.5, 200)
    q = linear_configs("lee-gp", quick=True)["lee_gp.h5"]
    assert (q.widths, q.seeds, q.steps) == ((1024,), 32, 200)
    hu = linear_configs("hu-early")
    assert list(hu) == ["hu_early_d25.h5", "hu_early_d50.h5", "hu_early_d100.h5"]
    for c in hu.values():
        n = round(c.d**1.25)
        assert (c.activation, c.train, c.n, c.widths, c.seeds, c.lr, c.steps) == (
            "relu", "both", n, (4 * n,), 4, 1.0, 10 * n)
    assert list(linear_configs("hu-early", quick=True)) == ["hu_early_d25.h5",
                                                            "hu_early_d50.h5"]
    # every run of every target fits well within the memory of a small machine
    from meanfield.memory import linear_estimate

    for name in TARGETS:
        for quick in (False, True):
            for c in linear_configs(name, quick).values():
                assert linear_estimate(c).total < 2**30
    # a figure's identity is its run's hash, or one hash of all the runs
    assert identity(linear_configs("lee-gp")) == gp.hash()
    assert identity(hu) != identity(linear_configs("hu-early", quick=True))
    with pytest.raises(ConfigError, match="lee-width, lee-gp, hu-early"):
        linear_configs("lee-depth")
    with pytest.raises(ConfigError, match="lee-width, lee-gp, hu-early"):
        evaluate("lee-depth", {})
    assert FIGURES[:4] == ("pb-fig1", "lee-width", "lee-gp", "hu-early")
    with pytest.raises(ConfigError, match="run of meanfield linear"):
        figure_config("lee-gp")


# ----------------------------------------------------------------------------- the command

@pytest.mark.parametrize("figure", ["lee", "Lee-GP", "hu_early", "pb-fig2", ""])
def test_unknown_target_is_refused_listing_every_target(figure, tmp_path):
    res = CliRunner().invoke(main, ["reproduce", figure, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "pb-fig1, lee-width, lee-gp, hu-early" in lines[0]
    assert not (tmp_path / "x").exists()


def test_foreign_files_are_refused_before_any_work(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "hu_early_d50.h5").write_text("not a run")
    res = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out)])
    assert res.exit_code == 2 and "not a complete meanfield linear file" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["hu_early_d50.h5"]
    (out / "hu_early_d50.h5").unlink()
    (out / "hu_early.png").write_text("another figure")
    res = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out)])
    assert res.exit_code == 2 and "holds another result" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["hu_early.png"]
    # a run that does not fit the memory allowed is refused before it starts
    (out / "hu_early.png").unlink()
    res = CliRunner().invoke(main, ["reproduce", "lee-gp", "--out", str(out),
                                    "--max-memory", "1MiB"])
    assert res.exit_code == 2 and "needs about" in res.output
    assert list(out.iterdir()) == []


def test_hu_early_quick_end_to_end(tmp_path, monkeypatch):
    """The quick hu-early target through the command: the files, the table, the verdict
    "agree"; a rerun reuses the runs and reports the same numbers; another configuration in
    the folder is refused."""
    import h5py

    out = tmp_path / "hu"
    res = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out),
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["figure"] == "hu-early" and doc["verdict"] == "agree", doc
    assert set(doc) == {"figure", "verdict", "criteria", "files"}
    assert doc["criteria"][0]["name"] == "early ratio decreasing in d"
    assert all(set(c) == {"name", "value", "bound", "holds"} and c["holds"]
               for c in doc["criteria"])
    names = ["hu_early_d25.h5", "hu_early_d50.h5", "hu_early.png"]
    assert doc["files"] == [str(out / n) for n in names]
    for name in names[:2]:
        with h5py.File(out / name) as f:
            assert f.attrs["meanfield_kind"] == "linear"
    assert (out / "hu_early.png").stat().st_size > 10_000
    stamps = {n: (out / n).stat().st_mtime_ns for n in names[:2]}

    again = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert ("reused (same configuration, left untouched): hu_early_d25.h5, hu_early_d50.h5"
            in again.stderr)
    assert again.stdout.rstrip().endswith("verdict: agree")
    for c in doc["criteria"]:  # the numbers from the files are those of the runs
        line = next(ln for ln in again.stdout.splitlines() if ln.startswith(c["name"] + " "))
        assert f"{c['value']:.4g}" in line
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}

    import meanfield.linear_targets as targets

    hu_config = targets._hu_config
    monkeypatch.setattr(targets, "_hu_config",
                        lambda d: dataclasses.replace(hu_config(d), seed=1))
    other = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out)])
    assert other.exit_code == 2 and "hu_early_d25.h5 already holds a linear" in other.output
    monkeypatch.setattr(targets, "_hu_config", hu_config)
    monkeypatch.setattr(targets, "HU_EARLY_DS_QUICK", (25, 40))
    other = CliRunner().invoke(main, ["reproduce", "hu-early", "--quick", "--out", str(out)])
    assert other.exit_code == 2 and "holds another result" in other.output
    assert not (out / "hu_early_d40.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name, files", [("lee-width", ["lee_width.h5", "lee_width.png"]),
                                         ("lee-gp", ["lee_gp.h5", "lee_gp.png"])])
def test_quick_lee_targets_agree(name, files, tmp_path):
    res = CliRunner().invoke(main, ["reproduce", name, "--quick", "--out", str(tmp_path),
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "agree", doc
    assert doc["files"] == [str(tmp_path / f) for f in files]

"""meanfield.compare.compare: metrics equal to known distortions, verdicts, milestones, warnings,
the choice of reference theory; on the fixture files of conftest and on a small real run."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from conftest import E2E

from meanfield import compare as cmp
from meanfield.compare.curves import curves_of, resample
from meanfield.compare.report import report_dict
from meanfield.config import make_config
from meanfield.files.theory import read_theory


def test_curve_metrics_equal_the_known_distortion(write_sim_fixture, files):
    config, tmp = files
    eps = 0.01  # S ~ exp(2 gamma): a 1% gamma error at gamma ~ 4 is an 8% S error
    sim = write_sim_fixture(tmp / "sim.h5", config, scale=1 + eps)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    m = result.metrics
    # gamma is scaled by exactly 1 + eps; the theory file is on a finer grid, interpolated in
    # asinh(t): interpolation error of a smooth curve at 400 points per 5 decades is < 1e-4
    assert m["gamma"].value == pytest.approx(eps, abs=2e-4)
    # independent route for the node metric: the closed form written out with numpy
    w = result.window
    g_th = resample(curves_of(read_theory(tmp / "theory.h5"), "x"), sim["t"]).gamma
    a_th = np.outer(np.cosh(g_th), sim["a0"]) + np.outer(np.sinh(g_th), sim["w0"])
    expected = math.sqrt(np.sum((sim["a"][w] - a_th[w]) ** 2) / np.sum(a_th[w] ** 2))
    assert m["a"].value == pytest.approx(expected, rel=1e-6)
    assert np.allclose(result.a_theory[w], a_th[w], rtol=1e-9)
    # the loss is scaled by exactly 1 + eps (up to the interpolation error)
    assert m["loss"].value == pytest.approx(eps, abs=1e-3)
    assert all(m[q].verdict == "agree" for q in ("gamma", "S", "train_error", "loss", "a"))


def test_verdict_fails_for_a_large_distortion(write_sim_fixture, files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config, scale=1.5)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    assert result.metrics["gamma"].verdict == "disagree"
    assert result.metrics["gamma"].value == pytest.approx(0.5, abs=1e-3)
    assert result.verdict == "disagree"


def test_milestones_are_first_crossings(write_sim_fixture, files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    err = result.flow.train_error
    for row in result.milestones:
        i = int(np.argmax(err < row["level"]))
        assert row["t"] == result.sim.t[i]
        assert err[i] < row["level"] and (i == 0 or err[i - 1] >= row["level"])
    assert [r["level"] for r in result.milestones] == [
        lv for lv in cmp.MILESTONE_LEVELS if (err < lv).any()
    ]


def test_theory_for_other_parameters_warns_and_names_them(write_sim_fixture, write_theory_fixture,
                                                          files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config)
    other = config.replace(d=4 * config.d, h=2.0)
    write_theory_fixture(tmp / "other.h5", other, np.geomspace(1e-3, 2000, 300))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cmp.compare(tmp / "sim.h5", tmp / "other.h5", on_schedule=False)
    text = " ".join(str(w.message) for w in caught if w.category is cmp.CompareWarning)
    assert "d (simulation 20, theory 80)" in text and "h (simulation 1.0, theory 2.0)" in text
    assert set(result.differing) == {"d", "h"}
    assert result.verdict == "disagree"


def test_finite_size_indicators_use_the_simulations_sizes(real_run):
    """A theory file made for other N and M (not theory parameters: no warning) gives the
    window, band and verdict of the theory made for the simulation itself: validity ~ 1/sqrt(N)
    and the spread of f are evaluated for the simulation's N and M."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", cmp.CompareWarning)
        right = cmp.compare(real_run / "sim.h5", real_run / "right.h5")
        other = cmp.compare(real_run / "sim.h5", real_run / "other_N.h5")
    assert np.array_equal(right.window, other.window)
    assert np.allclose(right.band[1], other.band[1], equal_nan=True)
    assert other.verdict == right.verdict


def test_no_schedule_theory_for_a_heun_simulation(write_sim_fixture, files):
    """The schedule theory is an explicit Euler push: a Heun run is judged against the flow."""
    config, tmp = files
    heun = config.replace(integrator="heun")
    write_sim_fixture(tmp / "sim.h5", heun)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5")
    assert result.schedule is None and result.reference is result.flow
    assert any("heun" in note for note in result.notes)
    assert result.metrics["gamma"].value == result.metrics["gamma"].value_flow


def test_mini_batch_and_online_runs_are_flagged(write_sim_fixture, files):
    """The theory is the full-batch limit: a mini-batch or online run gets a note saying so;
    a full-batch run does not."""
    config, tmp = files
    write_sim_fixture(tmp / "full.h5", config)
    assert not any("batch" in n for n in cmp.compare(tmp / "full.h5", tmp / "theory.h5").notes)
    for changes, word in (({"batch": 100}, "mini-batch"), ({"online": True}, "online")):
        write_sim_fixture(tmp / "sim.h5", config.replace(**changes))
        notes = cmp.compare(tmp / "sim.h5", tmp / "theory.h5").notes
        assert any(word in n and "full-batch" in n for n in notes), notes


def test_relu_written_as_an_expression_gets_the_same_comparison(tmp_path):
    """``max(x, 0)`` is ReLU: the same schedule theory, edge spread and metrics as ``relu``
    (the same simulation, labelled both ways), and a real ``max(x, 0)`` run is judged against
    the schedule theory too."""
    from meanfield.simulate import simulate

    config = make_config(**E2E)
    relu = simulate(config)
    as_expr = dataclasses.replace(relu, config=config.replace(activation="max(x, 0)"))
    a, b = cmp.compare(relu), cmp.compare(as_expr)
    assert a.schedule is not None and b.schedule is not None
    assert a.reference.edge_spread is not None and b.reference.edge_spread is not None
    assert report_dict(a)["metrics"] == report_dict(b)["metrics"]
    assert a.notes == b.notes == []
    run = simulate(config.replace(activation="max(x, 0)", t_max=50.0))
    c = cmp.compare(run)
    assert c.schedule is not None and not any("ReLU only" in n for n in c.notes)

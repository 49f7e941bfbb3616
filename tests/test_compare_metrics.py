"""meanfield.compare.metrics: the window and the band fraction, against values computed
independently in the tests (on the fixture files of conftest)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from meanfield import compare as cmp
from meanfield.compare.curves import Curves
from meanfield.compare.metrics import MIN_UNSATISFIED, fraction_outside_band
from meanfield.files.simulation import read_simulation


def test_window_stops_when_few_examples_are_unsatisfied(write_sim_fixture, files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    t = result.sim.t
    predicted = config.N * result.flow.train_error
    # independent: the window is exactly t > 0 before the first time N e < MIN_UNSATISFIED
    few = np.flatnonzero((t > 0) & (predicted < MIN_UNSATISFIED))
    expected = (t > 0) & (t < t[few[0]]) if few.size else t > 0
    assert np.array_equal(result.window, expected)
    assert few.size and any("fewer than" in s for s in result.limits)


def test_band_fraction_counts_examples_outside(write_sim_fixture, files):
    config, tmp = files
    sim = write_sim_fixture(tmp / "sim.h5", config)
    t = sim["t"]
    # a constant f spread: band edges (h -+ 3 sigma)/S; move some examples out of it
    sigma = 0.05
    curves = Curves("x", t, sim["gamma"], sim["S"], config.h / np.where(sim["S"] > 0,
                        sim["S"], np.nan), sim["train_error"], sim["loss"],
                        f_spread=np.full(t.size, sigma))
    s = read_simulation(tmp / "sim.h5")
    window = t > 0
    frac, n = fraction_outside_band(s, curves, config.h, window)
    sat = np.isfinite(s.t_sat)
    assert n == int(np.sum(sat & (s.t_sat > 0)))
    # independent check: an example first satisfied at record time t_i (the fixture resolves
    # t_sat at record times) must lie in [(h - 3 sigma)/S(t_i), (h + 3 sigma)/S(t_{i-1})]
    i = np.searchsorted(t, s.t_sat[sat & (s.t_sat > 0)])
    x = np.abs(s.x_par[sat & (s.t_sat > 0)])
    lo = (config.h - 3 * sigma) / sim["S"][i]
    hi = (config.h + 3 * sigma) / sim["S"][i - 1]
    assert frac == pytest.approx(np.mean((x < lo) | (x > hi)), abs=1e-12)
    # the fixture's examples are satisfied exactly at the theory's edge: none is outside
    assert frac == 0.0
    # a theory whose S is 30% too large puts the edge below most of them
    wrong = dataclasses.replace(curves, S=1.3 * curves.S)
    assert fraction_outside_band(s, wrong, config.h, window)[0] > 0.5

"""The built-in studies of ``meanfield sweep --study``: the specs (counts, order, exact values,
TOML round trip, record grids), the fits and verdict rules against independent computations,
the alpha theory against the theory module and a Monte Carlo, the crossing interpolation, and
each analysis end to end on tiny real point files (with missing and foreign files)."""

from __future__ import annotations

import json
import math
import tomllib

import numpy as np
import pytest
from scipy import stats

from meanfield import studies as st
from meanfield.config import ConfigError, make_config
from meanfield.files.simulation import read_simulation, write_simulation
from meanfield.files.study import (
    StudyArray,
    StudyCriterion,
    StudyResult,
    overall_verdict,
    read_study,
    write_study,
)
from meanfield.schedule import schedule
from meanfield.simulate import simulate
from meanfield.sweep_spec import parse_spec
from meanfield.theory import compute, compute_on_schedule

MODEL = {"activation": "relu", "loss": "hinge", "data": "gaussian", "h": 1.0, "sa": 1.0,
         "sw": 1.0, "integrator": "euler", "dtype": "float64", "threads": 1}

# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(("name", "quick", "count"), [
    ("finite-m", False, 56), ("finite-m", True, 24), ("finite-n", False, 24),
    ("finite-n", True, 8), ("alpha", False, 44), ("alpha", True, 10)])
def test_spec_counts_names_and_model(name, quick, count):
    spec = st.study_spec(name, quick)
    assert len(spec) == count
    assert spec.name == (f"{name}-quick" if quick else name)
    for p in spec.points():
        c = p.config
        for key, value in MODEL.items():
            assert getattr(c, key) == value, key
    assert st.STUDIES == ("finite-m", "finite-n", "alpha")


def _column(spec, field):
    return [getattr(p.config, field) for p in spec.points()]


def test_finite_m_values_and_order():
    full = st.study_spec("finite-m", False)
    Ms = [50, 100, 200, 400, 800, 1600, 3200]
    assert _column(full, "M") == [m for m in Ms for _ in range(8)]
    assert _column(full, "seed") == list(range(8)) * 7
    for p in full.points():
        c = p.config
        assert (c.online, c.N, c.d, c.dt, c.growth, c.t_max, c.n_test) == (
            True, 20000, 100, 0.5, 0.02, 1000.0, 10000)
        assert (c.alpha, c.beta, c.batch) == (1.0, 1.0, 0)
    quick = st.study_spec("finite-m", True)
    assert _column(quick, "M") == [m for m in Ms[:4] for _ in range(6)]
    assert _column(quick, "seed") == list(range(6)) * 4
    for p in quick.points():
        c = p.config
        assert (c.online, c.N, c.d, c.dt, c.growth, c.t_max, c.n_test) == (
            True, 5000, 50, 0.5, 0.02, 300.0, 10000)


def test_finite_n_values_and_order():
    full = st.study_spec("finite-n", False)
    Ns = [2500, 5000, 10000, 20000, 40000, 80000]
    assert _column(full, "N") == [n for n in Ns for _ in range(4)]
    assert _column(full, "seed") == list(range(4)) * 6
    for p in full.points():
        c = p.config
        assert (c.online, c.batch, c.M, c.d, c.dt, c.growth, c.t_max, c.n_test) == (
            False, 0, 400, 100, 0.5, 0.02, 2000.0, 10000)
    quick = st.study_spec("finite-n", True)
    assert _column(quick, "N") == [n for n in (1000, 2000, 4000, 8000) for _ in range(2)]
    for p in quick.points():
        c = p.config
        assert (c.online, c.M, c.d, c.dt, c.growth, c.t_max, c.n_test) == (
            False, 200, 50, 0.5, 0.02, 1000.0, 10000)


def test_alpha_values_and_order():
    full = st.study_spec("alpha", False)
    alphas = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    assert _column(full, "alpha") == [a for a in alphas for _ in range(4)]
    assert _column(full, "seed") == list(range(4)) * 11
    for p in full.points():
        c = p.config
        assert c.beta * c.alpha**2 == pytest.approx(1.0, rel=1e-12)
        assert (c.online, c.d, c.M, c.N, c.n_test, c.dt, c.growth, c.t_max) == (
            False, 20, 3200, 20000, 10000, 0.01, 0.02, 400.0)
    assert full.points()[0].config.beta == 400.0  # 1/0.05^2 written exactly
    quick = st.study_spec("alpha", True)
    assert _column(quick, "alpha") == [a for a in (0.1, 0.5, 2, 10, 50) for _ in range(2)]
    for p in quick.points():
        c = p.config
        assert c.beta * c.alpha**2 == pytest.approx(1.0, rel=1e-12)
        assert (c.d, c.M, c.N, c.n_test, c.dt, c.growth, c.t_max) == (
            20, 800, 5000, 10000, 0.01, 0.02, 400.0)


@pytest.mark.parametrize("name", ["finite-m", "finite-n", "alpha"])
@pytest.mark.parametrize("quick", [False, True])
def test_to_toml_round_trip(name, quick):
    spec = st.study_spec(name, quick)
    again = parse_spec(tomllib.loads(spec.to_toml()), source="again")
    assert [p.hash for p in again.points()] == [p.hash for p in spec.points()]
    assert again.name == spec.name and again.swept == spec.swept
    assert parse_spec(st.study_mapping(name, quick)).to_toml() == spec.to_toml()


def test_unknown_study_is_refused():
    with pytest.raises(ConfigError, match="finite-m, finite-n, alpha"):
        st.study_mapping("width", False)


def test_record_grids_give_the_analyses_enough_records():
    """Each analysis has records where it measures (theory on the points' own schedules)."""
    for quick in (False, True):
        for p in st.study_spec("finite-m", quick).points()[::8]:
            steps, rec = schedule(p.config)
            th = compute_on_schedule(p.config, steps, record=rec)
            assert np.sum((th.train_error >= 0.2) & (th.train_error <= 0.9)) >= 20
        for p in st.study_spec("finite-n", quick).points()[::2 if quick else 4]:
            steps, rec = schedule(p.config)
            th = compute_on_schedule(p.config, steps, record=rec)
            sel = (th.train_error >= 0.05) & (th.t > 0)
            assert np.sum(sel & (th.validity <= 1.5)) >= 30
            assert np.sum(sel & (th.validity > 1.5)) >= 5  # the crossing of -10% is seen
        for p in st.study_spec("alpha", quick).points()[::2]:
            steps, rec = schedule(p.config)
            th = compute(p.config, times=steps[rec])
            i = int(np.argmax(th.train_error <= 0.5))
            assert 20 <= i < len(rec) - 5
            assert np.log(steps[rec][i] / steps[rec][i - 1]) < 0.06


# ----------------------------------------------------------------------------- fits, verdicts


def test_fit_line_against_scipy_linregress():
    rng = np.random.default_rng(3)
    x = np.log([50, 100, 200, 400, 800, 1600, 3200.0])
    y = 0.3 - 0.5 * x + 0.1 * rng.standard_normal(x.size)
    fit = st.fit_line(x, y)
    ref = stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.se == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.n == 7
    # NaN pairs are left out
    fit_nan = st.fit_line(np.append(x, 1.0), np.append(y, np.nan))
    assert fit_nan.slope == pytest.approx(ref.slope, rel=1e-12) and fit_nan.n == 7


def test_fit_line_exact_power_law_and_degenerate_cases():
    M = np.array([50, 100, 200, 400.0])
    fit = st.fit_line(np.log(M), np.log(3.0 * M**-0.5))
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert math.exp(fit.intercept) == pytest.approx(3.0, rel=1e-12)
    assert fit.se < 1e-12
    two = st.fit_line([1.0, 2.0], [0.0, 1.0])
    assert two.slope == pytest.approx(1.0) and math.isnan(two.se)
    assert math.isnan(st.fit_line([1.0], [2.0]).slope)
    assert math.isnan(st.fit_line([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).slope)


def test_slope_verdict_boundaries():
    se = 0.04
    assert st.slope_verdict(-0.5 + 2.5 * se, se, -0.5, 0.1) == "agree"
    assert st.slope_verdict(-0.5 - 2.5 * se, se, -0.5, 0.1) == "agree"
    assert st.slope_verdict(-0.5 + 2.5 * se * 1.001, se, -0.5, 0.1) == "disagree"
    assert st.slope_verdict(-0.5, 0.1, -0.5, 0.1) == "agree"          # SE = SE_max
    assert st.slope_verdict(-0.5, 0.1000001, -0.5, 0.1) == "inconclusive"
    assert st.slope_verdict(-0.5, 0.2, -0.5, 0.25) == "agree"         # quick
    assert st.slope_verdict(-2.0, 0.2, -0.5, 0.25) == "disagree"
    assert st.slope_verdict(-0.5, float("nan"), -0.5, 0.1) == "inconclusive"
    assert st.slope_verdict(float("nan"), 0.01, -0.5, 0.1) == "inconclusive"
    # a fixed tolerance instead of 2.5 SE (the alpha slope)
    assert st.slope_verdict(-0.45, 0.001, -0.5, 0.1, tolerance=0.05) == "agree"
    assert st.slope_verdict(-0.4499, 0.001, -0.5, 0.1, tolerance=0.05) == "disagree"
    assert st.slope_verdict(-0.5, 0.3, -0.5, 0.25, tolerance=0.05) == "inconclusive"
    assert st.SE_MAX == {False: 0.1, True: 0.25}


def test_overall_verdict_rules():
    def c(v):
        return StudyCriterion("q", "e", 1.0, v)

    assert overall_verdict([c("agree"), c("agree")], 4, 4) == "agree"
    assert overall_verdict([c("agree"), c("inconclusive")], 4, 4) == "inconclusive"
    assert overall_verdict([c("inconclusive"), c("disagree")], 4, 4) == "disagree"
    assert overall_verdict([c("agree")], 3, 4) == "inconclusive"   # a point is missing
    assert overall_verdict([c("disagree")], 3, 4) == "disagree"
    assert overall_verdict([], 4, 4) == "inconclusive"
    with pytest.raises(ValueError, match="verdict"):
        c("maybe")


def test_fit_parabola_recovers_k_and_ignores_large_R():
    rng = np.random.default_rng(5)
    R = rng.uniform(0, 3, 400)
    de = -0.07 * R**2 + 0.01 * rng.standard_normal(R.size)
    de[R > 1.5] = 5.0  # outside the fit: must not matter
    k, se, n = st.fit_parabola(R, de, 1.5)
    inside = R <= 1.5
    ref = np.linalg.lstsq(-(R[inside] ** 2)[:, None], de[inside], rcond=None)
    assert n == int(inside.sum())
    assert k == pytest.approx(float(ref[0][0]), rel=1e-10)
    resid = de[inside] + k * R[inside] ** 2
    assert se == pytest.approx(math.sqrt(resid @ resid / (n - 1) / np.sum(R[inside] ** 4)))
    assert abs(k - 0.07) < 4 * se
    k_exact, se_exact, _ = st.fit_parabola(R, -0.09 * R**2, 1.5)
    assert k_exact == pytest.approx(0.09, rel=1e-12) and se_exact < 1e-12


def test_binned_mean_and_crossing():
    R = np.array([0.05, 0.07, 0.08, 0.15, 0.16, 0.31, 0.32, 0.33, 0.34])
    de = np.array([0.0, -0.02, -0.04, 1.0, 2.0, -0.2, -0.2, -0.2, -0.2])
    lo, hi, mean, count = st.binned_mean(R, de, width=0.1, min_count=3)
    assert lo == pytest.approx([0.0, 0.1, 0.2, 0.3]) and hi == pytest.approx(lo + 0.1)
    assert count.tolist() == [3, 2, 0, 4]
    assert mean[0] == pytest.approx(-0.02) and np.isnan(mean[1]) and np.isnan(mean[2])
    assert mean[3] == pytest.approx(-0.2)
    # the first bin at or below -0.1 is bin 3; interpolated from bin 0 (NaN bins skipped)
    centres = (lo + hi) / 2
    expected = 0.05 + (-0.02 + 0.1) / (-0.02 + 0.2) * (0.35 - 0.05)
    assert st.level_crossing(centres, mean, -0.1) == pytest.approx(expected)
    assert math.isnan(st.level_crossing(centres, np.array([0.0, -0.05, np.nan, -0.09]), -0.1))
    assert st.level_crossing(centres, np.array([-0.3, -0.5, 0, 0]), -0.1) == pytest.approx(0.05)
    # a dense exact parabola de = -0.07 R^2 crosses -10% at sqrt(0.1/0.07)
    Rd = np.linspace(0, 3, 30001)
    lo, hi, mean, _ = st.binned_mean(Rd, -0.07 * Rd**2)
    assert st.level_crossing((lo + hi) / 2, mean, -0.1) == pytest.approx(
        math.sqrt(0.1 / 0.07), abs=0.005)


def test_first_crossing_is_linear_in_log_t():
    t = np.concatenate([[0.0], np.geomspace(0.1, 100, 13)])
    err = np.minimum(1.0, 0.8 - 0.2 * np.log(np.maximum(t, 1e-300)))
    err[0] = 1.0
    y = 3.0 * np.log(np.maximum(t, 1e-300))
    y[0] = 0.0
    out = st.at_first_crossing(t, err, 0.5, {"y": y})
    # err = 0.5 at ln t = 1.5 exactly; err and y are linear in ln t there
    assert out["t"] == pytest.approx(math.exp(1.5), rel=1e-12)
    assert out["y"] == pytest.approx(4.5, rel=1e-12)
    never = st.at_first_crossing(t, np.ones_like(t), 0.5, {"y": y})
    assert math.isnan(never["t"]) and math.isnan(never["y"])
    # a NaN record is skipped: the interpolation spans its neighbours
    holed = err.copy()
    i = int(np.argmax(err <= 0.5))
    holed[i - 1] = np.nan
    out = st.at_first_crossing(t, holed, 0.5, {"y": y})
    frac = (err[i - 2] - 0.5) / (err[i - 2] - err[i])
    assert math.log(out["t"]) == pytest.approx(
        math.log(t[i - 2]) + frac * math.log(t[i] / t[i - 2]), rel=1e-12)
    # from the t = 0 record: linear in t
    out = st.at_first_crossing(np.array([0.0, 2.0]), np.array([1.0, 0.0]), 0.5)
    assert out["t"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- alpha theory


def test_kappa_x_star_and_alpha_M_numbers():
    assert st.x_star() == pytest.approx(0.67449, abs=1e-5)
    assert st.kappa(20) == pytest.approx(13.261, abs=5e-4)
    assert st.alpha_M(3200, 20) == pytest.approx(20.5, abs=0.05)
    assert float(st.sigma_f0(st.alpha_M(3200, 20), 3200, 20)) == pytest.approx(0.25)
    assert st.alpha_M(800, 20) == pytest.approx(0.25 * 40 / math.sqrt(0.95))


@pytest.mark.parametrize("alpha", [0.1, 2.0, 50.0])
def test_gamma_star_against_the_theory_module(alpha):
    """gamma when the theory's training error is 0.5, from the ReLU closed form of
    meanfield.theory (gamma(t) by quadrature) on a fine time grid."""
    c = make_config(d=20, alpha=alpha, beta=1 / alpha**2, M=100, N=1000)
    t = np.geomspace(1e-3, 1e4, 4000)
    th = compute(c, times=t)
    i = int(np.argmax(th.train_error <= 0.5))
    frac = (th.train_error[i - 1] - 0.5) / (th.train_error[i - 1] - th.train_error[i])
    gamma = th.gamma[i - 1] + frac * (th.gamma[i] - th.gamma[i - 1])
    assert float(st.gamma_star_theory(alpha, 20)) == pytest.approx(gamma, rel=2e-4)


def test_gamma_star_asymptotes():
    kap = st.kappa(20)
    lazy = 1e5
    assert float(st.gamma_star_theory(lazy, 20)) * 2 * lazy / kap == pytest.approx(1, abs=1e-6)
    rich = 1e-5
    assert float(st.gamma_star_theory(rich, 20)) == pytest.approx(
        0.5 * math.log(2 * kap / rich), abs=1e-9)
    g = st.gamma_star_theory(np.array([rich, rich * 1.01]), 20)
    assert (g[1] - g[0]) / math.log(1.01) == pytest.approx(-0.5, abs=1e-6)


def test_w_distance_theory_against_moved_weights():
    """Nodes moved on the ReLU hyperbolae (w_par only; w_perp frozen) by gamma."""
    rng = np.random.default_rng(0)
    M, d, sa, sw, g = 200_000, 20, 1.3, 0.8, 1.1
    a0 = sa * rng.standard_normal(M)
    W0 = sw * rng.standard_normal((M, d))
    W = W0.copy()
    W[:, 0] = W0[:, 0] * math.cosh(g) + a0 * math.sinh(g)
    measured = np.linalg.norm(W - W0) / np.linalg.norm(W0)
    assert float(st.w_distance_theory(g, d, sa, sw)) == pytest.approx(measured, rel=0.01)


# ----------------------------------------------------------------------------- end to end

TINY = {"sweep": {"seeds": 2, "name": "tiny"},
        "base": {"d": 10, "n_test": 200, "record_nodes": 4, "dt": 0.5, "growth": 0.05}}


def _tiny_specs():
    fm = {"sweep": TINY["sweep"], "base": {**TINY["base"], "online": True, "N": 300,
                                           "t_max": 80.0, "n_times": 40},
          "grid": {"M": [20, 40, 80]}}
    fn = {"sweep": {"seeds": 1}, "base": {**TINY["base"], "M": 30, "t_max": 150.0,
                                          "n_times": 60},
          "grid": {"N": [400, 1600]}}
    al = {"sweep": TINY["sweep"], "base": {**TINY["base"], "M": 60, "N": 600, "dt": 0.01,
                                           "t_max": 100.0, "n_times": 60},
          "zip": {"alpha": [0.25, 0.5, 2.0, 8.0], "beta": [16.0, 4.0, 0.25, 1 / 64]}}
    return {"finite-m": parse_spec(fm), "finite-n": parse_spec(fn), "alpha": parse_spec(al)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny sweeps of each study's swept fields with every point file written."""
    out = {}
    for name, spec in _tiny_specs().items():
        points = tmp_path_factory.mktemp(name) / "points"
        points.mkdir()
        for p in spec.points():
            write_simulation(simulate(p.config), points / f"{p.hash}.h5")
        out[name] = (spec, points)
    return out


def _check_outputs(result, outdir):
    xr = pytest.importorskip("xarray")
    paths = st.write_outputs(result, outdir)
    assert [p.name for p in paths] == ["study.h5", "study.json", f"{result.name}.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(paths[1].read_text())
    assert doc == json.loads(json.dumps(st.study_document(result), allow_nan=False))
    assert doc["verdict"] == result.verdict and doc["name"] == result.name
    assert doc["n_points_used"] == result.n_points_used
    assert [c["quantity"] for c in doc["criteria"]] == [c.quantity for c in result.criteria]
    with xr.open_dataset(paths[0], engine="h5netcdf") as ds:
        assert ds.attrs["meanfield_kind"] == "study"
        assert ds.attrs["study_name"] == result.name
        data = {k: ds[k].values for k in (*result.coords, *result.arrays)}
    back = read_study(paths[0])
    assert back.verdict == result.verdict and back.criteria == result.criteria
    assert back.notes == result.notes and back.n_points_total == result.n_points_total
    table = st.format_table(result)
    assert table.splitlines()[-1].startswith(f"verdict: {result.verdict}")
    for c in result.criteria:
        assert c.quantity in table and c.expected in table
    return data, back


def test_finite_m_end_to_end(tiny, tmp_path):
    spec, points = tiny["finite-m"]
    result = st.analyse("finite-m", True, spec, points)
    assert result.n_points_used == result.n_points_total == 6
    data, back = _check_outputs(result, tmp_path)
    assert data["M"].tolist() == [20, 40, 80]
    # one run's delta (sample moments) recomputed here
    run = spec.points()[3]
    sim = read_simulation(points / f"{run.hash}.h5")
    steps, rec = schedule(sim.config)
    th = compute_on_schedule(sim.config, steps, sim.init_moments.second_moments(), rec)
    window = (th.train_error >= 0.2) & (th.train_error <= 0.9)
    assert window.sum() >= 3
    i = data["run"].tolist().index(run.run)
    assert data["delta_sample"][i] == pytest.approx(
        np.mean(sim.series["gamma"][window] / th.gamma[window]) - 1, rel=1e-12)
    for key in ("population", "sample"):
        E = [math.sqrt(np.mean(data[f"delta_{key}"][data["run_M"] == M] ** 2))
             for M in (20, 40, 80)]
        assert data[f"E_{key}"] == pytest.approx(E, rel=1e-12)
        slope = np.polyfit(np.log([20, 40, 80]), np.log(E), 1)[0]
        assert back.fits[f"b_{key}"] == pytest.approx(slope, rel=1e-9)
    quantities = [c.quantity for c in result.criteria]
    assert len(quantities) == 2 and "population" in quantities[0]
    assert result.criteria[0].measured == pytest.approx(back.fits["b_population"])


def test_finite_n_end_to_end(tiny, tmp_path):
    spec, points = tiny["finite-n"]
    result = st.analyse("finite-n", False, spec, points)
    assert result.n_points_used == 2
    data, back = _check_outputs(result, tmp_path)
    R, de = data["R"], data["de"]
    assert R.size > 10
    # every sample is a selected record of its run, with de = err_sim / err_th - 1
    for j in range(R.size):
        i = data["run"].tolist().index(data["sample_run"][j])
        k = int(np.flatnonzero(data["t"][i] == data["sample_t"][j])[0])
        err, err_th = data["train_error_sim"][i, k], data["train_error_theory"][i, k]
        assert err_th >= 0.05 and round(err * data["sample_N"][j]) >= 100
        assert de[j] == pytest.approx(err / err_th - 1, rel=1e-12)
        assert R[j] == data["R_curve"][i, k]
    fit = R <= 1.5
    k_ref = -np.sum(de[fit] * R[fit] ** 2) / np.sum(R[fit] ** 4)
    assert back.fits["k"] == pytest.approx(k_ref, rel=1e-10)
    low = R < 0.5
    assert back.fits["mean_abs_de_low_R"] == pytest.approx(np.mean(np.abs(de[low])))
    assert [c.quantity.split()[0] for c in result.criteria] == ["k", "mean", "R_10:"]


def test_alpha_end_to_end(tiny, tmp_path):
    spec, points = tiny["alpha"]
    result = st.analyse("alpha", False, spec, points)
    assert result.n_points_used == 8
    data, back = _check_outputs(result, tmp_path)
    aM = 0.25 * math.sqrt(120) / math.sqrt(0.9)  # M = 60, d = 10
    assert back.fits["alpha_M"] == pytest.approx(aM)
    # alpha = 0.25, 0.5, 2 are judged (two rows each), 8 > alpha_M is a note; then the slope
    assert len(result.criteria) == 7
    assert any("alpha = 8" in n and "not judged" in n for n in result.notes)
    for p in spec.points():
        sim = read_simulation(points / f"{p.hash}.h5")
        err, t, g = sim.series["train_error"], sim.t, sim.series["gamma"]
        i = int(np.argmax(err <= 0.5))
        frac = (err[i - 1] - 0.5) / (err[i - 1] - err[i])
        j = data["run"].tolist().index(p.run)
        assert data["gamma_star"][j] == pytest.approx(g[i - 1] + frac * (g[i] - g[i - 1]))
        assert data["t_star"][j] == pytest.approx(t[i - 1] * (t[i] / t[i - 1]) ** frac)
    for j, a in enumerate(data["alpha"]):
        mean = np.mean(data["gamma_star"][data["run_alpha"] == a])
        g_th = 0.5 * math.asinh(4 * math.sqrt(10) / (2 * 0.6744897501960817) / a)
        assert data["gamma_star_ratio"][j] == pytest.approx(mean / g_th - 1, rel=1e-9)
    rich = data["run_alpha"] <= 1
    fit = stats.linregress(np.log(data["run_alpha"][rich]), data["gamma_star"][rich])
    assert back.fits["slope_n"] == 4
    assert back.fits["slope"] == pytest.approx(fit.slope, rel=1e-10)
    assert back.fits["slope_se"] == pytest.approx(fit.stderr, rel=1e-8)
    assert result.criteria[-1].measured == pytest.approx(fit.slope, rel=1e-10)


def test_missing_and_foreign_point_files(tiny, tmp_path):
    spec, points = tiny["finite-m"]
    some = tmp_path / "points"
    some.mkdir()
    pts = spec.points()
    for p in pts[1:]:
        (some / f"{p.hash}.h5").write_bytes((points / f"{p.hash}.h5").read_bytes())
    result = st.analyse("finite-m", True, spec, some)
    assert (result.n_points_used, result.n_points_total) == (5, 6)
    assert result.verdict in ("inconclusive", "disagree")
    assert result.notes[0].startswith("1 of 6 points")
    # a file under point 0's name that holds another run is skipped with a note
    (some / f"{pts[0].hash}.h5").write_bytes((points / f"{pts[1].hash}.h5").read_bytes())
    foreign = st.analyse("finite-m", True, spec, some)
    assert foreign.n_points_used == 5
    assert any("holds another run" in n for n in foreign.notes)


@pytest.mark.parametrize("name", ["finite-m", "finite-n", "alpha"])
def test_no_point_files_at_all(tiny, tmp_path, name):
    spec, _ = tiny[name]
    empty = tmp_path / "points"
    empty.mkdir()
    result = st.analyse(name, False, spec, empty)
    assert result.n_points_used == 0 and result.verdict == "inconclusive"
    assert all(c.verdict == "inconclusive" and c.measured is None for c in result.criteria)
    _check_outputs(result, tmp_path / "out")


def test_study_file_round_trip_keeps_numbers(tmp_path):
    result = StudyResult(
        name="alpha", quick=True,
        criteria=[StudyCriterion("q1", "<= 1", 0.5, "agree"),
                  StudyCriterion("q2", "<= 1", None, "inconclusive")],
        n_points_used=3, n_points_total=4, fits={"k": 0.07, "R_10": float("nan"), "n": 3},
        coords={"run": StudyArray(("run",), np.array([0, 2, 3]), "1", "run")},
        arrays={"x": StudyArray(("run",), np.array([1.0, np.nan, 2.0]), "1", "x")},
        notes=["a note"], spec_toml="[base]\nM = 3\n", used_hashes=["a", "b", "c"])
    write_study(result, tmp_path / "s.h5")
    back = read_study(tmp_path / "s.h5")
    assert back.criteria == result.criteria and back.notes == ["a note"]
    assert back.fits["k"] == 0.07 and math.isnan(back.fits["R_10"]) and back.fits["n"] == 3
    assert back["run"].tolist() == [0, 2, 3]
    assert np.array_equal(back["x"], result["x"], equal_nan=True)
    assert back.verdict == "inconclusive" and back.spec_toml == result.spec_toml
    assert back.quick is True and back.used_hashes == ["a", "b", "c"]


def test_a_run_without_theory_is_noted_not_fatal(tmp_path):
    spec = parse_spec({"sweep": {"seeds": 1}, "base": {
        "loss": "squared", "d": 5, "N": 100, "n_test": 50, "t_max": 5.0, "n_times": 10},
        "grid": {"M": [10]}})
    points = tmp_path / "points"
    points.mkdir()
    p = spec.points()[0]
    write_simulation(simulate(p.config), points / f"{p.hash}.h5")
    result = st.analyse("finite-m", False, spec, points)
    assert result.n_points_used == 1 and result.verdict == "inconclusive"
    assert any("no theory" in n and "hinge" in n for n in result.notes)

"""meanfield.compare and ``meanfield compare``.

Most tests run on small synthetic files written here with meanfield.io (FIXTURES: not outputs
of the simulator or the theory): a theory with a known gamma(t), and a "simulation" whose
gamma, S, errors and node trajectories are that theory distorted by known factors, so every
metric has an expected value computed independently in the test (numpy cosh/sinh, direct
formulas). The end-to-end tests at the bottom use the real ``meanfield simulate`` and
``meanfield theory``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from scipy.special import erf

from cli.main import main
from meanfield import compare as cmp
from meanfield.compare.curves import Curves, curves_of, resample, with_edge_spread
from meanfield.compare.metrics import MIN_UNSATISFIED, fraction_outside_band, log_slope
from meanfield.compare.report import report_dict
from meanfield.config import make_config
from meanfield.files.simulation import SERIES, SimulationResult, read_simulation, write_simulation
from meanfield.files.theory import TheoryResult, read_theory, write_theory
from meanfield.observables import InitialMoments

CONFIG = dict(M=100, N=20_000, d=20, n_test=1000, t_max=1000.0, dt=1.0, n_times=40)


def fixture_theory_curves(config, t):
    """FIXTURE curves with the structure of the ReLU hinge theory: a chosen gamma(t),
    S = k sinh(2 gamma) with k = alpha (sa^2 + sw^2) / (4 sqrt d), X = h / S, Gaussian
    training error erf(X / sqrt 2) and loss h e - S sqrt(2/pi) (1 - exp(-X^2/2))."""
    gamma = 0.6 * np.log1p(t)
    k = config.alpha * (config.sa**2 + config.sw**2) / (4 * math.sqrt(config.d))
    S = k * np.sinh(2 * gamma)
    with np.errstate(divide="ignore"):
        X = np.where(S > 0, config.h / S, np.inf)
    err = np.where(np.isfinite(X), erf(X / math.sqrt(2)), 1.0)
    tail = np.where(np.isfinite(X), 1 - np.exp(-np.minimum(X, 50) ** 2 / 2), 1.0)
    loss = config.h * err - S * math.sqrt(2 / math.pi) * tail
    return {"gamma": gamma, "S": S, "X": X, "train_error": err, "loss": loss}


def write_theory_fixture(path, config, t, f_spread=None):
    """FIXTURE theory file of :func:`fixture_theory_curves`, through the real writer."""
    curves = fixture_theory_curves(config, t)
    write_theory(TheoryResult(t=t, config=config, f_spread=f_spread, asymptote_C=1.0,
                              asymptote_c=math.log(4.0) / 4, **curves), path)
    return curves


def write_sim_fixture(path, config, scale=1.0, node_noise=0.0, seed=1):
    """FIXTURE simulation: the fixture theory with gamma multiplied by ``scale``; nodes on the
    exact hyperbolae of that gamma (plus ``node_noise`` relative Gaussian noise); examples
    satisfied exactly when S(t) |x_par| >= h on the record grid. Written by the real writer;
    the series the comparison does not read are NaN, the initial moments those of the
    recorded nodes."""
    from meanfield.schedule import schedule

    steps, record = schedule(config)
    t = steps[record]
    th = fixture_theory_curves(config, t)
    gamma = th["gamma"] * scale
    k = config.alpha * (config.sa**2 + config.sw**2) / (4 * math.sqrt(config.d))
    S = k * np.sinh(2 * gamma)
    rng = np.random.default_rng(seed)
    a0, w0 = rng.normal(size=config.M), rng.normal(size=config.M)
    a = np.outer(np.cosh(gamma), a0) + np.outer(np.sinh(gamma), w0)
    w = np.outer(np.cosh(gamma), w0) + np.outer(np.sinh(gamma), a0)
    a *= 1 + node_noise * rng.normal(size=a.shape)
    w *= 1 + node_noise * rng.normal(size=w.shape)
    x = rng.normal(size=2000)
    sat = S[None, :] * np.abs(x)[:, None] >= config.h
    t_sat = np.where(sat.any(axis=1), t[np.argmax(sat, axis=1)], np.inf)
    with np.errstate(divide="ignore"):
        X = np.where(S > 0, config.h / S, np.inf)
    err = np.where(np.isfinite(X), erf(X / math.sqrt(2)), 1.0)
    loss = th["loss"] * scale
    series = dict.fromkeys(SERIES, np.full(t.size, np.nan))
    series.update(step=np.arange(t.size), n_evaluated=np.zeros(t.size))
    series.update(gamma=gamma, S=S, train_error=err, loss=loss, test_error=err)
    moments = InitialMoments(a_mean=0.0, a_var=float(np.mean(a0 * a0)), w_par_mean=0.0,
                             w_par_var=float(np.mean(w0 * w0)),
                             a_w_par_mean=float(np.mean(a0 * w0)),
                             w_perp_norm2_mean=math.nan, u0_sq_mean=math.nan)
    write_simulation(SimulationResult(
        config=config, t=t, series=series, node=np.arange(config.M),
        nodes={"a": a, "w_par": w, "w_perp_norm": np.full(a.shape, np.nan)}, a0=a0,
        w_par0=w0, t_sat=t_sat, x_par=x, y=np.sign(x), test_t_sat=np.zeros(0),
        test_x_par=np.zeros(0), init_moments=moments,
        attrs={"t_sat_resolution": "record times", "test_t_sat_resolution": "record times"},
    ), path)
    return {"t": t, "gamma": gamma, "S": S, "a0": a0, "w0": w0, "a": a, "w": w,
            "train_error": err, "loss": loss, "th": th}


@pytest.fixture
def files(tmp_path):
    config = make_config(**CONFIG)
    t_th = np.concatenate([[0.0], np.geomspace(0.01, 2000, 400)])
    write_theory_fixture(tmp_path / "theory.h5", config, t_th)
    return config, tmp_path


def test_curve_metrics_equal_the_known_distortion(files):
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


def test_verdict_fails_for_a_large_distortion(files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config, scale=1.5)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    assert result.metrics["gamma"].verdict == "disagree"
    assert result.metrics["gamma"].value == pytest.approx(0.5, abs=1e-3)
    assert result.verdict == "disagree"


def test_window_stops_when_few_examples_are_unsatisfied(files):
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


def test_log_slope_and_resample_are_exact_on_their_model_functions():
    t = np.concatenate([[0.0], np.geomspace(1, 1e4, 30)])
    # centred differences are exact for a function linear in log t
    s = log_slope(t, np.log(t + (t == 0)) / 4 + 0.3)
    assert np.allclose(s[1:], 0.25, atol=1e-12) and np.isnan(s[0])
    # linear interpolation in asinh(t / t1) is exact for a function linear in it
    src = Curves("x", t, *(np.arcsinh(t / t[1]) for _ in range(5)))
    dst = np.array([0.0, 0.5, 3.3, 77.0, 9999.0, 2e4])
    out = resample(src, dst)
    assert np.allclose(out.gamma[:-1], np.arcsinh(dst[:-1] / t[1]), rtol=1e-12)
    assert np.isnan(out.gamma[-1])  # outside the theory's range: no extrapolation


def test_band_fraction_counts_examples_outside(files):
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


def test_milestones_are_first_crossings(files):
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


def test_theory_for_other_parameters_warns_and_names_them(files):
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


# --------------------------------------------------------------------------- CLI


def test_cli_json_strict_and_output_file(files):
    config, tmp = files
    write_sim_fixture(tmp / "sim.h5", config, scale=1.5)
    runner = CliRunner()
    args = ["compare", str(tmp / "sim.h5"), str(tmp / "theory.h5"), "--no-schedule"]
    res = runner.invoke(main, [*args, "--json", "-o", str(tmp / "c.h5")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["verdict"] == "disagree"
    assert set(report) >= {"verdict", "metrics", "checkpoints"}
    assert report["metrics"]["gamma"]["verdict"] == "disagree"
    with h5py.File(tmp / "c.h5") as f:
        assert f.attrs["meanfield_kind"] == "comparison"
        assert f.attrs["verdict"] == "disagree"
    res = runner.invoke(main, [*args, "--strict"])
    assert res.exit_code == 1
    assert "verdict: disagree" in res.output


def test_cli_refuses_foreign_files_with_exit_2(files, tmp_path):
    config, tmp = files
    (tmp / "text.h5").write_text("not hdf5")
    with h5py.File(tmp / "plain.h5", "w") as f:
        f["x"] = 1
    runner = CliRunner()
    for name in ("text.h5", "plain.h5", "missing.h5"):
        res = runner.invoke(main, ["compare", str(tmp / name)])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and name in res.output
    write_sim_fixture(tmp / "sim.h5", config)
    res = runner.invoke(main, ["compare", str(tmp / "sim.h5"), str(tmp / "plain.h5")])
    assert res.exit_code == 2 and "not a meanfield output" in res.output
    res = runner.invoke(main, ["compare", str(tmp / "sim.h5"), "--plot", str(tmp / "f.svg")])
    assert res.exit_code == 2 and "--plot" in res.output


# --------------------------------------------------------------------------- end to end
# The real simulator and theory: a small run, compared with the theory made for it and with
# theories made for another d or h, which must be told apart.

E2E = dict(M=100, N=4000, d=20, n_test=1000, t_max=300.0, growth=0.05, n_times=30, seed=1)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from meanfield.simulate import simulate
    from meanfield.theory import compute

    tmp = tmp_path_factory.mktemp("e2e")
    config = make_config(**E2E)
    write_simulation(simulate(config), tmp / "sim.h5")
    for name, changes in (("right", {}), ("other_d", {"d": 2 * config.d}),
                          ("other_h", {"h": 2.0}), ("other_N", {"N": 50 * config.N})):
        c = config.replace(**changes)
        write_theory(compute(c), tmp / f"{name}.h5")
    return tmp


def _json_compare(*args):
    res = CliRunner().invoke(main, ["compare", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_real_run_agrees_with_its_theory(real_run):
    report = _json_compare(real_run / "sim.h5", real_run / "right.h5")
    assert report["verdict"] == "agree", report["metrics"]
    # the schedule theory removes most of the time-step error: gamma is closer to it than to
    # the flow (Euler with dt = 1 at rate ~ 0.09 per unit time is a few % off the flow)
    g = report["metrics"]["gamma"]
    assert g["value_schedule"] < g["value_flow"]
    assert [c["level"] for c in report["checkpoints"]][:3] == [0.9, 0.7, 0.5]
    # the same verdict when the theory is computed from the simulation's own config
    report2 = _json_compare(real_run / "sim.h5")
    assert report2["verdict"] == "agree"
    assert report2["metrics"]["gamma"]["value"] == pytest.approx(g["value"], rel=1e-6)


@pytest.mark.parametrize(("name", "field", "must_fail"), [
    ("other_d", "d", ("gamma", "S", "train_error", "x_par")),
    ("other_h", "h", ("S", "loss", "x_par")),
])
def test_a_wrong_theory_disagrees(real_run, name, field, must_fail):
    report = _json_compare(real_run / "sim.h5", real_run / f"{name}.h5")
    assert report["verdict"] == "disagree"
    assert field in report["differing_parameters"]
    for metric in must_fail:
        assert report["metrics"][metric]["verdict"] == "disagree", (metric, report["metrics"])
    res = CliRunner().invoke(main, ["compare", str(real_run / "sim.h5"),
                                    str(real_run / f"{name}.h5"), "--strict"])
    assert res.exit_code == 1
    assert f"{field} (simulation" in res.output  # the warning names the parameter


def test_edge_spread_matches_monte_carlo_of_m_node_networks():
    """The finite-M band of panel (d): the std of f at |x_par| = X over draws of M nodes
    (hyperbolae of the same gamma, frozen w_perp) and of x_perp, by direct Monte Carlo."""
    config = make_config(M=50, d=30, t_max=100.0)
    t = np.array([0.0, 5.0, 20.0, 60.0])
    curves = Curves("x", t, np.array([0.0, 0.5, 1.2, 2.0]),
                        *(np.zeros(4) for _ in range(2)), np.zeros(4), np.zeros(4))
    curves = dataclasses.replace(curves, X=np.array([np.inf, 2.0, 0.7, 0.3]))
    out = with_edge_spread(curves, config).edge_spread
    assert np.isnan(out[0])  # X = inf at t = 0: no edge
    rng = np.random.default_rng(5)
    R = 20_000  # networks; the Monte Carlo std has relative error ~ 1/sqrt(2R) = 0.5%
    for i in range(1, 4):
        g, X = curves.gamma[i], curves.X[i]
        a0 = config.sa * rng.standard_normal((R, config.M))
        w0 = config.sw * rng.standard_normal((R, config.M))
        a = a0 * np.cosh(g) + w0 * np.sinh(g)
        w_par = w0 * np.cosh(g) + a0 * np.sinh(g)
        # w_perp . x_perp / sqrt(d) ~ N(0, sw^2 (d - 1)/d) for |x_perp|^2 = d - 1
        u = (w_par * X + config.sw * math.sqrt(config.d - 1) * rng.standard_normal(
            (R, config.M))) / math.sqrt(config.d)
        f = config.alpha * np.mean(a * np.maximum(u, 0.0), axis=1)
        assert out[i] == pytest.approx(f.std(), rel=0.03), i


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


def test_no_schedule_theory_for_a_heun_simulation(files):
    """The schedule theory is an explicit Euler push: a Heun run is judged against the flow."""
    config, tmp = files
    heun = config.replace(integrator="heun")
    write_sim_fixture(tmp / "sim.h5", heun)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5")
    assert result.schedule is None and result.reference is result.flow
    assert any("heun" in note for note in result.notes)
    assert result.metrics["gamma"].value == result.metrics["gamma"].value_flow


def test_mini_batch_and_online_runs_are_flagged(files):
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

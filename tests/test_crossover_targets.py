"""The crossover targets of ``meanfield reproduce`` (pb-crossover, frankle-rewind): criteria on
synthetic results (each can fail), the settings, the refusals, and both quick targets end to
end through the command (about 10 s together on two cores)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield import crossover_theory as ct
from meanfield.config import ConfigError
from meanfield.crossover_run import ARMS, CrossoverResult, CrossoverSettings
from meanfield.crossover_targets import (
    TARGETS,
    crossover_runs,
    evaluate,
    figure_name,
    frankle_rewind_criteria,
    identity,
    moment_bound,
    pb_crossover_criteria,
)
from meanfield.linear_targets import verdict
from meanfield.reproduce import FIGURES, figure_config

# ----------------------------------------------------------------------- synthetic results


def _pb_result(alphas=(0.3, 3.0, 30.0, 300.0), tau_max=6.0) -> CrossoverResult:
    """A pb-crossover result whose network and twin follow the theory exactly."""
    run = crossover_runs("pb-crossover", quick=True)["crossover.h5"]
    config = run.config.replace(alpha=alphas[0])
    st = CrossoverSettings(tau_max=tau_max)
    t = np.concatenate([[0.0], np.geomspace(tau_max / 1000, tau_max, 40)])
    full, lazy = [], []
    for a in alphas:
        th = ct.crossover_theory(config.replace(alpha=a), t)
        full.append(th.train_error)
        lazy.append(th.train_error_lazy)
    full, lazy = np.array(full), np.array(lazy)
    series = {"train_error_theory": full, "train_error_lazy": lazy,
              "train_error_net": full.copy(), "train_error_lin": lazy.copy()}
    g = np.array([float(ct.gamma_at_error(config.replace(alpha=a), 0.3)) for a in alphas])
    at = {"gamma_at_error_net": g.copy(), "gamma_at_error_theory": g,
          "kernel_change_at_error_net": 2 * g, "kernel_change_at_error_theory": 2 * g}
    return CrossoverResult(config=config, settings=st, alpha=np.array(alphas), t=t,
                           time=np.zeros((len(alphas), len(t))), a0=np.zeros(4),
                           w_par0=np.zeros(4), series=series, at_alpha=at,
                           alpha_c=ct.alpha_c(config))


def _values(criteria):
    return {c.name: c for c in criteria}


def test_pb_crossover_criteria_hold_on_the_theory_and_each_can_fail():
    r = _pb_result()
    crit = pb_crossover_criteria(r)
    assert verdict(crit) == "agree", crit
    names = [c.name for c in crit]
    assert names[:4] == ["|err_net - err_theory|", "|err_lin - err_lazy|",
                         "lazy: |err_net - err_lin|", "rich: err_lin - err_net"]
    # only alpha <= alpha_c = 2 sqrt(20) = 8.94 is checked for gamma and the kernel
    assert names[4:] == ["alpha=0.3 gamma_at_error_net/theory - 1",
                         "alpha=0.3 kernel_change_at_error_net/theory - 1",
                         "alpha=3 gamma_at_error_net/theory - 1",
                         "alpha=3 kernel_change_at_error_net/theory - 1"]
    v = _values(crit)
    assert v["|err_net - err_theory|"].value == 0.0
    assert v["rich: err_lin - err_net"].value > 0.1  # the theory's gap itself

    th = r.series["train_error_theory"]
    band = (th >= 0.2) & (th <= 0.9)
    k = tuple(np.argwhere(band)[0])

    def fails(change, name):
        r2 = _pb_result()
        change(r2)
        c = _values(pb_crossover_criteria(r2))[name]
        assert not c.holds, c
        assert verdict(pb_crossover_criteria(r2)) == "disagree"
        return c

    # one record off by more than 0.05 inside the band
    c = fails(lambda x: x.series["train_error_net"].__setitem__(k, th[k] + 0.06),
              "|err_net - err_theory|")
    assert c.value == pytest.approx(0.06)
    fails(lambda x: x.series["train_error_lin"].__setitem__(
        k, x.series["train_error_lazy"][k] - 0.051), "|err_lin - err_lazy|")
    # outside the band a large distance does not count
    r3 = _pb_result()
    outside = tuple(np.argwhere(th > 0.95)[0])
    r3.series["train_error_net"][outside] += 0.04
    assert _values(pb_crossover_criteria(r3))["|err_net - err_theory|"].holds
    # lazy side: at alpha = 300 theory and lazy agree, the simulations must too
    last = len(r.alpha) - 1
    fails(lambda x: x.series["train_error_net"].__setitem__(
        (last, len(r.t) - 1), x.series["train_error_lin"][last, -1] + 0.031),
        "lazy: |err_net - err_lin|")
    # rich side: a network no faster than its twin is no crossover
    fails(lambda x: x.series.__setitem__("train_error_lin", x.series["train_error_net"]),
          "rich: err_lin - err_net")
    # gamma 6% off, kernel change 21% off
    fails(lambda x: x.at_alpha["gamma_at_error_net"].__setitem__(1, 1.06 * x.at_alpha[
        "gamma_at_error_theory"][1]), "alpha=3 gamma_at_error_net/theory - 1")
    fails(lambda x: x.at_alpha["kernel_change_at_error_net"].__setitem__(0, 0.79 * x.at_alpha[
        "kernel_change_at_error_theory"][0]), "alpha=0.3 kernel_change_at_error_net/theory - 1")
    # never reaching the error level (NaN) does not hold
    c = fails(lambda x: x.at_alpha["gamma_at_error_net"].__setitem__(0, math.nan),
              "alpha=0.3 gamma_at_error_net/theory - 1")
    assert c.to_dict()["value"] is None
    # no record where the network should be rich: the crossover is not seen
    r4 = _pb_result(alphas=(300.0, 1000.0))
    c = _values(pb_crossover_criteria(r4))["rich: err_lin - err_net"]
    assert math.isnan(c.value) and not c.holds


def _frankle_result(tau_k: float, M: int = 200) -> CrossoverResult:
    """A frankle-rewind result whose arms follow their restarted theory exactly and whose
    moments are the theory's."""
    run = crossover_runs("frankle-rewind", quick=True)["frankle_rewind_tau0.2.h5"]
    config = run.config.replace(M=M)
    st = CrossoverSettings(tau_max=4.0, rewind_at=tau_k, linearized=False)
    t = np.unique(np.concatenate([[0.0], np.geomspace(0.004, 4.0, 40), [tau_k]]))
    series, at = {}, {}
    for arm in ARMS:
        rt = ct.rewind_theory(config, t, tau_k, arm)
        series[f"train_error_{arm}"] = rt.train_error[None].copy()
        series[f"train_error_{arm}_theory"] = rt.train_error[None]
        for moment in ("mp", "maw"):
            value = float(getattr(rt, moment))
            at[f"{moment}_{arm}"] = np.array([value])
            at[f"{moment}_{arm}_theory"] = np.array([value])
    return CrossoverResult(config=config, settings=st, alpha=np.array([1.0]), t=t,
                           time=np.zeros((1, len(t))), a0=np.zeros(M), w_par0=np.zeros(M),
                           series=series, at_alpha=at, alpha_c=ct.alpha_c(config))


def test_frankle_rewind_criteria_hold_on_the_theory_and_each_can_fail():
    runs = [_frankle_result(0.2), _frankle_result(1.0)]
    crit = frankle_rewind_criteria(runs)
    assert verdict(crit) == "agree", crit
    assert len(crit) == 2 * 3 * 3
    assert crit[0].name == "tau_k=0.2 signs: |err - theory|"
    assert "tau_k=1 shuffle: |maw - theory|" in _values(crit)

    # an arm 0.06 off its theory after tau_k + 0.5 fails; before, it does not count
    r = _frankle_result(1.0)
    t = r.t
    late = int(np.flatnonzero(t >= 1.5)[0])
    early = int(np.flatnonzero((t >= 1.0) & (t < 1.5))[0])
    r.series["train_error_shuffle"][0, early] += 0.2
    assert verdict(frankle_rewind_criteria([r])) == "agree"
    r.series["train_error_shuffle"][0, late] += 0.06
    c = _values(frankle_rewind_criteria([r]))["tau_k=1 shuffle: |err - theory|"]
    assert not c.holds and c.value == pytest.approx(0.06)

    # moments: 4 mp'/sqrt(M/2) + 0.02 of the arm's theoretical mp
    r = _frankle_result(0.2)
    mp = float(r.at_alpha["mp_signs_theory"][0])
    bound = moment_bound(mp, 200)
    assert bound == pytest.approx(4 * mp / 10 + 0.02)
    r.at_alpha["maw_signs"][0] += 0.99 * bound
    assert _values(frankle_rewind_criteria([r]))["tau_k=0.2 signs: |maw - theory|"].holds
    r.at_alpha["maw_signs"][0] += 0.02 * bound
    c = _values(frankle_rewind_criteria([r]))["tau_k=0.2 signs: |maw - theory|"]
    assert not c.holds
    r = _frankle_result(0.2)
    r.at_alpha["mp_signs_random"][0] = math.nan
    assert verdict(frankle_rewind_criteria([r])) == "disagree"


# ------------------------------------------------------------------------------- settings

def test_settings_of_the_targets():
    pb = crossover_runs("pb-crossover")["crossover.h5"]
    c = pb.config
    assert (c.M, c.N, c.d, c.h, c.sa, c.sw, c.beta, c.data, c.activation, c.loss) == (
        400, 20_000, 50, 1.0, 1.0, 1.0, 1.0, "gaussian", "relu", "hinge")
    assert pb.alphas == (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
    assert pb.settings.tau_max == 10.0 and pb.settings.linearized
    q = crossover_runs("pb-crossover", quick=True)["crossover.h5"]
    assert (q.config.M, q.config.N, q.config.d, q.alphas, q.settings.tau_max) == (
        200, 5000, 20, (0.3, 3.0, 30.0, 300.0), 6.0)
    fr = crossover_runs("frankle-rewind")
    assert list(fr) == [f"frankle_rewind_tau{t}.h5" for t in ("0.05", "0.2", "0.5", "1", "2")]
    for run in fr.values():
        assert run.alphas == (1.0,) and run.settings.tau_max == 10.0
        assert (run.config.M, run.config.N, run.config.d) == (400, 20_000, 50)
    fq = crossover_runs("frankle-rewind", quick=True)
    assert [r.settings.rewind_at for r in fq.values()] == [0.2, 1.0]
    assert all(r.settings.tau_max == 4.0 and r.config.M == 200 for r in fq.values())
    assert figure_name("pb-crossover") == "crossover.png"
    assert figure_name("frankle-rewind") == "frankle_rewind.png"
    assert identity(fr) != identity(fq)
    assert len(identity(fr)) == 12
    assert identity({"crossover.h5": pb}) == pb.identity()
    for call in (lambda: crossover_runs("pb-cross"), lambda: evaluate("pb-cross", {}),
                 lambda: figure_name("pb-cross")):
        with pytest.raises(ConfigError, match="pb-crossover, frankle-rewind"):
            call()
    assert TARGETS == ("pb-crossover", "frankle-rewind")
    assert FIGURES[-2:] == TARGETS
    with pytest.raises(ConfigError, match="run of meanfield crossover"):
        figure_config("pb-crossover")


@pytest.mark.parametrize("figure", ["pb_crossover", "frankle", "Frankle-Rewind", "crossover"])
def test_unknown_target_is_refused_listing_every_target(figure, tmp_path):
    res = CliRunner().invoke(main, ["reproduce", figure, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert ("pb-fig1, lee-width, lee-gp, hu-early, pb-crossover, frankle-rewind"
            in lines[0])
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- end to end

def test_pb_crossover_quick_end_to_end(tmp_path):
    """The quick pb-crossover through the command: file, figure, table, verdict "agree"; a
    rerun reuses the file; a foreign file is refused before any work."""
    import h5py

    out = tmp_path / "pb"
    res = CliRunner().invoke(main, ["reproduce", "pb-crossover", "--quick", "--out", str(out),
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"figure", "verdict", "criteria", "files"}
    assert doc["figure"] == "pb-crossover" and doc["verdict"] == "agree", doc
    assert doc["files"] == [str(out / "crossover.h5"), str(out / "crossover.png")]
    assert len(doc["criteria"]) == 8
    assert all(set(c) == {"name", "value", "bound", "holds"} and c["holds"]
               for c in doc["criteria"])
    with h5py.File(out / "crossover.h5") as f:
        assert f.attrs["meanfield_kind"] == "crossover"
    assert (out / "crossover.png").stat().st_size > 10_000
    stamp = (out / "crossover.h5").stat().st_mtime_ns

    again = CliRunner().invoke(main, ["reproduce", "pb-crossover", "--quick", "--out",
                                      str(out)])
    assert again.exit_code == 0, again.output
    assert "reused (same configuration, left untouched): crossover.h5" in again.stderr
    assert again.stdout.rstrip().endswith("verdict: agree")
    for c in doc["criteria"]:  # the numbers from the file are those of the run
        line = next(ln for ln in again.stdout.splitlines() if ln.startswith(c["name"] + " "))
        assert f"{c['value']:.4g}" in line
    assert (out / "crossover.h5").stat().st_mtime_ns == stamp

    other = tmp_path / "other"
    other.mkdir()
    (other / "crossover.h5").write_text("not a run")
    res = CliRunner().invoke(main, ["reproduce", "pb-crossover", "--quick", "--out",
                                    str(other)])
    assert res.exit_code == 2 and "not a complete meanfield crossover file" in res.output
    assert sorted(p.name for p in other.iterdir()) == ["crossover.h5"]


def test_frankle_rewind_quick_end_to_end(tmp_path):
    out = tmp_path / "fr"
    res = CliRunner().invoke(main, ["reproduce", "frankle-rewind", "--quick", "--out",
                                    str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["figure"] == "frankle-rewind" and doc["verdict"] == "agree", doc
    names = ["frankle_rewind_tau0.2.h5", "frankle_rewind_tau1.h5", "frankle_rewind.png"]
    assert doc["files"] == [str(out / n) for n in names]
    assert len(doc["criteria"]) == 18 and all(c["holds"] for c in doc["criteria"])
    assert (out / "frankle_rewind.png").stat().st_size > 10_000
    # a figure of other runs is refused unless --overwrite
    (out / "frankle_rewind_tau1.h5").unlink()
    (out / "frankle_rewind.png").write_text("another figure")
    res = CliRunner().invoke(main, ["reproduce", "frankle-rewind", "--quick", "--out",
                                    str(out)])
    assert res.exit_code == 2 and "holds another result" in res.output
    assert not (out / "frankle_rewind_tau1.h5").exists()
    res = CliRunner().invoke(main, ["reproduce", "frankle-rewind", "--quick", "--out",
                                    str(out), "--overwrite"])
    assert res.exit_code == 0 and "verdict: agree" in res.stdout
    assert (out / "frankle_rewind_tau1.h5").is_file()

"""``meanfield reproduce``: settings, the whole pipeline on a tiny setting, bad input."""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import ConfigError
from meanfield.reproduce import PB_FIG1, figure_config

TINY = dict(M=40, N=3000, d=20, n_test=600, t_max=200.0, growth=0.05, n_times=25)


def test_full_size_is_the_papers_setting():
    c = figure_config("pb-fig1")
    # Pellegrini & Biroli, Fig. 1: M = 400, N = 10^5, d = 100, ReLU, hinge h = 1, dt = 1
    assert (c.M, c.N, c.d, c.activation, c.loss, c.h, c.dt) == (
        400, 100_000, 100, "relu", "hinge", 1.0, 1.0)
    quick = figure_config("pb-fig1", quick=True)
    # the quick setting changes sizes and schedule only, never the physics
    for name in ("h", "alpha", "beta", "sa", "sw", "activation", "loss", "data"):
        assert getattr(quick, name) == PB_FIG1[name]
    assert quick.M < c.M and quick.N < c.N
    with pytest.raises(ConfigError, match="figure must be one of pb-fig1"):
        figure_config("pb-fig2")


def test_pipeline_writes_every_file_and_reports_it(tmp_path, monkeypatch):
    """The whole pipeline through the command, on a tiny setting (the quick one patched)."""
    import meanfield.reproduce as mod

    monkeypatch.setattr(mod, "PB_FIG1_QUICK", {**mod.PB_FIG1_QUICK, **TINY})
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    # every stage is reported with its file, in order
    stages = [line.split()[0] for line in res.output.splitlines() if " s -> " in line]
    assert stages == ["derive", "theory", "simulate", "compare", "figure"]
    names = ("derivation.tex", "theory.h5", "simulation.h5", "compare.h5", "fig1.png",
             "errors.png")
    for name in names:
        assert (out / name).stat().st_size > 0
        assert str(out / name) in res.output
    assert r"\gamma" in (out / "derivation.tex").read_text()
    for name, kind in (("theory.h5", "theory"), ("simulation.h5", "simulation"),
                       ("compare.h5", "comparison")):
        with h5py.File(out / name) as f:
            assert f.attrs["meanfield_kind"] == kind
    with h5py.File(out / "compare.h5") as f:
        verdict = f.attrs["verdict"]
        assert json.loads(f.attrs["config"])["M"] == TINY["M"]
    assert res.output.rstrip().endswith(f"verdict: {verdict}")
    # a rerun reuses every stage's file (same configuration): untouched, the same report
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("theory.h5", "simulation.h5",
                                                        "compare.h5")}
    again = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "reused (same configuration, left untouched): theory, simulate, compare" in (
        again.stderr)
    def report(text):  # everything but the wall time
        return [line for line in text.splitlines() if not line.startswith("total time")]

    assert report(again.stdout) == report(res.stdout)
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}
    # another configuration in the same folder is refused before any work
    monkeypatch.setattr(mod, "PB_FIG1_QUICK", {**mod.PB_FIG1_QUICK, **TINY, "seed": 1})
    other = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--out", str(out)])
    assert other.exit_code == 2 and "seed: 0 there, 1 here" in other.output
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}


def test_cli_bad_input_exit_2(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["reproduce", "pb-fig9"])
    assert res.exit_code == 2 and "FIGURE must be one of pb-fig1" in res.output
    (tmp_path / "file").write_text("x")
    res = runner.invoke(main, ["reproduce", "pb-fig1", "--out", str(tmp_path / "file")])
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.mark.slow
def test_quick_reproduction_agrees(tmp_path):
    """The README's main job: the quick setting gives the figure and an 'agree' verdict."""
    res = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--out",
                                    str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("verdict: agree"), res.output
    assert (tmp_path / "fig1.png").stat().st_size > 10_000

"""``meanfield reproduce``: settings, the whole pipeline on a tiny setting, bad input."""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import ConfigError
from meanfield.reproduce import PB_FIG1, figure_config, reproduce

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


def test_pipeline_writes_every_file(tmp_path):
    stages = []
    config = figure_config("pb-fig1", quick=True, **TINY)
    rep = reproduce("pb-fig1", tmp_path / "out", config=config,
                    on_stage=lambda s, sec, p: stages.append(s), progress=False)
    assert stages == ["derive", "theory", "simulate", "compare", "figure"]
    for path in rep.files.values():
        assert path.is_file() and path.stat().st_size > 0
    assert r"\gamma" in (tmp_path / "out" / "derivation.tex").read_text()
    kinds = {"theory": "theory", "simulate": "simulation", "compare": "comparison"}
    for stage, kind in kinds.items():
        with h5py.File(rep.files[stage]) as f:
            assert f.attrs["meanfield_kind"] == kind
    with h5py.File(rep.files["compare"]) as f:
        assert f.attrs["verdict"] == rep.verdict
        assert json.loads(f.attrs["config"])["M"] == 40


def test_cli_reports_files_and_verdict(tmp_path, monkeypatch):
    import meanfield.reproduce as mod

    monkeypatch.setattr(mod, "PB_FIG1_QUICK", {**mod.PB_FIG1_QUICK, **TINY})
    res = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--out",
                                    str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "verdict: " in res.output
    assert str(tmp_path / "r" / "fig1.png") in res.output


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

"""meanfield.plots: the figures show exactly the data of the comparison file.

The comparison file is built from the synthetic FIXTURES of test_compare (a theory with a
known gamma(t) and a simulation on its exact hyperbolae), compared without the schedule theory.
"""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import COMPARE_CONFIG

from meanfield import compare as cmp
from meanfield import plots
from meanfield.config import make_config
from meanfield.files.comparison import write_comparison
from meanfield.io import NotMeanfieldFile, open_meanfield


@pytest.fixture(scope="module")
def compare_file(write_sim_fixture, write_theory_fixture, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    config = make_config(**COMPARE_CONFIG)
    write_theory_fixture(tmp / "theory.h5", config,
                         np.concatenate([[0.0], np.geomspace(0.01, 2000, 400)]),
                         f_spread=np.full(401, 0.05))
    write_sim_fixture(tmp / "sim.h5", config, node_noise=0.01)
    result = cmp.compare(tmp / "sim.h5", tmp / "theory.h5", on_schedule=False)
    write_comparison(result, tmp / "compare.h5")
    return tmp / "compare.h5"


def _read(path):
    with open_meanfield(path, "comparison") as f:
        return {k: f[k][()] for k in f}, dict(f.attrs)


def test_fig1_panels_hold_the_file_data(compare_file):
    data, attrs = _read(compare_file)
    fig = plots.draw_fig1(compare_file)
    ax_a, ax_w, ax_g, ax_x = fig.axes[:4]
    pos = data["t"] > 0
    for ax, name in ((ax_a, "a"), (ax_w, "w_par")):
        lines = ax.get_lines()
        assert len(lines) == 2 * plots.N_NODES  # a theory line and simulation points per node
        for i in range(plots.N_NODES):
            assert np.array_equal(lines[2 * i].get_ydata(), data[f"{name}_theory"][pos, i])
            assert np.array_equal(lines[2 * i + 1].get_ydata(),
                                  data[f"{name}_simulation"][pos, i])
        assert ax.get_xscale() == "log"
    # panel (c): the late asymptote is log(t)/4 + c with the file's c, the early one r0 t
    by_label = {line.get_label(): line for line in ax_g.get_lines()}
    late = next(v for k, v in by_label.items() if k.startswith("late"))
    t_late = late.get_xdata()
    assert np.allclose(late.get_ydata(), np.log(t_late) / 4 + float(attrs["asymptote_c"]))
    early = next(v for k, v in by_label.items() if k.startswith("early"))
    assert np.allclose(early.get_ydata(), float(attrs["gamma_rate0"]) * early.get_xdata())
    # the fixture theory's first point: gamma(0.01)/0.01 from its closed form
    g = 0.6 * math.log1p(0.01)
    assert float(attrs["gamma_rate0"]) == pytest.approx(g / 0.01, rel=1e-12)
    # panel (d): the theory line is X = h/S and the band is (h -+ 3 sigma)/S
    X_line = next(v for k, v in ((ln.get_label(), ln) for ln in ax_x.get_lines())
                  if k.startswith("$X"))
    finite = np.isfinite(data["X_theory"]) & pos
    assert np.array_equal(X_line.get_ydata(), data["X_theory"][finite])
    # X and S are interpolated separately from the theory grid: X = h/S to interpolation error
    assert np.allclose(data["X_theory"][finite], 1.0 / data["S_theory"][finite], rtol=1e-3)
    sigma = data["f_spread_edge"][pos]
    assert np.allclose(data["band_hi"][pos], (1.0 + 3 * sigma) / data["S_theory"][pos],
                       rtol=1e-9, equal_nan=True)
    assert np.allclose(data["band_lo"][pos],
                       np.maximum(1.0 - 3 * sigma, 0) / data["S_theory"][pos],
                       rtol=1e-9, equal_nan=True)


def test_png_and_pdf_are_written_and_not_blank(compare_file, tmp_path):
    png = plots.fig1(compare_file, tmp_path / "fig.png")
    img = mpimg.imread(png)
    assert img.shape[0] > 500 and img.shape[1] > 700
    assert img[..., :3].std() > 0.05  # not a blank canvas
    err = plots.error_figure(compare_file, tmp_path / "err.png")
    assert mpimg.imread(err)[..., :3].std() > 0.05
    # the format follows the suffix (the lighter figure keeps the test fast)
    pdf = plots.error_figure(compare_file, tmp_path / "err.pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_error_figure_holds_simulation_and_theory(compare_file):
    data, _ = _read(compare_file)
    fig = plots.draw_errors(compare_file)
    ys = [line.get_ydata() for line in fig.axes[0].get_lines()]
    pos = data["t"] > 0
    assert any(np.array_equal(y, data["train_error_simulation"][pos]) for y in ys)
    assert any(np.array_equal(y, data["test_error_simulation"][pos]) for y in ys)
    assert any(np.array_equal(y, data["train_error_theory"][pos]) for y in ys)


def test_only_comparison_files_are_plotted(write_sim_fixture, tmp_path):
    sim = tmp_path / "sim.h5"
    write_sim_fixture(sim, make_config(**COMPARE_CONFIG))
    with pytest.raises(NotMeanfieldFile, match="expected comparison"):
        plots.fig1(sim, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

"""``meanfield theory``: output file, summary, --latex, bad input (exit 2, no file)."""

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield import theory as T
from meanfield.config import make_config


def _run(args):
    return CliRunner().invoke(main, ["theory", *args])


def test_writes_the_file_and_a_summary(tmp_path):
    out = tmp_path / "theory.h5"
    res = _run(["--d", "30", "--data", "sphere", "--times", "0,1,10,1e6", "--x-par",
                "0.2,1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"theory written to {out}"
    assert "c = " in res.output and "final gamma" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theory.h5"]
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["t"][()], [0, 1, 10, 1e6])
        c = make_config(d=30, data="sphere")
        np.testing.assert_allclose(f["gamma"][()], T.gamma_of_t(c, [0, 1, 10, 1e6], "ode"),
                                   rtol=1e-9)
        np.testing.assert_allclose(f["t_sat"][()], T.t_sat(c, [0.2, 1.0]), rtol=1e-12)
        assert f["t_sat"].dims[0].keys() == ["x_par"]
        assert f.attrs["asymptote_c"] == pytest.approx(np.log(4 * f.attrs["asymptote_C"]) / 4)
        assert f.attrs["config_data"] == "sphere"


def test_t_max_beyond_a_feasible_schedule_uses_a_log_grid(tmp_path):
    out = tmp_path / "theory.h5"
    res = _run(["--t-max", "1e12", "--n-times", "30", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        t = f["t"][()]
        assert t[0] == 0 and t[-1] == 1e12 and len(t) == 31
        assert np.all(np.isfinite(f["gamma"][()]))


def test_latex_prints_the_equations_without_a_file(tmp_path):
    res = _run(["--latex"])
    assert res.exit_code == 0, res.output
    names = [line.split(":")[0] for line in res.output.splitlines()]
    assert "gamma_equation" in names and "asymptote_c" in names and "t_sat" in names


@pytest.mark.parametrize(("args", "message"), [
    (["--d", "0"], "d must be >= 2"),
    (["--h", "-1"], "h must be > 0"),
    (["--beta", "0"], "beta must be > 0"),
    (["--data", "cube"], "data must be one of gaussian, sphere"),
    (["--times", "3,2"], "times must be"),
    (["--times", "1,2", "--t-max", "5"], "either --t-max or --times"),
    (["--activation", "os.system"], "activation"),
])
def test_bad_input_one_line_exit_2_no_file(tmp_path, args, message):
    out = tmp_path / "theory.h5"
    res = _run([*args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_unknown_config_field_in_file(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("d = 20\nwidth = 3\n")
    out = tmp_path / "theory.h5"
    res = _run(["--config", str(toml), "-o", str(out)])
    assert res.exit_code == 2 and "unknown config field 'width'" in res.output
    assert not out.exists()


def test_output_required_without_latex(tmp_path):
    res = _run(["--d", "10"])
    assert res.exit_code == 2 and "--output" in res.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_theory_leaves_no_file_and_says_so(tmp_path, signum):
    """A long theory (1e6 record times to 1e12 with the spread at one x_par: minutes) stopped
    by SIGTERM or Ctrl-C: exit 130, one line saying that a rerun is safe, no output, no .tmp."""
    code = "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "theory", "--t-max", "1e12", "--dt", "1e-3",
         "--n-times", "1000000", "--x-par", "0.5", "-o", str(tmp_path / "t.h5")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # imports done, computing
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted; no file is left half-written: run the "
                                        "same command again (finished results are reused)"]
    assert list(tmp_path.iterdir()) == []


def test_explicit_times_to_1e12_run_at_once(tmp_path):
    """``--times 1e3,1e6,1e9,1e12`` needs no step schedule: seconds, not an endless one."""
    start = time.perf_counter()
    res = CliRunner().invoke(main, ["theory", "--times", "1e3,1e6,1e9,1e12",
                                    "-o", str(tmp_path / "t.h5")])
    assert res.exit_code == 0, res.output
    assert time.perf_counter() - start < 30
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["t"][()].tolist() == [0.0, 1e3, 1e6, 1e9, 1e12]
        g = f["gamma"][()]
        # gamma -> log(t)/4 + c at late times (the asymptote of the closed form)
        assert g[-1] == pytest.approx(np.log(1e12) / 4 + f.attrs["asymptote_c"], abs=1e-3)

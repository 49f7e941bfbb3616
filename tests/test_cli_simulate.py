"""``meanfield simulate``: output, summary, bad input (exit 2, no file), signals and resume."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import make_config
from meanfield.files.checkpoint import checkpoint_path
from meanfield.files.simulation import write_simulation
from meanfield.simulate import simulate

SMALL = ["--M", "20", "--N", "300", "--d", "6", "--n-test", "100", "--t-max", "8",
         "--dt", "0.5", "--n-times", "10", "--seed", "2"]


def _run(args):
    return CliRunner().invoke(main, ["simulate", *args])


def _datasets(path):
    with h5py.File(path, "r") as f:
        return {name: dset[()] for name, dset in f.items()}


def test_writes_the_file_and_a_three_line_summary(tmp_path):
    out = tmp_path / "sim.h5"
    res = _run([*SMALL, "--integrator", "heun", "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0] == f"simulation written to {out}" and len(lines) == 4
    assert "train_error=" in lines[3] and "gamma=" in lines[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5"]  # checkpoint removed
    with h5py.File(out, "r") as f:
        assert f.attrs["meanfield_kind"] == "simulation"
        assert f.attrs["config_integrator"] == "heun" and f["t"][-1] == 8.0


def test_config_file_then_options(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('M = 12\nN = 200\nd = 5\nn_test = 50\nt_max = 3.0\n[train]\nbatch = 40\n')
    out = tmp_path / "sim.h5"
    res = _run(["--config", str(toml), "--seed", "7", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        assert f["a"].shape[1] == 12 and f.attrs["config_batch"] == 40
        assert f.attrs["seed"] == 7


@pytest.mark.parametrize(("args", "message"), [
    (["--M", "0"], "M must be >= 1"),
    (["--dtype", "float16"], "dtype must be one of"),
    (["--batch", "301"], "batch must be in [0, N=300]"),
    (["--integrator", "rk4"], "integrator must be one of"),
    (["--times", "3,1"], "times must be"),
    (["--activation", "exp(x"], "activation"),
    (["--label-noise", "0.5"], "label_noise must be in [0, 0.5)"),
    (["--margin", "8"], "margin must keep"),
    (["--M", "21", "--init", "symmetric"],
     "init = symmetric needs an even M (node i + M/2 mirrors node i), got M=21"),
    (["--init", "pairs"], "init must be one of iid, symmetric; got 'pairs'"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, args, message):
    out = tmp_path / "sim.h5"
    res = _run([*SMALL, *args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_symmetric_init_from_the_command_line(tmp_path):
    """``--init symmetric``: the file records it (config JSON and attribute) and its initial
    nodes are mirrored pairs; ``--init iid`` is the default run, bit for bit, whose recorded
    config has no ``init`` (it keeps the JSON of the runs made before the option existed)."""
    res = _run([*SMALL, "--init", "symmetric", "-o", str(tmp_path / "sym.h5")])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "sym.h5", "r") as f:
        assert f.attrs["config_init"] == "symmetric"
        assert '"init":"symmetric"' in f.attrs["config"]
        a0, w_par0 = f["a0"][()], f["w_par0"][()]
    np.testing.assert_array_equal(a0[10:], -a0[:10])
    np.testing.assert_array_equal(w_par0[10:], w_par0[:10])
    assert _run([*SMALL, "-o", str(tmp_path / "default.h5")]).exit_code == 0
    assert _run([*SMALL, "--init", "iid", "-o", str(tmp_path / "iid.h5")]).exit_code == 0
    default, iid = _datasets(tmp_path / "default.h5"), _datasets(tmp_path / "iid.h5")
    for name in default:
        np.testing.assert_array_equal(default[name], iid[name], err_msg=name)
    with h5py.File(tmp_path / "iid.h5", "r") as f:
        assert "config_init" not in f.attrs and "init" not in f.attrs["config"]
    help_text = CliRunner().invoke(main, ["simulate", "--help"]).output
    assert "--init" in help_text and "symmetric" in help_text


def test_resume_flags(tmp_path):
    out = tmp_path / "sim.h5"
    res = _run([*SMALL, "--resume", "-o", str(out)])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    res = _run([*SMALL, "--resume", "--fresh", "-o", str(out)])
    assert res.exit_code == 2 and "exclude each other" in res.output
    # a checkpoint of another configuration is refused, and --fresh discards it
    c = make_config(M=20, N=300, d=6, n_test=100, t_max=8.0, dt=0.5, n_times=10, seed=99)
    with pytest.raises(Exception, match="interrupted"):
        simulate(c, checkpoint=checkpoint_path(out), should_stop=lambda: True)
    res = _run([*SMALL, "-o", str(out)])
    assert res.exit_code == 2 and "another configuration" in res.output
    res = _run([*SMALL, "--fresh", "-o", str(out)])
    assert res.exit_code == 0 and out.exists() and not checkpoint_path(out).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_rerun_resumes_bitwise(tmp_path, signum):
    """A real process stopped by a signal mid-run leaves a checkpoint and no output; the same
    command run again finishes with exactly the datasets of an uninterrupted run."""
    args = ["--M", "20", "--N", "400", "--d", "8", "--n-test", "100", "--t-max", "150",
            "--dt", "1", "--n-times", "20", "--seed", "5", "--checkpoint-every", "5"]
    out = tmp_path / "sim.h5"
    ckpt = checkpoint_path(out)
    cmd = [sys.executable, "-c", "from cli.main import main; main()", "simulate", *args,
           "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast)")
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert ckpt.exists() and not out.exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stderr and not ckpt.exists()

    config = make_config(M=20, N=400, d=8, n_test=100, t_max=150.0, dt=1.0, n_times=20,
                         seed=5, checkpoint_every=5)
    whole = tmp_path / "whole.h5"
    write_simulation(simulate(config), whole)
    resumed, uninterrupted = _datasets(out), _datasets(whole)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)


@pytest.mark.parametrize("sizes", [["--N", "100000000000"], ["--M", "100000000", "--N", "1000"]])
def test_a_run_that_cannot_fit_is_refused_before_allocating(tmp_path, sizes):
    res = _run([*sizes, "--d", "100", "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "needs about" in res.output and "available" in res.output
    assert list(tmp_path.iterdir()) == []
    res = _run([*sizes, "--d", "100", "--max-memory", "1GiB", "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 2 and "1 GiB allowed" in res.output

"""``meanfield sweep`` on real Dask worker processes: point files, merge, resume, faults.

Every test that runs points uses a real ``distributed.LocalCluster`` of two single-threaded
worker processes on 127.0.0.1: the module's own (passed as ``client=`` or ``--scheduler``) or
the one the command starts. References are made in this process by
:func:`meanfield.simulate.simulate` and :func:`write_simulation`, the code path of
``meanfield simulate``; "bitwise" compares every dataset's dtype, shape and bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from cli.main import main
from meanfield import sweep as engine
from meanfield.config import run_hash
from meanfield.files.simulation import SERIES, read_simulation, write_simulation
from meanfield.simulate import simulate
from meanfield.sweep_spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
MEANFIELD = [sys.executable, "-c",
             "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

TINY = {"sweep": {"seeds": 2, "name": "tiny"},
        "base": {"N": 400, "d": 8, "t_max": 8.0, "n_test": 100, "n_times": 9},
        "grid": {"M": [12, 24]}}
TINY_TOML = """[sweep]
seeds = 2
name = "tiny"
[base]
N = 400
d = 8
t_max = 8.0
n_test = 100
n_times = 9
[grid]
M = [12, 24]
"""
#: a point that runs for a few seconds on one core, checkpointing on the way
SLOW_TOML = """[sweep]
seeds = [5]
[base]
N = 20000
d = 40
M = 200
t_max = 150.0
dt = 0.5
n_test = 100
[grid]
alpha = [1.0]
"""


def datasets(path: Path) -> dict[str, tuple[str, tuple, bytes]]:
    """Every dataset of an HDF5 file: dtype, shape and the bytes of its values."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = np.asarray(obj[()])
                out[name] = (str(value.dtype), value.shape, value.tobytes())
        f.visititems(visit)
    return out


def reference(config, folder: Path) -> Path:
    """The file ``meanfield simulate`` writes for ``config``."""
    path = folder / f"ref-{run_hash(config)}.h5"
    if not path.exists():
        write_simulation(simulate(config), path)
    return path


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` (but the lock) with its mtime and bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: two worker processes of one thread on 127.0.0.1."""
    from distributed import Client, LocalCluster

    environ = {k: "1" for k in engine.THREAD_VARIABLES}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, memory_limit=0)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs")
    spec = parse_spec(TINY)
    return {p.hash: reference(p.config, folder) for p in spec.points()}


def invoke(args, cwd: Path):
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, ["sweep", *args], catch_exceptions=True)
    finally:
        os.chdir(before)


# --------------------------------------------------------------------------- the library


def test_point_files_are_named_by_run_hash_and_equal_simulate_bitwise(client, refs, tmp_path):
    spec = parse_spec(TINY)
    result = engine.run(spec, tmp_path / "out", client=client)
    assert [r.status for r in result.runs] == ["ran"] * 4
    assert result.workers == 2 and result.threads_per_worker == 1
    names = sorted(p.name for p in (tmp_path / "out" / "points").iterdir())
    assert names == sorted(f"{run_hash(p.config)}.h5" for p in spec.points())
    for p in spec.points():
        assert datasets(tmp_path / "out" / "points" / f"{p.hash}.h5") == datasets(refs[p.hash])
    assert all(r.numba_cache_misses == 0 for r in result.runs)
    assert (tmp_path / "out" / "sweep.toml").read_text() == spec.to_toml()


def test_the_merged_file_opens_with_xarray_and_holds_the_point_files(client, refs, tmp_path):
    spec = parse_spec(TINY)
    engine.run(spec, tmp_path / "out", client=client)
    ds = xr.open_dataset(tmp_path / "out" / "sweep.nc", engine="h5netcdf")
    assert dict(ds.sizes) == {"run": 4, "t": 9}
    assert {"M", "seed", "run_hash", "complete"} <= set(ds.coords)
    assert ds["complete"].dtype == bool and bool(ds["complete"].all())
    assert list(ds["M"].values) == [12, 12, 24, 24] and list(ds["seed"].values) == [0, 1, 0, 1]
    assert ds.attrs["meanfield_kind"] == "sweep" and ds.attrs["n_complete"] == 4
    assert json.loads(ds.attrs["swept"]) == ["M", "seed"]
    for row, p in enumerate(spec.points()):
        assert ds["run_hash"].values[row] == p.hash
        sim = read_simulation(refs[p.hash])
        np.testing.assert_array_equal(ds["t"].values, sim.t)
        for name in SERIES:
            np.testing.assert_array_equal(ds[name].values[row], sim.series[name].astype(float))
    cube = ds.set_index(run=["M", "seed"]).unstack("run")
    assert cube["gamma"].dims == ("t", "M", "seed") and cube["gamma"].shape == (9, 2, 2)
    np.testing.assert_array_equal(cube["gamma"].sel(M=24, seed=1).values,
                                  ds["gamma"].values[3])


def test_an_all_done_rerun_starts_no_worker_and_changes_no_byte(client, tmp_path):
    spec = parse_spec(TINY)
    engine.run(spec, tmp_path / "out", client=client)
    before = tree(tmp_path / "out")
    start = time.monotonic()
    again = engine.run(spec, tmp_path / "out")  # no client: a cluster would have to start
    assert time.monotonic() - start < 3.0
    assert again.engine == "none" and again.workers == 0 and again.warmup is None
    assert [r.status for r in again.runs] == ["skipped"] * 4
    assert tree(tmp_path / "out") == before


def test_a_damaged_point_file_is_moved_aside_and_rerun(client, refs, tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "out"
    engine.run(spec, out, client=client)
    victim = out / "points" / f"{spec.points()[1].hash}.h5"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    (out / "points" / "x.h5.123.0badc0de.tmp").write_bytes(b"stale")
    warnings: list[str] = []
    result = engine.run(spec, out, client=client, on_warning=warnings.append)
    assert [r.status for r in result.runs] == ["skipped", "ran", "skipped", "skipped"]
    aside = list((out / "points").glob(f"{victim.name}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == raw[: len(raw) // 2]
    assert datasets(victim) == datasets(refs[spec.points()[1].hash])
    assert any("moved aside" in w for w in warnings)
    assert not list((out / "points").glob("*.tmp"))


def test_points_of_another_spec_are_left_alone_and_new_points_only_are_run(client, tmp_path):
    out = tmp_path / "out"
    engine.run(parse_spec(TINY), out, client=client)
    before = tree(out / "points")
    more = {**TINY, "sweep": {"seeds": 3}}
    result = engine.run(parse_spec(more), out, client=client)
    assert [r.status for r in result.runs].count("ran") == 2
    after = tree(out / "points")
    assert all(after[name] == value for name, value in before.items())


def test_a_failing_point_is_reported_and_the_others_are_merged(client, tmp_path):
    spec = parse_spec({"base": {"N": 300, "d": 6, "M": 10, "t_max": 20.0, "n_test": 50,
                                "loss": "squared", "alpha": 10.0},
                       "grid": {"beta": [0.01, 1e3]}})
    result = engine.run(spec, tmp_path / "out", client=client, retries=0)
    assert [r.status for r in result.runs] == ["ran", "failed"]
    assert "diverged" in result.runs[1].error and "\n" not in result.runs[1].error
    ds = xr.open_dataset(tmp_path / "out" / "sweep.nc", engine="h5netcdf")
    assert list(ds["complete"].values) == [True, False]
    assert np.isnan(ds["gamma"].values[1]).all() and np.isfinite(ds["gamma"].values[0]).all()


def test_a_killed_worker_resumes_its_point_from_the_checkpoint(client, tmp_path):
    spec = parse_spec(__import__("tomllib").loads(SLOW_TOML))
    point = spec.points()[0]
    out = tmp_path / "out"
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(
        result=engine.run(spec, out, client=client, checkpoint_seconds=0.3)))
    thread.start()
    ckpt = out / "points" / f"{point.hash}.ckpt.h5"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint was written"
    running = [w for w, keys in client.processing().items() if keys]
    pids = client.run(os.getpid, workers=running)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)
    result = box["result"]
    assert [r.status for r in result.runs] == ["resumed"]
    assert datasets(out / "points" / f"{point.hash}.h5") == datasets(
        reference(point.config, tmp_path))
    assert sorted(p.name for p in (out / "points").iterdir()) == [f"{point.hash}.h5"]
    client.wait_for_workers(2, timeout=60)


def test_a_second_sweep_on_a_locked_outdir_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with engine.outdir_lock(out, write_pid=True):
        (tmp_path / "tiny.toml").write_text(TINY_TOML)
        result = invoke(["tiny.toml", "-o", "out"], tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0], result.output
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_dry_run_lists_statuses_and_creates_nothing(client, tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "tiny"
    engine.run(spec, out, client=client)
    (out / "points" / f"{spec.points()[0].hash}.h5").unlink()
    ckpt = out / "points" / f"{spec.points()[1].hash}.ckpt.h5"
    (out / "points" / f"{spec.points()[1].hash}.h5").rename(ckpt)
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    before = tree(tmp_path)
    result = invoke(["tiny.toml", "--dry-run", "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["points"] == 4
    assert [r["status"] for r in doc["runs"]] == ["todo", "partial", "done", "done"]
    assert [r["hash"] for r in doc["runs"]] == [p.hash for p in spec.points()]
    assert doc["runs"][3]["values"] == {"M": 24, "seed": 1}
    assert doc["runs"][3]["config"]["M"] == 24 and doc["runs"][3]["config"]["threads"] == 1
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- the command


def test_the_command_on_a_scheduler_equals_the_local_default_bitwise(client, refs, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    address = client.scheduler.address
    remote = invoke(["tiny.toml", "-o", "remote", "--scheduler", address, "--json"], tmp_path)
    assert remote.exit_code == 0, remote.output
    doc = json.loads(remote.output)
    assert doc["engine"] == address and doc["ran"] == 4 and doc["points"] == 4
    local = subprocess.run([*MEANFIELD, "sweep", "tiny.toml", "--no-progress"],
                           cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    assert local.stdout.startswith("4 points: 4 ran, 0 resumed, 0 skipped, 0 failed in ")
    assert "on 2 local workers; merged: tiny/sweep.nc" in local.stdout
    for p in parse_spec(TINY).points():
        name = f"points/{p.hash}.h5"
        assert datasets(tmp_path / "remote" / name) == datasets(tmp_path / "tiny" / name)
        assert datasets(tmp_path / "tiny" / name) == datasets(refs[p.hash])
    with h5py.File(tmp_path / "remote" / "sweep.nc") as a, \
            h5py.File(tmp_path / "tiny" / "sweep.nc") as b:
        for name in SERIES:
            assert a[name][()].tobytes() == b[name][()].tobytes()


#: online points whose forward passes take whole and partial blocks of 2048 rows (the
#: kernels differ: a warm-up of one block missed one), in two dtypes
KINDS_TOML = """[sweep]
seeds = [0, 1]
[base]
M = 6
N = 4500
d = 5
n_test = 2100
t_max = 3.0
online = true
[grid]
dtype = ["float64", "float32"]
"""


def test_cache_misses_are_zero_from_an_empty_numba_cache(tmp_path):
    from meanfield.step.engine import DEFAULT_BLOCK

    assert DEFAULT_BLOCK < 2100 < 2500 < 2 * DEFAULT_BLOCK < 4500  # whole and partial blocks
    (tmp_path / "kinds.toml").write_text(KINDS_TOML)
    env = {**ENV, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    run = subprocess.run([*MEANFIELD, "sweep", "kinds.toml", "--json"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["warmup"]["workers"] == 1 and doc["warmup"]["seconds"] > 0
    assert [r["numba_cache_misses"] for r in doc["runs"]] == [0] * 4
    assert doc["ran"] + doc["resumed"] + doc["skipped"] + doc["failed"] == doc["points"]
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))


def test_sigkill_of_the_whole_sweep_leaves_no_process_and_the_rerun_completes(tmp_path):
    (tmp_path / "slow.toml").write_text(SLOW_TOML.replace("seeds = [5]", "seeds = [5, 6]"))
    args = [*MEANFIELD, "sweep", "slow.toml", "--checkpoint-seconds", "0.3", "--no-progress"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    points = tmp_path / "slow" / "points"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(points.glob("*.ckpt.h5")):
        time.sleep(0.02)
    assert list(points.glob("*.ckpt.h5")), proc.stderr.read() if proc.poll() else "no ckpt"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    alive = True
    while alive and time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            alive = False
    assert not alive, "a process of the killed sweep survived"
    for path in points.iterdir():
        assert path.name.endswith((".h5", ".tmp")), path
    rerun = subprocess.run([*MEANFIELD, "sweep", "slow.toml", "--json"], cwd=tmp_path,
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["resumed"] >= 1 and doc["ran"] + doc["resumed"] + doc["skipped"] == 2
    for p in parse_spec(__import__("tomllib").loads(
            SLOW_TOML.replace("seeds = [5]", "seeds = [5, 6]"))).points():
        assert datasets(points / f"{p.hash}.h5") == datasets(reference(p.config, tmp_path))
    assert sorted(x.name for x in points.iterdir()) == sorted(
        f"{p}.h5" for p in (r["hash"] for r in doc["runs"]))


def test_ctrl_c_checkpoints_running_points_and_exits_130(tmp_path):
    (tmp_path / "slow.toml").write_text(SLOW_TOML)
    proc = subprocess.Popen([*MEANFIELD, "sweep", "slow.toml", "--no-progress",
                             "--checkpoint-seconds", "0.3"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    points = tmp_path / "slow" / "points"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(points.glob("*.ckpt.h5")):
        time.sleep(0.02)  # the point is running
    import psutil

    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    listening = {c.laddr.ip for p in family for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening and listening <= {"127.0.0.1"}, listening  # nothing but loopback
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the point finished before the signal")
    assert proc.returncode == 130, err
    line = [x for x in err.splitlines() if x.strip()][-1]
    assert "0 of 1 points complete, 1 checkpointed" in line
    assert "run the same command again to resume" in line
    assert [p.name.endswith(".ckpt.h5") for p in points.iterdir()] == [True]


# --------------------------------------------------------------------------- refusals


REFUSED = {
    "unknown-table": ("[sweeps]\nseeds = 2\n", "unknown top-level table"),
    "unknown-field": ("[grid]\nQ = [1, 2]\n", "unknown config field 'Q'"),
    "two-tables": ("[base]\nM = 20\n[grid]\nM = [20, 40]\n", "M is in both"),
    "not-a-list": ("[grid]\nM = 20\n", "must be a non-empty list"),
    "empty-list": ("[grid]\nM = []\n", "must be a non-empty list"),
    "zip-lengths": ("[zip]\nalpha = [1.0, 2.0]\nbeta = [1.0]\n", "one common length"),
    "seeds-zero": ("[sweep]\nseeds = 0\n", "seeds must be a positive integer"),
    "seeds-twice": ("[sweep]\nseeds = 2\n[base]\nseed = 3\n", "seed is given both"),
    "seeds-repeat": ("[sweep]\nseeds = [1, 1]\n", "distinct"),
    "out-of-range": ("[grid]\nM = [20, 0]\n", "run 1 (M=0, seed=0)"),
    "same-hash": ("[grid]\nM = [20, 20]\n", "same run hash"),
    "checkpoint-swept": ("[grid]\ncheckpoint_every = [1, 2]\n", "checkpoint_every"),
    "threads-zero": ("[base]\nthreads = 0\n", "threads = 0"),
    "too-many": ("[sweep]\nseeds = 100001\n", "more than 100000"),
    "not-toml": ("[grid\nM = 1", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_spec_is_refused_in_one_line_and_nothing_is_created(name, tmp_path):
    text, needle = REFUSED[name]
    (tmp_path / "bad.toml").write_text(text)
    before = tree(tmp_path)
    result = invoke(["bad.toml"], tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert tree(tmp_path) == before and not (tmp_path / "bad").exists()


BAD_OPTIONS = {
    "workers-0": (["tiny.toml", "--workers", "0"], "--workers"),
    "scheduler-form": (["tiny.toml", "--scheduler", "http://x:1"], "tcp://HOST:PORT"),
    "scheduler-port": (["tiny.toml", "--scheduler", "tcp://x:99999"], "tcp://HOST:PORT"),
    "both-schedulers": (["tiny.toml", "--scheduler", "tcp://a:1", "--scheduler-file", "f"],
                        "exclude each other"),
    "timeout-0": (["tiny.toml", "--connect-timeout", "0"], "--connect-timeout"),
    "timeout-nan": (["tiny.toml", "--connect-timeout", "nan"], "--connect-timeout"),
    "checkpoint-inf": (["tiny.toml", "--checkpoint-seconds", "inf"], "--checkpoint-seconds"),
    "retries-negative": (["tiny.toml", "--retries", "-1"], "--retries"),
    "output-file": (["tiny.toml", "-o", "tiny.toml"], "existing file"),
    "spec-and-study": (["tiny.toml", "--study", "alpha"], "one of them"),
    "neither": ([], "one of them"),
    "quick-alone": (["tiny.toml", "--quick"], "--quick goes with --study"),
    "missing-spec": (["nothere.toml"], "does not exist"),
    "unknown-study": (["--study", "finite-x"], "finite-x"),
    "unreachable": (["tiny.toml", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout",
                     "1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    "no-scheduler-file": (["tiny.toml", "--scheduler-file", "none.json"], "does not exist"),
    "cuda-without-cupy": (["gpu.toml"], "needs CuPy"),
}


@pytest.mark.parametrize("name", sorted(BAD_OPTIONS))
def test_a_bad_option_is_refused_in_one_line_and_nothing_is_created(name, tmp_path):
    args, needle = BAD_OPTIONS[name]
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    (tmp_path / "gpu.toml").write_text(TINY_TOML.replace("[grid]", 'device = "cuda"\n[grid]'))
    before = tree(tmp_path)
    result = invoke(args, tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert tree(tmp_path) == before and not (tmp_path / "tiny").exists()


def test_print_spec_round_trips(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    result = invoke(["tiny.toml", "--print-spec"], tmp_path)
    assert result.exit_code == 0
    (tmp_path / "again.toml").write_text(result.output)
    a = json.loads(invoke(["tiny.toml", "--dry-run", "--json"], tmp_path).output)
    b = json.loads(invoke(["again.toml", "--dry-run", "--json"], tmp_path).output)
    assert a == b and a["points"] == 4


with contextlib.suppress(ImportError):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    VALUES = st.one_of(st.integers(-3, 60), st.floats(allow_nan=True, allow_infinity=True),
                       st.booleans(), st.text(max_size=8),
                       st.lists(st.integers(-2, 40), max_size=3))
    FIELDS = st.sampled_from(["M", "N", "d", "alpha", "dt", "seed", "activation", "online",
                              "threads", "times", "checkpoint_every", "bogus", "t_max"])

    def _toml(value) -> str:
        return json.dumps(value) if not isinstance(value, bool) else str(value).lower()

    @st.composite
    def spec_texts(draw) -> str:
        lines = []
        for table in draw(st.lists(st.sampled_from(["sweep", "base", "grid", "zip", "x"]),
                                   max_size=3, unique=True)):
            lines.append(f"[{table}]")
            for key in draw(st.lists(FIELDS, max_size=3, unique=True)):
                value = draw(st.one_of(VALUES, st.lists(VALUES, max_size=3)))
                lines.append(f"{key} = {_toml(value)}")
        return "\n".join(lines) + "\n"

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(text=spec_texts())
    def test_no_spec_crashes_the_dry_run(text):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "s.toml").write_text(text)
            result = invoke(["s.toml", "--dry-run", "--json"], Path(folder))
            assert result.exit_code in (0, 2), (text, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), text
            assert "Traceback" not in result.output
            if result.exit_code == 2:
                assert len(result.output.strip().splitlines()) == 1, (text, result.output)
            assert sorted(os.listdir(folder)) == ["s.toml"]


# --------------------------------------------------------------------------- pieces


def test_the_probe_names_a_folder_the_worker_cannot_see(tmp_path):
    (tmp_path / ".probe-x").write_text("abc")
    assert engine.probe_outdir(str(tmp_path), ".probe-x", "abc") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".probe-x"]
    assert engine.probe_outdir(str(tmp_path / "elsewhere"), ".probe-x", "abc")
    assert engine.probe_outdir(str(tmp_path), ".probe-x", "other") == \
        "the probe file has other content"


def test_default_workers_follow_cores_threads_points_and_memory():
    one = parse_spec({"base": {"M": 10, "N": 100, "d": 5}}).points()
    many = parse_spec({"sweep": {"seeds": 64}, "base": {"M": 10, "N": 100, "d": 5}}).points()
    cores = engine.usable_cores()
    assert engine.default_workers([p.config for p in one]) == 1
    assert engine.default_workers([p.config for p in many]) == cores
    wide = parse_spec({"sweep": {"seeds": 64},
                       "base": {"M": 10, "N": 100, "d": 5, "threads": cores}}).points()
    assert engine.default_workers([p.config for p in wide]) == 1
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    from meanfield.memory import estimate

    big = parse_spec({"sweep": {"seeds": 64}, "base": {"M": 40, "N": 10**7, "d": 100,
                                                        "n_test": 0}}).points()
    peak = estimate(big[0].config, "simulate").total
    assert engine.default_workers([p.config for p in big]) == max(
        1, min(cores, int(0.8 * total // peak)))


def test_a_merge_of_points_from_two_revisions_warns(client, tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "out"
    engine.run(spec, out, client=client)
    with h5py.File(out / "points" / f"{spec.points()[0].hash}.h5", "r+") as f:
        f.attrs["git_revision"] = "0123456789abcdef"
    path, warnings = engine.merge(spec, out, force=True)  # same points: only forced
    assert len(warnings) == 1 and "2 git revisions" in warnings[0]
    ds = xr.open_dataset(path, engine="h5netcdf")
    assert ds["git_revision"].values[0] == "0123456789abcdef"
    assert len(set(ds["git_revision"].values[1:])) == 1

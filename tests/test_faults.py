"""Faults leave nothing half-written.

- writes that fail part-way (a file-size limit, a folder removed or read-only) end with one line,
  the previous file intact and no ``.tmp`` left; a ``.tmp`` left by a killed process is replaced;
- truncated, bit-flipped or incomplete input files are refused with one line (exit status 2);
  every numeric variable carries a checksum, so one flipped bit in any of them is detected;
- SIGINT / SIGTERM stop ``simulate`` with a valid checkpoint and one line saying how to resume;
- SIGKILL at random moments (a fixed seed) of ``simulate`` (with checkpoints), ``theory``,
  ``compare -o`` and ``reproduce --quick`` (slow): after every kill each file present is a
  complete valid meanfield file or absent, the same command run again completes, and the final
  files hold bitwise the datasets of an uninterrupted run.

The commands run in a subprocess, as a user runs them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.files.checkpoint import checkpoint_config, checkpoint_path, read_checkpoint
from meanfield.files.comparison import read_comparison
from meanfield.files.simulation import read_simulation
from meanfield.files.theory import read_theory
from meanfield.io import (
    NotMeanfieldFile,
    WriteFailed,
    atomic_h5,
    open_meanfield,
    set_attrs,
    write_coordinate,
    write_variable,
)

ROOT = Path(__file__).resolve().parents[1]
MEANFIELD = [sys.executable, "-c",
             "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

SIM = ["--M", "30", "--N", "1500", "--d", "10", "--n-test", "300", "--t-max", "60",
       "--n-times", "15", "--seed", "3"]
THEORY = ["--d", "10", "--t-max", "100", "--n-times", "40"]
READERS = {"simulation": read_simulation, "theory": read_theory, "comparison": read_comparison}


def _meanfield(args, cwd, timeout=300, fsize=None):
    """Run ``meanfield ARGS`` in ``cwd``; ``fsize``: a file-size limit in bytes."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    return subprocess.run([*MEANFIELD, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit if fsize is not None else None)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _overwrite(command: str) -> list[str]:
    """``--overwrite`` where the command has it (to force a write over an older file)."""
    cmd = main.get_command(None, command)
    return ["--overwrite"] if any(p.name == "overwrite" for p in cmd.params) else []


def datasets(path) -> dict[str, tuple[str, tuple, bytes]]:
    """Every dataset of an HDF5 file by path: dtype, shape and the bytes of its values."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = np.asarray(obj[()])
                out[name] = (value.dtype.str, value.shape, value.tobytes())
        f.visititems(visit)
    return out


def check_file(path: Path) -> None:
    """Read ``path`` with its own reader (every variable, checksums included)."""
    if path.name.endswith(".ckpt.h5"):
        read_checkpoint(path, checkpoint_config(path))
        return
    with open_meanfield(path) as f:
        kind = f.attrs["meanfield_kind"]
    READERS[kind.decode() if isinstance(kind, bytes) else kind](path)


def _small_file(path, n=300, value=2.0):
    with atomic_h5(path) as f:
        set_attrs(f, {"meanfield_kind": "theory"})
        write_coordinate(f, "t", np.linspace(0, 1, n))
        write_variable(f, "gamma", np.full(n, value), ["t"])


# --------------------------------------------------------------------------- failed writes


def test_a_leftover_tmp_is_replaced_by_the_next_write(tmp_path):
    path = tmp_path / "x.h5"
    tmp = tmp_path / "x.h5.tmp"
    tmp.write_bytes(b"\x89HDF\r\n\x1a\n half a file from a killed process")
    tmp.chmod(0o444)
    _small_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]
    with open_meanfield(path) as f:
        assert f["gamma"][-1] == 2.0


def test_a_write_past_the_file_size_limit_leaves_the_previous_file(tmp_path):
    path = tmp_path / "x.h5"
    _small_file(path, n=50)
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 1000, hard))
    try:
        with pytest.raises(WriteFailed) as err:
            _small_file(path, n=200_000, value=3.0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "File too large" in message
    assert "previous file is unchanged" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]


def test_a_vanished_output_folder_is_one_line(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(WriteFailed) as err:
        with atomic_h5(folder / "x.h5") as f:
            write_coordinate(f, "t", np.arange(10.0))
            shutil.rmtree(folder)
    assert "\n" not in str(err.value) and "no file was written" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    _small_file(folder / "x.h5")
    before = (folder / "x.h5").read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteFailed, match="Permission denied"):
            _small_file(folder / "x.h5", value=3.0)
    finally:
        folder.chmod(0o755)
    assert (folder / "x.h5").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["x.h5"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A small simulation and theory written by the commands (``sim.h5``, ``theory.h5``)."""
    tmp = tmp_path_factory.mktemp("made")
    runner = CliRunner()
    for args in (["simulate", *SIM, "-o", str(tmp / "sim.h5")],
                 ["theory", *THEORY, "-o", str(tmp / "theory.h5")]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
    return tmp


@pytest.mark.parametrize("command", ["simulate", "theory", "compare"])
def test_a_command_past_the_file_size_limit_exits_with_one_line(made, tmp_path, command):
    """The write fails part-way (EFBIG): exit status non-zero, one line naming the file, the
    previous file (another configuration, replaced with --overwrite) intact, no partial
    file."""
    out = tmp_path / "out.h5"
    older = {"simulate": made / "sim.h5", "theory": made / "theory.h5",
             "compare": made / "theory.h5"}[command]
    shutil.copy(older, out)
    before = out.read_bytes()
    args = {"simulate": ["simulate", *SIM[:-1], "4"],
            "theory": ["theory", *THEORY[:-1], "41"],
            "compare": ["compare", str(made / "sim.h5"), str(made / "theory.h5")]}[command]
    res = _meanfield([*args, "-o", str(out), *_overwrite(command)], tmp_path,
                     fsize=len(before) // 4)
    assert res.returncode not in (0, -signal.SIGSEGV, -signal.SIGXFSZ), res.stderr
    line = _one_line(res.stderr)
    assert str(out) in line and "File too large" in line, line
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


# --------------------------------------------------------------------------- damaged inputs


def _flip_in_chunk(path: Path, name: str) -> None:
    """Flip one bit in the middle of the stored bytes of dataset ``name``'s first chunk."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0x04
    path.write_bytes(bytes(raw))


def _numeric_datasets(path: Path) -> list[str]:
    out = []
    with h5py.File(path, "r") as f:
        for name, obj in f.items():
            if obj.dtype.kind in "fiub" and obj.size > 0:
                out.append(name)
    return out


#: index coordinates the simulation reader does not read (it numbers the examples itself)
UNREAD = {"example", "test_example"}


@pytest.mark.parametrize("kind", ["sim.h5", "theory.h5"])
def test_one_flipped_bit_in_any_variable_is_detected(made, tmp_path, kind):
    """Every numeric variable is checksummed: one flipped bit in the data of any of them fails
    its read, and the reader refuses the file (one line) instead of returning a wrong
    number."""
    reader = read_simulation if kind == "sim.h5" else read_theory
    names = _numeric_datasets(made / kind)
    assert len(names) >= 5
    for name in names:
        bad = tmp_path / f"{name}-{kind}"
        shutil.copy(made / kind, bad)
        _flip_in_chunk(bad, name)
        with h5py.File(bad, "r") as f, pytest.raises(OSError, match="filter returned failure"):
            f[name][()]
        if name in UNREAD:
            continue
        with pytest.raises(NotMeanfieldFile) as err:
            reader(bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value), name


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def _flipped(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    _flip_in_chunk(dst, "t_sat" if "sim" in src.name else "gamma")
    return dst


def _missing(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        del f["gamma"]
    return dst


def _empty(src: Path, dst: Path) -> Path:
    dst.write_bytes(b"")
    return dst


@pytest.mark.parametrize("damage", [_truncated, _flipped, _missing, _empty])
@pytest.mark.parametrize("which", ["simulation", "theory"])
def test_compare_refuses_a_damaged_input_with_one_line(made, tmp_path, damage, which):
    """``compare`` given a truncated, bit-flipped or incomplete file: exit 2, one line naming
    the file, no output written."""
    sim, th = made / "sim.h5", made / "theory.h5"
    if which == "simulation":
        sim = damage(sim, tmp_path / "bad-sim.h5")
    else:
        th = damage(th, tmp_path / "bad-theory.h5")
    res = CliRunner().invoke(main, ["compare", str(sim), str(th), "-o",
                                    str(tmp_path / "cmp.h5")])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    line = _one_line(res.output)
    assert line.startswith("Error:") and "bad-" in line, line
    assert not (tmp_path / "cmp.h5").exists()


def test_compare_on_a_damaged_file_in_a_real_process(made, tmp_path):
    """The same as a user runs it: no crash of the HDF5 library, one line, exit 2."""
    bad = _truncated(made / "sim.h5", tmp_path / "bad-sim.h5")
    res = _meanfield(["compare", str(bad)], tmp_path)
    assert res.returncode == 2 and "truncated" in _one_line(res.stderr), res.stderr
    bad = _flipped(made / "sim.h5", tmp_path / "flip-sim.h5")
    res = _meanfield(["compare", str(bad), str(made / "theory.h5")], tmp_path)
    assert res.returncode == 2 and "damaged" in _one_line(res.stderr), res.stderr


READ_EACH = """
import sys
from meanfield.files.simulation import read_simulation
from meanfield.io import NotMeanfieldFile
for path in sys.argv[1:]:
    try:
        read_simulation(path)
        print("read", flush=True)
    except NotMeanfieldFile as err:
        print("refused" if "\\n" not in str(err) else "refused on several lines", flush=True)
    except BaseException as err:
        print("ERROR", type(err).__name__, " ".join(str(err).split())[:200], flush=True)
"""


def test_flipped_bits_in_the_metadata_never_crash_the_reader(made, tmp_path):
    """Bits flipped at 60 random places outside the data (headers, attributes, b-trees; not
    checksummed in this file format): each file is read or refused with one line, never a
    crash of the HDF5 library (the reads run in a subprocess) nor another exception."""
    src = made / "sim.h5"
    raw = src.read_bytes()
    data = np.zeros(len(raw), dtype=bool)
    with h5py.File(src, "r") as f:
        for obj in f.values():
            for i in range(obj.id.get_num_chunks() if obj.chunks else 0):
                info = obj.id.get_chunk_info(i)
                data[info.byte_offset: info.byte_offset + info.size] = True
    rng = np.random.default_rng(7)
    paths = []
    for k, where in enumerate(rng.choice(np.flatnonzero(~data), 60, replace=False)):
        damaged = bytearray(raw)
        damaged[where] ^= 1 << int(rng.integers(8))
        paths.append(tmp_path / f"m{k}.h5")
        paths[-1].write_bytes(bytes(damaged))
    res = subprocess.run([sys.executable, "-c", READ_EACH, *map(str, paths)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    outcomes = res.stdout.split("\n")[:-1]
    assert res.returncode == 0 and len(outcomes) == len(paths), (res.returncode, res.stderr)
    assert set(outcomes) <= {"read", "refused"}, [o for o in outcomes if o.startswith("E")]
    assert "refused" in outcomes


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    """A checkpoint with a flipped bit in the weights: simulate refuses it (exit 2, one line
    pointing to --fresh) instead of resuming from wrong weights; --fresh runs."""
    out = tmp_path / "sim.h5"
    args = ["simulate", *SIM, "--checkpoint-every", "5", "-o", str(out)]
    proc = subprocess.Popen([*MEANFIELD, *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = checkpoint_path(out)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    if not ckpt.exists():
        pytest.skip("the run ended before its first checkpoint")
    _flip_in_chunk(ckpt, "W")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--fresh" in errors[0], res.output
    assert not out.exists()
    assert CliRunner().invoke(main, [*args, "--fresh"]).exit_code == 0


# --------------------------------------------------------------------------- SIGINT / SIGTERM

SIGNAL_MOMENTS = 4  # per signal, random fractions of the run after its first checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_random_moments_leaves_a_valid_checkpoint_and_one_line(tmp_path, signum):
    args = ["simulate", "--M", "30", "--N", "1500", "--d", "10", "--n-test", "300",
            "--t-max", "400", "--dt", "1", "--n-times", "20", "--seed", "3",
            "--checkpoint-every", "7", "-o", "sim.h5"]
    ref = tmp_path / "ref"
    ref.mkdir()
    start = time.monotonic()
    assert _meanfield(args, ref).returncode == 0
    whole = time.monotonic() - start
    rng = np.random.default_rng(int(signum))
    stopped = 0
    for k, fraction in enumerate(rng.uniform(0.0, 0.8, SIGNAL_MOMENTS)):
        folder = tmp_path / f"run{k}"
        folder.mkdir()
        proc = subprocess.Popen([*MEANFIELD, *args], cwd=folder, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ckpt = folder / "sim.ckpt.h5"
        begun = time.monotonic()
        while not ckpt.exists() and proc.poll() is None and time.monotonic() - begun < 120:
            time.sleep(0.002)
        time.sleep(fraction * whole / 2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0 or (folder / "sim.h5").exists():
            continue  # the run had ended (or written its result) before the signal
        stopped += 1
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in _one_line(err)
        assert not (folder / "sim.h5").exists() and not (folder / "sim.h5.tmp").exists()
        check_file(ckpt)
        rerun = _meanfield(args, folder)
        assert rerun.returncode == 0, rerun.stderr
        assert datasets(folder / "sim.h5") == datasets(ref / "sim.h5")
        assert sorted(p.name for p in folder.iterdir()) == ["sim.h5"]
    assert stopped >= 1, "every run ended before its signal"


# --------------------------------------------------------------------------- SIGKILL

#: provenance lines of a text output that differ from run to run (like the files' attributes)
PROVENANCE = (b"created", b"git revision")


def _stable(path: Path) -> bytes:
    """The bytes of ``path`` less its provenance lines (text outputs; figures unchanged)."""
    raw = path.read_bytes()
    if path.suffix != ".tex":
        return raw
    return b"\n".join(line for line in raw.split(b"\n")
                      if not any(key in line for key in PROVENANCE))


class Campaign:
    """SIGKILLs of one command at random moments, each followed by a check of every file."""

    def __init__(self, args, folder: Path, outputs, reference: Path):
        self.args, self.folder, self.outputs, self.reference = args, folder, outputs, reference
        self.kills = self.completed = self.checked = self.lost = 0
        self.tmp_kills = 0

    def check_folder(self) -> None:
        for path in sorted(self.folder.iterdir()):
            if path.suffix == ".h5":
                self.checked += 1
                try:
                    check_file(path)
                except Exception as err:
                    self.lost += 1
                    raise AssertionError(f"unreadable after a kill: {path}: {err}") from err

    def check_complete(self) -> None:
        assert not list(self.folder.glob("*.tmp")), sorted(self.folder.iterdir())
        for name in self.outputs:
            if name.endswith(".h5"):
                assert datasets(self.folder / name) == datasets(self.reference / name), name
            else:
                assert _stable(self.folder / name) == _stable(self.reference / name), name

    def run(self, moment: float | None) -> None:
        """One run killed after ``moment`` seconds (``None``: as soon as a .tmp appears)."""
        proc = subprocess.Popen([*MEANFIELD, *self.args], cwd=self.folder, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if moment is None:
            begun = time.monotonic()
            while (proc.poll() is None and not list(self.folder.glob("*.tmp"))
                   and time.monotonic() - begun < 300):
                time.sleep(0.0005)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=moment)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            self.kills += 1
            self.tmp_kills += moment is None
        else:
            _, err = proc.communicate()
            assert proc.returncode == 0, err
        self.check_folder()
        if all((self.folder / name).exists() for name in self.outputs):
            # the run (or an earlier one) finished: its files are those of an uninterrupted
            # run; remove them so that the next run works again
            self.completed += 1
            self.check_complete()
            for name in self.outputs:
                (self.folder / name).unlink()

    def finish(self) -> None:
        res = _meanfield(self.args, self.folder, timeout=600)
        assert res.returncode == 0, res.stderr
        self.check_folder()
        print("\n" + self.report(self.args[0]))
        self.check_complete()

    def report(self, name: str) -> str:
        return (f"{name}: {self.kills} kills ({self.tmp_kills} while a .tmp was being written), "
                f"{self.completed} runs ended before their kill, {self.checked} files checked, "
                f"{self.lost} lost")


def _campaign(tmp_path, args, outputs, n_kills, seed, prepare=None):
    reference, folder = tmp_path / "reference", tmp_path / "killed"
    for where in (reference, folder):
        where.mkdir()
        if prepare is not None:
            prepare(where)
    start = time.monotonic()
    res = _meanfield(args, reference, timeout=600)
    whole = time.monotonic() - start
    assert res.returncode == 0, res.stderr
    campaign = Campaign(args, folder, outputs, reference)
    rng = np.random.default_rng(seed)
    for attempt in range(3 * n_kills):  # runs that end before their moment are not kills
        if campaign.kills >= n_kills:
            break
        campaign.run(float(rng.uniform(0.0, whole)))
        if attempt % 7 == 3:
            campaign.run(None)
    campaign.finish()
    assert campaign.kills >= min(n_kills, 20) and campaign.lost == 0
    return campaign


@pytest.mark.slow
def test_sigkill_simulate_with_checkpoints(tmp_path):
    args = ["simulate", "--M", "40", "--N", "3000", "--d", "10", "--n-test", "300",
            "--t-max", "800", "--dt", "1", "--n-times", "30", "--seed", "4",
            "--checkpoint-every", "25", "-o", "sim.h5"]
    _campaign(tmp_path, args, ["sim.h5"], 24, seed=1)


@pytest.mark.slow
def test_sigkill_theory(tmp_path):
    args = ["theory", "--d", "10", "--t-max", "1000", "--n-times", "3000",
            "--x-par", "0.1,0.5,1,2", "-o", "theory.h5"]
    _campaign(tmp_path, args, ["theory.h5"], 24, seed=2)


@pytest.mark.slow
def test_sigkill_compare(tmp_path):
    made = {}

    def prepare(folder):
        for args in (["simulate", *SIM, "-o", "sim.h5"], ["theory", *THEORY, "-o", "th.h5"]):
            assert _meanfield(args, folder).returncode == 0
        made[folder.name] = {n: (folder / n).read_bytes() for n in ("sim.h5", "th.h5")}

    args = ["compare", "sim.h5", "th.h5", "-o", "cmp.h5"]
    campaign = _campaign(tmp_path, args, ["cmp.h5"], 24, seed=3, prepare=prepare)
    for name, raw in made["killed"].items():  # the inputs are only read
        assert (campaign.folder / name).read_bytes() == raw, name


@pytest.mark.slow
def test_sigkill_reproduce_quick(tmp_path):
    args = ["reproduce", "pb-fig1", "--quick", "--out", "."]
    outputs = ["derivation.tex", "theory.h5", "simulation.h5", "compare.h5", "fig1.png",
               "errors.png"]
    _campaign(tmp_path, args, outputs, 22, seed=4)

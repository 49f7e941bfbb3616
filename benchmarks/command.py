"""Sections (h)-(k) of ``benchmarks/simulate.py``: the whole ``meanfield simulate`` command.

(h), (i): the command run as a subprocess (start-up, imports, data, training, records and the
HDF5 file included; wall time) against the obvious NumPy float64 loop (``numpy_velocity`` and
an explicit Euler update) on the same data and the same step schedule, with the same number of
BLAS threads, its data drawn before timing; the two timed alternately, best of ``repeat``.
(j): where the command's time goes, from the import times of the CLI (subprocesses) and runs
of ``simulate`` + ``write_simulation`` in a fresh process whose data generation, set-up,
training loop and records are timed by wrappers put around those functions there (the package
is not changed), alternating with runs of the command itself. (k): the certificate's share of
the steps, where the result reports it.

Run by itself (``python benchmarks/command.py --profile OPTIONS_JSON OUT``) it is that fresh
process of (j): it prints its timings as one JSON line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: how (j) names the import of the CLI alone
CLI_IMPORT = 'python -c "import cli.main"'
#: attributes of the result that (k) reports
WORK_ATTRS = ("n_steps", "evaluated_total", "dense_evaluations_total", "certificate_steps")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS)
        return os.cpu_count() or 1


def runs(quick: bool) -> dict[str, dict[str, Any]]:
    """Config fields of the runs of (h) (geometric schedule, 237 steps) and (i) (uniform, 400
    steps); ``quick``: N = 4000 and shorter runs."""
    N = 4_000 if quick else 20_000
    base = {"M": 400, "N": N, "d": 100, "dtype": "float32"}
    return {
        "h": {**base, "dt": 0.5, "growth": 0.02, "t_max": 100.0 if quick else 1000.0},
        "i": {**base, "dt": 1.0, "t_max": 40.0 if quick else 400.0},
    }


def describe(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in options.items())


def meanfield_command() -> list[str]:
    """The ``meanfield`` console script of this interpreter's environment."""
    exe = shutil.which("meanfield", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from cli.main import main; main()"]


def cli_args(options: dict[str, Any], threads: int, out: Path) -> list[str]:
    args = [*meanfield_command(), "simulate"]
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), f"{value:g}" if isinstance(value, float)
                 else str(value)]
    return [*args, "--threads", str(threads), "-o", str(out), "--no-progress"]


def shown(args: list[str]) -> str:
    return " ".join(["meanfield", *args[args.index("simulate"):]])


def wall(args: list[str], cwd: Path) -> float:
    """Wall time of a subprocess; raises if it fails."""
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return seconds


def run_command(options: dict[str, Any], threads: int, out: Path) -> float:
    """Wall time of one ``meanfield simulate`` into ``out`` (removed first: the command would
    otherwise find its result there and stop)."""
    out.unlink(missing_ok=True)
    return wall(cli_args(options, threads, out), out.parent)


def file_facts(path: Path) -> dict[str, Any]:
    """The work attributes and the final second-layer weights of the recorded nodes."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        attrs = {k: np.asarray(f.attrs[k]).item() for k in WORK_ATTRS if k in f.attrs}
        attrs["a_final"] = np.asarray(f["a"][-1], dtype=np.float64)
    return attrs


def numpy_loop(options: dict[str, Any], threads: int):
    """The obvious NumPy float64 run of ``options`` (full batch, relu, hinge, explicit Euler on
    meanfield's own schedule), its data (the float64 draws that the run rounds to its dtype)
    and initial weights drawn now; returns ``(run, steps)``: ``run()`` -> ``(seconds,
    a_final)``, BLAS limited to ``threads`` while it runs."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from meanfield import data
    from meanfield.config import make_config
    from meanfield.simulate import schedule
    from meanfield.step import StepParams, numpy_velocity

    config = make_config(**options)
    c64 = config.replace(dtype="float64")
    rngs = data.streams(c64.seed)
    train = data.training_set(c64, rngs["train"])
    a0, W0 = data.initial_weights(c64, rngs["init"])
    times, _ = schedule(config)
    hs = [c64.beta * float(dt) for dt in np.diff(times)]
    p = StepParams(c64.activation, c64.loss, c64.h, c64.alpha, "float64")
    X, y = train.X, train.y

    def run() -> tuple[float, np.ndarray]:
        a, W = a0.copy(), W0.copy()
        va, vW = np.empty_like(a), np.empty_like(W)
        with threadpool_limits(limits=threads, user_api="blas"):
            t = time.perf_counter()
            for h in hs:
                numpy_velocity(X, y, a, W, p, va, vW)
                a += h * va
                W += h * vW
            return time.perf_counter() - t, a

    return run, len(hs)


class Commands:
    """The command runs of (h)-(k), shared between the sections: each run's best wall time,
    its NumPy baseline and the facts of its output file."""

    def __init__(self, quick: bool, threads: int, repeat: int) -> None:
        self.quick, self.threads, self.repeat = quick, threads, max(1, repeat)
        self.runs = runs(quick)
        self.tmp = Path(tempfile.mkdtemp(prefix="meanfield_bench_"))
        self.results: dict[str, dict[str, Any]] = {}
        self.warm = False

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _warm_up(self) -> None:
        """One tiny run of the same dtype: Numba's on-disk cache is then filled, as on any
        machine after its first run (the timed runs measure a user's ordinary command)."""
        if not self.warm:
            tiny = {"M": 8, "N": 200, "d": 100, "t_max": 3.0, "n_test": 50,
                    "dtype": self.runs["h"]["dtype"]}
            run_command(tiny, self.threads, self.tmp / "warm.h5")
            self.warm = True

    def command(self, name: str) -> dict[str, Any]:
        """The command of run ``name`` timed once (when no section compared it)."""
        if name not in self.results:
            self._warm_up()
            out = self.tmp / f"{name}.h5"
            t = run_command(self.runs[name], self.threads, out)
            self.results[name] = {"ours": t, "runs": 1, **file_facts(out)}
        return self.results[name]

    def compare(self, name: str) -> dict[str, Any]:
        """The command against the NumPy loop, alternately, best of ``repeat`` each."""
        self._warm_up()
        options, out = self.runs[name], self.tmp / f"{name}.h5"
        baseline, steps = numpy_loop(options, self.threads)
        ours = ref = math.inf
        for _ in range(self.repeat):
            ours = min(ours, run_command(options, self.threads, out))
            t, a_ref = baseline()
            ref = min(ref, t)
        facts = file_facts(out)
        a = facts["a_final"]
        diff = float(abs(a - a_ref[:a.shape[0]]).max() / abs(a_ref).max())
        self.results[name] = {"ours": ours, "numpy": ref, "steps": steps, "diff": diff,
                              "runs": self.repeat, **facts}
        return self.results[name]

    def breakdown(self, name: str) -> tuple[float, dict[str, Any]]:
        """The command of run ``name`` and its timed pieces (:meth:`profile`), run alternately
        (``repeat`` times each, so that both meet the machine, and the package, in the same
        state): the best wall time of the command and the profile of the fastest timed run."""
        whole, best = math.inf, None
        for _ in range(self.repeat):
            whole = min(whole, run_command(self.runs[name], self.threads,
                                           self.tmp / f"{name}_whole.h5"))
            p = self.profile(name)
            if best is None or p["total"] < best["total"]:
                best = p
        return whole, best

    def profile(self, name: str) -> dict[str, Any]:
        """Timings of the pieces of run ``name`` in a fresh process (see :func:`profile`)."""
        self._warm_up()
        options = {**self.runs[name], "threads": self.threads}
        out = self.tmp / f"{name}_profile.h5"
        args = [sys.executable, str(Path(__file__).resolve()), "--profile",
                json.dumps(options), str(out)]
        proc = subprocess.run(args, cwd=self.tmp, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"profile of ({name}) failed:\n{proc.stderr}")
        p = json.loads(proc.stdout.strip().splitlines()[-1])
        p["total"] = p["config"] + p["simulate"] + p["write"]
        return p

    def imports(self) -> dict[str, float]:
        """Wall times (best of 3) of a fresh interpreter that imports the CLI, of ``meanfield
        --help``, and of one that imports what ``meanfield simulate`` imports."""
        py = sys.executable
        cases = {
            "cli": [py, "-c", "import cli.main"],
            "help": [*meanfield_command(), "--help"],
            "simulate": [py, "-c", "import cli.main, cli.simulate, meanfield.simulate, "
                         "meanfield.step, meanfield.files.simulation, h5py"],
        }
        return {k: min(wall(args, self.tmp) for _ in range(3)) for k, args in cases.items()}


def section_compare(cmds: Commands, letter: str, name: str, target: float) -> None:
    options = cmds.runs[name]
    r = cmds.compare(name)
    ratio = r["ours"] / r["numpy"]
    kind = "geometric" if options.get("growth") else "uniform"
    print(f"({letter}) whole command, {kind} schedule ({describe(options)}, {r['steps']} "
          f"steps, {cmds.threads} threads): {r['ours']:.2f} s (wall, start-up and file "
          f"included); NumPy float64 loop on the same data and schedule ({cmds.threads} BLAS "
          f"threads, data drawn before timing): {r['numpy']:.2f} s; best of {r['runs']} each, "
          f"alternately -> ours/NumPy {ratio:.2f}x (target <= {target:g}x) "
          f"{'ok' if ratio <= target else 'MISSED'}")
    args = cli_args(options, cmds.threads, cmds.tmp / f"{name}.h5")
    print(f"({letter})   command: {shown(args)}; final a of the recorded nodes differs from "
          f"NumPy's by {r['diff']:.1e} (relative to the largest; {options['dtype']} against "
          "float64)")
    sys.stdout.flush()


def section_breakdown(cmds: Commands, imports: dict[str, float], name: str) -> None:
    """(j) for run ``name``: each piece in seconds and as a share of the whole command (a
    piece this version of the package does not have is shown as n/a)."""
    options = cmds.runs[name]
    whole, p = cmds.breakdown(name)

    def item(label: str, seconds: float | None) -> str:
        if seconds is None:
            return f"{label} n/a"
        return f"{label} {seconds:.2f} s ({100 * seconds / whole:.0f}%)"

    def less(a: float | None, *b: float | None) -> float | None:
        return None if a is None or None in b else a - sum(b)

    loop, record = p.get("loop"), p.get("record")
    init = p.get("setup")  # the run's own set-up (_Run.__init__), after the config
    setup = None if init is None else p["config"] + init
    rest = whole - imports["simulate"] - p["total"]
    print(f"(j) where the command of ({name}) goes ({describe(options)}, {cmds.threads} "
          f"threads): the whole command {whole:.2f} s (wall, 100%; best of {cmds.repeat}, "
          f"alternating with {cmds.repeat} timed runs in process, the fastest shown)")
    print(f"(j)   {item('import', imports['simulate'])} (a fresh interpreter importing what "
          f"simulate imports); {item(CLI_IMPORT, imports['cli'])}; "
          f"{item('meanfield --help', imports['help'])}")
    print(f"(j)   {item('set-up', setup)}: {item('config', p['config'])}, "
          f"{item('training set', p['training_set'])}, "
          f"{item('held-out set', p['held_out_set'])}, "
          f"{item('other', less(init, p['training_set'], p['held_out_set']))} (schedule, "
          "initial weights, stepper and its thread pools)")
    print(f"(j)   {item('training loop', less(loop, record))} (recording left out; Numba's "
          f"first calls included); {item('recording', record)} ({p['record_calls']} calls)")
    print(f"(j)   {item('result', less(p['simulate'], init, loop))}; "
          f"{item('HDF5 write', p['write'])}; {item('rest', rest)} (the whole command less "
          "the pieces above: CLI checks, memory estimate, exit, and the difference between the "
          "command's run and the timed one)")
    sys.stdout.flush()


def section_work(label: str, attrs: dict[str, Any]) -> None:
    """(k): steps, forward evaluations, and the certificate's steps where reported."""
    ev, dense = attrs.get("evaluated_total"), attrs.get("dense_evaluations_total")
    cert = attrs.get("certificate_steps")
    if ev is None or dense is None:
        return
    text = f"(k) {label}: {attrs.get('n_steps')} steps"
    if cert is not None:
        text += f", {cert} of them with the skipping certificate"
    print(f"{text}; forward evaluations {ev} of {dense} dense = {ev / dense:.3f}")


def run_sections(only: set[str], quick: bool, threads: int, repeat: int,
                 e_work: dict[str, Any] | None = None) -> None:
    """The sections of ``only`` among h, i, j, k (``e_work``: the attributes of (e)'s run,
    for (k))."""
    cmds = Commands(quick, threads, repeat)
    try:
        if "h" in only:
            section_compare(cmds, "h", "h", 0.5)
        if "i" in only:
            section_compare(cmds, "i", "i", 0.3)
        if "j" in only:
            imports = cmds.imports()
            section_breakdown(cmds, imports, "h")
            section_breakdown(cmds, imports, "i")
        if "k" in only:
            if e_work is not None:
                section_work(f"(e) {e_work.get('run', '')}", e_work)
            for name in "hi":
                section_work(f"({name}) {describe(cmds.runs[name])}", cmds.command(name))
    finally:
        cmds.close()


def profile(options: dict[str, Any], out: str) -> dict[str, Any]:
    """``simulate`` + ``write_simulation`` of ``options`` in this process, timed by wrappers
    around the data generation, ``_Run.__init__`` (set-up), ``_train`` (the loop) and
    ``Recorder.record`` (a piece missing in this version of the package is left out)."""
    import functools

    from meanfield.runtime import set_thread_policy

    set_thread_policy()
    from meanfield import data
    from meanfield import simulate as sim
    from meanfield.config import make_config
    from meanfield.files.simulation import write_simulation

    spent: dict[str, Any] = {"record_calls": 0}

    def wrap(owner: Any, attr: str, key: str) -> None:
        fn = None if owner is None else getattr(owner, attr, None)
        if fn is None:
            return
        spent[key] = 0.0

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t
                if key == "record":
                    spent["record_calls"] += 1

        setattr(owner, attr, timed)

    wrap(data, "training_set", "training_set")
    wrap(data, "held_out_set", "held_out_set")
    wrap(getattr(sim, "_Run", None), "__init__", "setup")
    wrap(sim, "_train", "loop")
    wrap(getattr(sim, "Recorder", None), "record", "record")
    t = time.perf_counter()
    config = make_config(**options)
    spent["config"] = time.perf_counter() - t
    t = time.perf_counter()
    result = sim.simulate(config)
    spent["simulate"] = time.perf_counter() - t
    t = time.perf_counter()
    write_simulation(result, out)
    spent["write"] = time.perf_counter() - t
    spent["attrs"] = {k: result.attrs[k] for k in WORK_ATTRS if k in result.attrs}
    return spent


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--profile":
        sys.exit(f"usage: python {sys.argv[0]} --profile OPTIONS_JSON OUT")
    print(json.dumps(profile(json.loads(sys.argv[2]), sys.argv[3]), default=int))

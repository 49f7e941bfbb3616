"""Parameter sweeps on Dask: the engine of ``meanfield sweep``.

Data path::

    sweep file (meanfield.sweep_spec) -> status of every point -> cluster (local or given)
      -> warm-up (Numba compiles, once per host) -> one task per point to run
      -> OUTDIR/points/<hash>.h5 (what `meanfield simulate` writes) -> OUTDIR/sweep.nc

A point is identified by its run hash (:func:`meanfield.config.run_hash`), so its file name is
the same whoever computes it; it is *done* when ``points/<hash>.h5`` opens as a simulation
file whose config has that hash, and nothing else is trusted. Tasks checkpoint to
``points/<hash>.ckpt.h5`` (every ``checkpoint_every`` steps of the config and every
``checkpoint_seconds`` of wall time) and resume from it, so a dead worker loses at most
``checkpoint_seconds`` of compute and the final file is bitwise that of an uninterrupted run.
Tasks return small dicts; arrays never travel through the scheduler.

Dask distributed is the engine: :class:`distributed.LocalCluster` of worker processes on
127.0.0.1 by default, or any running cluster (``scheduler`` address or ``scheduler_file``), or
a :class:`distributed.Client` of the caller's own (e.g. of a ``dask_jobqueue.SLURMCluster``).
A cluster the sweep did not start is never closed, restarted or rescaled. Scripts that call
:func:`run` need the ``if __name__ == "__main__":`` guard (workers are spawned).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import math
import os
import secrets
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meanfield.config import Config, ConfigError, from_json, run_hash
from meanfield.sweep_spec import Point, SweepSpec

POINTS = "points"
MERGED = "sweep.nc"
SPEC_FILE = "sweep.toml"
LOCK_FILE = ".lock"
STOP_WAIT_SECONDS = 30.0
"""How long an interrupted sweep waits for its running points to checkpoint."""
MERGE_INTERVAL_SECONDS = 60.0
"""The merged file is rewritten at most this often while points complete."""
WARMUP_STEPS = 60
"""Steps of a warm-up simulation (enough for the skipping certificate to start skipping)."""
WARMUP_EXAMPLES = 3073
"""Examples of a warm-up simulation: one whole forward block of 2048 rows and a partial one
(:data:`meanfield.step.engine.DEFAULT_BLOCK`), which take different kernels."""
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
STATUSES = ("ran", "resumed", "skipped", "failed")


class SweepError(ConfigError):
    """A sweep cannot start: an unreachable or incompatible cluster, an OUTDIR in use or not
    visible to the workers (one line; the command exits with status 2)."""


# --------------------------------------------------------------------------- points on disk


def point_path(outdir: str | Path, digest: str) -> Path:
    """``OUTDIR/points/<hash>.h5``."""
    return Path(outdir) / POINTS / f"{digest}.h5"


def checkpoint_of(final: Path) -> Path:
    """``points/<hash>.ckpt.h5`` beside ``points/<hash>.h5``."""
    from meanfield.files.checkpoint import checkpoint_path

    return checkpoint_path(final)


def is_done(final: Path, digest: str) -> bool:
    """Whether ``final`` opens as a simulation file whose config has the run hash
    ``digest``."""
    from meanfield.files.simulation import stored_run_hash

    try:
        return stored_run_hash(final) == digest
    except Exception:  # whatever the file holds, it is not this point's result
        return False


def point_status(outdir: str | Path, point: Point) -> str:
    """``done`` (its file is complete), ``partial`` (a checkpoint exists) or ``todo``."""
    final = point_path(outdir, point.hash)
    if is_done(final, point.hash):
        return "done"
    return "partial" if checkpoint_of(final).exists() else "todo"


def move_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.damaged-<UTC time>`` (results are never deleted)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, target)
    return target


# --------------------------------------------------------------------------- worker side

_POINT_LOCK = threading.Lock()
"""One point per worker process at a time: Numba's workqueue layer aborts the process when
two threads enter parallel kernels at once."""


def numba_cache_misses() -> int:
    """Compilations of meanfield's disk-cached Numba kernels in this process that did not find
    the cache (the sum of ``dispatcher.stats.cache_misses`` over them)."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    kernels = {}  # by identity: a kernel imported into several modules counts once
    for name, module in list(sys.modules.items()):
        if not (name == "meanfield" or name.startswith("meanfield.")) or module is None:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher) and not isinstance(obj._cache, NullCache):
                kernels[id(obj)] = obj
    return sum(sum(k.stats.cache_misses.values()) for k in kernels.values())


def _stop_poller(event_name: str | None) -> Callable[[], bool] | None:
    """``should_stop()`` reading the Dask event ``event_name`` at most once a second."""
    if event_name is None:
        return None
    from distributed import Event

    event = Event(event_name)
    state = {"checked": 0.0, "set": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - state["checked"] >= 1.0:
            state["checked"] = now
            with contextlib.suppress(Exception):  # a scheduler hiccup is not a stop
                state["set"] = bool(event.is_set())
        return state["set"]

    return should_stop


def _valid_checkpoint(ckpt: Path, config: Config) -> bool:
    """Whether ``ckpt`` is a readable checkpoint of this run; a damaged one is moved
    aside."""
    from meanfield.files.checkpoint import read_checkpoint

    if not ckpt.exists():
        return False
    try:
        read_checkpoint(ckpt, config)
    except ConfigError:
        move_aside(ckpt)
        return False
    return True


class _QuietComputeFailures(logging.Filter):
    """Drops the worker's multi-line "Compute Failed" report of a point's exception: the sweep
    reports each failed point itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Compute Failed")


_QUIET = _QuietComputeFailures()


def run_point(config_json: str, points_dir: str, checkpoint_seconds: float,
              stop_event: str | None = None) -> dict[str, Any]:
    """The task of one point: run the simulation of ``config_json`` (resuming from its
    checkpoint) and write ``points_dir/<hash>.h5``.

    Returns ``{"hash", "status", "started" (Unix time), "seconds", "numba_cache_misses",
    "error"}`` with status ``ran``, ``resumed``, ``skipped`` (the file was already complete),
    ``interrupted`` (the stop event was set; the state is checkpointed) or ``failed`` (the
    configuration itself fails, e.g. the simulation diverges: a retry would fail alike;
    ``error`` says why in one line). Other exceptions (I/O) propagate: Dask retries them.
    """
    from meanfield.files.simulation import write_simulation
    from meanfield.simulate import SimulationInterrupted, simulate
    from meanfield.step import set_threads

    logging.getLogger("distributed.worker").addFilter(_QUIET)  # once: filters are a set
    with _POINT_LOCK:
        started, began = time.perf_counter(), time.time()
        config = from_json(config_json)
        digest = run_hash(config)
        final = Path(points_dir) / f"{digest}.h5"
        ckpt = checkpoint_of(final)

        def outcome(status: str, misses: int | None = None, error: str | None = None
                    ) -> dict[str, Any]:
            return {"hash": digest, "status": status, "started": began,
                    "seconds": time.perf_counter() - started,
                    "numba_cache_misses": misses, "error": error}

        if is_done(final, digest):
            ckpt.unlink(missing_ok=True)
            return outcome("skipped")
        should_stop = _stop_poller(stop_event)
        if should_stop is not None and should_stop():
            return outcome("interrupted")
        set_threads(config.threads)
        before = numba_cache_misses()
        resume = _valid_checkpoint(ckpt, config)
        try:
            result = simulate(config, checkpoint=ckpt, resume=resume, should_stop=should_stop,
                              checkpoint_seconds=checkpoint_seconds)
        except SimulationInterrupted:
            return outcome("interrupted", numba_cache_misses() - before)
        except ConfigError as err:  # determined by the config: not retried
            return outcome("failed", numba_cache_misses() - before,
                           f"{type(err).__name__}: {' '.join(str(err).split())}")
        write_simulation(result, final)
        ckpt.unlink(missing_ok=True)
        return outcome("resumed" if resume else "ran", numba_cache_misses() - before)


def warmup_config(config: Config) -> Config:
    """A small run of ``config``'s kind (activation, loss, dtype, integrator, data, full
    batch / mini-batch / online): few nodes, its first :data:`WARMUP_STEPS` steps, and
    :data:`WARMUP_EXAMPLES` examples (training, held-out and mini-batch sets alike), so that
    the forward passes meet both whole and partial blocks and every cached kernel a point
    can call is compiled."""
    from dataclasses import replace

    from meanfield.schedule import schedule

    n = WARMUP_EXAMPLES
    small = replace(config, M=16, N=n, n_test=n if config.n_test else 0, times=(),
                    batch=n if config.batch else 0, record_nodes=0, checkpoint_every=0)
    steps = schedule(replace(small, t_max=config.t_max))[0]
    return replace(small, t_max=float(steps[min(WARMUP_STEPS, len(steps) - 1)]))


def warm_up(config_jsons: list[str]) -> dict[str, Any]:
    """Task: run :func:`warmup_config` of every config (one per kind), compiling (or
    loading) every cached kernel in this process and filling the host's Numba cache."""
    from meanfield.simulate import simulate
    from meanfield.step import set_threads

    with _POINT_LOCK:
        started = time.perf_counter()
        for text in config_jsons:
            config = from_json(text)
            set_threads(config.threads)
            with contextlib.suppress(ConfigError):  # a diverging tiny run still compiled
                simulate(warmup_config(config))
        return {"seconds": time.perf_counter() - started, "pid": os.getpid()}


def worker_identity() -> dict[str, Any]:
    """Run on every worker: the meanfield version and git revision it runs."""
    from meanfield.io import git_revision, package_version

    return {"version": package_version(), "revision": git_revision()}


def probe_outdir(outdir: str, name: str, content: str) -> str | None:
    """Run on every worker: read the client's probe file and create one of its own in
    ``outdir``; ``None`` when both work, else the reason."""
    try:
        if (Path(outdir) / name).read_text() != content:
            return "the probe file has other content"
        mine = Path(outdir) / f"{name}.{os.getpid()}.{secrets.token_hex(4)}"
        mine.write_text(content)
        mine.unlink()
    except OSError as err:
        return err.strerror or str(err)
    return None


# --------------------------------------------------------------------------- results


@dataclass
class RunRecord:
    """What happened to one point (an entry of ``runs`` in ``--json``); ``started``: when its
    task began (Unix time; ``None`` when it did not run)."""

    run: int
    hash: str
    values: dict[str, Any]
    config: dict[str, Any]
    status: str
    seconds: float | None = None
    numba_cache_misses: int | None = None
    error: str | None = None
    started: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "hash": self.hash, "values": self.values,
                "config": self.config, "status": self.status, "seconds": self.seconds,
                "numba_cache_misses": self.numba_cache_misses, "error": self.error,
                "started": self.started}


@dataclass
class SweepResult:
    """The outcome of :func:`run` (the ``--json`` document, less ``study``)."""

    output: str
    merged: str | None
    engine: str
    workers: int
    threads_per_worker: int | None
    runs: list[RunRecord]
    seconds: float
    warmup: dict[str, Any] | None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    @property
    def complete(self) -> bool:
        return all(r.status in ("ran", "resumed", "skipped") for r in self.runs)

    def document(self) -> dict[str, Any]:
        return {"output": self.output, "merged": self.merged, "engine": self.engine,
                "workers": self.workers, "threads_per_worker": self.threads_per_worker,
                "points": len(self.runs), **{s: self.count(s) for s in STATUSES},
                "seconds": self.seconds, "warmup": self.warmup,
                "runs": [r.to_dict() for r in self.runs]}

    def summary(self) -> str:
        """``8 points: 6 ran, 1 resumed, 1 skipped, 0 failed in 23.4 s on 2 local workers;
        merged: width/sweep.nc``."""
        where = ("no worker" if self.workers == 0 else
                 f"{self.workers} local worker{'s' * (self.workers != 1)}"
                 if self.engine == "local" else
                 f"{self.workers} worker{'s' * (self.workers != 1)} of {self.engine}")
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        return (f"{len(self.runs)} points: {counts} in {self.seconds:.1f} s on {where}; "
                f"merged: {self.merged or 'nothing yet'}")


def dry_run(spec: SweepSpec, outdir: str | Path) -> list[RunRecord]:
    """The points with their status (``done``, ``partial``, ``todo``); reads, writes
    nothing."""
    return [RunRecord(p.run, p.hash, p.values, json.loads(p.config.to_json()),
                      point_status(outdir, p)) for p in spec.points()]


# --------------------------------------------------------------------------- OUTDIR


@contextlib.contextmanager
def outdir_lock(outdir: Path, write_pid: bool) -> Iterator[Callable[[], None]]:
    """Hold an exclusive :func:`fcntl.flock` on ``OUTDIR/.lock`` (released by the kernel when
    the process dies); :class:`SweepError` naming the holder's pid when another sweep holds
    it. Yields ``mark()``, which writes this process's pid into the lock file."""
    path = outdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise SweepError(f"{str(outdir)!r} is in use by another sweep (pid {holder}); "
                             "wait for it or use another -o") from None

        def mark() -> None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

        if write_pid:
            mark()
        yield mark
    finally:
        os.close(fd)


def _remove_stale_temporaries(points_dir: Path) -> None:
    """Remove ``*.tmp`` files in ``points/`` (left by killed writers)."""
    for path in points_dir.glob("*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def _write_spec(outdir: Path, spec: SweepSpec) -> None:
    """``OUTDIR/sweep.toml``: the spec as run (rewritten only when it differs)."""
    from meanfield.io import write_atomic

    path, text = outdir / SPEC_FILE, spec.to_toml()
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    write_atomic(path, text.encode())


def merge(spec: SweepSpec, outdir: Path, force: bool = False,
          cache: dict[str, Any] | None = None) -> tuple[Path, list[str]]:
    """Write ``OUTDIR/sweep.nc`` from the complete point files, unless it already holds
    this spec with the same complete points (and not ``force``). Returns the path and
    warnings (mixed git revisions, unreadable point files). ``cache`` (run hash -> records)
    keeps the records read by earlier merges of the same sweep, so that each file is read
    once."""
    from meanfield.files.simulation import read_records
    from meanfield.files.sweep import MergedPoint, merged_state, sweep_hash, write_sweep

    path = outdir / MERGED
    text = spec.to_toml()
    cache = {} if cache is None else cache
    points, warnings = [], []
    for p in spec.points():
        final = point_path(outdir, p.hash)
        if p.hash not in cache and final.is_file():
            try:  # one read: the records, and the config whose run hash names the point
                records = read_records(final)
            except Exception as err:  # reported; the point stays incomplete
                warnings.append(f"point {p.run} ({final.name}) cannot be merged: {err}")
            else:
                if run_hash(records.config) == p.hash:
                    cache[p.hash] = records
        points.append(MergedPoint(p.hash, p.values, cache.get(p.hash)))
    complete = tuple(p.hash for p in points if p.records is not None)
    revisions = sorted({p.records.git_revision for p in points if p.records is not None})
    if len(revisions) > 1:
        warnings.append(f"the merged sweep mixes points computed by {len(revisions)} git "
                        f"revisions ({', '.join(revisions)}): the run hash does not include "
                        "the code version")
    if force or merged_state(path) != (sweep_hash(text), complete):
        write_sweep(path, points, spec.swept, text, spec.name)
    return path, warnings


# --------------------------------------------------------------------------- clusters


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def largest_estimate(configs: list[Config]) -> Any:
    """The largest :func:`meanfield.memory.estimate` of ``meanfield simulate`` over
    ``configs`` (computed once per config less its seed, which changes no size)."""
    from dataclasses import replace

    from meanfield.memory import estimate

    distinct = {replace(c, seed=0) for c in configs}
    return max((estimate(c, "simulate") for c in distinct), key=lambda e: e.total)


def default_workers(configs: list[Config]) -> int:
    """min(usable cores // threads per point, points to run, floor(0.8 x total memory /
    estimated peak memory of the largest point)), at least 1; 1 when a point runs on the GPU
    (points on one GPU would only queue for it)."""
    if any(c.device == "cuda" for c in configs):
        return 1
    threads = max(c.threads for c in configs)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    peak = largest_estimate(configs).total
    return max(1, min(usable_cores() // threads, len(configs), math.floor(0.8 * total / peak)))


@contextlib.contextmanager
def local_client(workers: int, threads: int, dashboard: bool) -> Iterator[Any]:
    """A :class:`distributed.Client` of a new LocalCluster of ``workers`` single-threaded
    worker processes on 127.0.0.1 (no dashboard unless asked, on 127.0.0.1:8787); thread
    variables reach the workers through ``distributed.nanny.pre-spawn-environ``. Closed at the
    end."""
    import dask
    from distributed import Client, LocalCluster

    environ = {name: str(threads) for name in THREAD_VARIABLES}
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                          "distributed.worker.daemon": True}), warnings.catch_warnings():
        # another cluster holds the default HTTP port: this one takes a free one, quietly
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1",
                               dashboard_address="127.0.0.1:8787" if dashboard else None,
                               memory_limit=0, silence_logs=logging.WARNING)
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
    finally:
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


@contextlib.contextmanager
def remote_client(scheduler: str | None, scheduler_file: str | None,
                  timeout: float) -> Iterator[Any]:
    """A :class:`distributed.Client` of a running cluster (closed at the end; the cluster is
    left alone). :class:`SweepError` when it cannot be reached within ``timeout`` seconds or
    has no worker."""
    from distributed import Client

    where = scheduler or f"the scheduler of {scheduler_file!r}"
    if scheduler_file is not None and not Path(scheduler_file).is_file():
        raise SweepError(f"--scheduler-file {scheduler_file!r} does not exist")
    try:
        client = Client(scheduler, scheduler_file=scheduler_file, timeout=timeout,
                        set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise SweepError(f"cannot reach the Dask scheduler at {where} within {timeout:g} s: "
                         f"{' '.join(str(err).split())[:200]}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise SweepError(f"the Dask scheduler at {where} has no worker after {timeout:g} s"
                             ) from None
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)


def check_workers(client: Any, outdir: Path) -> list[str]:
    """Every worker runs this meanfield version and git revision and can read and write
    ``outdir`` (else :class:`SweepError`); returns warnings (workers with several threads)."""
    from meanfield.io import git_revision, package_version

    ours = {"version": package_version(), "revision": git_revision()}
    for address, theirs in client.run(worker_identity).items():
        if theirs != ours:
            raise SweepError(
                f"worker {address} runs meanfield {theirs['version']} (git "
                f"{theirs['revision']}), this client {ours['version']} (git "
                f"{ours['revision']}): install the same version on the workers")
    name, content = f".probe-{secrets.token_hex(6)}", secrets.token_hex(16)
    probe = outdir / name
    probe.write_text(content)
    try:
        for address, problem in client.run(probe_outdir, str(outdir.resolve()), name,
                                           content).items():
            if problem is not None:
                raise SweepError(f"OUTDIR must be on a filesystem shared with the workers: "
                                 f"worker {address} cannot use {str(outdir.resolve())!r} "
                                 f"({problem})")
    finally:
        probe.unlink(missing_ok=True)
    many = {a: w["nthreads"] for a, w in client.scheduler_info()["workers"].items()
            if w.get("nthreads", 1) > 1}
    if many:
        return [f"{len(many)} worker(s) have more than one thread (e.g. {next(iter(many))}: "
                f"{next(iter(many.values()))}); points run one per worker process at a time"]
    return []


def _warm_up(client: Any, configs: list[Config]) -> dict[str, Any]:
    """One warm-up task per distinct worker host, one at a time, waited for."""
    kinds: dict[tuple, Config] = {}
    for c in configs:
        mode = "online" if c.online else "mini-batch" if c.batch else "full batch"
        kinds.setdefault((c.activation, c.loss, c.dtype, c.integrator, c.data, mode,
                          c.threads), c)
    texts = [c.to_json() for c in kinds.values()]
    hosts: dict[str, str] = {}
    for address, info in sorted(client.scheduler_info()["workers"].items()):
        hosts.setdefault(info.get("host", address), address)
    started = time.perf_counter()
    for address in hosts.values():
        client.submit(warm_up, texts, workers=[address], allow_other_workers=True,
                      pure=False).result()
    return {"seconds": time.perf_counter() - started, "workers": len(hosts)}


# --------------------------------------------------------------------------- the sweep


def _error_line(err: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(err, KilledWorker):
        return ("its worker died more times than distributed.scheduler.allowed-failures "
                f"allows (KilledWorker; often memory): {' '.join(str(err).split())[:200]}")
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1].strip() if lines else ''}"[:300]


@dataclass
class _Progress:
    """The tqdm bar on stderr (``sweep  3/8 points``), or nothing."""

    total: int
    initial: int
    show: bool

    def __post_init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.initial, desc="sweep", unit=" points",
                        disable=not self.show, leave=False, dynamic_ncols=True,
                        file=sys.stderr)

    def update(self, running: int, resumed: int, failed: int) -> None:
        self.bar.set_postfix(running=running, resumed=resumed, failed=failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(
    spec: SweepSpec,
    output: str | Path,
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    connect_timeout: float = 10.0,
    retries: int = 1,
    checkpoint_seconds: float = 120.0,
    dashboard: bool = False,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every point of ``spec`` that is not done, writing ``OUTDIR/points/<hash>.h5``,
    then merge them into ``OUTDIR/sweep.nc``.

    Args:
        spec: the checked sweep (:func:`meanfield.sweep_spec.load_spec`).
        output: OUTDIR (created when needed; must not be a regular file).
        client: a :class:`distributed.Client` to use (left open); else ``scheduler`` /
            ``scheduler_file`` of a running cluster; else a LocalCluster of ``workers``
            processes (:func:`default_workers` when ``None``) started and closed here.
        connect_timeout: seconds to reach a given scheduler (and for it to have a worker).
        retries: re-runs of a point whose task raised (a dead worker is not an exception:
            Dask reschedules its task up to ``distributed.scheduler.allowed-failures``).
        checkpoint_seconds: a running point checkpoints at least this often (wall time).
        dashboard: serve Dask's dashboard on 127.0.0.1:8787 (local cluster).
        progress: draw a progress bar on stderr.
        should_stop: polled while points run; when true, no point is started any more,
            running points checkpoint and stop (waiting at most :data:`STOP_WAIT_SECONDS`)
            and the result has ``interrupted = True`` (points that did not finish keep the
            status ``todo``).
        on_warning: called with each one-line warning (default: ignored).

    Returns:
        A :class:`SweepResult`; points that failed are reported there (with the last line
        of their error), the others are kept and merged.

    Raises:
        SweepError: the cluster cannot be reached or is incompatible, OUTDIR is in use or not
            shared with the workers.

    Example:
        >>> from meanfield.sweep_spec import parse_spec
        >>> spec = parse_spec({"base": {"M": 20, "N": 200, "d": 5, "t_max": 2.0},
        ...                    "sweep": {"seeds": 2}})
        >>> result = run(spec, "tiny-sweep", workers=2)              # doctest: +SKIP
        >>> result.summary()                                          # doctest: +SKIP
        '2 points: 2 ran, 0 resumed, 0 skipped, 0 failed in 4.1 s on 2 local workers; ...'
    """
    started = time.perf_counter()
    warn = on_warning or (lambda line: None)
    outdir = Path(output)
    if outdir.exists() and not outdir.is_dir():
        raise SweepError(f"-o {str(outdir)!r} is an existing file, not a folder")
    points = spec.points()
    records = {p.run: RecordState(p) for p in points}
    # every point is done only where OUTDIR exists: then its lock is taken first
    lock = outdir_lock(outdir, write_pid=False) if outdir.is_dir() else None
    with contextlib.ExitStack() as stack:
        mark = stack.enter_context(lock) if lock is not None else None
        todo = []
        for p in points:
            final = point_path(outdir, p.hash)
            if is_done(final, p.hash):
                records[p.run].status = "skipped"
            else:
                if final.exists():
                    records[p.run].damaged = True
                todo.append(p)
        if not todo:
            _write_spec(outdir, spec)
            merged, warnings = merge(spec, outdir)
            for line in warnings:
                warn(line)
            return SweepResult(str(outdir), str(merged), "none", 0, None,
                               [r.record() for r in records.values()],
                               time.perf_counter() - started, None)

        configs = [p.config for p in todo]
        threads = max(c.threads for c in configs)
        if client is not None:
            engine, own = str(getattr(client.scheduler, "address", "client")), False
        elif scheduler is not None or scheduler_file is not None:
            client = stack.enter_context(remote_client(scheduler, scheduler_file,
                                                       connect_timeout))
            engine, own = client.scheduler.address, False
        else:
            # never more workers than points to run
            k = min(workers, len(todo)) if workers is not None else default_workers(configs)
            client = stack.enter_context(local_client(k, threads, dashboard))
            engine, own = "local", True
        points_dir = outdir / POINTS
        points_dir.mkdir(parents=True, exist_ok=True)
        if mark is None:
            mark = stack.enter_context(outdir_lock(outdir, write_pid=False))
        mark()
        if not own:
            for line in check_workers(client, outdir):
                warn(line)
        _remove_stale_temporaries(points_dir)
        for p in todo:
            final = point_path(outdir, p.hash)
            if records[p.run].damaged and final.exists():
                moved = move_aside(final)
                warn(f"point {p.run}: {final.name} was not a complete simulation file of "
                     f"this point; moved aside to {moved.name}")
        _write_spec(outdir, spec)
        infos = client.scheduler_info()["workers"].values()
        n_workers, tpw = len(infos), {w.get("nthreads", 1) for w in infos}
        warmup = _warm_up(client, configs)
        cache: dict[str, Any] = {}
        interrupted = _execute(client, todo, records, points_dir, spec, outdir, cache,
                               retries=retries, checkpoint_seconds=checkpoint_seconds,
                               progress=_Progress(len(points), len(points) - len(todo),
                                                  progress),
                               should_stop=should_stop, n_workers=n_workers)
        merged, warnings = merge(spec, outdir, cache=cache)
        for line in warnings:
            warn(line)
        return SweepResult(str(outdir), str(merged), engine, n_workers,
                           max(tpw) if tpw else None, [r.record() for r in records.values()],
                           time.perf_counter() - started, warmup, interrupted)


@dataclass
class RecordState:
    """The mutable status of one point during :func:`run`."""

    point: Point
    status: str = "todo"
    outcome: dict[str, Any] = field(default_factory=dict)
    damaged: bool = False

    def record(self) -> RunRecord:
        p = self.point
        return RunRecord(p.run, p.hash, p.values, json.loads(p.config.to_json()),
                         self.status, self.outcome.get("seconds"),
                         self.outcome.get("numba_cache_misses"), self.outcome.get("error"),
                         self.outcome.get("started"))


def _execute(client: Any, todo: list[Point], records: dict[int, RecordState],
             points_dir: Path, spec: SweepSpec, outdir: Path, cache: dict[str, Any], *,
             retries: int,
             checkpoint_seconds: float, progress: _Progress,
             should_stop: Callable[[], bool] | None, n_workers: int) -> bool:
    """Submit the points, collect their outcomes as they finish (merging at most once a
    minute), stop on request. Returns whether the sweep was interrupted."""
    from distributed import Event, as_completed

    token = secrets.token_hex(6)
    event_name = f"meanfield-sweep-stop-{token}"
    event = Event(event_name, client=client)
    futures = {}
    for p in todo:
        future = client.submit(run_point, p.config.to_json(), str(points_dir.resolve()),
                               checkpoint_seconds, event_name, key=f"point-{p.hash}-{token}",
                               pure=False, retries=retries)
        futures[future] = p
    pending = as_completed(list(futures), loop=client.loop)
    last_merge, merged_count, done_count, finished = time.monotonic(), 0, 0, 0
    stop_at: float | None = None
    counts = {"resumed": 0, "failed": 0}
    try:
        while not pending.is_empty():
            if stop_at is None and should_stop is not None and should_stop():
                event.set()
                stop_at = time.monotonic() + STOP_WAIT_SECONDS
            if stop_at is not None and time.monotonic() > stop_at:
                break
            batch = pending.next_batch(block=False)
            if not batch:
                time.sleep(0.05)
                continue
            for future in batch:
                state = records[futures[future].run]
                if future.status == "finished":
                    state.outcome = future.result()
                    state.status = state.outcome["status"]
                else:
                    error = future.exception()
                    state.outcome = {"error": _error_line(error)}
                    state.status = "failed"
                finished += 1
                done_count += state.status in ("ran", "resumed", "skipped")
                counts["resumed"] += state.status == "resumed"
                counts["failed"] += state.status == "failed"
                progress.update(min(n_workers, len(futures) - finished), counts["resumed"],
                                counts["failed"])
            if (done_count > merged_count
                    and time.monotonic() - last_merge >= MERGE_INTERVAL_SECONDS):
                merge(spec, outdir, cache=cache)
                last_merge, merged_count = time.monotonic(), done_count
    finally:
        progress.close()
        if stop_at is not None or (should_stop is not None and should_stop()):
            with contextlib.suppress(Exception):
                event.set()
        with contextlib.suppress(Exception):
            client.cancel([f for f in futures if not f.done()])
    for state in records.values():
        if state.status == "interrupted":
            state.status, state.outcome = "todo", {}
    return stop_at is not None

"""Peak memory of a command, estimated from its configuration before anything is allocated.

:func:`estimate` itemises the arrays a command holds at its peak (sizes from the config alone,
in O(1) time: the step count comes from :func:`meanfield.schedule.schedule_steps`), plus a
fixed process baseline; :func:`check_memory` refuses, with a :class:`meanfield.config.
ConfigError` of one line, a run whose estimate exceeds the available memory
(:func:`available_memory`) or a given budget (:func:`parse_size` reads ``--max-memory``).

What is counted for ``simulate`` (``s`` the itemsize of the run dtype, ``b = min(2048, N)``
the engine's block, ``K`` the steps, ``R`` the record times, ``n`` the recorded nodes):

- persistent: training set ``N d s`` plus ``x_par``, labels in the dtype and in float64;
  held-out set likewise with ``n_test``; weights ``a, W, a0, W0``, the velocity ``k1``, the
  recorder's scratch (Heun: predictor and ``k2``; full batch: the certificate's ``W_prev``,
  ``W_anchor``); the engine's block buffers (``Z``, ``G`` and, by activation, ``S``, ``P``,
  ``sigma g``: ``b x M``; ``Xg``, ``XU``: ``b x d``; ``acc_W``, ``tmp_W``, ``Ws``: ``M x
  d``); the certificate's per-example float64 arrays (``|x|``, margin, bound, dist, tau,
  ``s2``, ``|x_perp|``; with skipping also ``phi`` (``N x 5``), ``C`` and ``|C|`` (``N x 4``
  each)); the first satisfaction times and flags; the records (``R x n x 3`` node series,
  ``R x`` :data:`meanfield.files.simulation.SERIES`); the step schedule (``K + 1`` float64,
  built from a list of Python floats: 40 bytes a step); a mini-batch (twice: the next one is
  drawn while the last is referenced) with the index permutation, or an online batch (twice);
- the largest transient of one step: the certificate's advance (about 14 float64 per example,
  the out-of-subspace pass on a copy of the examples at risk, counted as all of them, with its
  float64 blocks of 8192 rows, and about 6 float64 ``M x d`` motions), a refresh of the
  projections (the new ``C``, ``|C|``, ``|x_perp|`` next to the old), a record (the held-out
  set's engine and outputs, float64 copies of the weights), a checkpoint's copies, or the
  drawing of the data in float64 blocks of 8192 rows.

``theory``: the record times (explicit, or the schedule's, whose steps are built when fewer
than :data:`meanfield.theory.MAX_SCHEDULE_STEPS`), about 20 float64 arrays per time plus the
chunk temporaries of the closed form, the ``[t, x_par]`` spread and its blocks; the population
solver keeps ``3 x 432`` float64 per time three times. ``compare``: the simulation file's
arrays, the theory on its record times, the schedule and the Euler push (five float64 per
step), the node trajectories of two theories. ``reproduce``: the largest of its stages.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytic.activations import is_relu
from meanfield.config import Config, ConfigError
from meanfield.linear_config import LinearConfig

COMMANDS = ("simulate", "theory", "compare", "reproduce")

BASELINE_BYTES = 230 * 2**20
"""The process before any array: Python, NumPy, SciPy, h5py, Numba and its LLVM, the loaded
kernels, thread pools. Measured as the peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
of a process that runs ``simulate`` on ``M=10, N=200, d=5, n_test=50, t_max=3`` (arrays of a
few KB): 205.5 MiB on Linux x86-64, Python 3.11, two cores (Euler float64 and Heun float32
alike), rounded up to 230 MiB for machines with more threads."""

THEORY_BASELINE_BYTES = 150 * 2**20
"""The same for ``theory`` (NumPy, SciPy, SymPy and the derived equations, no Numba kernels):
133 MiB for the closed form on 1001 times, rounded up."""

_BLOCK = 2048          # meanfield.step.engine.DEFAULT_BLOCK
_PERIOD_PAD = 191      # the engine rounds its block up to a multiple of the BLAS row period
_DRAW_BLOCK = 8192     # meanfield.data.BLOCK and the certificate's float64 blocks
_MAX_DIRS = 4          # the certificate's directions (k) and V's columns (at most k + 1)
_N_SERIES = 13         # len(meanfield.files.simulation.SERIES), checked by the tests
_POP_NODES = 432       # the population solver's nodes (12 x 12 x 3)
_THEORY_CURVES = 9     # len(meanfield.files.theory.SERIES)
_F64 = 8


@dataclass(frozen=True)
class Estimate:
    """``total`` bytes at the peak of ``command``, and the ``parts`` that make it up
    (name -> bytes; they sum to ``total``)."""

    command: str
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def largest(self, n: int = 3) -> list[tuple[str, int]]:
        """The ``n`` largest parts, largest first."""
        return sorted(self.parts.items(), key=lambda kv: -kv[1])[:n]

    def describe(self, available: int | None = None) -> str:
        """``needs about 80 GiB (training set 75 GiB, ...)`` and, with ``available``,
        ``, 23 GiB available``."""
        parts = ", ".join(f"{name} {format_size(size)}" for name, size in self.largest())
        out = f"needs about {format_size(self.total)} ({parts})"
        return out if available is None else f"{out}, {format_size(available)} available"


def format_size(n: float) -> str:
    """``512 B``, ``3.2 MiB``, ``80 GiB``, ``7.1 PiB`` (three significant digits)."""
    n = float(n)
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                        ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 999.5 else f"{v:.0f} {unit}"
    return f"{n:.0f} B"


# ----------------------------------------------------------------------------- sizes


def _record_count(config: Config, steps: int) -> int:
    """Record times of the schedule (explicit times plus 0; else at most ``n_times + 2`` and at
    most one per step time)."""
    if config.times:
        return len({0.0, *config.times})
    return min(config.n_times + 2, steps + 1)


def _activation_buffers(activation: str) -> int:
    """Number of the engine's ``b x M`` buffers besides ``Z`` and ``G``: ``S``, ``P`` for the
    generic kernels, ``SGb``, ``SG`` unless ``sigma(z) = z sigma'(z)``."""
    base = activation.split(":")[0].strip().lower()
    if base in ("relu", "leaky_relu", "linear"):
        return 0
    if base in ("erf", "tanh"):
        return 2
    return 4


def _skips(config: Config) -> bool:
    """Full batch with forward skipping (hinge loss, an activation with hand-written kernels:
    a Lipschitz constant is known); else the certificate keeps only its base arrays."""
    base = config.activation.split(":")[0].strip().lower()
    return (config.batch == 0 and not config.online and config.loss == "hinge"
            and base in ("relu", "leaky_relu", "linear", "erf", "tanh"))


def _simulate_parts(c: Config) -> dict[str, int]:
    from meanfield.schedule import schedule_steps

    s = 4 if c.dtype == "float32" else 8
    N, d, M, T = c.N, c.d, c.M, c.n_test
    steps = schedule_steps(c)
    R = _record_count(c, steps)
    nodes = c.record_nodes or M
    b = min(_BLOCK, N) + _PERIOD_PAD
    Md = M * d
    skip = _skips(c) and c.device == "cpu"
    heun = c.integrator == "heun"
    gpu = c.device == "cuda"   # the step, its buffers and the certificate live on the GPU
    # a mini-batch or online batch (examples per step)
    n_b = (c.batch or N) if c.online else c.batch
    parts = {
        "training set": N * (d * s + s + 2 * _F64),
        "held-out set": T * (d * s + s + 2 * _F64),
        "weights": (Md + M) * s * (4 if gpu else
                                   4 + 2 + (2 if heun else 0) + (2 if skip else 0)),
        "engine buffers": 0 if gpu else (b * M * s * (2 + _activation_buffers(c.activation))
                                         + 2 * b * d * s + 3 * Md * s + 4 * M * _F64),
        "certificate": 0 if gpu else N * _F64 * (7 + (5 + 2 * _MAX_DIRS if skip else 0)),
        "satisfaction times": (N + T) * (_F64 + 2) + N,
        "records": R * (nodes * 3 + _N_SERIES) * _F64,
        "schedule": (steps + 1) * 40,
        # the file is built in memory before its atomic write (at most its arrays, unpacked)
        "output file image": (3 * N + 2 * T + R * (nodes * 3 + _N_SERIES)) * _F64,
    }
    if n_b:
        # the batch drawn next while the last is referenced; mini-batch: index permutation
        parts["batches"] = 2 * n_b * (d * s + s + 2 * _F64) + (0 if c.online else N * _F64)
    # the held-out set's engine at a record (a fresh one: block buffers and M x d arrays)
    b_test = min(_BLOCK, max(T, 1)) + _PERIOD_PAD
    test_engine = 0 if gpu else (b_test * (M * s * (2 + _activation_buffers(c.activation))
                                           + 2 * d * s) + 3 * Md * s)
    transients = {
        # advance: ~14 float64 per example and N x k, the examples at risk copied (all, at
        # worst) with float64 blocks, the motions of W in float64
        "certificate step": (N * _F64 * (15 + _MAX_DIRS) + N * d * s
                             + 2 * _DRAW_BLOCK * d * _F64 + 6 * Md * _F64) if skip else 0,
        "projection refresh": (N * _F64 * (2 * _MAX_DIRS + 1) + 2 * _DRAW_BLOCK * d * _F64
                               if skip else 0),
        "record": test_engine + 4 * (T or N) * _F64 + 3 * Md * _F64,
        "checkpoint": ((5 + _MAX_DIRS + 1) * N * _F64 + N + 3 * Md * s
                       if c.checkpoint_every else 0),
        "drawing the data": 2 * _DRAW_BLOCK * d * _F64 + 2 * max(N, T) * _F64 + Md * _F64,
        # the certificate's |x| (einsum in float64) casts a float32 training set whole
        "certificate setup": N * d * _F64 if s == 4 and not gpu else 0,
    }
    name, size = max(transients.items(), key=lambda kv: kv[1])
    parts[f"largest transient ({name})"] = size
    return parts


def _theory_times(c: Config) -> tuple[int, int]:
    """(record times, schedule steps built) of ``meanfield theory`` for ``c``."""
    from meanfield.schedule import schedule_steps
    from meanfield.theory import MAX_SCHEDULE_STEPS

    if c.times:
        return len({0.0, *c.times}), 0
    steps = schedule_steps(c)
    if steps > MAX_SCHEDULE_STEPS:
        return c.n_times + 1, 0
    return _record_count(c, steps), steps


def _theory_parts(c: Config, n_t: int, built_steps: int) -> dict[str, int]:
    from meanfield.theory import CHUNK

    n_x = len(c.x_par)
    # about 16 float64 per time (1e6 times to 1e12: 290 MiB peak with the baseline)
    parts = {"record times": n_t * 16 * _F64 + min(n_t, CHUNK) * 20 * 6 * _F64,
             "schedule": (built_steps + 1) * 40 if built_steps else 0}
    if not is_relu(c.activation):
        parts["population solution"] = n_t * 3 * _POP_NODES * 3 * _F64 + 64 * 2**20
    if n_x:
        parts["spread at x_par"] = n_t * n_x * _F64 + min(n_t * n_x, 4096) * 5 * 1024 * _F64
    # the file is built in memory before its atomic write
    parts["output file image"] = (n_t * _THEORY_CURVES + n_x * (n_t + 2)) * _F64
    return parts


def _compare_parts(c: Config) -> dict[str, int]:
    from meanfield.schedule import schedule_steps

    steps = schedule_steps(c)
    R = _record_count(c, steps)
    nodes = c.record_nodes or c.M
    return {
        "simulation file": R * (nodes * 3 + _N_SERIES) * _F64 + (3 * c.N + 2 * c.n_test) * _F64,
        "theory": R * 24 * _F64 * 3,
        "schedule and Euler push": (steps + 1) * (40 + 5 * _F64),
        "node trajectories": 8 * R * nodes * _F64,
        "metrics": 6 * (c.N + c.n_test) * _F64,
    }


def estimate(config: Config, command: str) -> Estimate:
    """The peak memory of ``meanfield COMMAND`` with ``config`` (bytes, itemised), from the
    config alone (no array is allocated; the step count is a closed form). For ``compare``,
    ``config`` is the simulation's."""
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}; got {command!r}")
    if command == "simulate":
        return Estimate(command, {"process baseline": BASELINE_BYTES, **_simulate_parts(config)})
    if command == "theory":
        parts = _theory_parts(config, *_theory_times(config))
        return Estimate(command, {"process baseline": THEORY_BASELINE_BYTES, **parts})
    if command == "compare":
        return Estimate(command, {"process baseline": BASELINE_BYTES, **_compare_parts(config)})
    stages = {"simulate": _simulate_parts(config),
              "theory": _theory_parts(config, *_theory_times(config)),
              "compare": _compare_parts(config)}
    stage = max(stages, key=lambda k: sum(stages[k].values()))
    return Estimate(command, {"process baseline": BASELINE_BYTES,
                              **{f"{stage}: {k}": v for k, v in stages[stage].items()}})


# ----------------------------------------------------------------------------- available


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What the cgroup limit leaves: v2 ``memory.max - memory.current``, v1
    ``memory.limit_in_bytes - memory.usage_in_bytes``; ``None`` without a limit."""
    limit, used = _read_int(root / "memory.max"), _read_int(root / "memory.current")
    if limit is None:
        limit = _read_int(root / "memory" / "memory.limit_in_bytes")
        used = _read_int(root / "memory" / "memory.usage_in_bytes")
    if limit is None or limit >= 2**60:   # v1 writes "no limit" as a huge number
        return None
    return max(0, limit - (used or 0))


def available_memory() -> int:
    """Bytes this process may still allocate: the smaller of ``MemAvailable``
    (``/proc/meminfo``) and what a cgroup limit leaves (v2 ``memory.max`` minus
    ``memory.current``, v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``);
    elsewhere the free physical pages (``os.sysconf``)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if found:
        return min(found)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62   # unknown: no limit from here (``--max-memory`` still applies)


def _own_rss() -> int:
    """Resident memory of this process now (0 if unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def linear_estimate(config: LinearConfig) -> Estimate:
    """The peak memory of ``meanfield linear`` (``S`` members, ``K`` widths, ``T`` record
    steps, ``n`` training and ``n_t`` held-out points, ``m`` the widest width): the outputs of
    four models on both sets (``4 S K T (n + n_t)``), 23 series ``S K T``, the initial NTKs
    ``S K n^2``, the initial weights ``S m (d + 1)``; the GD step's kept ``n x m`` buffer and
    the transients of a step (``Z``, ``phi(Z)``, ``phi'(Z) v r``: ``n x m`` each) or of an
    empirical NTK on the held-out points (four ``n_t x m``); the infinite-width and Hu
    kernels (``6 n (n + n_t)``) and the GP weights ``A_t`` (``2 T n_t n``); the file image,
    built in memory before its atomic write (the stored arrays once more)."""
    from meanfield.linear_gd import record_steps

    S, K, n, nt, d = config.seeds, len(config.widths), config.n, config.n_test, config.d
    m = config.widths[-1]
    T = len(record_steps(config.steps, config.n_times, config.times))
    stored = {
        "model outputs": 4 * S * K * T * (n + nt) * _F64,
        "series": 23 * S * K * T * _F64 + 2 * K * T * nt * _F64,
        "initial NTKs": S * K * n * n * _F64,
        "initial weights": S * m * (d + 1) * _F64,
    }
    parts = {"process baseline": BASELINE_BYTES, **stored,
             "gradient step or NTK": (n * m + max(3 * n * m, 4 * nt * m + n * nt)) * _F64
             + 4 * m * d * _F64,
             "infinite-width and Hu kernels": 6 * n * (n + nt) * _F64 + 2 * T * nt * n * _F64,
             "output file image": sum(stored.values()) + (n + nt) * (d + 1) * _F64}
    return Estimate("linear", parts)


def crossover_estimate(config: Config, n_alphas: int, settings: Any) -> Estimate:
    """The peak memory of ``meanfield crossover`` (``settings``: a
    :class:`meanfield.crossover_run.CrossoverSettings`): the training and held-out sets in
    float64 and in the run dtype; the linearized twin's fixed masks (one byte per example and
    node) and its blocks; the engine's blocks and weight buffers (as for ``simulate``); the
    probe kernels (``3 n_probe^2`` and ``2 n_probe M``); about 90 series per alpha and record
    time, twice (the records and the file image built before the atomic write)."""
    M, N, d = config.M, config.N, config.d
    T = settings.n_times + 2
    records = n_alphas * T * 90 * _F64
    parts = {"process baseline": BASELINE_BYTES,
             "data": (N + config.n_test) * (d + 2) * _F64 * 2,
             "linearized twin": (N * M + 2 * 1024 * (M + d)) if settings.linearized else 0,
             "engine blocks and weights": 2048 * M * _F64 * 6 + 8 * M * d * _F64,
             "probe kernels": settings.n_probe * (3 * settings.n_probe + 2 * M) * _F64,
             "records and file image": 2 * records + 4 * M * _F64}
    return Estimate("crossover", parts)


def gpu_estimate(config: Config) -> Estimate:
    """The peak GPU memory of ``simulate`` with ``device = "cuda"`` (bytes, itemised; ``s`` the
    itemsize, ``B = min(largest set, BLOCK_ELEMENTS // M)`` the rows of a block):

    - the training set moved once (``N (d + 1) s``), its satisfied mask and first-time flags,
      and the transients of marking first times (two masks, a scan and the indices of
      ``cupy.nonzero``: ``18 N`` bytes); the held-out inputs ``n_test d s``;
    - the weights and the loop's ``M x d`` buffers (weights, velocity, the recorder's
      scratch, ``W / sqrt d``, the accumulators; Heun: predictor and second velocity), and
      the float64 products of the homogeneous ``v_a``;
    - one block of pre-activations ``B M s`` and about ten float64 vectors of ``B`` (outputs,
      loss, ``g``, masks);
    - a mini-batch gathered there, or online examples moved there (the next one while the
      last is referenced);
    - :data:`meanfield.step.array_api.GPU_RESERVE` for cuBLAS, the kernels and the pool.
    """
    from meanfield.step.array_api import BLOCK_ELEMENTS, GPU_RESERVE

    c = config
    s = 4 if c.dtype == "float32" else 8
    N, d, M, T = c.N, c.d, c.M, c.n_test
    n_b = (c.batch or N) if c.online else c.batch
    B = max(1, min(max(N, T, n_b), BLOCK_ELEMENTS // M))
    Md = M * d
    buffers = 2 + 2 + 2 + 1 + 2 + (4 if c.integrator == "heun" else 0)
    parts = {
        "training set": N * (d * s + s) + N * 18,
        "held-out set": T * d * s,
        "weights and buffers": (Md + M) * s * buffers + 2 * Md * _F64,
        "pre-activations": B * M * s + 10 * B * _F64,
        "batches": 2 * n_b * (d * s + s + _F64) if n_b else 0,
        "reserve": GPU_RESERVE,
    }
    return Estimate("simulate on the GPU", parts)


def check_gpu_memory(config: Config, free: int | None = None) -> Estimate:
    """The :func:`gpu_estimate` of ``config``, or :class:`ConfigError` (one line) when it does
    not fit the GPU's free memory (``free``, bytes; by default asked of CuPy, which must be
    there: see :func:`meanfield.step.array_api.cuda_namespace`)."""
    est = gpu_estimate(config)
    if free is None:
        from meanfield.step.array_api import cuda_namespace, device_name, free_memory

        xp = cuda_namespace()
        free, name = free_memory(xp), device_name(xp)
    else:
        name = "the GPU"
    if est.total <= free:
        return est
    parts = ", ".join(f"{k} {format_size(v)}" for k, v in est.largest())
    raise ConfigError(f"needs about {format_size(est.total)} of GPU memory (largest parts: "
                      f"{parts}), {format_size(free)} free on {name}; use smaller N/M/d or "
                      "dtype float32")


def check_memory(config: Config, command: str, max_memory: int | None = None) -> Estimate:
    """The :func:`estimate` of ``command``, or :class:`ConfigError` (one line) when it does not
    fit: above ``max_memory`` (bytes of the whole process at its peak) or, without it, above
    the available memory plus what this process already holds of the baseline (the
    interpreter and libraries are loaded when this runs). A simulation on the GPU
    (``device = "cuda"``, ``simulate`` or ``reproduce``) must also fit the GPU's free memory
    (:func:`check_gpu_memory`; ``max_memory`` bounds the host's)."""
    est = check_estimate(estimate(config, command), max_memory)
    if config.device == "cuda" and command in ("simulate", "reproduce"):
        check_gpu_memory(config)
    return est


def check_estimate(est: Estimate, max_memory: int | None = None,
                   sizes: str = "N/M/d") -> Estimate:
    """``est``, or :class:`ConfigError` (one line, suggesting smaller ``sizes``) when it does
    not fit (see :func:`check_memory`)."""
    if max_memory is not None:
        budget, shown = int(max_memory), int(max_memory)
        if est.total <= budget:
            return est
    else:
        shown = available_memory()
        held = min(_own_rss(), est.parts["process baseline"])
        if est.total - held <= shown:
            return est
    parts = ", ".join(f"{name} {format_size(size)}" for name, size in est.largest())
    raise ConfigError(f"needs about {format_size(est.total)} (largest parts: {parts}), "
                      f"{format_size(shown)} {'allowed' if max_memory is not None else 'available'}"
                      f"; use smaller {sizes} or --max-memory")


# ----------------------------------------------------------------------------- --max-memory

_UNITS = {"": 1, "b": 1,
          "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]{1,3}))? ?([A-Za-z]{0,3})",
                   re.ASCII)


def parse_size(text: str, option: str = "--max-memory") -> int:
    """Bytes from ``80GiB``, ``80G`` (binary: K, M, G, T, P and KiB ... PiB), ``80GB``
    (decimal: kB ... PB), ``2e9`` or ``2000000000`` (bytes); case-insensitive units, one
    optional space. Anything else (negative, zero, NaN, inf, other units, more than 2^63
    bytes) raises :class:`ConfigError` naming ``option``."""
    bad = ConfigError(f"{option} must be a size such as 80GiB, 500M, 64GB or 2e9 (bytes, "
                      f"at least 1, below 8 EiB); got {text!r}")
    if not isinstance(text, str):
        raise bad
    m = _SIZE.fullmatch(text.strip())
    if m is None or m.group(3).lower() not in _UNITS:
        raise bad
    mantissa, exponent, unit = m.group(1), int(m.group(2) or 0), m.group(3).lower()
    value = float(f"{mantissa}e{exponent}") * _UNITS[unit]
    if not (math.isfinite(value) and 1 <= value < 2**63):
        raise bad
    return int(value)

"""meanfield.memory: the estimate against the measured peak RSS of real runs, refusal before
allocating, the size parser and the available memory."""

import json
import math
import re
import subprocess
import sys
import time
import tracemalloc

import pytest

from meanfield import memory
from meanfield.config import ConfigError, make_config

# Factor allowed between the estimate and the measured peak RSS. The estimate counts the
# largest transient of a step at its worst (every example at risk of the certificate copied,
# which a run reaches only after its examples start to be satisfied) and a process baseline
# measured once on one machine (thread stacks, library versions and allocator pools move it by
# tens of MB); RSS rounds to pages and keeps freed small objects. 1.5 leaves room for those
# while a missing or doubled training set (the largest array in each case below, 20-40% of
# the peak) or a missing float64 cast of it still fails.
FACTOR = 1.5

_PEAK = r"""
import json, re, sys
from meanfield.config import make_config
from meanfield.simulate import simulate
simulate(make_config(**json.loads(sys.argv[1])))
# VmHWM, the peak resident size of this process image (ru_maxrss would carry over the peak of
# the process that started this one, which execve keeps: a large test runner's)
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024)
"""


def _peak_rss(**kw) -> int:
    """Peak RSS of a process running the simulation of ``kw`` with Numba's kernels already in
    its disk cache: a first tiny run of the same kind fills the cache, and the smaller of two
    measured runs is kept (LLVM takes a few hundred MB while it compiles, which a warm run
    never pays; on a fresh checkout a kernel the tiny run did not reach compiles in the first
    measured run)."""
    tiny = {**kw, "N": 300, "M": 8, "d": 5, "n_test": 50, "t_max": 2.0}
    tiny.pop("growth", None)
    peaks = []
    for run in (tiny, kw, kw):
        out = subprocess.run([sys.executable, "-c", _PEAK, json.dumps(run)],
                             capture_output=True, text=True, check=True, timeout=600)
        peaks.append(int(out.stdout.split()[-1]))
    return min(peaks[1:])


def _check_against_rss(**kw):
    est = memory.estimate(make_config(**kw), "simulate")
    rss = _peak_rss(**kw)
    ratio = est.total / rss
    assert 1 / FACTOR <= ratio <= FACTOR, (ratio, est.describe(), memory.format_size(rss))
    return est, rss


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads VmHWM from /proc (Linux)")


@linux_only
def test_estimate_matches_peak_rss_float32():
    """N = 5e4, d = 400, float32: the training set (77 MiB) and its float64 cast by the
    certificate's norms (153 MiB) are most of the arrays."""
    est, _ = _check_against_rss(N=50_000, d=400, M=256, dtype="float32", t_max=2.0,
                                n_test=1000)
    assert est.parts["training set"] >= 50_000 * 400 * 4


@linux_only
@pytest.mark.slow
def test_estimate_matches_peak_rss_full_batch_late_times():
    """N = 1e5, d = 200, float64, run to t = 2000 on a geometric schedule: late enough that
    most examples are at risk in the certificate (their copy is the largest transient)."""
    _check_against_rss(N=100_000, d=200, M=100, t_max=2000.0, growth=0.05, n_test=0,
                       n_times=20)


@linux_only
@pytest.mark.slow
def test_estimate_matches_peak_rss_heun_with_records():
    """Heun with a held-out set of 1e5 examples (155 MiB) and 51 records of every node."""
    _check_against_rss(N=20_000, d=200, M=100, n_test=100_000, integrator="heun", t_max=50.0,
                       n_times=50)


def test_estimate_parts_sum_and_scale():
    """The parts sum to the total; the training set is N d itemsize plus three per-example
    numbers (x_par and the labels in float64, the labels in the dtype); SERIES is counted
    with the simulation file's own length."""
    from meanfield.files.simulation import SERIES

    assert memory._N_SERIES == len(SERIES)
    from meanfield.files.theory import SERIES as THEORY_SERIES

    assert memory._THEORY_CURVES == len(THEORY_SERIES)
    c = make_config(N=1000, d=10, M=20, dtype="float32", n_test=0)
    est = memory.estimate(c, "simulate")
    assert est.total == sum(est.parts.values())
    assert est.parts["training set"] == 1000 * (10 * 4 + 4 + 16)
    big = memory.estimate(c.replace(N=1_000_000), "simulate")
    assert big.parts["training set"] == 1000 * est.parts["training set"]
    for command in memory.COMMANDS:
        assert memory.estimate(c, command).total > memory.THEORY_BASELINE_BYTES
    with pytest.raises(ValueError, match="command must be one of"):
        memory.estimate(c, "derive")


def test_a_petabyte_run_is_refused_at_once_without_allocating():
    """N = 1.4e11 examples of d = 1000 float64 (1.1 PiB of training set): ConfigError of one
    line within 0.5 s, with under 1 MB allocated by the check (tracemalloc)."""
    c = make_config(N=140_000_000_000, d=1000)
    memory.estimate(c, "simulate")   # imports done
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        memory.check_memory(c, "simulate")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 2**20
    msg = str(err.value)
    assert "\n" not in msg
    assert re.fullmatch(r"needs about [0-9.]+ PiB \(largest parts: .*training set [0-9.]+ "
                        r"(PiB|TiB).*\), [0-9.]+ [KMGTP]iB available; use smaller N/M/d or "
                        r"--max-memory", msg), msg
    with pytest.raises(ConfigError, match=r"needs about .* GiB .*, 1 GiB allowed; use smaller"):
        memory.check_memory(make_config(N=2_000_000, d=100), "simulate",
                            max_memory=memory.parse_size("1GiB"))
    small = make_config(N=1000, d=10, M=20, n_test=0)
    assert memory.check_memory(small, "simulate", max_memory=2**40).total < 2**30
    assert memory.check_memory(small, "theory").command == "theory"


def test_describe_lists_the_largest_parts():
    est = memory.Estimate("simulate", {"training set": 75 * 2**30, "weights": 3 * 2**30,
                                       "records": 2**30, "schedule": 2**20})
    assert est.describe(23 * 2**30) == ("needs about 79 GiB (training set 75 GiB, weights "
                                        "3 GiB, records 1 GiB), 23 GiB available")


@pytest.mark.parametrize(("text", "expected"), [
    ("80GiB", 80 * 2**30), ("80G", 80 * 2**30), ("500M", 500 * 2**20), ("500m", 500 * 2**20),
    ("2e9", 2_000_000_000), ("2000000000", 2_000_000_000), ("64GB", 64 * 10**9),
    ("1.5k", 1536), (" 7 MiB ", 7 * 2**20), ("1PiB", 2**50), ("3.25e2KiB", 332_800),
    ("4096B", 4096), (".5G", 2**29),
])
def test_parse_size_accepts(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1G", "0", "nan", "inf", "1e30", "80 GiBs",
                                  "1,000", "0x10", "1e-9", "G", "80  GiB", "8 EiB", "1e",
                                  "१२G", 80, None])
def test_parse_size_refuses_with_the_option_named(text):
    with pytest.raises(ConfigError, match=r"^--max-memory must be a size such as 80GiB"):
        memory.parse_size(text)


def test_available_memory_is_bounded_by_the_machine(tmp_path):
    """Positive and at most the physical memory (os.sysconf); the cgroup reader on fake v2 and
    v1 hierarchies: limit minus usage, no limit read as None."""
    import os

    avail = memory.available_memory()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < avail <= physical
    (tmp_path / "memory.max").write_text("1000\n")
    (tmp_path / "memory.current").write_text("300\n")
    assert memory._cgroup_available(tmp_path) == 700
    (tmp_path / "memory.max").write_text("max\n")
    assert memory._cgroup_available(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("5000")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("6000")
    assert memory._cgroup_available(v1) == 0
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert memory._cgroup_available(v1) is None
    assert math.isfinite(avail)

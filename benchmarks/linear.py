"""Speed of ``meanfield linear``'s kernels and network step, as ratios measured side by side in
one run (float64, best of k calls after one warm-up call, ``time.perf_counter``).

    python benchmarks/linear.py [--quick] [--threads T] [--repeat K] [--only 1234]

Printed:

(1) the empirical NTK ``Theta = Theta1 + Theta2`` (both layers, ``lr1 = lr2 = 1``) at n = 256,
    m = 1024, d = 64, relu and erf: :func:`meanfield.linear.empirical_ntk` (the Gram formula)
    against writing out the Jacobian ``J`` (``n x (m d + m)``: ``df/dW_ij = v_i phi'(z_i) x_j /
    sqrt(m d)``, ``df/dv_i = phi(z_i) / sqrt m``) and forming ``J J^T``; the speed ratio (target:
    the Gram formula at least 10x faster) and the relative Frobenius difference (target
    <= 1e-12); and the page faults of one Gram call: its ``n x m`` arrays are new memory at
    every call (glibc hands blocks this large back to the system when they are freed), a
    large part of its time at this size (``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` set high in the environment, or ``--keep-memory``, keep them
    instead);
(2) the same kernels against ``neural_tangents.empirical_ntk_fn`` (JAX in float64,
    implementations 1, 2 and 3, jitted, after one warm-up call) on the same network
    (``stax.Dense(m, W_std=1, b_std=None, parameterization='ntk')``, the activation,
    ``stax.Dense(1, ...)``, with our ``W`` and ``v`` as parameters), if it is importable
    (optional; not a dependency); targets: at most 1.5x NT's fastest, equal to 1e-12;
(3) one GD step of :class:`meanfield.linear_gd.NetworkGD` at n = 1024, m = 4096, d = 100
    (relu, both layers) against the floor, the two BLAS GEMMs of the same shapes (``n x d @
    d x m`` and ``m x n @ n x d``) timed in the same rounds (target at most 1.3x); the NumPy
    passes (``fused=False``) alongside, the share of the elementwise passes in each, and
    whether the fused step's weights after 5 steps are bitwise those of the NumPy passes;
(4) without ``--quick``: the wall time of ``meanfield reproduce FIGURE --quick`` for lee-width,
    lee-gp and hu-early (target <= 120 s each on 2 cores), each in a new process; a figure the
    command does not know yet is reported as skipped.

``--quick`` runs (1) to (3) only, with fewer repeats. ``--keep-memory`` (glibc only) makes the
allocator keep freed blocks up to 32 MiB in the process instead of handing them back to the
system (``mallopt``), for every part. Timings use ``--threads`` threads (default
0: every core) for BLAS and Numba alike; JAX uses its own pool.
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools: imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import best_time, best_times

from meanfield.linear import empirical_ntk
from meanfield.linear_gd import NetworkGD
from meanfield.step import set_threads, thread_settings

FIGURES = ("lee-width", "lee-gp", "hu-early")


def keep_freed_memory() -> str:
    """glibc's ``mallopt``: blocks below 32 MiB from the heap, and the heap trimmed only past
    1 GiB free, so that freed arrays are reused without new page faults."""
    import ctypes
    import ctypes.util

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 25) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError) as e:
        return f"--keep-memory not applied ({e})"
    return "allocator keeps freed memory" if ok else "--keep-memory refused by mallopt"




def activation(name: str):
    from analytic.activations import get_activation
    from analytic.kernels import numeric_activation

    return numeric_activation(get_activation(name))


def network(n: int, m: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((m, d))
    v = rng.standard_normal(m)
    return X, W, v


def explicit_ntk(W: np.ndarray, v: np.ndarray, X: np.ndarray, phi, dphi) -> np.ndarray:
    """``J J^T`` with the Jacobian ``J`` (``n x (m d + m)``) written out."""
    m, d = W.shape
    n = len(X)
    Z = X @ W.T / math.sqrt(d)
    J = np.empty((n, m * d + m))
    JW = J[:, : m * d].reshape(n, m, d)
    assert np.shares_memory(JW, J)
    np.multiply((np.asarray(dphi(Z)) * v / math.sqrt(m))[:, :, None],
                (X / math.sqrt(d))[:, None, :], out=JW)
    J[:, m * d:] = np.asarray(phi(Z)) / math.sqrt(m)
    return J @ J.T


def rel_diff(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def gram_ntk(W, v, X, act) -> np.ndarray:
    t1, t2 = empirical_ntk(W, v, X, act.phi, act.dphi)
    return t1 + t2


def part1(repeat: int) -> dict[str, tuple[float, np.ndarray]]:
    """(1); returns the Gram formula's time and kernel per activation, for (2)."""
    n, m, d = 256, 1024, 64
    X, W, v = network(n, m, d)
    ours = {}
    for name in ("relu", "erf"):
        act = activation(name)
        t = {"gram": best_time(lambda act=act: gram_ntk(W, v, X, act), repeat),
             "J": best_time(lambda act=act: explicit_ntk(W, v, X, act.phi, act.dphi), repeat)}
        K = gram_ntk(W, v, X, act)
        diff = rel_diff(K, explicit_ntk(W, v, X, act.phi, act.dphi))
        ratio = t["J"] / t["gram"]
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        gram_ntk(W, v, X, act)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(f"(1) NTK n={n} m={m} d={d} {name:<4}: Gram {t['gram'] * 1e3:8.2f} ms, explicit J "
              f"J^T {t['J'] * 1e3:8.2f} ms: Gram {ratio:6.1f}x faster (target >= 10x) "
              f"{'ok' if ratio >= 10 else 'MISSED'}; rel. Frobenius diff {diff:.1e} "
              f"(target <= 1e-12) {'ok' if diff <= 1e-12 else 'MISSED'}; Gram call: {faults} "
              f"page faults ({faults * resource.getpagesize() / 2**20:.1f} MB of new pages)")
        ours[name] = (t["gram"], K)
    return ours


def part2(ours: dict[str, tuple[float, np.ndarray]], repeat: int) -> None:
    """(2): against neural_tangents, if importable."""
    try:
        import jax
        import neural_tangents as nt
        from neural_tangents import stax
    except ImportError as e:
        print(f"(2) neural_tangents not importable ({e}): comparison with "
              "neural_tangents.empirical_ntk_fn skipped")
        return
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    n, m, d = 256, 1024, 64
    X, W, v = network(n, m, d)
    layers = {"relu": stax.Relu, "erf": stax.Erf}
    x = jnp.asarray(X)
    if x.dtype != jnp.float64:
        print(f"(2) JAX runs in {x.dtype}, not float64: comparison skipped")
        return
    for name, layer in layers.items():
        _, apply_fn, _ = stax.serial(
            stax.Dense(m, W_std=1.0, b_std=None, parameterization="ntk"), layer(),
            stax.Dense(1, W_std=1.0, b_std=None, parameterization="ntk"))
        params = [(jnp.asarray(W.T), None), (), (jnp.asarray(v[:, None]), None)]
        t_ours, K = ours[name]
        times, diffs = {}, {}
        for impl in (1, 2, 3):
            try:
                fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                                 implementation=impl))
                times[impl] = best_time(
                    lambda fn=fn, params=params: fn(x, None, params).block_until_ready(), repeat)
                diffs[impl] = rel_diff(K, np.asarray(fn(x, None, params)).reshape(n, n))
            except Exception as e:  # an implementation that fails here is reported, not fatal
                print(f"(2) NT implementation {impl} ({name}) failed: {type(e).__name__}: {e}")
        if not times:
            continue
        fastest = min(times, key=times.get)
        ratio = t_ours / times[fastest]
        worst = max(diffs.values())
        each = ", ".join(f"impl {k} {t * 1e3:.2f} ms (diff {diffs[k]:.1e})"
                         for k, t in times.items())
        print(f"(2) NTK {name:<4} vs neural_tangents ({each}): ours {t_ours * 1e3:.2f} ms = "
              f"{ratio:.2f}x NT's fastest (impl {fastest}; target <= 1.5x) "
              f"{'ok' if ratio <= 1.5 else 'MISSED'}; largest rel. diff {worst:.1e} "
              f"(target <= 1e-12) {'ok' if worst <= 1e-12 else 'MISSED'}")


def bitwise_check() -> str:
    """Fused relu step against the NumPy passes, 5 steps, on random problems (both layers,
    first only, second only; and odd sizes)."""
    act = activation("relu")
    cases = [(1024, 4096, 100, 1.0, 1.0), (1024, 4096, 100, 1.0, 0.0),
             (1024, 4096, 100, 0.0, 1.0), (37, 53, 7, 1.0, 1.0), (200, 1001, 13, 2.0, 0.5)]
    failed = []
    for n, m, d, lr1, lr2 in cases:
        X, W, v = network(n, m, d, seed=n + m + d)
        y = np.sign(X[:, 0])
        nets = [NetworkGD(W, v, X, y, act.phi, act.dphi, 0.5, lr1, lr2, fused=f)
                for f in (True, False)]
        if nets[0]._relu is None:
            return "fused path not taken for relu (MISSED)"
        for _ in range(5):
            for net in nets:
                net.step()
        a, b = nets
        if not (np.array_equal(a.W.view(np.uint64), b.W.view(np.uint64))
                and np.array_equal(a.v.view(np.uint64), b.v.view(np.uint64))):
            failed.append(f"n={n} m={m} d={d} lr1={lr1} lr2={lr2}")
    if failed:
        return "weights DIFFER after 5 steps: " + "; ".join(failed)
    return f"W, v after 5 steps bitwise equal to the NumPy passes in all {len(cases)} cases"


def part3(repeat: int) -> None:
    """(3): the network's GD step against the two GEMMs."""
    n, m, d = 1024, 4096, 100
    act = activation("relu")
    X, W, v = network(n, m, d)
    y = np.sign(X[:, 0])
    fused = NetworkGD(W, v, X, y, act.phi, act.dphi, 0.1, 1.0, 1.0)
    plain = NetworkGD(W, v, X, y, act.phi, act.dphi, 0.1, 1.0, 1.0, fused=False)
    Xs = fused.Xs
    Z = np.empty((n, m))
    G = np.ones((n, m))
    out = np.empty((m, d))

    def floor() -> None:
        np.matmul(Xs, W.T, out=Z)
        np.matmul(G.T, Xs, out=out)

    t = best_times({"floor": floor, "fused": fused.step, "numpy": plain.step}, repeat)
    # the parts of each step, alone
    rng = np.random.default_rng(1)
    r = rng.standard_normal(n) / n
    Zp = Xs @ W.T
    P = act.phi(Zp)

    def numpy_G() -> None:
        Gn = act.dphi(Zp) * v
        Gn *= r[:, None]

    forward, backward = NetworkGD._relu_kernels()
    B = np.empty((n, m))
    keep = bool(fused._relu)
    parts = best_times({
        "gemm1": lambda: np.matmul(Xs, W.T, out=Z), "gemm2": lambda: np.matmul(G.T, Xs, out=out),
        "gemv": lambda: (P @ v, P.T @ r),
        "np_phi": lambda: act.phi(Zp), "np_G": numpy_G,
        "fused_phi": lambda: (np.copyto(B, Zp), forward(B, keep)), "copy": lambda: np.copyto(B, Zp),
        "fused_G": lambda: backward(B, v, r)}, repeat)
    ew_numpy = parts["np_phi"] + parts["np_G"]
    ew_fused = max(parts["fused_phi"] - parts["copy"], 0.0) + parts["fused_G"]
    f = t["floor"]
    print(f"(3) floor (2 GEMMs) n={n} m={m} d={d} float64: {f * 1e3:.2f} ms "
          f"(n x d @ d x m {parts['gemm1'] * 1e3:.2f} ms, m x n @ n x d "
          f"{parts['gemm2'] * 1e3:.2f} ms)")
    print(f"(3) NetworkGD.step relu, both layers (fused relu kernels): {t['fused'] * 1e3:.2f} ms "
          f"= {t['fused'] / f:.2f}x floor (target <= 1.3x) "
          f"{'ok' if t['fused'] / f <= 1.3 else 'MISSED'}; elementwise passes "
          f"{ew_fused * 1e3:.2f} ms = {ew_fused / t['fused']:.0%} of the step, the two GEMVs "
          f"{parts['gemv'] * 1e3:.2f} ms = {parts['gemv'] / t['fused']:.0%}")
    print(f"(3) NetworkGD.step relu, NumPy passes (fused=False): {t['numpy'] * 1e3:.2f} ms = "
          f"{t['numpy'] / f:.2f}x floor; elementwise passes {ew_numpy * 1e3:.2f} ms = "
          f"{ew_numpy / t['numpy']:.0%} of the step; fused step {t['numpy'] / t['fused']:.2f}x "
          "faster")
    print(f"(3) bitwise check: {bitwise_check()}")


def part4(timeout: float) -> None:
    """(4): ``meanfield reproduce FIGURE --quick`` wall times."""
    command = [sys.executable, "-c", "from cli.main import main; main()"]
    for name in FIGURES:
        with tempfile.TemporaryDirectory(prefix="bench-linear-") as tmp:
            t = time.perf_counter()
            try:
                proc = subprocess.run([*command, "reproduce", name, "--quick", "--out",
                                       str(Path(tmp) / name)], capture_output=True, text=True,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"(4) reproduce {name} --quick: stopped after {timeout:.0f} s "
                      "(target <= 120 s) MISSED")
                continue
            wall = time.perf_counter() - t
        if proc.returncode == 2 and "must be one of" in proc.stderr.lower():
            print(f"(4) reproduce {name} --quick: skipped, not a known figure yet")
        elif proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"(4) reproduce {name} --quick: FAILED (exit {proc.returncode}) after "
                  f"{wall:.1f} s: {last}")
        else:
            print(f"(4) reproduce {name} --quick: {wall:.1f} s (target <= 120 s) "
                  f"{'ok' if wall <= 120 else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="parts 1 to 3, fewer repeats")
    ap.add_argument("--threads", type=int, default=0, help="BLAS and Numba threads (0: all)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed calls per measurement (default 7, quick 3)")
    ap.add_argument("--only", default="1234", help="parts to run, e.g. '13'")
    ap.add_argument("--timeout", type=float, default=1200.0,
                    help="seconds allowed to each reproduce run of (4)")
    ap.add_argument("--keep-memory", action="store_true",
                    help="glibc: keep freed memory in the process (fewer page faults)")
    args = ap.parse_args()
    memory = keep_freed_memory() if args.keep_memory else "default allocator"
    threads = set_threads(args.threads)
    repeat = args.repeat or (3 if args.quick else 7)
    only = set(args.only) - ({"4"} if args.quick else set())
    ts = thread_settings()
    blas = ", ".join(f"{p['internal_api']} {p['version']} {p['architecture']}"
                     for p in ts["blas"])
    print(f"# meanfield linear benchmark ({'quick' if args.quick else 'full'}); threads = "
          f"{threads}; BLAS: {blas}; {memory}; best of {repeat}")
    ours = part1(repeat) if only & {"1", "2"} else {}
    if "2" in only:
        part2(ours, repeat)
    if "3" in only:
        part3(repeat)
    if "4" in only:
        part4(args.timeout)


if __name__ == "__main__":
    main()

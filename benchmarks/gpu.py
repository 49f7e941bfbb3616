"""Speed and accuracy of ``--device cuda`` (the array-API step on CuPy), measured in one run.

    python benchmarks/gpu.py [--quick] [--skip-cpu] [--skip-largest] [--largest-n N]

Runs only where CuPy and a CUDA GPU exist; elsewhere it says which is missing and exits 0.
Printed, with the device's name (each target's verdict in brackets; exit status 1 if one is
missed):

(a) the dense step (``meanfield.step.array_api.ArrayStep``, fused CUDA kernels; also the
    unfused array-function kernels) against the floor of the same device, timed side by side:
    the two cuBLAS GEMMs of a step, ``Z = X W^T`` and ``G^T X``, at the full ``(N, M)`` shape
    when it fits in memory (else in the step's own blocks, said so), at the paper size
    (M = 400, N = 1e5, d = 100) and at M = 4000, N = 1e6, d = 100, float64 and float32;
    target <= 2x;
(b) the whole paper-size run (relu, hinge h = 1, alpha = beta = 1, Euler dt = 1 to t = 2000,
    float64, 100 log-spaced records and the HDF5 file included), after a short warm-up run
    that compiles the kernels; target <= 10 s;
(c) a PyTorch eager + autograd loop of the same model, data and schedule on the same GPU
    (when torch is importable): its wall time over ours; target >= 2x;
(d) the final weights of (b) against the CPU engine's (``device = "cpu"``, all cores, same
    seed): largest relative difference of ``a`` and ``W``; target <= 1e-10;
(e) the largest ``N`` whose estimate fits the GPU's free memory (and the host's) at M = 400,
    d = 100, float32, run to t = 100 (dt = 1): N, wall time, time per step;
(f) (printed after (a)) where the fused step's time goes at the paper size in float64: each
    of its kernels timed alone.

``--quick``: t = 200 for (b)-(d), N = 2e5 at the large size of (a), N at most 2e7 in (e);
``--accuracy-t T``: (d) to t = T only (the CPU engine's run is the slow part);
``--largest-n N``: run (e) at N at most (the data are drawn on the CPU).
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools (the CPU engine's run
# of (d) is many times slower without it): imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import best_time

from meanfield.config import make_config
from meanfield.step import StepParams
from meanfield.step.array_api import (
    ArrayStep,
    DeviceUnavailable,
    cuda_namespace,
    device_name,
    free_memory,
)

PAPER = dict(M=400, N=100_000, d=100)
LARGE = dict(M=4000, N=1_000_000, d=100)
RESULTS: list[tuple[str, bool]] = []


def verdict(name: str, ok: bool) -> str:
    RESULTS.append((name, ok))
    return "[ok]" if ok else "[MISSED]"


def synced(cp, fn):
    def run():
        fn()
        cp.cuda.Device().synchronize()
    return run


def problem(cp, N: int, M: int, d: int, dtype: str, seed: int = 0):
    rng = cp.random.default_rng(seed)
    X = rng.standard_normal((N, d), dtype=np.float64).astype(dtype)
    y = cp.where(X[:, 0] >= 0, 1.0, -1.0).astype(dtype)
    a = rng.standard_normal(M, dtype=np.float64).astype(dtype)
    W = rng.standard_normal((M, d), dtype=np.float64).astype(dtype)
    return X, y, a, W


def floor_and_step(cp, N: int, M: int, d: int, dtype: str, repeat: int) -> None:
    """(a) at one size and dtype."""
    X, y, a, W = problem(cp, N, M, d, dtype)
    s = np.dtype(dtype).itemsize
    p = StepParams("relu", "hinge", 1.0, 1.0, dtype)
    fused, plain = ArrayStep(cp, p), ArrayStep(cp, p, fused=False)
    va, vW, sat = cp.empty_like(a), cp.empty_like(W), cp.zeros(N, dtype=bool)
    Ws = W * np.dtype(dtype).type(1 / math.sqrt(d))
    acc = cp.empty_like(W)
    full = N * M * s * 1.3 < free_memory(cp) * 0.8
    rows = N if full else fused.block_rows(N, M)
    Z = cp.empty((rows, M), dtype=dtype)

    def gemms():
        for start in range(0, N, rows):
            stop = min(N, start + rows)
            cp.matmul(X[start:stop], Ws.T, out=Z[: stop - start])
            cp.matmul(Z[: stop - start].T, X[start:stop], out=acc)

    t_floor = best_time(synced(cp, gemms), repeat)
    Z = None  # its memory back to the pool before the step runs
    cp.get_default_memory_pool().free_all_blocks()
    t_step = best_time(synced(cp, lambda: fused.velocity(X, y, a, W, va, vW, sat, sync=False)),
                       repeat)
    shape = "full shape" if full else f"blocks of {rows} rows"
    flops = 4 * N * M * d
    ratio = t_step / t_floor
    print(f"(a) M={M} N={N:.0e} d={d} {dtype}: floor {t_floor * 1e3:.3f} ms ({shape}, "
          f"{flops / t_floor / 1e12:.1f} TFLOP/s), fused step {t_step * 1e3:.3f} ms = "
          f"{ratio:.2f}x {verdict(f'step/floor M={M} {dtype}', ratio <= 2.0)}", flush=True)
    try:
        t_plain = best_time(synced(cp, lambda: plain.velocity(X, y, a, W, va, vW, sat,
                                                              sync=False)),
                            max(1, repeat // 2))
        print(f"    unfused array functions: {t_plain * 1e3:.3f} ms = {t_plain / t_floor:.2f}x",
              flush=True)
    except cp.cuda.memory.OutOfMemoryError:
        print("    unfused array functions: out of memory (their temporaries are N x M)")


def breakdown(cp, N: int, M: int, d: int, dtype: str, repeat: int) -> None:
    """(f) where the fused step's time goes: each of its kernels timed alone (relu, hinge)."""
    X, y, a, W = problem(cp, N, M, d, dtype)
    one = np.dtype(dtype).type(1.0)
    k = ArrayStep(cp, StepParams("relu", "hinge", 1.0, 1.0, dtype)).kernels
    Ws = W * np.dtype(dtype).type(1 / math.sqrt(d))
    Z = cp.matmul(X, Ws.T)
    Zr = Z.copy()
    s = k.rowsum(Z, a)
    g, lv, sat = k.loss(s, y, 1.0 / M)
    acc, va, vW = cp.empty_like(W), cp.empty_like(a), cp.empty_like(W)
    parts = {
        "GEMM Z = X Ws^T": lambda: cp.matmul(X, Ws.T, out=Z),
        "rowsum sigma(Z) a": lambda: k.rowsum(Zr, a),
        "(relu in place + cuBLAS GEMV instead)": lambda: cp.matmul(
            cp.maximum(Zr, 0, out=Zr), a),
        "loss pass": lambda: k.loss(s, y, 1.0 / M),
        "sum(loss), count": lambda: (cp.sum(lv), cp.count_nonzero(sat)),
        "grad Z <- g sigma'(Z)": lambda: k.grad(Z, g),
        "GEMM G^T X": lambda: cp.matmul(Z.T, X, out=acc),
        "tails v_a, v_W": lambda: (k.velocity_a(Ws, acc, None, one, va),
                                   k.velocity_W(acc, a, one, vW)),
    }
    times = {name: best_time(synced(cp, fn), repeat) for name, fn in parts.items()}
    total = sum(t for name, t in times.items() if not name.startswith("("))
    print(f"(f) the fused step's kernels alone, M={M} N={N:.0e} d={d} {dtype}: "
          + ", ".join(f"{name} {t * 1e3:.3f} ms" for name, t in times.items())
          + f"; sum {total * 1e3:.3f} ms", flush=True)


def final_weights(config):
    """The weights at the last step of ``config``'s run (the driver, no file)."""
    from meanfield.simulate import _Run, _train

    run = _Run(config, None, False)
    _train(run, None, None, None)
    run.to_host()
    return run.state.a.copy(), run.state.W.copy()


def whole_run(cp, t_max: float) -> tuple[float, object]:
    """(b): the whole run with records and file; returns (seconds, config)."""
    from meanfield.files.simulation import write_simulation
    from meanfield.simulate import simulate

    config = make_config(**PAPER, dt=1.0, t_max=t_max, device="cuda")
    simulate(config.replace(t_max=5.0))  # compiles and caches the kernels
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = simulate(config)
        write_simulation(result, Path(tmp) / "sim.h5")
        seconds = time.perf_counter() - start
    target = 10.0 * t_max / 2000.0
    print(f"(b) paper-size run to t={t_max:g} ({result.attrs['n_steps']} steps, records and file): "
          f"{seconds:.2f} s, {seconds / result.attrs['n_steps'] * 1e3:.2f} ms/step "
          f"{verdict('whole run', seconds <= target)} (target {target:g} s)", flush=True)
    return seconds, config


def torch_loop(config, ours: float) -> None:
    """(c): PyTorch eager + autograd, same model, data and schedule, on the GPU."""
    try:
        import torch
    except ImportError:
        print("(c) PyTorch not importable: skipped")
        return
    if not torch.cuda.is_available():
        print("(c) PyTorch has no CUDA: skipped")
        return
    from meanfield import data

    rngs = data.streams(config.seed)
    train = data.training_set(config, rngs["train"])
    data.held_out_set(config, rngs["test"])
    a0, W0 = data.initial_weights(config, rngs["init"])
    dev = torch.device("cuda")
    X, y = torch.from_numpy(train.X).to(dev), torch.from_numpy(train.y).to(dev)
    a = torch.from_numpy(a0).to(dev).requires_grad_(True)
    W = torch.from_numpy(W0).to(dev).requires_grad_(True)
    M, sd = config.M, math.sqrt(config.d)
    steps = round(config.t_max / config.dt)
    step = config.beta * config.dt * M

    def loop():
        for _ in range(steps):
            f = config.alpha / M * (torch.relu(X @ W.T / sd) @ a)
            loss = torch.relu(config.h - y * f).mean()
            a.grad = W.grad = None
            loss.backward()
            with torch.no_grad():
                a.sub_(step * a.grad)
                W.sub_(step * W.grad)
        torch.cuda.synchronize()

    start = time.perf_counter()
    loop()
    seconds = time.perf_counter() - start
    ratio = seconds / ours
    print(f"(c) PyTorch eager + autograd, {steps} steps (no records): {seconds:.2f} s = "
          f"{ratio:.2f}x our whole run {verdict('torch/ours', ratio >= 2.0)}", flush=True)


def accuracy(config) -> None:
    """(d): final weights of the GPU run against the CPU engine's."""
    start = time.perf_counter()
    a_gpu, W_gpu = final_weights(config)
    a_cpu, W_cpu = final_weights(config.replace(device="cpu"))
    rel = max(np.abs(a_gpu - a_cpu).max() / np.abs(a_cpu).max(),
              np.abs(W_gpu - W_cpu).max() / np.abs(W_cpu).max())
    print(f"(d) final weights, GPU against the CPU engine (float64, t={config.t_max:g}): "
          f"largest relative difference {rel:.2e} {verdict('accuracy', rel <= 1e-10)} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)


def largest(cp, cap: int | None) -> None:
    """(e): the largest N that fits at M = 400, d = 100, float32, run to t = 100."""
    from meanfield.memory import available_memory, estimate, gpu_estimate
    from meanfield.simulate import simulate

    free, host = free_memory(cp), available_memory()

    def fits(N: int) -> bool:
        c = make_config(M=400, N=N, d=100, dtype="float32", dt=1.0, t_max=100.0,
                        device="cuda")
        return gpu_estimate(c).total <= free and estimate(c, "simulate").total <= host

    lo, hi = 10_000, 10_000
    while fits(hi * 2):
        hi *= 2
    lo, hi = hi, hi * 2
    while hi - lo > max(1000, lo // 1000):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    N = lo if cap is None else min(lo, cap)
    print(f"(e) largest N at M=400 d=100 float32: {lo:.4g} (GPU free {free / 2**30:.1f} GiB, "
          f"host available {host / 2**30:.1f} GiB); running N = {N:.4g}"
          f"{' (capped: the data are drawn on the CPU)' if N < lo else ''} to t=100 ...",
          flush=True)
    config = make_config(M=400, N=N, d=100, dtype="float32", dt=1.0, t_max=100.0,
                         device="cuda")
    start = time.perf_counter()
    result = simulate(config)
    seconds = time.perf_counter() - start
    print(f"    done in {seconds:.1f} s (data drawn on the CPU included), "
          f"{seconds / result.attrs['n_steps']:.3f} s/step, final train_error "
          f"{result.series['train_error'][-1]:.4g}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true", help="skip (d), the CPU engine's run")
    ap.add_argument("--accuracy-t", type=float, default=None,
                    help="t_max of (d) (default: that of (b))")
    ap.add_argument("--skip-largest", action="store_true", help="skip (e)")
    ap.add_argument("--largest-n", type=int, default=None, help="cap N in (e)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    try:
        cp = cuda_namespace()
    except DeviceUnavailable as err:
        print(f"benchmarks/gpu.py needs CuPy and a CUDA GPU: {err}; nothing measured")
        return 0
    print(f"device: {device_name(cp)}, CuPy {cp.__version__}, CUDA runtime "
          f"{cp.cuda.runtime.runtimeGetVersion()}, {free_memory(cp) / 2**30:.1f} GiB free",
          flush=True)
    large = dict(LARGE, N=200_000) if args.quick else LARGE
    for size in (PAPER, large):
        for dtype in ("float64", "float32"):
            floor_and_step(cp, size["N"], size["M"], size["d"], dtype, args.repeat)
            cp.get_default_memory_pool().free_all_blocks()
    breakdown(cp, PAPER["N"], PAPER["M"], PAPER["d"], "float64", args.repeat)
    cp.get_default_memory_pool().free_all_blocks()
    t_max = 200.0 if args.quick else 2000.0
    ours, config = whole_run(cp, t_max)
    torch_loop(config, ours)
    if not args.skip_cpu:
        accuracy(config if args.accuracy_t is None else config.replace(t_max=args.accuracy_t))
    if not args.skip_largest:
        cap = args.largest_n if args.largest_n else (20_000_000 if args.quick else None)
        largest(cp, cap)
    missed = [name for name, ok in RESULTS if not ok]
    print(f"targets met: {len(RESULTS) - len(missed)}/{len(RESULTS)}"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

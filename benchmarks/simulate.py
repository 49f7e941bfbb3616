"""Speed of the simulator's step (meanfield.step), as ratios measured side by side in one run.

    python benchmarks/simulate.py [--quick] [--threads T] [--baseline-steps K] [--full-baselines]
                                  [--only LETTERS] [--command-threads T] [--repeat R]

Printed:

(a) the "floor": the two BLAS GEMMs of a dense step, ``Z = X W^T`` and ``G^T X`` with a dense
    ``G``, at M = 400, N = 1e5, d = 100, float64, one thread;
(b) our dense step (every example unsatisfied) / floor, at that size and at M = 200, N = 1e4,
    d = 50, in float32 and float64 (each against the float64 floor of its size, and against the
    floor in its own dtype);
(c) the obvious NumPy step (``numpy_velocity``) / floor;
(d) PyTorch eager with autograd / floor, if torch is importable (optional; not a dependency);
(e) the whole paper-size run (M = 400, N = 1e5, d = 100, relu, hinge h = 1, alpha = beta = 1,
    explicit Euler dt = 1 to t = 2000) with skipping, as a ratio of 2000 floors, and against
    NumPy and PyTorch on the same schedule (their per-step cost is the same at every step, so
    unless ``--full-baselines`` they run ``--baseline-steps`` steps, extrapolated to the whole
    schedule, and their weights after those steps are compared with ours);
(f) the examples re-evaluated per step by our certificate against the best any per-step
    certificate could do (one that knows the exact ``|f_{n+1} - f_n|`` of every example);
(g) peak memory of a stepper at the paper size (tracemalloc: NumPy allocations; and the
    process's maximum resident set size);
(h) the whole command ``meanfield simulate --M 400 --N 20000 --d 100 --dt 0.5 --growth 0.02
    --t-max 1000 --dtype float32 --threads T -o FILE --no-progress`` (a geometric schedule,
    237 steps), run as a subprocess (start-up, imports, data, records and the file included;
    wall time), against the obvious NumPy float64 loop (``numpy_velocity``, explicit Euler) on
    the same data, the same step schedule (``meanfield.simulate.schedule``) and T BLAS threads,
    its data drawn before timing; the two alternately, best of ``--repeat`` each; target
    ours/NumPy <= 0.5x;
(i) the same for the uniform run ``--dt 1 --t-max 400`` (no growth, 400 steps); target <= 0.3x;
(j) where the whole command's time goes, for the runs of (h) and (i): import (fresh
    interpreters: ``import cli.main``, ``meanfield --help``, the modules simulate imports),
    set-up (config, training and held-out sets, the rest of it), the training loop, recording
    (``Recorder.record``), the HDF5 write and the rest, each in seconds and as a share of the
    command; measured in a fresh process running ``simulate`` and ``write_simulation`` with
    timing wrappers put around those functions (``benchmarks/command.py``; no targets);
(k) steps, forward evaluations against dense (``evaluated_total`` / ``dense_evaluations_total``)
    and, where the result reports ``certificate_steps``, the steps that used the skipping
    certificate, for (h), (i) and (with ``e`` in ``--only``) the paper-size run of (e).

``--quick`` uses N = 2e4 at the reference size, 200 steps, and smaller baselines (about a minute);
in (h)-(k) N = 4000 and t_max 100 (h) and 40 (i).
``--compare-step PATH`` also runs (b), (e) and (f) with another version of the step, side by side
with ours: an older single-file ``meanfield/kernels.py`` (``git show REV:meanfield/kernels.py >
FILE``) or a ``meanfield/step`` package folder (``git archive REV meanfield/step | tar -x -C
DIR``, then ``DIR/meanfield/step``).
Timings use ``--threads`` threads (default 1, the floor's setting) for BLAS and Numba alike;
(h)-(k) use ``--command-threads`` (default: the usable cores; the measurements of record use 2).
On machines where the environment sets ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (for old
OpenBLAS builds), unset both for this command only; the BLAS kernel in use is printed.
"""

from __future__ import annotations

# the thread policy must be set before NumPy and Numba load their pools: imports follow it
# ruff: noqa: E402
from meanfield.runtime import set_thread_policy

set_thread_policy()

import argparse
import math
import os
import resource
import sys
import time
import tracemalloc

import numpy as np
from command import run_sections, usable_cores
from timing import best_time

from meanfield.step import (
    FullBatchStepper,
    StepParams,
    numpy_velocity,
    set_threads,
    thread_settings,
)


def problem(N: int, M: int, d: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)).astype(dtype)
    y = np.where(X[:, 0] >= 0, 1.0, -1.0).astype(dtype)
    a = rng.standard_normal(M).astype(dtype)
    W = rng.standard_normal((M, d)).astype(dtype)
    return X, y, a, W


def floor_time(N: int, M: int, d: int, dtype: str, repeat: int) -> float:
    """The two GEMMs of a dense step, into preallocated outputs."""
    X, _, _, W = problem(N, M, d, dtype)
    Z = np.empty((N, M), dtype)
    G = np.ones((N, M), dtype)
    out = np.empty((M, d), dtype)

    def run() -> None:
        np.matmul(X, W.T, out=Z)
        np.matmul(G.T, X, out=out)

    return best_time(run, repeat)


def dense_step_time(N: int, M: int, d: int, dtype: str, repeat: int, mod=None) -> float:
    """Our step with every example unsatisfied (hinge threshold h = 1e9); ``mod``: another
    version of the step (``--compare-step``) instead of the installed one."""
    X, y, a, W = problem(N, M, d, dtype)
    FBS, SP = (FullBatchStepper, StepParams) if mod is None else (mod.FullBatchStepper,
                                                                    mod.StepParams)
    st = FBS(X, y, SP("relu", "hinge", 1e9, 1.0, dtype), threads=THREADS, skip=False)
    va, vW = np.empty_like(a), np.empty_like(W)
    return best_time(lambda: st.velocity(a, W, va, vW), repeat)


def numpy_step_time(N: int, M: int, d: int, repeat: int) -> float:
    X, y, a, W = problem(N, M, d, "float64")
    p = StepParams("relu", "hinge", 1e9, 1.0, "float64")
    va, vW = np.empty_like(a), np.empty_like(W)
    return best_time(lambda: numpy_velocity(X, y, a, W, p, va, vW), repeat)


def torch_stepper(X, y, h: float, alpha: float):
    """PyTorch eager velocity with autograd (float64, CPU)."""
    import torch

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    M_d = math.sqrt(X.shape[1])

    def velocity(a: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = torch.tensor(a, requires_grad=True)
        Wt = torch.tensor(W, requires_grad=True)
        f = alpha / a.shape[0] * (torch.relu(Xt @ Wt.T / M_d) @ at)
        loss = torch.relu(h - yt * f).mean()
        loss.backward()
        M = a.shape[0]
        return (-M * at.grad).numpy(), (-M * Wt.grad).numpy()

    return velocity


def torch_step_time(N: int, M: int, d: int, repeat: int) -> float:
    X, y, a, W = problem(N, M, d, "float64")
    v = torch_stepper(X, y, 1e9, 1.0)
    return best_time(lambda: v(a, W), repeat)


def euler(velocity, a, W, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``steps`` explicit Euler steps of dt = 1 (beta = 1); returns weights and wall time."""
    t = time.perf_counter()
    for _ in range(steps):
        va, vW = velocity(a, W)
        a = a + va
        W = W + vW
    return a, W, time.perf_counter() - t


def ours_velocity(stepper):
    """``velocity(a, W)`` of the stepper; ``velocity.evaluated`` sums its forward passes."""
    va = vW = None

    def velocity(a, W):
        nonlocal va, vW
        if va is None:
            va, vW = np.empty_like(a), np.empty_like(W)
        stepper.velocity(a, W, va, vW)
        velocity.evaluated += stepper.n_evaluated
        return va, vW

    velocity.evaluated = 0
    return velocity


def numpy_stepper(X, y, p):
    def velocity(a, W):
        va, vW = np.empty_like(a), np.empty_like(W)
        numpy_velocity(X, y, a, W, p, va, vW)
        return va, vW

    return velocity


def optimum_fraction(N: int, M: int, d: int, steps: int, mod=None) -> dict[str, float]:
    """Our re-evaluations against the best per-step certificate, which skips an example while
    the exact accumulated ``sum |f_{n+1} - f_n|`` since its last evaluation is below its margin
    (first two steps: everything evaluated by both)."""
    X, y, a, W = problem(N, M, d, "float64", seed=1)
    FBS, SP = (FullBatchStepper, StepParams) if mod is None else (mod.FullBatchStepper,
                                                                    mod.StepParams)
    # the certificate's own quality: kept on at every call (the policy would switch it off)
    keep_on = {} if mod is not None else {"adaptive": False}
    st = FBS(X, y, SP("relu", "hinge", 1.0, 1.0, "float64"), threads=THREADS,
             directions=np.eye(d)[0], **keep_on)
    va, vW = np.empty_like(a), np.empty_like(W)
    acc = np.zeros(N)
    margin = np.full(N, -1.0)
    f_prev = None
    ours = opt = unsat_total = 0
    for n in range(steps):
        _, n_unsat = st.velocity(a, W, va, vW)
        f = st.outputs(a, W)
        if n >= 2:
            acc += np.abs(f - f_prev)
            evaluate = ~((margin > 0) & (acc < margin))
            ours += st.n_evaluated
            opt += int(evaluate.sum())
            unsat_total += n_unsat
        else:
            evaluate = np.ones(N, bool)
        margin[evaluate] = y[evaluate] * f[evaluate] - 1.0
        acc[evaluate] = 0.0
        f_prev = f
        a = a + va
        W = W + vW
    return {"ours": ours / (steps - 2) / N, "opt": opt / (steps - 2) / N,
            "unsat": unsat_total / (steps - 2) / N}


def memory_peak(N: int, M: int, d: int) -> tuple[float, float]:
    """MB: tracemalloc peak of NumPy allocations over building a stepper at the paper size
    (its training set included) and 3 steps; the process's max RSS so far."""
    tracemalloc.start()
    X, y, a, W = problem(N, M, d, "float64")
    st = FullBatchStepper(X, y, StepParams("relu", "hinge", 1.0, 1.0, "float64"),
                          threads=THREADS, directions=np.eye(d)[0])
    va, vW = np.empty_like(a), np.empty_like(W)
    for _ in range(3):
        st.velocity(a, W, va, vW)
        a = a + va
        W = W + vW
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def load_compared(path: str):
    """Another version of the step (``--compare-step``), exporting ``FullBatchStepper`` and
    ``StepParams``: a single-file ``kernels.py``, loaded as the module ``kernels_compared``, or
    a ``step`` package folder, copied to a temporary folder as the package ``step_compared``
    with its imports of ``meanfield.step`` redirected to it."""
    import atexit
    import importlib
    import importlib.util
    import shutil
    import tempfile
    from pathlib import Path

    src = Path(path)
    if src.is_dir():
        root = Path(tempfile.mkdtemp(prefix="step_compared_"))
        atexit.register(shutil.rmtree, root, True)
        dst = root / "step_compared"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        for f in dst.glob("*.py"):
            f.write_text(f.read_text().replace("meanfield.step", "step_compared"))
        sys.path.insert(0, str(root))
        return importlib.import_module("step_compared")
    spec = importlib.util.spec_from_file_location("kernels_compared", src)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels_compared"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-steps", type=int, default=None)
    ap.add_argument("--full-baselines", action="store_true",
                    help="run NumPy / PyTorch over the whole schedule")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--opt-n", type=int, default=None,
                    help="N of the certificate-vs-optimum run (f) (default 2e4, quick 5e3)")
    ap.add_argument("--only", default="abcdefghijk", help="sections to run, e.g. 'f'")
    ap.add_argument("--command-threads", type=int, default=usable_cores(),
                    help="threads of the command and BLAS threads of its NumPy baseline in "
                    "(h)-(k) (default: the usable cores)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="(h), (i): runs of the command and of the NumPy loop (best of)")
    ap.add_argument("--compare-step", "--compare-kernels", dest="compare", default=None,
                    metavar="PATH",
                    help="another version of the step: an older kernels.py file or a step "
                    "package folder; (b), (e), (f) also run with it, side by side with ours")
    args = ap.parse_args()
    other = load_compared(args.compare) if args.compare else None
    only = set(args.only)
    THREADS = set_threads(args.threads)
    quick = args.quick
    M, N, d = 400, (20_000 if quick else 100_000), 100
    steps = 200 if quick else 2000
    k_base = args.baseline_steps or (3 if quick else 10)
    rep = 3 if quick else 5
    print(f"# meanfield simulator benchmark ({'quick' if quick else 'full'}); "
          f"threads = {THREADS}")
    # memory first, before any baseline (and PyTorch) has been loaded
    peak, rss = memory_peak(N, M, d) if "g" in only else (math.nan, math.nan)
    ts = thread_settings()
    print(f"# BLAS: {ts['blas']}; numba threads {ts['numba_threads']} "
          f"({ts['numba_threading_layer']}); OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    if "g" in only:
        print(f"(g) memory at M={M} N={N} d={d} float64: peak of the arrays (tracemalloc) "
              f"{peak:.0f} MB, training set ({N * d * 8 / 2**20:.0f} MB) included (target <= "
              f"300 MB); process max RSS {rss:.0f} MB (Python, NumPy, Numba/LLVM included)")
    try:
        import torch

        torch.set_num_threads(THREADS)
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False

    if only & set("bcde"):
        floor = floor_time(N, M, d, "float64", rep)
        print(f"(a) floor (2 GEMMs) M={M} N={N} d={d} float64: {floor:.3f} s")
        sizes = [(M, N, d), (200, 10_000, 50)]
        floors = {}
        for (m, n, dd) in sizes if "b" in only else []:
            for dt in ("float64", "float32"):
                floors[(m, n, dd, dt)] = floor_time(n, m, dd, dt, rep)
        for (m, n, dd) in sizes if "b" in only else []:
            for dt in ("float64", "float32"):
                t = dense_step_time(n, m, dd, dt, rep)
                f64, own = floors[(m, n, dd, "float64")], floors[(m, n, dd, dt)]
                target = 1.2 if (m, n, dd) == (M, N, d) else 1.3
                print(f"(b) dense step M={m} N={n} d={dd} {dt}: {t:.3f} s = {t / f64:.2f}x the "
                      f"float64 floor, {t / own:.2f}x the {dt} floor (target {target}x)")
                if other is not None:
                    t = dense_step_time(n, m, dd, dt, rep, other)
                    print(f"(b)   compared step ({args.compare}): {t:.3f} s = "
                          f"{t / f64:.2f}x the float64 floor, {t / own:.2f}x the {dt} floor")
    if "c" in only:
        t_np = numpy_step_time(N, M, d, max(1, rep - 2))
        print(f"(c) NumPy step: {t_np:.3f} s = {t_np / floor:.2f}x floor")
    if "d" in only:
        if have_torch:
            t_torch = torch_step_time(N, M, d, max(1, rep - 2))
            print(f"(d) PyTorch eager + autograd step: {t_torch:.3f} s = {t_torch / floor:.2f}x "
                  "floor")
        else:
            print("(d) PyTorch not importable: skipped")

    if "e" in only:
        # (e) the whole run
        X, y, a0, W0 = problem(N, M, d, "float64", seed=2)
        p = StepParams("relu", "hinge", 1.0, 1.0, "float64")
        st = FullBatchStepper(X, y, p, threads=THREADS, directions=np.eye(d)[0])
        v_ours = ours_velocity(st)
        a_k, W_k, _ = euler(v_ours, a0.copy(), W0.copy(), k_base)
        st = FullBatchStepper(X, y, p, threads=THREADS, directions=np.eye(d)[0])
        v_ours = ours_velocity(st)
        a_T, W_T, t_run = euler(v_ours, a0.copy(), W0.copy(), steps)
        print(f"(e) whole run, {steps} Euler steps with skipping: {t_run:.1f} s = "
              f"{t_run / (steps * floor):.3f}x of {steps} floors (target <= 0.2x); "
              f"final train error {1 - st.satisfied.mean():.4f}")
        # for (k); certificate_steps only where the stepper reports it
        e_work = {"run": f"M={M} N={N} d={d} float64, dt=1 to t={steps}", "n_steps": steps,
                  "evaluated_total": v_ours.evaluated, "dense_evaluations_total": steps * N}
        if getattr(st, "certificate_calls", None) is not None:
            e_work["certificate_steps"] = st.certificate_calls
        if other is not None:
            p2 = other.StepParams("relu", "hinge", 1.0, 1.0, "float64")
            for k in (3, steps):  # 3 steps: warm-up (compilation)
                st2 = other.FullBatchStepper(X, y, p2, threads=THREADS, directions=np.eye(d)[0])
                a_o, W_o, t_o = euler(ours_velocity(st2), a0.copy(), W0.copy(), k)
            same = np.array_equal(a_o, a_T) and np.array_equal(W_o, W_T)
            print(f"(e)   compared step ({args.compare}): {t_o:.1f} s = "
                  f"{t_o / (steps * floor):.3f}x of {steps} floors; final weights "
                  f"{'bitwise equal to ours' if same else 'differ from ours'}")
        baselines = [("NumPy", numpy_stepper(X, y, p))]
        if have_torch:
            tv = torch_stepper(X, y, 1.0, 1.0)
            baselines.append(("PyTorch", lambda a, W: tv(a, W)))
        n_base = steps if args.full_baselines else k_base
        ref_a, ref_W = (a_T, W_T) if args.full_baselines else (a_k, W_k)
        for name, vel in baselines:
            a_b, W_b, t_b = euler(vel, a0.copy(), W0.copy(), n_base)
            t_whole = t_b * steps / n_base
            diff = max(np.abs(a_b - ref_a).max() / np.abs(ref_a).max(),
                       np.abs(W_b - ref_W).max() / np.abs(ref_W).max())
            how = "measured" if n_base == steps else f"{n_base} steps measured, extrapolated"
            print(f"(e) {name} on the same schedule: {t_whole:.1f} s ({how}); ours is "
                  f"{t_whole / t_run:.1f}x faster (target >= 10x); weights after {n_base} steps "
                  f"differ by {diff:.1e} (relative to the largest)")

    if "f" in only:
        section_f(args, other, quick, M, d)
    if only & set("hijk"):
        run_sections(only, quick, args.command_threads, args.repeat,
                     e_work if "e" in only else None)
    sys.stdout.flush()


def section_f(args: argparse.Namespace, other, quick: bool, M: int, d: int) -> None:
    """(f) certificate against the per-step optimum."""
    n_opt, s_opt = (5_000, 200) if quick else (20_000, 2000)
    n_opt = args.opt_n or n_opt
    fr = optimum_fraction(n_opt, M, d, s_opt)
    print(f"(f) M={M} N={n_opt} d={d}, {s_opt} steps: examples evaluated per step "
          f"ours {fr['ours']:.4f}, best per-step certificate {fr['opt']:.4f} -> ratio "
          f"{fr['ours'] / fr['opt']:.2f} (target <= 1.5); unsatisfied (always evaluated) "
          f"{fr['unsat']:.4f}; satisfied re-evaluations ratio "
          f"{(fr['ours'] - fr['unsat']) / max(fr['opt'] - fr['unsat'], 1e-12):.2f}")
    if other is not None:
        fr = optimum_fraction(n_opt, M, d, s_opt, other)
        print(f"(f)   compared step ({args.compare}): ours {fr['ours']:.4f}, best "
              f"{fr['opt']:.4f} -> ratio {fr['ours'] / fr['opt']:.2f}; satisfied "
              f"re-evaluations ratio "
              f"{(fr['ours'] - fr['unsat']) / max(fr['opt'] - fr['unsat'], 1e-12):.2f}")


THREADS = 1

if __name__ == "__main__":
    main()

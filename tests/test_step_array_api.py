"""The array-API step (``device = "cuda"``'s code path): under NumPy against the Numba engine
to 1e-12 in float64 (one step and whole runs: full batch, mini-batch, online; Euler and Heun;
relu, leaky relu, erf, tanh, linear and user expressions; hinge, squared and logistic), its
checkpoints and resume; the ``device`` field (run hash, TOML, JSON); the refusals of
``--device cuda`` without CuPy or without a GPU; the GPU memory estimate; the C code of user
activations (compiled with the C compiler when there is one). The tests at the end need CuPy
and a CUDA GPU and are skipped elsewhere: the fused kernels against the engine, a GPU run
against a CPU run of the same seed, file layout, checkpoint and resume on the GPU."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import sys
import types

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import LATER_FIELDS, ConfigError, from_json, make_config, run_hash
from meanfield.files.checkpoint import read_checkpoint
from meanfield.simulate import SimulationInterrupted, simulate
from meanfield.step import StepParams, dense_velocity
from meanfield.step.array_api import (
    ArrayStep,
    ArrayStepper,
    DeviceUnavailable,
    c_activation,
    cuda_namespace,
)
from meanfield.step.engine import Engine

ACTIVATIONS = ["relu", "leaky_relu:0.1", "erf", "tanh", "linear", "x*tanh(x)"]
LOSSES = ["hinge", "squared", "logistic"]
SMALL = dict(M=24, N=300, d=7, n_test=120, dt=0.25, t_max=5.0, n_times=10, seed=3)


def _problem(N=500, M=23, d=9, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)).astype(dtype)
    y = np.where(X[:, 0] >= 0, 1.0, -1.0).astype(dtype)
    return X, y, rng.standard_normal(M).astype(dtype), rng.standard_normal((M, d)).astype(dtype)


def _rel(x, ref):
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-300))


def _engine_velocity(X, y, a, W, p):
    va, vW = np.empty_like(a), np.empty_like(W)
    L, u = dense_velocity(X, y, a, W, p, va, vW)
    return va, vW, L, u


# --------------------------------------------------------------------------- one step


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", [*ACTIVATIONS, "max(x, 0)**2 + abs(x)"])
def test_one_step_matches_the_numba_engine(activation, loss):
    X, y, a, W = _problem()
    p = StepParams(activation=activation, loss=loss, h=0.4, alpha=1.7)
    va, vW, L, u = _engine_velocity(X, y, a, W, p)
    f = Engine(a.shape[0], X.shape[1], p, 128).outputs(X, a, W)
    for block_elements in (2**26, 23 * 64):  # one block; 8 blocks, the last one short
        step = ArrayStep(np, p, block_elements=block_elements)
        va2, vW2, sat = np.empty_like(a), np.empty_like(W), np.zeros(X.shape[0], bool)
        L2, u2 = step.velocity(X, y, a, W, va2, vW2, sat)
        assert _rel(va2, va) < 1e-12 and _rel(vW2, vW) < 1e-12
        assert L2 == pytest.approx(L, rel=1e-12) and u2 == u
        np.testing.assert_array_equal(sat, y * f >= p.h)
        assert _rel(step.outputs(X, a, W), f) < 1e-12


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_float32_within_its_rounding(activation):
    X, y, a, W = _problem(dtype="float32")
    p = StepParams(activation=activation, loss="hinge", dtype="float32")
    va, vW, L, u = _engine_velocity(X, y, a, W, p)
    va2, vW2 = np.empty_like(a), np.empty_like(W)
    L2, u2 = ArrayStep(np, p).velocity(X, y, a, W, va2, vW2)
    assert abs(u2 - u) <= 2  # an example within rounding of the threshold may flip
    assert va2.dtype == vW2.dtype == np.float32
    assert _rel(va2, va) < 1e-5 and _rel(vW2, vW) < 1e-5 and L2 == pytest.approx(L, rel=1e-5)


def test_stepper_has_the_full_batch_interface():
    X, y, a, W = _problem()
    p = StepParams()
    st = ArrayStepper(X, y, p, np)
    assert st.X is not X and st.X.flags.c_contiguous  # moved (copied) once
    va, vW = np.empty_like(a), np.empty_like(W)
    _, u = st.velocity(a, W, va, vW)
    assert st.n_evaluated == X.shape[0] and int((~st.satisfied).sum()) == u
    assert st.get_state() is None
    st.set_state(None)
    f = Engine(a.shape[0], X.shape[1], p, 128).outputs(X, a, W)
    assert _rel(st.outputs(a, W), f) < 1e-12 and _rel(st.outputs(a, W, X[:50]), f[:50]) < 1e-12


# --------------------------------------------------------------------------- whole runs


def _same_within(r_ref, r, tol):
    for key in ("a", "w_par", "w_perp_norm"):
        assert _rel(r.nodes[key], r_ref.nodes[key]) < tol, key
    for key, ref in r_ref.series.items():
        if key.startswith("n_evaluated"):  # the engine skips certified examples, the array
            continue                        # step is dense
        np.testing.assert_allclose(r.series[key], ref, rtol=tol, atol=tol, err_msg=key)
    for key in ("t", "t_sat", "test_t_sat", "a0", "w_par0"):
        np.testing.assert_array_equal(getattr(r, key), getattr(r_ref, key), err_msg=key)


RUNS = [
    dict(),
    dict(integrator="heun"),
    dict(batch=64),
    dict(batch=50, integrator="heun", activation="tanh", loss="logistic"),
    dict(online=True, batch=40),
    dict(online=True, integrator="heun", activation="erf", loss="squared"),
    dict(activation="x*tanh(x)", loss="logistic"),
    dict(activation="leaky_relu:0.2", loss="squared", init="symmetric", growth=0.1),
    dict(activation="erf", n_test=0),
]


@pytest.mark.parametrize("mode", RUNS, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items())
                         or "default")
def test_a_run_matches_the_numba_engine(mode):
    c = make_config(**{**SMALL, **mode})
    ref = simulate(c)
    r = simulate(c, array_namespace=np)
    _same_within(ref, r, 1e-12)
    assert r.attrs["evaluated_total"] == r.attrs["dense_evaluations_total"]


def _checkpoint_at(c, tmp_path, step, name="run", **kw):
    ckpt = tmp_path / f"{name}.ckpt.h5"
    calls = iter(range(10**9))
    with pytest.raises(SimulationInterrupted):
        simulate(c, checkpoint=ckpt, should_stop=lambda: next(calls) == step, **kw)
    return ckpt


@pytest.mark.parametrize("mode", [dict(), dict(batch=50, integrator="heun")])
def test_checkpointed_weights_match_and_resume_is_bitwise(tmp_path, mode):
    c = make_config(**{**SMALL, **mode})
    engine = read_checkpoint(_checkpoint_at(c, tmp_path, 13, "engine"), c)
    ckpt = _checkpoint_at(c, tmp_path, 13, array_namespace=np)
    state = read_checkpoint(ckpt, c)
    assert state.n == 13 and state.stepper_state is None
    assert _rel(state.W, engine.W) < 1e-12 and _rel(state.a, engine.a) < 1e-12
    whole = simulate(c, array_namespace=np)
    resumed = simulate(c, checkpoint=ckpt, resume=True, array_namespace=np)
    for group in ("series", "nodes"):
        for key, value in getattr(whole, group).items():
            np.testing.assert_array_equal(getattr(resumed, group)[key], value, err_msg=key)
    np.testing.assert_array_equal(resumed.t_sat, whole.t_sat)


@pytest.mark.parametrize("extra", [{"beta": 1e6}, {"beta": 1e5, "dtype": "float32"},
                                   {"alpha": 1e6, "integrator": "heun"}])
def test_divergence_is_reported_at_the_same_step_as_on_the_cpu(extra):
    """The array-API driver checks the weights' range without waiting for the device at
    every step (a buffer read back every 32 steps and before any record): the error names
    the same first step out of range, and the same time, as the engine's check at every
    step."""
    from meanfield.simulate import SimulationDiverged

    c = make_config(**{**SMALL, "t_max": 60.0, "n_times": 3, **extra})
    with pytest.raises(SimulationDiverged) as cpu:
        simulate(c)
    with np.errstate(all="ignore"), pytest.raises(SimulationDiverged) as dev:
        simulate(c, array_namespace=np)
    assert str(dev.value) == str(cpu.value)
    assert "diverged at step" in str(cpu.value)


# --------------------------------------------------------------------------- the field


def test_device_is_a_later_field_in_the_run_hash():
    assert LATER_FIELDS == ("init", "device")
    base = make_config(**SMALL)
    assert make_config(**SMALL, device="cpu") == base
    # the hashes of configurations written before the field existed
    assert make_config().hash() == run_hash(make_config()) == "a708338d013e"
    assert make_config(M=30, N=400, d=8, seed=3).hash() == "4c4400ae956c"
    assert "device" not in base.to_json() and "device" not in base.to_toml()
    gpu = base.replace(device="cuda")
    assert '"device":"cuda"' in gpu.to_json() and 'device = "cuda"' in gpu.to_toml()
    assert run_hash(gpu) != run_hash(base)
    assert from_json(base.to_json()).device == "cpu" and from_json(gpu.to_json()) == gpu
    with pytest.raises(ConfigError, match=r"^device must be one of cpu, cuda; got 'gpu'$"):
        make_config(device="gpu")


# --------------------------------------------------------------------------- refusals


def _no_gpu_cupy(monkeypatch):
    """A stand-in ``cupy`` module whose runtime finds no device."""
    fake = types.ModuleType("cupy")
    fake.__version__ = "13.9.9"

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)


def _cupy_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError


@pytest.mark.parametrize("setup, message", [
    (_cupy_missing, "Error: device = cuda needs CuPy, which is not installed: "
                    "pip install 'meanfield[gpu]'"),
    (_no_gpu_cupy, "Error: device = cuda needs a CUDA GPU, and none was found (CuPy 13.9.9: "
                   "cudaErrorNoDevice: no CUDA-capable device is detected)"),
])
def test_device_cuda_without_cupy_or_gpu_is_refused(tmp_path, monkeypatch, setup, message):
    setup(monkeypatch)
    out = tmp_path / "sim.h5"
    res = CliRunner().invoke(main, ["simulate", "--M", "10", "--N", "50", "--d", "4",
                                    "--t-max", "2", "--device", "cuda", "-o", str(out)])
    assert res.exit_code == 2 and res.output.strip() == message, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "rep"
    res = CliRunner().invoke(main, ["reproduce", "pb-fig1", "--quick", "--device", "cuda",
                                    "--out", str(folder)])
    assert res.exit_code == 2 and res.output.strip() == message and not folder.exists()
    with pytest.raises(DeviceUnavailable, match=r"^device = cuda needs"):
        simulate(make_config(**SMALL, device="cuda"))
    with pytest.raises(DeviceUnavailable):
        cuda_namespace()


def test_reproduce_device_only_for_the_simulator(tmp_path):
    res = CliRunner().invoke(main, ["reproduce", "lee-width", "--quick", "--device", "cuda",
                                    "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "only pb-fig1 runs on the simulator" in res.output


# --------------------------------------------------------------------------- memory


def test_gpu_memory_estimate_and_refusal():
    from meanfield.memory import check_gpu_memory, estimate, gpu_estimate

    paper = make_config(device="cuda")
    est = gpu_estimate(paper)
    assert est.parts["pre-activations"] >= paper.N * paper.M * 8  # one block of Z
    assert est.parts["training set"] >= paper.N * paper.d * 8
    big = make_config(M=4000, N=10**6, device="cuda")  # blocks: Z is bounded, not N x M
    assert gpu_estimate(big).parts["pre-activations"] < 2**26 * 8 * 1.1
    f32 = make_config(N=10**8, dtype="float32", device="cuda")
    assert 40e9 < gpu_estimate(f32).total < 45e9
    assert check_gpu_memory(paper, free=2**30) == est
    with pytest.raises(ConfigError, match=r"^needs about .* of GPU memory \(largest parts: "
                       r".*\), 100 MiB free on the GPU; use smaller N/M/d or dtype float32$"):
        check_gpu_memory(paper, free=100 * 2**20)
    # on the host a GPU run keeps neither the certificate nor the engine's blocks
    host, cpu = estimate(paper, "simulate"), estimate(paper.replace(device="cpu"), "simulate")
    assert host.parts["certificate"] == host.parts["engine buffers"] == 0
    assert host.total < cpu.total


# --------------------------------------------------------------------------- C code


CC = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_c_code_of_activations_computes_them(tmp_path):
    """The C of every kind (hand-written and generated), compiled by the host's C compiler,
    against the NumPy functions the CPU tests use."""
    from meanfield.step.array_api import xp_activation

    names = [*ACTIVATIONS, "gelu", "softplus", "max(x, 0)**2", "abs(x)**1.5", "sign(x)*x**2",
             "min(x, 1, 2*x)", "sigmoid", "x/(1 + x**2)", "atan(x) + cos(x)*erfc(x)",
             "sqrt(abs(x) + 1)*exp(-x**2/2)/sqrt(2*pi)"]
    src = ["#include <math.h>"]
    for i, name in enumerate(names):
        code = c_activation(StepParams(activation=name)).replace("__device__ ", "")
        src.append(code.replace("mf_sig(", f"sig{i}(").replace("mf_dsig(", f"dsig{i}("))
    (tmp_path / "act.c").write_text("\n".join(src))
    lib = tmp_path / "act.so"
    subprocess.run([CC, "-O1", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "act.c"),
                    "-lm"], check=True, capture_output=True)
    dll = ctypes.CDLL(str(lib))
    u = np.concatenate([np.linspace(-3, 3, 61), [0.0, 1e-3, -1e-3, 0.5]])
    for i, name in enumerate(names):
        sig, dsig = xp_activation(np, StepParams(activation=name))
        for fname, ref in ((f"sig{i}", sig), (f"dsig{i}", dsig)):
            fn = getattr(dll, fname)
            fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_double]
            got = np.array([fn(float(v)) for v in u])
            np.testing.assert_allclose(got, ref(u), rtol=1e-13, atol=1e-13,
                                       err_msg=f"{fname} {name}")


# ----------------------------------------------------------------- CUDA kernels on the CPU

CXX = shutil.which("c++") or shutil.which("g++")
_C_TYPES = {"float64": "double", "float32": "float", "bool": "bool", "int64": "int64_t"}


class _EmulatedCupy:
    """Just enough of ``cupy`` for :class:`meanfield.step.array_api.CupyKernels`: its
    ``ElementwiseKernel`` and ``ReductionKernel`` are compiled as plain C++ loops by the host
    compiler (``__device__`` erased, ``T`` the dtype of the arrays), with CuPy's semantics
    (broadcast inputs, typed parameters, output references, ``map``/``reduce``/``post_map``
    with the operands ``a`` and ``b``), so the kernels' C runs against the Numba engine here."""

    float64 = np.float64
    empty = staticmethod(np.empty)

    def __init__(self, tmp_path):
        self.tmp, self.count, self.built = tmp_path, 0, {}

    def _compile(self, source):
        if source in self.built:
            return self.built[source]
        self.count += 1
        src = self.tmp / f"k{self.count}.cpp"
        lib = self.tmp / f"k{self.count}.so"
        src.write_text(source)
        subprocess.run([CXX, "-O0", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                       capture_output=True)
        self.built[source] = ctypes.CDLL(str(lib)).run
        return self.built[source]

    @staticmethod
    def _params(text):
        return [tuple(p.split()) for p in text.split(",")]

    def _header(self, T, preamble):
        return ("#include <cmath>\n#include <cstdint>\nusing namespace std;\n#define __device__\n"
                f"typedef {_C_TYPES[T]} T;\n{preamble}\n")

    def ElementwiseKernel(self, in_params, out_params, operation, name, preamble=""):
        ins, outs = self._params(in_params), self._params(out_params)

        def call(*args):
            arrays = [np.asarray(v) for v in args]
            shape = np.broadcast_shapes(*(v.shape for v in arrays))
            T = next(v.dtype.name for (t, _), v in zip(ins + outs, arrays, strict=True)
                     if t == "T")
            decl, ptrs = [], []
            for t, nm in ins + outs:
                c = "T" if t == "T" else _C_TYPES[t]
                ptrs.append(f"{c}* {nm}_p")
                ref = "" if (t, nm) in ins else "&"
                decl.append(f"{'const ' if not ref else ''}{c} {ref}{nm} = {nm}_p[i];")
            code = (self._header(T, preamble) + f"extern \"C\" void run({', '.join(ptrs)}, long n)"
                    f" {{ for (long i = 0; i < n; ++i) {{ {' '.join(decl)} {operation}; }} }}")
            fn = self._compile(code)
            bufs = [np.ascontiguousarray(np.broadcast_to(v, shape)) for v in arrays]
            fn(*(b.ctypes.data_as(ctypes.c_void_p) for b in bufs), ctypes.c_long(bufs[0].size))
            for v, b in zip(arrays[len(ins):], bufs[len(ins):], strict=True):
                v[...] = b

        return call

    def ReductionKernel(self, in_params, out_params, map_expr, reduce_expr, post_map_expr,
                        identity, name, reduce_type=None, preamble=""):
        ins, ((t_out, out),) = self._params(in_params), self._params(out_params)

        def call(*args, axis):
            arrays = np.broadcast_arrays(*(np.asarray(v) for v in args))
            arrays = [np.ascontiguousarray(np.moveaxis(v, axis, -1)) for v in arrays]
            n_out, n_red = arrays[0].shape[0], arrays[0].shape[1]
            T = next(v.dtype.name for (t, _), v in zip(ins, arrays, strict=True) if t == "T")
            ptrs = [f"const {'T' if t == 'T' else _C_TYPES[t]}* {nm}_p" for t, nm in ins]
            decl = " ".join(f"const {'T' if t == 'T' else _C_TYPES[t]} {nm} = "
                            f"{nm}_p[i * n_red + j];" for t, nm in ins)
            code = (self._header(T, preamble)
                    + f"extern \"C\" void run({', '.join(ptrs)}, {_C_TYPES[t_out]}* {out}_p, "
                    f"long n_out, long n_red) {{ for (long i = 0; i < n_out; ++i) {{ "
                    f"{reduce_type} a = {identity}; for (long j = 0; j < n_red; ++j) {{ {decl} "
                    f"{reduce_type} b = ({map_expr}); a = ({reduce_expr}); }} "
                    f"{_C_TYPES[t_out]} &{out} = {out}_p[i]; {post_map_expr}; }} }}")
            fn = self._compile(code)
            result = np.empty(n_out, dtype=t_out)
            fn(*(v.ctypes.data_as(ctypes.c_void_p) for v in arrays),
               result.ctypes.data_as(ctypes.c_void_p), ctypes.c_long(n_out), ctypes.c_long(n_red))
            return result

        return call


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
@pytest.mark.parametrize("activation, loss, dtype", [
    ("relu", "hinge", "float64"), ("leaky_relu:0.1", "squared", "float64"),
    ("erf", "logistic", "float64"), ("x*tanh(x)", "squared", "float64"),
    ("relu", "logistic", "float32")])
def test_cuda_kernels_emulated_on_the_cpu_match_the_engine(tmp_path, activation, loss, dtype):
    from meanfield.step.array_api import CupyKernels

    X, y, a, W = _problem(N=300, M=17, d=6, dtype=dtype)
    p = StepParams(activation=activation, loss=loss, h=0.4, alpha=1.7, dtype=dtype)
    va, vW, L, u = _engine_velocity(X, y, a, W, p)
    f = Engine(a.shape[0], X.shape[1], p, 128).outputs(X, a, W)
    step = ArrayStep(np, p, block_elements=17 * 128)  # three blocks
    step.kernels = CupyKernels(_EmulatedCupy(tmp_path), p)
    va2, vW2, sat = np.empty_like(a), np.empty_like(W), np.zeros(X.shape[0], bool)
    L2, u2 = step.velocity(X, y, a, W, va2, vW2, sat)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert _rel(va2, va) < tol and _rel(vW2, vW) < tol and L2 == pytest.approx(L, rel=tol)
    assert abs(u2 - u) <= (0 if dtype == "float64" else 2)
    if dtype == "float64":
        np.testing.assert_array_equal(sat, y * f >= p.h)
    assert _rel(step.outputs(X, a, W), f) < tol
    # the range check of the driver: max |x| as float64, a NaN anywhere wins
    out = np.empty(1)
    step.kernels.absmax(W, out)
    assert out[0] == np.abs(W.astype(np.float64)).max()
    W[3, 2] = np.nan
    step.kernels.absmax(W, out)
    assert np.isnan(out[0])


# --------------------------------------------------------------------------- on a GPU


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if count < 1:
        pytest.skip("no CUDA GPU")
    return cupy


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", [*ACTIVATIONS, "gelu", "max(x, 0)**2"])
def test_gpu_kernels_match_the_numba_engine(cp, activation, loss):
    X, y, a, W = _problem(N=3000, M=64, d=20)
    p = StepParams(activation=activation, loss=loss, h=0.4, alpha=1.7)
    va, vW, L, u = _engine_velocity(X, y, a, W, p)
    f = Engine(a.shape[0], X.shape[1], p, 512).outputs(X, a, W)
    dX, dy, da, dW = (cp.asarray(v) for v in (X, y, a, W))
    for fused in (True, False):
        for block_elements in (2**26, 64 * 700):
            step = ArrayStep(cp, p, block_elements=block_elements, fused=fused)
            va2, vW2, sat = cp.empty_like(da), cp.empty_like(dW), cp.zeros(X.shape[0], bool)
            L2, u2 = step.velocity(dX, dy, da, dW, va2, vW2, sat)
            assert _rel(va2.get(), va) < 1e-12 and _rel(vW2.get(), vW) < 1e-12
            assert L2 == pytest.approx(L, rel=1e-12) and u2 == u
            np.testing.assert_array_equal(sat.get(), y * f >= p.h)
            assert _rel(step.outputs(dX, da, dW).get(), f) < 1e-12


GPU_RUNS = [dict(), dict(integrator="heun", activation="erf", loss="squared"),
            dict(batch=100), dict(online=True, batch=80, integrator="heun"),
            dict(activation="x*tanh(x)", loss="logistic")]


@pytest.mark.parametrize("mode", GPU_RUNS)
def test_gpu_run_matches_the_cpu_run_of_the_same_seed(cp, tmp_path, mode):
    c = make_config(**{**SMALL, "M": 60, "N": 2000, "d": 20, **mode})
    cpu = _checkpoint_at(c, tmp_path, 15, "cpu")
    gpu_config = c.replace(device="cuda")
    gpu = _checkpoint_at(gpu_config, tmp_path, 15, "gpu")
    s_cpu, s_gpu = read_checkpoint(cpu, c), read_checkpoint(gpu, gpu_config)
    np.testing.assert_array_equal(s_gpu.a0, s_cpu.a0)  # same initial arrays
    np.testing.assert_array_equal(s_gpu.W0, s_cpu.W0)
    assert _rel(s_gpu.W, s_cpu.W) < 1e-10 and _rel(s_gpu.a, s_cpu.a) < 1e-10
    _same_within(simulate(c), simulate(gpu_config), 1e-10)


def _layout(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(
            name, (obj.shape, obj.dtype.str, sorted(obj.attrs)) if isinstance(obj, h5py.Dataset)
            else sorted(obj.attrs)))
        out["/"] = sorted(k for k in f.attrs if k != "config_device")
    return out


def test_gpu_file_has_the_cpu_layout_and_resumes_bitwise(cp, tmp_path):
    args = ["simulate", "--M", "40", "--N", "3000", "--d", "20", "--n-test", "500",
            "--t-max", "20", "--dt", "0.5", "--n-times", "15", "--seed", "4", "--no-progress"]
    for name, extra in (("cpu.h5", []), ("gpu.h5", ["--device", "cuda"])):
        res = CliRunner().invoke(main, [*args, *extra, "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    assert _layout(tmp_path / "gpu.h5") == _layout(tmp_path / "cpu.h5")
    c = make_config(M=40, N=3000, d=20, n_test=500, t_max=20, dt=0.5, n_times=15, seed=4,
                    device="cuda", checkpoint_every=9)
    whole = simulate(c)
    ckpt = _checkpoint_at(c, tmp_path, 23)
    resumed = simulate(c, checkpoint=ckpt, resume=True)
    for group in ("series", "nodes"):
        for key, value in getattr(whole, group).items():
            np.testing.assert_array_equal(getattr(resumed, group)[key], value, err_msg=key)
    np.testing.assert_array_equal(resumed.t_sat, whole.t_sat)
    assert math.isfinite(whole.series["gamma"][-1])

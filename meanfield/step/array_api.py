"""The step written once on a NumPy-compatible array namespace ``xp``: NumPy on the CPU (the
tests), CuPy on a GPU (``device = "cuda"``).

The velocities, loss, unsatisfied count and satisfied mask are those of :mod:`meanfield.step`
(same definitions, same float64 loss, same rounding of ``g`` to the dtype); only the order of
the sums differs from the Numba engine, so in float64 the two agree to rounding (``~1e-15``
relative per step). The computation is dense (every example, forward and backward: no
skipping certificate) and blocked over the examples, ``B = BLOCK_ELEMENTS // M`` rows at a
time, so that the ``(B, M)`` pre-activations, not an ``(N, M)`` array, bound the memory. Per
block:

1. ``Z = X_b (W / sqrt d)^T`` (one GEMM: cuBLAS on CuPy);
2. ``f = (alpha/M) sigma(Z) a`` (float64), the loss ``l(y f)``, ``g = -l'(y f) y``
   (float64) and the satisfied mask ``y f >= h`` on ``(B,)`` vectors (``n_unsat`` counts the
   examples not satisfied);
3. for activations with ``sigma(z) != z sigma'(z)``: ``acc_a += sigma(Z)^T g`` (float64);
4. ``Z <- g sigma'(Z)`` in place (zero on rows with ``g = 0``), then ``acc_W += Z^T X_b``
   (the second GEMM).

For relu, leaky relu and linear ``acc_a[i] = (w_i / sqrt d) . acc_W[i]`` (in float64) as in
the Numba engine. The elementwise passes of steps 2 to 4 come from a kernel set:

- :class:`XpKernels`: array functions common to NumPy and CuPy (``where``, ``maximum``,
  ``matmul``; ``erf`` from ``scipy.special`` / ``cupyx.scipy.special``; user expressions
  through :func:`analytic.codegen.to_array`); what NumPy runs;
- :class:`CupyKernels`: the same passes fused into CUDA kernels (a ``cupy.ReductionKernel``
  for ``sigma(Z) a`` and ``sigma(Z)^T g``, ``cupy.ElementwiseKernel`` for the loss pass and
  for ``g sigma'(Z)`` in place), ``sigma`` and ``sigma'`` compiled from C (hand-written for
  the named kinds, :func:`analytic.codegen.c_source` for user expressions); what CuPy runs by
  default.

:class:`ArrayStepper` holds a training set on the device (moved once) and offers the interface
of :class:`meanfield.step.FullBatchStepper` (``velocity``, ``satisfied``, ``n_evaluated``,
``outputs``, ``get_state``/``set_state``); :func:`cuda_namespace` imports CuPy and checks for a
GPU, with a one-line :class:`DeviceUnavailable` when either is missing.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from meanfield.config import ConfigError
from meanfield.step.params import (
    ERF,
    GENERIC,
    LEAKY_RELU,
    LINEAR,
    RELU,
    TANH,
    TWO_OVER_SQRT_PI,
    StepParams,
)

BLOCK_ELEMENTS = 2**26
"""Elements of one block of pre-activations (``B x M``): 512 MiB in float64, 256 MiB in
float32. The paper size (``N M = 4e7``) is one block."""

GPU_RESERVE = 256 * 2**20
"""GPU memory kept aside by the estimate: cuBLAS workspaces, compiled kernels, the memory
pool's rounding."""


class DeviceUnavailable(ConfigError):
    """``device = "cuda"`` without CuPy or without a CUDA GPU (one line; exit status 2)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def cuda_namespace() -> Any:
    """The ``cupy`` module, once a CUDA GPU is known to be there; else
    :class:`DeviceUnavailable` saying which of CuPy or the GPU is missing."""
    try:
        import cupy
    except ImportError as err:
        if getattr(err, "name", None) == "cupy" or "No module named 'cupy'" in str(err):
            raise DeviceUnavailable(
                "device = cuda needs CuPy, which is not installed: "
                "pip install 'meanfield[gpu]'") from None
        raise DeviceUnavailable(f"device = cuda needs CuPy, which cannot be imported "
                                f"({_first_line(err)})") from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
        why = "no device"
    except Exception as err:  # CUDARuntimeError: no driver, no device, ...
        count, why = 0, _first_line(err)
    if count < 1:
        raise DeviceUnavailable(f"device = cuda needs a CUDA GPU, and none was found "
                                f"(CuPy {cupy.__version__}: {why})")
    return cupy


def device_namespace(device: str) -> Any:
    """The array namespace of a device: ``numpy`` for ``cpu``, ``cupy`` for ``cuda``
    (:func:`cuda_namespace`)."""
    if device == "cuda":
        return cuda_namespace()
    if device == "cpu":
        return np
    raise ConfigError(f"device must be one of cpu, cuda; got {device!r}")


def namespace_of(x: Any) -> Any:
    """The array module of ``x`` (``numpy`` for NumPy arrays, else the top-level module of its
    type, e.g. ``cupy``)."""
    if isinstance(x, np.ndarray | np.generic):
        return np
    return sys.modules[type(x).__module__.split(".")[0]]


def to_host(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (a copy from the device for CuPy; ``x`` itself for NumPy)."""
    if isinstance(x, np.ndarray):
        return x
    get = getattr(x, "get", None)
    return get() if get is not None else np.asarray(x)


def device_name(xp: Any) -> str:
    """A readable name of the device of namespace ``xp``."""
    if xp is np:
        return "cpu (NumPy)"
    dev = xp.cuda.Device()
    name = xp.cuda.runtime.getDeviceProperties(dev.id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def free_memory(xp: Any) -> int:
    """Bytes the device of ``xp`` can still give: the driver's free memory plus what CuPy's
    pool holds unused."""
    free, _ = xp.cuda.Device().mem_info
    return int(free) + int(xp.get_default_memory_pool().free_bytes())


def _special(xp: Any) -> Any:
    if xp is np:
        import scipy.special

        return scipy.special
    import cupyx.scipy.special

    return cupyx.scipy.special


# ----------------------------------------------------------------------------- activations


def xp_activation(xp: Any, params: StepParams) -> tuple[Any, Any]:
    """``(sigma, sigma')`` on arrays of namespace ``xp``: in the dtype of the argument for relu,
    leaky relu and linear (exact), in float64 for the other kinds (as the Numba engine
    evaluates them)."""
    kind, slope = params.code, params.slope
    f64 = xp.float64
    if kind == RELU:
        return (lambda u: xp.maximum(u, u.dtype.type(0)),
                lambda u: (u > 0).astype(u.dtype))
    if kind == LEAKY_RELU:
        return (lambda u: xp.where(u > 0, u, u.dtype.type(slope) * u),
                lambda u: xp.where(u > 0, u.dtype.type(1), u.dtype.type(slope)))
    if kind == LINEAR:
        return (lambda u: u), (lambda u: xp.ones_like(u))
    if kind == ERF:
        erf = _special(xp).erf
        return (lambda u: erf(u.astype(f64)),
                lambda u: TWO_OVER_SQRT_PI * xp.exp(-xp.square(u.astype(f64))))
    if kind == TANH:
        def dtanh(u: Any) -> Any:
            t = xp.tanh(u.astype(f64))
            return 1.0 - t * t

        return (lambda u: xp.tanh(u.astype(f64))), dtanh
    from analytic.activations import get_activation
    from analytic.codegen import to_array

    act = get_activation(params.activation)
    special = _special(xp)
    fs = to_array(act.expr, xp, special)
    dfs = to_array(act.derivative(1), xp, special)

    def full(fn: Any) -> Any:
        def apply(u: Any) -> Any:
            v = xp.asarray(fn(u.astype(f64)), dtype=f64)
            return v if v.shape == u.shape else xp.broadcast_to(v, u.shape)

        return apply

    return full(fs), full(dfs)


def c_activation(params: StepParams) -> str:
    """C source of ``__device__ double mf_sig(double x)`` and ``mf_dsig`` (``sigma``,
    ``sigma'``): hand-written for the named kinds (the formulas of
    :mod:`meanfield.step.rows`), generated by :func:`analytic.codegen.c_source` otherwise."""
    kind = params.code
    s = repr(float(params.slope))
    bodies = {
        RELU: ("return x > 0 ? x : 0.0 * x;", "return x > 0 ? 1.0 : 0.0;"),
        LEAKY_RELU: (f"return x > 0 ? x : {s} * x;", f"return x > 0 ? 1.0 : {s};"),
        ERF: ("return erf(x);", f"return {TWO_OVER_SQRT_PI!r} * exp(-x * x);"),
        TANH: ("return tanh(x);", "double t = tanh(x); return 1.0 - t * t;"),
        LINEAR: ("return x;", "return 1.0;"),
    }
    if kind in bodies:
        sig, dsig = bodies[kind]
        return (f"__device__ double mf_sig(double x) {{ {sig} }}\n"
                f"__device__ double mf_dsig(double x) {{ {dsig} }}\n")
    from analytic.activations import get_activation
    from analytic.codegen import c_source

    act = get_activation(params.activation)
    return (c_source(act.expr, "mf_sig", qualifier="__device__")
            + c_source(act.derivative(1), "mf_dsig", qualifier="__device__"))


# ----------------------------------------------------------------------------- kernel sets


class XpKernels:
    """The elementwise passes of a block with array functions common to NumPy and CuPy."""

    fused = False

    def __init__(self, xp: Any, params: StepParams) -> None:
        self.xp, self.params = xp, params
        self.sigma, self.dsigma = xp_activation(xp, params)

    def rowsum(self, Z: Any, a: Any) -> Any:
        """``sum_i a_i sigma(Z[r, i])`` per row (float64): accumulated in the dtype for the
        homogeneous kinds, in float64 for the others (as the Numba engine)."""
        xp = self.xp
        if self.params.homogeneous:
            return xp.matmul(self.sigma(Z), a).astype(xp.float64)
        return xp.matmul(self.sigma(Z), a.astype(xp.float64))

    def loss(self, s: Any, y: Any, scale: float, sat_out: Any = None) -> tuple[Any, Any, Any]:
        """From the row sums ``s`` (float64) and labels ``y``: ``m = y (scale s)``, then
        ``(g, l(m), m >= h)`` with ``g = -l'(m) y`` (float64; :func:`loss_terms`); the mask
        is also written into ``sat_out`` when given."""
        xp = self.xp
        yb = y.astype(xp.float64)
        m = yb * (s * scale)
        lv, gm = loss_terms(xp, self.params, m)
        sat = m >= self.params.h
        if sat_out is not None:
            sat_out[...] = sat
        return gm * yb, lv, sat

    def colsum(self, Z: Any, g64: Any) -> Any:
        """``sum_r g_r sigma(Z[r, i])`` per column (float64)."""
        return self.xp.matmul(g64, self.sigma(Z).astype(self.xp.float64, copy=False))

    def velocity_a(self, Ws: Any, acc_W: Any, acc_a: Any, scale: Any, out: Any) -> None:
        """``out = acc_a * scale`` in the dtype, ``acc_a`` (float64) given, or for the
        homogeneous kinds ``acc_a[i] = ws_i . acc_W[i]`` (float64) when ``acc_a`` is None."""
        xp = self.xp
        if acc_a is None:  # sigma(z) = z sigma'(z): sum_r g sigma(z_ri) = ws_i . acc_W[i]
            acc_a = xp.sum(Ws.astype(xp.float64) * acc_W.astype(xp.float64), axis=1)
        out[...] = acc_a.astype(out.dtype) * scale

    def velocity_W(self, acc_W: Any, a: Any, scale: Any, out: Any) -> None:
        """``out = (acc_W * a[:, None]) * scale`` in the dtype."""
        self.xp.multiply(acc_W, a[:, None], out=out)
        out *= scale

    def absmax(self, x: Any, out: Any) -> None:
        """``out = max |x|`` (NaN if ``x`` holds a NaN), as float64."""
        out[...] = self.xp.max(self.xp.abs(x))

    def grad(self, Z: Any, g64: Any) -> None:
        """In place ``Z <- g sigma'(Z)`` (row ``r`` times ``g_r``; 0 where ``g_r = 0``)."""
        xp = self.xp
        if self.params.homogeneous:  # sigma' in the dtype; g rounded to it (as the engine)
            xp.multiply(self.dsigma(Z), g64.astype(Z.dtype)[:, None], out=Z)
            return
        G = self.dsigma(Z) * g64[:, None]
        if self.params.code == GENERIC:  # sigma' may be inf or NaN where g = 0
            G = xp.where(g64[:, None] != 0, G, 0.0)
        Z[...] = G


_C_LOSS = {
    "hinge": "if (m < h) { lv = h - m; g = (double)y; } else { lv = 0.0; g = 0.0; }",
    "squared": "double r = 1.0 - m; lv = 0.5 * r * r; g = r * (double)y;",
    "logistic": "double e = exp(-fabs(m)); lv = fmax(-m, 0.0) + log1p(e); "
                "g = (m >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e)) * (double)y;",
}
"""The loss pass in C (the formulas of :func:`loss_terms`): ``m``, ``h``, ``y`` in, ``lv`` (the
loss) and ``g = -l'(m) y`` out."""


class CupyKernels:
    """The same passes as :class:`XpKernels`, each one CUDA kernel (CuPy only): ``sigma`` and
    ``sigma'`` in double precision from :func:`c_activation`, reductions in double."""

    fused = True

    def __init__(self, cp: Any, params: StepParams) -> None:
        self.xp, self.params = cp, params
        pre = c_activation(params)
        self._rowsum = cp.ReductionKernel(
            "T z, T w", "float64 f", "(double)w * mf_sig((double)z)", "a + b", "f = a", "0",
            "mf_rowsum", reduce_type="double", preamble=pre)
        self._colsum = cp.ReductionKernel(
            "T z, float64 g", "float64 s", "g * mf_sig((double)z)", "a + b", "s = a", "0",
            "mf_colsum", reduce_type="double", preamble=pre)
        self._grad = cp.ElementwiseKernel(
            "float64 g", "T z",
            "z = (g == 0.0) ? (T)0 : (T)(g * mf_dsig((double)z))", "mf_grad", preamble=pre)
        if params.homogeneous:  # g sigma' is g or g * slope: round g first (as the engine)
            self._grad = cp.ElementwiseKernel(
                "T g", "T z", "z = (g == (T)0) ? (T)0 : (T)((double)g * mf_dsig((double)z))",
                "mf_grad_h", preamble=pre)
        self._loss = cp.ElementwiseKernel(
            "float64 s, T y, float64 scale, float64 h", "float64 g, float64 lv, bool sat",
            "double m = (double)y * (s * scale); sat = m >= h; " + _C_LOSS[params.loss],
            f"mf_loss_{params.loss}")
        self._va_h = cp.ReductionKernel(
            "T ws, T acc", "float64 s", "(double)ws * (double)acc", "a + b", "s = a", "0",
            "mf_va_h", reduce_type="double")
        self._va = cp.ElementwiseKernel("float64 acc, T c", "T v", "v = (T)acc * c", "mf_va")
        self._vW = cp.ElementwiseKernel("T acc, T a, T c", "T v", "v = (acc * a) * c", "mf_vW")
        self._absmax = cp.ReductionKernel(
            "T x", "float64 m", "fabs((double)x)", "(a > b || a != a) ? a : b", "m = a", "0",
            "mf_absmax", reduce_type="double")  # a NaN wins: a > NaN and NaN != NaN

    def rowsum(self, Z: Any, a: Any) -> Any:
        return self._rowsum(Z, a[None, :], axis=1)

    def loss(self, s: Any, y: Any, scale: float, sat_out: Any = None) -> tuple[Any, Any, Any]:
        cp, n = self.xp, s.shape[0]
        g, lv = cp.empty(n, dtype=cp.float64), cp.empty(n, dtype=cp.float64)
        sat = cp.empty(n, dtype=bool) if sat_out is None else sat_out
        self._loss(s, y, float(scale), float(self.params.h), g, lv, sat)
        return g, lv, sat

    def colsum(self, Z: Any, g64: Any) -> Any:
        return self._colsum(Z, g64[:, None], axis=0)

    def grad(self, Z: Any, g64: Any) -> None:
        g = g64.astype(Z.dtype) if self.params.homogeneous else g64
        self._grad(g[:, None], Z)

    def velocity_a(self, Ws: Any, acc_W: Any, acc_a: Any, scale: Any, out: Any) -> None:
        if acc_a is None:  # sigma(z) = z sigma'(z): sum_r g sigma(z_ri) = ws_i . acc_W[i]
            acc_a = self._va_h(Ws, acc_W, axis=1)
        self._va(acc_a, scale, out)

    def velocity_W(self, acc_W: Any, a: Any, scale: Any, out: Any) -> None:
        self._vW(acc_W, a[:, None], scale, out)

    def absmax(self, x: Any, out: Any) -> None:
        out[...] = self._absmax(x.reshape(1, -1), axis=1)


def kernels(xp: Any, params: StepParams, fused: bool | None = None) -> XpKernels | CupyKernels:
    """The kernel set of namespace ``xp``: fused CUDA kernels on CuPy (unless ``fused`` is
    False), array functions otherwise."""
    fused = (xp is not np) if fused is None else fused
    if fused and xp is np:
        raise ValueError("fused kernels need CuPy")
    return CupyKernels(xp, params) if fused else XpKernels(xp, params)


def loss_terms(xp: Any, params: StepParams, m: Any) -> tuple[Any, Any]:
    """``(l(m), -l'(m))`` in float64 of the signed outputs ``m = y f`` (float64), the
    formulas of :func:`meanfield.step.rows.loss_and_g`."""
    h = params.h
    if params.loss == "hinge":
        below = m < h
        return xp.where(below, h - m, 0.0), below.astype(xp.float64)
    if params.loss == "squared":
        r = 1.0 - m
        return 0.5 * r * r, r
    e = xp.exp(-xp.abs(m))
    lv = xp.maximum(-m, 0.0) + xp.log1p(e)
    return lv, xp.where(m >= 0, e / (1.0 + e), 1.0 / (1.0 + e))


# ----------------------------------------------------------------------------- the step


class ArrayStep:
    """Velocities over the rows of a set of examples, blocked (see the module docstring).

    ``xp``: the array namespace of every array passed in (``numpy`` or ``cupy``);
    ``block_elements``: elements of one ``(B, M)`` block; ``fused``: the kernel set
    (:func:`kernels`)."""

    def __init__(self, xp: Any, params: StepParams, block_elements: int = BLOCK_ELEMENTS,
                 fused: bool | None = None) -> None:
        self.xp, self.params = xp, params
        self.block_elements = int(block_elements)
        self.kernels = kernels(xp, params, fused)
        self._buffers: dict[tuple, Any] = {}

    def block_rows(self, n: int, M: int) -> int:
        """Rows per block for ``n`` examples and ``M`` nodes."""
        return max(1, min(n, self.block_elements // max(M, 1)))

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A C-contiguous array of ``shape``: the first rows of a kept buffer (one per name,
        grown when more rows are asked for)."""
        key = (name, shape[1:], np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < shape[0]:
            for old in [k for k in self._buffers if k[0] == name]:
                del self._buffers[old]
            buf = self._buffers[key] = self.xp.empty(shape, dtype=dtype)
        return buf[: shape[0]]

    def _blocks(self, X: Any, Ws: Any):
        """Yields ``(start, stop, Z)`` with ``Z = X[start:stop] Ws^T`` (a view of one reused
        buffer)."""
        xp = self.xp
        n = X.shape[0]
        M = Ws.shape[0]
        B = self.block_rows(n, M)
        Zbuf = self._buffer("Z", (B, M), X.dtype)
        WsT = Ws.T
        for start in range(0, n, B):
            stop = min(n, start + B)
            Z = Zbuf[: stop - start]
            xp.matmul(X[start:stop], WsT, out=Z)
            yield start, stop, Z

    def velocity(self, X: Any, y: Any, a: Any, W: Any, v_a_out: Any, v_W_out: Any,
                 satisfied: Any = None, sync: bool = True) -> tuple[Any, Any]:
        """Fills ``v_a_out``, ``v_W_out`` with the velocities over the rows of ``X`` (arrays of
        ``xp`` in ``params.dtype``); ``satisfied`` (bool, one per row), if given, gets
        ``y f >= h``. Returns ``(L, n_unsat)``: a float and an int, or with ``sync=False``
        0-d arrays of ``xp`` (float64, int64) that nothing waits for (``float()``/``int()``
        them when needed: on a GPU the host then runs ahead of the device)."""
        xp, p, kern = self.xp, self.params, self.kernels
        n, d = X.shape
        M = a.shape[0]
        if n == 0:
            raise ValueError("no examples")
        dt = np.dtype(X.dtype)
        f64 = xp.float64
        Ws = W * dt.type(1.0 / math.sqrt(d))
        acc_W = self._buffer("acc_W", (M, d), dt)
        tmp_W = None
        acc_a = None if p.homogeneous else xp.zeros(M, dtype=f64)
        scale = p.alpha / M
        loss = unsat = None
        for start, stop, Z in self._blocks(X, Ws):
            g64, lv, sat = kern.loss(kern.rowsum(Z, a), y[start:stop], scale,
                                     None if satisfied is None else satisfied[start:stop])
            part = (xp.sum(lv), (stop - start) - xp.count_nonzero(sat))
            loss, unsat = part if loss is None else (loss + part[0], unsat + part[1])
            if acc_a is not None:
                acc_a += kern.colsum(Z, g64)
            kern.grad(Z, g64)
            if start == 0:
                xp.matmul(Z.T, X[start:stop], out=acc_W)
            else:
                if tmp_W is None:
                    tmp_W = self._buffer("tmp_W", (M, d), dt)
                xp.matmul(Z.T, X[start:stop], out=tmp_W)
                acc_W += tmp_W
        kern.velocity_a(Ws, acc_W, acc_a, dt.type(p.alpha / n), v_a_out)
        kern.velocity_W(acc_W, a, dt.type(p.alpha / (n * math.sqrt(d))), v_W_out)
        if sync:
            return float(loss) / n, int(unsat)
        return loss / n, unsat

    def outputs(self, X: Any, a: Any, W: Any) -> Any:
        """``f`` (float64, on the device) of every row of ``X``."""
        xp = self.xp
        out = xp.empty(X.shape[0], dtype=xp.float64)
        scale = self.params.alpha / a.shape[0]
        Ws = W * np.dtype(X.dtype).type(1.0 / math.sqrt(X.shape[1]))
        for start, stop, Z in self._blocks(X, Ws):
            out[start:stop] = self.kernels.rowsum(Z, a) * scale
        return out


class ArrayStepper:
    """A training set on the device (moved once) and the interface of
    :class:`meanfield.step.FullBatchStepper`: ``velocity(a, W, v_a_out, v_W_out) -> (L,
    n_unsat)`` with ``a``, ``W`` and the outputs on the device; ``satisfied`` (a bool array on
    the device) holds ``y f >= h`` at the weights of the last call; ``n_evaluated`` is ``N``
    (dense); ``outputs`` returns host float64."""

    def __init__(self, X: np.ndarray, y: np.ndarray, params: StepParams, xp: Any,
                 block_elements: int = BLOCK_ELEMENTS, fused: bool | None = None) -> None:
        self.xp, self.params = xp, params
        self.X = self.to_device(X)
        self.y = self.to_device(y)
        self.N, self.d = self.X.shape
        self.step = ArrayStep(xp, params, block_elements, fused)
        self.satisfied = xp.zeros(self.N, dtype=bool)
        self.n_evaluated = 0

    def to_device(self, x: np.ndarray) -> Any:
        """A C-contiguous copy of ``x`` in the run dtype on the device."""
        return self.xp.array(np.ascontiguousarray(x, dtype=self.params.dtype))

    def velocity(self, a: Any, W: Any, v_a_out: Any, v_W_out: Any) -> tuple[Any, Any]:
        """Velocities of the training set at ``(a, W)``; returns ``(L, n_unsat)`` as 0-d
        device arrays that nothing waits for (``float()``/``int()`` them when needed)."""
        self.n_evaluated = self.N
        return self.step.velocity(self.X, self.y, a, W, v_a_out, v_W_out, self.satisfied,
                                  sync=False)

    def outputs(self, a: Any, W: Any, X: Any = None) -> np.ndarray:
        """``f(x)`` (float64, on the host) of the training set or of the rows of ``X`` (on the
        device, or moved there now)."""
        if X is None:
            X = self.X
        elif not isinstance(X, type(self.X)):
            X = self.to_device(X)
        return to_host(self.step.outputs(X, a, W))

    def get_state(self) -> None:
        """No state: the dense step has no skipping certificate."""
        return None

    def set_state(self, state: Any) -> None:
        """Nothing to restore (see :meth:`get_state`)."""

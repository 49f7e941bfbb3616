"""Particle simulator of finite-width training: the driver.

Model, data and flow (the conventions of :mod:`meanfield.config`)::

    f(x) = (alpha/M) sum_i a_i sigma(w_i . x / sqrt d),   L = (1/N) sum_mu l(y_mu f(x_mu)),
    d theta_i / dt = beta v_i,   v_i = -M dL/d theta_i   (the step's "velocity"),

integrated on the step grid ``t_0 = 0 < t_1 < ... < t_K`` of :mod:`meanfield.schedule`
(``dt_n = max(dt, growth t_n)``, landing on every explicit record time) by explicit Euler or
Heun (:mod:`meanfield.integrators`). ``beta`` is applied here, not in :mod:`meanfield.step`.
The velocity is computed on

- the whole training set (``batch = 0``; :class:`meanfield.step.FullBatchStepper`, which
  skips the forward pass of examples certified satisfied and back-propagates only
  unsatisfied ones, with results identical to the dense computation);
- a mini-batch of ``batch`` distinct training examples per step (SGD; the loss is then the
  batch mean, so ``v`` is an unbiased estimate of the full-batch velocity); Heun uses the same
  batch for both stages;
- fresh examples every step (``online``; ``batch`` of them, or ``N`` when ``batch = 0``). The
  fixed training set is then never trained on: its records (``train_error``, ``t_sat``) are
  those of a second held-out set.

Records at the record times (times in units of ``1/beta``; see
:data:`meanfield.files.simulation.SERIES` and ``NODE_SERIES``, :mod:`meanfield.observables`
for the definitions). The first satisfaction time ``t_sat`` of a training example is the first
step time at which ``y f >= h``; in full batch it is resolved at every step, otherwise at the
record times (as is ``test_t_sat`` always). Examples never satisfied get ``t_sat = +inf``.

Checkpoints (:mod:`meanfield.files.checkpoint`): the full state at the top of a step, written
atomically every ``checkpoint_every`` steps and when a stop is requested; a run resumed from one
ends with bitwise the numbers of an uninterrupted run (same machine, same thread count).

Device (``device = "cuda"``): the step is :class:`meanfield.step.array_api.ArrayStepper` on
CuPy (dense, no skipping). The data are drawn on the CPU as always and moved once (the
training and held-out sets; a mini-batch is gathered on the device by its host-drawn indices;
online examples are moved as they are drawn), so a CPU and a GPU run of a seed start from the
same arrays. The weights, velocities and integrator buffers live on the device; the state is
copied to the host (``RunState``) for every record, checkpoint and the result, so records,
checkpoints, resume and files are those of a CPU run. The same path runs on NumPy when
:func:`simulate` is given ``array_namespace=numpy`` (the tests compare it with the Numba engine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from meanfield import data as _data
from meanfield import observables as obs
from meanfield.config import Config, ConfigError
from meanfield.files.checkpoint import RunState, read_checkpoint, write_checkpoint
from meanfield.files.simulation import NEVER, NODE_SERIES, SERIES, SimulationResult
from meanfield.integrators import INTEGRATORS
from meanfield.schedule import schedule


class SimulationInterrupted(Exception):
    """A stop was requested; the state at ``step`` is saved in ``checkpoint`` (or nowhere)."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step = step
        self.checkpoint = checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint"
        super().__init__(f"interrupted at step {step}; {where}")


#: the most steps one run may take (at ~1 ms a step, about a day)
MAX_STEPS = 100_000_000


def check_steps(config: Config) -> int:
    """The number of steps of the run of ``config`` (an upper bound, without building the
    schedule); :class:`ConfigError` when it is more than :data:`MAX_STEPS`."""
    from meanfield.schedule import schedule_steps

    steps = schedule_steps(config)
    if steps > MAX_STEPS:
        end = max(config.times) if config.times else config.t_max
        raise ConfigError(
            f"dt = {config.dt:g} and growth = {config.growth:g} to t = {end:g} make about "
            f"{steps:.3g} steps, more than the {MAX_STEPS:.0e} a run may take: raise dt or "
            "growth, or lower t_max")
    return steps


class SimulationDiverged(ConfigError):
    """The weights stopped being finite numbers: the explicit step is unstable for this
    configuration (a one-line error, exit status 2, nothing written)."""


def _diverged(config: Config, n: int, t: float, why: str) -> SimulationDiverged:
    return SimulationDiverged(
        f"the simulation diverged at step {n} (t = {t:.4g}): {why}; the explicit step "
        f"beta*dt = {config.beta * config.dt:.3g} is too large for alpha = {config.alpha:g}, "
        f"sa = {config.sa:g}, sw = {config.sw:g}: reduce dt (or growth), alpha or beta")


def _check_bounded(config: Config, n: int, t: float, a: np.ndarray, W: np.ndarray) -> None:
    """Raise :class:`SimulationDiverged` unless every weight after step ``n`` is a finite
    number below ``sqrt(max) / (M + d)`` of the dtype (beyond it the products of the step and
    of the skipping certificate would overflow). ``a``, ``W``: NumPy or device arrays."""
    limit = _weight_limit(config)
    if abs(a).max() <= limit and abs(W).max() <= limit:  # False for NaN
        return
    raise _out_of_range(config, n, t)


def _weight_limit(config: Config) -> float:
    """``sqrt(max) / (M + d)`` of the run's dtype: the largest weight :func:`_check_bounded`
    allows."""
    return math.sqrt(float(np.finfo(config.dtype).max)) / (config.M + config.d)


def _out_of_range(config: Config, n: int, t: float) -> SimulationDiverged:
    return _diverged(config, n, t, f"the weights left the range of {config.dtype} "
                                   f"(|w| > {_weight_limit(config):.3g})")


def _empty_like(x: Any) -> Any:
    """An uninitialised array like ``x`` in its own namespace (NumPy or a device's)."""
    from meanfield.step.array_api import namespace_of

    return namespace_of(x).empty_like(x)


class FirstTimes:
    """First times at which a set of examples is found satisfied (``+inf`` until then)."""

    def __init__(self, t_sat: np.ndarray) -> None:
        self.t_sat = t_sat
        self.seen = np.isfinite(t_sat)

    def mark(self, satisfied: np.ndarray, t: float) -> None:
        """Examples ``satisfied`` now and never before get ``t_sat = t``."""
        new = satisfied & ~self.seen
        self.t_sat[new] = t
        self.seen[new] = True


class DeviceFirstTimes(FirstTimes):
    """:class:`FirstTimes` of a set whose satisfied mask lives on a device (namespace ``xp``):
    the first times and flags are kept there too, updated without waiting for the device;
    :meth:`sync` copies them into the host arrays (before records, checkpoints and results)."""

    def __init__(self, t_sat: np.ndarray, xp: Any) -> None:
        super().__init__(t_sat)
        self.xp = xp
        self.t_sat_device = xp.array(t_sat)
        self.seen_device = xp.array(self.seen)

    def mark(self, satisfied: Any, t: float) -> None:
        new = satisfied & ~self.seen_device
        self.xp.copyto(self.t_sat_device, t, where=new)
        self.seen_device |= satisfied

    def sync(self) -> None:
        """Copy the first times and flags into the host arrays."""
        from meanfield.step.array_api import to_host

        self.t_sat[...] = to_host(self.t_sat_device)
        self.seen[...] = to_host(self.seen_device)


class DeviceBounds:
    """:func:`_check_bounded` of weights on a device, without waiting for the device at every
    step: each step's largest ``|a|`` and ``|W|`` go into a device buffer; every ``PERIOD``
    steps, and before anything reads the weights (:meth:`flush`), the buffer comes back and the
    first step out of range, if any, raises :class:`SimulationDiverged` with that step's ``n``
    and ``t``, as :func:`_check_bounded` would have at that step."""

    PERIOD = 32

    def __init__(self, config: Config, xp: Any, absmax: Callable[[Any, Any], None]) -> None:
        self.config = config
        self.absmax = absmax
        self.buffer = xp.empty((self.PERIOD, 2), dtype=xp.float64)
        self.pending: list[tuple[int, float]] = []

    def note(self, n: int, t: float, a: Any, W: Any) -> None:
        """The weights after step ``n`` (time ``t``)."""
        i = len(self.pending)
        self.absmax(a, self.buffer[i, :1])
        self.absmax(W, self.buffer[i, 1:])
        self.pending.append((n, t))
        if len(self.pending) == self.PERIOD:
            self.flush()

    def flush(self) -> None:
        """Check the steps noted since the last flush, in order."""
        from meanfield.step.array_api import to_host

        if not self.pending:
            return
        largest = to_host(self.buffer[: len(self.pending)])
        pending, self.pending = self.pending, []
        limit = _weight_limit(self.config)
        for (n, t), (a_max, w_max) in zip(pending, largest, strict=True):
            if not (a_max <= limit and w_max <= limit):  # True for NaN
                raise _out_of_range(self.config, n, t)


class Recorder:
    """Writes the measurements of the state at a record time into ``state.series`` and
    ``state.nodes`` (row ``state.rec``), and the first satisfaction times of the held-out set
    (and of the training set when it is not driven in full batch)."""

    def __init__(self, config: Config, state: RunState, stepper: Any, train: FirstTimes,
                 test_set: _data.Dataset, slope_x: np.ndarray,
                 weights: tuple[Any, Any] | None = None, test_X: Any = None) -> None:
        self.config = config
        self.state = state
        self.stepper = stepper
        self.train = train
        self.test = FirstTimes(state.test_t_sat)
        self.test_set = test_set
        self.slope_x = slope_x
        self.n_node = config.record_nodes or config.M
        # the weights the stepper computes with (the state's own, or their device copies),
        # and the held-out inputs it reads (on the device with it)
        self.weights = (state.a, state.W) if weights is None else weights
        self.test_X = test_set.X if test_X is None else test_X
        a, W = self.weights
        self.scratch = (np.empty_like(a), np.empty_like(W)) if weights is None else (
            _empty_like(a), _empty_like(W))

    def _training_set(self, t: float) -> tuple[float, float]:
        """(loss, unsatisfied fraction) of the training set by one dense pass."""
        loss, _ = self.stepper.velocity(*self.weights, *self.scratch)
        self.train.mark(self.stepper.satisfied, t)
        return float(loss), 1.0 - float(self.stepper.satisfied.mean())

    def record(self, n: int, t: float, train: tuple[float, float] | None,
               evaluated: int) -> None:
        """Record the state of step ``n`` at time ``t``; ``train`` = (loss, unsatisfied
        fraction) of the training set when the step already computed them (full batch)."""
        st, c = self.state, self.config
        a, W, r, s = st.a, st.W, st.rec, st.series
        s["loss"][r], s["train_error"][r] = train or self._training_set(t)
        if c.n_test > 0:
            f_test = self.stepper.outputs(*self.weights, self.test_X)
            self.test.mark(self.test_set.y.astype(np.float64) * f_test >= c.h, t)
            s["test_error"][r] = obs.unsatisfied_fraction(f_test, self.test_set.y, c.h)
            s["test_misclassification"][r] = obs.misclassified_fraction(f_test,
                                                                        self.test_set.y)
            s["S"][r] = obs.output_slope(f_test, self.slope_x)
        else:
            s["S"][r] = obs.output_slope(self.stepper.outputs(*self.weights), self.slope_x)
        s["step"][r] = n
        s["gamma"][r] = obs.gamma_from_nodes(a, W[:, 0], st.a0, st.W0[:, 0])
        s["invariant_drift"][r] = obs.invariant_drift(a, W, st.a0, st.W0)
        s["a_distance"][r] = obs.relative_distance(a, st.a0)
        s["W_distance"][r] = obs.relative_distance(W, st.W0)
        s["sign_flip_fraction"][r] = obs.sign_flip_fraction(W, st.W0)
        s["n_evaluated"][r] = evaluated
        s["n_evaluated_mean"][r] = st.evaluated_window / st.steps_window
        st.evaluated_window = st.steps_window = 0
        nd, k = st.nodes, self.n_node
        nd["a"][r] = a[:k]
        nd["w_par"][r] = W[:k, 0]
        nd["w_perp_norm"][r] = obs.w_perp_norm(W[:k])
        st.rec = r + 1


def _fresh_state(config: Config, rng: np.random.Generator, n_rec: int) -> RunState:
    a0, W0 = _data.initial_weights(config, rng)
    n_node = config.record_nodes or config.M
    return RunState(
        n=0, rec=0, a=a0.copy(), W=W0.copy(), a0=a0, W0=W0,
        series={k: np.full(n_rec, np.nan) for k in SERIES},
        nodes={k: np.full((n_rec, n_node), np.nan) for k in NODE_SERIES},
        t_sat=np.full(config.N, NEVER), test_t_sat=np.full(config.n_test, NEVER),
        rng_states={}, evaluated_total=0, evaluated_window=0, steps_window=0,
        stepper_state=None,
    )


class _Run:
    """The pieces of one run: data, state, stepper, batches, integrator, recorder."""

    def __init__(self, config: Config, checkpoint: Path | None, resume: bool,
                 xp: Any = None) -> None:
        from meanfield.step import FullBatchStepper, StepParams

        try:
            self.params = StepParams(activation=config.activation, loss=config.loss,
                                     h=config.h, alpha=config.alpha, dtype=config.dtype)
        except ValueError as err:  # e.g. an activation the kernels cannot differentiate
            raise ConfigError(f"activation/loss: {err}") from None
        if resume and checkpoint is None:
            raise ConfigError("resume needs a checkpoint file")
        check_steps(config)
        if xp is None and config.device == "cuda":  # CuPy and a GPU, or a one-line error
            from meanfield.step.array_api import cuda_namespace

            xp = cuda_namespace()
        self.xp = xp
        """The array namespace of the array-API step, or ``None`` (the Numba engine)."""
        self.config, self.checkpoint = config, checkpoint
        self.times, self.record = schedule(config)
        self.rngs = _data.streams(config.seed)
        self.train = _data.training_set(config, self.rngs["train"])
        test = _data.held_out_set(config, self.rngs["test"])
        self.state = _fresh_state(config, self.rngs["init"], len(self.record))
        if resume:
            self.state = read_checkpoint(checkpoint, config)
        for name, value in self.state.rng_states.items():
            self.rngs[name].bit_generator.state = value
        self.full_batch = config.batch == 0 and not config.online
        slope_x = test.x_par if config.n_test > 0 else self.train.x_par
        if xp is not None:
            self._on_device(test, slope_x)
            return
        # the training-set stepper: drives the flow in full batch, otherwise only measures;
        # the teacher e_1 is a direction W moves along: it tightens the skipping bound
        self.stepper = FullBatchStepper(self.train.X, self.train.y, self.params,
                                        config.threads, skip=self.full_batch,
                                        directions=np.eye(1, config.d))
        if self.state.stepper_state is not None:
            self.stepper.set_state(self.state.stepper_state)
        self.sat = FirstTimes(self.state.t_sat)
        self.recorder = Recorder(config, self.state, self.stepper, self.sat, test, slope_x)
        # the weights the loop advances: the state's own arrays on the CPU
        self.a, self.W = self.state.a, self.state.W
        self.integrator = INTEGRATORS[config.integrator](self.state.a, self.state.W)
        self.k1 = (np.empty_like(self.state.a), np.empty_like(self.state.W))

    def _on_device(self, test: _data.Dataset, slope_x: np.ndarray) -> None:
        """The pieces of a run on the array-API step: the training and held-out inputs moved
        once, the weights and every buffer of the loop on the device."""
        from meanfield.step.array_api import ArrayStepper

        xp, config = self.xp, self.config
        self.stepper = ArrayStepper(self.train.X, self.train.y, self.params, xp)
        # the host keeps what the records and the file need, not the inputs
        self.train = _data.Dataset(self.train.X[:0], self.train.y, self.train.x_par)
        test_X = self.stepper.to_device(test.X) if config.n_test > 0 else None
        test = _data.Dataset(test.X[:0], test.y, test.x_par)
        self.sat = DeviceFirstTimes(self.state.t_sat, xp)
        self.bounds = DeviceBounds(config, xp, self.stepper.step.kernels.absmax)
        self.a, self.W = self.stepper.to_device(self.state.a), self.stepper.to_device(self.state.W)
        self.recorder = Recorder(config, self.state, self.stepper, self.sat, test, slope_x,
                                 weights=(self.a, self.W), test_X=test_X)
        self.integrator = INTEGRATORS[config.integrator](self.a, self.W)
        self.k1 = (xp.empty_like(self.a), xp.empty_like(self.W))

    def to_host(self) -> None:
        """Copy the weights the loop advances into the state (a no-op on the CPU, where they
        are the state's own arrays)."""
        if self.a is not self.state.a:
            from meanfield.step.array_api import to_host

            self.bounds.flush()
            self.state.a[...] = to_host(self.a)
            self.state.W[...] = to_host(self.W)
            self.sat.sync()

    def check_bounded(self, n: int) -> None:
        """:func:`_check_bounded` of the weights after step ``n`` (deferred on a device:
        :class:`DeviceBounds`)."""
        if self.xp is None:
            _check_bounded(self.config, n, self.times[n], self.a, self.W)
        else:
            self.bounds.note(n, self.times[n], self.a, self.W)

    def save(self) -> None:
        """Checkpoint the state at the top of step ``state.n``."""
        self.to_host()
        self.state.rng_states = {k: self.rngs[k].bit_generator.state
                                 for k in ("batch", "online")}
        self.state.stepper_state = self.stepper.get_state() if self.full_batch else None
        write_checkpoint(self.checkpoint, self.config, self.state)

    def batch(self) -> _data.Dataset | None:
        """This step's examples: ``None`` (the whole training set), a mini-batch, or fresh
        online examples (on the device: a mini-batch gathered there by its host-drawn
        indices, online examples moved as drawn)."""
        c = self.config
        if c.online:
            ex = _data.online_examples(c, self.rngs["online"], c.batch or c.N)
            if self.xp is None:
                return ex
            return _data.Dataset(self.stepper.to_device(ex.X), self.stepper.to_device(ex.y),
                                 ex.x_par)
        if c.batch:
            idx = _data.batch_indices(self.rngs["batch"], c.N, c.batch)
            if self.xp is None:
                return _data.Dataset(self.train.X[idx], self.train.y[idx],
                                     self.train.x_par[idx])
            rows = self.xp.asarray(idx)
            return _data.Dataset(self.stepper.X[rows], self.stepper.y[rows],
                                 self.train.x_par[idx])
        return None

    def velocity(self, batch: _data.Dataset | None) -> Callable[..., int]:
        """``v(a, W, out_a, out_W) -> forward evaluations`` on ``batch``; the loss of the last
        call is kept in ``self.loss``."""
        from meanfield.step import dense_velocity

        def v(a: np.ndarray, W: np.ndarray, out_a: np.ndarray, out_W: np.ndarray) -> int:
            if batch is None:
                self.loss, _ = self.stepper.velocity(a, W, out_a, out_W)
                return self.stepper.n_evaluated
            if self.xp is not None:
                self.loss, _ = self.stepper.step.velocity(batch.X, batch.y, a, W, out_a, out_W,
                                                          sync=False)
                return len(batch)
            self.loss, _ = dense_velocity(batch.X, batch.y, a, W, self.params, out_a, out_W)
            return len(batch)

        return v

    def step_size(self, n: int) -> np.floating:
        """``h_n = beta (t_{n+1} - t_n)`` in the dtype of the weights."""
        dt = self.times[n + 1] - self.times[n]
        return np.dtype(self.config.dtype).type(self.config.beta * dt)

    def attrs(self, started: float) -> dict[str, Any]:
        """The run's facts for the output file."""
        from meanfield.step import thread_settings

        c, K = self.config, len(self.times) - 1
        stages = 2 if c.integrator == "heun" else 1
        return {
            "threads": c.threads,
            **thread_settings(),
            "n_steps": K,
            "evaluated_total": self.state.evaluated_total,
            # calls of the training-set velocity that ran the skipping certificate
            "certificate_steps": getattr(self.stepper, "certificate_calls", 0)
            if self.full_batch else 0,
            # velocity calls: one per stage of every step, plus the final state's measurement
            "dense_evaluations_total": (K * stages + 1) * (c.batch or c.N),
            "t_sat_never": "+inf",
            "t_sat_resolution": "every step" if self.full_batch else "record times",
            "test_t_sat_resolution": "record times",
            "elapsed_seconds": time.perf_counter() - started,
        }

    def result(self, started: float) -> SimulationResult:
        self.to_host()
        st, k = self.state, self.config.record_nodes or self.config.M
        return SimulationResult(
            config=self.config, t=self.times[self.record], series=st.series,
            node=np.arange(k), nodes=st.nodes, a0=st.a0[:k].astype(np.float64),
            w_par0=st.W0[:k, 0].astype(np.float64), t_sat=st.t_sat, x_par=self.train.x_par,
            y=self.train.y.astype(np.float64), test_t_sat=st.test_t_sat,
            test_x_par=self.recorder.test_set.x_par,
            init_moments=obs.initial_moments(st.a0, st.W0), attrs=self.attrs(started),
        )


def _train(run: _Run, should_stop: Callable[[], bool] | None,
           on_step: Callable[[int], None] | None, checkpoint_seconds: float | None) -> None:
    """The training loop: stop requested? -> checkpoint due? -> batch -> velocity -> t_sat ->
    record -> step."""
    config = run.config
    st, K, first = run.state, len(run.times) - 1, run.state.n
    saved = time.monotonic()
    for n in range(first, K + 1):
        st.n = n
        if should_stop is not None and should_stop():
            if run.checkpoint is not None:
                run.save()
            raise SimulationInterrupted(n, run.checkpoint)
        every = config.checkpoint_every
        due = (every and n % every == 0) or (
            checkpoint_seconds is not None and time.monotonic() - saved >= checkpoint_seconds)
        if run.checkpoint is not None and n > first and due:
            run.save()
            saved = time.monotonic()
        velocity = run.velocity(run.batch())
        evaluated = velocity(run.a, run.W, *run.k1)
        due = st.rec < len(run.record) and run.record[st.rec] == n
        train_now = None
        if run.full_batch:  # the stepper's status is exact at theta_n (until the next call)
            run.sat.mark(run.stepper.satisfied, run.times[n])
            if due:
                train_now = (float(run.loss), 1.0 - float(run.stepper.satisfied.mean()))
        if n < K:
            evaluated += run.integrator.extra_stages(run.a, run.W, run.k1, run.step_size(n),
                                                     velocity)
        st.evaluated_total += evaluated
        st.evaluated_window += evaluated
        st.steps_window += 1
        if due:
            run.to_host()
            run.recorder.record(n, run.times[n], train_now, evaluated)
        if n == K:
            break
        run.integrator.update(run.a, run.W, run.k1, run.step_size(n))
        run.check_bounded(n + 1)
        if on_step is not None:
            on_step(n + 1)


def simulate(
    config: Config,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int], None] | None = None,
    checkpoint_seconds: float | None = None,
    array_namespace: Any = None,
) -> SimulationResult:
    """Run the simulation of ``config`` and return its records.

    Args:
        config: the run (sizes, model, schedule, seed, threads, records).
        checkpoint: file for checkpoints; written every ``config.checkpoint_every`` steps
            (if > 0) and when ``should_stop()`` turns true. Not removed here (the caller
            removes it once the result is safely written).
        resume: start from the state in ``checkpoint`` (which must exist and belong to the
            same run, see :func:`meanfield.files.checkpoint.resume_decision`).
        should_stop: polled at the top of every step; when true the state is checkpointed
            (if ``checkpoint``) and :class:`SimulationInterrupted` is raised.
        on_step: ``on_step(n)`` after step ``n`` (the state at ``t_n``) is complete, e.g. to
            draw a progress bar.
        checkpoint_seconds: also checkpoint at the first step boundary after this many
            seconds of wall time since the last checkpoint (or the start); like
            ``checkpoint_every``, it does not change the results.
        array_namespace: run the array-API step of ``device = "cuda"`` on this namespace
            (``numpy``: the GPU's code path on the CPU, for tests); by default CuPy when
            ``config.device`` is ``cuda``, else the Numba engine.

    Returns:
        A :class:`meanfield.files.simulation.SimulationResult`; write it with
        :func:`meanfield.files.simulation.write_simulation`.

    Example:
        >>> from meanfield.config import make_config
        >>> result = simulate(make_config(M=20, N=500, d=10, n_test=100, t_max=5.0))
        >>> float(result.t[-1]), result.series["train_error"].shape
        (5.0, (6,))
    """
    started = time.perf_counter()
    run = _Run(config, Path(checkpoint) if checkpoint is not None else None, resume,
               array_namespace)
    # overflow is caught by _check_bounded as a one-line error, not left to warnings
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            _train(run, should_stop, on_step, checkpoint_seconds)
        except np.linalg.LinAlgError:  # a Heun predictor beyond the range of the dtype
            raise _diverged(config, run.state.n, run.times[run.state.n],
                            "the predictor left the range of the dtype") from None
    return run.result(started)

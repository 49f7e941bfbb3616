"""Particle simulator of finite-width training: the driver.

Model, data and flow of DESIGN.md, section 2::

    f(x) = (alpha/M) sum_i a_i sigma(w_i . x / sqrt d),   L = (1/N) sum_mu l(y_mu f(x_mu)),
    d theta_i / dt = beta v_i,   v_i = -M dL/d theta_i   (the kernels' "velocity"),

integrated on the step grid ``t_0 = 0 < t_1 < ... < t_K`` of :mod:`meanfield.schedule`
(``dt_n = max(dt, growth t_n)``, landing on every explicit record time) by

- explicit Euler: ``theta_{n+1} = theta_n + beta dt_n v(theta_n)``;
- Heun (explicit trapezoid, second order): ``theta* = theta_n + beta dt_n v(theta_n)``,
  ``theta_{n+1} = theta_n + beta dt_n (v(theta_n) + v(theta*)) / 2``.

``beta`` is applied here, not in :mod:`meanfield.kernels`. The velocity is computed on

- the whole training set (``batch = 0``; :class:`meanfield.kernels.FullBatchStepper`, which
  skips the forward pass of examples certified satisfied and back-propagates only
  unsatisfied ones, with results identical to the dense computation);
- a mini-batch of ``batch`` distinct training examples per step (SGD; the loss is then the
  batch mean, so ``v`` is an unbiased estimate of the full-batch velocity); Heun uses the same
  batch for both stages;
- fresh examples every step (``online``; ``batch`` of them, or ``N`` when ``batch = 0``). The
  fixed training set is then never trained on: its records (``train_error``, ``t_sat``) are
  those of a second held-out set.

Records at the record times (times in units of ``1/beta``; see :data:`SERIES` and
:data:`NODE_SERIES` for the list, :mod:`meanfield.observables` for the definitions). The first
satisfaction time ``t_sat`` of a training example is the first step time at which
``y f >= h``; in full batch it is resolved at every step, otherwise at the record times (as is
``test_t_sat`` always). Examples never satisfied get ``t_sat = +inf``.

Checkpoints (:func:`simulate` with ``checkpoint``): the full state at the top of a step
(weights, initial weights, generator states, step index, records so far, ``t_sat`` so far,
the stepper's bookkeeping), written atomically; a run resumed from one ends with bitwise the
numbers of an uninterrupted run (same machine, same thread count).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from meanfield import data as _data
from meanfield import observables as obs
from meanfield.config import Config, ConfigError, from_json
from meanfield.io import atomic_h5, provenance, set_attrs, write_coordinate, write_variable
from meanfield.schedule import schedule

CHECKPOINT_FORMAT = 1
NEVER = math.inf  # t_sat of an example never satisfied during the run

# name -> (units, long_name) of the variables on dimension t
SERIES: dict[str, tuple[str, str]] = {
    "step": ("1", "index n of the step time t_n"),
    "gamma": ("1", "gamma estimated from the nodes: "
                   "log(sum (a+w_par)(a0+w_par0) / sum (a0+w_par0)^2)"),
    "S": ("1", "least-squares slope of f(x) against x_par (with intercept) over the held-out "
               "set, or the training set when n_test = 0"),
    "train_error": ("1", "fraction of training examples with y f < h (unsatisfied)"),
    "test_error": ("1", "fraction of held-out examples with y f < h (unsatisfied); NaN "
                        "when n_test = 0"),
    "test_misclassification": ("1", "fraction of held-out examples with y f <= 0; NaN when "
                                    "n_test = 0"),
    "loss": ("1", "training loss L = (1/N) sum_mu l(y_mu f(x_mu)) over the training set"),
    "invariant_drift": ("weight^2", "max_i |(a_i^2 - |w_i|^2) - (a0_i^2 - |w0_i|^2)| "
                                    "(conserved by the ReLU flow)"),
    "a_distance": ("1", "|a - a0| / |a0| (relative distance from initialisation)"),
    "W_distance": ("1", "|W - W0|_F / |W0|_F (relative distance from initialisation)"),
    "sign_flip_fraction": ("1", "fraction of first-layer weights whose sign differs from "
                                "initialisation"),
    "n_evaluated": ("examples", "forward evaluations in the step starting at t "
                                "(both Heun stages; full batch: examples not certified "
                                "satisfied by the margin bound)"),
    "n_evaluated_mean": ("examples", "mean forward evaluations per step over the steps "
                                     "since the previous record time (this one included)"),
}
_INTEGER_SERIES = ("step", "n_evaluated")
# name -> (units, long_name) of the variables on (t, node)
NODE_SERIES: dict[str, tuple[str, str]] = {
    "a": ("1", "second-layer weight a_i"),
    "w_par": ("1", "w_i . w* (component along the teacher e_1)"),
    "w_perp_norm": ("1", "|w_i - (w_i . w*) w*| (norm orthogonal to the teacher)"),
}


class SimulationInterrupted(Exception):
    """A stop was requested; the state at ``step`` is saved in ``checkpoint`` (or nowhere)."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step = step
        self.checkpoint = checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint"
        super().__init__(f"interrupted at step {step}; {where}")


@dataclass
class SimulationResult:
    """Everything a run records (arrays in float64 unless stated)."""

    config: Config
    t: np.ndarray  # record times
    series: dict[str, np.ndarray]  # SERIES names -> (n_t,)
    node: np.ndarray  # indices of the recorded nodes
    nodes: dict[str, np.ndarray]  # NODE_SERIES names -> (n_t, n_node)
    a0: np.ndarray  # initial a of the recorded nodes
    w_par0: np.ndarray  # initial w_par of the recorded nodes
    t_sat: np.ndarray  # (N,), +inf if never satisfied
    x_par: np.ndarray  # (N,)
    y: np.ndarray  # (N,) training labels (after label noise)
    test_t_sat: np.ndarray  # (n_test,)
    test_x_par: np.ndarray  # (n_test,)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """The mutable state of a run at the top of step ``n`` (everything a checkpoint holds)."""

    n: int
    rec: int
    a: np.ndarray
    W: np.ndarray
    a0: np.ndarray
    W0: np.ndarray
    series: dict[str, np.ndarray]
    nodes: dict[str, np.ndarray]
    t_sat: np.ndarray
    test_t_sat: np.ndarray
    rng_states: dict[str, Any]
    evaluated_total: int
    evaluated_window: int  # forward evaluations since the previous record
    steps_window: int  # steps since the previous record
    stepper_state: dict[str, Any] | None


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of an output file lives: ``sim.h5`` -> ``sim.ckpt.h5``."""
    output = Path(output)
    stem = output.name[:-3] if output.name.endswith(".h5") else output.name
    return output.with_name(stem + ".ckpt.h5")


# --------------------------------------------------------------------------- checkpoints


def run_hash(config: Config) -> str:
    """Hash of everything that determines a run's numbers: the config without
    ``checkpoint_every`` (a resumed run may checkpoint at another period)."""
    return config.replace(checkpoint_every=0).hash()


def _write_checkpoint(path: Path, config: Config, state: _State) -> None:
    with atomic_h5(path) as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["config"] = config.to_json()
        f.attrs["config_hash"] = run_hash(config)
        f.attrs["n"] = state.n
        f.attrs["rec"] = state.rec
        f.attrs["evaluated_total"] = state.evaluated_total
        f.attrs["evaluated_window"] = state.evaluated_window
        f.attrs["steps_window"] = state.steps_window
        f.attrs["rng_states"] = json.dumps(state.rng_states)
        for name in ("a", "W", "a0", "W0", "t_sat", "test_t_sat"):
            f.create_dataset(name, data=getattr(state, name))
        for group, values in (("series", state.series), ("nodes", state.nodes)):
            g = f.create_group(group)
            for key, arr in values.items():
                g.create_dataset(key, data=arr)
        if state.stepper_state is not None:
            g = f.create_group("stepper")
            g.attrs["none"] = json.dumps(
                sorted(k for k, v in state.stepper_state.items() if v is None))
            for key, value in state.stepper_state.items():
                if value is not None:
                    g.create_dataset(key, data=np.asarray(value))


def read_checkpoint(path: str | Path, config: Config) -> _State:
    """The state saved in ``path``; :class:`ConfigError` if it belongs to another config."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConfigError(f"checkpoint {str(path)!r} is missing or not an HDF5 file") from None
    with f:
        if f.attrs.get("format") != CHECKPOINT_FORMAT or "config" not in f.attrs:
            raise ConfigError(f"{str(path)!r} is not a meanfield simulate checkpoint")
        if f.attrs["config_hash"] != run_hash(config):
            raise ConfigError(
                f"checkpoint {str(path)!r} belongs to another configuration "
                f"(hash {f.attrs['config_hash']}, this run {run_hash(config)}); "
                "remove it or run with --fresh"
            )
        stepper = None
        if "stepper" in f:
            stepper = {k: _scalar_or_array(v[()]) for k, v in f["stepper"].items()}
            stepper.update(dict.fromkeys(json.loads(f["stepper"].attrs["none"])))
        return _State(
            n=int(f.attrs["n"]),
            rec=int(f.attrs["rec"]),
            a=f["a"][()], W=f["W"][()], a0=f["a0"][()], W0=f["W0"][()],
            series={k: v[()] for k, v in f["series"].items()},
            nodes={k: v[()] for k, v in f["nodes"].items()},
            t_sat=f["t_sat"][()], test_t_sat=f["test_t_sat"][()],
            rng_states=json.loads(f.attrs["rng_states"]),
            evaluated_total=int(f.attrs["evaluated_total"]),
            evaluated_window=int(f.attrs["evaluated_window"]),
            steps_window=int(f.attrs["steps_window"]),
            stepper_state=stepper,
        )


def _scalar_or_array(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def checkpoint_config(path: str | Path) -> Config:
    """The configuration a checkpoint was written for."""
    with h5py.File(path, "r") as f:
        text = f.attrs["config"]
    return from_json(text.decode() if isinstance(text, bytes) else str(text))


# --------------------------------------------------------------------------- the run


def _initial_moments(a0: np.ndarray, W0: np.ndarray) -> dict[str, float]:
    a = a0.astype(np.float64)
    wp = W0[:, 0].astype(np.float64)
    perp2 = obs.w_perp_norm(W0) ** 2
    return {
        "init_a_mean": float(a.mean()),
        "init_a_var": float(a.var()),
        "init_w_par_mean": float(wp.mean()),
        "init_w_par_var": float(wp.var()),
        "init_a_w_par_mean": float((a * wp).mean()),
        "init_w_perp_norm2_mean": float(perp2.mean()),
        "init_u0_sq_mean": float(((a + wp) ** 2).mean()),
    }


def _fresh_state(config: Config, rngs: dict[str, np.random.Generator], n_rec: int,
                 n_node: int, n_test: int) -> _State:
    a0, W0 = _data.initial_weights(config, rngs["init"])
    return _State(
        n=0, rec=0, a=a0.copy(), W=W0.copy(), a0=a0, W0=W0,
        series={k: np.full(n_rec, np.nan) for k in SERIES},
        nodes={k: np.full((n_rec, n_node), np.nan) for k in NODE_SERIES},
        t_sat=np.full(config.N, NEVER), test_t_sat=np.full(n_test, NEVER),
        rng_states={}, evaluated_total=0, evaluated_window=0, steps_window=0,
        stepper_state=None,
    )


def simulate(
    config: Config,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run the simulation of ``config`` and return its records.

    - ``checkpoint``: file for checkpoints; written every ``config.checkpoint_every`` steps
      (if > 0) and when ``should_stop()`` turns true. Not removed here (the caller removes it
      once the result is safely written).
    - ``resume``: start from the state in ``checkpoint`` (which must exist and belong to the
      same configuration).
    - ``progress``: tqdm bar on stderr; ``None`` = only when stderr is a terminal.
    - ``should_stop``: polled at the top of every step; when true the state is checkpointed
      (if ``checkpoint``) and :class:`SimulationInterrupted` is raised.
    - ``on_step(n)``: called after step ``n`` (the state at ``t_n``) is complete.
    """
    from tqdm import tqdm

    from meanfield.kernels import FullBatchStepper, StepParams, dense_velocity, thread_settings

    started = time.perf_counter()
    try:
        params = StepParams(activation=config.activation, loss=config.loss, h=config.h,
                            alpha=config.alpha, dtype=config.dtype)
    except ValueError as err:  # e.g. an activation the kernels cannot differentiate
        raise ConfigError(f"activation/loss: {err}") from None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    times, record = schedule(config)
    K = len(times) - 1
    rngs = _data.streams(config.seed)
    train = _data.training_set(config, rngs["train"])
    test = _data.held_out_set(config, rngs["test"])
    n_node = config.record_nodes or config.M
    n_rec = len(record)

    state = _fresh_state(config, rngs, n_rec, n_node, config.n_test)
    if resume:
        if ckpt is None:
            raise ConfigError("resume needs a checkpoint file")
        state = read_checkpoint(ckpt, config)
    for name in ("batch", "online"):
        if name in state.rng_states:
            rngs[name].bit_generator.state = state.rng_states[name]

    full_batch = config.batch == 0 and not config.online
    # the training-set stepper: drives the flow in full batch, otherwise only measures
    # the teacher e_1 is a direction W moves along: it tightens the skipping bound
    stepper = FullBatchStepper(train.X, train.y, params, config.threads, skip=full_batch,
                               directions=np.eye(1, config.d))
    if state.stepper_state is not None:
        stepper.set_state(state.stepper_state)

    dtype = np.dtype(config.dtype)
    a, W = state.a, state.W
    va1, vW1 = np.empty_like(a), np.empty_like(W)
    va2, vW2 = np.empty_like(a), np.empty_like(W)
    a_mid, W_mid = np.empty_like(a), np.empty_like(W)
    scratch_a, scratch_W = np.empty_like(a), np.empty_like(W)
    heun = config.integrator == "heun"
    beta = config.beta
    sat_seen = np.isfinite(state.t_sat)  # training examples satisfied at some step so far
    test_seen = np.isfinite(state.test_t_sat)
    slope_x = test.x_par if config.n_test > 0 else train.x_par

    def velocity(a_: np.ndarray, W_: np.ndarray, out_a: np.ndarray, out_W: np.ndarray,
                 batch: _data.Dataset | None) -> tuple[float, int]:
        if batch is None:
            loss, _ = stepper.velocity(a_, W_, out_a, out_W)
            return loss, stepper.n_evaluated
        loss, _ = dense_velocity(batch.X, batch.y, a_, W_, params, out_a, out_W)
        return loss, len(batch)

    def measure(n: int, train: tuple[float, float] | None, evaluated: int) -> None:
        """Record the state at step ``n``; ``train`` = (loss, unsatisfied fraction) of the
        training set when the step already computed them (full batch)."""
        r = state.rec
        s, nd = state.series, state.nodes
        t = times[n]
        if train is None:  # training set not driven: one dense pass measures it
            loss_full, _ = stepper.velocity(a, W, scratch_a, scratch_W)
            new = stepper.satisfied & ~sat_seen
            state.t_sat[new] = t
            sat_seen[new] = True
            train = (loss_full, 1.0 - stepper.satisfied.mean())
        s["loss"][r], s["train_error"][r] = train
        if config.n_test > 0:
            f_test = stepper.outputs(a, W, test.X)
            ok = test.y.astype(np.float64) * f_test >= config.h
            new = ok & ~test_seen
            state.test_t_sat[new] = t
            test_seen[new] = True
            s["test_error"][r] = obs.unsatisfied_fraction(f_test, test.y, config.h)
            s["test_misclassification"][r] = obs.misclassified_fraction(f_test, test.y)
            s["S"][r] = obs.output_slope(f_test, slope_x)
        else:
            s["S"][r] = obs.output_slope(stepper.outputs(a, W), slope_x)
        s["step"][r] = n
        s["gamma"][r] = obs.gamma_from_nodes(a, W[:, 0], state.a0, state.W0[:, 0])
        s["invariant_drift"][r] = obs.invariant_drift(a, W, state.a0, state.W0)
        s["a_distance"][r] = obs.relative_distance(a, state.a0)
        s["W_distance"][r] = obs.relative_distance(W, state.W0)
        s["sign_flip_fraction"][r] = obs.sign_flip_fraction(W, state.W0)
        s["n_evaluated"][r] = evaluated
        s["n_evaluated_mean"][r] = state.evaluated_window / state.steps_window
        state.evaluated_window = state.steps_window = 0
        nd["a"][r] = a[:n_node]
        nd["w_par"][r] = W[:n_node, 0]
        nd["w_perp_norm"][r] = obs.w_perp_norm(W[:n_node])
        state.rec = r + 1

    def save() -> None:
        state.rng_states = {k: rngs[k].bit_generator.state for k in ("batch", "online")}
        state.stepper_state = stepper.get_state() if full_batch else None
        _write_checkpoint(ckpt, config, state)

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=K, initial=state.n, disable=not show, unit="step", leave=False,
               dynamic_ncols=True)
    first = state.n
    try:
        for n in range(first, K + 1):
            state.n = n
            if should_stop is not None and should_stop():
                if ckpt is not None:
                    save()
                raise SimulationInterrupted(n, ckpt)
            if ckpt is not None and config.checkpoint_every and n > first \
                    and n % config.checkpoint_every == 0:
                save()
            batch = None
            if config.online:
                batch = _data.online_examples(config, rngs["online"], config.batch or config.N)
            elif config.batch:
                idx = _data.batch_indices(rngs["batch"], config.N, config.batch)
                batch = _data.Dataset(train.X[idx], train.y[idx], train.x_par[idx])
            loss, evaluated = velocity(a, W, va1, vW1, batch)
            train_now = None
            if full_batch:  # the stepper's status is exact at theta_n (until the next call)
                new = stepper.satisfied & ~sat_seen
                state.t_sat[new] = times[n]
                sat_seen[new] = True
                train_now = (loss, 1.0 - stepper.satisfied.mean())
            last = n == K
            if heun and not last:
                step = dtype.type(beta * (times[n + 1] - times[n]))
                np.multiply(va1, step, out=a_mid)
                a_mid += a
                np.multiply(vW1, step, out=W_mid)
                W_mid += W
                _, ev2 = velocity(a_mid, W_mid, va2, vW2, batch)
                evaluated += ev2
            state.evaluated_total += evaluated
            state.evaluated_window += evaluated
            state.steps_window += 1
            if state.rec < n_rec and record[state.rec] == n:
                measure(n, train_now, evaluated)
            if last:
                break
            step = dtype.type(beta * (times[n + 1] - times[n]))
            if heun:
                half = dtype.type(0.5) * step
                va1 += va2
                vW1 += vW2
                a += half * va1
                W += half * vW1
            else:
                a += step * va1
                W += step * vW1
            if on_step is not None:
                on_step(n + 1)
            bar.update(1)
    finally:
        bar.close()

    node_index = np.arange(n_node)
    attrs: dict[str, Any] = {
        **_initial_moments(state.a0, state.W0),
        "threads": config.threads,
        **thread_settings(),
        "n_steps": K,
        "evaluated_total": state.evaluated_total,
        # velocity calls: one per stage of every step, plus the final state's measurement
        "dense_evaluations_total": (K * (2 if heun else 1) + 1) * (config.batch or config.N),
        "t_sat_never": "+inf",
        "t_sat_resolution": "every step" if full_batch else "record times",
        "test_t_sat_resolution": "record times",
        "elapsed_seconds": time.perf_counter() - started,
    }
    return SimulationResult(
        config=config, t=times[record], series=state.series, node=node_index,
        nodes=state.nodes, a0=state.a0[:n_node].astype(np.float64),
        w_par0=state.W0[:n_node, 0].astype(np.float64), t_sat=state.t_sat,
        x_par=train.x_par, y=train.y.astype(np.float64), test_t_sat=state.test_t_sat,
        test_x_par=test.x_par, attrs=attrs,
    )


# --------------------------------------------------------------------------- output


def write_result(result: SimulationResult, path: str | Path) -> None:
    """Write ``result`` to ``path`` (HDF5, netCDF4-valid, atomically)."""
    c = result.config
    with atomic_h5(path) as f:
        set_attrs(f, provenance("simulation", c.to_json(), c.seed))
        set_attrs(f, result.attrs)
        write_coordinate(f, "t", result.t, {"units": "mean-field time (1/beta)",
                                            "long_name": "record time"})
        write_coordinate(f, "node", result.node, {
            "units": "1", "long_name": "index of a recorded hidden node"})
        write_coordinate(f, "example", np.arange(c.N), {
            "units": "1", "long_name": "index of a training example"})
        write_coordinate(f, "test_example", np.arange(c.n_test), {
            "units": "1", "long_name": "index of a held-out example"})
        for name, (units, long_name) in SERIES.items():
            values = result.series[name]
            if name in _INTEGER_SERIES:
                values = values.astype(np.int64)
            write_variable(f, name, values, ["t"],
                           {"units": units, "long_name": long_name})
        for name, (units, long_name) in NODE_SERIES.items():
            write_variable(f, name, result.nodes[name], ["t", "node"],
                           {"units": units, "long_name": long_name})
        write_variable(f, "a0", result.a0, ["node"],
                       {"units": "1", "long_name": "initial second-layer weight a_i(0)"})
        write_variable(f, "w_par0", result.w_par0, ["node"],
                       {"units": "1", "long_name": "initial w_i(0) . w*"})
        sat = {"units": "mean-field time (1/beta)",
               "never_satisfied": "+inf (the example was never satisfied during the run)"}
        write_variable(f, "t_sat", result.t_sat, ["example"], {
            **sat, "long_name": "first time with y f >= h (training example)",
            "resolution": result.attrs["t_sat_resolution"]})
        write_variable(f, "x_par", result.x_par, ["example"], {
            "units": "1", "long_name": "w* . x of the training example"})
        write_variable(f, "y", result.y, ["example"], {
            "units": "1", "long_name": "training label (after label noise)"})
        write_variable(f, "test_t_sat", result.test_t_sat, ["test_example"], {
            **sat, "long_name": "first record time with y f >= h (held-out example)",
            "resolution": result.attrs["test_t_sat_resolution"]})
        write_variable(f, "test_x_par", result.test_x_par, ["test_example"], {
            "units": "1", "long_name": "w* . x of the held-out example"})

"""Checkpoints of :func:`meanfield.simulate.simulate`: the state of a run at the top of a step.

A checkpoint (``sim.h5`` -> ``sim.ckpt.h5``, :func:`checkpoint_path`) holds everything the run
needs to go on as if never stopped: the weights, the initial weights, the generator states of
the batch and online streams, the step and record indices, the records so far, ``t_sat`` so
far, the work counters and the skipping certificate's bookkeeping. It is written atomically
(:func:`meanfield.io.atomic_h5`), so a kill at any moment leaves the previous checkpoint or the
new one. A run resumed from it ends with bitwise the numbers of an uninterrupted run (same
machine, same thread count).

Whether a run resumes is decided here (:func:`resume_decision`), from the checkpoint's run hash
(:func:`meanfield.config.run_hash`: the configuration less the fields that do not change the
numbers, such as ``checkpoint_every``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from meanfield.config import Config, ConfigError, from_json, run_hash
from meanfield.io import atomic_h5, create_dataset, damaged_as, text_attr

CHECKPOINT_FORMAT = 1
_ARRAYS = ("a", "W", "a0", "W0", "t_sat", "test_t_sat")
_COUNTERS = ("n", "rec", "evaluated_total", "evaluated_window", "steps_window")


@dataclass
class RunState:
    """The mutable state of a run at the top of step ``n``: everything a checkpoint holds.

    ``rec``: records written so far; ``series``/``nodes``: the record arrays (NaN where not yet
    recorded); ``rng_states``: bit-generator states of the ``batch`` and ``online`` streams;
    ``evaluated_window``/``steps_window``: forward evaluations and steps since the previous
    record; ``stepper_state``: the skipping certificate's bookkeeping (full batch only).
    """

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
    evaluated_window: int
    steps_window: int
    stepper_state: dict[str, Any] | None


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of an output file lives: ``sim.h5`` -> ``sim.ckpt.h5``."""
    output = Path(output)
    stem = output.name[:-3] if output.name.endswith(".h5") else output.name
    return output.with_name(stem + ".ckpt.h5")


def write_checkpoint(path: Path, config: Config, state: RunState) -> None:
    """Write ``state`` of the run of ``config`` to ``path`` (atomically)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["config"] = config.to_json()
        f.attrs["config_hash"] = run_hash(config)
        for name in _COUNTERS:
            f.attrs[name] = getattr(state, name)
        f.attrs["rng_states"] = json.dumps(state.rng_states)
        for name in _ARRAYS:
            create_dataset(f, name, getattr(state, name), compress=False)
        for group, values in (("series", state.series), ("nodes", state.nodes)):
            g = f.create_group(group)
            for key, arr in values.items():
                create_dataset(g, key, arr, compress=False)
        if state.stepper_state is not None:
            g = f.create_group("stepper")
            g.attrs["none"] = json.dumps(
                sorted(k for k, v in state.stepper_state.items() if v is None))
            for key, value in state.stepper_state.items():
                if value is not None:
                    create_dataset(g, key, value, compress=False)


def _scalar_or_array(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


_DAMAGED = "; use --fresh to discard it"


def read_checkpoint(path: str | Path, config: Config) -> RunState:
    """The state saved in ``path``; :class:`ConfigError` (one line) if it belongs to another
    config or is damaged (a failed checksum, a missing array)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConfigError(f"checkpoint {str(path)!r} is missing or not an HDF5 file") from None
    with f, damaged_as(path, ConfigError, _DAMAGED):
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
        return RunState(
            **{name: int(f.attrs[name]) for name in _COUNTERS},
            **{name: f[name][()] for name in _ARRAYS},
            series={k: v[()] for k, v in f["series"].items()},
            nodes={k: v[()] for k, v in f["nodes"].items()},
            rng_states=json.loads(f.attrs["rng_states"]),
            stepper_state=stepper,
        )


def checkpoint_config(path: str | Path) -> Config:
    """The configuration a checkpoint was written for (:class:`ConfigError` when it cannot be
    read)."""
    with damaged_as(path, ConfigError, _DAMAGED), h5py.File(path, "r") as f:
        return from_json(str(text_attr(f, "config")))


def resume_decision(ckpt: Path, config: Config, resume: bool = False, fresh: bool = False
                    ) -> bool:
    """Whether the run of ``config`` resumes from the checkpoint ``ckpt``.

    - a checkpoint of the same run (same :func:`run_hash`) is resumed, asked for or not;
    - ``fresh`` discards any checkpoint (it is removed) and starts from ``t = 0``;
    - ``resume`` without a checkpoint, a checkpoint of another configuration, or an unreadable
      one raise :class:`ConfigError` with a one-line message saying what to do.
    """
    if resume and fresh:
        raise ConfigError("--resume and --fresh exclude each other")
    if fresh:
        ckpt.unlink(missing_ok=True)
        return False
    if not ckpt.exists():
        if resume:
            raise ConfigError(f"--resume: no checkpoint {ckpt} to resume from")
        return False
    try:
        saved = run_hash(checkpoint_config(ckpt))
    except ConfigError:
        raise ConfigError(f"{ckpt} is not a readable checkpoint; use --fresh to discard it"
                          ) from None
    if saved != run_hash(config):
        raise ConfigError(f"checkpoint {ckpt} belongs to another configuration; run with "
                          "the options that made it, or with --fresh to discard it")
    return True

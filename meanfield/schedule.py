"""Time grids shared by the simulator and the theory.

The step schedule is ``t_0 = 0``, ``t_{n+1} = t_n + dt_n`` with ``dt_n = max(dt, growth * t_n)``
(uniform when ``growth = 0``, geometric once ``growth * t_n > dt``), ending exactly at
``t_max``. Record times are always step times, so a simulation records exactly at them and the
theory pushed through the same Euler schedule (``meanfield.theory``) is compared on the same
grid with no interpolation. Explicit record times become breakpoints of the schedule: the step
before one is shortened to land on it.
"""

from __future__ import annotations

import numpy as np

from meanfield.config import Config


def step_times(dt: float, growth: float, t_max: float, breakpoints=()) -> np.ndarray:
    """All step times ``0 = t_0 < t_1 < ... < t_K = t_max`` (float64)."""
    stops = sorted({float(b) for b in breakpoints if 0 < b < t_max} | {float(t_max)})
    times = [0.0]
    t = 0.0
    for stop in stops:
        while t < stop:
            step = max(dt, growth * t)
            # land exactly on the stop; avoid a sliver step shorter than 1e-9 of a step
            t = stop if t + step * (1 + 1e-9) >= stop else t + step
            times.append(t)
    return np.asarray(times)


def log_record_indices(times: np.ndarray, n: int) -> np.ndarray:
    """Indices of about ``n`` step times spread evenly in ``log t`` on ``[t_1, t_max]``,
    plus index 0 (``t = 0``); sorted, unique."""
    if len(times) <= n + 1:
        return np.arange(len(times))
    targets = np.geomspace(times[1], times[-1], n)
    idx = np.searchsorted(times, targets)
    idx = np.clip(idx, 1, len(times) - 1)
    # choose the nearer of the two neighbours in log t
    left = np.maximum(idx - 1, 1)
    nearer_left = np.abs(np.log(times[left] / targets)) < np.abs(np.log(times[idx] / targets))
    idx = np.where(nearer_left, left, idx)
    return np.unique(np.concatenate([[0], idx, [len(times) - 1]]))


def schedule(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, record)``: all step times of ``config`` and the indices of the record times.

    With ``config.times`` the record times are exactly those (plus ``t = 0``), and the
    schedule runs to ``max(times)``; otherwise ``config.n_times`` log-spaced step times up to
    ``config.t_max``.
    """
    if config.times:
        t_end = max(config.times)
        steps = step_times(config.dt, config.growth, t_end, config.times)
        wanted = np.asarray(sorted({0.0, *config.times}))
        record = np.searchsorted(steps, wanted)
        return steps, record
    steps = step_times(config.dt, config.growth, config.t_max)
    return steps, log_record_indices(steps, config.n_times)

"""Time grids shared by the simulator and the theory.

The step schedule is ``t_0 = 0``, ``t_{n+1} = t_n + dt_n`` with ``dt_n = max(dt, growth * t_n)``
(uniform when ``growth = 0``, geometric once ``growth * t_n > dt``), ending exactly at
``t_max``. Record times are always step times, so a simulation records exactly at them and the
theory pushed through the same Euler schedule (``meanfield.theory``) is compared on the same
grid with no interpolation. Explicit record times become breakpoints of the schedule: the step
before one is shortened to land on it.
"""

from __future__ import annotations

import math
import sys

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


_GUARD = 1e-9
"""The landing slack of :func:`step_times`: a step within ``1e-9`` of a step of the next stop
lands on it."""


def _segment_counts(a: np.ndarray, b: np.ndarray, dt: float, growth: float) -> np.ndarray:
    """Upper bounds (float64) on the steps of :func:`step_times` from ``t = a`` (0 or a stop)
    to the next stop ``b`` (arrays, ``0 <= a < b``).

    In exact arithmetic: uniform steps ``t_k = a + k dt`` while ``growth t_k <= dt`` (step
    ``k`` lands on ``b`` when ``t_k + dt (1 + 1e-9) >= b``), then geometric ones from the first
    ``t = g0 > dt / growth``, ``t_j = g0 (1 + growth)^j`` (landing when ``t_j (1 + growth (1 +
    1e-9)) >= b``). Each ``ceil``/``floor`` is taken on its argument moved by a rounding
    allowance (the float64 sums of :func:`step_times` carry at most ``k u b`` after ``k``
    uniform steps and a relative ``2 j u`` after ``j`` geometric ones, ``u = 2^-53``, plus the
    evaluation of the formula) in the direction that gives more steps."""
    u = 2.0 ** -53
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = b / dt
        span = (b - a) / dt
        # uniform phase: step k lands when k >= span - (1 + 1e-9)
        land = span - (1 + _GUARD)
        k_err = 4 * u * (span + 2) * (q + 2) + 8 * u * (q + 2)
        k_land = np.maximum(0.0, np.ceil(land + k_err))
        if growth <= 0:
            return k_land + 1
        # the uniform phase ends at the first k with a + k dt > dt / growth
        t_switch = dt / growth
        sw = (t_switch - a) / dt
        # the sums before the switch: at most min(sw, span) + 1 of them, each below
        # min(b, t_switch + dt)
        k_pre = np.minimum(np.maximum(sw, 0.0), span) + 2
        sw_err = (4 * u * k_pre * (np.minimum(q, sw + a / dt + 1) + 2)
                  + 8 * u * (1 / growth + a / dt + 2))
        before = a <= t_switch
        k_sw = np.where(before, np.floor(sw + sw_err) + 1, 0.0)
        k_sw_lo = np.where(before, np.maximum(np.floor(sw - sw_err) + 1, 0.0), 0.0)
        uniform_only = k_land < k_sw_lo
        r = math.log1p(growth)

        def total(k: np.ndarray) -> np.ndarray:
            """``k`` uniform steps (none landing), then geometric ones from ``g0 = a + k dt``
            (``a`` itself for a stop beyond the switch), lowered by its rounding."""
            g0 = np.where(before, (a + k * dt) * (1 - 4 * u * (k + 2)), a)
            g0 = np.maximum(g0, np.where(a > 0, a, dt))
            ratio = np.log(b / (g0 * (1 + growth * (1 + _GUARD)))) / r
            j_err = 4 * u * (np.abs(ratio) + 2) * (1 + 1 / r) + 16 * u / r
            return np.minimum(k, k_land + 1) + np.maximum(0.0, np.ceil(ratio + j_err)) + 1

        mixed = np.maximum(total(k_sw_lo), total(k_sw))
    return np.where(uniform_only, k_land + 1, mixed)


def _dyadic_uniform(starts: np.ndarray, stops: np.ndarray, dt: float) -> np.ndarray | None:
    """Exact step counts of uniform stretches when every sum is exact: ``dt``, the starts and
    the stops are integer multiples of one ``2^-e`` with ``dt 2^e <= 2^20`` and ``t_max 2^e <
    2^53`` (e.g. ``dt = 1`` or ``0.5`` and integer stops). Then ``t_k = a + k dt`` exactly, no
    landing decision lies within ``1e-9 dt`` of a tie, and step ``k`` lands when ``k >= (b -
    a) / dt - 1``. ``None`` otherwise."""
    values = np.concatenate([[dt], starts, stops])
    mant, expo = np.frexp(values)                  # values = mant 2^expo, 0.5 <= mant < 1
    ints = np.ldexp(mant, 53).astype(np.int64)     # values = ints 2^(expo - 53)
    nz = ints != 0
    low = ints[nz] & -ints[nz]                     # lowest set bit of each mantissa
    # smallest e with every value a multiple of 2^-e
    e = int(np.max(53 - expo[nz] - np.log2(low.astype(np.float64)).astype(np.int64)))
    if dt * 2.0 ** e > 2.0 ** 20 or stops.max() * 2.0 ** e >= 2.0 ** 53:
        return None
    A = np.ldexp(starts, e).astype(np.int64)
    B = np.ldexp(stops, e).astype(np.int64)
    D = int(np.ldexp(dt, e))
    return (np.maximum(0, -((D - (B - A)) // D)) + 1).astype(np.float64)


def count_steps(dt: float, growth: float, t_max: float, breakpoints=()) -> int:
    """An upper bound on the number of steps ``K = len(step_times(dt, growth, t_max,
    breakpoints)) - 1``, in time ``O(len(breakpoints))`` without building the schedule.

    Closed form per stretch between stops (see :func:`_segment_counts`): a uniform phase while
    ``growth t <= dt``, then a geometric one with ratio ``1 + growth``. The float64 times of
    :func:`step_times` are sums that carry rounding; where it could tip a decision (land on a
    stop one step earlier, switch to geometric steps one step later) the larger count is taken,
    so the bound exceeds ``K`` by at most a few steps per stop (none in most cases). Where
    ``dt`` is below the rounding of ``t`` (a step that would not advance ``t``), the count is
    the exact-arithmetic one, far beyond any practical limit (``step_times`` would not end).
    """
    dt, growth, t_max = float(dt), float(growth), float(t_max)
    if not (dt > 0 and growth >= 0 and math.isfinite(t_max)):
        raise ValueError(f"count_steps needs dt > 0, growth >= 0 and a finite t_max; got "
                         f"dt={dt}, growth={growth}, t_max={t_max}")
    if t_max <= 0:
        return 0  # step_times is [0.0]
    bps = np.asarray(breakpoints, dtype=np.float64).ravel()
    stops = np.unique(np.concatenate([bps[(bps > 0) & (bps < t_max)], [t_max]]))
    starts = np.concatenate([[0.0], stops[:-1]])
    counts = _dyadic_uniform(starts, stops, dt) if growth == 0 else None
    if counts is None:
        counts = _segment_counts(starts, stops, dt, growth)
    total = float(np.sum(counts))
    return int(total) if math.isfinite(total) else sys.maxsize


def schedule_steps(config: Config) -> int:
    """:func:`count_steps` of the schedule of ``config`` (:func:`schedule`): an upper bound on
    its number of steps, without building it."""
    if config.times:
        if max(config.times) == 0:  # only t = 0 is recorded: no step at all
            return 0
        return count_steps(config.dt, config.growth, max(config.times), config.times)
    return count_steps(config.dt, config.growth, config.t_max)


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

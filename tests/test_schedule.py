"""Step schedule and record times."""

import numpy as np

from meanfield.config import make_config
from meanfield.schedule import count_steps, schedule, step_times


def test_uniform_schedule_is_exact_multiples():
    t = step_times(0.5, 0.0, 10.0)
    assert len(t) == 21
    np.testing.assert_array_equal(t, 0.5 * np.arange(21))


def test_geometric_schedule_follows_the_rule_and_ends_at_t_max():
    t = step_times(1.0, 0.1, 1e4)
    steps = np.diff(t)
    expected = np.maximum(1.0, 0.1 * t[:-1])
    # every step but the last (shortened to land on t_max) follows dt_n = max(dt, growth t_n)
    np.testing.assert_allclose(steps[:-1], expected[:-1], rtol=1e-12)
    assert t[-1] == 1e4 and steps[-1] <= expected[-1]
    assert len(t) < 120  # geometric: ~ log(1e4)/log(1.1) steps after the uniform start


def test_explicit_times_are_step_times():
    c = make_config(times="0.3,2,7.5", dt=1.0)
    steps, record = schedule(c)
    np.testing.assert_array_equal(steps[record], [0.0, 0.3, 2.0, 7.5])
    assert np.all(np.diff(steps) > 0)


def test_log_record_times_span_the_run():
    c = make_config(dt=1.0, t_max=2000.0, n_times=50)
    steps, record = schedule(c)
    assert record[0] == 0 and steps[record[-1]] == 2000.0
    assert 40 <= len(record) <= 52
    # away from the first steps (where the grid cannot be finer than dt), the spacing in
    # log t is within 2x of the ideal log(2000)/49
    late = steps[record][steps[record] >= 20]
    assert np.diff(np.log(late)).max() < 2 * np.log(2000) / 49


def _random_schedule(rng, dyadic=False):
    """A random (dt, growth, t_max, breakpoints) whose schedule is small enough to build."""
    if dyadic:
        dt = float(2.0 ** rng.integers(-6, 4) * rng.integers(1, 9))
        t_max = dt * int(rng.integers(1, 5_000)) + float(2.0 ** rng.integers(-6, 3))
        n_b = rng.integers(0, 6)
        bps = np.sort(rng.integers(1, int(t_max) + 2, n_b) * 2.0 ** rng.integers(-3, 1))
        return dt, 0.0, t_max, bps
    dt = 10 ** rng.uniform(-4, 2)
    growth = 0.0 if rng.random() < 0.3 else 10 ** rng.uniform(-4, 1)
    # up to ~2e4 uniform steps, then geometric up to 1e12 (few steps once growth is large)
    t_max = dt * 10 ** rng.uniform(-1, 4.3 if growth < 1e-2 else 12)
    bps = np.sort(rng.uniform(0, 1.2 * t_max, rng.integers(0, 6)))
    if rng.random() < 0.3:  # breakpoints on multiples of dt: landing decisions near ties
        bps = np.round(bps / dt) * dt
    return dt, growth, t_max, bps


def test_count_steps_bounds_the_built_schedule_tightly():
    """count_steps is an upper bound on len(step_times) - 1 everywhere, exceeds it by at most
    3 steps per stop (rounding of the float64 sums tipping a decision), and in practice almost
    never: over 2000 random schedules at least 97% are counted exactly."""
    rng = np.random.default_rng(20240611)
    over = []
    while len(over) < 1500:
        dt, growth, t_max, bps = _random_schedule(rng)
        if count_steps(dt, growth, t_max) > 30_000:
            continue
        K = len(step_times(dt, growth, t_max, bps)) - 1
        n = count_steps(dt, growth, t_max, bps)
        assert K <= n <= K + 3 * (len(bps) + 1), (dt, growth, t_max, list(bps), K, n)
        over.append(n - K)
    assert np.mean(np.array(over) == 0) >= 0.97


def test_count_steps_is_exact_for_dyadic_uniform_schedules():
    """growth = 0 with dt and the stops multiples of one power of two (dt = 1, 0.5, integer
    times, ...): every float64 sum is exact, and so is the count."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        dt, growth, t_max, bps = _random_schedule(rng, dyadic=True)
        assert count_steps(dt, growth, t_max, bps) == len(step_times(dt, growth, t_max, bps)) - 1
    assert count_steps(1.0, 0.0, 2000.0) == 2000
    assert count_steps(1.0, 0.0, 1e12) == 10**12


def test_count_steps_of_huge_schedules_is_instant_and_closed_form():
    """Schedules that cannot be built: the uniform count is t_max / dt, the geometric one
    ~ log(t_max / t_switch) / log(1 + growth) (independent route: the sum of the two phases
    by hand), for 1e6 breakpoints in well under a second."""
    import time

    from meanfield.schedule import schedule_steps

    n = count_steps(1.0, 0.0, 1e12, [5e11])
    assert n == 10**12
    dt, g, t_max = 1e-3, 1e-3, 1e12
    t_switch = dt / g
    by_hand = t_switch / dt + np.log(t_max / t_switch) / np.log1p(g)
    assert abs(count_steps(dt, g, t_max) - by_hand) <= 3
    start = time.perf_counter()
    times = np.geomspace(1e-3, 1e12, 10**6)
    n = count_steps(0.1, 0.01, 1e12, times)
    assert time.perf_counter() - start < 2.0
    assert n >= 10**6  # every breakpoint is a step
    c = make_config(times="1,10,100", dt=1.0)
    assert schedule_steps(c) == len(schedule(c)[0]) - 1 == 100
    c = make_config(dt=1.0, growth=0.02, t_max=1e4)
    assert len(schedule(c)[0]) - 1 <= schedule_steps(c) <= len(schedule(c)[0]) + 2


def test_only_t_zero_recorded_takes_no_step():
    from meanfield.config import make_config
    from meanfield.schedule import schedule, schedule_steps

    c = make_config(times=(0.0,))
    steps, record = schedule(c)
    assert schedule_steps(c) == 0 == len(steps) - 1 and record.tolist() == [0]


def test_count_steps_of_an_empty_schedule_is_zero():
    """Record times (0,) only: step_times is [0.0], no step."""
    from meanfield.schedule import schedule_steps

    assert len(step_times(1.0, 0.0, 0.0)) - 1 == count_steps(1.0, 0.0, 0.0) == 0
    c = make_config(times="0")
    assert schedule_steps(c) == len(schedule(c)[0]) - 1 == 0

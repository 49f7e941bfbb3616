"""Step schedule and record times."""

import numpy as np

from meanfield.config import make_config
from meanfield.schedule import schedule, step_times


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

"""The runner's speed control: at most N steps a second, changed live, never delaying a paused single step or a stop."""

import math
import time

import pytest

from tests.apptest_helpers import wait_until
from training.config import Config, ConfigError
from training.runner import Runner

SMALL = {"hidden_sizes": (32, 16), "batch_size": 16, "device": "cpu", "steps": 100_000}


def test_a_throttled_run_takes_at_most_its_steps_per_second_and_a_live_change_to_max_lifts_it(runners):
    r = Runner(Config(**SMALL), steps_per_s=5.0)
    runners.append(r)
    r.start()
    wait_until(lambda: r.snapshot(history=False).step >= 1, 20, "the first step")
    first, t0 = r.snapshot(history=False).step, time.monotonic()
    time.sleep(1.0)
    taken = r.snapshot(history=False).step - first
    # 5 a second: ~5 steps in 1 s, at most 6 (a step may land at either end); a busy machine only makes it fewer.
    assert 1 <= taken <= 5 * (time.monotonic() - t0) + 1
    assert r.steps_per_s == 5.0
    r.set_speed(None)  # "max", applied at the next step
    wait_until(lambda: r.steps_per_s is None, 20, "the speed change to max")
    before = r.snapshot(history=False).step
    wait_until(lambda: r.snapshot(history=False).step > before + 50, 30, "50 steps at max (10 s at the old pace)")


def test_a_slow_run_stops_and_steps_once_without_waiting_for_its_next_tick(runners):
    r = Runner(Config(**SMALL), steps_per_s=0.1)  # one step every 10 s
    runners.append(r)
    r.start()
    wait_until(lambda: r.snapshot(history=False).step == 1, 20, "step 1")
    r.pause()
    wait_until(lambda: r.paused, 20, "the pause")
    r.step_once()
    wait_until(lambda: r.snapshot(history=False).step == 2, 5, "the single step, not 10 s later")
    r.resume()
    t0 = time.monotonic()
    assert r.stop(timeout=5.0) and time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, 1e9, True, "fast"])
def test_a_bad_speed_is_refused_naming_the_field_and_the_range(bad):
    r = Runner(Config(**SMALL))
    with pytest.raises(ConfigError, match=r"speed: .* allowed: 0\.1 to 1000 steps per second, or max"):
        r.set_speed(bad)
    with pytest.raises(ConfigError, match="speed"):
        Runner(Config(**SMALL), steps_per_s=bad)

"""Helpers shared by the AppTest suites."""

import time


def poll(at, condition, timeout=30.0):
    """Rerun the app until ``condition(at)`` holds: AppTest never fires ``run_every``, so tests drive refreshes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if condition(at):
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")

"""Waiting for a condition with a deadline, the one wait loop of the tests (unit and molecule alike)."""

import time


def wait_until(check, timeout: float, what: str, step: float = 0.5):
    """Call CHECK until it returns something true, and return that; past TIMEOUT seconds fail, saying WHAT was
    awaited and what CHECK returned last. A test waits for the state it needs, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{timeout} s and still not {what}; last seen: {last!r}")
        time.sleep(step)


def seconds_until(check, timeout: float, what: str, step: float = 0.2) -> float:
    """How long CHECK took to come true (wait_until), for the tables that record how long a recovery took."""
    started = time.monotonic()
    wait_until(check, timeout, what, step)
    return time.monotonic() - started

"""`redtrans.webguard.FailureThrottle`, the one throttle on failed credentials of both servers (serve's wrong API
keys, the annotation app's wrong passwords): its two policies and its memory bound. Both servers' own tests
drive it over HTTP (tests/test_serve_input.py, tests/test_prefs_app.py)."""

from __future__ import annotations

import time

from redtrans.webguard import FailureThrottle


def test_without_backoff_a_key_waits_until_its_failures_leave_the_window() -> None:
    throttle = FailureThrottle(limit=2, window_s=1.0)
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert 0.5 < throttle.retry_after("10.0.0.1") <= 1.0
    assert throttle.retry_after("10.0.0.2") == 0  # per key
    time.sleep(1.05)
    assert throttle.retry_after("10.0.0.1") == 0


def test_with_backoff_the_wait_doubles_and_a_success_forgets() -> None:
    throttle = FailureThrottle(limit=2, window_s=30.0, backoff_s=0.6)
    assert throttle.attempt("ann\n1.2.3.4") == 0 and throttle.attempt("ann\n1.2.3.4") == 0
    first = throttle.attempt("ann\n1.2.3.4")
    assert 0.3 < first <= 0.6
    assert throttle.attempt("ann\n1.2.3.4") > 0  # refused tries are not counted: the wait does not grow
    time.sleep(first + 0.05)
    assert throttle.attempt("ann\n1.2.3.4") == 0  # the third failure: the next wait is twice as long
    assert 0.8 < throttle.retry_after("ann\n1.2.3.4") <= 1.2
    assert throttle.retry_after("bob\n1.2.3.4") == 0  # never a lockout of everyone at an address
    throttle.succeeded("ann\n1.2.3.4")
    assert throttle.retry_after("ann\n1.2.3.4") == 0


def test_keys_whose_failures_left_the_window_are_dropped() -> None:
    throttle = FailureThrottle(limit=3, window_s=0.2)
    for n in range(3000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    time.sleep(0.25)
    throttle.failed("10.9.9.9")  # the sweep runs once a window, as failures are counted
    assert list(throttle._failures) == ["10.9.9.9"]

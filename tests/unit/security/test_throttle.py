from __future__ import annotations

from gophergate.security.throttle import LoginThrottle


def test_failures_per_username_lock_that_name_until_the_window_slides() -> None:
    t = LoginThrottle(3, window_seconds=60)
    for i in range(3):
        assert t.retry_after("alice", f"10.0.0.{i}", now=100 + i) is None
        t.failure("Alice", f"10.0.0.{i}", now=100 + i)
    assert t.retry_after("alice", "10.0.0.9", now=103) == 57
    assert t.retry_after("bob", "10.0.0.9", now=103) is None
    assert t.retry_after("alice", "10.0.0.9", now=161) is None


def test_failures_per_ip_lock_every_name_from_that_ip() -> None:
    t = LoginThrottle(2, window_seconds=60)
    t.failure("a", "1.2.3.4", now=0)
    t.failure("b", "1.2.3.4", now=1)
    assert t.retry_after("c", "1.2.3.4", now=2) == 58
    assert t.retry_after("c", "5.6.7.8", now=2) is None


def test_success_clears_the_username_count() -> None:
    t = LoginThrottle(2, window_seconds=60)
    t.failure("a", None, now=0)
    t.failure("a", None, now=1)
    t.success("a")
    assert t.retry_after("a", None, now=2) is None

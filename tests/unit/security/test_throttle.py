from __future__ import annotations

from gophergate.security.throttle import LoginThrottle


def test_failures_per_username_and_address_lock_that_pair_until_the_window_slides() -> None:
    t = LoginThrottle(3, window_seconds=60)
    for i in range(3):
        assert t.retry_after("alice", None, now=100 + i) is None
        t.failure("Alice", None, now=100 + i)
    assert t.retry_after("alice", None, now=103) == 57
    assert t.retry_after("bob", None, now=103) is None
    assert t.retry_after("alice", None, now=161) is None


def test_lockout_from_one_address_does_not_lock_out_another() -> None:
    """Failures for ``admin`` from one address (or spread over many) never lock ``admin`` out elsewhere."""
    t = LoginThrottle(3, window_seconds=900)
    for i in range(3):
        t.failure("admin", "203.0.113.7", now=i)
    assert t.retry_after("admin", "203.0.113.7", now=3) is not None
    assert t.retry_after("admin", "192.0.2.10", now=3) is None
    for i in range(30):
        t.failure("admin", f"198.51.100.{i}", now=4)
    assert t.retry_after("admin", "192.0.2.10", now=5) is None


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
    t.success("a", None)
    assert t.retry_after("a", None, now=2) is None

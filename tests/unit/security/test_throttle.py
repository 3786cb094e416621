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


# -- shared by the cluster: SharedLoginThrottle on a real Redis (GOPHERGATE_TEST_REDIS_URL) ---------------------------


def _redis_url() -> str:
    import os

    import pytest

    url = os.environ.get("GOPHERGATE_TEST_REDIS_URL")
    if not url:
        pytest.fail("the shared throttle tests need GOPHERGATE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    return url


def _shared(prefix: str, max_failures: int = 3, window: float = 60, url: str | None = None):  # type: ignore[no-untyped-def]
    from redis.asyncio import Redis

    from gophergate.security.throttle import SharedLoginThrottle

    redis = Redis.from_url(url or _redis_url(), socket_timeout=0.5, socket_connect_timeout=0.5)
    return SharedLoginThrottle(redis, prefix, LoginThrottle(max_failures, window_seconds=window))


async def test_failures_on_one_instance_lock_the_pair_on_another() -> None:
    import uuid

    prefix = f"test-login-{uuid.uuid4().hex}:"
    one, two = _shared(prefix), _shared(prefix)
    try:
        for _ in range(3):
            assert await two.check("alice", "203.0.113.9") is None
            await one.failed("Alice", "203.0.113.9")
        wait = await two.check("alice", "203.0.113.9")
        assert wait is not None and 55 <= wait <= 60
        assert await two.check("alice", "192.0.2.1") is None  # another address is not locked out
        await two.succeeded("alice", "203.0.113.9")  # the pair's failures go; the address's stay
        assert await one.check("bob", "203.0.113.9") is not None  # 3 failures from that address: every name waits
    finally:
        await one.close()
        await two.close()


async def test_the_shared_window_slides() -> None:
    import asyncio
    import uuid

    prefix = f"test-login-{uuid.uuid4().hex}:"
    throttle = _shared(prefix, max_failures=2, window=1.0)
    try:
        await throttle.failed("carol", None)
        await throttle.failed("carol", None)
        assert await throttle.check("carol", None) == 1
        await asyncio.sleep(1.1)
        throttle._local._failures.clear()  # this process's copy aside: Redis alone decides here
        assert await throttle.check("carol", None) is None
    finally:
        await throttle.close()


async def test_an_unreachable_redis_falls_back_to_this_process() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    throttle = _shared("x:", max_failures=2, url=f"redis://127.0.0.1:{port}/0")
    try:
        await throttle.failed("dave", None)
        await throttle.failed("dave", None)
        assert await throttle.check("dave", None) is not None
    finally:
        await throttle.close()

"""Fixtures of the limits engines: a fake clock, a real Redis (``GOPHERGATE_TEST_REDIS_URL``) under a prefix of
the test's own, and ``make_store``, which builds each shared-semantics test's engine once per engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import pytest
from redis.asyncio import Redis

from gophergate.limits import LimitsStore, MemoryLimits, RedisLimits, Scope

REDIS_ENV = "GOPHERGATE_TEST_REDIS_URL"
SpendLoader = Callable[[Scope, datetime | None], Awaitable[Decimal]]


class FakeClock:
    def __init__(self, wall: datetime) -> None:
        self.mono = 1000.0
        self.now = wall.timestamp()

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += seconds

    def set_wall(self, wall: datetime) -> None:
        self.advance(wall.timestamp() - self.now)


class MakeStore(Protocol):
    def __call__(
        self, clock: FakeClock, tz: str = "UTC", ttl: float = 300.0, spend_loader: SpendLoader | None = None
    ) -> LimitsStore: ...


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.fail(f"the Redis limits tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0); run -k memory without")
    return url


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url(), socket_timeout=5, socket_connect_timeout=5, max_connections=256)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"gg:test:limits:{uuid.uuid4().hex}:"
    yield prefix
    await delete_keys(redis_client, prefix)


async def delete_keys(client: Redis, prefix: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    return len(keys)


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> MakeStore:
    if request.param == "memory":

        def memory(
            clock: FakeClock, tz: str = "UTC", ttl: float = 300.0, spend_loader: SpendLoader | None = None
        ) -> LimitsStore:
            return MemoryLimits(clock=clock, timezone=tz, reservation_ttl=ttl, spend_loader=spend_loader)

        return memory
    client: Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("redis_prefix")

    def shared(
        clock: FakeClock, tz: str = "UTC", ttl: float = 300.0, spend_loader: SpendLoader | None = None
    ) -> LimitsStore:
        return RedisLimits(
            client, clock=clock, timezone=tz, reservation_ttl=ttl, spend_loader=spend_loader, prefix=prefix
        )

    return shared

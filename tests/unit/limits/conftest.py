"""Fixtures of the limits engines: a fake clock, and ``make_store``, which builds each shared-semantics test's engine
once per engine (Redis's on the real Redis of ``tests/conftest.py``'s ``redis_client``, under ``redis_prefix``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import pytest
from redis.asyncio import Redis

from gophergate.limits import LimitsStore, MemoryLimits, RedisLimits, Scope

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

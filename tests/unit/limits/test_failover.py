"""FailoverLimits: a shared store with a local fallback, in ``deny`` and ``allow`` modes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gophergate.limits import (
    Admitted,
    FailoverLimits,
    Limits,
    LimitsUnavailable,
    MemoryLimits,
    RedisLimits,
    Refused,
    Scope,
    Usage,
)
from tests.support import free_port
from tests.unit.limits.conftest import FakeClock

D = Decimal
START = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
K = Scope("key", "k", Limits(rpm=100, budget_usd=D("10")))


class Switchable(MemoryLimits):
    """A primary that can be taken down: every call raises ``LimitsUnavailable`` while ``down``."""

    down = False
    calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise LimitsUnavailable("down")

    async def admit(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused:
        self._check()
        return await super().admit(request_id, key, team, tokens=tokens, cost=cost)

    async def settle(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        self._check()
        return await super().settle(request_id, tokens=tokens, cost=cost)

    def settle_nowait(self, request_id: str, *, tokens: int, cost: Decimal) -> None:
        self._check()
        super().settle_nowait(request_id, tokens=tokens, cost=cost)

    async def release(self, request_id: str) -> None:
        self._check()
        await super().release(request_id)

    async def usage(self, scope: Scope) -> Usage:
        self._check()
        return await super().usage(scope)


def pair(mode: str, clock: FakeClock) -> tuple[FailoverLimits, Switchable, MemoryLimits]:
    primary, fallback = Switchable(clock=clock), MemoryLimits(clock=clock)
    limits = FailoverLimits(primary, fallback, mode=mode, monotonic=clock.monotonic)  # type: ignore[arg-type]
    return limits, primary, fallback


async def test_deny_mode_reraises_when_the_primary_is_unreachable() -> None:
    clock = FakeClock(START)
    limits, primary, fallback = pair("deny", clock)
    assert isinstance(await limits.admit("a", K, None, tokens=0, cost=D(1)), Admitted)
    assert not limits.degraded
    primary.down = True
    with pytest.raises(LimitsUnavailable):
        await limits.admit("b", K, None, tokens=0, cost=D(1))
    assert limits.degraded
    assert (await fallback.usage(K)).requests == 0  # nothing went to the fallback
    assert not await limits.settle("a", tokens=0, cost=D(1))  # dropped, not raised
    primary.down = False
    assert await limits.settle("c-unknown", tokens=0, cost=D(0)) is False
    assert not limits.degraded
    assert await limits.settle("a", tokens=0, cost=D(1))


async def test_allow_mode_admits_through_the_fallback_and_settles_where_it_admitted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(START)
    limits, primary, fallback = pair("allow", clock)
    primary.down = True
    with caplog.at_level(logging.WARNING, logger="gophergate.limits"):
        for rid in ("a", "b", "c"):
            assert isinstance(await limits.admit(rid, K, None, tokens=0, cost=D(1)), Admitted)
            clock.advance(1)
    assert limits.degraded
    assert len([r for r in caplog.records if "admitting against local" in r.message]) == 1  # once a minute
    primary.down = False
    assert isinstance(await limits.admit("d", K, None, tokens=0, cost=D(1)), Admitted)
    assert not limits.degraded
    await limits.release("a")
    assert await limits.settle("a", tokens=0, cost=D("0.5"))  # admitted by the fallback: settled there
    assert await limits.settle("d", tokens=0, cost=D("0.25"))
    assert (await fallback.usage(K)).spend == D("0.5")
    assert (await primary.usage(K)).spend == D("0.25")
    assert (await fallback.usage(K)).in_flight == 2  # b and c
    clock.advance(60)
    with caplog.at_level(logging.WARNING, logger="gophergate.limits"):
        primary.down = True
        await limits.admit("e", K, None, tokens=0, cost=D(0))
    assert len([r for r in caplog.records if "admitting against local" in r.message]) == 2  # a minute later


async def test_a_settle_the_primary_cannot_take_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(START)
    limits, primary, _ = pair("allow", clock)
    await limits.admit("a", K, None, tokens=0, cost=D(1))
    primary.down = True
    with caplog.at_level(logging.WARNING, logger="gophergate.limits"):
        assert await limits.settle("a", tokens=0, cost=D(1)) is False
        await limits.release("a")
    assert limits.degraded
    assert any("settle of a dropped" in r.message for r in caplog.records)


async def test_a_settle_sent_without_waiting_goes_where_the_request_was_admitted_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(START)
    limits, primary, fallback = pair("allow", clock)
    await limits.admit("shared", K, None, tokens=0, cost=D(1))
    primary.down = True
    await limits.admit("local", K, None, tokens=0, cost=D(2))
    limits.settle_nowait("local", tokens=0, cost=D("0.5"))  # the fallback settles at once
    assert (await fallback.usage(K)).spend == D("0.5") and (await fallback.usage(K)).reserved == 0
    with caplog.at_level(logging.WARNING, logger="gophergate.limits"):
        limits.settle_nowait("shared", tokens=0, cost=D("0.25"))  # dropped, counted, logged, not raised
    assert limits.degraded and any("settle of shared dropped" in r.message for r in caplog.records)
    assert limits.settle_failures == 1
    primary.down = False
    assert (await primary.usage(K)).reserved == D(1)  # left to expire after the TTL


async def test_fallback_ids_are_forgotten_after_two_ttls() -> None:
    clock = FakeClock(START)
    limits, primary, _ = pair("allow", clock)
    primary.down = True
    for i in range(50):
        await limits.admit(f"r{i}", K, None, tokens=0, cost=D(0))
    primary.down = False
    clock.advance(2 * 900)
    await limits.admit("fresh", K, None, tokens=0, cost=D(0))
    assert len(limits._local) == 0  # bounded: nothing kept after the TTLs
    assert not await limits.settle("r1", tokens=0, cost=D(0))  # asked the primary, which never saw it


@pytest.mark.parametrize("mode", ["deny", "allow"])
async def test_a_failed_primary_is_not_asked_again_for_a_probe_interval(mode: str) -> None:
    clock = FakeClock(START)
    limits, primary, fallback = pair(mode, clock)
    primary.down = True
    outcomes = []
    for i in range(5):  # a failure, then four admissions in the next 0.8 s: the primary is asked once
        try:
            outcomes.append(await limits.admit(f"r{i}", K, None, tokens=0, cost=D(0)))
        except LimitsUnavailable:
            outcomes.append(None)
        clock.advance(0.2)
    assert primary.calls == 1 and limits.degraded
    assert all(isinstance(o, Admitted) for o in outcomes) if mode == "allow" else outcomes == [None] * 5
    assert (await fallback.usage(K)).requests == (5 if mode == "allow" else 0)
    primary.down = False
    clock.advance(0.2)  # 1.2 s after the failure, 0.4 s after the last skip: resting does not extend the interval
    assert isinstance(await limits.admit("back", K, None, tokens=0, cost=D(0)), Admitted)
    assert primary.calls == 2 and not limits.degraded
    assert (await primary.usage(K)).requests == 1


@pytest.mark.parametrize("mode", ["deny", "allow"])
async def test_a_real_unreachable_redis_behind_failover(mode: str) -> None:
    client = Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    clock = FakeClock(START)
    limits = FailoverLimits(RedisLimits(client, clock=clock), MemoryLimits(clock=clock), mode=mode)  # type: ignore[arg-type]
    if mode == "deny":
        with pytest.raises(LimitsUnavailable):
            await limits.admit("a", K, None, tokens=0, cost=D(1))
        with pytest.raises(LimitsUnavailable):
            await limits.usage(K)
    else:
        assert isinstance(await limits.admit("a", K, None, tokens=0, cost=D(1)), Admitted)
        assert (await limits.usage(K)).reserved == D(1)
        assert await limits.settle("a", tokens=0, cost=D("0.5"))
    assert limits.degraded
    assert await limits.settle("never-admitted", tokens=0, cost=D(0)) is False
    before = limits.settle_failures
    limits.settle_nowait("never-admitted-either", tokens=0, cost=D(0))
    limits.settle_nowait("nor-this-one", tokens=0, cost=D(0))
    await limits.drain()  # the batch failed: counted, not raised
    assert limits.settle_failures == before + 2 and limits.degraded
    await client.aclose()

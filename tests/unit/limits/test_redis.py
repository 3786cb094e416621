"""RedisLimits beyond the shared semantics: several stores (processes) on one Redis, expiry of a dead process's
reservations, seeding after Redis lost its data, script reloads, money in nanodollars, an unreachable Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gophergate.limits import Admitted, Limits, LimitsUnavailable, RedisLimits, Refused, Scope
from tests.support import delete_keys, free_port, redis_url
from tests.unit.limits.conftest import FakeClock

D = Decimal
START = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries three times with backoff by default: seconds per failed call


@pytest.fixture
async def second_client() -> AsyncIterator[Redis]:
    """Another connection pool, as another gateway process would have."""
    client = Redis.from_url(redis_url(required=True), socket_timeout=5, socket_connect_timeout=5, max_connections=256)
    yield client
    await client.aclose()


def store(client: Redis, prefix: str, clock: FakeClock, **kwargs: object) -> RedisLimits:
    return RedisLimits(client, clock=clock, prefix=prefix, reservation_ttl=300.0, **kwargs)  # type: ignore[arg-type]


async def test_two_processes_share_an_rpm_exactly(redis_client: Redis, second_client: Redis, redis_prefix: str) -> None:
    clock = FakeClock(START)
    stores = [store(redis_client, redis_prefix, clock), store(second_client, redis_prefix, clock)]
    k = Scope("key", "k", Limits(rpm=30))
    team = Scope("team", "t", Limits(max_parallel=100))
    picks = random.Random(7)
    results = await asyncio.gather(
        *(stores[picks.randrange(2)].admit(f"r{i}", k, team, tokens=0, cost=D(0)) for i in range(200))
    )
    admitted = [r for r in results if isinstance(r, Admitted)]
    assert len(admitted) == 30
    assert all(isinstance(r, Refused) and r.limit == "requests" for r in results if not isinstance(r, Admitted))
    for one in stores:
        usage = await one.usage(k)
        assert (usage.requests, usage.in_flight) == (30, 30)
        assert (await one.usage(team)).in_flight == 30  # refused requests took no team lease either


async def test_a_killed_process_reservation_expires_and_frees_budget_and_lease_for_the_other(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    dead, alive = store(redis_client, redis_prefix, clock), store(second_client, redis_prefix, clock)
    k = Scope("key", "k", Limits(max_parallel=1, tpm=100, budget_usd=D("1"), budget_period="day"))
    team = Scope("team", "t", Limits(budget_usd=D("1")))
    await dead.admit("lost", k, team, tokens=80, cost=D("0.90"))
    refused = await alive.admit("x", k, team, tokens=0, cost=D(0))
    assert isinstance(refused, Refused) and refused.limit == "parallel"
    clock.advance(299.9)
    assert (await alive.usage(team)).reserved == D("0.90")
    clock.advance(0.1)  # the TTL: the dead process never settles
    for scope in (k, team):
        usage = await alive.usage(scope)
        assert (usage.reserved, usage.in_flight, usage.spend, usage.tokens) == (D(0), 0, D(0), 0)
    ok = await alive.admit("next", k, team, tokens=10, cost=D("0.95"))
    assert isinstance(ok, Admitted) and ok.budget_remaining == D("0.05")
    assert await alive.settle("lost", tokens=80, cost=D("0.30"))  # a late settle still counts, once
    assert not await dead.settle("lost", tokens=80, cost=D("0.30"))
    assert (await alive.usage(team)).spend == D("0.30")


async def test_admission_after_redis_lost_its_data_waits_for_the_ledger_and_counts_nothing_before(
    redis_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    ledger: list[Decimal] = []
    seen: list[tuple[int, int, Decimal]] = []
    k = Scope("key", "k", Limits(rpm=100, budget_usd=D("1"), budget_period="month"))

    async def load(scope: Scope, start: datetime | None) -> Decimal:
        usage = await limits.usage(scope)  # what admission has counted while the scope is unseeded
        seen.append((usage.requests, usage.in_flight, usage.spend))
        return sum(ledger, D(0))

    limits = store(redis_client, redis_prefix, clock, spend_loader=load)
    for i in range(3):
        assert isinstance(await limits.admit(f"a{i}", k, None, tokens=0, cost=D("0.5")), Admitted)
        assert await limits.settle(f"a{i}", tokens=0, cost=D("0.30"))
        ledger.append(D("0.30"))
    assert seen == [(0, 0, D(0))]
    assert (await limits.usage(k)).spend == D("0.90")

    assert await delete_keys(redis_client, redis_prefix) > 0  # FLUSHDB, for this store's keys only
    clock.advance(10)
    capped = await limits.admit("b", k, None, tokens=0, cost=D("0.5"))
    assert seen[1:] == [(0, 0, D(0))]  # the admission that found it unseeded counted nothing
    assert isinstance(capped, Admitted) and capped.budget_remaining == D(0)  # 0.90 spent: 0.10 reserved
    usage = await limits.usage(k)
    assert (usage.requests, usage.spend, usage.reserved) == (1, D("0.90"), D("0.10"))
    refused = await limits.admit("c", k, None, tokens=0, cost=D("0.01"))
    assert isinstance(refused, Refused) and refused.limit == "budget"


async def test_an_instance_does_not_reload_a_scope_another_instance_seeded(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    k = Scope("key", "k", Limits(budget_usd=D("1"), budget_period="total"))

    async def ledger(scope: Scope, start: datetime | None) -> Decimal:
        assert start is None
        return D("0.25")

    async def never(scope: Scope, start: datetime | None) -> Decimal:
        raise AssertionError("asked the ledger again")

    first = store(redis_client, redis_prefix, clock, spend_loader=ledger)
    second = store(second_client, redis_prefix, clock, spend_loader=never)
    assert isinstance(await first.admit("a", k, None, tokens=0, cost=D("0.25")), Admitted)
    ok = await second.admit("b", k, None, tokens=0, cost=D("0.25"))
    assert isinstance(ok, Admitted) and ok.budget_remaining == D("0.25")


async def test_admission_still_works_after_script_flush(redis_client: Redis, redis_prefix: str) -> None:
    clock = FakeClock(START)
    limits = store(redis_client, redis_prefix, clock)
    k = Scope("key", "k", Limits(rpm=2))
    assert isinstance(await limits.admit("a", k, None, tokens=0, cost=D(0)), Admitted)
    await redis_client.script_flush()  # as after a Redis restart
    assert isinstance(await limits.admit("b", k, None, tokens=0, cost=D(0)), Admitted)
    await redis_client.script_flush()
    assert await limits.settle("a", tokens=0, cost=D(0))
    await redis_client.script_flush()
    refused = await limits.admit("c", k, None, tokens=0, cost=D(0))
    assert isinstance(refused, Refused) and refused.limit == "requests"


async def test_a_second_process_cannot_admit_an_id_already_admitted(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    k = Scope("key", "k")
    await store(redis_client, redis_prefix, clock).admit("same", k, None, tokens=0, cost=D(0))
    with pytest.raises(ValueError, match="already admitted"):
        await store(second_client, redis_prefix, clock).admit("same", k, None, tokens=0, cost=D(0))


async def test_money_is_kept_in_nanodollars_reserving_up_and_settling_half_up(
    redis_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    limits = store(redis_client, redis_prefix, clock)
    k = Scope("key", "k", Limits(budget_usd=D("1"), budget_period="total"))
    ok = await limits.admit("a", k, None, tokens=0, cost=D("0.0000000001"))
    assert isinstance(ok, Admitted) and ok.budget_remaining == D("0.999999999")  # a tenth of a nano reserves one
    await limits.settle("a", tokens=0, cost=D("0.0000000015"))
    await limits.admit("b", k, None, tokens=0, cost=D(0))
    await limits.settle("b", tokens=0, cost=D("0.0000000014"))
    assert (await limits.usage(k)).spend == D("0.000000003")
    await limits.admit("c", k, None, tokens=0, cost=D(0))
    await limits.settle("c", tokens=0, cost=D("1234.567890123"))
    assert (await limits.usage(k)).spend == D("1234.567890126")
    with pytest.raises(ValueError, match="exact range"):
        await limits.admit("d", k, None, tokens=0, cost=D(10_000_000))


async def test_budget_keys_of_a_period_expire_after_it_and_total_ones_never(
    redis_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 23, 0, tzinfo=UTC))  # an hour before the day ends
    limits = store(redis_client, redis_prefix, clock)
    day = Scope("key", "day", Limits(budget_usd=D("1"), budget_period="day"))
    total = Scope("key", "total", Limits(budget_usd=D("1"), budget_period="total"))
    await limits.admit("a", day, None, tokens=0, cost=D("0.1"))
    await limits.admit("b", total, None, tokens=0, cost=D("0.1"))
    await limits.settle("a", tokens=0, cost=D("0.1"))
    await limits.settle("b", tokens=0, cost=D("0.1"))
    left = await redis_client.pttl(f"{redis_prefix}s:key:day:b")
    assert 3600_000 < left <= (3600 + 2 * 300 + 3600) * 1000
    assert await redis_client.pttl(f"{redis_prefix}s:key:total:b") == -1
    for name in [key async for key in redis_client.scan_iter(match=f"{redis_prefix}*")]:
        if not name.endswith(b":total:b"):
            assert await redis_client.pttl(name) > 0, name  # everything else is collected on its own


async def test_an_unreachable_redis_raises_limits_unavailable() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=NO_RETRY)
    limits = RedisLimits(client, clock=FakeClock(START))
    k = Scope("key", "k", Limits(rpm=1, budget_usd=D(1)))
    calls = [
        limits.admit("a", k, None, tokens=0, cost=D(0)),
        limits.settle("a", tokens=0, cost=D(0)),
        limits.release("a"),
        limits.usage(k),
        limits.rebuild_spend(k, None, D(0)),
    ]
    for call in calls:
        with pytest.raises(LimitsUnavailable):
            await call
    await client.aclose()


async def test_settles_sent_without_waiting_go_as_one_batch_and_are_all_counted(
    redis_client: Redis, redis_prefix: str
) -> None:
    limits = store(redis_client, redis_prefix, FakeClock(START))
    k = Scope("key", "k", Limits(tpm=10_000, max_parallel=50, budget_usd=D(100)))
    for i in range(20):
        assert isinstance(await limits.admit(f"r{i}", k, None, tokens=100, cost=D(1)), Admitted)
    for i in range(20):
        limits.settle_nowait(f"r{i}", tokens=10, cost=D("0.25"))
    limits.settle_nowait("r0", tokens=10, cost=D("0.25"))  # a second settle of the same request changes nothing
    await limits.drain()
    usage = await limits.usage(k)
    assert (usage.spend, usage.reserved, usage.tokens, usage.in_flight) == (D(5), 0, 200, 0)
    assert limits.settle_failures == 0


async def test_a_settle_sent_without_waiting_to_an_unreachable_redis_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=NO_RETRY)
    limits = RedisLimits(client, clock=FakeClock(START))
    with caplog.at_level("WARNING", logger="gophergate.limits"):
        limits.settle_nowait("a", tokens=1, cost=D(1))
        limits.settle_nowait("b", tokens=1, cost=D(1))
        await limits.drain()
    assert limits.settle_failures == 2
    assert any("2 settle(s)" in r.message for r in caplog.records)
    await client.aclose()


async def test_a_redis_that_never_answers_raises_limits_unavailable_after_the_socket_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.3, retry=NO_RETRY)
    limits = RedisLimits(client, clock=FakeClock(START))
    with pytest.raises(LimitsUnavailable):
        await limits.admit("a", Scope("key", "k"), None, tokens=0, cost=D(0))
    await client.aclose()
    server.close()


async def test_two_processes_share_a_budget_exactly(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> None:
    clock = FakeClock(START)
    stores = [store(redis_client, redis_prefix, clock), store(second_client, redis_prefix, clock)]
    k = Scope("key", "k", Limits(budget_usd=D("1.00"), budget_period="month"))
    results = await asyncio.gather(
        *(stores[i % 2].admit(f"r{i}", k, None, tokens=0, cost=D("0.40")) for i in range(100))
    )
    admitted = [f"r{i}" for i, r in enumerate(results) if isinstance(r, Admitted)]
    assert len(admitted) == 3  # 0.40 + 0.40 + 0.20 capped at what remained; nothing more while it is open
    usage = await stores[0].usage(k)
    assert (usage.reserved, usage.remaining) == (D("1.00"), D(0))
    for i, rid in enumerate(admitted):
        assert await stores[i % 2].settle(rid, tokens=0, cost=D("0.40"))
    assert (await stores[1].usage(k)).spend == D("1.20")  # the overshoot bound: one request's worst case


async def test_a_client_that_decodes_responses_works_the_same(redis_prefix: str) -> None:
    client = Redis.from_url(redis_url(required=True), decode_responses=True)
    clock = FakeClock(START)

    async def ledger(scope: Scope, start: datetime | None) -> Decimal:
        return D("0.5")

    limits = store(client, redis_prefix, clock, spend_loader=ledger)
    k = Scope("key", "k", Limits(rpm=1, budget_usd=D("1"), budget_period="day"))
    ok = await limits.admit("a", k, None, tokens=0, cost=D("0.25"))
    assert isinstance(ok, Admitted) and ok.budget_remaining == D("0.25") and ok.headers.remaining_requests == 0
    refused = await limits.admit("b", k, None, tokens=0, cost=D("0.25"))
    assert isinstance(refused, Refused) and refused.limit == "requests"
    assert await limits.settle("a", tokens=0, cost=D("0.1"))
    assert (await limits.usage(k)).spend == D("0.6")
    await client.aclose()

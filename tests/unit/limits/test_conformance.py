"""The semantics every limits engine keeps (``gophergate.limits``), each test run against ``MemoryLimits`` and
``RedisLimits`` (``make_store``), driven by an injected clock."""

from __future__ import annotations

import asyncio
import inspect
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gophergate.limits import (
    Admitted,
    FailoverLimits,
    Limits,
    LimitsStore,
    MemoryLimits,
    RedisLimits,
    Refused,
    Scope,
)
from tests.unit.limits.conftest import FakeClock, MakeStore

NY = ZoneInfo("America/New_York")
D = Decimal

START = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def key(**limits: Any) -> Scope:
    return Scope("key", "k1", Limits(**limits))


async def admit(
    store: LimitsStore, rid: str, scope: Scope, team: Scope | None = None, *, tokens: int = 0, cost: str = "0"
) -> Admitted:
    result = await store.admit(rid, scope, team, tokens=tokens, cost=D(cost))
    assert isinstance(result, Admitted), result
    return result


async def refuse(
    store: LimitsStore, rid: str, scope: Scope, team: Scope | None = None, *, tokens: int = 0, cost: str = "0"
) -> Refused:
    result = await store.admit(rid, scope, team, tokens=tokens, cost=D(cost))
    assert isinstance(result, Refused), result
    return result


@pytest.mark.parametrize("engine", [MemoryLimits, RedisLimits, FailoverLimits])
@pytest.mark.parametrize("name", ["admit", "settle", "release", "usage", "rebuild_spend"])
def test_every_engine_has_the_limits_store_methods(engine: type, name: str) -> None:
    mine = getattr(engine, name)
    assert inspect.iscoroutinefunction(mine)
    assert inspect.signature(mine) == inspect.signature(getattr(LimitsStore, name))


async def test_rpm_is_exact_at_the_window_edge(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key(rpm=3)
    for i in range(3):
        await admit(store, f"r{i}", k)
        clock.advance(10)
    clock.advance(59.999 - 30)  # 59.999 s after the first admission
    refused = await refuse(store, "late", k)
    assert refused.limit == "requests" and refused.scope == "key"
    assert refused.retry_after == pytest.approx(0.001)
    assert refused.headers.limit_requests == 3 and refused.headers.remaining_requests == 0
    clock.advance(0.001)  # exactly 60 s: the first admission no longer counts
    ok = await admit(store, "edge", k)
    assert ok.headers.remaining_requests == 0
    assert ok.headers.reset_requests == pytest.approx(60.0)  # all back when the newest admission leaves
    await refuse(store, "again", k)  # the one at 10 s still counts until 70 s
    clock.advance(9.999)
    await refuse(store, "again2", k)
    clock.advance(0.001)
    await admit(store, "at70", k)


async def test_refused_requests_do_not_count(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key(rpm=1)
    await admit(store, "a", k)
    for i in range(5):
        clock.advance(10)
        await refuse(store, f"x{i}", k)
    clock.advance(10)  # 60 s after "a"
    await admit(store, "b", k)
    assert (await store.usage(k)).requests == 1


async def test_tpm_reserves_then_settles_to_the_real_count(make_store: MakeStore) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 12, 0, 0, tzinfo=UTC))
    clock.mono = 6000.0  # the start of a tpm window
    store, k = make_store(clock), key(tpm=1000)
    first = await admit(store, "a", k, tokens=600)
    assert first.headers.limit_tokens == 1000 and first.headers.remaining_tokens == 400
    assert first.headers.reset_tokens == pytest.approx(60.0)
    capped = await admit(store, "b", k, tokens=600)  # admitted while tokens are left, reserving only what is left
    assert capped.headers.remaining_tokens == 0
    clock.advance(15)
    refused = await refuse(store, "c", k, tokens=10)
    assert refused.limit == "tokens" and refused.retry_after == pytest.approx(45.0)
    assert await store.settle("a", tokens=100, cost=D(0))
    assert (await store.usage(k)).tokens == 500  # 100 real + 400 still reserved by "b"
    ok = await admit(store, "c", k, tokens=10)
    assert ok.headers.remaining_tokens == 490
    await store.settle("b", tokens=50, cost=D(0))
    await store.settle("c", tokens=10, cost=D(0))
    assert (await store.usage(k)).tokens == 160


async def test_tpm_window_turns_and_a_late_settle_spills_only_the_excess(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    clock.mono = 6000.0
    store, k = make_store(clock), key(tpm=1000)
    await admit(store, "a", k, tokens=1000)
    await refuse(store, "b", k, tokens=1)
    clock.advance(60)  # a new window
    assert (await store.usage(k)).tokens == 0
    await store.settle("a", tokens=1200, cost=D(0))  # 200 more than reserved spill into this window
    assert (await store.usage(k)).tokens == 200
    other = key(tpm=1000)
    await store.settle("nobody", tokens=5, cost=D(0))
    assert (await store.usage(other)).tokens == 200


async def test_max_parallel_counts_leases_released_once(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key(max_parallel=2)
    await admit(store, "a", k)
    await admit(store, "b", k)
    refused = await refuse(store, "c", k)
    assert refused.limit == "parallel" and refused.retry_after is not None and refused.retry_after > 0
    await store.release("a")
    await store.release("a")  # twice: no effect
    assert (await store.usage(k)).in_flight == 1
    await admit(store, "c", k)
    await refuse(store, "d", k)
    await store.settle("a", tokens=0, cost=D(0))  # already released: no second release
    assert (await store.usage(k)).in_flight == 2
    await store.settle("b", tokens=0, cost=D(0))  # settle ends the lease
    assert (await store.usage(k)).in_flight == 1
    await admit(store, "d", k)


async def test_budget_reserves_and_settles_once(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key(budget_usd=D("1.00"), budget_period="day")
    ok = await admit(store, "a", k, cost="0.30")
    assert ok.budget_remaining == D("0.70")
    usage = await store.usage(k)
    assert (usage.spend, usage.reserved, usage.remaining) == (D(0), D("0.30"), D("0.70"))
    assert await store.settle("a", tokens=10, cost=D("0.1234567"))
    assert not await store.settle("a", tokens=10, cost=D("0.1234567"))  # settle-once: keyed by request id
    assert not await store.settle("a", tokens=99, cost=D("5"))
    usage = await store.usage(k)
    assert (usage.spend, usage.reserved, usage.remaining) == (D("0.1234567"), D(0), D("0.8765433"))


async def test_an_unsettled_reservation_expires_and_a_late_settle_still_counts_once(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock, ttl=300), key(budget_usd=D("1"), max_parallel=1, tpm=100)
    await admit(store, "dead", k, cost="0.90", tokens=50)
    await refuse(store, "x", k)
    clock.advance(299.9)
    assert (await store.usage(k)).reserved == D("0.90")
    clock.advance(0.1)  # the TTL: reservation and lease are gone on their own
    usage = await store.usage(k)
    assert (usage.reserved, usage.in_flight, usage.spend) == (D(0), 0, D(0))
    await admit(store, "next", k, cost="0.05")
    assert await store.settle("dead", tokens=50, cost=D("0.40"))  # arrived late: the real cost still counts
    assert not await store.settle("dead", tokens=50, cost=D("0.40"))
    usage = await store.usage(k)
    assert (usage.spend, usage.reserved, usage.in_flight) == (D("0.40"), D("0.05"), 1)
    clock.advance(600)  # both gone for good
    assert not await store.settle("next", tokens=0, cost=D("1"))
    assert (await store.usage(k)).spend == D("0.40")


async def test_budget_overshoot_is_at_most_one_requests_worst_case(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key(budget_usd=D("1.00"), budget_period="month")
    worst = D("0.40")
    admitted = []
    for i in range(10):  # ten concurrent requests, each able to cost 0.40
        result = await store.admit(f"r{i}", k, None, tokens=0, cost=worst)
        if isinstance(result, Admitted):
            admitted.append(f"r{i}")
        else:
            assert result.limit == "budget"
    assert admitted == ["r0", "r1", "r2"]  # 0.40 + 0.40 + 0.20 (capped at what remained)
    await store.settle("r0", tokens=0, cost=D("0.10"))  # money is back, but r2 may still cost up to 0.40
    held = await refuse(store, "while-capped", k, cost="0.01")
    assert held.retry_after == 1.0
    await store.settle("r2", tokens=0, cost=worst)
    await store.settle("r1", tokens=0, cost=worst)
    spend = (await store.usage(k)).spend
    assert spend == D("0.90")
    # The worst that can happen: every admitted request costs its full worst case.
    store2 = make_store(clock)
    k2 = Scope("key", "k2", k.limits)
    ids = [
        f"s{i}" for i in range(10) if isinstance(await store2.admit(f"s{i}", k2, None, tokens=0, cost=worst), Admitted)
    ]
    for rid in ids:
        await store2.settle(rid, tokens=0, cost=worst)
    over = (await store2.usage(k2)).spend - D("1.00")
    assert over == D("0.20") and over < worst
    await refuse(store2, "after", k2, cost="0.01")


@pytest.mark.parametrize("seed", range(20))
async def test_budget_overshoot_bound_holds_under_random_interleavings(seed: int, make_store: MakeStore) -> None:
    rng = random.Random(seed)
    clock = FakeClock(START)
    store = make_store(clock)
    budget = D("5.00")
    k = key(budget_usd=budget, budget_period="total")
    open_ids: dict[str, Decimal] = {}
    largest = D(0)
    for i in range(300):
        if open_ids and rng.random() < 0.5:
            rid = rng.choice(sorted(open_ids))
            worst = open_ids.pop(rid)
            actual = (worst * D(rng.randint(0, 100)) / 100).quantize(D("0.0001"))
            assert await store.settle(rid, tokens=0, cost=actual)
        else:
            worst = D(rng.randint(1, 150)) / 100
            result = await store.admit(f"r{i}", k, None, tokens=0, cost=worst)
            if isinstance(result, Admitted):
                open_ids[f"r{i}"] = worst
                largest = max(largest, worst)
    for rid, worst in open_ids.items():
        await store.settle(rid, tokens=0, cost=worst)
    assert (await store.usage(k)).spend < budget + largest


async def test_key_and_team_admit_all_or_nothing(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store = make_store(clock)
    team = Scope("team", "t", Limits(rpm=2, budget_usd=D("1")))
    a = Scope("key", "a", Limits(rpm=10))
    b = Scope("key", "b", Limits(rpm=10, budget_usd=D("0.05")))
    ok = await admit(store, "1", a, team)
    assert ok.headers.limit_requests == 2 and ok.headers.remaining_requests == 1  # the tighter: the team's
    await store.settle("1", tokens=0, cost=D("0.05"))
    await admit(store, "2", b, team, cost="0.05")
    await store.settle("2", tokens=0, cost=D("0.05"))
    refused = await refuse(store, "3", a, team)
    assert refused.limit == "requests" and refused.scope == "team"
    assert (await store.usage(a)).requests == 1  # the key's own count did not move
    clock.advance(60)
    refused = await refuse(store, "4", b, team, cost="0.01")  # b's budget is gone: the team is not charged
    assert refused.limit == "budget" and refused.scope == "key"
    assert (await store.usage(team)).requests == 0
    usage = await store.usage(team)
    assert usage.spend == D("0.10") and usage.reserved == D(0)
    await admit(store, "5", a, team)


async def test_team_budget_is_the_sum_of_its_keys(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store = make_store(clock)
    team = Scope("team", "t", Limits(budget_usd=D("1"), budget_period="day"))
    keys = [Scope("key", f"k{i}", Limits(budget_usd=D("10"))) for i in range(3)]
    for i, k in enumerate(keys):
        result = await admit(store, f"r{i}", k, team, cost="0.30")
        assert result.budget_remaining == D("1") - D("0.30") * (i + 1)
    capped = await admit(store, "r3", keys[0], team, cost="0.30")  # 0.10 left: admitted, reserving 0.10
    assert capped.budget_remaining == D(0)
    refused = await refuse(store, "r4", keys[1], team, cost="0.01")
    assert refused.limit == "budget" and refused.scope == "team"
    for i, cost in enumerate(["0.20", "0.30", "0.10", "0.30"]):
        await store.settle(f"r{i}", tokens=0, cost=D(cost))
    assert (await store.usage(team)).spend == D("0.90")
    assert (await store.usage(keys[0])).spend == D("0.50")
    assert (await store.usage(keys[1])).spend == D("0.30")
    await admit(store, "r5", keys[2], team, cost="0.30")


async def test_day_rolls_over_at_local_midnight_in_new_york(make_store: MakeStore) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 23, 59, 59, tzinfo=NY))
    store, k = make_store(clock, tz="America/New_York"), key(budget_usd=D("1"), budget_period="day")
    await admit(store, "a", k, cost="1")
    await store.settle("a", tokens=0, cost=D("1"))
    refused = await refuse(store, "b", k, cost="0.01")
    midnight = datetime(2026, 6, 11, 0, 0, tzinfo=NY)
    assert refused.resets_at == midnight.astimezone(UTC) and refused.resets_at == datetime(2026, 6, 11, 4, tzinfo=UTC)
    assert refused.retry_after == pytest.approx(1.0)
    clock.advance(0.999)
    await refuse(store, "c", k, cost="0.01")
    clock.advance(0.001)  # 00:00:00 New York (04:00 UTC): a new day
    await admit(store, "d", k, cost="0.01")
    usage = await store.usage(k)
    assert usage.spend == D(0) and usage.period_start == midnight
    assert usage.resets_at == datetime(2026, 6, 12, 0, 0, tzinfo=NY)


@pytest.mark.parametrize(
    ("day", "hours"),
    [((2026, 3, 8), 23), ((2026, 11, 1), 25)],  # US daylight saving starts / ends
)
async def test_a_dst_change_day_runs_from_local_midnight_to_local_midnight(
    day: tuple[int, int, int], hours: int, make_store: MakeStore
) -> None:
    start = datetime(*day, 0, 0, tzinfo=NY)
    clock = FakeClock(datetime(*day, 12, 0, tzinfo=NY))
    store, k = make_store(clock, tz="America/New_York"), key(budget_usd=D("1"), budget_period="day")
    await admit(store, "a", k, cost="1")
    usage = await store.usage(k)
    assert usage.period_start is not None and usage.resets_at is not None
    assert usage.period_start == start
    assert (usage.resets_at - usage.period_start).total_seconds() == hours * 3600
    assert usage.resets_at.astimezone(NY).hour == 0
    refused = await refuse(store, "b", k, cost="0.01")
    assert refused.resets_at == usage.resets_at
    clock.set_wall(usage.resets_at)
    await admit(store, "c", k, cost="0.5")


async def test_week_starts_monday(make_store: MakeStore) -> None:
    clock = FakeClock(datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC))  # a Sunday
    store, k = make_store(clock), key(budget_usd=D("1"), budget_period="week")
    await admit(store, "a", k, cost="1")
    usage = await store.usage(k)
    assert usage.period_start == datetime(2026, 11, 30, tzinfo=UTC)  # the Monday before
    assert usage.resets_at == datetime(2026, 12, 7, tzinfo=UTC)
    await refuse(store, "b", k, cost="0.01")
    clock.advance(1)  # Monday 00:00
    await admit(store, "c", k, cost="0.5")
    usage = await store.usage(k)
    assert usage.period_start == datetime(2026, 12, 7, tzinfo=UTC) and usage.resets_at == datetime(
        2026, 12, 14, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("last_second", "next_month"),
    [
        (datetime(2026, 1, 31, 23, 59, 59), datetime(2026, 2, 1)),
        (datetime(2028, 2, 29, 23, 59, 59), datetime(2028, 3, 1)),  # a leap year
        (datetime(2026, 12, 31, 23, 59, 59), datetime(2027, 1, 1)),
    ],
)
async def test_month_ends_at_the_end_of_its_last_day(
    last_second: datetime, next_month: datetime, make_store: MakeStore
) -> None:
    clock = FakeClock(last_second.replace(tzinfo=NY))
    store, k = make_store(clock, tz="America/New_York"), key(budget_usd=D("1"), budget_period="month")
    await admit(store, "a", k, cost="1")
    refused = await refuse(store, "b", k, cost="0.01")
    assert refused.resets_at == next_month.replace(tzinfo=NY)
    assert (await store.usage(k)).period_start == last_second.replace(day=1, hour=0, minute=0, second=0, tzinfo=NY)
    clock.advance(1)
    await admit(store, "c", k, cost="0.01")


async def test_total_budget_never_resets(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock, tz="America/New_York"), key(budget_usd=D("1"), budget_period="total")
    await admit(store, "a", k, cost="1")
    await store.settle("a", tokens=0, cost=D("1"))
    for seconds in (86400, 7 * 86400, 40 * 86400, 400 * 86400):
        clock.advance(seconds)
        refused = await refuse(store, f"b{seconds}", k, cost="0.01")
        assert refused.resets_at is None and refused.retry_after is None
    usage = await store.usage(k)
    assert usage.spend == D(1) and usage.period_start is None and usage.resets_at is None


async def test_a_cost_belongs_to_the_period_it_was_admitted_in(make_store: MakeStore) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 23, 59, tzinfo=UTC))
    store, k = make_store(clock), key(budget_usd=D("1"), budget_period="day")
    await admit(store, "a", k, cost="0.60")
    clock.advance(120)  # the next day
    await admit(store, "b", k, cost="0.60")
    await store.settle("a", tokens=0, cost=D("0.60"))
    usage = await store.usage(k)
    assert (usage.spend, usage.reserved) == (D(0), D("0.60"))


async def test_rebuild_spend_seeds_the_current_period_only(make_store: MakeStore) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 15, 0, tzinfo=NY))
    store, k = make_store(clock, tz="America/New_York"), key(budget_usd=D("1"), budget_period="day")
    await store.rebuild_spend(k, datetime(2026, 6, 9, tzinfo=NY), D("0.5"))  # yesterday: ignored
    assert (await store.usage(k)).spend == D(0)
    await store.rebuild_spend(k, datetime(2026, 6, 10, tzinfo=NY), D("0.99"))
    ok = await admit(store, "a", k, cost="0.50")
    assert ok.budget_remaining == D(0)
    usage = await store.usage(k)
    assert (usage.spend, usage.reserved) == (D("0.99"), D("0.01"))
    await refuse(store, "b", k, cost="0.01")


async def test_no_limits_means_no_headers_and_a_duplicate_id_is_an_error(make_store: MakeStore) -> None:
    clock = FakeClock(START)
    store, k = make_store(clock), key()
    ok = await admit(store, "a", k, tokens=5, cost="1")
    assert ok.headers.limit_requests is None and ok.headers.limit_tokens is None and ok.budget_remaining is None
    with pytest.raises(ValueError, match="already admitted"):
        await store.admit("a", k, None, tokens=0, cost=D(0))


async def test_spend_is_loaded_from_the_ledger_once_per_scope_and_period_before_the_first_admission(
    make_store: MakeStore,
) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 23, 59, 30, tzinfo=NY))
    asked: list[tuple[str, datetime | None]] = []

    async def ledger(scope: Scope, start: datetime | None) -> D:
        asked.append((scope.id, start))
        await asyncio.sleep(0)
        return D("0.75")

    store = make_store(clock, tz="America/New_York", spend_loader=ledger)
    k = key(budget_usd=D(1), budget_period="day")
    results = await asyncio.gather(*(store.admit(f"r{i}", k, None, tokens=0, cost=D("0.1")) for i in range(3)))
    assert all(isinstance(r, Admitted) for r in results)
    assert asked == [("k1", datetime(2026, 6, 10, tzinfo=NY))]  # one load for three concurrent admissions
    assert (await store.usage(k)).spend == D("0.75")
    clock.advance(60)  # past local midnight: a new period is loaded again
    await admit(store, "r9", k, cost="0.1")
    assert asked[-1] == ("k1", datetime(2026, 6, 11, tzinfo=NY)) and len(asked) == 2


async def test_a_scope_without_a_budget_never_asks_the_ledger(make_store: MakeStore) -> None:
    async def ledger(scope: Scope, start: datetime | None) -> D:
        raise AssertionError("asked")

    store = make_store(FakeClock(START), spend_loader=ledger)
    await admit(store, "r1", key(rpm=5))


async def test_a_failed_ledger_load_refuses_nothing_silently_and_is_retried(make_store: MakeStore) -> None:
    calls = 0

    async def ledger(scope: Scope, start: datetime | None) -> D:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database down")
        return D(0)

    store = make_store(FakeClock(START), spend_loader=ledger)
    k = key(budget_usd=D(1), budget_period="total")
    with pytest.raises(OSError):
        await store.admit("r1", k, None, tokens=0, cost=D("0.1"))
    await admit(store, "r2", k, cost="0.1")
    assert calls == 2

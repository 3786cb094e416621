"""The process-local limits engine: exact counters in memory, for the embedded single-process gateway.

Everything is O(1) or amortized O(1) per call: the rpm log of a scope holds at most its ``rpm`` entries, and
reservations expire from a queue kept in deadline order (the TTL is the same for all of them). No I/O, no
threads, no locks: the methods never await, so on one event loop each call is atomic.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from gophergate.limits.once import once
from gophergate.limits.periods import NEVER, as_datetime, period_bounds
from gophergate.limits.types import (
    Admitted,
    Clock,
    LimitName,
    LimitsStore,
    Period,
    RateHeaders,
    Refused,
    Scope,
    SystemClock,
    Usage,
)

WINDOW = 60.0  # seconds, for rpm (sliding) and tpm (fixed windows on the monotonic clock)
PARALLEL_RETRY = 1.0  # seconds a refusal for max_parallel (or a budget held by a capped reservation) suggests
DEFAULT_RESERVATION_TTL = 900.0
_ZERO = Decimal(0)


class _State:
    """The counters of one key or team."""

    __slots__ = (
        "capped",
        "hits",
        "in_flight",
        "period",
        "period_end",
        "period_kind",
        "requests",
        "reserved",
        "seeded",
        "spend",
        "tokens",
        "window",
    )

    def __init__(self) -> None:
        self.hits: deque[float] = deque()  # monotonic times of admissions in the last minute (only with rpm)
        self.window = -1  # index of the current tpm window: monotonic // 60
        self.requests = 0  # admissions in that window (for usage)
        self.tokens = 0  # tokens in that window: settled counts plus open reservations
        self.in_flight = 0
        self.period_kind: Period | None = None
        self.period = 0.0  # start of the current budget period (epoch seconds; -inf for total)
        self.period_end = NEVER
        self.spend = _ZERO  # settled in the period
        self.reserved = _ZERO  # open reservations in the period
        self.capped = 0  # open reservations that were capped at what remained
        self.seeded = False  # the period's spend was loaded from the ledger (``spend_loader``)


class _Part:
    """What one request holds in one scope."""

    __slots__ = ("capped", "cost", "period", "state", "tokens", "window")

    def __init__(self, state: _State, tokens: int, window: int, cost: Decimal, capped: bool) -> None:
        self.state = state
        self.tokens = tokens
        self.window = window
        self.cost = cost
        self.period = state.period
        self.capped = capped


class _Open:
    __slots__ = ("deadline", "leased", "parts")

    def __init__(self, parts: list[_Part], deadline: float) -> None:
        self.parts = parts
        self.deadline = deadline
        self.leased = True


UNSEEDED = object()  # admit_now: a budget's period spend is not loaded yet
SpendLoader = Callable[[Scope, datetime | None], Awaitable[Decimal]]


class MemoryLimits:
    """The in-memory ``LimitsStore``. ``timezone`` is where budget days, weeks and months start;
    ``reservation_ttl`` is how long an unsettled reservation (and its in-flight lease) lives. ``spend_loader``
    (the request log) gives a scope's settled spend since a period's start (``None``: all time); it is asked once
    per scope and period, before the first admission that the scope's budget has to decide, so a restart, a
    new period or a budget set mid-period starts from what the ledger says. Without it spend starts at zero."""

    settle_failures = 0  # never: nothing to reach

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        timezone: str = "UTC",
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        spend_loader: SpendLoader | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._loader = spend_loader
        self._seeding: dict[tuple[tuple[str, str], float], asyncio.Future[None]] = {}
        self._tz = ZoneInfo(timezone)
        self._ttl = reservation_ttl
        self._states: dict[tuple[str, str], _State] = {}
        # Both in deadline order (the TTL is the same for all): expiry looks at the front only, and a settle
        # removes its entry at once, so a settled request leaves nothing behind (no queue of dead deadlines).
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._expired: OrderedDict[str, _Open] = OrderedDict()  # expired, not settled: a late settle still counts
        self._bounds: dict[Period, tuple[float, float]] = {}
        self._next_expiry = NEVER  # no deadline before this (monotonic): admissions skip _expire until then

    # -- the LimitsStore interface --------------------------------------------------------------------------

    async def admit(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused:
        while True:
            result = self.admit_now(request_id, key, team, tokens=tokens, cost=cost)
            if result is not UNSEEDED:
                return result  # type: ignore[return-value]
            await self._seed(key)
            if team is not None:
                await self._seed(team)

    async def settle(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        return self.settle_now(request_id, tokens=tokens, cost=cost)

    def settle_nowait(self, request_id: str, *, tokens: int, cost: Decimal) -> None:
        self.settle_now(request_id, tokens=tokens, cost=cost)

    async def drain(self) -> None:
        return None  # settles are done at once

    async def release(self, request_id: str) -> None:
        self.release_now(request_id)

    async def usage(self, scope: Scope) -> Usage:
        if self._loader is not None:
            await self._seed(scope)  # a budget's spend is the ledger's until this process has counted it
        return self.usage_now(scope)

    async def rebuild_spend(self, scope: Scope, period_start: datetime | None, amount: Decimal) -> None:
        self.rebuild_spend_now(scope, period_start, amount)

    # -- synchronous bodies -----------------------------------------------------------------------------------

    def admit_now(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused | object:
        """The admission, decided now; ``UNSEEDED`` (counting nothing) when a budget's spend must first be loaded
        from the ledger (``admit`` does that)."""
        clock = self._clock
        mono = clock.monotonic()
        wall = clock.wall()
        if mono >= self._next_expiry:
            self._expire(mono)
        if request_id in self._open or request_id in self._expired:
            raise ValueError(f"request id {request_id!r} is already admitted")
        window = int(mono // WINDOW)
        edge = mono - WINDOW
        pairs: tuple[tuple[Scope, _State], ...] = ((key, self._state(key, window, wall)),)
        if team is not None:
            pairs = (pairs[0], (team, self._state(team, window, wall)))
        for scope, st in pairs:
            if not st.seeded and scope.limits.budget_usd is not None:
                return UNSEEDED

        for scope, st in pairs:
            rpm = scope.limits.rpm
            if rpm is not None:
                hits = st.hits
                while hits and hits[0] <= edge:
                    hits.popleft()
                if len(hits) >= rpm:
                    wait = hits[len(hits) - rpm] + WINDOW - mono if rpm > 0 else None
                    return self._refuse("requests", scope, wait, None, pairs, mono, window)
        for scope, st in pairs:
            tpm = scope.limits.tpm
            if tpm is not None and st.tokens >= tpm:
                wait = (window + 1) * WINDOW - mono if tpm > 0 else None
                return self._refuse("tokens", scope, wait, None, pairs, mono, window)
        for scope, st in pairs:
            most = scope.limits.max_parallel
            if most is not None and st.in_flight >= most:
                return self._refuse("parallel", scope, PARALLEL_RETRY if most > 0 else None, None, pairs, mono, window)
        remainders: list[Decimal] = []  # per budgeted scope, in order: reused by the count below
        for scope, st in pairs:
            budget = scope.limits.budget_usd
            if budget is not None:
                remainder = budget - st.spend - st.reserved
                remainders.append(remainder)
                if remainder <= 0 or st.capped:
                    if remainder > 0:  # money left, all of it held by a capped reservation still in flight
                        wait = PARALLEL_RETRY
                    else:
                        wait = None if st.period_end == NEVER else st.period_end - wall
                    reset = as_datetime(st.period_end)
                    return self._refuse("budget", scope, wait, reset, pairs, mono, window)

        # Admitted: count it in every scope, and take the headers' numbers (the tightest scope) on the way.
        parts: list[_Part] = []
        requests: tuple[int, int] | None = None  # (remaining, limit)
        tokens_left: tuple[int, int] | None = None
        least: Decimal | None = None
        for scope, st in pairs:
            limits = scope.limits
            rpm, tpm, budget = limits.rpm, limits.tpm, limits.budget_usd
            if rpm is not None:
                st.hits.append(mono)
                found = (rpm - len(st.hits), rpm)
                if requests is None or found < requests:
                    requests = found
            st.requests += 1
            held = tokens if tpm is None else min(tokens, tpm - st.tokens)
            st.tokens += held
            if tpm is not None:
                found = (max(0, tpm - st.tokens), tpm)
                if tokens_left is None or found < tokens_left:
                    tokens_left = found
            st.in_flight += 1
            reserve, capped = cost, False
            if budget is not None:
                remainder = remainders.pop(0)
                if cost > remainder:
                    reserve, capped = remainder, True
                    st.capped += 1
                left = remainder - reserve
                if least is None or left < least:
                    least = left
            st.reserved += reserve
            parts.append(_Part(st, held, window, reserve, capped))
        deadline = mono + self._ttl
        self._open[request_id] = _Open(parts, deadline)
        if deadline < self._next_expiry:
            self._next_expiry = deadline
        if requests is None and tokens_left is None:
            return Admitted(_NO_HEADERS, least)
        headers = RateHeaders()
        if requests is not None:
            # The newest admission is this one, made now: the window is whole again a full minute from now.
            headers.remaining_requests, headers.limit_requests = requests
            headers.reset_requests = WINDOW
        if tokens_left is not None:
            headers.remaining_tokens, headers.limit_tokens = tokens_left
            headers.reset_tokens = (window + 1) * WINDOW - mono
        return Admitted(headers, least)

    def settle_now(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        mono = self._clock.monotonic()
        if mono >= self._next_expiry:
            self._expire(mono)
        held = self._open.pop(request_id, None)
        if held is None:
            held = self._expired.pop(request_id, None)
            if held is None:
                return False
        window = int(mono // WINDOW)
        for part in held.parts:
            st = part.state
            if part.period == st.period:  # the cost belongs to the period the request was admitted in
                st.reserved -= part.cost
                st.capped -= part.capped
                st.spend += cost
            if st.window != window:
                st.window, st.requests, st.tokens = window, 0, 0
            if part.window == window:
                st.tokens += tokens - part.tokens
            elif tokens > part.tokens:  # the reservation's minute is over: only the excess spills into this one
                st.tokens += tokens - part.tokens
            if held.leased:
                st.in_flight -= 1
        held.leased = False
        return True

    def release_now(self, request_id: str) -> None:
        held = self._open.get(request_id)
        if held is not None and held.leased:
            for part in held.parts:
                part.state.in_flight -= 1
            held.leased = False

    def usage_now(self, scope: Scope) -> Usage:
        mono = self._clock.monotonic()
        wall = self._clock.wall()
        self._expire(mono)
        st = self._state(scope, int(mono // WINDOW), wall)
        if scope.limits.rpm is not None:
            while st.hits and st.hits[0] <= mono - WINDOW:
                st.hits.popleft()
            requests = len(st.hits)
        else:
            requests = st.requests
        budget = scope.limits.budget_usd
        return Usage(
            requests=requests,
            tokens=st.tokens,
            in_flight=st.in_flight,
            spend=st.spend,
            reserved=st.reserved,
            remaining=None if budget is None else budget - st.spend - st.reserved,
            period_start=as_datetime(st.period),
            resets_at=as_datetime(st.period_end),
        )

    def rebuild_spend_now(self, scope: Scope, period_start: datetime | None, amount: Decimal) -> None:
        """Set (not add) the settled spend of the scope's current period, and mark it seeded; a ``period_start``
        that is not the current period's start changes nothing (for ``total`` any value applies)."""
        mono = self._clock.monotonic()
        st = self._state(scope, int(mono // WINDOW), self._clock.wall())
        if scope.limits.budget_period == "total" or (
            period_start is not None and period_start.timestamp() == st.period
        ):
            st.spend = amount
            st.seeded = True

    async def _seed(self, scope: Scope) -> None:
        """Load the scope's spend for the current period from the ledger, once (concurrent admissions wait for
        the one load)."""
        if scope.limits.budget_usd is None or self._loader is None:
            return
        while True:
            st = self._state(scope, int(self._clock.monotonic() // WINDOW), self._clock.wall())
            if st.seeded:
                return
            await once(self._seeding, (scope.ref, st.period), functools.partial(self._load, scope, st.period))

    async def _load(self, scope: Scope, period: float) -> None:
        assert self._loader is not None
        start = as_datetime(period)
        self.rebuild_spend_now(scope, start, await self._loader(scope, start))

    # -- helpers --------------------------------------------------------------------------------------------

    def _state(self, scope: Scope, window: int, wall: float) -> _State:
        st = self._states.get(scope.ref)
        if st is None:
            st = self._states[scope.ref] = _State()
            st.seeded = self._loader is None
        if st.window != window:
            st.window, st.requests, st.tokens = window, 0, 0
        kind = scope.limits.budget_period
        bounds = self._bounds.get(kind)
        if bounds is None or not bounds[0] <= wall < bounds[1]:
            bounds = self._bounds[kind] = period_bounds(kind, wall, self._tz)
        if st.period != bounds[0] or st.period_kind != kind:
            st.period_kind, st.period, st.spend, st.reserved, st.capped = kind, bounds[0], _ZERO, _ZERO, 0
            st.seeded = self._loader is None
        st.period_end = bounds[1]
        return st

    def _expire(self, mono: float) -> None:
        opened, expired = self._open, self._expired
        while opened:
            request_id, held = next(iter(opened.items()))
            if held.deadline > mono:
                break
            del opened[request_id]
            # The request never settled: give back what it held.
            for part in held.parts:
                st = part.state
                if part.period == st.period:
                    st.reserved -= part.cost
                    st.capped -= part.capped
                if part.window == st.window:
                    st.tokens -= part.tokens
                if held.leased:
                    st.in_flight -= 1
                part.cost, part.capped, part.tokens = _ZERO, False, 0
            held.leased = False
            # Kept one more TTL, so that a settle arriving late still counts the real cost once.
            held.deadline += self._ttl
            expired[request_id] = held
        while expired:
            request_id, held = next(iter(expired.items()))
            if held.deadline > mono:
                break
            del expired[request_id]
        fronts = [next(iter(queue.values())).deadline for queue in (opened, expired) if queue]
        self._next_expiry = min(fronts, default=NEVER)

    def _refuse(
        self,
        limit: LimitName,
        scope: Scope,
        wait: float | None,
        reset: datetime | None,
        pairs: tuple[tuple[Scope, _State], ...],
        mono: float,
        window: int,
    ) -> Refused:
        headers = self._headers(pairs, mono, window)
        return Refused(limit, scope.kind, wait, reset, headers, self._budget_remaining(pairs))

    @staticmethod
    def _headers(pairs: tuple[tuple[Scope, _State], ...], mono: float, window: int) -> RateHeaders:
        requests: tuple[int, int, float] | None = None  # (remaining, limit, reset)
        tokens: tuple[int, int, float] | None = None
        for scope, st in pairs:
            rpm, tpm = scope.limits.rpm, scope.limits.tpm
            if rpm is not None:
                hits = st.hits
                while hits and hits[0] <= mono - WINDOW:
                    hits.popleft()
                found = (max(0, rpm - len(hits)), rpm, hits[-1] + WINDOW - mono if hits else 0.0)
                if requests is None or found[:2] < requests[:2]:
                    requests = found
            if tpm is not None:
                found = (max(0, tpm - st.tokens), tpm, (window + 1) * WINDOW - mono)
                if tokens is None or found[:2] < tokens[:2]:
                    tokens = found
        if requests is None and tokens is None:
            return _NO_HEADERS
        return RateHeaders(
            limit_requests=None if requests is None else requests[1],
            remaining_requests=None if requests is None else requests[0],
            reset_requests=None if requests is None else requests[2],
            limit_tokens=None if tokens is None else tokens[1],
            remaining_tokens=None if tokens is None else tokens[0],
            reset_tokens=None if tokens is None else tokens[2],
        )

    @staticmethod
    def _budget_remaining(pairs: tuple[tuple[Scope, _State], ...]) -> Decimal | None:
        least: Decimal | None = None
        for scope, st in pairs:
            budget = scope.limits.budget_usd
            if budget is not None:
                left = max(_ZERO, budget - st.spend - st.reserved)
                if least is None or left < least:
                    least = left
        return least


_NO_HEADERS = RateHeaders()

if TYPE_CHECKING:
    _conforms: type[LimitsStore] = MemoryLimits

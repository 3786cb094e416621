"""The limits engine's vocabulary: scopes and their limits, the typed results of admission, the clock, and the
``LimitsStore`` interface that the in-memory engine implements now and a Redis-backed one can implement later."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

Period = Literal["day", "week", "month", "total"]
LimitName = Literal["requests", "tokens", "parallel", "budget"]
ScopeKind = Literal["key", "team"]


@dataclass(frozen=True, slots=True)
class Limits:
    """``None`` means no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: Decimal | None = None
    budget_period: Period = "total"


@dataclass(frozen=True, slots=True)
class Scope:
    """A key or a team with its current limits; counters belong to ``(kind, id)``, so limits may change."""

    kind: ScopeKind
    id: str
    limits: Limits = field(default_factory=Limits)
    ref: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", (self.kind, self.id))


@dataclass(slots=True)
class RateHeaders:
    """The numbers of OpenAI's ``x-ratelimit-*`` headers, each the tightest of key and team (``None``: no such
    limit applies). Resets are seconds from now. Results (this, ``Admitted``, ``Refused``) are made on every
    request and read-only by convention: not frozen, whose ``__init__`` costs several times as much."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


@dataclass(slots=True)
class Admitted:
    headers: RateHeaders
    budget_remaining: Decimal | None  # after this request's reservation; None when no budget applies


@dataclass(slots=True)
class Refused:
    limit: LimitName
    scope: ScopeKind  # whose limit refused (the key is checked before its team)
    retry_after: float | None  # seconds; None when waiting does not help (a ``total`` budget)
    resets_at: datetime | None  # budgets: when the period ends (None for ``total``)
    headers: RateHeaders
    budget_remaining: Decimal | None


@dataclass(frozen=True, slots=True)
class Usage:
    requests: int  # in the current minute
    tokens: int  # in the current minute window, reservations included
    in_flight: int
    spend: Decimal  # settled in the current budget period
    reserved: Decimal  # open budget reservations in the current period
    remaining: Decimal | None  # budget - spend - reserved; None without a budget
    period_start: datetime | None  # None for ``total``
    resets_at: datetime | None


class LimitsUnavailable(Exception):
    """The shared limits store could not be reached in time (connection refused or lost, a timeout). For an
    ``admit`` the outcome is unknown: the store may or may not have counted the request."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class LimitsStore(Protocol):
    @property
    def settle_failures(self) -> int:
        """Settles sent without waiting that were dropped (the store could not be reached)."""
        ...

    async def admit(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused:
        """Admit a request against its key and team, all or nothing: count it, reserve ``tokens`` (prompt plus
        possible output) and ``cost`` (worst case, USD), take an in-flight lease."""
        ...

    async def settle(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        """Replace the request's reservations with its real tokens and exact cost and end its lease, once; False
        when there is nothing (left) to settle."""
        ...

    def settle_nowait(self, request_id: str, *, tokens: int, cost: Decimal) -> None:
        """``settle`` sent without waiting for it (the request path's way: no task, no future per request). It
        never raises for an unreachable store: such a settle is dropped, counted in ``settle_failures`` and
        logged (the reservation expires after its TTL). ``drain`` waits for those still on their way."""
        ...

    async def drain(self) -> None:
        """Wait for the settles sent without waiting that have not reached the store yet."""
        ...

    async def release(self, request_id: str) -> None:
        """End the request's in-flight lease (idempotent); its reservations stay open until settled or expired."""
        ...

    async def usage(self, scope: Scope) -> Usage: ...

    async def rebuild_spend(self, scope: Scope, period_start: datetime | None, amount: Decimal) -> None:
        """Seed the settled spend of ``scope`` for the period starting at ``period_start`` (``None``: ``total``),
        from the request log."""
        ...

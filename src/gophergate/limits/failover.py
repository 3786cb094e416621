"""A shared limits store with a local fallback for when the shared one cannot be reached.

``mode="deny"`` re-raises ``LimitsUnavailable`` from admission (the gateway answers 503 ``limits_unavailable``);
``mode="allow"`` admits through the fallback instead, whose counters are this process's only, so while degraded
each instance enforces its limits on its own share of the traffic. After a failure, admissions and usage skip the
primary for ``probe_after`` seconds, so that a primary that times out does not cost every request its timeout.

Settles and releases go to the store that admitted the request; one that cannot reach the shared store is logged
and dropped, never raised into the request path (the reservation then expires after its TTL). An admission whose
answer was lost (a timeout after Redis ran the script) is admitted again locally in ``allow`` mode; its shared
reservation expires after the TTL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from gophergate.limits.memory import DEFAULT_RESERVATION_TTL
from gophergate.limits.types import Admitted, LimitsStore, LimitsUnavailable, Refused, Scope, Usage

log = logging.getLogger("gophergate.limits")

WARN_EVERY = 60.0  # seconds between two warnings of the same kind


class FailoverLimits:
    """``primary`` (e.g. ``RedisLimits``) with ``fallback`` (e.g. ``MemoryLimits``) behind it. ``reservation_ttl``
    should be the fallback's: the ids it admitted are remembered for two TTLs (a late settle still counts).
    ``probe_after``: seconds after a failure during which admissions and usage do not ask the primary."""

    def __init__(
        self,
        primary: LimitsStore,
        fallback: LimitsStore,
        *,
        mode: Literal["deny", "allow"],
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        probe_after: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._mode = mode
        self._keep = 2 * reservation_ttl
        self._monotonic = monotonic
        self._local: OrderedDict[str, float] = OrderedDict()  # ids the fallback admitted -> forget after
        self._warned: dict[str, float] = {}
        self._probe_after = probe_after
        self._failed_at: float | None = None  # when the primary last failed
        self._degraded = False
        self._dropped = 0  # settles the primary refused at once (unreachable)
        if hasattr(primary, "on_unreachable"):  # RedisLimits: settles sent without waiting report back here
            primary.on_unreachable = self._settles_unreachable

    @property
    def degraded(self) -> bool:
        """Whether the primary was unreachable at its last call (for readiness checks)."""
        return self._degraded

    async def aclose(self) -> None:
        for store in (self._primary, self._fallback):
            closing = getattr(store, "aclose", None)
            if closing is not None:
                await closing()

    async def admit(
        self, request_id: str, key: Scope, team: Scope | None, *, tokens: int, cost: Decimal
    ) -> Admitted | Refused:
        self._forget_old()
        try:
            self._skip_while_down()
            result = await self._primary.admit(request_id, key, team, tokens=tokens, cost=cost)
        except LimitsUnavailable as exc:
            self._failed(exc)
            if self._mode == "deny":
                self._warn("deny", "limits store unreachable, refusing requests (503): %s", exc)
                raise
            self._warn("allow", "limits store unreachable, admitting against local counters: %s", exc)
            result = await self._fallback.admit(request_id, key, team, tokens=tokens, cost=cost)
            if isinstance(result, Admitted):
                self._local[request_id] = self._monotonic() + self._keep
            return result
        self._recovered()
        return result

    async def settle(self, request_id: str, *, tokens: int, cost: Decimal) -> bool:
        if self._local.pop(request_id, None) is not None:
            return await self._fallback.settle(request_id, tokens=tokens, cost=cost)
        try:
            settled = await self._primary.settle(request_id, tokens=tokens, cost=cost)
        except LimitsUnavailable as exc:
            self._failed(exc)
            self._warn("settle", "limits store unreachable, settle of %s dropped: %s", request_id, exc)
            return False
        self._recovered()
        return settled

    def settle_nowait(self, request_id: str, *, tokens: int, cost: Decimal) -> None:
        if self._local.pop(request_id, None) is not None:
            self._fallback.settle_nowait(request_id, tokens=tokens, cost=cost)
            return
        try:
            self._primary.settle_nowait(request_id, tokens=tokens, cost=cost)
        except LimitsUnavailable as exc:
            self._dropped += 1
            self._failed(exc)
            self._warn("settle", "limits store unreachable, settle of %s dropped: %s", request_id, exc)

    def _settles_unreachable(self, exc: LimitsUnavailable, count: int) -> None:
        self._failed(exc)
        self._warn("settle", "limits store unreachable, %d settle(s) dropped: %s", count, exc)

    @property
    def settle_failures(self) -> int:
        return self._dropped + self._primary.settle_failures + self._fallback.settle_failures

    async def drain(self) -> None:
        await self._primary.drain()
        await self._fallback.drain()

    async def release(self, request_id: str) -> None:
        if request_id in self._local:
            await self._fallback.release(request_id)
            return
        try:
            await self._primary.release(request_id)
        except LimitsUnavailable as exc:
            self._failed(exc)
            self._warn("release", "limits store unreachable, release of %s dropped: %s", request_id, exc)
        else:
            self._recovered()

    async def usage(self, scope: Scope) -> Usage:
        """The primary's usage; in ``allow`` mode the fallback's while the primary is unreachable."""
        try:
            self._skip_while_down()
            usage = await self._primary.usage(scope)
        except LimitsUnavailable as exc:
            self._failed(exc)
            if self._mode == "deny":
                raise
            return await self._fallback.usage(scope)
        self._recovered()
        return usage

    async def rebuild_spend(self, scope: Scope, period_start: datetime | None, amount: Decimal) -> None:
        """Seeds both stores; an unreachable primary raises in ``deny`` mode only."""
        await self._fallback.rebuild_spend(scope, period_start, amount)
        try:
            await self._primary.rebuild_spend(scope, period_start, amount)
        except LimitsUnavailable as exc:
            self._failed(exc)
            if self._mode == "deny":
                raise
        else:
            self._recovered()

    def _skip_while_down(self) -> None:
        if self._failed_at is not None and self._monotonic() - self._failed_at < self._probe_after:
            raise _Resting("the limits store failed less than a probe interval ago")

    def _failed(self, exc: LimitsUnavailable) -> None:
        self._degraded = True
        if not isinstance(exc, _Resting):
            self._failed_at = self._monotonic()

    def _recovered(self) -> None:
        self._degraded = False
        self._failed_at = None

    def _forget_old(self) -> None:
        now = self._monotonic()
        local = self._local
        while local:
            request_id, until = next(iter(local.items()))
            if until > now:
                break
            del local[request_id]

    def _warn(self, kind: str, message: str, *args: object) -> None:
        now = self._monotonic()
        last = self._warned.get(kind)
        if last is None or now - last >= WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)


class _Resting(LimitsUnavailable):
    """The primary is not asked: it failed less than ``probe_after`` seconds ago."""


if TYPE_CHECKING:
    _conforms: type[LimitsStore] = FailoverLimits

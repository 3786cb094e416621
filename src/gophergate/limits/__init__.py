"""Limits per key and team: requests and tokens per minute, requests in flight, budgets in USD.

Enforced on ``/v1`` by ``gateway/governance.py``. The interface is ``LimitsStore`` (``types.py``);
``MemoryLimits`` (``memory.py``) is the exact process-local engine, ``RedisLimits`` (``redis.py``) the same engine
shared by several instances through one Redis, and ``FailoverLimits`` (``failover.py``) puts a local engine behind
a shared one. Semantics, which every
engine keeps:

- **Scopes.** A request is admitted against its key and, when the key has one, its team. Either both admit it
  and both count it, or neither does (all or nothing). Counters belong to the scope's kind and id; the limits
  are passed with every call, so changing them takes effect at once.
- **Checks, in order:** ``requests`` (rpm), ``tokens`` (tpm), ``parallel`` (max_parallel), ``budget``; the key
  before its team within each. A refusal is a ``Refused`` value (never an exception) saying which limit and
  whose, the seconds to wait (``retry_after``), for budgets the period's end (``resets_at``), and the numbers
  for OpenAI's ``x-ratelimit-*`` headers (the tightest of key and team) and the budget remaining.
- **rpm** is a sliding window of exactly 60 s: at most ``rpm`` admissions in any 60 s; an admission stops
  counting exactly 60 s after it was made.
- **tpm** counts tokens in fixed one-minute windows (monotonic clock; in Redis, the wall clock's minutes). At
  admission a request reserves its prompt plus its possible output, capped at what the window has left, and is
  admitted while the window has tokens left; settling replaces the reservation with the real count (when the
  window has already turned, only the excess over the reservation lands in the current one).
- **max_parallel** counts in-flight leases, ended by ``release`` or ``settle`` (once), or by the reservation TTL.
- **Budgets** (``Decimal`` USD, exact) run per calendar ``day``, ``week`` (from Monday) or ``month`` in the
  configured timezone (midnight local time, DST included), or ``total`` (never resets). At admission the
  request reserves its worst-case cost, capped at what remains; it is admitted while the remainder
  (budget - settled - open reservations) is above zero and no capped reservation is still open. ``settle``
  replaces the reservation with the exact cost, once per request id (a second settle changes nothing). A cost
  belongs to the period in which the request was admitted. A reservation never settled expires after the TTL
  (its lease too); a settle arriving within one more TTL still counts the cost. ``rebuild_spend`` seeds the
  settled spend of the current period from the request log.
- **Overshoot bound.** Given each request's exact cost is at most the worst case it reserved for, settled spend
  ends below budget + W, where W is the worst case of the one request admitted when the budget ran out:
  uncapped reservations cover their requests' costs, and while a capped one is open nothing else is admitted,
  so at most one request's excess over its reservation is ever uncovered; once it settles above its
  reservation the remainder is at or below zero and the period admits no more.
  The bound assumes the TTL outlives the longest request: a reservation that expires while its request still
  runs no longer holds the budget back.
"""

from gophergate.limits.failover import FailoverLimits
from gophergate.limits.memory import MemoryLimits
from gophergate.limits.redis import RedisLimits
from gophergate.limits.types import (
    Admitted,
    Clock,
    LimitName,
    Limits,
    LimitsStore,
    LimitsUnavailable,
    Period,
    RateHeaders,
    Refused,
    Scope,
    SystemClock,
    Usage,
)

__all__ = [
    "Admitted",
    "Clock",
    "FailoverLimits",
    "LimitName",
    "Limits",
    "LimitsStore",
    "LimitsUnavailable",
    "MemoryLimits",
    "Period",
    "RateHeaders",
    "RedisLimits",
    "Refused",
    "Scope",
    "SystemClock",
    "Usage",
]

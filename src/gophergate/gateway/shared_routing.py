"""Routing state shared by every process and instance through Redis (``GOPHERGATE_REDIS_URL``): cooldowns, the
probe after a cooldown, and affinity pins.

Nothing here is on a request's path for an open target: whether a target is cooling down stays a dictionary
lookup in the process (``Router.available``). Failures are reported to Redis without waiting; a script counts
them per target over the cluster and, at ``cooldown_after``, starts the cooldown and publishes it; every process
applies what is published (and loads the current cooldowns when it starts or reconnects). The probe after a
cooldown is one ``SET NX`` across the cluster; a success that ends a cooldown publishes the reopening.

Redis unreachable: each process falls back to counting its own failures and probing on its own (a warning at
most once a minute); nothing waits on Redis for longer than the client's short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from itertools import count
from typing import TYPE_CHECKING, Any

from gophergate.cluster.bus import listen

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gophergate.gateway.router import Router, TargetKey

log = logging.getLogger(__name__)

SEP = "\x1f"
PROBE_TTL_S = 60.0  # a probe whose request outlives this lets another request probe
WARN_EVERY_S = 60.0

# KEYS: failures zset, cooldowns hash, channel. ARGV: field, now, window, after, cooldown_s, retry_after, probe (0|1),
# max cooldown, nonce. Returns 1 when a cooldown started or was extended.
_FAIL = """
local field, now = ARGV[1], tonumber(ARGV[2])
local base, retry_after, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8])
local current = redis.call('HGET', KEYS[2], field)
local ends, length = 0, 0
if current then
  local comma = string.find(current, ',', 1, true)
  ends = tonumber(string.sub(current, 1, comma - 1))
  length = tonumber(string.sub(current, comma + 1))
end
local new = nil
if ARGV[7] == '1' then
  new = math.max(math.min(math.max(length * 2, base), cap), math.min(retry_after, cap))
else
  local window = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[1], now, ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    redis.call('DEL', KEYS[1])
    new = math.max(base, math.min(retry_after, cap))
  end
end
if not new then
  return 0
end
if now + new > ends then
  ends = now + new
  length = new
end
redis.call('HSET', KEYS[2], field, string.format('%.3f', ends) .. ',' .. string.format('%.3f', length))
redis.call('PUBLISH', KEYS[3], 'cool' .. '\\31' .. field .. '\\31' .. string.format('%.3f', ends))
return 1
"""

# KEYS: cooldowns hash, probe key, channel. ARGV: field. A success: the target is open again everywhere.
_OPEN = """
redis.call('DEL', KEYS[2])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', KEYS[3], 'open' .. '\\31' .. ARGV[1])
end
return 0
"""


def _field(key: TargetKey) -> str:
    return f"{key[0]}{SEP}{key[1]}"


class SharedRouting:
    """Attached to a ``Router`` (``router.shared``); ``start`` runs the subscriber until ``close``."""

    def __init__(self, client: Redis, prefix: str, router: Router) -> None:
        self.client = client
        self.router = router
        self.prefix = prefix
        self.channel = prefix + "events"
        self.cooldowns = prefix + "cooldowns"
        self._fail = client.register_script(_FAIL)
        self._open = client.register_script(_OPEN)
        self._nonce = f"{uuid.uuid4().hex[:12]}:"
        self._counter = count()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._warned = 0.0
        self.connected = False
        self.errors = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe(), name="gophergate-routing-subscriber")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def _unreachable(self, exc: BaseException) -> None:
        self.errors += 1
        self.connected = False
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("routing state: Redis is unreachable (%s); cooldowns are counted per process meanwhile", exc)

    async def _subscribe(self) -> None:
        await listen(self.client, self.channel, self._apply, self._subscribed, self._unreachable)

    async def _subscribed(self) -> None:
        await self._load()
        self.connected = True

    async def _load(self) -> None:
        """The cooldowns in force (a process that starts, or reconnects, missed their messages)."""
        current = await self.client.hgetall(self.cooldowns)
        now = time.time()
        for raw_field, raw_value in current.items():
            field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            ends = float(value.split(",", 1)[0])
            if ends > now:
                provider, _, model = field.partition(SEP)
                self.router.apply_cooldown((provider, model), ends - now)

    def _apply(self, data: Any) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        parts = text.split(SEP)
        if parts[0] == "cool" and len(parts) == 4:
            self.router.apply_cooldown((parts[1], parts[2]), float(parts[3]) - time.time())
        elif parts[0] == "open" and len(parts) == 3:
            self.router.apply_open((parts[1], parts[2]))

    # -- reports (never waited on by a request) -----------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def report_failure(self, key: TargetKey, retry_after: float | None, probe: bool) -> None:
        defaults = self.router.defaults
        field = _field(key)
        args = [
            field,
            f"{time.time():.3f}",
            "60",
            str(defaults.cooldown_after),
            str(defaults.cooldown_s),
            str(retry_after or 0.0),
            "1" if probe else "0",
            "600",
            f"{self._nonce}{next(self._counter)}",
        ]
        self._spawn(self._call(self._fail, [self.prefix + "failures:" + field, self.cooldowns, self.channel], args))

    def report_open(self, key: TargetKey) -> None:
        field = _field(key)
        self._spawn(self._call(self._open, [self.cooldowns, self.prefix + "probe:" + field, self.channel], [field]))

    async def _call(self, script: Any, keys: list[str], args: list[str]) -> None:
        try:
            await script(keys=keys, args=args)
        except Exception as exc:
            self._unreachable(exc)

    async def acquire_probe(self, key: TargetKey) -> bool:
        """This process's request may probe ``key`` (no other process or instance is probing it)."""
        try:
            name = self.prefix + "probe:" + _field(key)
            got = await self.client.set(name, self._nonce, nx=True, px=int(PROBE_TTL_S * 1000))
        except Exception as exc:
            self._unreachable(exc)
            return True  # without Redis, each process probes on its own
        return bool(got)

    # -- affinity -----------------------------------------------------------------------------------------------
    async def pinned(self, pin: str) -> TargetKey | None:
        try:
            value = await self.client.get(self.prefix + "pin:" + pin)
        except Exception as exc:
            self._unreachable(exc)
            return self.router.pinned(pin)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        provider, _, model = text.partition(SEP)
        return provider, model

    def pin(self, pin: str, key: TargetKey, ttl: float) -> None:
        self.router.pin(pin, key, ttl)
        self._spawn(self._set_pin(pin, key, ttl))

    async def _set_pin(self, pin: str, key: TargetKey, ttl: float) -> None:
        try:
            await self.client.set(self.prefix + "pin:" + pin, _field(key), px=int(ttl * 1000))
        except Exception as exc:
            self._unreachable(exc)

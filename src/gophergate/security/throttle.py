"""Login throttling: failed logins per username and client IP together, and per client IP, in a sliding window.

Never per username alone: then anyone could lock ``admin`` out by failing five times. A correct password from an
address that has not failed goes through, however often others failed for that name. Checked before the password
(so a throttled attempt costs no bcrypt work); in memory, per process, or with ``GOPHERGATE_REDIS_URL`` in Redis,
counted across every worker and instance (``SharedLoginThrottle``; this process's memory when Redis fails)."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

WINDOW_SECONDS = 15 * 60.0


class LoginThrottle:
    MAX_KEYS = 100_000

    def __init__(self, max_failures: int, window_seconds: float = WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}

    @staticmethod
    def _pair(username: str, ip: str | None) -> str:
        return f"user:{username.strip().lower()}@{ip or ''}"

    @classmethod
    def _keys(cls, username: str, ip: str | None) -> tuple[str, ...]:
        pair = cls._pair(username, ip)
        return (pair, "ip:" + ip) if ip else (pair,)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, username: str, ip: str | None, now: float | None = None) -> int | None:
        """Seconds until another attempt is allowed, or None when it is allowed now."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in self._keys(username, ip):
            times = self._recent(key, now)
            if times is not None and len(times) >= self.max_failures:
                # Allowed again once enough of the failures have left the window.
                wait = max(wait, times[len(times) - self.max_failures] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failure(self, username: str, ip: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._failures) >= self.MAX_KEYS:
            self._failures.clear()  # a flood of distinct names: start over rather than grow without bound
        for key in self._keys(username, ip):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            if len(times) > self.max_failures * 4:
                times.popleft()

    def success(self, username: str, ip: str | None) -> None:
        self._failures.pop(self._pair(username, ip), None)

    # The interface the login route uses (SharedLoginThrottle's, which waits on Redis).
    async def check(self, username: str, ip: str | None) -> int | None:
        return self.retry_after(username, ip)

    async def failed(self, username: str, ip: str | None) -> None:
        self.failure(username, ip)

    async def succeeded(self, username: str, ip: str | None) -> None:
        self.success(username, ip)

    async def close(self) -> None:
        return None


# KEYS: the throttle's keys (pair, then ip); ARGV: max failures, window in ms. Failures are a sorted set of times
# (Redis's clock: one for every instance) per key; returns the ms until another attempt is allowed (0: now).
_CHECK = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n >= max then
    local oldest = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
return wait
"""
_FAIL = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local keep, window = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, now .. ':' .. t[2] .. ':' .. ARGV[3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
  redis.call('PEXPIRE', key, window)
end
return 0
"""


class SharedLoginThrottle:
    """The same rules in Redis, so that failures count across workers and instances: an attacker spreading guesses
    over a cluster's instances meets one limit. Redis unreachable: this process's own throttle answers (a warning
    once a minute), so logins never wait on Redis for longer than the client's short timeout."""

    WARN_EVERY = 60.0

    def __init__(self, redis: Any, prefix: str, local: LoginThrottle) -> None:
        self._redis = redis
        self._prefix = prefix
        self._local = local
        self._check = redis.register_script(_CHECK)
        self._fail = redis.register_script(_FAIL)
        self._warned = -math.inf

    @property
    def max_failures(self) -> int:
        return self._local.max_failures

    def _keys(self, username: str, ip: str | None) -> list[str]:
        return [self._prefix + key for key in LoginThrottle._keys(username, ip)]

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= self.WARN_EVERY:
            self._warned = now
            log.warning("login throttling falls back to this process: Redis is unavailable (%s)", exc)

    async def check(self, username: str, ip: str | None) -> int | None:
        local = self._local.retry_after(username, ip)
        try:
            wait_ms = int(
                await self._check(self._keys(username, ip), [self._local.max_failures, int(self._local.window * 1000)])
            )
        except Exception as exc:
            self._unavailable(exc)
            return local
        shared = max(1, math.ceil(wait_ms / 1000)) if wait_ms > 0 else None
        return shared if local is None else max(local, shared or 0)

    async def failed(self, username: str, ip: str | None) -> None:
        self._local.failure(username, ip)
        keep, window = self._local.max_failures * 4, int(self._local.window * 1000)
        try:
            await self._fail(self._keys(username, ip), [keep, window, secrets.token_hex(4)])
        except Exception as exc:
            self._unavailable(exc)

    async def succeeded(self, username: str, ip: str | None) -> None:
        self._local.success(username, ip)
        try:
            await self._redis.delete(self._keys(username, ip)[0])
        except Exception as exc:
            self._unavailable(exc)

    async def close(self) -> None:
        await self._redis.aclose()

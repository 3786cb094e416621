"""Login throttling: failed logins per username and client IP together, and per client IP, in a sliding window.

Never per username alone: then anyone could lock ``admin`` out by failing five times. A correct password from an
address that has not failed goes through, however often others failed for that name. Checked before the password
(so a throttled attempt costs no bcrypt work); in memory, per process."""

from __future__ import annotations

import math
import time
from collections import deque

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

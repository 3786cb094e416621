"""Passive provider health: the recent error rate and median latency per provider, fed by every /v1 record.

``observe`` is O(1) (one append to a bounded deque); the statistics are computed when someone reads them."""

from __future__ import annotations

import time
from collections import deque
from typing import TypedDict

from gophergate.core.record import RequestRecord

WINDOW = 256  # the last N requests per provider
MAX_AGE_SECONDS = 300.0  # and none older than this


class HealthStats(TypedDict):
    name: str
    error_rate: float | None
    p50_ms: float | None
    requests: int


class ProviderHealth:
    def __init__(self, window: int = WINDOW, max_age: float = MAX_AGE_SECONDS) -> None:
        self._window = window
        self._max_age = max_age
        self._samples: dict[str, deque[tuple[float, bool, float]]] = {}

    def observe(self, record: RequestRecord) -> None:
        provider = record.provider
        if provider is None or record.status == 499:  # a client that went away says nothing about the upstream
            return
        samples = self._samples.get(provider)
        if samples is None:
            samples = self._samples[provider] = deque(maxlen=self._window)
        # Errors are the upstream's: 5xx (unreachable, broken stream, timeout) and 429 (rate limited).
        failed = record.status >= 500 or record.status == 429
        samples.append((time.monotonic(), failed, record.latency_ms))

    def stats(self, provider: str) -> HealthStats:
        cutoff = time.monotonic() - self._max_age
        recent = [s for s in self._samples.get(provider, ()) if s[0] >= cutoff]
        if not recent:
            return {"name": provider, "error_rate": None, "p50_ms": None, "requests": 0}
        latencies = sorted(s[2] for s in recent)
        errors = sum(1 for s in recent if s[1])
        return {
            "name": provider,
            "error_rate": round(errors / len(recent), 4),
            "p50_ms": round(latencies[(len(latencies) - 1) // 2], 3),  # the lower median
            "requests": len(recent),
        }

"""Passive provider health: the recent error rate and median latency per provider, fed by every /v1 record.

``observe`` is O(1) (one append to a bounded deque); the statistics are computed when someone reads them. In a
cluster (``GOPHERGATE_REDIS_URL``) every process sends its recent samples with the live hub's window (``snapshot``,
every 2 s) and ``stats`` merges the fresh ones of the other processes (``remember``) with its own."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TypedDict

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
        # Other processes' recent samples: sender -> (received at, provider -> (errors, latencies)).
        self._remote: dict[str, tuple[float, dict[str, tuple[int, list[float]]]]] = {}
        self.remote_max_age = 10.0

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

    def _recent(self, provider: str) -> list[tuple[float, bool, float]]:
        cutoff = time.monotonic() - self._max_age
        return [s for s in self._samples.get(provider, ()) if s[0] >= cutoff]

    def snapshot(self) -> dict[str, list[Any]]:
        """This process's recent samples per provider, JSON-ready: ``[errors, [latency, ...]]``."""
        out: dict[str, list[Any]] = {}
        for provider in self._samples:
            recent = self._recent(provider)
            if recent:
                out[provider] = [sum(1 for s in recent if s[1]), [round(s[2], 3) for s in recent]]
        return out

    def remember(self, sender: str, snapshot: Any) -> None:
        """Another process's ``snapshot`` (malformed parts are ignored: it came over the network)."""
        parsed: dict[str, tuple[int, list[float]]] = {}
        if isinstance(snapshot, dict):
            for provider, value in snapshot.items():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list):
                    try:
                        parsed[str(provider)] = (int(value[0]), [float(v) for v in value[1][: self._window]])
                    except (TypeError, ValueError):
                        continue
        now = time.monotonic()
        self._remote[sender] = (now, parsed)
        for gone in [s for s, (at, _) in self._remote.items() if now - at > self.remote_max_age]:
            del self._remote[gone]

    def stats(self, provider: str) -> HealthStats:
        recent = self._recent(provider)
        errors = sum(1 for s in recent if s[1])
        latencies = [s[2] for s in recent]
        now = time.monotonic()
        for at, per_provider in self._remote.values():
            theirs = per_provider.get(provider) if now - at <= self.remote_max_age else None
            if theirs is not None:
                errors += theirs[0]
                latencies.extend(theirs[1])
        if not latencies:
            return {"name": provider, "error_rate": None, "p50_ms": None, "requests": 0}
        latencies.sort()
        return {
            "name": provider,
            "error_rate": round(errors / len(latencies), 4),
            "p50_ms": round(latencies[(len(latencies) - 1) // 2], 3),  # the lower median
            "requests": len(latencies),
        }

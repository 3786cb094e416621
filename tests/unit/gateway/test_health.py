from __future__ import annotations

import time

from gophergate.core.record import RequestRecord
from gophergate.gateway.health import ProviderHealth


def _record(provider: str | None, status: int, latency: float) -> RequestRecord:
    record = RequestRecord("r", "chat.completions", time.perf_counter(), provider=provider, status=status)
    record.latency_ms = latency
    return record


def test_error_rate_and_median_latency_over_the_recent_window() -> None:
    health = ProviderHealth(window=4)
    for status, latency in ((200, 10.0), (502, 50.0), (200, 30.0), (429, 20.0), (200, 40.0)):
        health.observe(_record("openai", status, latency))
    stats = health.stats("openai")
    assert stats["requests"] == 4  # the oldest fell out of the window
    assert stats["error_rate"] == 0.5 and stats["p50_ms"] == 30.0


def test_client_disconnects_and_unrouted_requests_are_not_counted() -> None:
    health = ProviderHealth()
    health.observe(_record("openai", 499, 5.0))
    health.observe(_record(None, 401, 1.0))
    assert health.stats("openai") == {"name": "openai", "error_rate": None, "p50_ms": None, "requests": 0}

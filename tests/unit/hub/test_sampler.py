from __future__ import annotations

import time
from decimal import Decimal

from gophergate.core.record import RequestRecord
from gophergate.hub.sampler import Sampler, p95


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(status: int = 200, latency: float = 10.0, cost: str | None = "0.001", tokens: int = 30) -> RequestRecord:
    return RequestRecord(
        request_id="r",
        endpoint="chat.completions",
        started=time.perf_counter(),
        status=status,
        prompt_tokens=tokens - 10,
        completion_tokens=10,
        cost_usd=None if cost is None else Decimal(cost),
        latency_ms=latency,
    )


def _sampler(clock: Clock, depth: int = 0, **kwargs: object) -> Sampler:
    return Sampler(lambda: depth, clock=clock, load=lambda: (12.5, 40.0), **kwargs)  # type: ignore[arg-type]


def test_rates_cost_errors_and_p95_over_the_window() -> None:
    clock = Clock()
    sampler = _sampler(clock, depth=3)
    sampler.observe([_record(latency=float(i)) for i in range(1, 19)])
    clock.now += 2
    sampler.observe([_record(status=500, cost=None, tokens=10, latency=100.0), _record(latency=19.0)])
    data = sampler.sample()
    assert data["requests_per_s"] == 2.0  # 20 requests in the 10 s window
    assert data["tokens_per_s"] == (19 * 30 + 10) / 10
    assert data["cost_per_min_usd"] == "0.114"  # 19 x 0.001 per 10 s, exactly, as text
    assert data["error_rate"] == 0.05
    assert data["p95_ms"] == 19.0  # nearest rank: the 19th of 20
    assert data["cpu_percent"] == 12.5 and data["memory_percent"] == 40.0
    assert data["queue_depth"] == 3
    assert data["ts"].endswith("Z")


def test_old_buckets_leave_the_window() -> None:
    clock = Clock()
    sampler = _sampler(clock)
    sampler.observe([_record(status=500)])
    clock.now += 12
    sampler.observe([_record()])
    data = sampler.sample()
    assert data["requests_per_s"] == 0.1
    assert data["error_rate"] == 0.0
    clock.now += 30
    data = sampler.sample()
    assert data["requests_per_s"] == 0.0 and data["p95_ms"] is None and data["cost_per_min_usd"] == "0"


def test_latency_samples_per_bucket_are_bounded() -> None:
    clock = Clock()
    sampler = _sampler(clock, max_latencies=50)
    sampler.observe([_record(latency=float(i % 100)) for i in range(10_000)])
    assert len(sampler._buckets[-1].latencies) == 50
    data = sampler.sample()
    assert data["requests_per_s"] == 1000.0  # every request still counted
    assert 0.0 <= data["p95_ms"] <= 99.0


def test_p95_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def _attempt(n: int, final: bool, **kwargs: object) -> RequestRecord:
    record = _record(**kwargs)  # type: ignore[arg-type]
    record.attempt, record.final = n, final
    record.price_unknown = record.cost_usd is None and record.prompt_tokens > 0
    return record


def test_a_retried_request_counts_once_with_the_tokens_and_cost_of_every_attempt() -> None:
    clock = Clock()
    sampler = _sampler(clock)
    sampler.observe(
        [
            _attempt(1, False, status=429, latency=5.0, cost="0", tokens=10),
            _attempt(2, False, status=503, latency=7.0, cost=None),  # cut short after some tokens: unpriced
            _attempt(3, True, latency=50.0, cost="0.002"),
        ]
    )
    data = sampler.sample()
    assert data["requests_per_s"] == 0.1 and data["error_rate"] == 0.0 and data["p95_ms"] == 50.0
    assert data["tokens_per_s"] == (10 + 30 + 30) / 10
    assert data["cost_per_min_usd"] == "0.012" and data["unpriced_requests"] == 1  # 0.002 per 10 s is known
    only_attempts = _sampler(clock)
    only_attempts.observe([_attempt(1, False, status=503, cost=None)])  # its final row is not in yet
    data = only_attempts.sample()
    assert data["requests_per_s"] == 0.0 and data["tokens_per_s"] == 3.0
    assert data["cost_per_min_usd"] is None and data["unpriced_requests"] == 1  # unknown, never $0

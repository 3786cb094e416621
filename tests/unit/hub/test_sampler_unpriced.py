"""The live cost per minute never reads $0 for requests without a known price: it counts them beside the cost."""

from __future__ import annotations

import time
from decimal import Decimal

from gophergate.core.record import RequestRecord
from gophergate.hub.sampler import Sampler


def _record(cost: str | None) -> RequestRecord:
    return RequestRecord(
        request_id="r",
        endpoint="chat.completions",
        started=time.perf_counter(),
        prompt_tokens=20,
        completion_tokens=10,
        cost_usd=None if cost is None else Decimal(cost),
        price_unknown=cost is None,
        latency_ms=5.0,
    )


def _sampler() -> Sampler:
    return Sampler(lambda: 0, clock=lambda: 1000.0, load=lambda: (0.0, 0.0))


def test_unpriced_requests_are_counted_beside_the_cost_per_minute() -> None:
    sampler = _sampler()
    sampler.observe([_record("0.001"), _record(None), _record(None)])
    data = sampler.sample()
    assert data["cost_per_min_usd"] == "0.006" and data["unpriced_requests"] == 2


def test_a_window_of_only_unpriced_requests_has_no_cost_not_zero() -> None:
    sampler = _sampler()
    sampler.observe([_record(None), _record(None)])
    data = sampler.sample()
    assert data["cost_per_min_usd"] is None and data["unpriced_requests"] == 2
    idle = _sampler().sample()
    assert idle["cost_per_min_usd"] == "0" and idle["unpriced_requests"] == 0  # no request: nothing unknown

"""`python -m bench.normalize`: what fitting a record to its columns costs on the request path, per record.

``Recorder.submit`` runs ``normalize`` on every record; this times it on a typical record (every value already
fits: the path every request takes) and on one whose values all need fixing (rare: odd upstream values).
"""

from __future__ import annotations

import time
import timeit
from decimal import Decimal
from typing import Any

from gophergate.core.record import RequestRecord
from gophergate.recorder.normalize import normalize

ROUNDS = 200_000


def typical() -> RequestRecord:
    return RequestRecord(
        request_id="req_0193a5b2c4d10123456789ab",
        endpoint="chat.completions",
        started=time.perf_counter(),
        status=200,
        client_key_id=3,
        requested_model="gpt-4o-mini",
        provider="openai",
        model="gpt-4o-mini",
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=20,
        cost_usd=Decimal("0.00012"),
        latency_ms=1.5,
        ttfb_ms=1.0,
        upstream_ms=1.0,
        overhead_ms=0.5,
        cost_input_usd=Decimal("0.0001"),
        cost_output_usd=Decimal("0.00002"),
        price_source="models.dev",
    )


def odd() -> RequestRecord:
    record: Any = typical()
    record.finish_reason = 5
    record.model = "m" * 1000
    record.prompt_tokens = "12"
    record.latency_ms = float("nan")
    return record  # type: ignore[no-any-return]


def main() -> None:
    record = typical()
    seconds = timeit.timeit(lambda: normalize(record), number=ROUNDS)
    print(f"normalize, every value fits:   {seconds / ROUNDS * 1e6:.2f} us a record")
    records = [odd() for _ in range(ROUNDS // 10)]
    it = iter(records)
    seconds = timeit.timeit(lambda: normalize(next(it)), number=len(records))
    print(f"normalize, four values to fix: {seconds / len(records) * 1e6:.2f} us a record")


if __name__ == "__main__":
    main()

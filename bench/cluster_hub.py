"""`python -m bench.cluster_hub`: what the live hub's cluster side costs per request log row (printed, not asserted).

The hub runs on the log writer's commit, off the request path; this measures the CPU it takes there:

- **alone**: a committed batch of 64 rows with no dashboard connected and no cluster (the sampler's count only);
- **cluster**: the same batch with the cluster bus (``GOPHERGATE_REDIS_URL``): each row encoded once as its
  ``request`` message, the batch joined and queued for Redis; then the whole cost with the real bus publishing to
  the Redis at ``GOPHERGATE_TEST_REDIS_URL`` (process CPU time over many batches, the pipelines included);
- **receiving** another process's batch: with no dashboard connected (dropped undecoded) and with one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
import timeit
import uuid
from decimal import Decimal
from typing import Any

from gophergate.cluster.bus import ClusterBus
from gophergate.core.record import RequestRecord
from gophergate.hub.cluster import ClusterLive
from gophergate.hub.hub import Hub
from gophergate.hub.sampler import Sampler
from gophergate.limits.redis import connect

BATCH = 64


def _records() -> list[RequestRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        RequestRecord(
            request_id=f"req-{uuid.uuid4().hex}",
            endpoint="chat.completions",
            started=time.perf_counter(),
            created_at=now,
            client_key_id=1,
            requested_model="gpt-4o-mini",
            provider="openai",
            model="gpt-4o-mini",
            status=200,
            prompt_tokens=120,
            completion_tokens=40,
            cost_usd=Decimal("0.0000420"),
            latency_ms=12.5 + i,
            finish_reason="stop",
        )
        for i in range(BATCH)
    ]


class _User:
    id = 1
    username = "bench"


class _NullBus:
    connected = True
    dropped = 0

    def on(self, topic: str, handler: Any) -> None:
        pass

    def publish(self, topic: str, payload: bytes) -> bool:
        return True


def _per_row(seconds: float, batches: int) -> float:
    return seconds / (batches * BATCH) * 1e6


async def main() -> None:
    records = _records()
    n = 2000
    alone = Hub(Sampler(lambda: 0), key_names={1: "bench"})
    t_alone = min(timeit.repeat(lambda: alone.publish_committed(records), number=n, repeat=3))
    queued = Hub(Sampler(lambda: 0), key_names={1: "bench"}, cluster=ClusterLive(_NullBus(), "bench"))  # type: ignore[arg-type]
    t_queued = min(timeit.repeat(lambda: queued.publish_committed(records), number=n, repeat=3))
    print(f"rows per batch: {BATCH}")
    print(f"alone (no dashboard, no cluster):     {_per_row(t_alone, n):6.2f} us per row")
    print(f"cluster, encode + queue:              {_per_row(t_queued, n):6.2f} us per row")

    url = os.environ.get("GOPHERGATE_TEST_REDIS_URL")
    if url:
        bus = ClusterBus(connect(url), f"gg-bench-{uuid.uuid4().hex[:6]}:", "bench", max_pending=100_000)
        bus.start()
        hub = Hub(Sampler(lambda: 0), key_names={1: "bench"}, cluster=ClusterLive(bus, "bench"))
        await asyncio.sleep(0.2)
        batches = 1000
        cpu0 = time.process_time()
        for _ in range(batches):
            hub.publish_committed(records)
            await asyncio.sleep(0)
        await bus.flush(30.0)
        cpu = time.process_time() - cpu0
        print(
            f"cluster, published to Redis (CPU):    {_per_row(cpu, batches):6.2f} us per row "
            f"({bus.published} messages, {bus.dropped} dropped)"
        )
        await bus.close()

    lines = "\n".join(f'{{"type":"request","data":{{"request_id":"{r.request_id}"}}}}' for r in records).encode()
    receiver = Hub(Sampler(lambda: 0), cluster=ClusterLive(_NullBus(), "bench"))  # type: ignore[arg-type]
    cluster = receiver.cluster
    assert cluster is not None
    t_idle = min(timeit.repeat(lambda: cluster._on_rows("x", lines), number=n, repeat=3))
    conn = receiver.connect(_User())
    assert conn is not None
    conn.max_queue = 10**9

    def watched() -> None:
        cluster._on_rows("x", lines)
        conn.queue.clear()

    t_watched = min(timeit.repeat(watched, number=n, repeat=3))
    print(f"receiving, no dashboard here:         {_per_row(t_idle, n):6.2f} us per row")
    print(f"receiving, one dashboard here:        {_per_row(t_watched, n):6.2f} us per row")
    print(f"python {sys.version.split()[0]}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    asyncio.run(main())

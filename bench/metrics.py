"""`python -m bench.metrics`: what the Prometheus metrics cost on the request path, per request.

``Metering`` hands every finished record to ``Metrics.observe`` (``telemetry/metrics.py``); this times it on a
typical streamed chat record, then times the once-a-second ``flush`` that folds the tally into prometheus_client
(off the request path), in one process and with the multiprocess files. For comparison it times what calling
prometheus_client for each request would cost (``inc``/``observe`` on the same series, children cached), which
the tally replaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from gophergate.core.record import RequestRecord

ROUNDS = 200_000


class _Served:
    def serves(self, provider: str, model: str | None = None) -> bool:
        return True


def typical(final: bool = True) -> RequestRecord:
    return RequestRecord(
        request_id="req_0193a5b2c4d10123456789ab",
        endpoint="chat.completions",
        started=time.perf_counter(),
        status=200,
        provider="openai",
        model="gpt-4o-mini",
        stream=True,
        prompt_tokens=120,
        completion_tokens=300,
        cache_read_tokens=64,
        cost_usd=Decimal("0.000213"),
        latency_ms=812.5,
        ttfb_ms=230.0,
        overhead_ms=0.41,
        final=final,
    )


def time_observe(multiprocess_dir: str | None) -> None:
    from gophergate.telemetry.metrics import Metrics

    metrics = Metrics(multiprocess_dir)
    metrics.attach(_Served(), None, None, None, None)  # type: ignore[arg-type]
    record = typical()
    observe = metrics.observe
    start = time.perf_counter()
    for _ in range(ROUNDS):
        observe(record)
    per_request = (time.perf_counter() - start) / ROUNDS * 1e6
    kind = "multiprocess files" if multiprocess_dir else "one process"
    print(f"Metrics.observe ({kind}):          {per_request:.2f} us a request")
    flushes = 200
    start = time.perf_counter()
    for index in range(flushes):
        for endpoint in ("chat.completions", "responses", "messages", "embeddings"):
            record.endpoint = endpoint
            record.model = f"model-{index % 8}"
            observe(record)
        metrics.flush()
    per_flush = (time.perf_counter() - start) / flushes * 1e6
    print(f"Metrics.flush, 4 series changed ({kind}): {per_flush:.0f} us a flush (once a second)")


def time_prometheus_client(multiprocess_dir: str | None) -> None:
    from prometheus_client import Counter, Histogram

    labels = ("chat.completions", "openai", "gpt-4o-mini")
    requests = Counter("r", "r", ("e", "p", "m", "s"), registry=None).labels(*labels, "2xx")
    duration = Histogram("d", "d", ("e", "p", "m"), registry=None).labels(*labels)
    ttft = Histogram("t", "t", ("e", "p", "m"), registry=None).labels(*labels)
    overhead = Histogram("o", "o", ("e",), registry=None).labels(labels[0])
    tokens = Counter("k", "k", ("p", "m", "t"), registry=None)
    prompt, completion, cache_read = (tokens.labels(*labels[1:], kind) for kind in ("p", "c", "cr"))
    cost = Counter("c", "c", ("p", "m"), registry=None).labels(*labels[1:])
    start = time.perf_counter()
    for _ in range(ROUNDS // 4):
        requests.inc()
        duration.observe(0.8125)
        ttft.observe(0.23)
        overhead.observe(0.00041)
        prompt.inc(120)
        completion.inc(300)
        cache_read.inc(64)
        cost.inc(0.000213)
    per_request = (time.perf_counter() - start) / (ROUNDS // 4) * 1e6
    kind = "multiprocess files" if multiprocess_dir else "one process"
    print(f"prometheus_client per request ({kind}): {per_request:.2f} us a request (not used: for comparison)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--multiprocess":  # the child run below, with its directory set
        time_observe(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        time_prometheus_client(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return
    time_observe(None)
    time_prometheus_client(None)
    with tempfile.TemporaryDirectory() as directory:
        # prometheus_client picks its value store when imported: a fresh process, the variable set first.
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        subprocess.run([sys.executable, "-m", "bench.metrics", "--multiprocess"], env=env, check=True)


if __name__ == "__main__":
    main()

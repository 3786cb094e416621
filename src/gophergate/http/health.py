"""Liveness and readiness, unauthenticated and never logged as /v1 traffic."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gophergate.http.io import Scope, base_headers, request_id, send_bytes
from gophergate.runtime import Runtime


async def healthz(scope: Scope, send: Any) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', base_headers(request_id(scope)))


async def readyz(rt: Runtime, scope: Scope, send: Any) -> None:
    database = await rt.database_ok()
    writer = rt.recorder.running
    ready = database and writer
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {"database": database, "log_writer": writer},
        "details": {
            "log_queue_depth": rt.recorder.depth,
            "log_rows_written": rt.recorder.written,
            "log_failed_batches": rt.recorder.failed_batches,
            "log_last_commit_age_s": (
                None if rt.recorder.last_commit is None else round(time.time() - rt.recorder.last_commit, 3)
            ),
            "providers": sorted(rt.providers),
            "registry": rt.registry.status(),
            "price_source": rt.resolver.book.source,
            "price_unknown": {
                "requests": rt.recorder.price_unknown,
                "models": dict(sorted(rt.recorder.price_unknown_models.items())),
            },
        },
    }
    await send_bytes(send, 200 if ready else 503, orjson.dumps(body), base_headers(request_id(scope)))


async def metrics(rt: Runtime, scope: Scope, send: Any) -> None:
    """Prometheus text exposition of this process's counters (no secrets, no per-client labels)."""
    rec = rt.recorder
    registry_age = rt.registry.age_seconds
    lines = [
        "# HELP gophergate_log_rows_written_total Request log rows written by this process.",
        "# TYPE gophergate_log_rows_written_total counter",
        f"gophergate_log_rows_written_total {rec.written}",
        "# HELP gophergate_log_queue_depth Request log rows waiting to be written.",
        "# TYPE gophergate_log_queue_depth gauge",
        f"gophergate_log_queue_depth {rec.depth}",
        "# HELP gophergate_log_failed_batches_total Log writer batches that failed and were retried.",
        "# TYPE gophergate_log_failed_batches_total counter",
        f"gophergate_log_failed_batches_total {rec.failed_batches}",
        "# HELP gophergate_cost_usd_total Cost of the requests logged by this process, in USD.",
        "# TYPE gophergate_cost_usd_total counter",
        f"gophergate_cost_usd_total {format(rec.cost_total, 'f')}",
        "# HELP gophergate_price_unknown_requests_total Requests with tokens but no known price (cost NULL).",
        "# TYPE gophergate_price_unknown_requests_total counter",
        f"gophergate_price_unknown_requests_total {rec.price_unknown}",
        "# HELP gophergate_registry_age_seconds Seconds since the model registry was last checked.",
        "# TYPE gophergate_registry_age_seconds gauge",
        f"gophergate_registry_age_seconds {registry_age if registry_age is not None else 'NaN'}",
        "# HELP gophergate_registry_models Models in the loaded registry copy (0: offline prices).",
        "# TYPE gophergate_registry_models gauge",
        f"gophergate_registry_models {rt.registry.catalog.model_count if rt.registry.catalog else 0}",
    ]
    body = ("\n".join(lines) + "\n").encode()
    await send_bytes(send, 200, body, base_headers(request_id(scope), b"text/plain; version=0.0.4"))

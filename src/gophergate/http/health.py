"""Liveness and readiness, unauthenticated and never logged as /v1 traffic."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gophergate.core.asgi import Scope
from gophergate.http.io import base_headers, request_id, send_bytes
from gophergate.runtime import Runtime


async def healthz(scope: Scope, send: Any) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', base_headers(request_id(scope)))


async def readyz(rt: Runtime, scope: Scope, send: Any) -> None:
    database = await rt.database_ok()
    rec = rt.recorder
    stuck = rt.metering.not_ready
    writer = stuck is None
    ready = database and writer
    reasons = ([] if database else ["the database does not answer"]) + ([] if stuck is None else [stuck])
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {"database": database, "log_writer": writer},
        "details": {
            "not_ready_reasons": reasons,
            "log_queue_depth": rt.metering.depth,
            "log_rows_written": rec.written,
            "log_failed_batches": rec.failed_batches,
            "log_consecutive_failures": rec.consecutive_failures,
            "log_last_error": rec.last_error,
            "log_dead_lettered_rows": rec.dead_lettered,
            "log_writer_restarts": rec.restarts + rt.metering.restarts,
            "log_estimate_failures": rt.metering.estimate_failures,
            "log_last_commit_age_s": (
                None if rt.recorder.last_commit is None else round(time.time() - rt.recorder.last_commit, 3)
            ),
            "limits": rt.governance.status(),
            "providers": sorted(rt.routing.providers),
            "registry": rt.registry.status(),
            "price_source": rt.routing.resolver.book.source,
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
        f"gophergate_log_queue_depth {rt.metering.depth}",
        "# HELP gophergate_log_failed_batches_total Log writer batches that failed and were retried.",
        "# TYPE gophergate_log_failed_batches_total counter",
        f"gophergate_log_failed_batches_total {rec.failed_batches}",
        "# HELP gophergate_log_dead_letter_rows_total Request log rows refused by the database (dead-letter file).",
        "# TYPE gophergate_log_dead_letter_rows_total counter",
        f"gophergate_log_dead_letter_rows_total {rec.dead_lettered}",
        "# HELP gophergate_log_consecutive_failures Failed log write attempts since the last commit.",
        "# TYPE gophergate_log_consecutive_failures gauge",
        f"gophergate_log_consecutive_failures {rec.consecutive_failures}",
        "# HELP gophergate_log_writer_restarts_total Log writer tasks restarted after an unexpected exception.",
        "# TYPE gophergate_log_writer_restarts_total counter",
        f"gophergate_log_writer_restarts_total {rec.restarts + rt.metering.restarts}",
        "# HELP gophergate_log_ready Whether the request log is making progress (0: /readyz says not ready).",
        "# TYPE gophergate_log_ready gauge",
        f"gophergate_log_ready {0 if rt.metering.not_ready else 1}",
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

"""Liveness and readiness, unauthenticated and never logged as /v1 traffic."""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson

from gophergate.core.asgi import Scope
from gophergate.core.errors import AuthenticationFailed
from gophergate.http.io import base_headers, request_id, send_bytes, send_error
from gophergate.runtime import Runtime
from gophergate.telemetry.metrics import CONTENT_TYPE


async def healthz(scope: Scope, send: Any) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', base_headers(request_id(scope)))


async def readyz(rt: Runtime, scope: Scope, send: Any) -> None:
    database = await rt.database_ok()
    rec = rt.recorder
    stuck = rt.metering.not_ready
    writer = stuck is None
    ready = database and writer
    reasons = ([] if database else ["the database does not answer"]) + ([] if stuck is None else [stuck])
    # Redis unreachable is degraded, not unready: /v1 keeps serving, and a load balancer that took every instance
    # out at once because their shared Redis failed would turn a degraded cluster into an outage.
    bus = rt.bus
    degraded = []
    if bus is not None and not bus.connected:
        degraded.append(
            "Redis is unreachable: the live hub, conversation memories and pushed changes are per process meanwhile"
        )
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {"database": database, "log_writer": writer},
        "degraded": degraded,
        "details": {
            "not_ready_reasons": reasons,
            "instance": rt.instance,
            "cluster": None if bus is None else bus.status(),
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
            "memories": {"mode": "process"} if rt.memories is None else rt.memories.status(),
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
    """Prometheus text exposition of the instance (every worker's figures; ``telemetry/metrics.py``). With
    ``GOPHERGATE_METRICS_TOKEN`` set, only for a request that presents it as a bearer token."""
    token = rt.settings.metrics_token
    if token is not None and not _presents(scope, token.get_secret_value()):
        error = AuthenticationFailed(
            "/metrics needs 'Authorization: Bearer <GOPHERGATE_METRICS_TOKEN>'.", code="invalid_metrics_token"
        )
        await send_error(send, error, request_id(scope), [(b"www-authenticate", b"Bearer")])
        return
    body = await rt.metrics.render()
    await send_bytes(send, 200, body, base_headers(request_id(scope), CONTENT_TYPE))


def _presents(scope: Scope, token: str) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, presented = bytes(value).partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), token.encode()):
                return True
    return False

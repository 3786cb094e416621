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
        },
    }
    await send_bytes(send, 200 if ready else 503, orjson.dumps(body), base_headers(request_id(scope)))

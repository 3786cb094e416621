"""/api/system (any user): version, uptime, host and process resources, the log writer, the registry and
per-provider passive health."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil
from fastapi import APIRouter, Request
from starlette.responses import Response

from gophergate import __version__
from gophergate.admin.deps import CurrentUser, Rt
from gophergate.admin.responses import ok
from gophergate.runtime import Runtime

router = APIRouter(prefix="/api/system", tags=["system"])


def _sample(rt: Runtime, process: Any) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    try:
        disk = psutil.disk_usage(str(rt.settings.data_dir))
        disk_json: dict[str, Any] = {"path": str(rt.settings.data_dir), "total": disk.total, "used": disk.used,
                                     "free": disk.free, "percent": disk.percent}  # fmt: skip
    except OSError:
        disk_json = {"path": str(rt.settings.data_dir), "total": None, "used": None, "free": None, "percent": None}
    with process.oneshot():
        rss = process.memory_info().rss
        cpu = process.cpu_percent(None)
        threads = process.num_threads()
    return {
        "host": {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count(),
            "load_avg": list(psutil.getloadavg()),
            "memory": {"total": memory.total, "used": memory.total - memory.available, "percent": memory.percent},
            "disk": disk_json,
        },
        "process": {"pid": process.pid, "cpu_percent": cpu, "rss_bytes": rss, "threads": threads},
    }


@router.get("", summary="Health of this gateway process and its host")
async def system(request: Request, rt: Rt, _: CurrentUser) -> Response:
    state = request.app.state
    if getattr(state, "process", None) is None:
        state.process = psutil.Process()
    resources = await asyncio.to_thread(_sample, rt, state.process)  # psutil reads /proc: off the loop
    rec = rt.recorder
    now = time.time()
    oldest = rt.metering.oldest_queued
    return ok(
        {
            "version": __version__,
            "uptime_s": round(now - rt.started_at, 1),
            **resources,
            "log": {
                "queue_depth": rt.metering.depth,
                "writer_lag_s": round(max(now - oldest.timestamp(), 0.0), 3) if oldest is not None else 0.0,
                "rows_written": rec.written,
                "failed_batches": rec.failed_batches,
                "last_commit_age_s": None if rec.last_commit is None else round(now - rec.last_commit, 3),
            },
            "registry": rt.registry.status(),
            "price_source": rt.routing.resolver.book.source,
            "providers": [rt.health.stats(name) for name in sorted(rt.routing.providers)],
        }
    )

"""/api/system (any user): version, uptime, host and process resources, the log writer, the registry and
per-provider passive health."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
from fastapi import APIRouter, Request
from starlette.responses import Response

from gophergate import __version__
from gophergate.admin.deps import CurrentUser, Rt
from gophergate.admin.responses import ok
from gophergate.runtime import Runtime

router = APIRouter(prefix="/api/system", tags=["system"])

# The first reading waits until this long after the meter was primed, so it measures something.
FIRST_READING_SECONDS = 0.25


def _idle(times: Any) -> float:
    return float(times.idle) + float(getattr(times, "iowait", 0.0))


def _total(times: Any) -> float:
    # On Linux guest time is also counted in user (and guest_nice in nice): count it once.
    return float(sum(times)) - float(getattr(times, "guest", 0.0)) - float(getattr(times, "guest_nice", 0.0))


class CpuMeter:
    """Host and process CPU percent since the previous reading, whichever thread reads.

    psutil's module-level ``cpu_percent(None)`` keeps its previous sample per thread, so its first call on each
    new thread of asyncio's pool answers 0.0 (and later calls measure since that thread's last one). This meter
    keeps one previous sample for the process, primed when it is made (with the admin app), and its very first
    reading waits until ``FIRST_READING_SECONDS`` after that, so the system page never shows a made-up 0.0%."""

    def __init__(
        self,
        process: Any = None,
        *,
        host_times: Callable[[], Any] = psutil.cpu_times,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        first_wait: float = FIRST_READING_SECONDS,
    ) -> None:
        self.process = process if process is not None else psutil.Process()
        self._host_times = host_times
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._previous = host_times()
        self.process.cpu_percent(None)  # primes the process reading (kept on the Process object)
        self._ready_at = clock() + first_wait
        self._host = 0.0
        self._read = False

    def read(self) -> tuple[float, float]:
        """(host CPU percent over all cores, this process's CPU percent of one core)."""
        with self._lock:
            if not self._read:
                wait = self._ready_at - self._clock()
                if wait > 0:
                    self._sleep(wait)
                self._read = True
            current = self._host_times()
            total = _total(current) - _total(self._previous)
            if total > 0:  # else too soon after the previous reading to tell: repeat it
                busy = total - (_idle(current) - _idle(self._previous))
                self._host = round(min(max(busy / total * 100.0, 0.0), 100.0), 1)
                self._previous = current
            process = float(self.process.cpu_percent(None))
        return self._host, process


def _sample(rt: Runtime, cpu: CpuMeter) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    try:
        disk = psutil.disk_usage(str(rt.settings.data_dir))
        disk_json: dict[str, Any] = {"path": str(rt.settings.data_dir), "total": disk.total, "used": disk.used,
                                     "free": disk.free, "percent": disk.percent}  # fmt: skip
    except OSError:
        disk_json = {"path": str(rt.settings.data_dir), "total": None, "used": None, "free": None, "percent": None}
    host_cpu, process_cpu = cpu.read()
    process = cpu.process
    with process.oneshot():
        rss = process.memory_info().rss
        threads = process.num_threads()
    return {
        "host": {
            "cpu_percent": host_cpu,
            "cpu_count": psutil.cpu_count(),
            "load_avg": list(psutil.getloadavg()),
            "memory": {"total": memory.total, "used": memory.total - memory.available, "percent": memory.percent},
            "disk": disk_json,
        },
        "process": {"pid": process.pid, "cpu_percent": process_cpu, "rss_bytes": rss, "threads": threads},
    }


@router.get("", summary="Health of this gateway process and its host")
async def system(request: Request, rt: Rt, _: CurrentUser) -> Response:
    state = request.app.state
    if getattr(state, "cpu", None) is None:  # create_admin_app primes one at start
        state.cpu = CpuMeter()
    resources = await asyncio.to_thread(_sample, rt, state.cpu)  # psutil reads /proc: off the loop
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

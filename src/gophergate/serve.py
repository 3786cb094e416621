"""``gophergate serve``: the app on Granian (HTTP/1.1, uvloop), with Granian's worker processes.

Granian's main process binds the socket, starts ``workers`` worker processes and replaces one that dies. Each
worker runs the app on a uvloop event loop; Granian's Rust side does the socket I/O and HTTP/1.1 parsing. The
app is an ASGI app; the worker serves it on Granian's RSGI interface through ``gophergate.rsgi.RSGIAdapter``
(a stream chunk costs a fraction of what Granian's ASGI interface takes for it), and runs its ASGI lifespan.

The stop (SIGTERM or SIGINT): Granian's own worker waits for every open connection to end before it runs the
lifespan shutdown, however long that takes, and drops WebSocket connections as it stops. So the worker here
differs from Granian's in one thing: the signal first starts the app's own stop (``GopherGate.stop_soon``:
WebSockets closed, requests in flight given ``GOPHERGATE_SHUTDOWN_GRACE_SECONDS`` to finish, then cut and
logged as ``server_shutdown``), and once the WebSockets are closed tells Granian to stop: it stops accepting,
closes idle keep-alive connections, and once the last connection has ended (or, past the grace, when only
connections without a whole request are left) the lifespan shutdown runs, which drains the request log. A worker
whose shutdown failed (rows of the log were lost) exits 1, and so does ``gophergate serve``; a worker whose
startup failed is not replaced: ``gophergate serve`` exits 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server.mp import MPServer, WorkerProcess

from gophergate.telemetry.metrics_dir import MetricsDir

if TYPE_CHECKING:
    from gophergate.app import GopherGate
    from gophergate.settings import Settings

log = logging.getLogger("gophergate.serve")

# The open-file limit the server raises its soft limit to, at most (when the hard limit is unlimited).
MAX_OPEN_FILES = 1 << 20
# Granian's header-read timeout: a request's head must arrive within it. Granian applies the same timeout to a
# keep-alive connection waiting for its next request, so it also caps the keep-alive timeout.
HEADER_READ_TIMEOUT_S = 30.0
BACKLOG = 2048
# The exit code of a worker whose startup failed, and of ``gophergate serve`` then.
STARTUP_FAILED = 3
# Time a stopping worker gets, past the grace and the log drain, before the main process kills it.
_KILL_MARGIN_S = 15.0


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard one: every connection (and upstream connection) is a file, and
    many systems start processes at a soft 1,024. Returns the soft limit now in force (None where unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d (each connection needs one)", soft)
    return soft


def idle_timeout(settings: Settings) -> float:
    """Granian's header-read timeout for ``settings``: it ends idle keep-alive connections too, so it is the
    keep-alive timeout when that is shorter than 30 s, else 30 s."""
    return min(settings.keepalive_timeout_seconds, HEADER_READ_TIMEOUT_S)


def serve(settings: Settings) -> int:
    """Serve the gateway on Granian until SIGTERM or SIGINT; returns the exit code."""
    raise_open_file_limit()
    if settings.keepalive_timeout_seconds > HEADER_READ_TIMEOUT_S:
        log.info(
            "GOPHERGATE_KEEPALIVE_TIMEOUT_SECONDS=%g: idle keep-alive connections close after %g s (Granian's "
            "header-read timeout ends them; the setting can only shorten it)",
            settings.keepalive_timeout_seconds,
            HEADER_READ_TIMEOUT_S,
        )
    if settings.workers > 1 and settings.redis_url is None:
        log.warning(
            "GOPHERGATE_WORKERS=%d without GOPHERGATE_REDIS_URL: rate limits, requests in flight and budgets are "
            "counted per worker (a key with rpm 60 may get up to %d per minute); set GOPHERGATE_REDIS_URL to share "
            "them",
            settings.workers,
            60 * settings.workers,
        )
    kill_timeout = math.ceil(settings.shutdown_grace_seconds + settings.shutdown_drain_seconds + _KILL_MARGIN_S)
    # Before the first worker starts: every worker's metrics go to one directory, summed by /metrics.
    metrics_dir = MetricsDir()
    server = _Server(
        "gophergate.app:factory",  # only a label: the app comes from the loader below
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        backlog=BACKLOG,
        backpressure=settings.max_concurrent_requests,
        http1_settings=HTTP1Settings(header_read_timeout=int(idle_timeout(settings) * 1000)),
        # Granian's log lines go through the gateway's handler (stderr, its format, secrets redacted).
        log_dictconfig={"loggers": {"_granian": {"propagate": True}}, "handlers": {}, "formatters": {}},
        respawn_failed_workers=True,
        workers_kill_timeout=kill_timeout,
    )
    server.metrics_dir = metrics_dir

    def load_app() -> GopherGate:  # in the worker process, first thing
        # A signal that comes while the app is loaded is kept for the worker (the handler inherited from the
        # main process would swallow it, and the worker would serve on after its stop).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _signalled_early)
        from gophergate.app import create_app

        return create_app(settings)

    try:
        server.serve(target_loader=load_app, wrap_loader=False)
    except SystemExit as exc:  # Granian exits 1 when a worker died on its own
        if server.startup_failed:
            log.error("startup failed (see above); exiting %d", STARTUP_FAILED)
            return STARTUP_FAILED
        code = exc.code if isinstance(exc.code, int) else 1
        return code or (1 if server.failed_workers else 0)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return 1
    finally:
        metrics_dir.close()
    if server.failed_workers:
        log.error("%d workers did not stop cleanly (see above); exiting 1", server.failed_workers)
        return 1
    return 0


_early_signal = False


def _signalled_early(signum: int, frame: Any) -> None:
    global _early_signal
    _early_signal = True


async def _until_drained(stopping: asyncio.Event, drained: asyncio.Event, app: Any) -> None:
    """Until Granian has seen every connection end after the stop began; or, once the shutdown grace is over,
    until the app has finished its stop and serves nothing. A connection whose request head is incomplete holds
    Granian's drain until its header-read timeout (up to 30 s): it is not a request, and is not waited for past
    the grace (the process's exit closes it)."""
    loop = asyncio.get_running_loop()
    waits = {loop.create_task(stopping.wait()), loop.create_task(drained.wait())}
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    grace_over = loop.time() + getattr(getattr(app, "settings", None), "shutdown_grace_seconds", 0.0)
    while not drained.is_set():
        if loop.time() >= grace_over and getattr(app, "stopped", True):
            log.info("not waiting for connections whose request head is incomplete")
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), 0.1)


def _worker(
    worker_id: int,
    callback: Any,
    sock: Any,
    ipc: Any,
    loop: asyncio.AbstractEventLoop,
    runtime_mode: Any,
    runtime_threads: int,
    runtime_blocking_threads: int | None,
    blocking_threads: int,
    blocking_threads_idle_timeout: int,
    backpressure: int,
    task_impl: Any,
    http_mode: Any,
    http1_settings: Any,
    http2_settings: Any,
    websockets: bool,
    static_path: Any,
    log_access_fmt: str | None,
    ssl_ctx: Any,
    scope_opts: dict[str, Any],
    metrics: Any,
) -> None:
    """One worker process: Granian's ASGI lifespan worker (same arguments, same steps), except that the app is
    served on the RSGI interface (``RSGIAdapter``), SIGTERM and SIGINT also start the app's stop, connections
    without a whole request are not waited for past the grace, and a failed lifespan shutdown is exit code 1."""
    from granian._futures import _future_watcher_wrapper, _new_cbscheduler
    from granian._granian import RSGIWorker, WorkerSignal
    from granian.asgi import LifespanProtocol
    from granian.constants import TaskImpl
    from granian.rsgi import _callback_wrapper as rsgi_call_wrap
    from granian.server.common import WORKERS_METHODS

    from gophergate.rsgi import RSGIAdapter

    lifespan = LifespanProtocol(callback)
    wrapped = _future_watcher_wrapper(rsgi_call_wrap(RSGIAdapter(callback).__rsgi__, log_access_fmt))
    granian_stop = WorkerSignal()  # tells the Rust side to stop accepting and to close connections as they end
    drained = asyncio.Event()  # set (through Granian) once every connection has ended
    stopping = asyncio.Event()  # set at the signal

    signalled = False

    def on_signal() -> None:
        nonlocal signalled
        if signalled:
            return
        signalled = True
        stopping.set()
        stop_soon: Callable[[], asyncio.Future[None]] | None = getattr(callback, "stop_soon", None)
        if stop_soon is None:
            granian_stop.set()
            return
        # Granian drops WebSocket connections when it stops: it stops once the app has closed them (1001).
        stop_soon().add_done_callback(lambda _: granian_stop.set())

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    if _early_signal:  # stopped while loading: nothing started, nothing to serve
        return
    granian_stop.add_cb(lambda: loop.call_soon_threadsafe(drained.set))

    loop.run_until_complete(lifespan.startup())
    if lifespan.interrupt:
        log.error("worker %d: startup failed", worker_id)
        sys.exit(STARTUP_FAILED)
    if signalled:  # stopped while starting: nothing to serve
        loop.run_until_complete(lifespan.shutdown())
        sys.exit(1 if lifespan.interrupt else 0)

    worker_class: Any = RSGIWorker  # its stub lags the extension (no ``ipc`` argument)
    worker = worker_class(
        worker_id,
        sock,
        ipc,
        runtime_threads,
        runtime_blocking_threads,
        blocking_threads,
        blocking_threads_idle_timeout,
        backpressure,
        http_mode,
        http1_settings,
        http2_settings,
        websockets,
        static_path,
        *ssl_ctx,
        metrics,
    )
    serve = getattr(worker, WORKERS_METHODS[runtime_mode][(sock[0] or sock[1]).is_uds()])
    scheduler = _new_cbscheduler(loop, wrapped, impl_asyncio=task_impl == TaskImpl.asyncio)
    serve(scheduler, loop, granian_stop)
    server_threads_yield()
    loop.call_later(1.0, server_threads_yield)  # and those started since (most inherit the policy)
    parent = os.getppid()

    def watch_parent() -> None:
        """A main process that is gone (SIGKILL, say) stops no worker: one that sees it stops on its own, rather
        than serving on, unsupervised, on a port the next start needs."""
        if os.getppid() != parent:
            log.warning("worker %d: the main process is gone; stopping", worker_id)
            on_signal()
        elif not signalled:
            loop.call_later(1.0, watch_parent)

    loop.call_later(1.0, watch_parent)
    loop.run_until_complete(_until_drained(stopping, drained, callback))
    loop.run_until_complete(lifespan.shutdown())
    if lifespan.interrupt:
        sys.exit(1)


def server_threads_yield() -> list[int]:
    """Put the worker's threads that are not Python's (Granian's Rust I/O and dispatch threads, libuv's) under
    Linux's ``SCHED_BATCH`` policy: woken, they no longer preempt the event loop's thread, they run when it waits.
    Granian hands every request and every stream chunk to its I/O thread; on a core shared with the event loop,
    each handover otherwise switched threads at once (a switch per chunk). Measured: +25% requests and streams
    per second at 64 clients on one core, no change at 1 client (decision 0001). Threads these start inherit
    the policy. Returns the threads changed (none where the policy does not exist)."""
    setscheduler = getattr(os, "sched_setscheduler", None)
    batch = getattr(os, "SCHED_BATCH", None)
    if setscheduler is None or batch is None:
        return []
    import threading

    python = {thread.native_id for thread in threading.enumerate()}
    changed = []
    try:
        tids = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return []
    for tid in tids:
        if tid in python:
            continue
        try:
            if os.sched_getscheduler(tid) != batch:
                setscheduler(tid, batch, os.sched_param(0))
                changed.append(tid)
        except OSError:  # the thread ended meanwhile, or the policy is refused: it only costs speed
            continue
    return changed


class _Server(MPServer):
    """Granian's multi-process server with the worker of this module, counting the workers it stopped that did
    not exit 0."""

    failed_workers = 0
    startup_failed = False
    metrics_dir: MetricsDir | None = None

    _spawn_rsgi_worker = staticmethod(WorkerProcess.wrap_target(_worker))

    def _init_shared_socket(self) -> None:
        try:
            super()._init_shared_socket()
        except RuntimeError as exc:  # Granian's bind reports an OS error (e.g. the port is in use) this way
            raise OSError(str(exc)) from None

    def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
        """A worker that died is replaced, unless its startup failed (exit code ``STARTUP_FAILED``): another would
        fail the same way (the database is unreachable, a setting is wrong), so the server stops, exit code 3."""
        pids = [self.wrks[idx].inner.pid for idx in workers]
        if any(self.wrks[idx].inner.exitcode == STARTUP_FAILED for idx in workers):
            self.startup_failed = True
            self.interrupt_children.extend(workers)
            self.interrupt_signal = True
            self.main_loop_interrupt.set()
            return
        super()._respawn_workers(workers, *args, **kwargs)
        self._exited(pids)

    def _exited(self, pids: list[int | None]) -> None:
        """Workers that have exited: their gauges leave /metrics (their counters stay in the instance's totals)."""
        if self.metrics_dir is not None:
            for pid in pids:
                self.metrics_dir.worker_exited(pid)

    def _stop_workers(self) -> None:
        workers = list(self.wrks)
        super()._stop_workers()
        self._exited([worker.inner.pid for worker in workers])
        self.failed_workers += sum(1 for worker in workers if worker.inner.exitcode != 0)

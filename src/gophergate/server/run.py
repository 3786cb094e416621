"""Running the ASGI app: the lifespan, the listening socket, the one-second tick, signals, a graceful stop, and
worker processes.

One worker serves in the ``gophergate serve`` process itself. With more, that process binds the socket, forks
the workers (they share it, the kernel spreads the connections) and supervises them: a worker that dies is
replaced, SIGTERM and SIGINT are passed on, and the supervisor exits when they all have.

A worker's stop (SIGTERM or SIGINT): it stops accepting, closes idle keep-alive connections, lets the requests in
flight finish (for at most ``grace`` seconds; then they are cancelled and logged as such), closes WebSockets with
1001, runs the lifespan shutdown (which drains the request log), and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from gophergate.server.http11 import HttpConnection, ServerState

log = logging.getLogger("gophergate.server")

_RESPAWN_WINDOW_S = 5.0  # a worker that dies this soon after starting, twice in a row, stops the supervisor


class Lifespan:
    """The ASGI lifespan protocol, driven from the server's side. A startup that fails, or a lifespan that raises,
    stops the worker before it accepts anything."""

    def __init__(self, app: Any, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outcome: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.outcome.put)
        except Exception as exc:
            log.error("the app's lifespan failed", exc_info=exc)
            await self.outcome.put({"type": "lifespan.failed", "message": str(exc)})

    async def _step(self, name: str) -> None:
        await self.inbox.put({"type": f"lifespan.{name}"})
        message = await self.outcome.get()
        if message["type"] != f"lifespan.{name}.complete":
            raise RuntimeError(f"lifespan {name} failed: {message.get('message', '')}")

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        await self._step("shutdown")


def bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve_socket(app: Any, sock: socket.socket, *, grace: float, keepalive: float, backlog: int) -> int:
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await _serve(app, sock, stop, grace=grace, keepalive=keepalive, backlog=backlog)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve(
    app: Any, sock: socket.socket, stop: asyncio.Event, *, grace: float, keepalive: float, backlog: int
) -> int:
    loop = asyncio.get_running_loop()
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, lifespan_state)
    try:
        await lifespan.startup()
    except Exception as exc:
        log.error("startup failed: %s", exc)
        return 3
    from gophergate.server.websocket import WebSocketHandOff

    state = ServerState(app, keepalive_timeout=keepalive, lifespan_state=lifespan_state)
    state.websocket = WebSocketHandOff(state)
    server = await loop.create_server(lambda: HttpConnection(state), sock=sock, backlog=backlog)
    ticker = _Ticker(loop, state)
    host, port = sock.getsockname()[:2]
    log.info("serving on http://%s:%d (pid %d)", f"[{host}]" if ":" in host else host, port, os.getpid())
    await stop.wait()

    log.info("stopping: no new connections, %d requests in flight", len(state.tasks))
    server.close()
    state.close_idle()
    state.websocket.close_all()
    if state.tasks:
        _, pending = await asyncio.wait(set(state.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d requests still running after %.0f s", len(pending), grace)
            await asyncio.wait(pending, timeout=5)
    for conn in list(state.connections):
        conn.transport.close()
    ticker.cancel()
    try:
        await lifespan.shutdown()
    except Exception as exc:
        log.error("shutdown failed: %s", exc)
        return 1
    return 0


class _Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop, state: ServerState) -> None:
        self.loop = loop
        self.state = state
        self.handle = loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        try:
            self.state.tick()
        finally:
            self.handle = self.loop.call_later(1.0, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()


def run_worker(app: Any, sock: socket.socket, *, grace: float, keepalive: float, backlog: int) -> int:
    import uvloop

    return uvloop.run(serve_socket(app, sock, grace=grace, keepalive=keepalive, backlog=backlog))


# The open-file limit the server raises its soft limit to, at most (when the hard limit is unlimited).
MAX_OPEN_FILES = 1 << 20


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


def serve(app: Any, host: str, port: int, *, workers: int, grace: float, keepalive: float, backlog: int) -> int:
    """Bind, then serve in this process (one worker) or in ``workers`` forked processes; returns the exit code."""
    raise_open_file_limit()
    try:
        sock = bind(host, port, backlog)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return 1
    if workers <= 1:
        return run_worker(app, sock, grace=grace, keepalive=keepalive, backlog=backlog)
    return _Supervisor(app, sock, workers, grace=grace, keepalive=keepalive, backlog=backlog).run()


class _Supervisor:
    def __init__(self, app: Any, sock: socket.socket, workers: int, **options: Any) -> None:
        self.app = app
        self.sock = sock
        self.workers = workers
        self.options = options
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self.quick_deaths = 0

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = run_worker(self.app, self.sock, **self.options)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = time.monotonic()

    def _signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for _ in range(self.workers):
            self._fork()
        worst = 0
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            started = self.children.pop(pid, None)
            if started is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                worst = max(worst, code if code > 0 else 0)
                continue
            log.error("worker %d exited with %d; starting another", pid, code)
            self.quick_deaths = self.quick_deaths + 1 if time.monotonic() - started < _RESPAWN_WINDOW_S else 0
            if self.quick_deaths >= 2:
                log.error("workers keep failing at start; stopping")
                self._signal(signal.SIGTERM, None)
                worst = max(worst, code if code > 0 else 1)
                continue
            self._fork()
        return worst

"""Composition only: ``create_app(settings)`` returns the ASGI app; the lifespan builds the ``Runtime``.

The /v1 surface is raw ASGI (a dispatcher on the path, no framework on the hot path). ``/api`` goes to the admin
app (FastAPI, built in the lifespan); every other path that is not a health or metrics endpoint is the UI.
Before any of them sees an http or websocket scope, a connection from a trusted reverse proxy gets the client
address and scheme the proxy forwarded (``http/forwarded.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from gophergate.core.asgi import Scope
from gophergate.core.errors import GatewayError, NotFound
from gophergate.http import health
from gophergate.http.forwarded import TrustedProxies
from gophergate.http.io import read_body, replaying, request_id, send_error
from gophergate.http.static import StaticUI
from gophergate.http.v1 import V1
from gophergate.hub.ws import HubEndpoint
from gophergate.pricing.registry import release_memory
from gophergate.runtime import Runtime
from gophergate.settings import Settings, load_settings

log = logging.getLogger("gophergate")

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class GopherGate:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._v1: V1 | None = None
        self._ws: HubEndpoint | None = None
        self._admin: Any = None  # the FastAPI app for /api
        self._static = StaticUI()
        # None when no proxy is trusted: then the forwarded headers cost nothing at all.
        self._proxies = TrustedProxies(settings.trusted_proxies) if settings.trusted_proxies else None
        self._in_flight: set[asyncio.Task[Any]] = set()  # the requests and WebSockets being served
        self._stopping: asyncio.Task[None] | None = None
        self._ws_closing: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        task = asyncio.current_task()
        if task is None:  # not run as a task: nothing a stop could cut
            await self._serve(scope, receive, send)
            return
        self._in_flight.add(task)
        try:
            await self._serve(scope, receive, send)
        except asyncio.CancelledError:
            if self._stopping is None:
                raise
            # Cut by the stop: answered (where the client could still take it) and logged; the server need not
            # report it as an app failure.
        finally:
            self._in_flight.discard(task)

    async def _serve(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if self._proxies is not None and kind != "lifespan":
            scope = self._proxies.rewrite(scope)
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") and self._v1 is not None:
                metrics = self._v1.rt.metrics
                metrics.in_flight += 1
                try:
                    await self._v1(scope, receive, send)
                finally:
                    metrics.in_flight -= 1
            elif path == "/healthz":
                await health.healthz(scope, send)
            elif path == "/readyz" and self.runtime is not None:
                await health.readyz(self.runtime, scope, send)
            elif path == "/metrics" and self.runtime is not None:
                await health.metrics(self.runtime, scope, send)
            elif path == "/api" or path.startswith("/api/"):
                admin = self._admin_app()
                if admin is not None:
                    await self._serve_admin(admin, scope, receive, send)
                else:
                    await send_error(send, NotFound(f"Unknown endpoint: {scope['method']} {path}."), request_id(scope))
            elif path.startswith("/v1/") or path == "/v1":
                await send_error(send, NotFound(f"Unknown endpoint: {scope['method']} {path}."), request_id(scope))
            else:
                await self._static(scope, receive, send)
        elif kind == "websocket":
            if scope["path"] == "/ws" and self._ws is not None:
                await self._ws(scope, receive, send)
            else:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403

    async def _serve_admin(self, admin: Any, scope: Scope, receive: Any, send: Any) -> None:
        """The admin API, its request body read first under the same limits as /v1's (size, deadline, a body
        that breaks off): the framework would wait for a body without a deadline, and take one of any size."""
        if scope["method"] in _BODYLESS:
            await admin(scope, receive, send)
            return
        settings = self.settings
        try:
            body = await read_body(receive, scope, settings.max_body_bytes, settings.body_timeout_seconds)
        except GatewayError as exc:
            await send_error(send, exc, request_id(scope))
            return
        await admin(scope, replaying(body, receive), send)

    def stop_soon(self) -> asyncio.Task[None]:
        """The server is stopping (``gophergate serve`` calls this on SIGTERM/SIGINT): start the stop now, while
        the server waits for the connections to end. Returns the closing of the WebSockets (1001): a server that
        drops upgraded connections as it stops (Granian does) must stop only after it."""
        if self._stopping is None or self._ws_closing is None:
            loop = asyncio.get_running_loop()
            self._ws_closing = loop.create_task(self._close_websockets())
            self._stopping = loop.create_task(self._stop(self._ws_closing))
        return self._ws_closing

    async def stop(self) -> None:
        """Close the WebSockets (1001), give the requests in flight ``GOPHERGATE_SHUTDOWN_GRACE_SECONDS`` to
        finish, then cancel the rest: /v1 logs each as ``server_shutdown`` (a stream's client gets an error event
        first). The lifespan shutdown runs it (at once when the server did not call ``stop_soon``)."""
        self.stop_soon()
        assert self._stopping is not None
        await self._stopping

    async def _close_websockets(self) -> None:
        hub = self.runtime.hub if self.runtime is not None else None
        if hub is not None:
            await hub.close()

    async def _stop(self, ws_closing: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        grace = self.settings.shutdown_grace_seconds
        deadline = loop.time() + grace
        log.info("stopping: %d requests in flight, %g s to finish", len(self._in_flight), grace)
        # Requests that start meanwhile (a head that completes after the signal) are waited for too.
        while self._in_flight and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._in_flight), timeout=left)
        running = set(self._in_flight)
        if running:
            log.warning("cutting %d requests still running after %g s", len(running), grace)
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=5.0)
        await ws_closing

    @property
    def stopped(self) -> bool:
        """The stop is done and nothing is being served."""
        return self._stopping is not None and self._stopping.done() and not self._in_flight

    def _admin_app(self) -> Any:
        """The FastAPI app for /api, built at the first dashboard request: FastAPI and the admin code cost a
        worker ~10 MB that a gateway nobody administers never needs."""
        if self._admin is None and self.runtime is not None:
            from gophergate.admin import create_admin_app

            self._admin = create_admin_app(self.runtime)
        return self._admin

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.runtime = await Runtime.start(self.settings)
                    self._v1 = V1(self.runtime)
                    self._ws = _hub_endpoint(self.runtime)
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything built so far lives as long as the process: keep it out of the collector's full
                # passes, which otherwise walk every module object and stalled requests for tens of ms
                # (measured: 1-client p99 10-15 ms without, ~5 ms with).
                gc.collect()
                gc.freeze()
                release_memory()  # what startup freed (imports, the migration check) goes back to the system
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                failure = None
                await self.stop()
                if self.runtime is not None:
                    try:
                        await self.runtime.close()
                    except Exception as exc:
                        log.exception("shutdown failed")
                        failure = f"shutdown failed: {exc}"
                    lost = self.runtime.recorder.lost
                    if lost:  # gophergate serve turns a failed shutdown into exit code 1
                        failure = f"{lost} request log rows were lost (neither written nor saved to a file)"
                if failure is not None:
                    await send({"type": "lifespan.shutdown.failed", "message": failure})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def _hub_endpoint(rt: Runtime) -> HubEndpoint:
    assert rt.hub is not None
    return HubEndpoint(rt.hub, lambda: rt.ws_authenticate)


def create_app(settings: Settings) -> GopherGate:
    return GopherGate(settings)


def factory() -> GopherGate:
    """Entry point for other ASGI servers (``uvicorn --factory gophergate.app:factory``): settings from the
    environment. ``gophergate serve`` runs the app on Granian (gophergate.serve), which also starts the app's
    stop at SIGTERM; on another server the lifespan shutdown runs it, once that server has stopped waiting for
    the requests in flight."""
    from gophergate.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return create_app(settings)

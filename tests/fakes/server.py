"""The lifecycle every fake upstream shares: an aiohttp app on 127.0.0.1 (ephemeral port) served from a
background thread with its own event loop; ``start()`` / ``stop()`` or a ``with`` block."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from types import TracebackType
from typing import Any, Self

from aiohttp import web

MIB = 1024 * 1024


def hang_up(request: web.Request) -> web.Response:
    """Close the connection (FIN) after reading the whole request, without a byte of answer: what a server does
    when it drops a kept-alive connection just as a request arrives, or dies while working on it."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)  # never sent: the connection is closed


async def huge_body(request: web.Request, mib: int, *, declared: bool) -> web.StreamResponse:
    """``mib`` MiB of a JSON string, with its Content-Length declared or chunked, in 1 MiB writes; a client that
    hangs up on it ends it early."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    total = mib * MIB
    if declared:
        resp.content_length = total
    await resp.prepare(request)
    piece = b"x" * MIB
    try:
        await resp.write(b'"' + piece[1:])
        for _ in range(mib - 2):
            await resp.write(piece)
        await resp.write(piece[:-1] + b'"')
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def huge_event(resp: web.StreamResponse, mib: int) -> None:
    """One ``data:`` line of ``mib`` MiB that never ends (no blank line), in 1 MiB writes."""
    piece = b"x" * MIB
    try:
        await resp.write(b'data: {"pad": "')
        for _ in range(mib):
            await resp.write(piece)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass


class LoopbackServer:
    thread_name = "fake-upstream"

    def __init__(self) -> None:
        # Set before start() to serve HTTPS (``tests/fakes/tls.py`` makes a certificate for it).
        self.tls: ssl.SSLContext | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("fake already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("fake upstream failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("fake not started")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.tls)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
            self._loop = loop
        except BaseException as exc:  # reported by start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()


def json_object_at(text: str, start: int) -> dict[str, Any] | None:
    """The JSON object that follows ``text[start:]`` after spaces, if one does (the
    fakes' `CALL <name> {args}` trigger)."""
    rest = text[start:].lstrip(" ")
    if not rest.startswith("{"):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

"""A fake models.dev: ``/api.json`` with an ETag (304 to a matching ``If-None-Match``), served from a background
thread (``LoopbackServer``) so that in-process registries and gateway subprocesses can both fetch from it. It
records the conditional headers of every request (``requests``: how many fetches a cluster made) and can fail,
truncate, or hold requests until released (a fetch in progress whose fetcher can be killed)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from aiohttp import web

from tests.fakes.server import LoopbackServer
from tests.support import MINI_REGISTRY


class FakeRegistry(LoopbackServer):
    thread_name = "fake-registry"

    def __init__(self, body: bytes | Path = MINI_REGISTRY, etag: str = '"v1"') -> None:
        super().__init__()
        self.body = body.read_bytes() if isinstance(body, Path) else body
        self.etag = etag
        self.status = 200
        self.truncate = False  # announce the full length, send half, then drop the connection
        self.requests: list[dict[str, str]] = []  # the If-* headers of each request, in order
        self.times: list[float] = []  # when each came (time.monotonic())
        self.held = threading.Event()  # set while requests are being held
        self._hold: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.root_url + "/api.json"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def hold(self) -> None:
        """Keep every request waiting (no answer) until ``release()``."""
        self._hold = threading.Event()

    def release(self) -> None:
        if self._hold is not None:
            self._hold.set()
        self._hold = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/api.json":
            return web.Response(status=404)
        with self._lock:
            self.requests.append({k: v for k, v in request.headers.items() if k.lower().startswith("if-")})
            self.times.append(time.monotonic())
        hold = self._hold
        if hold is not None:
            self.held.set()
            await asyncio.to_thread(hold.wait, 60)
        if self.status != 200:
            return web.Response(status=self.status, text="nope")
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304)
        if self.truncate:
            resp = web.StreamResponse(headers={"ETag": self.etag, "Content-Length": str(len(self.body))})
            await resp.prepare(request)
            await resp.write(self.body[: len(self.body) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(body=self.body, content_type="application/json", headers={"ETag": self.etag})


class Stop(Exception):
    pass


class FakeTime:
    """A monotonic clock that moves only when the registry's loop sleeps; stops the loop past ``until``."""

    def __init__(self, until: float) -> None:
        self.now = 0.0
        self.until = until

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now > self.until:
            raise Stop

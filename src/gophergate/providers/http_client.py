"""The upstream HTTP client behind one small adapter, with two backends and a hybrid default.

Measured on the benchmark machine (gateway pinned to one core, bench/README.md):

- buffered JSON pass-through: pyreqwest (Rust, reqwest/hyper) 11.1k req/s, aiohttp 5.7k req/s;
- SSE relay (20 events): aiohttp 2.4k streams/s with 1-client p99 5 ms; pyreqwest 1.4k streams/s with
  p99 over 500 ms. pyreqwest must be told not to pre-read streamed bodies (see ``ReqwestClient``), and
  chunk-by-chunk reads through it stall.

So ``auto`` (the default) sends non-streaming requests through pyreqwest and streams through aiohttp;
``pyreqwest`` and ``aiohttp`` use one library for everything. All pool keep-alive connections, honour the
connect / idle-read / total timeouts, and close the connection when a stream is abandoned. Transport
failures are mapped in ``upstream.transport_errors``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import orjson


class UpstreamResponse(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self, *, reuse: bool) -> None: ...


class UpstreamClient(Protocol):
    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        """Send a request; with ``stream=False`` the body is read completely before this returns."""
        ...

    async def close(self) -> None: ...


# -- pyreqwest ------------------------------------------------------------------------------------------------


class _ReqwestBuffered:
    __slots__ = ("_body", "_resp", "status")

    def __init__(self, resp: Any, body: bytes) -> None:
        self._resp = resp
        self._body = body
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        value: str | None = self._resp.get_header(name)
        return value

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self, *, reuse: bool) -> None:
        return None


class _ReqwestStreamed:
    __slots__ = ("_closed", "_req", "_resp", "status")

    def __init__(self, req: Any, resp: Any) -> None:
        self._req = req
        self._resp = resp
        self._closed = False
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        value: str | None = self._resp.get_header(name)
        return value

    async def read(self) -> bytes:
        return bytes(await self._resp.body_reader.bytes())

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._resp.body_reader
        while (chunk := await reader.read_chunk()) is not None:
            yield bytes(chunk)

    async def aclose(self, *, reuse: bool) -> None:
        if not self._closed:
            self._closed = True
            await self._req.__aexit__(None, None, None)


class ReqwestClient:
    def __init__(
        self, *, max_connections: int, connect_timeout: float, read_timeout: float, total_timeout: float
    ) -> None:
        from pyreqwest.client import ClientBuilder

        self._client = (
            ClientBuilder()
            .max_connections(max_connections)
            .connect_timeout(dt.timedelta(seconds=connect_timeout))
            .read_timeout(dt.timedelta(seconds=read_timeout))
            .timeout(dt.timedelta(seconds=total_timeout))
            .pool_idle_timeout(dt.timedelta(seconds=60))
            .user_agent("gophergate")
            .build()
        )

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        builder = self._client.request(method, url).headers(headers)
        if body is not None:
            builder = builder.body_bytes(body)
        if not stream:
            resp = await builder.build().send()
            return _ReqwestBuffered(resp, bytes(await resp.bytes()))
        # pyreqwest pre-reads a streamed body up to this many bytes (64 KiB by default) before returning the
        # response: an SSE stream would reach the client only at its end. 0 hands over each chunk as it arrives
        # (caught by test_stream_chunks_are_relayed_as_they_arrive).
        req = builder.streamed_read_buffer_limit(0).build_streamed()
        resp = await req.__aenter__()
        return _ReqwestStreamed(req, resp)

    async def close(self) -> None:
        await self._client.close()


# -- aiohttp --------------------------------------------------------------------------------------------------


class _AiohttpResponse:
    __slots__ = ("_body", "_resp", "status")

    def __init__(self, resp: aiohttp.ClientResponse, body: bytes | None) -> None:
        self._resp = resp
        self._body = body
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    async def read(self) -> bytes:
        if self._body is None:
            self._body = await self._resp.read()
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            yield self._body
            return
        async for chunk in self._resp.content.iter_any():
            yield chunk

    async def aclose(self, *, reuse: bool) -> None:
        if reuse:
            self._resp.release()
        else:
            self._resp.close()


class AiohttpClient:
    def __init__(
        self, *, max_connections: int, connect_timeout: float, read_timeout: float, total_timeout: float
    ) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout, sock_read=read_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
        )

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        resp = await self._session.request(method, url, data=body, headers=headers)
        if stream:
            return _AiohttpResponse(resp, None)
        try:
            return _AiohttpResponse(resp, await resp.read())
        finally:
            resp.release()

    async def close(self) -> None:
        await self._session.close()


class HybridClient:
    """pyreqwest for buffered requests, aiohttp for streams (the measured best of each)."""

    def __init__(self, **options: Any) -> None:
        self._buffered = ReqwestClient(**options)
        self._streams = AiohttpClient(**options)

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        client: UpstreamClient = self._streams if stream else self._buffered
        return await client.request(method, url, headers, body, stream=stream)

    async def close(self) -> None:
        await self._buffered.close()
        await self._streams.close()


def create_client(
    kind: str, *, max_connections: int, connect_timeout: float, read_timeout: float, total_timeout: float
) -> UpstreamClient:
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "total_timeout": total_timeout,
    }
    if kind == "aiohttp":
        return AiohttpClient(**options)
    if kind == "pyreqwest":
        return ReqwestClient(**options)
    return HybridClient(**options)

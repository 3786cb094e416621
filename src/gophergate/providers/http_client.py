"""The upstream HTTP client behind one small adapter: three backends, h1 by default.

- ``h1`` (``providers/h1_client.py``): HTTP/1.1 on the event loop's own thread, parsed by httptools;
- ``pyreqwest``: Rust (reqwest/hyper) on a runtime thread of its own;
- ``aiohttp``.

Measured on the benchmark machine (gateway pinned to one core, bench/README.md):

- buffered JSON pass-through: pyreqwest 11.1k req/s against aiohttp 5.7k (a fast day). On a slow day, with
  the whole gateway around it, three interleaved rounds: h1 3.3-4.0k req/s with 64 clients against 3.3-3.6k
  for pyreqwest, and 1-client p50 0.65-0.72 ms against 0.75-0.82 ms in two rounds (the third, disturbed:
  1.41 against 0.98 ms); per request at 1 client the gateway used ~580 us of CPU against ~780 us (~165 us of
  it on pyreqwest's own thread). ``make bench`` the same afternoon: 1-client p50 +0.62 to +0.70 ms with h1,
  +0.75 to +0.89 ms with pyreqwest.
- SSE relay (20 events): aiohttp 2.4k streams/s with 1-client p99 5 ms; pyreqwest 1.4k streams/s with
  p99 over 500 ms (pyreqwest must be told not to pre-read streamed bodies, see ``ReqwestClient``, and
  chunk-by-chunk reads through it stall). On the slow day, three interleaved rounds: h1 2.07-2.11k
  streams/s with 64 clients against 1.18-1.38k for aiohttp, and 1-client p50 0.88-1.16 ms against
  1.30-1.51 ms (h1 hands the relay everything one socket read brought as one piece).

So ``auto`` (the default) is h1 for everything. h1 connects directly; where a proxy is configured
(``HTTPS_PROXY`` and friends), ``auto`` is pyreqwest for buffered requests and aiohttp for streams, both
honouring the proxy variables. Each named backend is used for everything. All pool keep-alive connections,
honour the connect / idle-read / total timeouts, and close the connection when a stream is abandoned.
Transport failures are raised as the exceptions of ``h1_client`` (or aiohttp's own) and mapped in
``upstream.transport_errors``.

Every backend bounds what it buffers: a body (after decoding: pyreqwest and aiohttp decode gzip, deflate, br
and zstd when the upstream sends them, h1 gzip and deflate) longer than ``max_response_bytes`` is refused as it
arrives, with ``h1_client.ResponseTooLarge``; a declared Content-Length over the cap is refused before the body
is read. None of them sends a request twice: h1 checks a pooled connection before writing to it, aiohttp retries
a dropped keep-alive connection for idempotent methods only (never a POST), and reqwest (hyper) resends only a
request that was never written (a pooled connection found closed first); pyreqwest has no retry setting.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import aiohttp
import orjson

from gophergate.providers import h1_client as h1


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


async def read_capped(chunks: AsyncIterable[bytes], limit: int, declared: int | None = None) -> bytes:
    """A whole body, refused (``ResponseTooLarge``) as soon as it is longer than ``limit``, or at once when its
    declared length is; memory stays within the cap and the copy is linear."""
    if declared is not None and declared > limit:
        raise h1.ResponseTooLarge(limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise h1.ResponseTooLarge(limit)
    return bytes(body)


def _declared(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# -- pyreqwest ------------------------------------------------------------------------------------------------


@contextmanager
def _reqwest_errors() -> Iterator[None]:
    """pyreqwest's exceptions as the adapter's (``h1_client``), so that nothing else imports pyreqwest."""
    from pyreqwest import exceptions as errors

    try:
        yield
    except errors.ConnectTimeoutError as exc:
        raise h1.ConnectTimeout(str(exc)) from exc
    except errors.RequestTimeoutError as exc:
        raise h1.ReadTimeout(str(exc)) from exc
    except errors.ConnectError as exc:
        raise h1.ConnectError(str(exc)) from exc
    except errors.PyreqwestError as exc:
        raise h1.RemoteClosed(f"{type(exc).__name__}: {exc}") from exc


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
    __slots__ = ("_closed", "_limit", "_req", "_resp", "status")

    def __init__(self, req: Any, resp: Any, limit: int) -> None:
        self._req = req
        self._resp = resp
        self._limit = limit
        self._closed = False
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        value: str | None = self._resp.get_header(name)
        return value

    async def read(self) -> bytes:
        return await read_capped(self.chunks(), self._limit, _declared(self.header("content-length")))

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._resp.body_reader
        while True:
            with _reqwest_errors():
                chunk = await reader.read_chunk()
            if chunk is None:
                return
            yield bytes(chunk)

    async def aclose(self, *, reuse: bool) -> None:
        if not self._closed:
            self._closed = True
            await self._req.__aexit__(None, None, None)


class ReqwestClient:
    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        max_response_bytes: int = h1.DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        from pyreqwest.client import ClientBuilder

        self._limit = max_response_bytes
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
        with _reqwest_errors():
            builder = self._client.request(method, url).headers(headers)
            if body is not None:
                builder = builder.body_bytes(body)
            if not stream:
                # Read through the streamed API: ``send()`` would read the whole body, however long.
                req = builder.build_streamed()
                resp = await req.__aenter__()
                try:
                    body = await _ReqwestStreamed(req, resp, self._limit).read()
                finally:
                    await req.__aexit__(None, None, None)
                return _ReqwestBuffered(resp, body)
            # pyreqwest pre-reads a streamed body up to this many bytes (64 KiB by default) before returning the
            # response: an SSE stream would reach the client only at its end. 0 hands over each chunk as it
            # arrives (caught by test_stream_chunks_are_relayed_as_they_arrive).
            req = builder.streamed_read_buffer_limit(0).build_streamed()
            resp = await req.__aenter__()
            return _ReqwestStreamed(req, resp, self._limit)

    async def close(self) -> None:
        await self._client.close()


# -- aiohttp --------------------------------------------------------------------------------------------------


class _AiohttpResponse:
    __slots__ = ("_body", "_limit", "_resp", "status")

    def __init__(
        self, resp: aiohttp.ClientResponse, body: bytes | None, limit: int = h1.DEFAULT_MAX_RESPONSE_BYTES
    ) -> None:
        self._resp = resp
        self._body = body
        self._limit = limit
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    async def read(self) -> bytes:
        if self._body is None:
            # Not ``resp.read()``: it has no limit. aiohttp decodes compressed bodies in bounded steps.
            self._body = await read_capped(self._resp.content.iter_any(), self._limit, self._resp.content_length)
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
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        trust_env: bool = False,
        max_response_bytes: int = h1.DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._limit = max_response_bytes
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
            trust_env=trust_env,  # HTTP(S)_PROXY / NO_PROXY
        )

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        resp = await self._session.request(method, url, data=body, headers=headers)
        if stream:
            return _AiohttpResponse(resp, None, self._limit)
        answer = _AiohttpResponse(resp, None, self._limit)
        try:
            await answer.read()
        except BaseException:
            resp.close()  # not released to the pool: the rest of the body was never read
            raise
        resp.release()
        return answer

    async def close(self) -> None:
        await self._session.close()


class HybridClient:
    """Behind a proxy: pyreqwest for buffered requests, aiohttp for streams (the best of the two that honour
    the proxy variables)."""

    def __init__(self, **options: Any) -> None:
        self._buffered = ReqwestClient(**options)
        self._streams = AiohttpClient(**options, trust_env=True)

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        client: UpstreamClient = self._streams if stream else self._buffered
        return await client.request(method, url, headers, body, stream=stream)

    async def close(self) -> None:
        await self._buffered.close()
        await self._streams.close()


def create_client(
    kind: str,
    *,
    max_connections: int,
    connect_timeout: float,
    read_timeout: float,
    total_timeout: float,
    max_response_bytes: int = h1.DEFAULT_MAX_RESPONSE_BYTES,
) -> UpstreamClient:
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "total_timeout": total_timeout,
        "max_response_bytes": max_response_bytes,
    }
    if kind == "aiohttp":
        return AiohttpClient(**options)
    if kind == "pyreqwest":
        return ReqwestClient(**options)
    if kind == "h1" or not proxy_configured(os.environ):
        return h1.H1Client(**options)
    return HybridClient(**options)


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def proxy_configured(environ: Mapping[str, str]) -> bool:
    """Whether the standard proxy variables name a proxy (pyreqwest and aiohttp read them; h1 does not)."""
    return any(environ.get(name, "").strip() for name in PROXY_VARIABLES)

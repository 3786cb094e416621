"""The ``aiohttp`` transport backend: the path through a forward proxy (``transport.py`` picks it for an upstream
that ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` applies to), or for everything when
``GOPHERGATE_UPSTREAM_CLIENT=aiohttp``.

aiohttp's exceptions are mapped to the seam's here, once (``mapped_errors``), for the request and for every read
of the body; nothing outside this module sees them. The rules are the h1 backend's:

- the proxy is given per request by the transport (explicit, not aiohttp's ``trust_env``, which reads the
  environment again on a thread for every request and ignores ``ALL_PROXY``); credentials in the proxy URL are
  sent as ``Proxy-Authorization``;
- no ``Accept-Encoding`` is sent and aiohttp's own decompression is off: a ``gzip``/``deflate`` body is decoded by
  ``transport.BodyDecoder``, bounded like h1's;
- a buffered body (decoded) longer than ``max_response_bytes`` is refused as it arrives, a declared
  ``Content-Length`` over it before the body is read;
- a request is never sent twice: aiohttp retries a dropped pooled connection only for idempotent methods (never
  a POST), and a pooled connection that received bytes nobody asked for while idle (an answer longer than its
  ``Content-Length`` whose tail came late) is closed instead of used (``_CheckedConnector``); without that check
  aiohttp reads those bytes as the next request's answer.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from gophergate.providers.proxies import without_credentials
from gophergate.providers.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    BodyDecoder,
    ConnectError,
    ConnectTimeout,
    ProtocolError,
    ReadTimeout,
    RemoteClosed,
    ResponseTooLarge,
    TotalTimeout,
)

__all__ = ["AiohttpClient", "AiohttpResponse", "mapped_errors"]


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """aiohttp's exceptions as the seam's. Messages name the failure, never a URL (it may carry a key)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise ConnectTimeout("connecting to the upstream timed out") from None
    except aiohttp.ServerTimeoutError:  # SocketTimeoutError: sock_read
        raise ReadTimeout("the upstream sent nothing for longer than the read timeout") from None
    except TimeoutError:  # aiohttp's total timeout is a plain TimeoutError
        raise TotalTimeout("the upstream did not finish the answer within the total timeout") from None
    except aiohttp.ClientHttpProxyError as exc:  # the proxy answered CONNECT with an error status
        raise ConnectError(f"the proxy refused the tunnel: HTTP {exc.status}") from None
    except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS, the proxy unreachable
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        raise ConnectError(f"could not connect to {exc.host}:{exc.port}: {reason}") from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
        raise RemoteClosed(f"the connection ended before the answer was complete ({type(exc).__name__})") from None
    except aiohttp.ClientResponseError as exc:  # not HTTP: bad status line, broken chunk framing
        raise ProtocolError(f"invalid HTTP answer from the upstream: {exc.message}") from None
    except aiohttp.ClientError as exc:
        raise ProtocolError(f"the request failed: {type(exc).__name__}") from None
    except OSError as exc:
        raise RemoteClosed(f"the connection failed: {exc.strerror or type(exc).__name__}") from None


class AiohttpResponse:
    """The answer to one request (``transport.UpstreamResponse``). With ``decode`` a gzip/deflate body is decoded
    here (``BodyDecoder``): for a session whose own decompression is off."""

    __slots__ = ("_body", "_decoder", "_limit", "_resp", "status")

    def __init__(
        self, resp: aiohttp.ClientResponse, limit: int = DEFAULT_MAX_RESPONSE_BYTES, *, decode: bool = False
    ) -> None:
        self._resp = resp
        self._body: bytes | None = None
        self._limit = limit
        self._decoder = BodyDecoder.for_encoding(resp.headers.get("content-encoding"), limit) if decode else None
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    async def _next_raw(self) -> bytes:
        """The next bytes of the body as they arrived (b"" at its end)."""
        with mapped_errors():
            return await self._resp.content.readany()

    async def read(self) -> bytes:
        if self._body is None:
            limit = self._limit
            declared = self._resp.content_length
            if declared is not None and declared > limit:
                raise ResponseTooLarge(limit)
            body = bytearray()
            decoder = self._decoder
            while data := await self._next_raw():
                if decoder is not None:
                    data = decoder.decode(data, limit - len(body))
                body += data
                if len(body) > limit:
                    raise ResponseTooLarge(limit)
            if decoder is not None:
                body += decoder.finish(limit - len(body))
            self._body = bytes(body)
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        decoder = self._decoder
        while data := await self._next_raw():
            if decoder is not None:
                data = decoder.decode(data, self._limit)
            if data:
                yield data
        if decoder is not None and (tail := decoder.finish(self._limit)):
            yield tail

    async def aclose(self, *, reuse: bool) -> None:
        if reuse:
            self._resp.release()  # back to the pool only if the body was read to its end
        else:
            self._resp.close()


class _CheckedConnector(aiohttp.TCPConnector):
    """A pooled connection that has bytes waiting, or an unfinished answer, is closed rather than handed out:
    aiohttp parses what arrives on an idle connection and would give it to the next request as its answer."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        # Bounded by the pool's size: a server that talks before it is asked gets its answer parsed as usual.
        for _ in range(self.limit or 64):
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
            if protocol is None or not protocol.should_close:
                return conn
            conn.close()  # the next round takes another pooled connection, or opens a new one
        return await super().connect(req, traces, timeout)


class AiohttpClient:
    """Pooled keep-alive connections through aiohttp (``transport.Transport``), a proxy per request if given."""

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        stream_read_timeout: float | None = None,
    ) -> None:
        self._limit = max_response_bytes
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout, sock_read=read_timeout)
        # A stream idle for this long is cut (routing's stream_idle_timeout_s); None: the read timeout.
        self._stream_timeout = (
            None
            if stream_read_timeout is None or stream_read_timeout >= read_timeout
            else aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout, sock_read=stream_read_timeout)
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy_headers: dict[str, dict[str, str]] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Made at the first request, on the running loop (aiohttp binds a session to the loop it was made on).
        connector = _CheckedConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": "gophergate"},
            skip_auto_headers=("Accept-Encoding",),
            auto_decompress=False,
            raise_for_status=False,
            trust_env=False,
        )
        return self._session

    def _proxy(self, proxy: str) -> tuple[str, dict[str, str] | None]:
        """The proxy URL without credentials, and the Proxy-Authorization header carrying them (if any)."""
        parts = urlsplit(proxy)
        if parts.username is None:
            return proxy, None
        headers = self._proxy_headers.get(proxy)
        if headers is None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers = self._proxy_headers[proxy] = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
        return without_credentials(proxy), headers

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        stream: bool,
        proxy: str | None = None,
    ) -> AiohttpResponse:
        session = self._session or self._open()
        proxy_headers = None
        if proxy is not None:
            proxy, proxy_headers = self._proxy(proxy)
            if proxy_headers is not None and url.startswith("http:"):
                # Plain HTTP goes to the proxy as the request itself (no CONNECT, where aiohttp puts proxy_headers).
                headers = {**headers, **proxy_headers}
        with mapped_errors():
            if stream and self._stream_timeout is not None:
                resp = await session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    proxy=proxy,
                    proxy_headers=proxy_headers,
                    timeout=self._stream_timeout,
                )
            else:
                resp = await session.request(
                    method, url, data=body, headers=headers, proxy=proxy, proxy_headers=proxy_headers
                )
        answer = AiohttpResponse(resp, self._limit, decode=True)
        if stream:
            return answer
        try:
            await answer.read()
        except BaseException:
            resp.close()  # not released to the pool: the rest of the body was never read
            raise
        resp.release()
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

"""The upstream transport seam: what providers call to talk HTTP to their upstreams, and the errors it raises.

Providers see only ``Transport`` and ``UpstreamResponse`` and the exceptions below; each backend maps its own
failures to these once, inside the backend, and ``upstream.transport_errors`` turns them into gateway errors
(502 / 504). No provider imports a backend or catches a backend's exception.

::

    TransportError
     +-- ConnectError        the connection (TCP, TLS, or the proxy's tunnel) could not be made     -> 502
     +-- TransportTimeout
     |    +-- ConnectTimeout connecting took longer than the connect timeout                        -> 504
     |    +-- ReadTimeout    no byte of the answer for longer than the read timeout                 -> 504
     |    +-- TotalTimeout   the whole exchange took longer than the total timeout                  -> 504
     +-- RemoteClosed        the connection ended before the answer was complete (short body)      -> 502
     +-- ProtocolError       the answer is not valid HTTP/1.1: broken framing, more bytes than its
     |                       length, a broken compressed body                                       -> 502
     +-- ResponseTooLarge    a buffered (decoded) answer past ``max_response_bytes``                -> 502

Two backends:

- ``h1`` (``h1_client.py``): the gateway's own HTTP/1.1 client on the event loop's thread (httptools parser);
  it connects directly and is the default (about 1.6x aiohttp's throughput on buffered JSON here);
- ``aiohttp`` (``aiohttp_client.py``): used for an upstream that a forward proxy applies to (``HTTPS_PROXY``,
  ``HTTP_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``: ``proxies.py``), or for everything when
  ``GOPHERGATE_UPSTREAM_CLIENT=aiohttp``.

``create_transport`` picks the backend for each upstream origin the first time it is used and keeps the choice.
Both backends: pool keep-alive connections, never send a request twice (a pooled connection is checked before
anything is written to it, and nothing is resent once a byte went out), decode gzip and deflate with
``BodyDecoder`` in bounded steps, refuse a buffered body past the cap as it arrives, and treat a body shorter or
longer than its framing as an error rather than a truncated or spliced answer.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit

from gophergate.providers.proxies import any_proxy_configured, proxy_for, without_credentials

if TYPE_CHECKING:
    from gophergate.providers.aiohttp_client import AiohttpClient
    from gophergate.providers.h1_client import H1Client

log = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024


# -- errors -------------------------------------------------------------------------------------------------------


class TransportError(Exception):
    """A failure talking to an upstream (every backend raises only these)."""


class ConnectError(TransportError):
    """The TCP or TLS connection to the upstream (or the proxy's tunnel to it) could not be made."""


class TransportTimeout(TransportError):
    """One of the transport's time limits passed."""


class ConnectTimeout(TransportTimeout):
    """Connecting took longer than the connect timeout."""


class ReadTimeout(TransportTimeout):
    """No byte of the answer arrived for longer than the read timeout."""


class TotalTimeout(TransportTimeout):
    """The whole exchange took longer than the total timeout."""


class RemoteClosed(TransportError):
    """The upstream closed the connection before the answer was complete."""


class ProtocolError(TransportError):
    """The upstream's answer is not valid HTTP/1.1 (or the request could not be written as such)."""


class ResponseTooLarge(TransportError):
    """The upstream's answer is larger than the transport's cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upstream's answer is larger than the limit of {limit} bytes")
        self.limit = limit


# -- the seam -----------------------------------------------------------------------------------------------------


class UpstreamResponse(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...

    async def read(self) -> bytes:
        """The whole (decoded) body, at most ``max_response_bytes`` long."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The (decoded) body piece by piece, as it arrives."""
        ...

    async def aclose(self, *, reuse: bool) -> None:
        """Done with the answer: the connection goes back to the pool only if ``reuse`` and the body was read
        to its end; otherwise it is closed."""
        ...


class Transport(Protocol):
    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> Awaitable[UpstreamResponse]:
        """Send a request once; with ``stream=False`` the body is read completely before the answer is given."""
        ...

    async def close(self) -> None: ...


# -- decoding, shared by the backends ---------------------------------------------------------------------------


class BodyDecoder:
    """A ``gzip`` or ``deflate`` body decoded in bounded steps: no single read may decode to more than the room
    the caller has left (``ResponseTooLarge``: a small compressed read can hold a huge body), a broken stream or
    one that ends early is a ``ProtocolError`` (never a quietly shorter body), and so are bytes after its end."""

    __slots__ = ("_kind", "_limit", "_zlib")

    def __init__(self, kind: Literal["gzip", "deflate"], limit: int) -> None:
        self._kind = kind
        self._limit = limit
        self._zlib: zlib._Decompress | None = None  # made at the first bytes: an empty body needs none

    @classmethod
    def for_encoding(cls, content_encoding: str | None, limit: int) -> BodyDecoder | None:
        """The decoder for a ``Content-Encoding`` value; None for identity, and for encodings the gateway never
        asks for (it sends no ``Accept-Encoding``): those bodies are passed on as they came."""
        value = (content_encoding or "").strip().lower()
        if value in ("gzip", "x-gzip"):
            return cls("gzip", limit)
        if value == "deflate":
            return cls("deflate", limit)
        return None

    def decode(self, data: bytes, room: int) -> bytes:
        """``data`` decoded; ``room`` is how many decoded bytes the caller can still take."""
        if not data:
            return b""
        if self._zlib is None:
            if self._kind == "gzip":
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:  # RFC 9110 says zlib-wrapped; some servers send raw deflate (no zlib header: CM is not 8)
                self._zlib = zlib.decompressobj(zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        elif self._zlib.eof:
            raise ProtocolError(f"the upstream's {self._kind} body has bytes after its end")
        try:
            out = self._zlib.decompress(data, max(room, 0) + 1)
        except zlib.error as exc:
            raise ProtocolError(f"the upstream's {self._kind} body is invalid: {exc}") from None
        if len(out) > room:
            raise ResponseTooLarge(self._limit)
        if self._zlib.unused_data:
            raise ProtocolError(f"the upstream's {self._kind} body has bytes after its end")
        return out

    def finish(self, room: int) -> bytes:
        """The end of the body: what the decoder still holds; a stream cut short is a ``ProtocolError``."""
        if self._zlib is None:
            return b""
        out = self._zlib.flush()
        if len(out) > room:
            raise ResponseTooLarge(self._limit)
        if not self._zlib.eof:
            raise ProtocolError(f"the upstream's {self._kind} body ended before the end of its compressed data")
        return out


# -- choosing the backend -----------------------------------------------------------------------------------------

ClientKind = Literal["auto", "h1", "aiohttp"]
# Values of GOPHERGATE_UPSTREAM_CLIENT that earlier versions accepted: still accepted, with a warning, as auto.
REMOVED_KINDS = ("pyreqwest", "hybrid")


def client_kind(setting: str) -> tuple[ClientKind, str | None]:
    """The backend choice for a ``GOPHERGATE_UPSTREAM_CLIENT`` value, and the warning to log at start if the
    value was removed."""
    if setting in ("auto", "h1", "aiohttp"):
        return setting, None  # type: ignore[return-value]
    return "auto", (
        f"GOPHERGATE_UPSTREAM_CLIENT={setting} was removed; using auto "
        "(the built-in h1 client, or aiohttp for an upstream that HTTPS_PROXY/HTTP_PROXY/ALL_PROXY applies to)"
    )


Send = Callable[..., Awaitable[UpstreamResponse]]


class _PerOrigin:
    """Sends each request through the backend chosen for its upstream origin; the choice (and the proxy, if one
    applies) is made at an origin's first request, logged once, and kept: the environment is read at start."""

    def __init__(
        self,
        kind: ClientKind,
        make_h1: Callable[[], H1Client],
        make_aiohttp: Callable[[], AiohttpClient],
        environ: Mapping[str, str],
    ) -> None:
        self._kind = kind
        self._make_h1 = make_h1
        self._make_aiohttp = make_aiohttp
        self._environ = dict(environ)
        self._h1: H1Client | None = None
        self._aiohttp: AiohttpClient | None = None
        self._origins: dict[tuple[str, str, int], Send] = {}
        self._urls: dict[str, Send] = {}

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> Awaitable[UpstreamResponse]:
        send = self._urls.get(url)
        if send is None:
            send = self._route(url)
        return send(method, url, headers, body, stream=stream)

    def _route(self, url: str) -> Send:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:  # not a port: the backend refuses the URL
            port = 0
        origin = (scheme, (parts.hostname or "").lower(), port)
        send = self._origins.get(origin)
        if send is None:
            send = self._origins[origin] = self._choose(url, origin)
        if len(self._urls) < 4096:  # the providers' few endpoints; the bound keeps odd URLs from growing it
            self._urls[url] = send
        return send

    def _choose(self, url: str, origin: tuple[str, str, int]) -> Send:
        proxy = proxy_for(url, self._environ)
        where = f"{origin[0]}://{origin[1]}:{origin[2]}"
        if proxy is None:
            return self._aiohttp_client().request if self._kind == "aiohttp" else self._h1_client().request
        if self._kind == "h1":
            log.warning(
                "GOPHERGATE_UPSTREAM_CLIENT=h1 connects directly: the proxy %s is not used for %s",
                without_credentials(proxy),
                where,
            )
            return self._h1_client().request
        shown = without_credentials(proxy)
        scheme = urlsplit(proxy).scheme.lower()
        if scheme not in ("http", "https"):
            # Not silently direct: the operator asked for a proxy. Every request to this upstream fails, saying why.
            log.error("the proxy %s for %s is not supported (only http:// and https:// proxies are)", shown, where)
            return functools.partial(_refuse, f"the proxy scheme {scheme}:// is not supported")
        log.info("upstream %s goes through the proxy %s (aiohttp)", where, shown)
        return functools.partial(self._aiohttp_client().request, proxy=proxy)

    def _h1_client(self) -> H1Client:
        if self._h1 is None:
            self._h1 = self._make_h1()
        return self._h1

    def _aiohttp_client(self) -> AiohttpClient:
        if self._aiohttp is None:
            self._aiohttp = self._make_aiohttp()
        return self._aiohttp

    async def close(self) -> None:
        if self._h1 is not None:
            await self._h1.close()
        if self._aiohttp is not None:
            await self._aiohttp.close()


async def _refuse(reason: str, *args: object, **kwargs: object) -> UpstreamResponse:
    raise ConnectError(reason)


def create_transport(
    kind: ClientKind,
    *,
    max_connections: int,
    connect_timeout: float,
    read_timeout: float,
    total_timeout: float,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    environ: Mapping[str, str] | None = None,
    stream_read_timeout: float | None = None,
) -> Transport:
    """The transport for ``kind`` (``auto``: h1, or aiohttp for an upstream a proxy applies to). Without any
    proxy variable set, that is one backend for everything and it is returned as it is."""
    # The backends import this module's errors: they are imported here, not at the top.
    from gophergate.providers.aiohttp_client import AiohttpClient
    from gophergate.providers.h1_client import H1Client

    environ = os.environ if environ is None else environ

    def make_h1() -> H1Client:
        return H1Client(
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            max_response_bytes=max_response_bytes,
            stream_read_timeout=stream_read_timeout,
        )

    def make_aiohttp() -> AiohttpClient:
        return AiohttpClient(
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            max_response_bytes=max_response_bytes,
            stream_read_timeout=stream_read_timeout,
        )

    if not any_proxy_configured(environ):
        return make_aiohttp() if kind == "aiohttp" else make_h1()
    return _PerOrigin(kind, make_h1, make_aiohttp, environ)

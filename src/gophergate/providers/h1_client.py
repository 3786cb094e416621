"""The ``h1`` transport backend: an HTTP/1.1 client on the event loop's own thread (asyncio protocol + httptools).

The socket is read by the loop's own epoll and parsed by llhttp (httptools) in the callback that received the
bytes, so an upstream answer costs the loop one wake-up and no hand-off to another thread; that makes it the
default backend (``transport.py``).

What it does, and what it leaves out on purpose:

- keep-alive connections, pooled per (scheme, host, port), newest first, closed after ``idle_timeout``;
- every address of the host name tried with Happy Eyeballs (RFC 8305, ``aiohappyeyeballs``), TCP_NODELAY;
- TLS (the default context: the system's CA store, hostname checked) for ``https://``;
- ``Content-Length``, chunked and read-until-close bodies; ``gzip``/``deflate`` bodies are decoded by
  ``transport.BodyDecoder`` (no ``Accept-Encoding`` is sent, so servers should not send them);
- a body shorter than its framing (the connection closed early) is ``RemoteClosed``; bytes past the end of the
  answer (more than its ``Content-Length``, or after its last chunk) are a ``ProtocolError`` while the answer is
  still being read, and close the connection in any case: they are never read as the next request's answer;
- a buffered body (decoded) longer than ``max_response_bytes`` is refused as it arrives (``ResponseTooLarge``),
  and so is one compressed read that would decode to more than that (a decompression bomb);
- connect timeout, read timeout (no byte for that long) and total timeout, each its own exception; the read
  and total timeouts are checked by one watchdog that ticks while requests are in flight (every quarter of
  the shorter timeout, at most every second), not by a timer per request;
- a request is never sent twice: a pooled connection is checked without writing before it is used (the peer's
  close seen by the protocol, or a zero-timeout peek at the socket showing EOF or unasked bytes) and dropped if
  dead; once any byte of a request was written, a failure is the caller's error (a POST may have been acted on);
- a stream's reading is paused when more than ``_HIGH_WATER`` bytes wait unread (a slow client downstream);
- no proxies, no redirects, no HTTP/2: it talks to the providers' API endpoints only (an upstream behind a
  proxy goes through the aiohttp backend).

It raises only the seam's exceptions (``transport.py``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohappyeyeballs
import httptools

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
    TransportError,
)

__all__ = ["H1Client", "H1Response"]

# An idle pooled connection is peeked at (one syscall) before reuse only once it has been idle this long.
PEEK_AFTER_IDLE = 0.5


_HIGH_WATER = 1 << 20  # unread stream bytes before the socket is paused
_NO_BODY_STATUSES = frozenset({204, 304})


class _Exchange:
    """One request's answer as it arrives: status and headers, then body bytes, then the end."""

    __slots__ = (
        "body",
        "done",
        "error",
        "head",
        "headers",
        "pending",
        "size",
        "status",
        "streamed",
        "waiter",
    )

    def __init__(self, streamed: bool) -> None:
        self.streamed = streamed
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []  # buffered: every chunk; streamed: chunks not yet taken
        self.pending = 0  # streamed: bytes in ``body``
        self.size = 0  # buffered: decoded body bytes so far
        self.head = False
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one exchange at a time."""

    def __init__(self, client: H1Client, key: tuple[str, str, int]) -> None:
        self._client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: _Exchange | None = None
        self._length_known = False
        self._decoder: BodyDecoder | None = None
        self._paused = False
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self.last_io = 0.0
        self._deadline = 0.0
        self._read_timeout = 0.0
        self.sock: socket.socket | None = None  # for the liveness peek; the transport owns it
        self.peer_closed = False

    # -- asyncio.Protocol --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self._exchange
        if ex is None or ex.done:
            self._overrun()
            return
        self.last_io = self._client.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            if ex.done:  # the answer was complete and more bytes followed it in the same read
                self._overrun()
            else:
                self._fail(ProtocolError(f"invalid HTTP answer from the upstream: {exc}"))

    def eof_received(self) -> bool | None:
        self.peer_closed = True  # the peer's FIN: the transport closes itself (the default); connection_lost follows
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._forget(self)
        self._client._unwatch(self)
        ex = self._exchange
        if ex is None or ex.done:
            return
        if ex.head and not self._length_known and ex.error is None:
            self._finish()  # a body delimited by the end of the connection
            return
        err = RemoteClosed("the upstream closed the connection before the answer was complete")
        if exc is not None:
            err.__cause__ = exc
        self._fail(err)

    # -- httptools callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        ex = self._exchange
        if ex is not None and ex.head:  # a second answer to one request (an interim 1xx leaves ``head`` unset)
            raise ProtocolError("the upstream sent more than one answer")  # stops the parser: see data_received

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self._exchange
        assert ex is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = ex.headers.get(key)
        ex.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        ex = self._exchange
        assert ex is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            ex.headers = {}
            return
        ex.status = status
        ex.head = True
        headers = ex.headers
        self._length_known = (
            "content-length" in headers
            or "chunked" in headers.get("transfer-encoding", "")
            or status in _NO_BODY_STATUSES
        )
        limit = self._client.max_response_bytes
        if not ex.streamed and _declared_length(headers) > limit:
            self._fail(ResponseTooLarge(limit))  # refused before a byte of the body is read
            return
        self._decoder = BodyDecoder.for_encoding(headers.get("content-encoding"), limit)
        if ex.streamed:
            self._wake(ex)

    def on_body(self, body: bytes) -> None:
        ex = self._exchange
        assert ex is not None
        if ex.error is not None:
            return
        limit = self._client.max_response_bytes
        if self._decoder is not None:
            # Bounded: one compressed read may not decode to more than the cap (a small bomb, a huge body).
            try:
                body = self._decoder.decode(body, limit if ex.streamed else limit - ex.size)
            except TransportError as exc:
                self._fail(exc)
                return
            if not body:
                return
        if not ex.streamed:
            ex.size += len(body)
            if ex.size > limit:
                self._fail(ResponseTooLarge(limit))
                return
        ex.body.append(body)
        if ex.streamed:
            ex.pending += len(body)
            if ex.pending > _HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake(ex)

    def on_message_complete(self) -> None:
        ex = self._exchange
        if ex is None or not ex.head or ex.error is not None:
            return
        self.reusable = self._parser.should_keep_alive()
        self._finish()

    # -- the exchange ------------------------------------------------------------------------------------------

    def start(self, data: bytes, streamed: bool, read_timeout: float, deadline: float) -> _Exchange:
        ex = _Exchange(streamed)
        self._exchange = ex
        self._length_known = False
        self._paused = False
        self.reusable = False
        loop = self._client.loop
        self.last_io = loop.time()
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._client._watch(self)
        assert self.transport is not None
        self.transport.write(data)
        return ex

    def _finish(self) -> None:
        ex = self._exchange
        assert ex is not None
        if self._decoder is not None:
            limit = self._client.max_response_bytes
            try:
                tail = self._decoder.finish(limit if ex.streamed else limit - ex.size)
            except TransportError as exc:
                self._fail(exc)
                return
            if tail:
                ex.body.append(tail)
                ex.pending += len(tail)
        ex.done = True
        self._client._unwatch(self)
        self._wake(ex)

    def _overrun(self) -> None:
        """Bytes after the end of the answer (more than its Content-Length, or after its last chunk), or with no
        request in flight: the answer is not what the upstream meant to send, and the connection is out of step.
        An answer still being read fails; the connection is closed either way, never reused."""
        ex = self._exchange
        if ex is not None and ex.error is None:
            ex.error = ProtocolError("the upstream sent more bytes than its answer's length")
            self._wake(ex)
        self._abort()

    def _fail(self, error: BaseException) -> None:
        ex = self._exchange
        if ex is not None and not ex.done and ex.error is None:
            ex.error = error
            self._wake(ex)
        self._abort()

    def _wake(self, ex: _Exchange) -> None:
        waiter = ex.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abort(self) -> None:
        self.reusable = False
        self._client._unwatch(self)
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def alive(self, idle_for: float) -> bool:
        """Whether an idle connection can carry a request, judged without writing to it: not closed as far as
        the protocol knows, and, once it has been idle for ``PEEK_AFTER_IDLE`` seconds, a zero-timeout peek at the
        socket finds nothing to read (EOF that the loop has not delivered yet, or bytes nobody asked for, both
        mean the connection must not be used). Peers close idle keep-alive connections after seconds, not within
        one (a server closing sooner says ``Connection: close``, and such a connection is never parked); the peek
        is a syscall that cost ~10% of the worker's samples at 64 clients when made on every request."""
        transport = self.transport
        if self.closed or self.peer_closed or transport is None or transport.is_closing():
            return False
        sock = self.sock
        if sock is None or idle_for < PEEK_AFTER_IDLE:
            return True
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True  # nothing to read: the peer has not closed
        except OSError:
            return False  # reset, or the socket is gone
        return False

    def taken(self, ex: _Exchange) -> None:
        """A streamed reader took the queued chunks: resume reading once the backlog is small."""
        ex.pending = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        """The exchange is over: back to the pool if the connection can carry another, else closed."""
        ex = self._exchange
        self._exchange = None
        self._client._unwatch(self)
        if ex is not None and ex.done and self.reusable and not self.closed and not self._paused:
            self._client._park(self)
        else:
            self._abort()
            self._client._forget(self)

    # -- timeouts: the client's watchdog calls this for every exchange in progress --------------------------

    def check_timeouts(self, now: float) -> None:
        ex = self._exchange
        if ex is None or ex.done:
            self._client._unwatch(self)
        elif now >= self._deadline:
            self._fail(TotalTimeout("the upstream did not finish the answer within the total timeout"))
        elif self._paused:  # nobody is reading: that is not the upstream's silence
            self.last_io = now
        elif now - self.last_io >= self._read_timeout:
            self._fail(ReadTimeout("the upstream sent nothing for longer than the read timeout"))


class H1Response:
    """The answer to one request (``transport.UpstreamResponse``)."""

    __slots__ = ("_client", "_conn", "_ex", "status")

    def __init__(self, client: H1Client, conn: _Connection, ex: _Exchange) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._ex = ex
        self.status = ex.status

    def header(self, name: str) -> str | None:
        return self._ex.headers.get(name.lower())

    async def read(self) -> bytes:
        ex = self._ex
        if not ex.streamed:
            return b"".join(ex.body)
        limit = self._client.max_response_bytes
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                await self.aclose(reuse=False)
                raise ResponseTooLarge(limit)
        return bytes(body)

    async def chunks(self) -> AsyncIterator[bytes]:
        ex = self._ex
        if not ex.streamed:
            if ex.body:
                yield b"".join(ex.body)
            return
        conn = self._conn
        while True:
            if ex.body:
                # Everything that arrived since the last read, as one piece: each piece costs the relay a
                # send to the client, and one socket read often holds many upstream chunks.
                body = ex.body
                ex.body = []
                if conn is not None:
                    conn.taken(ex)
                yield body[0] if len(body) == 1 else b"".join(body)
                continue
            if ex.error is not None:
                raise ex.error
            if ex.done:
                break
            await self._client._wait(ex)
        self._done()

    def _done(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.release()

    async def aclose(self, *, reuse: bool) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if not (reuse and self._ex.done):
                conn.reusable = False
            conn.release()


class H1Client:
    """Pooled keep-alive HTTP/1.1 connections on the running loop (``transport.Transport``)."""

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        idle_timeout: float = 30.0,
        user_agent: str = "gophergate",
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        stream_read_timeout: float | None = None,
    ) -> None:
        self._max = max_connections
        self.max_response_bytes = max_response_bytes
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # A stream idle for this long is cut (routing's stream_idle_timeout_s); it never lengthens the read timeout.
        self._stream_read_timeout = min(read_timeout, stream_read_timeout or read_timeout)
        self._total_timeout = total_timeout
        self._idle_timeout = idle_timeout
        self._user_agent = user_agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._ssl = ssl_context  # None: the default context, made at the first https:// request
        self._sweeper: asyncio.TimerHandle | None = None
        self._targets: dict[str, tuple[tuple[str, str, int], bytes, str]] = {}
        self._closed = False
        # Timeouts: one watchdog ticks while exchanges are in progress, instead of a timer armed and cancelled
        # per request (measured ~2% of the loop's time at 64 clients). A timeout fires within one tick late.
        self._active: set[_Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick = min(1.0, self._stream_read_timeout / 4, total_timeout / 4)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> H1Response:
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        key, host_header, target = self._target(url)
        data = self._serialize(method, target, host_header, headers, body)
        deadline = self.loop.time() + self._total_timeout
        # Sent once: a pooled connection found dead is dropped before anything is written to it (``_take_idle``),
        # but whatever fails after the first byte went out is the caller's to judge, never resent from here.
        conn = await self._acquire(key, deadline)
        ex = conn.start(data, stream, self._stream_read_timeout if stream else self._read_timeout, deadline)
        try:
            while not (ex.head if stream else ex.done) and ex.error is None:
                await self._wait(ex)
        except BaseException:
            conn.reusable = False
            conn.release()
            raise
        if ex.error is not None:
            conn.release()
            raise ex.error
        response = H1Response(self, conn, ex)
        if not stream:
            response._done()
        return response

    async def _wait(self, ex: _Exchange) -> None:
        waiter = self.loop.create_future()
        ex.waiter = waiter
        try:
            await waiter
        finally:
            ex.waiter = None

    # -- request bytes -----------------------------------------------------------------------------------------

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes, str]:
        """(pool key, Host header, request target) of a URL; the providers' few endpoints are cached."""
        cached = self._targets.get(url)
        if cached is not None:
            return cached
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ProtocolError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        path = _ascii_path(path)
        _check_header_text(path, "request target")
        result = ((scheme, host, port), netloc.encode("idna"), path)
        if len(self._targets) < 4096:
            self._targets[url] = result
        return result

    def _serialize(self, method: str, target: str, host: bytes, headers: dict[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\nHost: ".encode("ascii"), host, b"\r\n"]
        has_agent = False
        for name, value in headers.items():
            lname = name.lower()
            if lname in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if lname == "user-agent":
                has_agent = True
            _check_header_text(name, "header name")
            _check_header_text(value, f"header {name!r}")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not has_agent:
            lines.append(f"User-Agent: {self._user_agent}\r\n".encode("latin-1"))
        if body is not None:
            lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
            lines.append(body)
        else:
            lines.append(b"\r\n")
        return b"".join(lines)

    # -- the pool ----------------------------------------------------------------------------------------------

    async def _acquire(self, key: tuple[str, str, int], deadline: float) -> _Connection:
        conn = self._take_idle(key)
        while conn is None and len(self._open) >= self._max:
            if self._close_an_idle_connection():  # a slot held by another host's idle connection
                break
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise TotalTimeout("no upstream connection became free within the total timeout") from None
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
            conn = self._take_idle(key)
        return conn if conn is not None else await self._connect(key)

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        """The most recently parked live connection to ``key`` (dead ones found on the way are closed)."""
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.alive(now - conn.idle_since):
                return conn
            conn._abort()
            self._open.discard(conn)
        return None

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        conn = _Connection(self, key)
        self._open.add(conn)
        context = self._ssl_context() if scheme == "https" else None
        loop = self.loop
        try:
            async with asyncio.timeout(self._connect_timeout):
                # Every address the name has, tried the RFC 8305 way: a next one 0.25 s after the previous was
                # tried, so a broken IPv6 route costs a quarter second, not the connect timeout. (uvloop's own
                # create_connection tries them one after the other.)
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25, interleave=1)
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.sock = sock
                    await loop.create_connection(
                        lambda: conn, sock=sock, ssl=context, server_hostname=host if context else None
                    )
                except BaseException:  # the TLS handshake failed, or the connect timed out during it
                    sock.close()
                    raise
        except TimeoutError:
            self._forget(conn)
            raise ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS failure, TLS handshake failure
            self._forget(conn)
            raise ConnectError(f"could not connect to {host}:{port}: {exc.strerror or type(exc).__name__}") from exc
        except BaseException:
            self._forget(conn)
            raise
        return conn

    def _watch(self, conn: _Connection) -> None:
        self._active.add(conn)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._tick, self._check_timeouts)

    def _unwatch(self, conn: _Connection) -> None:
        self._active.discard(conn)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        for conn in list(self._active):
            conn.check_timeouts(now)
        if self._active and not self._closed:
            self._watchdog = self.loop.call_later(self._tick, self._check_timeouts)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _close_an_idle_connection(self) -> bool:
        for idle in self._idle.values():
            if idle:
                conn = idle.pop(0)  # the oldest
                conn._abort()
                self._open.discard(conn)
                return True
        return False

    def _park(self, conn: _Connection) -> None:
        if self._closed:
            conn._abort()
            self._forget(conn)
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._notify_slot()
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._idle_timeout, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._notify_slot()

    def _notify_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle for longer than ``idle_timeout`` (servers drop them sooner or later)."""
        self._sweeper = None
        cutoff = self.loop.time() - self._idle_timeout
        left = False
        for idle in self._idle.values():
            stale = [conn for conn in idle if conn.idle_since <= cutoff]
            for conn in stale:
                idle.remove(conn)
                conn._abort()
                self._open.discard(conn)
            left = left or bool(idle)
        if left and not self._closed:
            self._sweeper = self.loop.call_later(self._idle_timeout / 2, self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._active.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn._abort()
        self._open.clear()
        self._idle.clear()


def _declared_length(headers: dict[str, str]) -> int:
    """The Content-Length an answer declares (0 when absent; llhttp has refused a malformed one already)."""
    value = headers.get("content-length")
    if value is None:
        return 0
    try:
        return int(value.split(",")[0])
    except ValueError:
        return 0


def _check_header_text(text: str, what: str) -> None:
    """Refuse what would split the request (a CR, LF or NUL in a configured header or URL)."""
    if "\r" in text or "\n" in text or "\0" in text:
        raise ProtocolError(f"the {what} of the upstream request contains a line break or NUL")


def _ascii_path(path: str) -> str:
    if path.isascii():
        return path
    from urllib.parse import quote

    return quote(path, safe="/?&=%:@!$'()*+,;~-._")

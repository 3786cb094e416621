"""HTTP/1.1 for an ASGI app: one asyncio protocol per connection on the worker's event loop, requests parsed by
httptools (llhttp).

Why not Granian: Granian does its socket I/O on Rust threads and hands every request and every response message
across to the Python thread and back; on this VM a hello-world ASGI app on Granian answered at p50 0.26 ms (the
fake upstream directly: ~0.03 ms). Here a request is parsed, answered and written on the loop's own thread, and a
whole response goes out in one ``write``. Interleaved, whole gateway on each: 1-client p50 0.17-0.22 ms against
0.23-0.33 ms, 64 clients 6.8-7.5k against 4.6-6.3k req/s.

What a connection does:
- keep-alive, and pipelining (requests that arrive while one is answered wait their turn, reading is paused);
- request bodies streamed to ``receive()`` as they arrive; reading pauses while 1 MiB waits unread;
- ``Expect: 100-continue`` answered when the app first asks for the body;
- response bodies: one write of head and body when the whole body comes in one message (``content-length``
  added when the app gave none), else ``content-length`` framing when given, else chunked; never a body for
  HEAD, 1xx, 204 or 304;
- backpressure: ``send()`` waits while the transport's buffer is over its high-water mark;
- a client that goes away: ``receive()`` answers ``http.disconnect``, ``send()`` raises ``ClientGone``;
- limits: 64 KiB for the request line and headers (431), an idle keep-alive timeout, a deadline for a request's
  head to arrive and one for its whole body (408, slow-loris: time spent while reading is paused for the app does
  not count), all checked by the server's one-second tick; the server's own error answers are OpenAI-style JSON;
- shutdown: idle connections close at once; a busy one closes after its current answer (``connection: close``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
import orjson

log = logging.getLogger("gophergate.server")

MAX_HEAD_BYTES = 64 * 1024
_BODY_HIGH_WATER = 1024 * 1024

_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in _PHRASES.items()}
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class ClientGone(OSError):
    """A response message was sent to a connection the client has closed."""


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


_ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    431: "request_header_fields_too_large",
    500: "internal_error",
}


_INTERNAL = "The gateway hit an internal error; it has been logged."
# A request body that is not valid HTTP/1.1 (e.g. broken chunked framing): the app's receive() then returns
# http.disconnect with this key holding the reason, so an app that knows it can answer 400 (the /v1 handlers do,
# and log it); an app that does not answer gets the 400 from the server. Either way the connection then closes.
BODY_ERROR = "gophergate.body_error"
# A backstop for apps that leave a body unread: the gateway's /v1 reads every body within its own deadline
# (GOPHERGATE_BODY_TIMEOUT_SECONDS, 60 s by default), which answers first, with a log row.
BODY_TIMEOUT = 90.0
_BAD_BODY = "The request body is not valid HTTP/1.1 (its chunked framing is broken)."


def _error_response(status: int, message: str, date: bytes) -> bytes:
    """An answer from the server itself (the app never saw the request, or failed before answering), in the same
    OpenAI error shape as the app's own; the connection closes after it."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": None, "code": _ERROR_CODES.get(status)}
    body = orjson.dumps({"error": error})
    return b"".join(
        (
            _status_line(status),
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body),
            date,
            b"\r\n",
            body,
        )
    )


class ServerState:
    """What every connection of one worker shares: the app, the live connections, the cached date header."""

    def __init__(
        self,
        app: Any,
        *,
        keepalive_timeout: float = 65.0,
        head_timeout: float = 30.0,
        body_timeout: float = BODY_TIMEOUT,
        lifespan_state: dict[str, Any] | None = None,
        websocket: Any = None,
    ) -> None:
        self.app = app
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.lifespan_state = lifespan_state if lifespan_state is not None else {}
        self.websocket = websocket  # a callable taking over upgraded connections, or None
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.date = b""
        self.tick()

    def tick(self) -> None:
        """Once a second: refresh the date header, close connections idle or slow past their deadline."""
        self.date = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_deadline(now)

    def close_idle(self) -> None:
        self.closing = True
        for conn in list(self.connections):
            conn.shutdown()


class WriteFlow(asyncio.Protocol):
    """The transport's write flow control, for the connection protocols: ``drain()`` waits while the transport's
    buffer is over its high-water mark (or returns at once when the connection is lost)."""

    __slots__ = ("drain_waiters", "loop", "write_paused")
    loop: asyncio.AbstractEventLoop
    write_paused: bool
    drain_waiters: list[asyncio.Future[None]]

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        if self.write_paused:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter


class HttpConnection(WriteFlow):
    __slots__ = (
        "body_checked",
        "body_waited",
        "client",
        "closed",
        "cycle",
        "head_bytes",
        "head_started",
        "headers",
        "idle_since",
        "parser",
        "pipeline",
        "reading_paused",
        "scheme",
        "server",
        "state",
        "transport",
        "url",
        "websocket_upgrade",
    )  # fmt: skip

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: Cycle | None = None  # the request being answered
        self.pipeline: deque[Cycle] = deque()  # requests read while an earlier one is answered
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_started: float | None = None
        self.idle_since = time.monotonic()
        self.reading_paused = False
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.websocket_upgrade = False  # the request being read asks for a WebSocket: hand the connection over
        # Seconds spent reading the body of the request being read (None when there is none), and when that was
        # last added up: the whole body must arrive within ``body_timeout`` of reading time.
        self.body_waited: float | None = None
        self.body_checked = 0.0

    # -- transport events -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        if self.cycle is not None:
            self.cycle.gone()
        for waiting in self.pipeline:
            waiting.gone()
        self.pipeline.clear()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :] if exc.args else b"")
        except httptools.HttpParserError:
            if self.head_bytes > MAX_HEAD_BYTES:  # raised by on_url/on_header, wrapped by the parser
                self._refuse(431, "The request line and headers exceed 64 KiB.")
            else:
                self._refuse(400, "The request is not valid HTTP/1.1.")

    # -- parser callbacks -------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.head_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()
        if self.head_started is not None:  # else a trailer field of a chunked body: counted, not a request header
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_started = None
        parser = self.parser
        if parser.should_upgrade() and self.state.websocket is not None and _is_websocket(self.headers):
            self.websocket_upgrade = True
            return  # data_received hands the connection over (HttpParserUpgrade)
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
            if b"#" in query:
                query = query.partition(b"#")[0]
        else:  # absolute form (http://host/path) or "*"
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise httptools.HttpParserError("invalid URL") from None
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        text = raw_path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.state.lifespan_state.copy(),
        }
        self.body_waited = 0.0  # until the message is complete (at once when it has no body)
        self.body_checked = time.monotonic()
        keep_alive = parser.should_keep_alive() and not self.state.closing and not parser.should_upgrade()
        cycle = Cycle(self, scope, keep_alive)
        if self.cycle is None:
            self.cycle = cycle
            self._start(cycle)
        else:
            self.pipeline.append(cycle)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if cycle is not None:
            cycle.feed(body)

    def on_message_complete(self) -> None:
        self.body_waited = None
        cycle = self.pipeline[-1] if self.pipeline else self.cycle
        if cycle is not None:
            cycle.complete()
        self.idle_since = time.monotonic()

    # -- requests ---------------------------------------------------------------------------------------------
    def _start(self, cycle: Cycle) -> None:
        task = self.loop.create_task(cycle.run(self.state.app))
        tasks = self.state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def finished(self, cycle: Cycle) -> None:
        """``cycle`` sent its whole answer: close, or go on with the next request."""
        self.cycle = None
        self.idle_since = time.monotonic()
        if self.closed:
            return
        if not cycle.keep_alive or not cycle.request_complete:
            # An unread body cannot be skipped safely on a connection that stays open: close it.
            self.transport.close()
            return
        if self.pipeline:
            self.cycle = self.pipeline.popleft()
            self._start(self.cycle)
        if self.reading_paused and not self.pipeline:
            self.reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and not self.pipeline:
            self.reading_paused = False
            self.transport.resume_reading()

    def check_deadline(self, now: float) -> None:
        if self.closed:
            return
        if self.head_started is not None:
            if now - self.head_started > self.state.head_timeout:
                self._refuse(408, "The request's head did not arrive in time.")
        elif self.body_waited is not None:
            # A body that does not arrive whole in time (a pause because the app is not reading it does not count):
            # slow-loris on the body, also when it trickles a byte now and then.
            if not self.reading_paused:
                self.body_waited += now - self.body_checked
            self.body_checked = now
            if self.body_waited > self.state.body_timeout:
                self._body_timeout()
        elif self.cycle is None and not self.pipeline and now - self.idle_since > self.state.keepalive_timeout:
            self.transport.close()

    def _body_timeout(self) -> None:
        reading = self.pipeline[-1] if self.pipeline else self.cycle
        if reading is not None and not reading.head_written and reading is self.cycle:
            reading.head_written = True  # the app may not answer any more
            self.transport.write(_error_response(408, "The request body did not arrive in time.", self.state.date))
        if self.cycle is not None:
            self.cycle.gone()  # the app hears http.disconnect; its sends raise
        self.transport.close()

    def shutdown(self) -> None:
        """The server is stopping: close now when idle, else after the current answer."""
        if self.cycle is None and not self.pipeline:
            self.transport.close()
        else:
            if self.cycle is not None:
                self.cycle.keep_alive = False
            for waiting in self.pipeline:
                waiting.keep_alive = False

    def _refuse(self, status: int, text: str) -> None:
        """Answer a request that cannot be read with ``status`` and close; one that is being answered first
        finishes its answer (the connection then closes), nothing after it is read. A request whose body breaks
        off malformed is answered 400 (see ``BODY_ERROR``)."""
        if self.cycle is None:
            self.transport.write(_error_response(status, text, self.state.date))
            self.transport.close()
            return
        reading = self.pipeline[-1] if self.pipeline else self.cycle
        if not reading.request_complete:
            reading.fail_body(_BAD_BODY if status == 400 else text)
            self._pause_reading()
        else:
            self.cycle.keep_alive = False
            for waiting in self.pipeline:
                waiting.gone()
            self.pipeline.clear()
            self._pause_reading()

    def _upgrade(self, rest: bytes) -> None:
        if not self.websocket_upgrade:
            # Another protocol (h2c, ...): the request is answered as plain HTTP/1.1, then the connection closes
            # (the parser reads nothing after an upgrade request).
            self._pause_reading()
            return
        if self.cycle is not None or self.pipeline:  # an upgrade behind a request still being answered
            self.transport.close()
            return
        self.state.connections.discard(self)
        self.state.websocket(self, rest)


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing; httptools wraps it, data_received answers 431."""


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def _is_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"upgrade":
            return value.lower() == b"websocket"
    return False


class Cycle:
    """One request and its answer, as the ASGI ``receive``/``send`` pair."""

    __slots__ = (
        "body",
        "body_delivered",
        "body_error",
        "body_size",
        "chunked",
        "conn",
        "disconnected",
        "expect_continue",
        "head_written",
        "headers",
        "is_head",
        "keep_alive",
        "request_complete",
        "response_complete",
        "response_started",
        "scope",
        "status",
        "waiter",
    )  # fmt: skip

    def __init__(self, conn: HttpConnection, scope: dict[str, Any], keep_alive: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.body: list[bytes] = []
        self.body_size = 0
        self.request_complete = False
        self.disconnected = False
        self.body_error: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.body_delivered = False  # receive() has returned the body's last part
        self.response_started = False
        self.head_written = False
        self.response_complete = False
        self.chunked = False
        self.is_head = scope["method"] == "HEAD"
        self.expect_continue = False
        for name, value in scope["headers"]:
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_continue = True
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []

    # -- from the connection ----------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self.body.append(chunk)
        self.body_size += len(chunk)
        if self.body_size > _BODY_HIGH_WATER:
            self.conn._pause_reading()
        self._wake()

    def complete(self) -> None:
        self.request_complete = True
        self._wake()

    def gone(self) -> None:
        self.disconnected = True
        self._wake()

    def fail_body(self, reason: str) -> None:
        """The rest of the body cannot be read: receive() reports ``reason`` once the good part is delivered."""
        self.body_error = reason
        self.keep_alive = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- ASGI -------------------------------------------------------------------------------------------------
    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._abort()
                raise
            if not self.disconnected and self.body_error is None:
                log.error("the app failed on %s %s", self.scope["method"], self.scope["path"], exc_info=exc)
            self._answer_unanswered()
            self._abort()
            if not isinstance(exc, Exception):
                raise
            return
        if not self.response_complete:
            if not self.head_written and not self.disconnected and self.body_error is None:
                log.error("the app returned no response for %s %s", self.scope["method"], self.scope["path"])
            self._answer_unanswered()
            self._abort()

    def _answer_unanswered(self) -> None:
        """The server's own answer to a request the app left unanswered: 400 for a malformed body, else 500."""
        if not self.head_written and not self.disconnected:
            status, text = (500, _INTERNAL) if self.body_error is None else (400, self.body_error)
            self.conn.transport.write(_error_response(status, text, self.conn.state.date))

    def _abort(self) -> None:
        if not self.response_complete:
            self.response_complete = True
            self.keep_alive = False
            self._wake()
            self.conn.finished(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue and not self.disconnected:
            self.expect_continue = False
            if not self.request_complete and not self.body:
                self.conn.transport.write(_CONTINUE)
        if self.body_delivered:  # nothing more to read: wait for the client to leave or the answer to end
            while not self.disconnected and not self.response_complete:
                self.waiter = self.conn.loop.create_future()
                await self.waiter
            return {"type": "http.disconnect"}
        while not self.body and not self.request_complete and not self.disconnected and self.body_error is None:
            waiter = self.conn.loop.create_future()
            self.waiter = waiter
            await waiter
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if self.body_error is not None and not self.body:
            return {"type": "http.disconnect", BODY_ERROR: self.body_error}
        if self.body:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.body = []
            self.body_size = 0
            self.conn._resume_reading()
        else:
            body = b""
        more = not self.request_complete
        if not more:
            self.body_delivered = True
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        conn = self.conn
        if self.disconnected:
            raise ClientGone("the client closed the connection")
        if kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.response_complete:
                raise RuntimeError("http.response.body after the response was complete")
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            bodiless = self.is_head or self.status in _NO_BODY_STATUS or self.status < 200
            if not self.head_written:
                head = self._head(len(body) if not more else None)
                self.head_written = True
                if bodiless or not body:
                    conn.transport.write(head + b"0\r\n\r\n" if self.chunked and not more and not bodiless else head)
                elif self.chunked:
                    tail = b"" if more else b"0\r\n\r\n"
                    conn.transport.write(b"%b%x\r\n%b\r\n%b" % (head, len(body), body, tail))
                else:
                    conn.transport.write(head + body)
            elif not bodiless:
                if self.chunked:
                    if body:
                        tail = b"" if more else b"0\r\n\r\n"
                        conn.transport.write(b"%x\r\n%b\r\n%b" % (len(body), body, tail))
                    elif not more:
                        conn.transport.write(b"0\r\n\r\n")
                elif body:
                    conn.transport.write(body)
            if not more:
                self.response_complete = True
                self._wake()
                conn.finished(self)
            elif conn.write_paused and not conn.closed:
                await conn.drain()
                if self.disconnected:
                    raise ClientGone("the client closed the connection")
        elif kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("http.response.start sent twice")
            self.response_started = True
            self.status = int(message["status"])
            self.headers = message.get("headers", [])
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _head(self, whole: int | None) -> bytes:
        """The status line and headers. ``whole`` is the body's size when the first body message is the last."""
        status = self.status
        parts = [_status_line(status)]
        length: int | None = None
        # A body still unread when the answer starts cannot be skipped safely: the connection ends after it.
        keep_alive = self.keep_alive and self.request_complete
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"connection":
                if value.lower() == b"close":
                    keep_alive = False
                continue
            elif lname == b"transfer-encoding":
                continue
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise RuntimeError(f"invalid response header {name!r}")
            parts.append(b"%s: %s\r\n" % (name, value))
        if status >= 200 and status not in _NO_BODY_STATUS:
            if length is None:
                if whole is not None:
                    parts.append(b"content-length: %d\r\n" % whole)
                elif self.scope["http_version"] == "1.1":
                    self.chunked = True
                    parts.append(b"transfer-encoding: chunked\r\n")
                else:
                    keep_alive = False  # HTTP/1.0 without a length: the end of the connection ends the body
        self.keep_alive = keep_alive
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(self.conn.state.date)
        parts.append(b"\r\n")
        return b"".join(parts)

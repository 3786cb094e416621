"""The ASGI app served on Granian's RSGI interface: ``RSGIAdapter(app)`` is the RSGI app.

Granian's ASGI interface turns every ``send`` into a message dict parsed on its Rust side and a future resolved
across its threads: on a one-core worker that cost ~15 us per stream chunk, more than the relay's own work per
chunk (decision 0001). Its RSGI interface takes a response's bytes directly (``response_bytes``, or a stream
transport's ``send_bytes``, which queues the chunk and returns at once). The app stays one ASGI app (it also runs
on uvicorn); this adapter speaks ASGI to it and RSGI to Granian. What it maps:

- The scope. Granian has already percent-decoded the path (as ASGI's ``path``); header values it could not
  decode as UTF-8 it leaves out, and the rest are encoded back to the bytes they came from.
- The body. A request with a ``Content-Length`` is read whole by Granian (a body that breaks off is reported as
  ``http.disconnect``, so the app answers 400); a chunked one is passed on chunk by chunk, so that the app's
  size limit holds while it arrives (broken framing is a disconnect too); a request with neither has no body.
  After the body, ``receive`` waits for the client to leave (``http.disconnect``).
- The response. A whole body is one ``response_bytes``; a streamed one is ``response_stream`` and a
  ``send_bytes`` per chunk, and it ends at the message without ``more_body`` (the transport is let go, which
  ends the body), not when the app returns. A write to a client that has gone raises ``ConnectionError``.
- WebSockets: ``websocket.accept`` is RSGI's ``accept``; a close before it is the handshake refused with 403;
  a close after it ends the connection with a close frame (Granian 2.8 sends it without the code; decision
  0001).
"""

from __future__ import annotations

from typing import Any

from gophergate.core.asgi import Message, Scope

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_WS_SCHEMES = {"http": "ws", "https": "wss"}
_DISCONNECT: Message = {"type": "http.disconnect"}
_LAST: Message = {"type": "http.request", "body": b"", "more_body": False}


def _address(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) as ASGI's (host, port)."""
    host, _, port = text.rpartition(":")
    if not host:
        return None
    if host.startswith("["):
        host = host[1:-1]
    try:
        return host, int(port)
    except ValueError:
        return host, 0


def _headers(scope: Any) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode()) for name, value in scope.headers.items()]


def _wire_headers(headers: Any) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode(errors="replace")) for name, value in headers]


class RSGIAdapter:
    """An RSGI app (``__rsgi__``) that serves the ASGI app ``app`` (its lifespan is run by the worker)."""

    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "http":
            exchange = _HTTPExchange(proto)
            headers = scope.headers
            if "transfer-encoding" in headers:
                exchange.chunked = True
            elif "content-length" in headers:
                exchange.sized = True
            asgi_scope: Scope = {
                "type": "http",
                "asgi": _ASGI,
                "http_version": scope.http_version,
                "method": scope.method,
                "scheme": scope.scheme,
                "path": scope.path,
                "query_string": scope.query_string.encode("latin-1"),
                "root_path": "",
                "headers": [(name.encode("latin-1"), value.encode()) for name, value in headers.items()],
                "client": _address(scope.client),
                "server": _address(scope.server),
            }
            await self.app(asgi_scope, exchange.receive, exchange.send)
            exchange.stream = None  # ends a streamed body the app left open
        elif scope.proto == "ws":
            ws_scope: Scope = {
                "type": "websocket",
                "asgi": _ASGI,
                "http_version": scope.http_version,
                "scheme": _WS_SCHEMES.get(scope.scheme, "ws"),
                "path": scope.path,
                "query_string": scope.query_string.encode("latin-1"),
                "root_path": "",
                "headers": _headers(scope),
                "client": _address(scope.client),
                "server": _address(scope.server),
                "subprotocols": [],
            }
            websocket = _WebSocket(proto)
            try:
                await self.app(ws_scope, websocket.receive, websocket.send)
            finally:
                websocket.end()


class _HTTPExchange:
    """One request's ``receive`` and ``send``."""

    __slots__ = ("body_read", "chunked", "chunks", "done", "headers", "proto", "sized", "status", "stream")

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.chunked = False
        self.sized = False
        self.body_read = False
        self.chunks: Any = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.stream: Any = None
        self.done = False

    async def receive(self) -> Message:
        if not self.body_read:
            if self.chunked:
                return await self._next_chunk()
            self.body_read = True
            if not self.sized:
                return _LAST
            try:
                body = await self.proto()
            except RuntimeError:  # the body broke off (RSGIProtocolClosed), or the client left
                return _DISCONNECT
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.done:
            await self.proto.client_disconnect()
        return _DISCONNECT

    async def _next_chunk(self) -> Message:
        """The next chunk of a chunked body. Granian's body iterator gives an empty chunk at the end, then stops;
        where the body broke off (bad framing, a connection that ended), it gives an empty chunk for the error,
        then the end's: so an empty chunk that is not followed by the end is a broken body (so is a body with
        trailers, which it gives as an empty chunk too; no LLM client sends them)."""
        try:
            if self.chunks is None:
                self.chunks = self.proto.__aiter__()
            chunk = await self.chunks.__anext__()
            if chunk:
                return {"type": "http.request", "body": chunk, "more_body": True}
            self.body_read = True
            await self.chunks.__anext__()
        except StopAsyncIteration:
            self.body_read = True
            return _LAST
        except RuntimeError:
            self.body_read = True
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.done:
                raise RuntimeError("the response is complete")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            stream = self.stream
            if stream is None:
                if not self.status:
                    raise RuntimeError("http.response.body before http.response.start")
                if not more:
                    self.done = True
                    self.proto.response_bytes(self.status, self.headers, body)
                    return
                stream = self.stream = self.proto.response_stream(self.status, self.headers)
            if body:
                try:
                    await stream.send_bytes(body)
                except RuntimeError as exc:  # RSGIProtocolClosed: the client has gone
                    self.done = True
                    self.stream = None
                    raise ConnectionError("the client closed the connection") from exc
            if not more:
                self.done = True
                self.stream = None  # the transport's end is the body's end
        elif kind == "http.response.start":
            if self.status:
                raise RuntimeError("http.response.start sent twice")
            self.status = message["status"]
            self.headers = _wire_headers(message.get("headers", ()))
        else:
            raise RuntimeError(f"unsupported ASGI message {kind!r}")


class _WebSocket:
    """One WebSocket's ``receive`` and ``send``."""

    __slots__ = ("closed", "connected", "proto", "transport")

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.transport: Any = None
        self.connected = False
        self.closed = False

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.transport is None or self.closed:
            return {"type": "websocket.disconnect", "code": 1006}
        try:
            message = await self.transport.receive()
        except RuntimeError:  # the connection ended without a close frame
            self.closed = True
            return {"type": "websocket.disconnect", "code": 1006}
        kind = int(message.kind)
        if kind == 0:  # close
            self.closed = True
            return {"type": "websocket.disconnect", "code": 1000}
        if kind == 1:
            return {"type": "websocket.receive", "bytes": message.data}
        return {"type": "websocket.receive", "text": message.data}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.closed:
            if kind == "websocket.close":
                return  # closed already (by the client, or dropped)
            raise ConnectionError("the WebSocket is closed")
        if kind == "websocket.send":
            if self.transport is None:
                raise RuntimeError("websocket.send before websocket.accept")
            text = message.get("text")
            try:
                if text is not None:
                    await self.transport.send_str(text)
                else:
                    await self.transport.send_bytes(message.get("bytes") or b"")
            except RuntimeError as exc:
                self.closed = True
                raise ConnectionError("the client closed the connection") from exc
        elif kind == "websocket.accept":
            if self.transport is not None:
                raise RuntimeError("websocket.accept sent twice")
            try:
                self.transport = await self.proto.accept()
            except RuntimeError as exc:
                self.closed = True
                raise ConnectionError("the client left during the handshake") from exc
        elif kind == "websocket.close":
            self.closed = True
            # Before the accept, RSGI's close takes the HTTP status of the refused handshake.
            self.proto.close(403 if self.transport is None else int(message.get("code", 1000)))
        else:
            raise RuntimeError(f"unsupported ASGI message {kind!r}")

    def end(self) -> None:
        """The app returned: a handshake it neither accepted nor refused is refused; an open connection closed."""
        if not self.closed:
            self.closed = True
            self.proto.close(403 if self.transport is None else 1000)

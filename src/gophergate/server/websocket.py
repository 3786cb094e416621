"""WebSockets for the ASGI app: an upgraded HTTP/1.1 connection is handed to a protocol that speaks RFC 6455 with
wsproto (handshake, framing, ping/pong, close) and to the app as the ASGI ``websocket`` scope.

Incoming messages are limited to 1 MiB (close 1009 beyond). A close from the app before it accepted is an HTTP 403.
On shutdown every WebSocket is closed with 1001 and the app hears ``websocket.disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from gophergate.server.http11 import WriteFlow

if TYPE_CHECKING:
    from gophergate.server.http11 import HttpConnection, ServerState

log = logging.getLogger("gophergate.server")

MAX_MESSAGE_BYTES = 1024 * 1024
GOING_AWAY = 1001
_ABNORMAL = 1006


class WebSocketHandOff:
    """Takes over upgraded connections; remembers the live ones so that a stop can close them."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.live: set[WebSocketConnection] = set()

    def __call__(self, http: HttpConnection, rest: bytes) -> None:
        head = [b"GET ", http.url, b" HTTP/1.1\r\n"]
        for name, value in http.headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        conn = WebSocketConnection(self, http)
        http.transport.set_protocol(conn)
        conn.feed(b"".join(head) + rest)

    def close_all(self) -> None:
        for conn in list(self.live):
            conn.going_away()


class WebSocketConnection(WriteFlow):
    def __init__(self, owner: WebSocketHandOff, http: HttpConnection) -> None:
        self.owner = owner
        self.loop = http.loop
        self.transport = http.transport
        self.client = http.client
        self.server = http.server
        self.secure = http.scheme == "https"
        self.ws = WSConnection(ConnectionType.SERVER)
        self.inbox: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.fragments: list[Any] = []
        self.fragment_size = 0
        self.accepted = False
        self.closed = False  # the app may send nothing more
        self.gone = False  # the app was told websocket.disconnect
        self.connected = False  # the app was started
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None
        owner.live.add(self)

    # -- transport events -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.live.discard(self)
        self._disconnected(_ABNORMAL)
        self._wake_writers()

    # -- frames in --------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._on_event(event)
        except RemoteProtocolError as exc:
            if not self.connected:
                self.transport.write(self.ws.send(exc.event_hint) if exc.event_hint else b"")
            self._disconnected(1002)
            self.transport.close()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Request):
            self._start(event)
        elif isinstance(event, (TextMessage, BytesMessage)):
            self.fragment_size += len(event.data)
            if self.fragment_size > MAX_MESSAGE_BYTES:
                self._close_now(1009)
                return
            self.fragments.append(event.data)
            if event.message_finished:
                message: dict[str, Any]
                if isinstance(event, TextMessage):
                    message = {"type": "websocket.receive", "text": "".join(self.fragments)}
                else:
                    message = {"type": "websocket.receive", "bytes": b"".join(self.fragments)}
                self.fragments = []
                self.fragment_size = 0
                self._deliver(message)
        elif isinstance(event, Ping):
            self._write(event.response())
        elif isinstance(event, CloseConnection):
            if not self.closed:
                self._write(event.response())
            self._disconnected(event.code)
            self.transport.close()

    def _start(self, request: Request) -> None:
        raw_path, _, query = request.target.encode("latin-1").partition(b"?")
        text = raw_path.decode("latin-1")
        headers = [(name.lower(), value) for name, value in request.extra_headers]
        headers.append((b"host", request.host.encode("latin-1")))
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "wss" if self.secure else "ws",
            "server": self.server,
            "client": self.client,
            "root_path": "",
            "path": unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "subprotocols": list(request.subprotocols),
            "state": self.owner.state.lifespan_state.copy(),
        }
        self.connected = True
        self.inbox.append({"type": "websocket.connect"})
        self.task = self.loop.create_task(self._run(scope))
        tasks = self.owner.state.tasks
        tasks.add(self.task)
        self.task.add_done_callback(tasks.discard)

    def _deliver(self, message: dict[str, Any]) -> None:
        self.inbox.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _disconnected(self, code: int) -> None:
        self.closed = True
        if not self.gone:
            self.gone = True
            self._deliver({"type": "websocket.disconnect", "code": code})

    def _close_now(self, code: int) -> None:
        if not self.closed:
            self._write(CloseConnection(code=code))
        self._disconnected(code)
        self.transport.close()

    def going_away(self) -> None:
        """The server is stopping."""
        if self.accepted:
            self._close_now(GOING_AWAY)
        else:
            self._disconnected(GOING_AWAY)
            self.transport.close()

    def _write(self, event: Any) -> None:
        try:
            data = self.ws.send(event)
        except LocalProtocolError:
            return
        if not self.transport.is_closing():
            self.transport.write(data)

    # -- ASGI -------------------------------------------------------------------------------------------------
    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.owner.state.app(scope, self.receive, self.send)
        except Exception as exc:
            log.error("the app failed on WebSocket %s", scope["path"], exc_info=exc)
        if not self.accepted and not self.transport.is_closing():
            self._write(RejectConnection(status_code=500 if not self.closed else 403))
        elif not self.closed:
            self._close_now(1011)
        self.closed = True
        self.transport.close()

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.inbox.popleft()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.closed:
            raise OSError("the WebSocket is closed")
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                self._write(TextMessage(data=text))
            else:
                self._write(BytesMessage(data=message.get("bytes") or b""))
            await self.drain()
        elif kind == "websocket.accept":
            if self.accepted:
                raise RuntimeError("websocket.accept sent twice")
            self.accepted = True
            extra = [(bytes(name), bytes(value)) for name, value in message.get("headers", ())]
            self._write(AcceptConnection(subprotocol=message.get("subprotocol"), extra_headers=extra))
        elif kind == "websocket.close":
            if not self.accepted:
                self._write(RejectConnection(status_code=403))
                self.closed = True
                self.transport.close()
            else:
                self._write(CloseConnection(code=int(message.get("code", 1000)), reason=message.get("reason")))
                self.closed = True
                self.transport.close()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

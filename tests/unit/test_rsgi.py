"""The ASGI-over-RSGI adapter against a stand-in for Granian's RSGI protocol objects (the real server runs it in
every integration test: ``gophergate serve`` serves the app through it)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from dataclasses import dataclass, field
from typing import Any

import pytest

from gophergate.rsgi import RSGIAdapter


class Closed(RuntimeError):
    """Granian's RSGIProtocolClosed is a RuntimeError."""


class Headers:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def __contains__(self, key: str) -> bool:
        return any(name == key for name, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


@dataclass
class Scope:
    proto: str = "http"
    path: str = "/v1/x"
    method: str = "POST"
    query_string: str = "a=1"
    client: str = "127.0.0.1:5000"
    server: str = "127.0.0.1:8080"
    scheme: str = "http"
    http_version: str = "1.1"
    header_items: list[tuple[str, str]] = field(default_factory=list)

    @property
    def headers(self) -> Headers:
        return Headers(self.header_items)


class Stream:
    def __init__(self, owner: HTTPProto) -> None:
        self.owner = owner

    async def send_bytes(self, data: bytes) -> None:
        if self.owner.gone:
            raise Closed("RSGI transport is closed")
        self.owner.chunks.append(data)


class HTTPProto:
    def __init__(self, body: bytes | Exception = b"", chunks: list[bytes] | None = None) -> None:
        self.body = body
        self.request_chunks = chunks
        self.response: tuple[Any, ...] | None = None
        self.chunks: list[bytes] = []
        self.stream: weakref.ref[Stream] | None = None
        self.gone = False
        self.body_calls = 0
        self.left = asyncio.Event()

    async def __call__(self) -> bytes:
        self.body_calls += 1
        if isinstance(self.body, Exception):
            raise self.body
        return self.body

    def __aiter__(self) -> Any:
        # As Granian's: the chunks, then an empty one at the end; a broken body's error is an empty chunk too.
        async def chunks() -> Any:
            for chunk in self.request_chunks or []:
                yield chunk
            yield b""

        return chunks()

    async def client_disconnect(self) -> None:
        await self.left.wait()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.response = ("bytes", status, headers, body)

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Stream:
        self.response = ("stream", status, headers)
        stream = Stream(self)
        self.stream = weakref.ref(stream)
        return stream


async def _serve(app: Any, scope: Scope, proto: Any) -> None:
    await RSGIAdapter(app).__rsgi__(scope, proto)


async def test_the_asgi_scope_carries_what_granian_gave() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = Scope(client="[::1]:4242", header_items=[("x-a", "1"), ("x-a", "2"), ("x-name", "café")])
    await _serve(app, scope, HTTPProto())
    assert seen["type"] == "http" and seen["method"] == "POST" and seen["path"] == "/v1/x"
    assert seen["query_string"] == b"a=1" and seen["client"] == ("::1", 4242) and seen["server"] == ("127.0.0.1", 8080)
    # Repeated headers stay apart, in order; a UTF-8 value is the bytes the client sent.
    assert seen["headers"] == [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-name", "café".encode())]


async def test_a_request_without_length_or_chunking_has_no_body_and_the_body_is_not_read() -> None:
    messages: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    proto = HTTPProto(body=b"never")
    await _serve(app, Scope(method="GET"), proto)
    assert messages == [{"type": "http.request", "body": b"", "more_body": False}]
    assert proto.body_calls == 0


async def test_a_sized_body_is_read_whole_and_one_that_breaks_off_is_a_disconnect() -> None:
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sized = Scope(header_items=[("content-length", "5")])
    await _serve(app, sized, HTTPProto(body=b"hello"))
    await _serve(app, sized, HTTPProto(body=Closed("RSGI transport is closed")))
    assert got == [{"type": "http.request", "body": b"hello", "more_body": False}, {"type": "http.disconnect"}]


async def test_a_chunked_body_arrives_chunk_by_chunk() -> None:
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            got.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    chunked = Scope(header_items=[("transfer-encoding", "chunked")])
    await _serve(app, chunked, HTTPProto(chunks=[b"ab", b"cd"]))
    assert [m.get("body") for m in got] == [b"ab", b"cd", b""]
    assert [m.get("more_body") for m in got] == [True, True, False]
    got.clear()
    await _serve(app, chunked, HTTPProto(chunks=[b"ab", b""]))  # the framing broke after the first chunk
    assert got == [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]


async def test_after_the_body_receive_waits_for_the_client_to_leave() -> None:
    proto = HTTPProto()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        waiting = asyncio.ensure_future(receive())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        proto.left.set()
        assert await waiting == {"type": "http.disconnect"}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await _serve(app, Scope(), proto)


async def test_a_whole_answer_is_one_response_bytes_with_its_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    proto = HTTPProto()
    await _serve(app, Scope(), proto)
    assert proto.response == ("bytes", 201, [("content-type", "application/json")], b"{}")


async def test_a_stream_ends_at_its_last_message_not_when_the_app_returns() -> None:
    proto = HTTPProto()
    released: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        gc.collect()
        # Granian ends the body when the stream transport is let go: nothing may hold it past the last message.
        assert proto.stream is not None
        released.append(proto.stream() is None)

    await _serve(app, Scope(), proto)
    assert proto.chunks == [b"a", b"b"] and released == [True]


async def test_a_write_to_a_client_that_left_raises_connection_error() -> None:
    proto = HTTPProto()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        proto.gone = True
        with pytest.raises(ConnectionError):
            await send({"type": "http.response.body", "body": b"b", "more_body": True})

    await _serve(app, Scope(), proto)


async def test_a_second_response_is_refused() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a"})
        with pytest.raises(RuntimeError):
            await send({"type": "http.response.body", "body": b"b"})
        with pytest.raises(RuntimeError):
            await send({"type": "http.response.start", "status": 200, "headers": []})

    await _serve(app, Scope(), HTTPProto())


# -- WebSockets -------------------------------------------------------------------------------------------------
@dataclass
class WSMessage:
    kind: int
    data: Any


class WSTransport:
    def __init__(self, incoming: list[WSMessage]) -> None:
        self.incoming = incoming
        self.sent: list[Any] = []

    async def receive(self) -> WSMessage:
        if not self.incoming:
            raise Closed("RSGI transport is closed")
        return self.incoming.pop(0)

    async def send_str(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


class WSProto:
    def __init__(self, incoming: list[WSMessage]) -> None:
        self.transport = WSTransport(incoming)
        self.accepted = False
        self.closes: list[int | None] = []

    async def accept(self) -> WSTransport:
        self.accepted = True
        return self.transport

    def close(self, status: int | None = None) -> None:
        self.closes.append(status)


async def test_a_websocket_refused_before_accept_is_a_403_handshake() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket" and scope["scheme"] == "wss"
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.close", "code": 1008})

    proto = WSProto([])
    await _serve(app, Scope(proto="ws", scheme="https", method="GET"), proto)
    # RSGI's close before the accept takes an HTTP status: a WebSocket code there makes Granian's worker panic.
    assert proto.closes == [403] and not proto.accepted


async def test_a_websocket_exchange_and_its_close() -> None:
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        got.append(await receive())
        got.append(await receive())
        got.append(await receive())
        await send({"type": "websocket.close", "code": 1001})  # closed by the client already: nothing to do

    proto = WSProto([WSMessage(2, "one"), WSMessage(1, b"two"), WSMessage(0, None)])
    await _serve(app, Scope(proto="ws", method="GET"), proto)
    assert proto.transport.sent == ["hello"]
    assert got == [
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.receive", "bytes": b"two"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    assert proto.closes == []


async def test_a_websocket_closed_by_the_app_passes_its_code() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1001})

    proto = WSProto([])
    await _serve(app, Scope(proto="ws", method="GET"), proto)
    assert proto.closes == [1001]


async def test_a_websocket_the_app_leaves_open_is_closed_once_it_returns() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert await receive() == {"type": "websocket.receive", "text": "x"}

    proto = WSProto([WSMessage(2, "x")])
    await _serve(app, Scope(proto="ws", method="GET"), proto)
    assert proto.closes == [1000]


async def test_a_websocket_that_dropped_is_a_1006_disconnect_and_sends_fail() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert await receive() == {"type": "websocket.disconnect", "code": 1006}
        with pytest.raises(ConnectionError):
            await send({"type": "websocket.send", "text": "late"})

    proto = WSProto([])
    await _serve(app, Scope(proto="ws", method="GET"), proto)
    assert proto.closes == [] and proto.transport.sent == []

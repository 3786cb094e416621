"""WebSockets on the built-in server (server/websocket.py), driven by aiohttp's client over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gophergate.server.http11 import HttpConnection, ServerState
from gophergate.server.websocket import MAX_MESSAGE_BYTES, WebSocketHandOff


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[tuple[str, ServerState]]:
    state = ServerState(app)
    state.websocket = WebSocketHandOff(state)
    server = await asyncio.get_running_loop().create_server(lambda: HttpConnection(state), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", state
    finally:
        server.close()
        for task in list(state.tasks):
            task.cancel()


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close", "code": 1008})
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.send", "text": f"hello {scope['path']} {scope['query_string'].decode()}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            scope["state"]["code"] = message["code"]
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4000})
            return
        if "text" in message:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def test_handshake_messages_both_ways_and_a_close_from_the_app() -> None:
    async with serving(echo) as (url, _), aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws?x=1", protocols=("hub.v1",)) as ws:
            assert ws.protocol == "hub.v1"
            assert await ws.receive_str() == "hello /ws x=1"
            await ws.send_str("abc")
            assert await ws.receive_str() == "ABC"
            await ws.send_bytes(b"\x01\x02\x03")
            assert await ws.receive_bytes() == b"\x03\x02\x01"
            await ws.send_str("bye")
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4000
        # the same server still answers plain HTTP
        async with session.get(url + "/") as resp:
            assert await resp.read() == b"plain"


async def test_a_close_before_accept_is_http_403() -> None:
    async with serving(echo) as (url, _), aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(url + "/deny")
        assert caught.value.status == 403


async def test_the_client_leaving_is_a_disconnect_for_the_app() -> None:
    codes: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        codes.append(message["code"])

    async with serving(app) as (url, _), aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + "/ws")
        await ws.close(code=1000)
        for _ in range(50):
            if codes:
                break
            await asyncio.sleep(0.02)
    assert codes == [1000]


async def test_stopping_closes_live_websockets_with_1001() -> None:
    async with serving(echo) as (url, state), aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws") as ws:
            await ws.receive_str()
            assert isinstance(state.websocket, WebSocketHandOff)
            state.websocket.close_all()
            message = await asyncio.wait_for(ws.receive(), 2)
            assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1001


async def test_a_message_over_the_limit_closes_with_1009() -> None:
    async with serving(echo) as (url, _), aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws", max_msg_size=0) as ws:
            await ws.receive_str()
            await ws.send_bytes(b"x" * (MAX_MESSAGE_BYTES + 1))
            message = await asyncio.wait_for(ws.receive(), 2)
            assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1009


async def test_a_bad_handshake_is_refused_with_400() -> None:
    async with serving(echo) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")  # no key
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 400")

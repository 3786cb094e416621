"""The stream relay over in-memory ASGI callables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gophergate.core.calls import Meter
from gophergate.http.relay import SHUTDOWN_EVENT, relay_stream


async def _chunks() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    yield b"data: 2\n\n"


async def _relay(**kwargs: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        return {}

    await relay_stream(send, receive, [], _chunks(), Meter(), **kwargs)
    return sent


async def test_chat_streams_end_with_done() -> None:
    sent = await _relay()
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]
    assert sent[-1]["more_body"] is False


async def test_streams_without_a_sentinel_end_with_an_empty_final_body() -> None:
    sent = await _relay(done=False)
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert sent[-1]["more_body"] is False


async def test_no_done_after_a_stream_error() -> None:
    """The provider's last chunk was an error event (``meter.stream_error``): ``[DONE]`` would tell the client the
    answer was complete, against the row's 502."""
    meter = Meter()

    async def failing() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        try:
            yield b'data: {"error": {"message": "x"}}\n\n'
        finally:
            meter.stream_error = "x"

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    await relay_stream(send, receive, [], failing(), meter)
    bodies = [m.get("body") for m in sent[1:]]
    assert bodies == [b"data: 1\n\n", b'data: {"error": {"message": "x"}}\n\n', b""]
    assert sent[-1]["more_body"] is False


async def test_a_relay_cancelled_while_its_client_is_there_ends_with_a_shutdown_error_event() -> None:
    """The gateway stopping cuts a stream (cancels its task): the client gets an error event and the body's end."""
    sent: list[dict[str, Any]] = []
    upstream_waiting = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        return {}

    async def endless() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        upstream_waiting.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(relay_stream(send, receive, [], endless(), Meter()))
    await upstream_waiting.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert task.cancelled()
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", SHUTDOWN_EVENT]
    assert sent[-1]["more_body"] is False
    error = orjson.loads(SHUTDOWN_EVENT.removeprefix(b"data: "))["error"]
    assert error["code"] == "server_shutdown" and error["type"] == "server_error"

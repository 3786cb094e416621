"""The translated /v1/messages stream (gateway/endpoints.py): Anthropic's ``ping`` while the backend is silent, and
the backend's stream closed whatever happens to the client's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from gophergate.core.calls import ChatCall
from gophergate.gateway.endpoints import translate_messages_stream
from gophergate.inbound.messages import MessagesStream


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


class Backend:
    """A chat stream with a silence in the middle; notes whether it was closed."""

    def __init__(self, silence: float) -> None:
        self.silence = silence
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            yield _chunk({"role": "assistant", "content": "Hel"})
            await asyncio.sleep(self.silence)
            yield _chunk({"content": "lo"}, "stop")
        finally:
            self.closed = True


def _calls() -> tuple[ChatCall, ChatCall]:
    return ChatCall({}, "m", True, True, "r"), ChatCall({}, "m", True, True, "r")


def _names(out: list[bytes]) -> list[str]:
    return [line[7:].decode() for part in out for line in part.split(b"\n") if line.startswith(b"event: ")]


async def test_a_silent_backend_gets_pings_between_its_events() -> None:
    backend = Backend(silence=0.35)
    chat, call = _calls()
    stream = translate_messages_stream(backend.chunks(), MessagesStream("m", "msg_1"), chat, call, ping_seconds=0.1)
    names = _names([part async for part in stream])
    assert names[0] == "message_start" and names[-1] == "message_stop"
    first_delta, second_delta = [i for i, n in enumerate(names) if n == "content_block_delta"]
    assert names[first_delta + 1 : second_delta].count("ping") >= 2
    assert backend.closed


async def test_no_ping_when_the_backend_keeps_talking() -> None:
    backend = Backend(silence=0)
    chat, call = _calls()
    stream = translate_messages_stream(backend.chunks(), MessagesStream("m", "msg_2"), chat, call, ping_seconds=0.1)
    assert "ping" not in _names([part async for part in stream])


async def test_a_client_that_leaves_while_the_backend_is_silent_closes_the_backend() -> None:
    backend = Backend(silence=30)
    chat, call = _calls()
    stream = translate_messages_stream(backend.chunks(), MessagesStream("m", "msg_3"), chat, call, ping_seconds=0.05)
    first = await anext(stream)
    assert b"message_start" in first
    await anext(stream)  # a ping, while the backend sleeps
    await asyncio.wait_for(stream.aclose(), 2)  # type: ignore[attr-defined]
    assert backend.closed

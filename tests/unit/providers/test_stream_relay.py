"""Every provider's stream goes through the one relay, and every translator keeps the same contract: a complete
stream reuses the upstream connection and reports usage; a cut stream, a transport failure or a client that
leaves never does, and the client of a broken stream gets an error event in its protocol's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from gophergate.core.calls import EndpointCall, Meter
from gophergate.core.errors import UpstreamUnavailable
from gophergate.providers.anthropic.stream import StreamTranslator as AnthropicStream
from gophergate.providers.gemini.stream import GeminiStream
from gophergate.providers.openai_compat.dialects import StreamTranslator as ChatStream
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.responses import ResponsesStream
from gophergate.providers.stream import StreamTranslator, relay_upstream


class _Upstream:
    """An upstream response whose body is ``reads``; ``fail`` raises (as a mapped transport error) after them."""

    status = 200

    def __init__(self, reads: list[bytes], fail: bool = False) -> None:
        self.reads = reads
        self.fail = fail
        self.closed: list[bool] = []

    def header(self, name: str) -> str | None:
        return None

    async def read(self) -> bytes:
        return b"".join(self.reads)

    async def chunks(self) -> AsyncIterator[bytes]:
        for data in self.reads:
            yield data
        if self.fail:
            raise UpstreamUnavailable("Upstream provider 'p' stopped answering (read timeout).")

    async def aclose(self, *, reuse: bool) -> None:
        self.closed.append(reuse)


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _chat() -> tuple[StreamTranslator, list[bytes]]:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body = [
        _sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        _sse({**chunk, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        _sse({**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        b"data: [DONE]\n\n",
    ]
    return ChatStream(get_dialect("openai"), True, None, provider="p"), body


def _responses() -> tuple[StreamTranslator, list[bytes]]:
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    response = {"id": "r", "object": "response", "status": "completed", "output": [], "usage": usage}
    body = [
        _sse({"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}}),
        _sse({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hello"}),
        _sse({"type": "response.completed", "sequence_number": 2, "response": response}),
    ]
    call = EndpointCall({"model": "m", "input": "hi"}, "m", "req", stream=True)
    return ResponsesStream(call, provider="p"), body


def _gemini() -> tuple[StreamTranslator, list[bytes]]:
    usage = {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}
    body = [
        _sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]}),
        _sse(
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                "usageMetadata": usage,
            }
        ),
    ]
    stream = GeminiStream(provider="p", model="m", completion_id="c", created=1, include_usage=True, store=None)
    return stream, body


def _anthropic() -> tuple[StreamTranslator, list[bytes]]:
    message = {"id": "msg", "type": "message", "role": "assistant", "model": "m", "content": []}
    body = [
        _sse(
            {"type": "message_start", "message": {**message, "usage": {"input_tokens": 3, "output_tokens": 1}}},
            "message_start",
        ),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
            "content_block_delta",
        ),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return AnthropicStream("p", "m", True), body


TRANSLATORS: dict[str, Callable[[], tuple[StreamTranslator, list[bytes]]]] = {
    "openai-chat": _chat,
    "openai-responses": _responses,
    "gemini": _gemini,
    "anthropic": _anthropic,
}


async def _collect(chunks: AsyncIterator[bytes], limit: int | None = None) -> bytes:
    out = []
    async for chunk in chunks:
        out.append(chunk)
        if limit is not None and len(out) >= limit:
            await chunks.aclose()  # type: ignore[attr-defined]
            break
    return b"".join(out)


@pytest.mark.parametrize("kind", TRANSLATORS)
async def test_complete_stream_reuses_the_connection_and_reports_usage(kind: str) -> None:
    translator, body = TRANSLATORS[kind]()
    upstream, meter = _Upstream(body), Meter()
    out = await _collect(relay_upstream("p", upstream, translator, meter))
    assert upstream.closed == [True]
    assert meter.usage is not None and (meter.usage.prompt, meter.usage.completion) == (3, 2)
    assert meter.stream_error is None and meter.upstream_done is not None
    assert b"Hel" in out and b'"error"' not in out


@pytest.mark.parametrize("kind", TRANSLATORS)
async def test_cut_stream_ends_with_an_error_event_and_drops_the_connection(kind: str) -> None:
    translator, body = TRANSLATORS[kind]()
    upstream, meter = _Upstream(body[:1]), Meter()
    out = await _collect(relay_upstream("p", upstream, translator, meter))
    assert upstream.closed == [False]
    assert meter.stream_error is not None and "before it was complete" in meter.stream_error
    assert b"Upstream provider 'p'" in out and b"error" in out.rsplit(b"\n\n", 2)[-2]


@pytest.mark.parametrize("kind", TRANSLATORS)
async def test_transport_failure_mid_stream_is_an_error_event_not_a_crash(kind: str) -> None:
    translator, body = TRANSLATORS[kind]()
    upstream, meter = _Upstream(body[:1], fail=True), Meter()
    out = await _collect(relay_upstream("p", upstream, translator, meter))
    assert upstream.closed == [False]
    assert meter.stream_error == "Upstream provider 'p' stopped answering (read timeout)."
    assert b"stopped answering" in out.rsplit(b"\n\n", 2)[-2]


@pytest.mark.parametrize("kind", TRANSLATORS)
async def test_client_leaving_mid_stream_releases_the_connection_unreused(kind: str) -> None:
    translator, body = TRANSLATORS[kind]()
    upstream, meter = _Upstream(body), Meter()
    await _collect(relay_upstream("p", upstream, translator, meter), limit=1)
    assert upstream.closed == [False]
    assert meter.usage is None and meter.upstream_done is not None

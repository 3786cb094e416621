"""The Gemini stream state machine: upstream SSE bytes in, OpenAI chunk bytes out (providers.md §3.4, §11)."""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.core.usage import Usage
from gophergate.providers.gemini.signatures import CallMemory, SignatureStore
from gophergate.providers.gemini.stream import GeminiStream
from gophergate.wire.sse import SSEDecoder


def _stream(include_usage: bool = True, store: SignatureStore | None = None) -> GeminiStream:
    return GeminiStream(
        provider="gemini",
        model="gemini-3-flash",
        completion_id="chatcmpl-x",
        created=7,
        include_usage=include_usage,
        store=store,
    )


def _event(parts: list[dict[str, Any]] | None = None, finish: str | None = None, usage: Any = None) -> bytes:
    out: dict[str, Any] = {}
    if parts is not None or finish is not None:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts or [{"text": ""}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out["candidates"] = [candidate]
    if usage is not None:
        out["usageMetadata"] = usage
    return b"data: " + orjson.dumps(out) + b"\r\n\r\n"


def _chunks(data: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(data) + decoder.flush()
    return [orjson.loads(e.data) for e in events]


def _run(stream: GeminiStream, *pieces: bytes) -> list[dict[str, Any]]:
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    return _chunks(out)


def test_thoughts_text_and_finish_become_role_reasoning_content_and_finish_chunks() -> None:
    stream = _stream(include_usage=False)
    chunks = _run(
        stream,
        _event([{"text": "thinking", "thought": True}], usage={"promptTokenCount": 5, "thoughtsTokenCount": 9}),
        _event([{"text": "Hel"}]),
        _event([{"text": "lo"}], "STOP", {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 9}),
    )
    assert {c["id"] for c in chunks} == {"chatcmpl-x"}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gemini-3-flash" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "thinking"},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage == Usage(prompt=5, completion=11, reasoning=9)
    assert stream.error is None and stream.finish_reason == "stop"


def test_parallel_function_calls_are_one_delta_each_with_index_id_and_arguments() -> None:
    store = SignatureStore()
    stream = _stream(include_usage=False, store=store)
    parts = [
        {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "S1"},
        {"functionCall": {"name": "b", "args": {}}},
    ]
    chunks = _run(stream, _event(parts), _event(None, "STOP"))
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert len(calls) == 2 and all(len(c) == 1 for c in calls)
    first, second = calls[0][0], calls[1][0]
    assert (first["index"], second["index"]) == (0, 1)
    assert first["function"] == {"name": "a", "arguments": '{"x":1}'} and first["type"] == "function"
    assert first["id"] != second["id"]
    assert store.get(first["id"]) == CallMemory("S1", None)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_usage_comes_from_the_last_chunk_that_carries_it_not_a_sum() -> None:
    stream = _stream()
    chunks = _run(
        stream,
        _event([{"text": "a"}], usage={"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}),
        _event([{"text": "b"}]),  # no usage: must not reset the counts
        _event([], "STOP", {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}),
        b'data: {"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":3,"totalTokenCount":7}}\r\n\r\n',
    )
    assert stream.usage == Usage(prompt=4, completion=3)
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 4
    assert last["usage"]["completion_tokens"] == 3 and last["usage"]["total_tokens"] == 7


def test_no_usage_chunk_unless_the_client_asked() -> None:
    chunks = _run(_stream(include_usage=False), _event([{"text": "a"}], "STOP", {"promptTokenCount": 1}))
    assert all(c["choices"] for c in chunks)


def test_framing_split_anywhere_gives_the_same_chunks_for_crlf_and_lf() -> None:
    body = _event([{"text": "one"}]) + _event([{"text": "two"}], "STOP", {"promptTokenCount": 1})

    def content(chunks: list[dict[str, Any]]) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    whole = _run(_stream(), body)
    assert content(whole) == "one" + "two"
    for cut in range(1, len(body)):
        assert content(_run(_stream(), body[:cut], body[cut:])) == "onetwo"
    lf = body.replace(b"\r\n", b"\n")
    assert content(_run(_stream(), lf)) == "onetwo"


def test_a_stream_without_any_finish_reason_ends_with_an_error_event() -> None:
    stream = _stream()
    chunks = _run(stream, _event([{"text": "partial"}], usage={"promptTokenCount": 1}))
    assert chunks[-1]["error"]["code"] == "upstream_stream_error"
    assert stream.error is not None and "before it was complete" in stream.error
    assert all("usage" not in c for c in chunks)


def test_an_error_event_mid_stream_becomes_an_openai_error_and_stops_translation() -> None:
    stream = _stream()
    error = b'data: {"error":{"code":500,"message":"Internal","status":"INTERNAL"}}\r\n\r\n'
    chunks = _run(stream, _event([{"text": "a"}]), error, _event([{"text": "late"}], "STOP"))
    assert chunks[-1]["error"]["code"] == "upstream_stream_error"
    assert "INTERNAL" in chunks[-1]["error"]["message"]
    assert not any(c.get("choices") and c["choices"][0]["delta"].get("content") == "late" for c in chunks)
    assert stream.error is not None


def test_a_raw_pretty_printed_json_error_outside_sse_is_caught() -> None:
    stream = _stream()
    error = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    raw = orjson.dumps(error, option=orjson.OPT_INDENT_2).replace(b"\n", b"\r\n") + b"\r\n"
    chunks = _run(stream, _event([{"text": "a"}]), raw[:20], raw[20:])
    assert chunks[-1]["error"]["code"] == "upstream_stream_error"
    assert stream.error is not None and "overloaded" in stream.error


def test_a_blocked_prompt_streams_a_content_filter_finish() -> None:
    stream = _stream(include_usage=True)
    chunks = _run(
        stream,
        b'data: {"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3}}\r\n\r\n',
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    assert stream.error is None and stream.finish_reason == "content_filter"


def test_max_tokens_and_safety_finish_reasons() -> None:
    chunks = _run(_stream(include_usage=False), _event([{"text": "a"}], "MAX_TOKENS"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    chunks = _run(_stream(include_usage=False), _event(None, "SAFETY"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"

"""Golden tests of the Anthropic stream -> OpenAI chunk state machine (pure; no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gophergate.core.usage import Usage
from gophergate.providers.anthropic.stream import StreamTranslator


def ev(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


START = ev(
    "message_start",
    {
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 20,
                "cache_read_input_tokens": 70,
                "cache_creation_input_tokens": 10,
                "output_tokens": 1,
            },
        }
    },
)
PING = ev("ping", {})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return ev("content_block_start", {"index": index, "content_block": block})


def delta(index: int, d: dict[str, Any]) -> bytes:
    return ev("content_block_delta", {"index": index, "delta": d})


def stop(index: int) -> bytes:
    return ev("content_block_stop", {"index": index})


def end(stop_reason: str, output_tokens: int, thinking: int | None = None) -> bytes:
    usage: dict[str, Any] = {"output_tokens": output_tokens, "input_tokens": 20, "cache_read_input_tokens": None}
    if thinking is not None:
        usage["output_tokens_details"] = {"thinking_tokens": thinking}
    return ev("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}) + ev(
        "message_stop", {}
    )


THINKING_TOOLS = [
    START,
    PING,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
    delta(0, {"type": "thinking_delta", "thinking": "think."}),
    delta(0, {"type": "signature_delta", "signature": "sig-abc"}),
    stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Checking."}),
    stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": ""}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"city":'}),
    PING,
    delta(2, {"type": "input_json_delta", "partial_json": ' "Paris"}'}),
    stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}),
    delta(3, {"type": "input_json_delta", "partial_json": "{}"}),
    stop(3),
    end("tool_use", 120, thinking=60),
]


def chunks(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]


def run(
    events: list[bytes], include_usage: bool = True, split: int | None = None
) -> tuple[list[Any], StreamTranslator]:
    t = StreamTranslator("anthropic", "claude-x", include_usage, created=1700000000)
    data = b"".join(events)
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    out = b"".join(t.feed(p) for p in pieces) + t.finish()
    return chunks(out), t


def deltas(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in result if c.get("choices")]


@pytest.mark.parametrize("split", [None, 1, 7], ids=["whole", "byte-by-byte", "7-byte-reads"])
def test_thinking_text_and_parallel_tool_calls_golden(split: int | None) -> None:
    result, t = run(THINKING_TOOLS, split=split)
    assert deltas(result) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Let me "},
        {"reasoning_content": "think."},
        {"content": "Checking."},
        {
            "tool_calls": [
                {"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]},
        {
            "tool_calls": [
                {"index": 1, "id": "toolu_B", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert result[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["id"] == "msg_1" and c["model"] == "claude-x" and c["created"] == 1700000000 for c in result)
    assert result[-1] == {
        "id": "msg_1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude-x",
        "choices": [],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 120,
            "total_tokens": 220,
            "prompt_tokens_details": {"cached_tokens": 70, "cache_write_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 60},
        },
    }
    assert t.usage == Usage(prompt=100, completion=120, reasoning=60, cache_read=70, cache_write=10)
    assert t.completed and t.error is None and t.finish_reason == "tool_calls"
    assert t.tool_call_ids == ["toolu_A", "toolu_B"]
    assert t.thinking_blocks == [{"type": "thinking", "thinking": "Let me think.", "signature": "sig-abc"}]


def test_usage_chunk_only_when_the_client_asked() -> None:
    result, t = run(THINKING_TOOLS, include_usage=False)
    assert all(c["choices"] for c in result)
    assert t.usage is not None and t.usage.prompt == 100


def test_usage_chunk_carries_cost_from_the_pricer() -> None:
    t = StreamTranslator("anthropic", "m", True, cost=lambda u: orjson.Fragment(b"0.0125"))
    out = chunks(t.feed(b"".join([START, end("end_turn", 3)])))
    assert out[-1]["usage"]["cost"] == 0.0125


def test_error_event_mid_stream_becomes_an_openai_error_event() -> None:
    events = [
        START,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Hel"}),
        ev("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}),
        delta(0, {"type": "text_delta", "text": "never relayed"}),
    ]
    result, t = run(events)
    assert deltas(result)[-1] == {"content": "Hel"}
    assert result[-1]["error"]["code"] == "upstream_stream_error"
    assert "overloaded_error: Overloaded" in result[-1]["error"]["message"]
    assert t.error is not None and "overloaded_error" in t.error
    assert t.finish_reason is None and not t.completed and t.usage is None
    assert t.text == ["Hel"], "produced text is kept for a local estimate"


def test_stream_without_message_stop_ends_with_an_error_not_a_finish_chunk() -> None:
    events = [START, block_start(0, {"type": "text", "text": ""}), delta(0, {"type": "text_delta", "text": "Hi"})]
    result, t = run(events)
    assert "error" in result[-1] and t.error is not None
    assert all(c["choices"][0]["finish_reason"] is None for c in result if c.get("choices"))
    assert t.usage is None and t.done


def test_last_event_without_its_blank_line_still_counts() -> None:
    body = b"".join([START, end("end_turn", 2)])
    result, t = run([body.rstrip(b"\n")])
    assert t.completed and t.error is None and result[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"), ("stop_sequence", "stop")],
)
def test_finish_reasons(stop_reason: str, expected: str) -> None:
    _, t = run([START, end(stop_reason, 1)])
    assert t.finish_reason == expected


def test_redacted_thinking_is_kept_for_the_store_and_not_shown() -> None:
    events = [
        START,
        block_start(0, {"type": "redacted_thinking", "data": "opaque"}),
        stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_Z", "name": "f", "input": {}}),
        stop(1),
        end("tool_use", 5),
    ]
    result, t = run(events)
    assert t.thinking_blocks == [{"type": "redacted_thinking", "data": "opaque"}]
    assert not any("reasoning_content" in d for d in deltas(result))
    assert deltas(result)[1]["tool_calls"][0]["id"] == "toolu_Z"


def test_malformed_event_is_a_stream_error() -> None:
    result, t = run([START, b"event: content_block_delta\ndata: {oops\n\n"])
    assert t.error is not None and "malformed" in t.error and "error" in result[-1]


def test_error_message_is_scrubbed_of_keys() -> None:
    t = StreamTranslator("anthropic", "m", False, redact=lambda s: s.replace("sk-ant-secret", "[redacted]"))
    out = t.feed(ev("error", {"error": {"type": "api_error", "message": "bad key sk-ant-secret"}}))
    assert b"sk-ant-secret" not in out and b"[redacted]" in out

"""Reading the Responses API's bodies and streams (pure; the bytes are relayed unchanged)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from gophergate.core.calls import EndpointCall
from gophergate.core.usage import Cost, Usage
from gophergate.providers.openai_compat.responses import (
    ResponsesStream,
    failure_message,
    finish_reason,
    output_texts,
    stream_error_event,
)

USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 4},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 21,
}


def _call(pricer: Any = None) -> EndpointCall:
    return EndpointCall({"model": "m", "input": "x"}, "m", "req", stream=True, pricer=pricer)


def _event(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _stream(status: str = "completed", terminal: str = "response.completed") -> list[bytes]:
    base = {"id": "resp_1", "object": "response", "status": "in_progress", "output": [], "usage": None}
    final = {
        **base,
        "status": status,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi there"}]}],
        "usage": USAGE,
    }
    if status == "incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    return [
        _event({"type": "response.created", "response": base, "sequence_number": 0}),
        _event({"type": "response.output_text.delta", "delta": "hi", "sequence_number": 1}),
        _event({"type": "response.output_text.delta", "delta": " there", "sequence_number": 2}),
        _event({"type": terminal, "response": final, "sequence_number": 3}),
    ]


def _feed_all(state: ResponsesStream, reads: list[bytes]) -> bytes:
    out = [b for data in reads if (b := state.feed_bytes(data))]
    tail = state.flush()
    return b"".join(out) + (tail or b"")


@pytest.mark.parametrize("split", [1, 7, 64, 100_000])
def test_events_are_relayed_verbatim_whatever_the_read_sizes(split: int) -> None:
    whole = b"".join(_stream())
    reads = [whole[i : i + split] for i in range(0, len(whole), split)]
    state = ResponsesStream(_call())
    assert _feed_all(state, reads) == whole
    assert state.done and state.error is None and state.finish_reason == "stop"
    assert state.usage == Usage(prompt=12, completion=9, reasoning=5, cache_read=4)
    assert state.events == 4


def test_incomplete_is_complete_with_length() -> None:
    state = ResponsesStream(_call())
    _feed_all(state, _stream("incomplete", "response.incomplete"))
    assert state.done and state.finish_reason == "length" and state.error is None and state.usage is not None


def test_failed_response_is_a_stream_error() -> None:
    events = _stream("failed", "response.failed")
    final = orjson.loads(events[-1].split(b"data: ")[1])
    final["response"]["error"] = {"code": "server_error", "message": "model crashed"}
    events[-1] = _event(final)
    state = ResponsesStream(_call())
    _feed_all(state, events)
    assert state.done and state.error == "model crashed" and state.finish_reason is None


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "error", "error": {"type": "server_error", "code": "server_error", "message": "boom"}},
        {"type": "error", "code": "server_error", "message": "boom", "param": None},  # the documented flat shape
    ],
)
def test_error_event_in_either_shape_sets_the_error_and_is_relayed(payload: dict[str, Any]) -> None:
    state = ResponsesStream(_call())
    events = [*_stream()[:2], _event({**payload, "sequence_number": 2})]
    assert _feed_all(state, events) == b"".join(events)
    assert state.error == "boom" and not state.done


def test_crlf_framing_is_decoded_and_relayed_with_lf() -> None:
    crlf = [e.replace(b"\n", b"\r\n") for e in _stream()]
    state = ResponsesStream(_call())
    out = _feed_all(state, crlf)
    assert out == b"".join(_stream())
    assert state.done and state.usage is not None


def test_terminal_usage_gets_the_cost_when_priced() -> None:
    state = ResponsesStream(_call(pricer=lambda usage: (Cost(Decimal("0.000123"), *[Decimal(0)] * 4), "test")))
    out = _feed_all(state, _stream())
    terminal = orjson.loads(out.rstrip(b"\n").rsplit(b"\n\n", 1)[-1].split(b"data: ", 1)[1])
    assert terminal["response"]["usage"]["cost"] == 0.000123
    assert out.rstrip(b"\n").rsplit(b"\n\n", 1)[-1].startswith(b"event: response.completed\n")


def test_produced_text_is_recovered_for_an_estimate() -> None:
    state = ResponsesStream(_call())
    _feed_all(state, _stream()[:3])
    assert not state.done and state.usage is None
    assert "".join(state.produced_texts()) == "hi there"


def test_stream_error_event_raises_in_the_sdk_shape_and_documents_flat_fields() -> None:
    event = stream_error_event("cut off", 7)
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    payload = orjson.loads(event.split(b"data: ", 1)[1])
    assert payload["error"]["message"] == payload["message"] == "cut off"
    assert payload["type"] == "error" and payload["sequence_number"] == 7


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"status": "completed", "output": [{"type": "message"}]}, "stop"),
        ({"status": "completed", "output": [{"type": "function_call", "name": "f"}]}, "tool_calls"),
        ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, "length"),
        ({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}, "content_filter"),
        ({"status": "failed"}, None),
        ({"status": "in_progress"}, None),
    ],
)
def test_finish_reason_in_chat_spelling(response: dict[str, Any], reason: str | None) -> None:
    assert finish_reason(response) == reason


def test_failure_message_and_output_texts() -> None:
    assert failure_message({"status": "completed"}) is None
    assert failure_message({"status": "failed", "error": None}) is not None
    body = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "answer"}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ]
    }
    assert output_texts(body) == ["think", "answer", "f{}"]


def test_malformed_sse_event_becomes_an_error_event_that_ends_the_stream() -> None:
    events = _stream()
    events.insert(1, b'event: response.output_text.delta\ndata: {"type": "response.output_text.del\n\n')
    state = ResponsesStream(_call())
    out = _feed_all(state, [b"".join(events)])
    assert state.error is not None and "malformed" in state.error and not state.done
    last = orjson.loads(out.rstrip(b"\n").rsplit(b"data: ", 1)[1])
    assert last["type"] == "error" and last["code"] == "upstream_stream_error"
    assert b"response.output_text.del\n" not in out and b"response.completed" not in out

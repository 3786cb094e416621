"""The message content a trace records when asked: the request's messages and the answer in the GenAI shapes."""

from __future__ import annotations

import orjson

from gophergate.telemetry.content import input_messages, output_messages


def test_content_shapes() -> None:
    prompt = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert input_messages(prompt) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}, {"type": "image_url"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": "{}"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": "42"}]},
    ]
    body = orjson.dumps({"choices": [{"message": {"content": "hello"}}]})
    assert output_messages(body, None, "stop") == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hello"}], "finish_reason": "stop"}
    ]
    events = [
        b'data: {"choices":[{"delta":{"content":"he"}}]}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"l"}}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"lo"}\n\n',
    ]
    assert output_messages(None, events, None)[0]["parts"][0]["content"] == "hello"

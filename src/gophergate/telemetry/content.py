"""Message content for traces (``GOPHERGATE_OTEL_CAPTURE_CONTENT=true`` only): a request's chat-like messages and
what an attempt answered, in the GenAI semantic conventions' shapes (``gen_ai.input.messages``,
``gen_ai.output.messages``). Pure functions over what the gateway already has; no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.wire.sse import SSEDecoder


def input_messages(prompt: Any) -> list[dict[str, Any]]:
    """The request's chat-like messages in the conventions' input shape: text parts, tool calls and tool results;
    any other part (an image, a document) by its kind only."""
    out: list[dict[str, Any]] = []
    for message in prompt if isinstance(prompt, list) else ():
        if not isinstance(message, dict):
            continue
        role = message.get("role") if isinstance(message.get("role"), str) else "user"
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if role == "tool":
            parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"), "result": content})
        elif isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    parts.append({"type": "text", "content": text})
                else:
                    parts.append({"type": str(part.get("type") or "unknown")})
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function")
                if not isinstance(function, dict):
                    function = {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments"),
                    }
                )
        out.append({"role": role, "parts": parts})
    return out


def _answer_texts(data: Any) -> list[str]:
    """Text of a buffered answer: Chat Completions choices, Messages content blocks, Responses output items."""
    texts: list[str] = []
    if not isinstance(data, dict):
        return texts
    for choice in data.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    blocks = data.get("content")
    for block in blocks if isinstance(blocks, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
    for item in data.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


def _stream_texts(events: list[bytes]) -> list[str]:
    """Text of a relayed stream: chat deltas, Messages ``text_delta`` and Responses ``output_text`` deltas."""
    decoder = SSEDecoder()
    texts: list[str] = []
    for event in [e for block in events for e in decoder.feed(block)] + decoder.flush():
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        for choice in data.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                texts.append(delta["content"])
        kind = data.get("type")
        delta = data.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict) and isinstance(delta.get("text"), str):
            texts.append(delta["text"])
        elif kind == "response.output_text.delta" and isinstance(delta, str):
            texts.append(delta)
    return texts


def output_messages(answer: bytes | None, events: list[bytes] | None, finish_reason: str | None) -> list[Any]:
    """What the attempt answered, in the conventions' output shape (one assistant message)."""
    texts: list[str] = []
    if answer is not None:
        try:
            texts = _answer_texts(orjson.loads(answer))
        except orjson.JSONDecodeError:
            texts = []
    elif events:
        texts = _stream_texts(events)
    if not texts:
        return []
    message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": "".join(texts)}]}
    message["finish_reason"] = finish_reason or "stop"
    return [message]

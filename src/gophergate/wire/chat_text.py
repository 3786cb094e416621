"""The text an answer produced, recovered from relayed OpenAI chat-completion stream events (for a local token
estimate when no usage arrived, and for the memory of reasoning)."""

from __future__ import annotations

import orjson

from gophergate.wire.sse import SSEDecoder


def texts_from_sse(
    blocks: list[bytes], reasoning_field: str | None = None, *, reasoning_only: bool = False
) -> list[str]:
    """Produced text recovered from relayed OpenAI SSE bytes."""
    decoder = SSEDecoder()
    payloads = [e.data for block in blocks for e in decoder.feed(block)]
    payloads += [e.data for e in decoder.flush()]
    return texts_from_chunks(payloads, reasoning_field, reasoning_only=reasoning_only)


def texts_from_chunks(
    payloads: list[bytes], reasoning_field: str | None = None, *, reasoning_only: bool = False
) -> list[str]:
    """Produced text (content, reasoning, tool-call names and arguments) recovered from OpenAI chunk payloads. A
    shape it does not know (e.g. ``"choices": 5``) counts as no text: this runs on whatever an upstream sent."""
    out: list[str] = []
    fields = ("reasoning_content",) + ((reasoning_field,) if reasoning_field else ())
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            for name in fields:
                if isinstance(delta.get(name), str):
                    out.append(delta[name])
            if reasoning_only:
                continue
            if isinstance(delta.get("content"), str):
                out.append(delta["content"])
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    out.append(str(fn.get("name") or "") + str(fn.get("arguments") or ""))
    return out

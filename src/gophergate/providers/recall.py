"""What a chat request's translation will look up in a provider's memory (``core/ttl_store.py``): the ids of the
tool calls its assistant messages made. With shared memories (``cluster/memory.py``) the provider ``recall``s them
before translating, so a turn that lands on another instance finds what the previous turn left on the first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tool_call_ids(body: Mapping[str, Any], *, unless: str | None = None) -> list[str]:
    """The tool-call ids of the assistant messages of ``body`` (a Chat Completions request), in order; with
    ``unless``, those of messages that carry that field already are left out (nothing to restore for them)."""
    messages = body.get("messages")
    ids: list[str] = []
    if not isinstance(messages, list):
        return ids
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        calls = message.get("tool_calls")
        if not calls or not isinstance(calls, list) or (unless is not None and message.get(unless)):
            continue
        for call in calls:
            call_id = call.get("id") if isinstance(call, dict) else None
            if isinstance(call_id, str) and call_id:
                ids.append(call_id)
    return ids

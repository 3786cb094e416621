"""Server-side memory of Anthropic thinking blocks that OpenAI clients cannot carry back.

When tools are combined with thinking, the assistant turn that made the tool calls must come back with its
``thinking`` / ``redacted_thinking`` blocks unchanged, signature included (providers.md §4.5, §11 pitfall 15).
The OpenAI wire has no place for them, so the gateway keeps them keyed by the tool-call ids of that turn and
puts them back when the history returns. In-process, bounded, with a TTL (24 h by default); a shared store
replaces it when the gateway is scaled out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

ThinkingBlocks = tuple[dict[str, Any], ...]


class ThinkingStore:
    def __init__(self, *, max_entries: int = 50_000, ttl_seconds: float = 24 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, ThinkingBlocks]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def put(self, tool_call_ids: list[str], blocks: list[dict[str, Any]]) -> None:
        if not blocks or not tool_call_ids:
            return
        expires = time.monotonic() + self._ttl
        frozen = tuple(blocks)
        for call_id in tool_call_ids:
            self._items[call_id] = (expires, frozen)
            self._items.move_to_end(call_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, tool_call_id: str) -> ThinkingBlocks | None:
        item = self._items.get(tool_call_id)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[tool_call_id]
            return None
        return item[1]

    def __len__(self) -> int:
        return len(self._items)

"""Server-side memory of reasoning that OpenAI clients cannot carry back.

DeepSeek (thinking mode) and Moonshot K3 reject a tool-call turn whose assistant message lost its
``reasoning_content`` (providers.md §5.5, §7.2). OpenAI SDK clients often drop that unknown field when they
echo the assistant message, so the gateway remembers it keyed by the tool-call ids it relayed and puts it
back when the history returns. In-process, bounded, with a TTL; a shared store replaces it when scaled out.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class ReasoningStore:
    def __init__(self, *, max_entries: int = 50_000, ttl_seconds: float = 24 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def put(self, tool_call_ids: list[str], reasoning: str) -> None:
        if not reasoning:
            return
        expires = time.monotonic() + self._ttl
        for call_id in tool_call_ids:
            self._items[call_id] = (expires, reasoning)
            self._items.move_to_end(call_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, tool_call_id: str) -> str | None:
        item = self._items.get(tool_call_id)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[tool_call_id]
            return None
        return item[1]

    def __len__(self) -> int:
        return len(self._items)

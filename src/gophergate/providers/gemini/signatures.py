"""Server-side memory of what OpenAI clients cannot carry back to Gemini: thought signatures and call ids.

Gemini 3 rejects a replayed ``functionCall`` part that lost its ``thoughtSignature`` (providers.md §3.5,
§11.15). OpenAI clients never see signatures, so the gateway keeps them keyed by the tool-call id it issued
and re-attaches them when the history comes back. In-process, bounded, with a TTL (like
``gateway/reasoning_store.py``); a missed entry (another worker, a restart, expiry) falls back to the
documented validator-skip sentinel in ``translate.py``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallMemory:
    signature: str | None  # the part's thoughtSignature, unchanged
    upstream_id: str | None  # Gemini's own functionCall.id, when it sent one


class SignatureStore:
    def __init__(self, *, max_entries: int = 100_000, ttl_seconds: float = 48 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, CallMemory]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def put(self, tool_call_id: str, memory: CallMemory) -> None:
        self._items[tool_call_id] = (time.monotonic() + self._ttl, memory)
        self._items.move_to_end(tool_call_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, tool_call_id: str) -> CallMemory | None:
        item = self._items.get(tool_call_id)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[tool_call_id]
            return None
        return item[1]

    def __len__(self) -> int:
        return len(self._items)

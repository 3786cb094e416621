"""A bounded in-process key -> value memory with a time to live (oldest entries go first when full).

The server-side memories of what OpenAI clients cannot carry back (DeepSeek/Kimi reasoning, Anthropic thinking
blocks, Gemini thought signatures) are all this, keyed by tool-call ids.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLStore(Generic[V]):
    def __init__(self, *, max_entries: int, ttl_seconds: float) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def set_many(self, keys: Iterable[str], value: V) -> None:
        expires = time.monotonic() + self._ttl
        items = self._items
        for key in keys:
            items[key] = (expires, value)
            items.move_to_end(key)
        while len(items) > self._max:
            items.popitem(last=False)

    def set(self, key: str, value: V) -> None:
        self.set_many((key,), value)

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        return item[1]

    def __len__(self) -> int:
        return len(self._items)

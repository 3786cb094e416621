"""A bounded in-process key -> value memory with a time to live, bounded by the bytes its values take.

The server-side memories of what OpenAI clients cannot carry back (DeepSeek/Kimi reasoning, Anthropic thinking
blocks, Gemini thought signatures) are all this, keyed by tool-call ids. An upstream decides how long a value is
(reasoning can run to megabytes), so a bound on the number of entries alone would not bound the memory: the
store is a ``cachetools.TTLCache`` whose size is the sum of its values' sizes (``size_of``, measured once when
a value is stored). When full, the least recently used entries go first; a value bigger than the whole budget
is not kept.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")

ENTRY_OVERHEAD = 200  # bytes an entry costs besides its value (key string, cache links, timer node), roughly


def _item_size(item: tuple[object, int]) -> int:
    return item[1]


class TTLStore(Generic[V]):
    def __init__(self, *, max_bytes: int, ttl_seconds: float, size_of: Callable[[V], int] = sys.getsizeof) -> None:
        self._items: TTLCache[str, tuple[V, int]] = TTLCache(max_bytes, ttl_seconds, getsizeof=_item_size)
        self._size_of = size_of

    def set_many(self, keys: Iterable[str], value: V) -> None:
        item = (value, self._size_of(value) + ENTRY_OVERHEAD)
        if item[1] > self._items.maxsize:
            return
        items = self._items
        for key in keys:
            items[key] = item

    def set(self, key: str, value: V) -> None:
        self.set_many((key,), value)

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        return None if item is None else item[0]

    @property
    def bytes(self) -> int:
        """What the stored values take, as counted against ``max_bytes``."""
        return int(self._items.currsize)

    def __len__(self) -> int:
        return len(self._items)

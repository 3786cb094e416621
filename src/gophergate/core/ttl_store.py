"""A bounded in-process key -> value memory with a time to live, bounded by the bytes its values take.

The server-side memories of what OpenAI clients cannot carry back (DeepSeek/Kimi reasoning, Anthropic thinking
blocks, Gemini thought signatures) are all this, keyed by tool-call ids. An upstream decides how long a value is
(reasoning can run to megabytes), so a bound on the number of entries alone would not bound the memory: the
store is a ``cachetools.TTLCache`` whose size is the sum of its values' sizes (``size_of``, measured once when
a value is stored). When full, the least recently used entries go first; a value bigger than the whole budget
is not kept.

With ``GOPHERGATE_REDIS_URL`` a store is also ``shared`` (``cluster/memory.py``): every value set here is written
to Redis too, off the request path, and ``recall`` fetches, before a request is translated, the keys it will look
up that another process set. Each store says how its values travel (``encode`` / ``decode``, exact round trips).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from cachetools import TTLCache

V = TypeVar("V")

ENTRY_OVERHEAD = 200  # bytes an entry costs besides its value (key string, cache links, timer node), roughly


def _item_size(item: tuple[object, int]) -> int:
    return item[1]


class Shared(Protocol[V]):
    """Where a store's values are also kept for the other processes of a cluster (``cluster/memory.py``)."""

    def write(self, keys: tuple[str, ...], value: V, size: int) -> None:
        """Queue ``value`` under ``keys`` for the other processes; never blocks (a full queue drops it)."""
        ...

    async def load(self, keys: list[str]) -> dict[str, V]:
        """The values another process set for ``keys`` (those found), within a short timeout."""
        ...


class TTLStore(Generic[V]):
    def __init__(self, *, max_bytes: int, ttl_seconds: float, size_of: Callable[[V], int] = sys.getsizeof) -> None:
        self._items: TTLCache[str, tuple[V, int]] = TTLCache(max_bytes, ttl_seconds, getsizeof=_item_size)
        self._size_of = size_of
        self.shared: Shared[V] | None = None  # set by cluster/memory.py with GOPHERGATE_REDIS_URL

    @property
    def ttl_seconds(self) -> float:
        return float(self._items.ttl)

    def encode(self, value: V) -> bytes:
        """The value as stored in Redis (a store that is shared defines it, with ``decode``)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how its values are shared")

    def decode(self, data: bytes) -> V:
        """The value ``encode`` gave ``data`` for, exactly; raises ``ValueError`` on anything else."""
        raise NotImplementedError(f"{type(self).__name__} does not say how its values are shared")

    def set_many(self, keys: Iterable[str], value: V) -> None:
        item = (value, self._size_of(value) + ENTRY_OVERHEAD)
        if item[1] > self._items.maxsize:
            return
        items = self._items
        shared = self.shared
        if shared is None:
            for key in keys:
                items[key] = item
            return
        names = tuple(keys)
        for key in names:
            items[key] = item
        if names:
            shared.write(names, value, item[1])

    def set(self, key: str, value: V) -> None:
        self.set_many((key,), value)

    def keep(self, key: str, value: V) -> None:
        """Keep a value here only (one another process set and shared: it is in Redis already)."""
        item = (value, self._size_of(value) + ENTRY_OVERHEAD)
        if item[1] <= self._items.maxsize:
            self._items[key] = item

    async def recall(self, keys: Iterable[str]) -> None:
        """Fetch the values of ``keys`` that are not here but another process shared, before a request that will
        ``get`` them is translated. Nothing is asked when the store is not shared or every key is here."""
        shared = self.shared
        if shared is None:
            return
        items = self._items
        missing = [key for key in dict.fromkeys(keys) if key not in items]
        if not missing:
            return
        for key, value in (await shared.load(missing)).items():
            self.keep(key, value)

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        return None if item is None else item[0]

    @property
    def bytes(self) -> int:
        """What the stored values take, as counted against ``max_bytes``."""
        return int(self._items.currsize)

    def __len__(self) -> int:
        return len(self._items)

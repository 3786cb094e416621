from __future__ import annotations

import time

from gophergate.core.ttl_store import ENTRY_OVERHEAD, TTLStore


def test_entries_expire_after_the_ttl() -> None:
    store: TTLStore[str] = TTLStore(max_bytes=1 << 20, ttl_seconds=0.05)
    store.set_many(["a", "b"], "x")
    assert store.get("a") == "x" and len(store) == 2
    time.sleep(0.06)
    assert store.get("a") is None and store.get("b") is None


def test_least_recently_used_entries_go_first_when_full() -> None:
    store: TTLStore[int] = TTLStore(max_bytes=2 * (ENTRY_OVERHEAD + 1), ttl_seconds=60, size_of=lambda v: 1)
    store.set("a", 1)
    store.set("b", 2)
    store.set("a", 3)  # rewritten: now the most recently used
    store.set("c", 4)
    assert (store.get("a"), store.get("b"), store.get("c")) == (3, None, 4)


def test_store_is_bounded_by_the_bytes_of_its_values_not_the_number_of_entries() -> None:
    store: TTLStore[str] = TTLStore(max_bytes=1 << 20, ttl_seconds=60, size_of=len)
    big = "r" * (100 << 10)  # 100 KiB of reasoning per tool call
    for i in range(100):
        store.set(f"call_{i}", big)
    assert store.bytes <= 1 << 20 and 5 <= len(store) <= 10
    assert store.get("call_99") == big and store.get("call_0") is None


def test_value_bigger_than_the_whole_budget_is_not_kept() -> None:
    store: TTLStore[str] = TTLStore(max_bytes=1000, ttl_seconds=60, size_of=len)
    store.set("small", "s")
    store.set("huge", "h" * 5000)
    assert store.get("huge") is None and store.get("small") == "s"

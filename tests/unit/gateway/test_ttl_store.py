from __future__ import annotations

import time

from gophergate.gateway.ttl_store import TTLStore


def test_entries_expire_after_the_ttl() -> None:
    store: TTLStore[str] = TTLStore(max_entries=10, ttl_seconds=0.05)
    store.set_many(["a", "b"], "x")
    assert store.get("a") == "x" and len(store) == 2
    time.sleep(0.06)
    assert store.get("a") is None and len(store) == 1  # dropped when read


def test_oldest_entries_go_first_when_full_and_a_rewrite_counts_as_new() -> None:
    store: TTLStore[int] = TTLStore(max_entries=2, ttl_seconds=60)
    store.set("a", 1)
    store.set("b", 2)
    store.set("a", 3)  # refreshed: now the newest
    store.set("c", 4)
    assert (store.get("a"), store.get("b"), store.get("c")) == (3, None, 4)

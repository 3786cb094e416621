from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
import pytest

from gophergate.core.record import RequestRecord
from gophergate.hub.events import PING
from gophergate.hub.hub import GOING_AWAY, TRY_AGAIN_LATER, Hub
from gophergate.hub.sampler import Sampler


@dataclass(frozen=True)
class User:
    id: int
    username: str


ALICE = User(1, "alice")


def _hub(**kwargs: float) -> Hub:
    return Hub(Sampler(lambda: 0, load=lambda: (1.0, 2.0)), **kwargs)  # type: ignore[arg-type]


def _record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", endpoint="chat.completions", started=time.perf_counter(), status=200)


async def test_publish_fans_out_every_message_in_order_to_every_connection() -> None:
    hub = _hub()
    a, b = hub.connect(ALICE), hub.connect(User(2, "bob"))
    assert a is not None and b is not None
    for i in range(5):
        hub.publish(f"m{i}")
    assert list(a.queue) == list(b.queue) == [f"m{i}" for i in range(5)]
    assert a.ready.is_set()


async def test_a_full_queue_drops_only_that_connection_with_1013() -> None:
    hub = _hub(max_queue=3)
    slow, fast = hub.connect(ALICE), hub.connect(User(2, "bob"))
    assert slow is not None and fast is not None
    for i in range(3):
        hub.publish(f"m{i}")
    fast.queue.clear()  # the fast client keeps reading
    hub.publish("m3")
    assert slow.closed.done() and slow.closed.result() == TRY_AGAIN_LATER
    assert not slow.queue  # nothing more is kept for a dropped client
    assert hub.connections == {fast} and hub.dropped == 1
    assert list(fast.queue) == ["m3"] and not fast.closed.done()
    hub.publish("m4")
    assert list(fast.queue) == ["m3", "m4"]


async def test_publish_returns_at_once_even_when_no_client_reads() -> None:
    hub = _hub(max_queue=1000)
    for i in range(50):
        hub.connect(User(i, f"u{i}"))
    started = time.perf_counter()
    for i in range(5000):
        hub.publish(f"m{i}")
    assert time.perf_counter() - started < 1.0  # O(connections) appends, never an await
    assert not hub.connections and hub.dropped == 50  # every unread client was dropped at message 1001


async def test_with_no_connection_committed_rows_are_counted_but_never_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = _hub()
    encoded: list[RequestRecord] = []
    monkeypatch.setattr("gophergate.hub.hub.request_message", lambda r: encoded.append(r) or "")
    hub.publish_committed([_record(1), _record(2)])
    hub.event("config_changed", {"what": "price_overrides"})
    assert encoded == []
    assert hub.sampler.sample()["requests_per_s"] == 0.2


async def test_committed_rows_become_request_messages() -> None:
    hub = _hub()
    conn = hub.connect(ALICE)
    assert conn is not None
    hub.publish_committed([_record(1), _record(2)])
    ids = [orjson.loads(m)["data"]["request_id"] for m in conn.queue]
    assert ids == ["r1", "r2"]


async def test_request_messages_carry_the_key_name_from_the_hubs_live_key_map() -> None:
    names: dict[int, str] = {}
    hub = Hub(Sampler(lambda: 0, load=lambda: (1.0, 2.0)), key_names=names)
    conn = hub.connect(ALICE)
    assert conn is not None
    record = _record(1)
    record.client_key_id = 4
    hub.publish_committed([record])
    names[4] = "renamed-later"  # the key cache's map is shared, not copied: a refresh reaches the hub
    hub.publish_committed([record])
    assert [orjson.loads(m)["data"]["client_key_name"] for m in conn.queue] == [None, "renamed-later"]


async def test_run_sends_metrics_each_interval_and_pings_each_ping_interval() -> None:
    hub = _hub(metrics_interval=0.02, ping_interval=0.06)
    conn = hub.connect(ALICE)
    assert conn is not None
    task = asyncio.create_task(hub.run())
    await asyncio.sleep(0.15)
    task.cancel()
    kinds = ["ping" if m is PING else orjson.loads(m)["type"] for m in conn.queue]
    assert kinds.count("metrics") >= 4
    assert kinds.count("ping") >= 1
    first_ping = kinds.index("ping")
    assert kinds[:first_ping] == ["metrics"] * first_ping and first_ping >= 2


async def test_close_closes_every_connection_with_1001_and_waits_for_their_handlers() -> None:
    hub = _hub()
    conns = [hub.connect(User(i, f"u{i}")) for i in range(3)]

    async def handler(conn: object) -> None:
        assert conn is not None
        await conn.closed  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)  # the closing handshake
        hub.disconnect(conn)  # type: ignore[arg-type]

    handlers = [asyncio.create_task(handler(c)) for c in conns]
    await hub.close()
    assert all(c is not None and c.closed.result() == GOING_AWAY for c in conns)
    assert all(h.done() for h in handlers) and not hub.connections
    assert hub.connect(ALICE) is None  # no new connection during shutdown


async def test_close_gives_up_on_handlers_that_never_finish() -> None:
    hub = _hub()
    hub.connect(ALICE)
    started = time.perf_counter()
    await hub.close(wait_seconds=0.1)
    assert time.perf_counter() - started < 1.0


async def test_connection_limit() -> None:
    hub = _hub(max_connections=2)
    assert hub.connect(ALICE) is not None and hub.connect(ALICE) is not None
    assert hub.connect(ALICE) is None

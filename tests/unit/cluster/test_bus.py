"""The cluster bus against the real Redis: delivery to the other processes only, never a wait on publish, drops
counted when the queue is full or Redis is gone."""

from __future__ import annotations

import asyncio
import time
import uuid

from gophergate.cluster.bus import ClusterBus, frame, publish_once
from gophergate.limits.redis import connect
from tests.support import free_port, redis_url, unique_prefix


async def _until(check: object, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def test_a_message_reaches_every_other_process_and_not_its_sender() -> None:
    url = redis_url()
    prefix = unique_prefix()

    async def run() -> None:
        a = ClusterBus(connect(url), prefix, "gw-a")
        b = ClusterBus(connect(url), prefix, "gw-b")
        got_a: list[tuple[str, bytes]] = []
        got_b: list[tuple[str, bytes]] = []
        a.on("change", lambda sender, payload: got_a.append((sender, payload)))
        b.on("change", lambda sender, payload: got_b.append((sender, payload)))
        a.start()
        b.start()
        try:
            await _until(lambda: a.connected and b.connected)
            assert a.publish("change", b'{"what":"keys"}') and a.publish("unheard", b"x")
            await _until(lambda: got_b)
            assert got_b == [(a.sender, b'{"what":"keys"}')]
            assert await publish_once(url, prefix, "change", b"from-cli")
            await _until(lambda: len(got_a) == 1 and len(got_b) == 2)
            assert got_a[0][0].startswith("cli/") and got_a[0][1] == b"from-cli"
            assert b.status()["received"] == 2 and a.status()["published"] == 2
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_publishing_never_waits_and_a_full_queue_drops_and_counts() -> None:
    async def run() -> None:
        # Nothing listens on this port: every pipeline fails, and the publisher drops what it took.
        bus = ClusterBus(connect(f"redis://127.0.0.1:{free_port()}/0"), "gg-x:", "gw", max_pending=10)
        started = time.perf_counter()
        results = [bus.publish("rows", b"row") for _ in range(15)]
        assert time.perf_counter() - started < 0.01
        assert results.count(False) == 5 and bus.dropped == 5
        bus.start()
        await _until(lambda: bus.dropped == 15 and bus.status()["queued"] == 0)
        status = bus.status()
        assert status["state"] == "unreachable" and status["errors"] >= 1
        await bus.close()

    asyncio.run(run())


def test_a_reconnect_calls_back_so_missed_changes_are_read_again() -> None:
    url = redis_url()
    prefix = unique_prefix()

    async def run() -> None:
        from redis.asyncio import Redis

        name = f"gg-bus-test-{uuid.uuid4().hex[:8]}"
        client = Redis.from_url(url, client_name=name, socket_timeout=0.5, socket_connect_timeout=0.5)
        bus = ClusterBus(client, prefix, "gw")
        calls: list[int] = []
        bus.on_reconnect.append(lambda: calls.append(1))
        bus.start()
        try:
            await _until(lambda: bus.connected)
            assert calls == []  # the first connection is not a reconnection
            killer = connect(url)
            for entry in await killer.client_list():
                if entry.get("name") == name:  # only this bus's own connections
                    await killer.client_kill_filter(_id=entry["id"])
            await killer.aclose()
            await _until(lambda: calls == [1], within=8.0)
        finally:
            await bus.close()

    asyncio.run(run())


def test_frames_carry_topic_and_sender_ahead_of_an_untouched_payload() -> None:
    assert frame("rows", "gw/1/ab", b"a\x1fb\nc") == b"rows\x1fgw/1/ab\x1fa\x1fb\nc"

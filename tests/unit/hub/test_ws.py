"""The /ws endpoint driven in-process: an ASGI websocket client made of ``receive``/``send`` callables."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from gophergate.core.record import RequestRecord
from gophergate.hub.events import PING
from gophergate.hub.hub import GOING_AWAY, POLICY_VIOLATION, TRY_AGAIN_LATER, Hub
from gophergate.hub.sampler import Sampler
from gophergate.hub.ws import Authenticate, HubEndpoint, same_origin


@dataclass(frozen=True)
class User:
    id: int
    username: str


class Sessions:
    """A fake authenticator: the cookie header names a user while the session is live."""

    def __init__(self) -> None:
        self.live = {"gg_session=alice": User(1, "alice"), "gg_session=bob": User(2, "bob")}
        self.calls = 0
        self.broken = False  # the session store is unreachable

    async def __call__(self, scope: dict[str, Any]) -> User | None:
        self.calls += 1
        if self.broken:
            raise ConnectionError("session store down")
        cookie = dict(scope["headers"]).get(b"cookie", b"").decode()
        return self.live.get(cookie)


class Client:
    """One websocket client: what the server sent, and a gate that can stall the server's sends (slow reader)."""

    def __init__(self, endpoint: HubEndpoint, headers: dict[str, str]) -> None:
        self.scope = {
            "type": "websocket",
            "path": "/ws",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.reading = asyncio.Event()
        self.reading.set()
        self.got = asyncio.Event()
        self.task = asyncio.create_task(endpoint(self.scope, self.incoming.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self.reading.wait()  # a client that stops reading stalls the server's writes to it
        self.sent.append(message)
        self.got.set()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    def close_code(self) -> int | None:
        closes = [m["code"] for m in self.sent if m["type"] == "websocket.close"]
        return closes[-1] if closes else None

    @property
    def accepted(self) -> bool:
        return bool(self.sent) and self.sent[0]["type"] == "websocket.accept"

    async def wait_for(self, count: int, within: float = 2.0) -> None:
        deadline = time.monotonic() + within
        while len(self.texts()) < count and time.monotonic() < deadline:
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), max(deadline - time.monotonic(), 0.01))

    async def ended(self, within: float = 3.0) -> None:
        await asyncio.wait_for(self.task, within)

    async def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})


HOST = "gw.example:8080"
GOOD = {"Host": HOST, "Origin": f"http://{HOST}", "Cookie": "gg_session=alice"}


def _setup(max_queue: int = 1000) -> tuple[Hub, HubEndpoint, Sessions]:
    hub = Hub(Sampler(lambda: 0, load=lambda: (1.0, 2.0)), max_queue=max_queue)
    sessions = Sessions()
    auth: Authenticate = sessions  # type: ignore[assignment]
    return hub, HubEndpoint(hub, lambda: auth), sessions


async def _connected(endpoint: HubEndpoint, hub: Hub, headers: dict[str, str] = GOOD) -> Client:
    client = Client(endpoint, headers)
    await asyncio.wait_for(client.got.wait(), 2)  # the first message sent: accept (registered just before it)
    assert client.accepted and hub.connections
    return client


async def test_without_an_authenticator_every_connection_is_refused_before_accept() -> None:
    hub = Hub(Sampler(lambda: 0, load=lambda: (1.0, 2.0)))
    client = Client(HubEndpoint(hub, lambda: None), GOOD)
    await client.ended()
    assert client.sent == [{"type": "websocket.close", "code": POLICY_VIOLATION}]  # refused handshake: HTTP 403
    assert not hub.connections


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": HOST, "Origin": f"http://{HOST}", "Cookie": "gg_session=mallory"},
        {"Host": HOST, "Origin": f"http://{HOST}"},
    ],
    ids=["unknown-session", "no-cookie"],
)
async def test_without_a_live_session_the_connection_is_refused(headers: dict[str, str]) -> None:
    _, endpoint, _ = _setup()
    client = Client(endpoint, headers)
    await client.ended()
    assert client.sent == [{"type": "websocket.close", "code": POLICY_VIOLATION}]


@pytest.mark.parametrize(
    "origin",
    [None, "http://evil.example", "http://gw.example:9999", "null", "https://gw.example.evil.example:8080"],
)
async def test_a_foreign_or_missing_origin_is_refused_before_the_session_is_looked_at(origin: str | None) -> None:
    _, endpoint, sessions = _setup()
    headers = {"Host": HOST, "Cookie": "gg_session=alice"}
    if origin is not None:
        headers["Origin"] = origin
    client = Client(endpoint, headers)
    await client.ended()
    assert client.sent == [{"type": "websocket.close", "code": POLICY_VIOLATION}]
    assert sessions.calls == 0


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://gw.example:8080", "gw.example:8080", True),
        ("https://GW.example", "gw.example", True),
        ("https://gw.example", "gw.example:443", True),
        ("http://gw.example", "gw.example:80", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://gw.example", "gw.example:8080", False),
        ("https://gw.example", "gw.example:80", False),
        ("http://other.example", "gw.example", False),
        ("null", "gw.example", False),
        ("file://", "gw.example", False),
        ("http://gw.example:notaport", "gw.example", False),
        ("http://gw.example", "", False),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin.encode(), host.encode()) is same


async def test_an_accepted_client_receives_published_messages_in_order() -> None:
    hub, endpoint, _ = _setup()
    client = await _connected(endpoint, hub)
    for i in range(20):
        hub.publish(f'{{"n":{i}}}')
    await client.wait_for(20)
    assert [orjson.loads(t)["n"] for t in client.texts()] == list(range(20))
    await client.leave()
    await client.ended()
    assert not hub.connections and client.close_code() is None  # the client left: nothing to close


async def test_a_slow_client_is_dropped_with_1013_and_the_others_keep_receiving() -> None:
    hub, endpoint, _ = _setup(max_queue=10)
    slow = await _connected(endpoint, hub)
    fast = await _connected(endpoint, hub, {**GOOD, "Cookie": "gg_session=bob"})
    slow.reading.clear()  # stops reading: the server's next send to it never completes
    started = time.perf_counter()
    for i in range(30):
        hub.publish(f'{{"n":{i}}}')
        await asyncio.sleep(0)  # let the writers run in between
    assert time.perf_counter() - started < 0.5  # publishing never waited for the slow client
    await fast.wait_for(30)
    assert [orjson.loads(t)["n"] for t in fast.texts()] == list(range(30))
    await slow.ended()  # the handler gives up on the closing handshake the stalled client cannot read
    assert hub.dropped == 1
    assert [conn.user.username for conn in hub.connections] == ["bob"]
    assert not fast.task.done()
    await fast.leave()
    await fast.ended()


async def test_a_dropped_client_that_still_reads_gets_close_1013() -> None:
    hub, endpoint, _ = _setup(max_queue=5)
    client = await _connected(endpoint, hub)
    client.reading.clear()
    for i in range(10):
        hub.publish(f"{i}")
    client.reading.set()  # reading again, but too late: it was dropped
    await client.ended()
    assert client.close_code() == TRY_AGAIN_LATER


async def test_hub_shutdown_closes_connected_clients_with_1001() -> None:
    hub, endpoint, _ = _setup()
    clients = [await _connected(endpoint, hub) for _ in range(3)]
    await hub.close()
    for client in clients:
        await client.ended()
        assert client.close_code() == GOING_AWAY
    assert not hub.connections


async def test_a_revoked_session_is_closed_with_1008_at_the_next_ping() -> None:
    hub, endpoint, sessions = _setup()
    alice = await _connected(endpoint, hub)
    bob = await _connected(endpoint, hub, {**GOOD, "Cookie": "gg_session=bob"})
    hub.publish(PING)
    await alice.wait_for(1)
    await bob.wait_for(1)
    assert alice.texts() == bob.texts() == [PING]
    del sessions.live["gg_session=alice"]  # logout
    hub.publish(PING)
    await alice.ended()
    assert alice.close_code() == POLICY_VIOLATION and alice.texts() == [PING]
    await bob.wait_for(2)
    assert bob.texts() == [PING, PING] and not bob.task.done()
    await bob.leave()
    await bob.ended()


async def test_committed_records_reach_a_connected_client_as_request_events() -> None:
    hub, endpoint, _ = _setup()
    client = await _connected(endpoint, hub)
    record = RequestRecord(request_id="req_live", endpoint="chat.completions", started=0.0, status=200)
    hub.publish_committed([record])
    await client.wait_for(1)
    message = orjson.loads(client.texts()[0])
    assert message["type"] == "request" and message["data"]["request_id"] == "req_live"
    await client.leave()
    await client.ended()


async def test_a_failing_session_check_refuses_the_handshake() -> None:
    hub, endpoint, sessions = _setup()
    sessions.broken = True
    client = Client(endpoint, GOOD)
    await client.ended()
    assert client.sent == [{"type": "websocket.close", "code": POLICY_VIOLATION}]
    assert not hub.connections


async def test_a_failing_recheck_at_ping_keeps_the_connection() -> None:
    hub, endpoint, sessions = _setup()
    client = await _connected(endpoint, hub)
    sessions.broken = True
    calls = sessions.calls
    hub.publish(PING)
    hub.publish('{"n":1}')
    await client.wait_for(2)
    assert client.texts() == [PING, '{"n":1}'] and not client.task.done()
    assert sessions.calls == calls + 1  # it was checked, and failed
    await client.leave()
    await client.ended()

"""/ws against the real gateway: refused handshakes, and live traffic for a real dashboard session."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import Gateway

ADMIN_PASSWORD = "hub-admin-password-1"


class HubGateway(Gateway):
    """The real gateway with a first admin; ``cookie`` is a live dashboard session of that admin."""

    cookie = ""

    def start(self) -> HubGateway:
        super().start()
        body = orjson.dumps({"username": "admin", "password": ADMIN_PASSWORD})
        request = urllib.request.Request(
            self.url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            set_cookie = resp.headers["set-cookie"]
        self.cookie = set_cookie.split(";", 1)[0]
        assert self.cookie.startswith("gg_session=")
        return self


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubGateway]:
    gw = HubGateway(tmp_path_factory.mktemp("hub"), env={"GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def hub_gateway(tmp_path: Path) -> Iterator[HubGateway]:
    """A gateway of its own (the shutdown test stops it)."""
    gw = HubGateway(tmp_path, env={"GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _origin(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.port}"


async def _handshake_status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = orjson.loads(msg.data)
            if data["type"] == kind:
                return dict(data)


async def test_ws_without_a_live_session_is_refused_with_403(gateway: HubGateway) -> None:
    assert await _handshake_status(gateway.url + "/ws", {"Origin": _origin(gateway)}) == 403
    headers = {"Origin": _origin(gateway), "Cookie": "gg_session=forged.token.value"}
    assert await _handshake_status(gateway.url + "/ws", headers) == 403


async def test_ws_from_another_origin_or_without_origin_is_refused(gateway: HubGateway) -> None:
    url = gateway.url + "/ws"
    assert await _handshake_status(url, {"Origin": "http://evil.example", "Cookie": gateway.cookie}) == 403
    assert await _handshake_status(url, {"Cookie": gateway.cookie}) == 403
    assert await _handshake_status(url, {"Origin": _origin(gateway), "Cookie": gateway.cookie}) == 101


async def test_ws_after_logout_is_refused(hub_gateway: HubGateway) -> None:
    headers = {"Origin": _origin(hub_gateway), "Cookie": hub_gateway.cookie}
    assert await _handshake_status(hub_gateway.url + "/ws", headers) == 101
    async with aiohttp.ClientSession() as session:
        async with session.get(hub_gateway.url + "/api/auth/me", headers={"Cookie": hub_gateway.cookie}) as me:
            csrf = (await me.json())["csrf_token"]
        logout_headers = {"Cookie": hub_gateway.cookie, "X-CSRF-Token": csrf}
        async with session.post(hub_gateway.url + "/api/auth/logout", headers=logout_headers) as resp:
            assert resp.status == 204
    assert await _handshake_status(hub_gateway.url + "/ws", headers) == 403


async def test_ws_on_another_path_is_refused_and_the_gateway_keeps_serving(gateway: HubGateway) -> None:
    assert await _handshake_status(gateway.url + "/v1/ws", {"Origin": _origin(gateway)}) == 403
    async with aiohttp.ClientSession() as session, session.get(gateway.url + "/readyz") as resp:
        assert resp.status == 200


async def test_a_v1_request_streams_in_as_a_request_event_and_metrics_arrive_every_2_s(
    hub_gateway: HubGateway,
) -> None:
    headers = {"Origin": _origin(hub_gateway), "Cookie": hub_gateway.cookie}
    async with aiohttp.ClientSession() as session, session.ws_connect(hub_gateway.url + "/ws", headers=headers) as ws:
        body = {"model": "no-such-model", "messages": [{"role": "user", "content": "secret prompt text"}]}
        auth = {"Authorization": f"Bearer {hub_gateway.key}"}
        async with session.post(hub_gateway.base_url + "/chat/completions", json=body, headers=auth) as resp:
            assert resp.status == 404
            request_id = resp.headers["x-request-id"]
        event = await _next(ws, "request")
        assert event["data"]["request_id"] == request_id
        assert event["data"]["status"] == 404 and event["data"]["error_type"]
        raw = orjson.dumps(event).decode()
        assert "secret prompt text" not in raw and hub_gateway.key not in raw
        first = await _next(ws, "metrics")
        second = await _next(ws, "metrics")
        gap = _seconds(second["data"]["ts"]) - _seconds(first["data"]["ts"])
        assert 1.5 < gap < 3.0
        assert second["data"]["requests_per_s"] > 0 and second["data"]["error_rate"] == 1.0
        assert isinstance(second["data"]["cost_per_min_usd"], str)


async def test_sigterm_ends_live_connections_and_the_process_exits_cleanly(hub_gateway: HubGateway) -> None:
    # The gateway closes live WebSockets as it stops (a close frame, not a dropped connection), and a live
    # connection never holds the shutdown up. The hub closes with 1001 (pinned in tests/unit/hub/test_ws.py);
    # Granian 2.8's RSGI interface sends the close frame without the code (decision 0001).
    headers = {"Origin": _origin(hub_gateway), "Cookie": hub_gateway.cookie}
    async with aiohttp.ClientSession() as session, session.ws_connect(hub_gateway.url + "/ws", headers=headers) as ws:
        assert hub_gateway.proc is not None
        started = time.monotonic()
        hub_gateway.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            while (message := await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                pass
        assert message.type == aiohttp.WSMsgType.CLOSE
    assert await asyncio.to_thread(hub_gateway.proc.wait, 15) == 0
    assert time.monotonic() - started < 10


def _seconds(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

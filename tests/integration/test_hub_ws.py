"""/ws against the real gateway (Granian): refused handshakes. Authenticated traffic is covered in-process."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support import Gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    gw = Gateway(tmp_path_factory.mktemp("hub"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def _handshake_status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_ws_without_a_session_is_refused_with_403(gateway: Gateway) -> None:
    origin = f"http://127.0.0.1:{gateway.port}"
    assert await _handshake_status(gateway.url + "/ws", {"Origin": origin}) == 403


async def test_ws_with_a_forged_session_cookie_is_refused(gateway: Gateway) -> None:
    headers = {"Origin": f"http://127.0.0.1:{gateway.port}", "Cookie": "gg_session=forged.token.value"}
    assert await _handshake_status(gateway.url + "/ws", headers) == 403


async def test_ws_from_another_origin_is_refused(gateway: Gateway) -> None:
    headers = {"Origin": "http://evil.example", "Cookie": "gg_session=whatever"}
    assert await _handshake_status(gateway.url + "/ws", headers) == 403


async def test_ws_without_origin_is_refused(gateway: Gateway) -> None:
    assert await _handshake_status(gateway.url + "/ws", {}) == 403


async def test_ws_on_another_path_is_refused_and_the_gateway_keeps_serving(gateway: Gateway) -> None:
    origin = f"http://127.0.0.1:{gateway.port}"
    assert await _handshake_status(gateway.url + "/v1/ws", {"Origin": origin}) == 403
    async with aiohttp.ClientSession() as session, session.get(gateway.url + "/readyz") as resp:
        assert resp.status == 200

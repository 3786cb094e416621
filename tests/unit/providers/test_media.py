"""The media client refuses internal addresses unless allowed, and follows redirects by hand, checking each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gophergate.providers.media import BlockedURL, MediaClient, is_public
from tests.support import free_port


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG", content_type="image/png")

    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/img.png" if n == 0 else f"/hop/{n - 1}")

    app = web.Application()
    app.router.add_get("/img.png", image)
    app.router.add_get("/hop/{n}", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_loopback_and_names_pointing_inside_are_refused_by_default(server: str) -> None:
    client = MediaClient()
    try:
        for url in (server + "/img.png", server.replace("127.0.0.1", "localhost") + "/img.png"):
            with pytest.raises(BlockedURL, match="public address"):
                await client.request("GET", url, {}, None, stream=False)
        with pytest.raises(BlockedURL, match="http"):
            await client.request("GET", "file:///etc/passwd", {}, None, stream=False)
    finally:
        await client.close()


async def test_allowed_private_fetch_follows_redirects_up_to_the_limit(server: str) -> None:
    client = MediaClient(allow_private=True)
    try:
        resp = await client.request("GET", server + "/hop/2", {}, None, stream=False)
        assert resp.status == 200 and await resp.read() == b"\x89PNG"
        with pytest.raises(BlockedURL, match="redirects"):
            await client.request("GET", server + "/hop/5", {}, None, stream=False)
    finally:
        await client.close()

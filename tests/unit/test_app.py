"""The app's edge: every http and websocket scope from a trusted proxy is rewritten before any handler sees it."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from gophergate.app import GopherGate
from gophergate.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("GOPHERGATE_CONFIG", "GOPHERGATE_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)


class Capture:
    """An ASGI app standing in for a handler: remembers the scope it was given."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)


def _app(**settings: Any) -> tuple[GopherGate, Capture, Capture]:
    app = GopherGate(Settings(encryption_key=secrets.token_hex(32), **settings))
    ui, ws = Capture(), Capture()
    app._static = ui  # type: ignore[assignment]
    app._ws = ws  # type: ignore[assignment]
    return app, ui, ws


def _scope(kind: str, path: str, peer: str) -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "method": "GET",
        "path": path,
        "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
        "client": (peer, 50000),
    }


async def _noop() -> dict[str, Any]:
    return {}


def _serve(app: GopherGate, scope: dict[str, Any]) -> None:
    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(app(scope, _noop, send))


def test_http_and_websocket_scopes_from_a_trusted_proxy_reach_the_handlers_rewritten() -> None:
    app, ui, ws = _app()
    _serve(app, _scope("http", "/", "127.0.0.1"))
    _serve(app, _scope("websocket", "/ws", "::1"))
    assert (ui.scopes[0]["client"], ui.scopes[0]["scheme"]) == (("203.0.113.7", 0), "https")
    assert (ws.scopes[0]["client"], ws.scopes[0]["scheme"]) == (("203.0.113.7", 0), "wss")


def test_the_same_headers_from_an_untrusted_peer_reach_the_handlers_untouched() -> None:
    app, ui, ws = _app()
    http, websocket = _scope("http", "/", "127.0.0.5"), _scope("websocket", "/ws", "192.0.2.1")
    _serve(app, http)
    _serve(app, websocket)
    assert ui.scopes == [http] and ui.scopes[0] is http
    assert ws.scopes == [websocket] and ws.scopes[0] is websocket


def test_with_no_trusted_proxy_nothing_is_rewritten() -> None:
    app, ui, _ws = _app(trusted_proxies="")
    scope = _scope("http", "/", "127.0.0.1")
    _serve(app, scope)
    assert ui.scopes[0] is scope and scope["client"] == ("127.0.0.1", 50000)


def test_trusted_networks_come_from_the_setting() -> None:
    app, ui, _ws = _app(trusted_proxies="10.0.0.0/8")
    _serve(app, _scope("http", "/", "10.20.30.40"))
    _serve(app, _scope("http", "/", "127.0.0.1"))  # loopback is no longer trusted
    assert [s["client"][0] for s in ui.scopes] == ["203.0.113.7", "127.0.0.1"]

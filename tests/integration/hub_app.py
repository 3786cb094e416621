"""Test-only ASGI factory: the real gateway app with a fake /ws session check installed after startup.

Production has no switch that accepts a session without the auth package; this module lives in the tests and
is loaded only by ``test_hub_ws.py``, which starts Granian on it (``--factory tests.integration.hub_app:factory``).
The fake accepts exactly the cookie ``gg_session=test-session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gophergate.app import factory as gateway_factory

SESSION_COOKIE = b"gg_session=test-session"


@dataclass(frozen=True)
class User:
    id: int
    username: str


async def authenticate(scope: dict[str, Any]) -> User | None:
    for name, value in scope["headers"]:
        if name == b"cookie" and SESSION_COOKIE in value.split(b"; "):
            return User(1, "tester")
    return None


def factory() -> Any:
    app = gateway_factory()

    async def with_fake_sessions(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and app.runtime is not None:
            app.runtime.ws_authenticate = authenticate
        await app(scope, receive, send)

    return with_fake_sessions

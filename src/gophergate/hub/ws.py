"""``/ws``: the raw-ASGI WebSocket endpoint of the live hub.

Handshake checks, in this order, all before the connection is accepted (a refused handshake is answered with
HTTP 403 by the server, and nothing is ever sent to the page):

1. ``Origin`` must be present and name the same host and port as ``Host``. Browsers always send ``Origin`` on
   a WebSocket handshake, and a page on another site can open a WebSocket carrying our cookie (SameSite does
   not cover every case: same-site sibling hosts), so this check is the defence against cross-site WebSocket
   hijacking. A missing Origin is refused too: a non-browser client can set the header itself.
2. The ``gg_session`` cookie must belong to a live session: ``authenticate(scope)`` returns the user or None.
   Until an authenticator is installed (``Runtime.ws_authenticate`` is None) every connection is refused.

After that the client only listens. The session is checked again at every ping (every 20 s), so a logout or
a deleted user ends the connection (close 1008) within one ping interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from gophergate.core.asgi import Scope, header
from gophergate.hub.events import PING
from gophergate.hub.hub import GOING_AWAY, POLICY_VIOLATION, TRY_AGAIN_LATER, Connection, Hub, HubUser

log = logging.getLogger(__name__)

Authenticate = Callable[[Scope], Awaitable[HubUser | None]]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# How long a closing handshake may take before the handler gives up on a client that does not read.
_CLOSE_TIMEOUT = 1.0


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (IPv6 in brackets) -> (lowercase host, port or None); None when malformed."""
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def same_origin(origin: bytes | None, host: bytes | None) -> bool:
    """The Origin header names the host (and port) the request was sent to."""
    if not origin or not host:
        return False
    try:
        parts = urlsplit(origin.decode("latin-1"))
        origin_port = parts.port
    except ValueError:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) or a non-web scheme
    target = _split_host(host.decode("latin-1"))
    if target is None or not target[0]:
        return False
    return parts.hostname.lower() == target[0] and (origin_port or default) == (target[1] or default)


class HubEndpoint:
    """The ASGI app for ``/ws``. ``authenticate`` is read at each handshake, so it can be installed later."""

    def __init__(self, hub: Hub, authenticate: Callable[[], Authenticate | None]) -> None:
        self._hub = hub
        self._authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        authenticate = self._authenticate()
        if not same_origin(header(scope, b"origin"), header(scope, b"host")):
            await _refuse(send)
            return
        user = await _check(authenticate, scope) if authenticate is not None else None
        if user is None:
            await _refuse(send)
            return
        conn = self._hub.connect(user)
        if conn is None:  # shutting down, or at the connection limit
            await _refuse(send)
            return
        try:
            await send({"type": "websocket.accept"})
            await self._serve(conn, scope, receive, send, authenticate)
        except (OSError, RuntimeError):
            pass  # the client went away mid-send (ASGI says OSError; some servers raise RuntimeError)
        finally:
            self._hub.disconnect(conn)

    async def _serve(
        self, conn: Connection, scope: Scope, receive: Any, send: Any, authenticate: Authenticate | None
    ) -> None:
        reader = asyncio.create_task(_until_disconnect(receive))
        writer = asyncio.create_task(_pump(conn, scope, send, authenticate))
        try:
            await asyncio.wait((reader, writer, conn.closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            return  # the client left: nothing to close
        if writer.done() and not writer.cancelled() and (error := writer.exception()) is not None:
            if isinstance(error, (OSError, RuntimeError)):
                return  # the client went away mid-send
            log.error("live hub: writer of %s's connection failed", conn.user.username, exc_info=error)
        code = conn.closed.result() if conn.closed.done() else POLICY_VIOLATION
        with contextlib.suppress(Exception):
            await asyncio.wait_for(send({"type": "websocket.close", "code": code}), _CLOSE_TIMEOUT)


async def _check(authenticate: Authenticate, scope: Scope) -> HubUser | None:
    """The session's user; None when it is not live or cannot be checked (the session store is down)."""
    try:
        return await authenticate(scope)
    except Exception:
        log.warning("live hub: checking a session failed", exc_info=True)
        return None


async def _refuse(send: Any) -> None:
    # Closing before accepting: the server answers the handshake with HTTP 403.
    await send({"type": "websocket.close", "code": POLICY_VIOLATION})


async def _until_disconnect(receive: Any) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return


async def _pump(conn: Connection, scope: Scope, send: Any, authenticate: Authenticate | None) -> None:
    """Send the connection's queued messages in order; returns (to close 1008) when the session has ended."""
    queue = conn.queue
    while True:
        await conn.ready.wait()
        conn.ready.clear()
        while queue:
            text = queue.popleft()
            if text is PING and not await _still_live(authenticate, scope):
                log.info("live hub: session of %s ended, closing its connection", conn.user.username)
                return
            await send({"type": "websocket.send", "text": text})


async def _still_live(authenticate: Authenticate | None, scope: Scope) -> bool:
    if authenticate is None:
        return False
    try:
        return await authenticate(scope) is not None
    except Exception:
        # The session store is unreachable: keep a connection whose session was live one ping ago rather than
        # dropping every dashboard at once; the next ping checks again.
        log.warning("live hub: re-checking a session failed; keeping the connection", exc_info=True)
        return True


__all__ = ["GOING_AWAY", "TRY_AGAIN_LATER", "Authenticate", "HubEndpoint", "same_origin"]

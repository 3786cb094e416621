"""Relaying a stream to the client: each chunk is sent as it arrives, the client's disconnect is raced.

A watcher task waits on ``receive()`` for ``http.disconnect`` and cancels the relay when it comes, so a client
that leaves while the upstream is silent is noticed at once, the upstream connection is closed (the
iterator's ``finally``), and the request is recorded as a disconnect with what was produced so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gophergate.core.calls import Meter
from gophergate.core.errors import ClientDisconnected
from gophergate.http.disconnect import DisconnectWatch
from gophergate.wire.sse import DONE


async def relay_stream(
    send: Any,
    receive: Any,
    headers: list[tuple[bytes, bytes]],
    chunks: AsyncIterator[bytes],
    meter: Meter,
    *,
    done: bool = True,
    prefix: bytes = b"",
) -> None:
    """Send the response headers, then every chunk as it comes, then ``[DONE]`` (unless ``done`` is false:
    the Responses API's streams end after their terminal event, with no sentinel; nor after an error: the
    provider's last chunk was an error event, set in ``meter.stream_error``, and a ``[DONE]`` after it would tell
    the client the answer was complete); the upstream is always closed (the iterator's ``finally``), whatever
    happens to the client. ``prefix``: bytes to send before the first chunk (what routing held back)."""
    watch = DisconnectWatch(receive)

    async def write(message: dict[str, Any]) -> None:
        try:
            await send(message)
        except Exception as exc:
            # A write to a closed connection: servers report it in different ways (OSError, RuntimeError,
            # their own exception types).
            raise ClientDisconnected() from exc

    try:
        try:
            await write({"type": "http.response.start", "status": 200, "headers": headers})
            if prefix:
                meter.first_chunk = time.perf_counter()
                await write({"type": "http.response.body", "body": prefix, "more_body": True})
            async for chunk in chunks:
                if meter.first_chunk is None:
                    meter.first_chunk = time.perf_counter()
                await write({"type": "http.response.body", "body": chunk, "more_body": True})
            ended = DONE if done and meter.stream_error is None else b""
            await write({"type": "http.response.body", "body": ended, "more_body": False})
        except asyncio.CancelledError:
            watch.raise_if_gone()
            await _end_with_shutdown_event(send)
            raise
        finally:
            await _aclose(chunks)
    finally:
        watch.stop()


# The last event of a stream the gateway cut because it was stopping (the request outlived the shutdown grace).
SHUTDOWN_EVENT = (
    b"data: "
    + orjson.dumps(
        {
            "error": {
                "message": "The gateway stopped before the response was complete.",
                "type": "server_error",
                "param": None,
                "code": "server_shutdown",
            }
        }
    )
    + b"\n\n"
)


async def _end_with_shutdown_event(send: Any) -> None:
    """The relay was cancelled, not by its client leaving: the gateway is stopping. The client gets an error
    event and the end of the body, so that it knows the answer is incomplete (a write it does not take within
    a second is given up)."""
    message = {"type": "http.response.body", "body": SHUTDOWN_EVENT, "more_body": False}
    with contextlib.suppress(Exception):
        await asyncio.wait_for(send(message), 1.0)


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()

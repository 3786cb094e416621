"""Noticing a client that leaves while the gateway waits on its upstream, streamed or not.

A watcher task waits on ``receive()`` for ``http.disconnect`` and cancels the request's task when it comes, so
the upstream call is abandoned at once (its connection closed by the cancellation) instead of running on until
the upstream answers or times out. The request then sees ``ClientDisconnected`` (recorded as 499), not a
cancellation, which stays reserved for the server stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from gophergate.errors import ClientDisconnected

T = TypeVar("T")


class DisconnectWatch:
    """Started in the request's task, after its body was read (the watcher takes what ``receive()`` gives)."""

    __slots__ = ("gone", "task", "watcher")

    def __init__(self, receive: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.gone = False
        self.watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self.task.cancel()
                return

    def raise_if_gone(self) -> None:
        """Called on ``CancelledError``: turn the watcher's cancellation into ``ClientDisconnected``."""
        if self.gone:
            self.task.uncancel()
            raise ClientDisconnected() from None

    def stop(self) -> None:
        self.watcher.cancel()


async def unless_disconnected(receive: Any, work: Awaitable[T]) -> T:
    """Await ``work``, cancelled with ``ClientDisconnected`` if the client leaves first."""
    watch = DisconnectWatch(receive)
    try:
        return await work
    except asyncio.CancelledError:
        watch.raise_if_gone()
        raise
    finally:
        watch.stop()

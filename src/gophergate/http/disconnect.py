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

from gophergate.core.errors import ClientDisconnected

T = TypeVar("T")


class DisconnectWatch:
    """Started in the request's task, after its body was read (the watcher takes what ``receive()`` gives).

    With ``delay``, the watcher task is only started once the work has run that long: most upstream answers to
    a fast call come sooner, and then the watch costs one timer instead of a task (a task per request was a
    measurable share of the worker's time under load). A disconnect in the meantime waits in the server until
    the watcher asks for it, so it is still noticed, at most ``delay`` late."""

    __slots__ = ("_timer", "gone", "task", "watcher")

    def __init__(self, receive: Any, delay: float = 0.0) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if delay > 0:
            self._timer = asyncio.get_running_loop().call_later(delay, self._start, receive)
        else:
            self._start(receive)

    def _start(self, receive: Any) -> None:
        self._timer = None
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
        if self._timer is not None:
            self._timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()


# A call still waiting on its upstream after this long is watched for the client leaving.
WATCH_AFTER = 0.02


async def unless_disconnected(receive: Any, work: Awaitable[T]) -> T:
    """Await ``work``, cancelled with ``ClientDisconnected`` if the client leaves first (noticed from
    ``WATCH_AFTER`` seconds into the call)."""
    watch = DisconnectWatch(receive, WATCH_AFTER)
    try:
        return await work
    except asyncio.CancelledError:
        watch.raise_if_gone()
        raise
    finally:
        watch.stop()

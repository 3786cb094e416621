"""One load at a time per key: concurrent callers wait for the run in flight instead of starting their own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


async def once(running: dict[K, asyncio.Future[None]], key: K, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` unless a run for ``key`` is in flight; then wait for that one (and raise what it raised)."""
    pending = running.get(key)
    if pending is not None:
        await asyncio.shield(pending)
        return
    pending = running[key] = asyncio.get_running_loop().create_future()
    try:
        await work()
        pending.set_result(None)
    except BaseException as exc:
        pending.set_exception(exc)
        pending.exception()  # retrieved: the waiters re-raise their own
        raise
    finally:
        del running[key]

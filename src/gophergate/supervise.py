"""Running a background loop that must not die: an exception is logged and the loop is started again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("gophergate")


async def supervise(name: str, run: Callable[[], Coroutine[Any, Any, None]], restarted: Callable[[], None]) -> None:
    """Run ``run`` until it returns; if it raises, log why, call ``restarted`` and run it again after a backoff
    (50 ms, doubling up to 2 s), so one bad record never ends the request log."""
    delay = 0.05
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            restarted()
            log.exception("the request log %s failed; restarting it", name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

"""Bounded queue + one background writer that inserts request records in batched transactions.

Handlers call ``submit`` (``put_nowait``); nothing on the request path waits for the database. The writer
takes whatever is queued (up to ``batch_size``) at most every ``flush_interval`` and inserts it in one
transaction. A failed insert is retried with backoff and the batch is kept, so a database outage delays rows
but does not lose them. ``close`` drains everything still queued before returning (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import request_log
from gophergate.gateway.estimate import count_messages, count_text
from gophergate.recorder.record import RequestRecord

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int,
        batch_size: int,
        flush_interval: float,
        on_commit: Callable[[list[RequestRecord]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._on_commit = on_commit
        self._queue: deque[RequestRecord] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed_batches = 0
        self.last_commit: float | None = None
        self.overflowed = 0

    # -- request path ---------------------------------------------------------------------------------------
    def submit(self, record: RequestRecord) -> None:
        """Never blocks and never drops: the bound is enforced at admission (``saturated``), not here."""
        self._queue.append(record)
        if len(self._queue) > self._max_queue:
            self.overflowed += 1
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    @property
    def saturated(self) -> bool:
        """The backlog is past its bound: new /v1 requests are refused (503) until the writer catches up."""
        return len(self._queue) >= self._max_queue

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gophergate-log-writer")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval)
                except TimeoutError:
                    pass
                continue
            if not self._closing and len(self._queue) < self._batch_size:
                # Let a batch build up: at most flush_interval of delay, never more than batch_size rows.
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval)
                except TimeoutError:
                    pass
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            await self._write(batch)

    async def _write(self, batch: list[RequestRecord]) -> None:
        delay = 0.1
        for record in batch:
            if record.pending_estimate is not None:
                apply_estimate(record)
        rows = [record.row() for record in batch]
        while True:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(request_log), rows)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed_batches += 1
                log.warning("writing %d request log rows failed; retrying in %.1fs", len(rows), delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written += len(batch)
        self.last_commit = time.time()
        if self._on_commit is not None:
            try:
                self._on_commit(batch)
            except Exception:
                log.exception("request log commit listener failed")


def apply_estimate(record: RequestRecord) -> None:
    """Fill in locally estimated tokens for a request whose upstream reported no usage."""
    assert record.pending_estimate is not None
    messages, produced = record.pending_estimate
    record.pending_estimate = None
    try:
        record.prompt_tokens = count_messages(messages)
        record.completion_tokens = count_text("".join(produced))
    except Exception:
        log.exception("token estimate failed for request %s", record.request_id)
    record.estimated = True

"""Retention: raw request-log rows older than ``GOPHERGATE_LOG_RETENTION_DAYS`` are deleted, minute rollups (every
key family: ``ROLLUP_FAMILIES``) older than ``MINUTE_ROLLUP_DAYS`` too; hour and day rollups are kept forever (they
are small: one row per hour or day per client key x provider x model (x model group) that saw traffic).

Deletes go in small batches (``batch_size`` rows per transaction, with a pause in between), so neither the log
writer (which needs SQLite's write lock) nor readers wait long behind a big delete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import ROLLUP_FAMILIES, request_log, rollup_table, stored_responses

log = logging.getLogger(__name__)

MINUTE_ROLLUP_DAYS = 7
RUN_EVERY_SECONDS = 3600.0


@dataclass
class RetentionResult:
    raw_rows: int = 0
    minute_rollups: int = 0
    batches: int = 0


async def prune(
    engine: AsyncEngine,
    *,
    retention_days: int,
    now: dt.datetime | None = None,
    batch_size: int = 5_000,
    pause: float = 0.2,
    minute_rollup_days: int = MINUTE_ROLLUP_DAYS,
) -> RetentionResult:
    """One retention pass. ``retention_days`` 0 keeps raw rows forever."""
    now = now or dt.datetime.now(dt.UTC)
    result = RetentionResult()
    if retention_days > 0:
        cutoff = now - dt.timedelta(days=retention_days)
        oldest = (
            select(request_log.c.id)
            .where(request_log.c.created_at < cutoff)
            .order_by(request_log.c.created_at)
            .limit(batch_size)
            .scalar_subquery()
        )
        while True:
            async with engine.begin() as conn:
                deleted = (await conn.execute(delete(request_log).where(request_log.c.id.in_(oldest)))).rowcount
            result.raw_rows += deleted
            result.batches += 1
            if deleted < batch_size:
                break
            await asyncio.sleep(pause)
    if minute_rollup_days > 0:
        cutoff = now - dt.timedelta(days=minute_rollup_days)
        for family in ROLLUP_FAMILIES:
            table = rollup_table("minute", family)
            # Rollup keys are (bucket, ...): delete an hour of buckets per transaction, oldest first.
            while True:
                async with engine.connect() as conn:
                    first = (await conn.execute(select(func.min(table.c.bucket)))).scalar_one_or_none()
                if first is None:
                    break
                if first.tzinfo is None:
                    first = first.replace(tzinfo=dt.UTC)
                if first >= cutoff:
                    break
                upto = min(first + dt.timedelta(hours=1), cutoff)
                async with engine.begin() as conn:
                    deleted = (await conn.execute(delete(table).where(table.c.bucket < upto))).rowcount
                if family == "":
                    result.minute_rollups += deleted
                result.batches += 1
                await asyncio.sleep(pause)
    return result


async def prune_stored_responses(engine: AsyncEngine, now: dt.datetime | None = None) -> int:
    """Delete the stored responses (gateway/stored_responses.py) past their time."""
    now = now or dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        result = await conn.execute(delete(stored_responses).where(stored_responses.c.expires_at < now))
    return int(result.rowcount or 0)


async def run_forever(engine: AsyncEngine, retention_days: int, every: float = RUN_EVERY_SECONDS) -> None:
    """The background task started by the runtime: a pass at start-up, then hourly."""
    while True:
        try:
            expired = await prune_stored_responses(engine)
            if expired:
                log.info("retention: deleted %d expired stored responses", expired)
            result = await prune(engine, retention_days=retention_days)
            if result.raw_rows or result.minute_rollups:
                log.info(
                    "retention: deleted %d request log rows and %d minute rollups",
                    result.raw_rows,
                    result.minute_rollups,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("request log retention failed: %s", exc)
        await asyncio.sleep(every)

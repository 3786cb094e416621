"""Where the log writer's batches go: one insert per batch, in one transaction, at the driver level.

SQLite gets a dedicated connection written from dedicated threads: the whole batch (BEGIN, inserts, COMMIT) is
one hop off the event loop, and SQLite's work runs outside the GIL. A short backlog (``background``: a quiet or
lightly loaded gateway) is written by a thread at the lowest CPU priority (nice 19) that gives the core back every
few rows (``YIELD_EVERY_ROWS``), so its page writes run in the gaps between requests instead of taking turns with
them. A longer backlog goes to a thread at normal priority, so a busy event loop can never starve the log. On
SQLite the rows between two yields go in as one multi-row ``INSERT ... VALUES (...), (...)``
(``SqliteSink._insert_rows``). PostgreSQL goes through asyncpg's executemany on the shared engine.

The rollup deltas of the batch (``rollup.py``) are upserted in the same transaction, so the rollups always equal
the aggregates of the committed raw rows. The same transaction moves each client key's ``last_used_at`` forward to
the newest row of the batch that used it (``last_used``): one UPDATE per key and batch, never one per request, and
never backwards (a late batch, such as a replayed spill file, leaves a newer time alone); ``updated_at`` is left
alone, so the key caches do not reload for it. SQLAlchemy's per-row parameter processing is skipped on both
engines: it cost twice as much as the insert itself. The measurements behind these choices are in
docs/decisions/0003-log-writer-threads.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.record import COLUMNS, DECIMAL_COLUMNS
from gophergate.db.tables import ROLLUP_KEYS
from gophergate.recorder.rollup import sqlite_bucket, transpose, upsert_sql, upsert_unnest_sql

log = logging.getLogger(__name__)

# Rollup deltas per rollup table name, rows in rollup.delta_columns(table) order.
Deltas = dict[str, list[tuple[Any, ...]]]

_CREATED = COLUMNS.index("created_at")
_CLIENT = COLUMNS.index("client_key_id")
_DECIMALS = tuple(COLUMNS.index(c) for c in DECIMAL_COLUMNS)


class Sink(Protocol):
    def encode(self, row: tuple[Any, ...]) -> tuple[Any, ...]: ...

    def encode_deltas(self, deltas: Deltas) -> Deltas: ...

    async def insert(
        self, rows: list[tuple[Any, ...]], deltas: Deltas | None = None, *, background: bool = False
    ) -> None:
        """Write one batch in one transaction; ``background`` says nothing is waiting on it (see module doc)."""
        ...

    async def probe(self, rows: list[tuple[Any, ...]], deltas: Deltas) -> None:
        """Insert ``rows`` and their rollups in a transaction that is rolled back: raises what an insert would."""
        ...

    async def close(self) -> None: ...


def _placeholders(style: str) -> str:
    if style == "qmark":
        return ", ".join("?" for _ in COLUMNS)
    return ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))


def insert_sql(style: str, rows: int = 1) -> str:
    """The insert statement; with ``rows`` > 1 (qmark only) one statement for that many rows, flattened."""
    if rows > 1:
        assert style == "qmark"
        values = ", ".join([f"({_placeholders(style)})"] * rows)
    else:
        values = f"({_placeholders(style)})"
    return f"INSERT INTO request_log ({', '.join(COLUMNS)}) VALUES {values}"


def touch_sql(style: str) -> str:
    """Move one key's last_used_at forward (never back); parameters: (time, key id, time)."""
    if style == "qmark":
        marks = ("?", "?", "?")
    else:
        marks = ("$1", "$2", "$1")
    return (
        f"UPDATE client_keys SET last_used_at = {marks[0]} WHERE id = {marks[1]} "
        f"AND (last_used_at IS NULL OR last_used_at < {marks[2]})"
    )


def last_used(rows: list[tuple[Any, ...]]) -> list[tuple[Any, int]]:
    """``(newest created_at, client key id)`` per client key used in ``rows`` (encoded rows), in key order (one
    lock order for every writer). Rows without a key (refused before authentication) touch nothing."""
    latest: dict[int, Any] = {}
    for row in rows:
        key = row[_CLIENT]
        if key:
            at = row[_CREATED]
            seen = latest.get(key)
            if seen is None or at > seen:
                latest[key] = at
    return [(latest[key], key) for key in sorted(latest)]


BACKGROUND_NICE = 19
# The low-priority thread still gives the core back every few rows: on a kernel without full preemption a woken
# task waits for the running one to block or yield, whatever the running one's priority.
YIELD_EVERY_ROWS = 8
# A backlog (the normal-priority thread) yields less often, so it catches up; never yielding would leave the event
# loop waiting for the GIL for a whole batch.
BACKLOG_YIELD_EVERY_ROWS = 64


def _yield_cpu() -> None:
    os.sched_yield()  # releases the GIL too


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Give the calling thread (not the process) the lowest CPU priority. Only Linux keeps nice values per thread
    (elsewhere the id would name a process, so nothing is done there)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:  # not allowed here (some sandboxes): the batch is written at normal priority
        log.debug("could not lower the background log writer's priority", exc_info=True)


class SqliteSink:
    def __init__(self, url: str) -> None:
        self._path = make_url(url).database or ":memory:"
        self._sql = insert_sql("qmark")
        self._multi_sql: dict[int, str] = {}
        self._rows_limit = 1  # rows a statement can bind (SQLite's bound-parameter limit), read at connect
        self._upserts = {table: upsert_sql(table, "qmark") for table in ROLLUP_KEYS}
        self._touch = touch_sql("qmark")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gophergate-sqlite-writer")
        self._background = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="gophergate-sqlite-writer-bg", initializer=lower_thread_priority
        )
        # One connection, used by whichever of the two threads writes the batch: the recorder awaits each batch,
        # so the threads never use it at the same time (hence check_same_thread=False).
        self._conn: sqlite3.Connection | None = None

    def encode(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        # created_at as the naive-UTC text SQLAlchemy's SQLite DateTime reads back; USD amounts as exact decimal
        # text (the columns are TEXT on SQLite).
        out = list(row)
        created: dt.datetime = out[_CREATED]
        if created.tzinfo is not None:
            created = created.astimezone(dt.UTC).replace(tzinfo=None)
        out[_CREATED] = created.isoformat(" ", "microseconds")
        for index in _DECIMALS:
            value = out[index]
            if value is not None:
                out[index] = format(value, "f")
        return tuple(out)

    def encode_deltas(self, deltas: Deltas) -> Deltas:
        return {g: [(sqlite_bucket(r[0]), *r[1:]) for r in rows] for g, rows in deltas.items()}

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._rows_limit = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS))
            self._conn = conn
        return self._conn

    def _insert_rows(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], slice_rows: int) -> None:
        """The rows between two yields as one statement: the thread binds them, then SQLite inserts them all with
        the GIL released, so the GIL changes hands once per statement instead of once per row.

        A slice is capped by SQLite's bound-parameter limit (999 before SQLite 3.32). A shorter rest goes in row by
        row, so only one statement per slice size is cached (a 64-row statement is a big prepared program)."""
        size = min(slice_rows, self._rows_limit)
        full = len(rows) - len(rows) % size
        if full:
            sql = self._multi_sql.get(size)
            if sql is None:
                sql = self._multi_sql[size] = insert_sql("qmark", size)
            for start in range(0, full, size):
                conn.execute(sql, list(itertools.chain.from_iterable(rows[start : start + size])))
        if full < len(rows):
            conn.executemany(self._sql, rows[full:])

    def _insert(self, rows: list[tuple[Any, ...]], deltas: Deltas | None, polite: bool) -> None:
        """One transaction. ``polite`` (background batches): give the core back every ``YIELD_EVERY_ROWS`` rows;
        a backlog only every ``BACKLOG_YIELD_EVERY_ROWS``: yielding as often would let it grow without end under
        full load, and never yielding would hold the GIL through a whole batch."""
        conn = self._connection()
        step = YIELD_EVERY_ROWS if polite else BACKLOG_YIELD_EVERY_ROWS
        try:
            conn.execute("BEGIN IMMEDIATE")
            for start in range(0, len(rows), step):
                self._insert_rows(conn, rows[start : start + step], step)
                if step < len(rows):
                    _yield_cpu()
            if deltas:
                for table, delta_rows in deltas.items():
                    conn.executemany(self._upserts[table], delta_rows)
                    if polite:
                        _yield_cpu()
            # created_at is the naive-UTC text here (``encode``): it orders like the time, and is what
            # SQLAlchemy's SQLite DateTime reads back.
            touches = last_used(rows)
            if touches:
                conn.executemany(self._touch, [(at, key, at) for at, key in touches])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def insert(
        self, rows: list[tuple[Any, ...]], deltas: Deltas | None = None, *, background: bool = False
    ) -> None:
        executor = self._background if background else self._executor
        await asyncio.get_running_loop().run_in_executor(executor, self._insert, rows, deltas, background)

    def _probe(self, rows: list[tuple[Any, ...]], deltas: Deltas) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self._sql, rows)
            for table, delta_rows in deltas.items():
                conn.executemany(self._upserts[table], delta_rows)
        finally:
            conn.execute("ROLLBACK")

    async def probe(self, rows: list[tuple[Any, ...]], deltas: Deltas) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._probe, rows, deltas)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        # Both threads are idle here (the recorder has awaited its last batch).
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)
        self._background.shutdown(wait=True)


class EngineSink:
    """PostgreSQL (asyncpg): one executemany per batch inside one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sql = insert_sql(engine.dialect.paramstyle)
        self._upserts = {table: upsert_unnest_sql(table) for table in ROLLUP_KEYS}
        self._touch = touch_sql(engine.dialect.paramstyle)

    def encode(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return row

    def encode_deltas(self, deltas: Deltas) -> Deltas:
        return deltas

    async def insert(
        self, rows: list[tuple[Any, ...]], deltas: Deltas | None = None, *, background: bool = False
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(self._sql, rows)
            if deltas:
                for table, delta_rows in deltas.items():
                    if delta_rows:
                        await conn.exec_driver_sql(self._upserts[table], transpose(delta_rows))
            touches = last_used(rows)
            if touches:
                await conn.exec_driver_sql(self._touch, [(at, key) for at, key in touches])

    async def probe(self, rows: list[tuple[Any, ...]], deltas: Deltas) -> None:
        async with self._engine.connect() as conn:
            transaction = await conn.begin()
            try:
                await conn.exec_driver_sql(self._sql, rows)
                for table, delta_rows in deltas.items():
                    if delta_rows:
                        await conn.exec_driver_sql(self._upserts[table], transpose(delta_rows))
            finally:
                await transaction.rollback()

    async def close(self) -> None:
        return None


def create_sink(engine: AsyncEngine) -> Sink:
    if engine.dialect.name == "sqlite":
        return SqliteSink(engine.url.render_as_string(hide_password=False))
    return EngineSink(engine)

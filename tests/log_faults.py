"""Database faults for request-log tests, on both engines: triggers that refuse rows, a held write lock, spill files.

The fault is inside the real database (a trigger raising, a lock held by another connection), so the writer
sees exactly the errors a production database would give it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from gophergate.core.record import COLUMNS, RequestRecord
from tests.support import run_async

TRIGGER = "gg_test_reject"


def reject_sql(database_url: str, condition: str) -> list[str]:
    """Statements that make the database refuse every request_log insert for which ``condition`` (SQL over
    ``NEW``) holds, with an error a row fault gives (IntegrityError on SQLite, a raised exception on PostgreSQL)."""
    if database_url.startswith("sqlite"):
        return [
            f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON request_log WHEN {condition} "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
        ]
    return [
        f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF {condition} THEN RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$",
        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON request_log FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()",
    ]


def accept_sql(database_url: str) -> list[str]:
    if database_url.startswith("sqlite"):
        return [f"DROP TRIGGER IF EXISTS {TRIGGER}"]
    return [f"DROP TRIGGER IF EXISTS {TRIGGER} ON request_log"]


def execute(database_url: str, statements: Iterable[str]) -> None:
    """Run DDL from sync test code (its own connection, committed at once)."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.split("///", 1)[1], timeout=30)
        try:
            for sql in statements:
                conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    run_async(main)


class WriteLock:
    """Another connection holding the request_log write lock until ``release`` (a stuck database: inserts wait,
    reads still answer). SQLite: BEGIN EXCLUSIVE (readers go on in WAL mode); PostgreSQL: LOCK TABLE."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._release = threading.Event()
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> WriteLock:
        self._thread.start()
        assert self._held.wait(10), "could not take the write lock"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def _hold(self) -> None:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.split("///", 1)[1], timeout=30, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            self._held.set()
            self._release.wait()
            conn.execute("ROLLBACK")
            conn.close()
            return
        import asyncpg

        async def main() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE request_log IN EXCLUSIVE MODE")
                    self._held.set()
                    await asyncio.to_thread(self._release.wait)
            finally:
                await conn.close()

        asyncio.run(main())


def record(request_id: str, **fields: Any) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, endpoint="chat.completions", started=time.perf_counter(), status=200, **fields
    )


def write_spill(path: Path, records: Iterable[RequestRecord]) -> None:
    """A spill file as a gateway writes it at shutdown (one JSON object per line, by column)."""

    def default(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return str(value)

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        for rec in records:
            fh.write(orjson.dumps(dict(zip(COLUMNS, rec.values(), strict=True)), default=default) + b"\n")

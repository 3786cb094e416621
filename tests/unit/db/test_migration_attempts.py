"""Migration 0009 adds routing's ``attempt``, ``final`` and ``model_group`` to the request log: rows written before it
read back as final first attempts without a model group; it goes back down to 0008 keeping every row."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gophergate.db.engine import create_engine
from gophergate.db.migrate import alembic_config, upgrade
from gophergate.db.tables import metadata, request_log
from gophergate.settings import async_database_url

NEW = ("attempt", "final", "model_group")
CREATED = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _log_at_0008() -> sa.TableClause:
    """request_log as 0008 left it (the columns of tables.py without 0009's)."""
    return sa.table("request_log", *(sa.column(c.name, c.type) for c in request_log.c if c.name not in NEW))


def _row(request_id: str, seconds: int, **values: Any) -> dict[str, Any]:
    row = {
        "request_id": request_id,
        "created_at": CREATED + dt.timedelta(seconds=seconds),
        "endpoint": "chat.completions",
        "stream": False,
        "status": 200,
        "error_type": None,
        "error_class": None,
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "reasoning_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "estimated": False,
        "latency_ms": 12.5,
        "price_unknown": False,
    }
    row.update(values)  # every row of an executemany has the same keys (the first row's make the statement)
    return row


async def _columns(engine: Any) -> set[str]:
    async with engine.connect() as conn:
        return {c["name"] for c in await conn.run_sync(lambda c: sa.inspect(c).get_columns("request_log"))}


async def test_rows_logged_at_0008_are_final_first_attempts_and_downgrade_keeps_every_row(database_url: str) -> None:
    url = async_database_url(database_url)
    cfg = alembic_config(url)
    await asyncio.to_thread(command.upgrade, cfg, "0008")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(_log_at_0008()),
            [
                _row("old-ok", 0),
                _row("old-failed", 1, status=503, error_type="upstream_error", error_class="overloaded"),
            ],
        )
    await engine.dispose()

    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    c = request_log.c
    async with engine.begin() as conn:
        got = (await conn.execute(sa.select(c.request_id, *(c[n] for n in NEW)).order_by(c.id))).all()
        assert [tuple(r) for r in got] == [("old-ok", 1, True, None), ("old-failed", 1, True, None)]
        assert (await conn.execute(sa.select(c.error_class).where(c.request_id == "old-failed"))).scalar_one() == (
            "overloaded"
        )
        # Routing's rows: two attempts of one request in a model group.
        await conn.execute(
            sa.insert(request_log),
            [
                _row("routed", 2, status=429, attempt=1, final=False, model_group="fast", error_class="rate_limited"),
                _row("routed", 3, attempt=2, final=True, model_group="fast"),
            ],
        )
        finals = (await conn.execute(sa.select(sa.func.count()).where(c.final.is_(sa.true())))).scalar_one()
        assert finals == 3
    await engine.dispose()

    await asyncio.to_thread(command.downgrade, cfg, "0008")
    engine = create_engine(url)
    assert not set(NEW) & await _columns(engine)
    old = _log_at_0008()
    async with engine.connect() as conn:
        ids = (await conn.execute(sa.select(old.c.request_id).order_by(old.c.created_at))).scalars().all()
    assert ids == ["old-ok", "old-failed", "routed", "routed"]
    await engine.dispose()

    # And up again: the schema is the declared one (the downgrade left nothing behind, indexes included).
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        indexes = await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes("request_log")})
        attempts = (await conn.execute(sa.select(c.attempt, c.final).where(c.request_id == "routed"))).all()
    assert {i.name for i in request_log.indexes} <= indexes
    assert sorted(tuple(r) for r in attempts) == [(1, True), (1, True)]  # what 0008 kept of them: two rows
    await engine.dispose()

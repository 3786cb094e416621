"""Migration 0007 adds teams and the new limits, turns the old daily/monthly budgets into one budget with a period,
and goes back down to 0006 without losing the day and month budgets."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import command

from gophergate.db.engine import create_engine
from gophergate.db.migrate import alembic_config, upgrade
from gophergate.settings import async_database_url

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MONEY = sa.Numeric().with_variant(sa.Text(), "sqlite")


def _keys(*extra: str) -> sa.TableClause:
    types: dict[str, Any] = {"budget_period": sa.String, "team_id": sa.BigInteger, "id": sa.BigInteger}
    base = ("id", "name", "key_hash", "key_hint", "created_at", "updated_at")
    columns = [sa.column(n, sa.DateTime(timezone=True) if n.endswith("_at") else types.get(n, sa.String)) for n in base]
    columns += [sa.column(n, types.get(n, MONEY)) for n in extra]
    return sa.table("client_keys", *columns)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def test_upgrade_carries_budgets_over_and_downgrade_restores_day_and_month(database_url: str) -> None:
    url = async_database_url(database_url)
    cfg = alembic_config(url)
    await asyncio.to_thread(command.upgrade, cfg, "0006")
    engine = create_engine(url)
    old = _keys("budget_daily_usd", "budget_monthly_usd")
    rows = [  # name, daily, monthly
        ("daily", "5.25", None),
        ("monthly", None, "100"),
        ("both", "3", "70.5"),
        ("none", None, None),
    ]
    async with engine.begin() as conn:
        for i, (name, daily, monthly) in enumerate(rows, start=1):
            await conn.execute(
                sa.insert(old).values(
                    id=i,
                    name=name,
                    key_hash=f"{i:064d}",
                    key_hint="gg-...",
                    created_at=NOW,
                    updated_at=NOW,
                    budget_daily_usd=daily,
                    budget_monthly_usd=monthly,
                )
            )
    await engine.dispose()

    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    new = _keys("budget_usd", "budget_period", "team_id")
    async with engine.connect() as conn:
        got = {r.name: (_money(r.budget_usd), r.budget_period) for r in await conn.execute(sa.select(new))}
        columns = {c["name"] for c in await conn.run_sync(lambda c: sa.inspect(c).get_columns("client_keys"))}
        team_columns = {c["name"] for c in await conn.run_sync(lambda c: sa.inspect(c).get_columns("teams"))}
    assert got == {
        "daily": (Decimal("5.25"), "day"),
        "monthly": (Decimal("100"), "month"),
        "both": (Decimal("70.5"), "month"),  # one budget per key: the monthly one wins
        "none": (None, None),
    }
    assert "budget_daily_usd" not in columns and "budget_monthly_usd" not in columns
    assert {"team_id", "expires_at", "max_parallel", "allowed_models", "max_tokens_cap"} <= columns
    assert {"name", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period", "allowed_models"} <= team_columns

    # A team with a key, and a week budget that 0006 cannot express: both are dropped on the way down.
    teams = sa.table(
        "teams",
        sa.column("id", sa.BigInteger),
        sa.column("name", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    async with engine.begin() as conn:
        await conn.execute(sa.insert(teams).values(id=1, name="research", created_at=NOW, updated_at=NOW))
        await conn.execute(sa.update(new).where(new.c.name == "none").values(team_id=1))
        await conn.execute(sa.update(new).where(new.c.name == "daily").values(budget_usd="9", budget_period="week"))
    await engine.dispose()

    await asyncio.to_thread(command.downgrade, cfg, "0006")
    engine = create_engine(url)
    async with engine.connect() as conn:
        back = {
            r.name: (_money(r.budget_daily_usd), _money(r.budget_monthly_usd))
            for r in await conn.execute(sa.select(old))
        }
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    await engine.dispose()
    assert back == {
        "daily": (None, None),  # its week budget has no place in 0006
        "monthly": (None, Decimal("100")),
        "both": (None, Decimal("70.5")),
        "none": (None, None),
    }
    assert "teams" not in tables

    await asyncio.to_thread(upgrade, url)  # and up again on the same data
    engine = create_engine(url)
    async with engine.connect() as conn:
        again = {r.name: (_money(r.budget_usd), r.budget_period) for r in await conn.execute(sa.select(new))}
    await engine.dispose()
    assert again["monthly"] == (Decimal("100"), "month") and again["daily"] == (None, None)

"""Teams: a name and the limits that apply to the sum of their keys (enforced by gateway/governance.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.services.limits import LIMIT_COLUMNS, limits_item, settle_budget, stored
from gophergate.db.tables import client_keys, teams


class TeamExists(Exception):
    pass


class TeamHasKeys(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_key_count = (
    select(func.count())
    .select_from(client_keys)
    .where(client_keys.c.team_id == teams.c.id)
    .scalar_subquery()
    .label("key_count")
)
_COLUMNS = (
    teams.c.id,
    teams.c.name,
    teams.c.created_at,
    teams.c.updated_at,
    *(teams.c[n] for n in LIMIT_COLUMNS),
    _key_count,
)


def item(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {
        "id": m["id"],
        "name": m["name"],
        "created_at": m["created_at"],
        "updated_at": m["updated_at"],
        "keys": m["key_count"],
        "limits": limits_item(m),
    }


async def list_all(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [item(r) for r in await conn.execute(select(*_COLUMNS).order_by(teams.c.name))]


async def get(engine: AsyncEngine, team_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_COLUMNS).where(teams.c.id == team_id))).first()
    return item(row) if row is not None else None


async def find(engine: AsyncEngine, name: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_COLUMNS).where(teams.c.name == name))).first()
    return item(row) if row is not None else None


async def create(engine: AsyncEngine, name: str, limits: dict[str, Any]) -> int:
    limits = settle_budget({}, limits)
    now = _now()
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(teams).values(name=name, created_at=now, updated_at=now, **stored(limits))
            )
    except IntegrityError:
        raise TeamExists(name) from None
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def change(engine: AsyncEngine, team_id: int, values: dict[str, Any]) -> bool:
    """Rename and/or set limits; False if there is no such team. Raises TeamExists, LimitError."""
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(select(teams.c.budget_usd, teams.c.budget_period).where(teams.c.id == team_id))
            ).first()
            if row is None:
                return False
            values = settle_budget(dict(row._mapping), values)
            await conn.execute(update(teams).where(teams.c.id == team_id).values(updated_at=_now(), **stored(values)))
    except IntegrityError:
        raise TeamExists(values.get("name")) from None
    return True


async def remove(engine: AsyncEngine, team_id: int) -> bool:
    """Delete a team without keys; raises TeamHasKeys while any key (revoked ones too) belongs to it."""
    async with engine.begin() as conn:
        count = (
            await conn.execute(select(func.count()).select_from(client_keys).where(client_keys.c.team_id == team_id))
        ).scalar_one()
        if count:
            raise TeamHasKeys(int(count))
        result = await conn.execute(delete(teams).where(teams.c.id == team_id))
    return bool(result.rowcount)

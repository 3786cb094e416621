"""Client keys as the dashboard manages them (the hashing and the cache live in ``security/client_keys``).

Rotation revokes the key and creates a new one with the same name, team, expiry and limits (a new id): the running
``KeyCache`` of every process then drops the old secret through its usual poll, which a new secret on the
same row would not do (the cache is keyed by hash). The old id stays in the log for the requests it made."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.services.limits import LIMIT_COLUMNS, limits_item, settle_budget, stored
from gophergate.db.tables import client_keys, teams
from gophergate.security.client_keys import generate_key, hash_key, key_hint

# What a rotation carries over to the successor besides the name.
COPIED_COLUMNS = ("team_id", "expires_at", *LIMIT_COLUMNS)
_COLUMNS = (
    client_keys.c.id,
    client_keys.c.name,
    client_keys.c.key_hint,
    client_keys.c.created_at,
    client_keys.c.revoked_at,
    client_keys.c.last_used_at,
    client_keys.c.team_id,
    client_keys.c.expires_at,
    teams.c.name.label("team_name"),
    *(client_keys.c[name] for name in LIMIT_COLUMNS),
)
_FROM = client_keys.outerjoin(teams, teams.c.id == client_keys.c.team_id)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(values: dict[str, Any]) -> dict[str, Any]:
    """Expiry in UTC: SQLite keeps a datetime's digits and drops its offset."""
    if values.get("expires_at") is not None:
        values = {**values, "expires_at": values["expires_at"].astimezone(dt.UTC)}
    return values


def item(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "id": m["id"],
        "name": m["name"],
        "hint": m["key_hint"],
        "created_at": m["created_at"],
        "revoked_at": m["revoked_at"],
        "last_used_at": m["last_used_at"],
        "team": None if m["team_id"] is None else {"id": m["team_id"], "name": m["team_name"]},
        "expires_at": m["expires_at"],
        "limits": limits_item(m),
    }


async def list_page(engine: AsyncEngine, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    query = select(*_COLUMNS).select_from(_FROM).order_by(client_keys.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(client_keys.c.id < before_id)
    async with engine.connect() as conn:
        return [item(r) for r in await conn.execute(query)]


async def get(engine: AsyncEngine, key_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_COLUMNS).select_from(_FROM).where(client_keys.c.id == key_id))).first()
    return item(row) if row is not None else None


async def create(engine: AsyncEngine, name: str, values: dict[str, Any] | None = None) -> tuple[int, str]:
    """A new key with optional ``team_id``, ``expires_at`` and limits. Raises LimitError."""
    values = _utc(settle_budget({}, values or {}))
    secret = generate_key()
    now = _now()
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(client_keys).values(
                name=name,
                key_hash=hash_key(secret),
                key_hint=key_hint(secret),
                created_at=now,
                updated_at=now,
                **stored(values),
            )
        )
    return int(result.inserted_primary_key[0]), secret  # type: ignore[index]


async def change(engine: AsyncEngine, key_id: int, values: dict[str, Any]) -> bool:
    """Rename, move to a team, set expiry and/or limits; False if there is no such key. Raises LimitError."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(client_keys.c.budget_usd, client_keys.c.budget_period).where(client_keys.c.id == key_id)
            )
        ).first()
        if row is None:
            return False
        values = _utc(settle_budget(dict(row._mapping), values))
        await conn.execute(
            update(client_keys).where(client_keys.c.id == key_id).values(updated_at=_now(), **stored(values))
        )
    return True


async def revoke(engine: AsyncEngine, key_id: int) -> bool:
    now = _now()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(client_keys)
            .where(client_keys.c.id == key_id, client_keys.c.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
        )
    return bool(result.rowcount)


async def rotate(engine: AsyncEngine, key_id: int) -> tuple[int, str] | None:
    """Revoke an active key and create its successor (same name and limits) in one transaction."""
    secret = generate_key()
    now = _now()
    async with engine.begin() as conn:
        old = (
            await conn.execute(
                select(client_keys.c.name, *(client_keys.c[n] for n in COPIED_COLUMNS)).where(
                    client_keys.c.id == key_id, client_keys.c.revoked_at.is_(None)
                )
            )
        ).first()
        if old is None:
            return None
        await conn.execute(update(client_keys).where(client_keys.c.id == key_id).values(revoked_at=now, updated_at=now))
        result = await conn.execute(
            insert(client_keys).values(
                name=old.name,
                key_hash=hash_key(secret),
                key_hint=key_hint(secret),
                created_at=now,
                updated_at=now,
                **{n: old._mapping[n] for n in COPIED_COLUMNS},
            )
        )
    return int(result.inserted_primary_key[0]), secret  # type: ignore[index]

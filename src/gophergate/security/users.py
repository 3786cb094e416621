"""Dashboard users: roles ``admin`` (everything) and ``viewer`` (read-only), bcrypt password hashes."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import sessions, users

log = logging.getLogger(__name__)

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role


def role_of(value: object) -> Role:
    return "admin" if value == "admin" else "viewer"


class UserExists(Exception):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _columns() -> list[Any]:
    return [users.c.id, users.c.username, users.c.role, users.c.created_at, users.c.updated_at,
            users.c.password_changed_at]  # fmt: skip


async def create_user(engine: AsyncEngine, username: str, password_hash: str, role: Role) -> dict[str, Any]:
    now = _now()
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(users).values(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    created_at=now,
                    updated_at=now,
                    password_changed_at=now,
                )
            )
            user_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    except IntegrityError:
        raise UserExists(username) from None
    row = await get_user(engine, user_id)
    assert row is not None
    return row


async def get_user(engine: AsyncEngine, user_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_columns()).where(users.c.id == user_id))).first()
    return dict(row._mapping) if row is not None else None


async def find_user(engine: AsyncEngine, username: str) -> tuple[User, str] | None:
    """The user and the password hash, for login."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.username, users.c.role, users.c.password_hash).where(
                    users.c.username == username
                )
            )
        ).first()
    if row is None:
        return None
    return User(int(row.id), str(row.username), role_of(row.role)), str(row.password_hash)


async def list_users(engine: AsyncEngine, *, before_id: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Newest first."""
    query = select(*_columns()).order_by(users.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(users.c.id < before_id)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def count_admins(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(users.c.role == "admin"))).scalar_one())


async def count_users(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def update_user(
    engine: AsyncEngine, user_id: int, *, role: Role | None = None, password_hash: str | None = None
) -> bool:
    """Change role and/or password; a new password revokes every session of the user in the same transaction."""
    now = _now()
    values: dict[str, Any] = {"updated_at": now}
    if role is not None:
        values["role"] = role
    if password_hash is not None:
        values["password_hash"] = password_hash
        values["password_changed_at"] = now
    async with engine.begin() as conn:
        result = await conn.execute(update(users).where(users.c.id == user_id).values(**values))
        if password_hash is not None:
            await conn.execute(
                update(sessions)
                .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
    return bool(result.rowcount)


async def delete_user(engine: AsyncEngine, user_id: int) -> bool:
    async with engine.begin() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        result = await conn.execute(delete(users).where(users.c.id == user_id))
    return bool(result.rowcount)


async def ensure_first_admin(engine: AsyncEngine, admin_password: str | None) -> None:
    """At start with no user: GOPHERGATE_ADMIN_PASSWORD creates ``admin``; otherwise say how to make one."""
    if await count_users(engine):
        return
    if not admin_password:
        log.warning(
            "no dashboard user exists: create one with `gophergate users create --username NAME --role admin`, "
            "or set GOPHERGATE_ADMIN_PASSWORD to create `admin` at the next start"
        )
        return
    from gophergate.security.passwords import check_policy, hash_password

    problem = check_policy(admin_password)
    if problem is not None:
        log.error("GOPHERGATE_ADMIN_PASSWORD %s; no admin user was created", problem)
        return
    try:
        await create_user(engine, "admin", await hash_password(admin_password), "admin")
    except UserExists:  # another worker made it first
        return
    log.info("created the dashboard user `admin` from GOPHERGATE_ADMIN_PASSWORD")

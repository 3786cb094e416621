"""Client keys: generated once, shown once, stored as SHA-256; verified against an in-memory cache.

The cache is loaded at start and kept fresh by a background poll of ``client_keys.updated_at``, so keys made
or revoked by the CLI in another process reach a running server within ``key_refresh_seconds``. An unknown
hash falls back to one database lookup, guarded by a small negative cache so that random keys cannot turn
into a database load.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import client_keys, teams

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-gg-"


@dataclass(frozen=True, slots=True)
class Policy:
    """The governance limits stored on a key or a team (``None``: no limit of that kind)."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: Decimal | None = None
    budget_period: str | None = None
    allowed_models: tuple[str, ...] = ()  # patterns; empty = every model
    max_tokens_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str
    team_id: int | None = None
    expires_at: float | None = None  # epoch seconds
    policy: Policy | None = None  # None: the key itself has no limit


_LIMIT_NAMES = ("rpm", "tpm", "max_parallel", "budget_usd", "budget_period", "allowed_models", "max_tokens_cap")


def policy_from_row(m: Any) -> Policy | None:
    """The limits of a ``client_keys`` or ``teams`` row; None when it has none."""
    if all(m[name] is None for name in _LIMIT_NAMES):
        return None
    models = m["allowed_models"]
    patterns = tuple(str(p) for p in (json.loads(models) if isinstance(models, str) else models or ()))
    budget = m["budget_usd"]
    policy = Policy(
        rpm=m["rpm"],
        tpm=m["tpm"],
        max_parallel=m["max_parallel"],
        budget_usd=None if budget is None else Decimal(str(budget)),
        budget_period=m["budget_period"] if budget is not None else None,
        allowed_models=patterns,
        max_tokens_cap=m["max_tokens_cap"],
    )
    return None if policy == _NO_POLICY else policy


_NO_POLICY = Policy()


def _principal(m: Any) -> Principal:
    expires = m["expires_at"]
    return Principal(
        int(m["id"]),
        str(m["name"]),
        team_id=None if m["team_id"] is None else int(m["team_id"]),
        expires_at=None if expires is None else _aware(expires).timestamp(),
        policy=policy_from_row(m),
    )


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    return f"{key[:6]}...{key[-4:]}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def create_key(engine: AsyncEngine, name: str) -> tuple[int, str]:
    key = generate_key()
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(client_keys).values(
                name=name, key_hash=hash_key(key), key_hint=key_hint(key), created_at=now, updated_at=now
            )
        )
        key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    return key_id, key


async def revoke_key(engine: AsyncEngine, key_id: int) -> bool:
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(client_keys)
            .where(client_keys.c.id == key_id, client_keys.c.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
        )
    return bool(result.rowcount)


async def list_keys(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                client_keys.c.id,
                client_keys.c.name,
                client_keys.c.key_hint,
                client_keys.c.created_at,
                client_keys.c.revoked_at,
            ).order_by(client_keys.c.id)
        )
        return [dict(row._mapping) for row in rows]


_KEY_COLUMNS = (
    client_keys.c.id,
    client_keys.c.name,
    client_keys.c.team_id,
    client_keys.c.expires_at,
    *(client_keys.c[name] for name in _LIMIT_NAMES),
)


class KeyCache:
    """hash -> Principal for every active key; the hot path does one dict lookup. ``names`` maps the id of every
    key seen (revoked ones too) to its name, for the live dashboard rows (not a secret). ``teams`` maps each team
    id to its limits (None: the team has none); teams are polled with the keys."""

    NEGATIVE_TTL = 2.0
    NEGATIVE_MAX = 10_000

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._active: dict[str, Principal] = {}
        self.names: dict[int, str] = {}
        self._negative: dict[str, float] = {}
        self._watermark: dt.datetime | None = None
        self._team_watermark: dt.datetime | None = None
        self._lookup_lock = asyncio.Lock()
        self.teams: dict[int, Policy | None] = {}
        self.team_names: dict[int, str] = {}

    @property
    def active_count(self) -> int:
        return len(self._active)

    async def resolve(self, key: str) -> Principal | None:
        key_hash = hash_key(key)
        principal = self._active.get(key_hash)
        if principal is not None:
            return principal
        now = time.monotonic()
        expires = self._negative.get(key_hash)
        if expires is not None and expires > now:
            return None
        # One lookup at a time: a flood of random keys queues here instead of on the database.
        async with self._lookup_lock:
            principal = self._active.get(key_hash)
            if principal is None:
                principal = await self._lookup(key_hash)
            if principal is None:
                if len(self._negative) >= self.NEGATIVE_MAX:
                    self._negative.clear()
                self._negative[key_hash] = now + self.NEGATIVE_TTL
        return principal

    async def _lookup(self, key_hash: str) -> Principal | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*_KEY_COLUMNS).where(client_keys.c.key_hash == key_hash, client_keys.c.revoked_at.is_(None))
                )
            ).first()
        if row is None:
            return None
        principal = _principal(row._mapping)
        self._active[key_hash] = principal
        self.names[principal.key_id] = principal.name
        return principal

    async def refresh(self) -> None:
        """Apply every key row changed since the last refresh (all rows on the first call)."""
        query = select(*_KEY_COLUMNS, client_keys.c.key_hash, client_keys.c.revoked_at, client_keys.c.updated_at)
        team_query = select(teams)
        # A margin for rows committed a little after their timestamp (another process, another host).
        if self._watermark is not None:
            query = query.where(client_keys.c.updated_at >= self._watermark - dt.timedelta(seconds=5))
        if self._team_watermark is not None:
            team_query = team_query.where(teams.c.updated_at >= self._team_watermark - dt.timedelta(seconds=5))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            team_rows = (await conn.execute(team_query)).all()
            # A deleted team leaves no row to see: compare the ids (cheap: teams are few).
            team_ids = None if not self.teams else {int(r[0]) for r in await conn.execute(select(teams.c.id))}
        for team in team_rows:
            self.teams[int(team.id)] = policy_from_row(team._mapping)
            self.team_names[int(team.id)] = str(team.name)
            updated = _aware(team.updated_at)
            if self._team_watermark is None or updated > self._team_watermark:
                self._team_watermark = updated
        for gone in set(self.teams) - team_ids if team_ids is not None else ():
            del self.teams[gone]
        for row in rows:
            self.names[int(row.id)] = str(row.name)
            if row.revoked_at is None:
                self._active[row.key_hash] = _principal(row._mapping)
                self._negative.pop(row.key_hash, None)
            else:
                self._active.pop(row.key_hash, None)
            updated = _aware(row.updated_at)
            if self._watermark is None or updated > self._watermark:
                self._watermark = updated

    def principal(self, key_id: int) -> Principal | None:
        """The active key with this id (for usage pages; not the hot path)."""
        for principal in self._active.values():
            if principal.key_id == key_id:
                return principal
        return None

    async def run_refresh(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # the database may be briefly unavailable; keep serving from the cache
                log.warning("client key refresh failed", exc_info=True)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)

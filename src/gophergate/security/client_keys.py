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
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import client_keys

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-gg-"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str


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


class KeyCache:
    """hash -> Principal for every active key; the hot path does one dict lookup. ``names`` maps the id of every
    key seen (revoked ones too) to its name, for the live dashboard rows (not a secret)."""

    NEGATIVE_TTL = 2.0
    NEGATIVE_MAX = 10_000

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._active: dict[str, Principal] = {}
        self.names: dict[int, str] = {}
        self._negative: dict[str, float] = {}
        self._watermark: dt.datetime | None = None
        self._lookup_lock = asyncio.Lock()

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
                    select(client_keys.c.id, client_keys.c.name).where(
                        client_keys.c.key_hash == key_hash, client_keys.c.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        principal = Principal(int(row.id), str(row.name))
        self._active[key_hash] = principal
        self.names[principal.key_id] = principal.name
        return principal

    async def refresh(self) -> None:
        """Apply every key row changed since the last refresh (all rows on the first call)."""
        query = select(
            client_keys.c.id,
            client_keys.c.name,
            client_keys.c.key_hash,
            client_keys.c.revoked_at,
            client_keys.c.updated_at,
        )
        if self._watermark is not None:
            # A margin for rows committed a little after their timestamp (another process, another host).
            query = query.where(client_keys.c.updated_at >= self._watermark - dt.timedelta(seconds=5))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            self.names[int(row.id)] = str(row.name)
            if row.revoked_at is None:
                self._active[row.key_hash] = Principal(int(row.id), str(row.name))
                self._negative.pop(row.key_hash, None)
            else:
                self._active.pop(row.key_hash, None)
            updated = _aware(row.updated_at)
            if self._watermark is None or updated > self._watermark:
                self._watermark = updated

    async def run_refresh(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # the database may be briefly unavailable; keep serving from the cache
                log.warning("client key refresh failed", exc_info=True)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)

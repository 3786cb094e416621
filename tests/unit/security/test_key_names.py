"""The key cache's id -> name map, which names live dashboard rows without a database query per row."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from gophergate.db.tables import client_keys
from gophergate.security.client_keys import KeyCache, create_key, revoke_key, utcnow
from tests.dashboard_data import migrated_engine


async def test_names_cover_every_key_follow_renames_and_keep_revoked_keys(tmp_path: Path) -> None:
    engine = await migrated_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    first, _ = await create_key(engine, "web-app")
    cache = KeyCache(engine)
    await cache.refresh()
    assert cache.names == {first: "web-app"}

    second, secret = await create_key(engine, "made-elsewhere")
    assert await cache.resolve(secret) is not None  # found by the lookup of an unknown hash, before a refresh
    assert cache.names[second] == "made-elsewhere"

    async with engine.begin() as conn:
        await conn.execute(update(client_keys).where(client_keys.c.id == first).values(name="web", updated_at=utcnow()))
    assert await revoke_key(engine, second)
    await cache.refresh()
    assert cache.names == {first: "web", second: "made-elsewhere"}  # a revoked key's rows still show its name
    assert await cache.resolve(secret) is None
    await engine.dispose()

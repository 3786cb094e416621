"""Per-model switches (table ``model_settings``): a disabled (provider, model) is refused on /v1 with 404.

/v1 checks an in-memory frozenset; the runtime reloads it after a change here and polls it for changes made by
other processes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import model_settings

ModelKey = tuple[str, str]  # (provider, upstream model id)


async def load_disabled(engine: AsyncEngine) -> frozenset[ModelKey]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(model_settings.c.provider, model_settings.c.model).where(model_settings.c.enabled.is_(False))
        )
        return frozenset((str(r.provider), str(r.model)) for r in rows)


async def set_enabled(engine: AsyncEngine, provider: str, model: str, enabled: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(model_settings)
            .where(model_settings.c.provider == provider, model_settings.c.model == model)
            .values(enabled=enabled, updated_at=now)
        )
        if not result.rowcount:
            await conn.execute(
                model_settings.insert().values(provider=provider, model=model, enabled=enabled, updated_at=now)
            )


async def list_settings(engine: AsyncEngine) -> dict[ModelKey, bool]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(model_settings.c.provider, model_settings.c.model, model_settings.c.enabled))
        return {(str(r.provider), str(r.model)): bool(r.enabled) for r in rows}

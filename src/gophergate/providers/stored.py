"""Providers managed from the dashboard (table ``provider_configs``), merged over the env/TOML ones.

A stored row replaces the env/TOML provider of the same name; its empty fields (base URL, API key, models)
fall back to that provider's, so disabling an env provider is a row with ``enabled = false`` and deleting the
row restores it. API keys are stored sealed with AES-256-GCM (``security/secretbox``), bound to the name."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import provider_configs as provider_table
from gophergate.providers.config import (
    ANTHROPIC_DEFAULT_BASE_URL,
    ANTHROPIC_DIALECT,
    GEMINI_DEFAULT_BASE_URL,
    NATIVE_PROVIDER_NAMES,
    ProviderConfig,
    provider_configs,
)
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.specs import BUILTIN_SPECS
from gophergate.security.secretbox import SecretBox, SecretBoxError
from gophergate.settings import Settings

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = (*BUILTIN_SPECS, "gemini", "anthropic", "custom")


@dataclass(frozen=True, slots=True)
class StoredProvider:
    name: str
    kind: str
    dialect: str | None
    base_url: str | None
    api_key_encrypted: bytes | None
    models: tuple[str, ...]
    enabled: bool
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One provider as the dashboard lists it: built or not, and where its configuration comes from."""

    name: str
    kind: str
    source: str  # "env" | "config" | "database"
    enabled: bool
    config: ProviderConfig | None  # None: not buildable (e.g. a stored key that no longer decrypts)


def kind_of(name: str) -> str:
    return name if name in BUILTIN_SPECS or name in NATIVE_PROVIDER_NAMES else "custom"


def check_name_and_kind(name: str, kind: str) -> str | None:
    """Why (name, kind) is not acceptable, or None. Built-in names keep their own kind, so that routing by
    name pattern and the registry (which know those names) stay right."""
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}"
    if kind_of(name) != "custom" and kind != name:
        return f"the name '{name}' is reserved for the built-in provider of kind '{name}'"
    return None


async def load_stored(engine: AsyncEngine) -> list[StoredProvider]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(provider_table).order_by(provider_table.c.name))).mappings().all()
    return [
        StoredProvider(
            name=r["name"],
            kind=r["kind"],
            dialect=r["dialect"],
            base_url=r["base_url"],
            api_key_encrypted=r["api_key_encrypted"],
            models=tuple(orjson.loads(r["models"] or "[]")),
            enabled=bool(r["enabled"]),
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


async def save_stored(engine: AsyncEngine, name: str, values: dict[str, Any]) -> None:
    """Insert or update the row of ``name`` with the given columns (``models`` as a list)."""
    now = dt.datetime.now(dt.UTC)
    row = dict(values)
    if "models" in row:
        row["models"] = orjson.dumps(list(row["models"])).decode()
    async with engine.begin() as conn:
        exists = (await conn.execute(select(provider_table.c.id).where(provider_table.c.name == name))).first()
        if exists is None:
            row.setdefault("models", "[]")
            row.setdefault("enabled", True)
            await conn.execute(insert(provider_table).values(name=name, created_at=now, updated_at=now, **row))
        else:
            await conn.execute(
                update(provider_table).where(provider_table.c.name == name).values(updated_at=now, **row)
            )


async def delete_stored(engine: AsyncEngine, name: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(delete(provider_table).where(provider_table.c.name == name))
    return bool(result.rowcount)


def stored_config(
    settings: Settings, row: StoredProvider, key: str | None, base: ProviderConfig | None
) -> ProviderConfig:
    api_key = key or (base.api_key if base else None)
    headers = base.headers if base else ()
    models = row.models or (base.models if base else ())
    if row.kind in BUILTIN_SPECS:
        spec = BUILTIN_SPECS[row.kind]
        if row.base_url:
            url = row.base_url.rstrip("/")
            if spec.api_prefix and not url.endswith(spec.api_prefix):
                url += spec.api_prefix
        elif base is not None:
            url = base.base_url
        else:
            url = spec.default_base_url.rstrip("/") + (spec.api_prefix or "")
        dialect = row.dialect or (base.dialect if base else spec.dialect)
        get_dialect(dialect)
        return ProviderConfig(row.name, dialect, url, api_key, headers, models)
    if row.kind == "gemini":
        url = (row.base_url or (base.base_url if base else GEMINI_DEFAULT_BASE_URL)).rstrip("/")
        if not url.rsplit("/", 1)[-1].startswith("v1"):
            url += "/" + settings.gemini_api_version
        return ProviderConfig(row.name, "gemini", url, api_key, headers, models)
    if row.kind == "anthropic":
        url = (row.base_url or (base.base_url if base else ANTHROPIC_DEFAULT_BASE_URL)).rstrip("/")
        return ProviderConfig(
            row.name, ANTHROPIC_DIALECT, url, api_key, headers, models, api_version=settings.anthropic_version
        )
    custom_url = row.base_url or (base.base_url if base else None)
    if not custom_url:
        raise ValueError("a custom provider needs a base_url")
    dialect = row.dialect or (base.dialect if base else "openai")
    get_dialect(dialect)
    return ProviderConfig(row.name, dialect, custom_url.rstrip("/"), api_key, headers, models)


def merge_providers(settings: Settings, stored: list[StoredProvider], box: SecretBox) -> dict[str, ProviderEntry]:
    """Every provider the dashboard knows, by name; the ones with ``enabled`` and a config are served."""
    entries: dict[str, ProviderEntry] = {}
    for cfg in provider_configs(settings):
        source = "config" if cfg.name in settings.providers else "env"
        entries[cfg.name] = ProviderEntry(cfg.name, kind_of(cfg.name), source, True, cfg)
    for row in stored:
        base = entries.get(row.name)
        key: str | None = None
        broken = False
        if row.api_key_encrypted is not None:
            try:
                key = box.open(row.api_key_encrypted, row.name)
            except SecretBoxError as exc:
                log.warning("provider %s: %s; it stays off until its key is entered again", row.name, exc)
                broken = True
        config: ProviderConfig | None = None
        if not broken:
            try:
                config = stored_config(settings, row, key, base.config if base else None)
            except (ValueError, KeyError) as exc:
                log.warning("provider %s from the database is not usable: %s", row.name, exc)
        entries[row.name] = ProviderEntry(row.name, row.kind, "database", row.enabled, config)
    return entries


def served_configs(entries: dict[str, ProviderEntry]) -> list[ProviderConfig]:
    return [e.config for e in entries.values() if e.enabled and e.config is not None]


def fingerprint(stored: list[StoredProvider]) -> tuple[tuple[str, str], ...]:
    """Changes when any row is added, changed or deleted (the cross-process poll compares these)."""
    return tuple((row.name, row.updated_at.isoformat()) for row in stored)

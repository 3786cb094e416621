"""/api/providers: list (any user; keys masked, and hidden from viewers), add, edit, disable, delete and
"test connection" (admin). Changes are served at once in this process and within
GOPHERGATE_PRICE_REFRESH_SECONDS in every other one; API keys are stored sealed (AES-256-GCM)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, CurrentUser, Rt
from gophergate.admin.errors import conflict, invalid, not_found
from gophergate.admin.paging import DEFAULT_LIMIT, Cursor, Limit, page_list
from gophergate.admin.responses import no_content, ok
from gophergate.core.errors import GatewayError
from gophergate.core.redact import redact
from gophergate.providers.openai_compat.dialects import DIALECTS
from gophergate.providers.openai_compat.specs import BUILTIN_SPECS
from gophergate.providers.registry import build_providers
from gophergate.providers.stored import (
    KINDS,
    ProviderEntry,
    StoredProvider,
    check_name_and_kind,
    delete_stored,
    kind_of,
    save_stored,
    stored_config,
)
from gophergate.runtime import Runtime
from gophergate.security.secretbox import mask
from gophergate.security.users import User

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/providers", tags=["providers"])

TEST_TIMEOUT_SECONDS = 10.0
ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
ModelList = Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=1000)]


class ProviderIn(BaseModel):
    name: ProviderName
    kind: str = Field(description=f"One of: {', '.join(KINDS)}.")
    base_url: str | None = Field(None, max_length=500, pattern=r"^https?://")
    api_key: str | None = Field(None, max_length=4096)
    dialect: str | None = Field(None, max_length=32)
    models: ModelList | None = None
    enabled: bool = True


class ProviderPatch(BaseModel):
    base_url: str | None = Field(None, max_length=500, pattern=r"^(https?://.*)?$")  # "" = back to the default
    api_key: str | None = Field(None, max_length=4096)  # "" = remove the stored key
    dialect: str | None = Field(None, max_length=32)
    models: ModelList | None = None
    enabled: bool | None = None


def item(rt: Runtime, entry: ProviderEntry, user: User) -> dict[str, Any]:
    cfg = entry.config
    models = sorted(set(cfg.models if cfg else ()) | set(rt.routing.models.get(entry.name, ())))
    health = rt.health.stats(entry.name)
    return {
        "name": entry.name,
        "kind": entry.kind,
        "dialect": cfg.dialect if cfg else None,
        "base_url": cfg.base_url if cfg else None,
        "api_key_masked": mask(cfg.api_key) if cfg is not None and user.role == "admin" else None,
        "enabled": entry.enabled,
        "served": entry.name in rt.routing.providers,
        "source": entry.source,
        "models": models,
        "health": {k: health[k] for k in ("error_rate", "p50_ms", "requests")},
    }


def _entry(rt: Runtime, name: str) -> ProviderEntry:
    entry = rt.provider_entries.get(name)
    if entry is None:
        raise not_found(f"No provider named '{name}'.")
    return entry


def _check(rt: Runtime, row: StoredProvider, api_key: str | None) -> None:
    """Refuse a configuration that could not be served (before anything is stored)."""
    base = rt.provider_entries.get(row.name)
    env = base.config if base is not None and base.source != "database" else None
    try:
        cfg = stored_config(rt.settings, row, api_key, env)
    except (ValueError, KeyError) as exc:
        param = "base_url" if "base_url" in str(exc) else "dialect"
        raise invalid(f"Invalid provider: {exc}.", param=param) from None
    spec = BUILTIN_SPECS.get(row.kind)
    needs_key = (spec is not None and spec.key_required) or row.kind in ("gemini", "anthropic")
    if needs_key and not cfg.api_key:
        raise invalid(f"A provider of kind '{row.kind}' needs an api_key.", param="api_key")


# Kinds that speak an OpenAI-compatible dialect (and so take a ``dialect``): the built-in specs and custom ones.
DIALECT_KINDS: tuple[str, ...] = (*BUILTIN_SPECS, "custom")


@router.get(
    "",
    summary="List providers (env, TOML and database), with passive health",
    description="Besides the page (`data`, `next_cursor`): `kinds` (what a new provider may be), `dialects` "
    "(the OpenAI-compatible dialects) and `dialect_kinds` (the kinds that take a dialect).",
)
async def list_providers(rt: Rt, user: CurrentUser, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Response:
    items = [item(rt, e, user) for _, e in sorted(rt.provider_entries.items())]
    body = page_list(items, limit, cursor)
    body.update(kinds=list(KINDS), dialects=list(DIALECTS), dialect_kinds=list(DIALECT_KINDS))
    return ok(body)


@router.post("", status_code=201, summary="Add a provider (stored in the database, served at once)")
async def create_provider(body: ProviderIn, rt: Rt, user: AdminUser) -> Response:
    problem = check_name_and_kind(body.name, body.kind)
    if problem is not None:
        raise invalid(f"Invalid provider: {problem}.", param="kind")
    existing = rt.provider_entries.get(body.name)
    if existing is not None and existing.source == "database":
        raise conflict(f"A provider named '{body.name}' exists; change it with PATCH.", code="provider_exists")
    row = StoredProvider(
        body.name,
        body.kind,
        body.dialect,
        body.base_url,
        None,
        tuple(body.models or ()),
        body.enabled,
        dt.datetime.now(dt.UTC),
    )
    _check(rt, row, body.api_key or None)
    sealed = rt.box.seal(body.api_key, body.name) if body.api_key else None
    await save_stored(
        rt.engine,
        body.name,
        {
            "kind": body.kind,
            "dialect": body.dialect,
            "base_url": body.base_url,
            "api_key_encrypted": sealed,
            "models": list(body.models or ()),
            "enabled": body.enabled,
        },
    )
    await rt.apply_change("providers")
    log.info("provider %s (%s) added from the dashboard by %s", body.name, body.kind, user.username)
    rt.emit("config_changed", {"what": "provider", "name": body.name, "action": "added"})
    return ok(item(rt, _entry(rt, body.name), user), 201)


@router.patch("/{name}", summary="Edit or disable a provider (an env/TOML one gets a database override)")
async def update_provider(name: str, body: ProviderPatch, rt: Rt, user: AdminUser) -> Response:
    entry = _entry(rt, name)
    fields = body.model_fields_set
    if not fields:
        raise invalid("Give at least one field to change.", param="enabled")
    values: dict[str, Any] = {}
    if "base_url" in fields:
        values["base_url"] = body.base_url or None
    if "dialect" in fields:
        values["dialect"] = body.dialect or None
    if "models" in fields:
        values["models"] = list(body.models or ())
    if "enabled" in fields and body.enabled is not None:
        values["enabled"] = body.enabled
    new_key: str | None = None
    if "api_key" in fields:
        new_key = body.api_key or None
        values["api_key_encrypted"] = rt.box.seal(new_key, name) if new_key else None
    if entry.source != "database":
        values.setdefault("kind", kind_of(name))
        values.setdefault("enabled", True)
    current = entry.config
    stored_key = current.api_key if current is not None and entry.source == "database" else None
    row = StoredProvider(
        name,
        entry.kind,
        values.get("dialect", current.dialect if current and entry.source == "database" else None),
        values.get("base_url", current.base_url if current and entry.source == "database" else None),
        None,
        tuple(values.get("models", current.models if current else ())),
        bool(values.get("enabled", entry.enabled)),
        dt.datetime.now(dt.UTC),
    )
    _check(rt, row, new_key if "api_key" in fields else stored_key)
    await save_stored(rt.engine, name, values)
    await rt.apply_change("providers")
    log.info("provider %s changed from the dashboard by %s (%s)", name, user.username, ", ".join(sorted(fields)))
    rt.emit("config_changed", {"what": "provider", "name": name, "action": "changed"})
    return ok(item(rt, _entry(rt, name), user))


@router.delete("/{name}", status_code=204, summary="Delete a provider added from the dashboard")
async def delete_provider(name: str, rt: Rt, user: AdminUser) -> Response:
    entry = _entry(rt, name)
    if entry.source != "database":
        raise invalid(
            f"Provider '{name}' comes from the {entry.source}; disable it instead (PATCH enabled=false).",
            code="provider_not_deletable",
        )
    await delete_stored(rt.engine, name)
    await rt.apply_change("providers")
    log.info("provider %s deleted from the dashboard by %s", name, user.username)
    rt.emit("config_changed", {"what": "provider", "name": name, "action": "deleted"})
    return no_content()


@router.post("/{name}/test", summary="Test connection: list the provider's models, with a timeout")
async def test_provider(name: str, rt: Rt, _: AdminUser) -> Response:
    entry = _entry(rt, name)
    if entry.config is None:
        return ok({"ok": False, "latency_ms": None, "error": "the provider's stored configuration is not usable"})
    provider = rt.routing.providers.get(name)
    if provider is None or rt.provider_configs.get(name) != entry.config:
        provider = build_providers([entry.config], rt.client, rt.reasoning)[name]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
            models = await provider.list_models()
    except TimeoutError:
        error = f"no answer within {TEST_TIMEOUT_SECONDS:g} s"
    except GatewayError as exc:  # upstream errors: already scrubbed of keys (and again, as a net)
        error = redact(exc.message)
    except Exception as exc:
        error = type(exc).__name__
    else:
        return ok({"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "models": len(models)})
    return ok({"ok": False, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "error": error})

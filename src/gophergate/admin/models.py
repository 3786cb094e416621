"""/api/models: the registry view of every model a provider serves (any user), per-model switches and price
overrides (admin). A disabled model answers 404 model_not_found on /v1 (checked in memory)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, CurrentUser, Rt
from gophergate.admin.errors import invalid, not_found
from gophergate.admin.paging import DEFAULT_LIMIT, Cursor, Limit, page_list
from gophergate.admin.responses import dumps, no_content
from gophergate.core.errors import ModelNotFound
from gophergate.gateway.model_settings import list_settings, set_enabled
from gophergate.gateway.resolve import Route
from gophergate.http.v1 import _model_object
from gophergate.pricing.catalog import Rates
from gophergate.pricing.overrides import PriceOverride, set_override, unset_override, until_datetime
from gophergate.runtime import Runtime

router = APIRouter(prefix="/api/models", tags=["models"])


def _json(content: Any, status: int = 200) -> Response:
    # Prices are orjson fragments (exact decimals as JSON numbers, as /v1/models has them).
    return Response(dumps(content), status_code=status, media_type="application/json")


def _override(override: PriceOverride | None) -> dict[str, Any] | None:
    if override is None:
        return None
    out: dict[str, Any] = {"key": override.key, "origin": override.origin}
    out.update({name: format(value, "f") for name, value in override.rates.as_dict().items()})
    if override.discount is not None:
        out["discount_percent"] = format(override.discount.percent, "f")
        out["discount_until"] = override.discount.until
    return out


def _route(rt: Runtime, provider: str, model: str) -> tuple[str, Route | None]:
    """The public id /v1 knows the model by, and its route (None when its provider is not served)."""
    try:
        bare = rt.routing.resolver.resolve(model)
        if bare.provider == provider and bare.model == model:
            return model, bare
    except ModelNotFound:
        pass
    public = f"{provider}/{model}"
    try:
        return public, rt.routing.resolver.resolve(public)
    except ModelNotFound:
        return public, None


def _item(rt: Runtime, provider: str, model: str) -> dict[str, Any]:
    public, route = _route(rt, provider, model)
    obj = _model_object(public, int(rt.started_at), route or Route(provider, model))
    entry = route.entry if route is not None else None
    overrides = rt.routing.resolver.book.overrides
    return {
        "id": public,
        "provider": provider,
        "model": model,
        "registry_id": f"{entry.provider_id}/{entry.id}" if entry is not None else None,
        "enabled": (provider, model) not in rt.routing.disabled_models,
        "served": route is not None,
        "context_window": obj.get("context_window"),
        "max_output_tokens": obj.get("max_output_tokens"),
        "capabilities": obj.get("capabilities"),
        "modalities": obj.get("modalities"),
        "pricing": obj.get("pricing"),
        "override": _override(overrides.get((provider, model)) or overrides.get(("", model))),
    }


async def _pairs(rt: Runtime) -> list[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for provider, ids in rt.routing.models.items():
        pairs.update((provider, m) for m in ids)
    for name, cfg in rt.provider_configs.items():
        pairs.update((name, m) for m in cfg.models)
    pairs.update(key for key in (await list_settings(rt.engine)) if key[0] in rt.provider_entries)
    return sorted(pairs)


@router.get("", summary="Models by provider, with registry data, prices, overrides and the enabled switch")
async def list_models(rt: Rt, _: CurrentUser, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Response:
    pairs = await _pairs(rt)
    page = page_list(pairs, limit, cursor)
    page["data"] = [_item(rt, p, m) for p, m in page["data"]]
    return _json(page)


class ModelPatch(BaseModel):
    enabled: bool


def _known_provider(rt: Runtime, provider: str) -> None:
    if provider not in rt.provider_entries:
        raise not_found(f"No provider named '{provider}'.")


@router.patch("/{provider}/{model:path}", summary="Enable or disable a model on /v1")
async def update_model(provider: str, model: str, body: ModelPatch, rt: Rt, _: AdminUser) -> Response:
    _known_provider(rt, provider)
    await set_enabled(rt.engine, provider, model, body.enabled)
    await rt.apply_change("models")
    rt.emit("config_changed", {"what": "model", "provider": provider, "model": model, "enabled": body.enabled})
    return _json(_item(rt, provider, model))


def _decimal(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError('must be a decimal string such as "2.50"') from None
    if not number.is_finite() or number < 0:
        raise ValueError("must be a decimal >= 0")
    return value


class PriceIn(BaseModel):
    """USD per 1M tokens, as decimal strings; a discount takes discount_percent off every class until
    discount_until (exclusive)."""

    input: str | None = None
    output: str | None = None
    cache_read: str | None = None
    cache_write: str | None = None
    reasoning: str | None = None
    discount_percent: str | None = None
    discount_until: dt.datetime | dt.date | None = Field(None, description="ISO date (midnight UTC) or datetime.")

    _check = field_validator("input", "output", "cache_read", "cache_write", "reasoning", "discount_percent")(_decimal)

    @model_validator(mode="after")
    def _together(self) -> PriceIn:
        if (self.discount_percent is None) != (self.discount_until is None):
            raise ValueError("discount_percent and discount_until go together")
        if self.discount_percent is not None and not 0 < Decimal(self.discount_percent) <= 100:
            raise ValueError("discount_percent must be more than 0 and at most 100")
        return self


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@router.put("/{provider}/{model:path}/price", summary="Set (replace) the price override of a model")
async def set_price(provider: str, model: str, body: PriceIn, rt: Rt, _: AdminUser) -> Response:
    _known_provider(rt, provider)
    rates = Rates(_dec(body.input), _dec(body.output), _dec(body.cache_read), _dec(body.cache_write),
                  _dec(body.reasoning))  # fmt: skip
    if rates == Rates() and body.discount_percent is None:
        raise invalid("Give at least one price or a discount.", param="input")
    await set_override(
        rt.engine,
        provider,
        model,
        rates=rates,
        discount_percent=_dec(body.discount_percent),
        discount_until=until_datetime(body.discount_until) if body.discount_until is not None else None,
    )
    await _reprice(rt)
    return _json(_item(rt, provider, model))


@router.delete("/{provider}/{model:path}/price", status_code=204, summary="Remove a model's price override")
async def delete_price(provider: str, model: str, rt: Rt, _: AdminUser) -> Response:
    _known_provider(rt, provider)
    if not await unset_override(rt.engine, provider, model):
        raise not_found(f"No price override for {provider}/{model} in the database.")
    await _reprice(rt)
    return no_content()


async def _reprice(rt: Runtime) -> None:
    """Applied at once here and pushed to the cluster; other processes also pick it up with their poll."""
    await rt.apply_change("prices")
    rt.emit("config_changed", {"what": "prices"})

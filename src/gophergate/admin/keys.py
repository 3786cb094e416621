"""/api/keys (admin only): client keys for /v1. A new secret is in the create/rotate answer only, once."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, Rt
from gophergate.admin.errors import conflict, invalid, not_found
from gophergate.admin.paging import DEFAULT_LIMIT, Cursor, Limit, encode_cursor, int_position
from gophergate.admin.responses import ok
from gophergate.admin.services import keys as service
from gophergate.runtime import Runtime

router = APIRouter(prefix="/api/keys", tags=["keys"])

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _usd(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError('must be a decimal string such as "12.50"') from None
    if not number.is_finite() or number < 0:
        raise ValueError("must be a decimal >= 0")
    return number


class Limits(BaseModel):
    """Null means unlimited. Stored now; enforced by a later release."""

    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute.")
    budget_daily_usd: str | None = Field(None, description="USD per UTC day, a decimal string.")
    budget_monthly_usd: str | None = Field(None, description="USD per UTC month, a decimal string.")

    _check = field_validator("budget_daily_usd", "budget_monthly_usd")(lambda v: None if v is None else str(_usd(v)))


class KeyIn(BaseModel):
    name: Name
    limits: Limits | None = None


class KeyPatch(BaseModel):
    name: Name | None = None
    limits: Limits | None = None


def _limit_values(limits: Limits) -> dict[str, Any]:
    """Only the limits the caller sent (an explicit null clears one)."""
    values: dict[str, Any] = {}
    for name in limits.model_fields_set:
        value = getattr(limits, name)
        values[name] = _usd(value) if name.startswith("budget") else value
    return values


async def _item(rt: Runtime, key_id: int) -> dict[str, Any]:
    key = await service.get(rt.engine, key_id)
    if key is None:
        raise not_found(f"No client key with id {key_id}.")
    return key


@router.get("", summary="List client keys, newest first (never the secrets)")
async def list_keys(rt: Rt, _: AdminUser, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Response:
    rows = await service.list_page(rt.engine, int_position(cursor, "before"), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return ok({"data": rows, "next_cursor": encode_cursor({"before": rows[-1]["id"]}) if more else None})


@router.post("", status_code=201, summary="Create a client key; the secret is shown in this answer only")
async def create_key(body: KeyIn, rt: Rt, _: AdminUser) -> Response:
    key_id, secret = await service.create(
        rt.engine, body.name.strip(), _limit_values(body.limits) if body.limits else None
    )
    await rt.keys.refresh()  # usable on /v1 at once in this process
    return ok({"key": await _item(rt, key_id), "secret": secret}, 201)


@router.patch("/{key_id}", summary="Rename a key and/or set its limits")
async def update_key(key_id: int, body: KeyPatch, rt: Rt, _: AdminUser) -> Response:
    values: dict[str, Any] = {}
    if body.name is not None:
        values["name"] = body.name.strip()
    if body.limits is not None:
        values.update(_limit_values(body.limits))
    if not values:
        raise invalid("Give 'name' and/or 'limits'.", param="name")
    if not await service.change(rt.engine, key_id, values):
        raise not_found(f"No client key with id {key_id}.")
    await rt.keys.refresh()
    return ok(await _item(rt, key_id))


@router.post("/{key_id}/revoke", summary="Revoke a key (refused on /v1 at once)")
async def revoke_key(key_id: int, rt: Rt, _: AdminUser) -> Response:
    item = await _item(rt, key_id)
    if item["revoked_at"] is None:
        await service.revoke(rt.engine, key_id)
        await rt.keys.refresh()
    return ok({"key": await _item(rt, key_id)})


@router.post("/{key_id}/rotate", summary="Revoke a key and issue its successor (same name and limits, new id)")
async def rotate_key(key_id: int, rt: Rt, _: AdminUser) -> Response:
    await _item(rt, key_id)
    rotated = await service.rotate(rt.engine, key_id)
    if rotated is None:
        raise conflict(f"Client key {key_id} is revoked; create a new one instead.", code="key_revoked")
    new_id, secret = rotated
    await rt.keys.refresh()
    return ok({"key": await _item(rt, new_id), "secret": secret, "replaces": key_id})

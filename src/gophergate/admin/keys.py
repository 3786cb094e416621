"""/api/keys (admin only): client keys for /v1. A new secret is in the create/rotate answer only, once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, CurrentUser, Rt
from gophergate.admin.errors import conflict, invalid, not_found
from gophergate.admin.paging import DEFAULT_LIMIT, Cursor, Limit, encode_cursor, int_position
from gophergate.admin.responses import ok
from gophergate.admin.services import keys as service
from gophergate.admin.services import teams as teams_service
from gophergate.admin.services.limits import LimitError
from gophergate.core.errors import GatewayError
from gophergate.runtime import Runtime
from gophergate.security.client_keys import policy_from_row

router = APIRouter(prefix="/api/keys", tags=["keys"])

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _usd(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError('must be a decimal string such as "12.50"') from None
    if not number.is_finite() or number <= 0:
        raise ValueError("must be a decimal > 0 (null = no budget)")
    return number


Pattern = Annotated[str, Field(min_length=1, max_length=300)]


class Limits(BaseModel):
    """Null means unlimited; an explicit null clears a limit, an absent one is left as it is."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + completion).")
    max_parallel: int | None = Field(None, ge=1, description="Requests in flight at once.")
    budget_usd: str | None = Field(None, description='USD per budget period, a decimal string such as "12.50".')
    budget_period: Literal["day", "week", "month", "total"] | None = Field(
        None, description="The budget's period (week starts Monday; total never resets); required with a budget."
    )
    allowed_models: list[Pattern] | None = Field(
        None, max_length=200, description="Model patterns such as gpt-4o* or anthropic/*; empty or null = all."
    )
    max_tokens_cap: int | None = Field(None, ge=1, description="The largest max_tokens a request may ask for.")

    _check = field_validator("budget_usd")(lambda v: None if v is None else str(_usd(v)))


class KeyIn(BaseModel):
    name: Name
    team_id: int | None = Field(None, description="The team the key belongs to (null = none).")
    expires_at: AwareDatetime | None = Field(None, description="When the key stops working (null = never).")
    limits: Limits | None = None


class KeyPatch(BaseModel):
    name: Name | None = None
    team_id: int | None = Field(None, description="Move the key to this team; an explicit null takes it out.")
    expires_at: AwareDatetime | None = Field(None, description="Set the expiry; an explicit null removes it.")
    limits: Limits | None = None


def limit_values(limits: Limits) -> dict[str, Any]:
    """Only the limits the caller sent (an explicit null clears one)."""
    values: dict[str, Any] = {}
    for name in limits.model_fields_set:
        value = getattr(limits, name)
        if name == "budget_usd":
            value = _usd(value)
        elif name == "allowed_models" and value is not None:
            value = [p.strip() for p in value if p.strip()]
        values[name] = value
    return values


async def _check_team(rt: Runtime, team_id: int | None) -> None:
    if team_id is not None and await teams_service.get(rt.engine, team_id) is None:
        raise invalid(f"No team with id {team_id}.", param="team_id")


def limit_error(exc: LimitError) -> GatewayError:
    return invalid(f"limits.{exc.field} {exc}.", param=f"limits.{exc.field}")


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
    await _check_team(rt, body.team_id)
    values = limit_values(body.limits) if body.limits else {}
    values.update(team_id=body.team_id, expires_at=body.expires_at)
    try:
        key_id, secret = await service.create(rt.engine, body.name.strip(), values)
    except LimitError as exc:
        raise limit_error(exc) from None
    await rt.apply_change("keys")  # usable on /v1 at once here, and in the cluster
    return ok({"key": await _item(rt, key_id), "secret": secret}, 201)


@router.patch("/{key_id}", summary="Rename a key, move it to a team, set its expiry and/or its limits")
async def update_key(key_id: int, body: KeyPatch, rt: Rt, _: AdminUser) -> Response:
    values: dict[str, Any] = {}
    if body.name is not None:
        values["name"] = body.name.strip()
    if "team_id" in body.model_fields_set:
        await _check_team(rt, body.team_id)
        values["team_id"] = body.team_id
    if "expires_at" in body.model_fields_set:
        values["expires_at"] = body.expires_at
    if body.limits is not None:
        values.update(limit_values(body.limits))
    if not values:
        raise invalid("Give 'name', 'team_id', 'expires_at' and/or 'limits'.", param="name")
    try:
        changed = await service.change(rt.engine, key_id, values)
    except LimitError as exc:
        raise limit_error(exc) from None
    if not changed:
        raise not_found(f"No client key with id {key_id}.")
    await rt.apply_change("keys")
    return ok(await _item(rt, key_id))


@router.get("/{key_id}/usage", summary="A key's usage now: this minute's requests and tokens, in flight, its budget")
async def key_usage(key_id: int, rt: Rt, _: CurrentUser) -> Response:
    key = await _item(rt, key_id)
    expires = key["expires_at"]
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    return ok(await rt.governance.usage("key", key_id, policy_from_row(key["limits"]), expires))


@router.post("/{key_id}/revoke", summary="Revoke a key (refused on /v1 at once)")
async def revoke_key(key_id: int, rt: Rt, _: AdminUser) -> Response:
    item = await _item(rt, key_id)
    if item["revoked_at"] is None:
        await service.revoke(rt.engine, key_id)
        await rt.apply_change("keys")
    return ok({"key": await _item(rt, key_id)})


@router.post("/{key_id}/rotate", summary="Revoke a key and issue its successor (same name and limits, new id)")
async def rotate_key(key_id: int, rt: Rt, _: AdminUser) -> Response:
    await _item(rt, key_id)
    rotated = await service.rotate(rt.engine, key_id)
    if rotated is None:
        raise conflict(f"Client key {key_id} is revoked; create a new one instead.", code="key_revoked")
    new_id, secret = rotated
    await rt.apply_change("keys")
    return ok({"key": await _item(rt, new_id), "secret": secret, "replaces": key_id})

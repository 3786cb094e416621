"""/api/users (admin only): list, create, change role or password, delete. A password change or a deletion
revokes the user's sessions at once; the last admin can be neither demoted nor deleted."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, Rt
from gophergate.admin.errors import conflict, invalid, not_found
from gophergate.admin.paging import DEFAULT_LIMIT, Cursor, Limit, encode_cursor, int_position
from gophergate.admin.responses import no_content, ok
from gophergate.security import users as store
from gophergate.security.passwords import check_policy, hash_password

router = APIRouter(prefix="/api/users", tags=["users"])


def _password(value: str | None) -> str | None:
    if value is not None:
        problem = check_policy(value)
        if problem is not None:
            raise ValueError(problem)
    return value


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=100, pattern=store.USERNAME.pattern)
    password: str
    role: Literal["admin", "viewer"]

    _check = field_validator("password")(_password)


class UserPatch(BaseModel):
    role: Literal["admin", "viewer"] | None = None
    password: str | None = None

    _check = field_validator("password")(_password)


def item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "password_changed_at": row["password_changed_at"],
    }


@router.get("", summary="List users, newest first")
async def list_users(rt: Rt, _: AdminUser, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Response:
    rows = await store.list_users(rt.engine, before_id=int_position(cursor, "before"), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return ok(
        {
            "data": [item(r) for r in rows],
            "next_cursor": encode_cursor({"before": rows[-1]["id"]}) if more else None,
        }
    )


@router.post("", status_code=201, summary="Create a user")
async def create_user(body: UserIn, rt: Rt, _: AdminUser) -> Response:
    try:
        row = await store.create_user(rt.engine, body.username, await hash_password(body.password), body.role)
    except store.UserExists:
        raise conflict(f"A user named '{body.username}' already exists.", code="user_exists") from None
    return ok(item(row), 201)


async def _existing(rt: Rt, user_id: int) -> dict[str, Any]:
    row = await store.get_user(rt.engine, user_id)
    if row is None:
        raise not_found(f"No user with id {user_id}.")
    return row


@router.patch("/{user_id}", summary="Change a user's role and/or password (a new password ends their sessions)")
async def update_user(user_id: int, body: UserPatch, rt: Rt, _: AdminUser) -> Response:
    row = await _existing(rt, user_id)
    if body.role is None and body.password is None:
        raise invalid("Give 'role' and/or 'password'.", param="role")
    if body.role == "viewer" and row["role"] == "admin" and await store.count_admins(rt.engine) <= 1:
        raise conflict("The last admin cannot be made a viewer.", code="last_admin")
    password_hash = await hash_password(body.password) if body.password is not None else None
    await store.update_user(rt.engine, user_id, role=body.role, password_hash=password_hash)
    if password_hash is not None:
        await rt.sessions.revoke_user(user_id)  # the rows are revoked already; drop this process's cache
        await rt.apply_change("sessions", user_id=user_id)
    else:
        await rt.apply_change("sessions", user_id=user_id)
    return ok(item(await _existing(rt, user_id)))


@router.delete("/{user_id}", status_code=204, summary="Delete a user (ends their sessions)")
async def delete_user(user_id: int, rt: Rt, _: AdminUser) -> Response:
    row = await _existing(rt, user_id)
    if row["role"] == "admin" and await store.count_admins(rt.engine) <= 1:
        raise conflict("The last admin cannot be deleted.", code="last_admin")
    await store.delete_user(rt.engine, user_id)
    await rt.apply_change("sessions", user_id=user_id)
    return no_content()

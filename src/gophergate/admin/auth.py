"""/api/auth: login (signed session cookie), logout, me."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from gophergate.admin.deps import COOKIE, CurrentSession, Rt
from gophergate.admin.responses import no_content, ok
from gophergate.core.errors import AuthenticationFailed, GatewayError
from gophergate.security.passwords import verify_password
from gophergate.security.users import User, find_user

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role}


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


@router.post("/login", summary="Log in: sets the gg_session cookie and returns the CSRF token")
async def login(body: LoginIn, request: Request, rt: Rt) -> Response:
    ip = _client_ip(request)
    wait = await rt.throttle.check(body.username, ip)
    if wait is not None:
        raise GatewayError(
            f"Too many failed logins; retry in {wait} s.",
            status=429,
            type="rate_limit_error",
            code="login_throttled",
            headers={"retry-after": str(wait)},
        )
    found = await find_user(rt.engine, body.username)
    if not await verify_password(body.password, found[1] if found is not None else None) or found is None:
        await rt.throttle.failed(body.username, ip)
        log.info("failed dashboard login for %r from %s", body.username[:100], ip)
        raise AuthenticationFailed("Invalid username or password.", code="invalid_credentials")
    user = found[0]
    await rt.throttle.succeeded(body.username, ip)
    token, session = await rt.sessions.create(user, ip, request.headers.get("user-agent"))
    log.info("dashboard login: %s (%s) from %s", user.username, user.role, ip)
    rt.emit("user_logged_in", {"username": user.username, "role": user.role})
    response = ok({"user": user_json(user), "csrf_token": session.csrf_token, "expires_at": session.expires_at})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(rt.sessions.max_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", status_code=204, summary="Log out: revokes the session at once")
async def logout(session: CurrentSession, request: Request, rt: Rt) -> Response:
    await rt.sessions.revoke(session.id)
    await rt.apply_change("sessions", session_id=session.id)
    response = no_content()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/me", summary="The logged-in user and the session's CSRF token")
async def me(session: CurrentSession) -> Response:
    return ok({"user": user_json(session.user), "csrf_token": session.csrf_token, "expires_at": session.expires_at})

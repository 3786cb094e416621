"""FastAPI dependencies shared by every /api router: the runtime, the session, roles and the CSRF check.

- ``CurrentUser``: any logged-in user (admin or viewer), else 401.
- ``AdminUser``: admin only, else 403 ``forbidden``.
- ``csrf_protect``: installed once on the /api router: every POST/PUT/PATCH/DELETE except the login needs
  ``X-CSRF-Token`` equal to the session's CSRF token (returned by login and ``/api/auth/me``), else 403
  ``csrf_failed``. Together with the ``SameSite=Strict`` cookie this stops cross-site requests.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gophergate.admin.errors import forbidden
from gophergate.core.errors import AuthenticationFailed, GatewayError
from gophergate.runtime import Runtime
from gophergate.security.sessions import Session
from gophergate.security.users import User

__all__ = [
    "COOKIE",
    "AdminUser",
    "CurrentSession",
    "CurrentUser",
    "Rt",
    "User",
    "csrf_protect",
    "current_session",
    "current_user",
    "get_runtime",
    "require_admin",
]

COOKIE = "gg_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT = frozenset({"/api/auth/login"})


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


Rt = Annotated[Runtime, Depends(get_runtime)]


async def session_of(request: Request) -> Session | None:
    """The request's live session (verified once per request), or None."""
    if hasattr(request.state, "session"):
        cached: Session | None = request.state.session
        return cached
    token = request.cookies.get(COOKIE)
    session = await get_runtime(request).sessions.verify(token) if token else None
    request.state.session = session
    return session


async def current_session(request: Request) -> Session:
    session = await session_of(request)
    if session is None:
        raise AuthenticationFailed("Log in first: no valid session.", code="not_authenticated")
    return session


CurrentSession = Annotated[Session, Depends(current_session)]


async def current_user(session: CurrentSession) -> User:
    return session.user


async def require_admin(session: CurrentSession) -> User:
    if session.user.role != "admin":
        raise forbidden()
    return session.user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(require_admin)]


async def csrf_protect(request: Request) -> None:
    if request.method not in UNSAFE_METHODS or request.url.path in CSRF_EXEMPT:
        return
    session = await current_session(request)
    if not get_runtime(request).sessions.check_csrf(session.id, request.headers.get(CSRF_HEADER)):
        raise GatewayError(
            "Missing or wrong X-CSRF-Token header (take it from the login answer or GET /api/auth/me).",
            status=403,
            type="permission_error",
            code="csrf_failed",
        )

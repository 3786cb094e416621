"""PLACEHOLDER (branch dash-data only): the real module is helper "auth"'s; the lead keeps that one at merge.

Only what the request-log and analytics routers import: ``User``, ``current_user``, ``CurrentUser`` and
``get_runtime``. With no session machinery here, ``current_user`` always answers 401; tests override it
(``app.dependency_overrides[current_user]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from gophergate.errors import AuthenticationFailed


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Literal["admin", "viewer"]


async def current_user(request: Request) -> User:
    raise AuthenticationFailed("not logged in", code="unauthorized")


CurrentUser = Annotated[User, Depends(current_user)]


def get_runtime(request: Request) -> Any:
    return request.app.state.runtime

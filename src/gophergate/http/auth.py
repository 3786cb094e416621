"""Client-key authentication for /v1: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``; no database."""

from __future__ import annotations

from gophergate.errors import AuthenticationFailed
from gophergate.http.io import Scope
from gophergate.security.client_keys import KeyCache, Principal


def presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        elif name == b"x-api-key" and value:
            return bytes(value).strip().decode("latin-1")
    return None


async def authenticate(scope: Scope, keys: KeyCache) -> Principal:
    key = presented_key(scope)
    if key is None:
        raise AuthenticationFailed(
            "Missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.", code="missing_api_key"
        )
    principal = await keys.resolve(key)
    if principal is None:
        raise AuthenticationFailed("Invalid or revoked API key.")
    return principal

"""Client-key authentication for /v1: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``; no database."""

from __future__ import annotations

from gophergate.core.asgi import Scope
from gophergate.core.errors import AuthenticationFailed, InvalidRequest
from gophergate.security.client_keys import KeyCache, Principal


def presented_key(scope: Scope) -> str | None:
    """The one key the request presents. Both headers may be sent, but only with the same key: letting the
    first one win would make which key is billed depend on header order (a proxy may add or reorder one)."""
    key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                continue
            found = token.strip().decode("latin-1")
        elif name == b"x-api-key" and value:
            found = bytes(value).strip().decode("latin-1")
        else:
            continue
        if key is not None and found != key:
            raise InvalidRequest(
                "The 'Authorization' and 'x-api-key' headers carry different API keys; send one key, or the same "
                "key in both.",
                code="conflicting_api_keys",
            )
        key = found
    return key


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

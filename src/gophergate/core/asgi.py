"""ASGI aliases and the one header lookup every raw-ASGI module uses."""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None

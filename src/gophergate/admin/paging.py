"""Cursor pagination: ``limit`` (default 50, max 500) and an opaque ``cursor``; answers carry ``next_cursor``."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import Query

from gophergate.admin.errors import invalid

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (1-500).")]
Cursor = Annotated[str | None, Query(description="The previous page's next_cursor.")]
DEFAULT_LIMIT = 50


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise invalid("Invalid 'cursor': not a cursor this API returned.", param="cursor")
    return data


def int_position(cursor: str | None, key: str) -> int | None:
    value = decode_cursor(cursor).get(key)
    if value is None:
        return None
    if not isinstance(value, int):
        raise invalid("Invalid 'cursor': not a cursor this API returned.", param="cursor")
    return value


def page_list(items: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """Page an in-memory list by offset."""
    start = int_position(cursor, "o") or 0
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return {"data": chunk, "next_cursor": encode_cursor({"o": start + limit}) if more else None}

"""JSON out of /api: orjson, UTC times as ``...Z``, decimals as exact strings (never floats)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        raise TypeError("bytes are never sent from /api")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=_OPTIONS)


class JSONOut(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def ok(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONOut:
    return JSONOut(content, status_code=status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)

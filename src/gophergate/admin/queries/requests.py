"""Request log reads: filtered newest-first pages with a keyset cursor, and one row's detail.

Every filter has an index ending in ``created_at`` (``db/tables.py``), so a page is an index range scan from the
cursor position backwards, whatever the table size; the cursor encodes ``(created_at, id)`` of the last item, and
``(created_at, id)`` is unique and totally ordered, so pages never skip or repeat a row.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.queries.common import iso, usd, utc
from gophergate.core.record import LIST_FIELDS
from gophergate.db.tables import request_log

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

ITEM_FIELDS: tuple[str, ...] = ("id", *LIST_FIELDS)
_ITEM_COLUMNS = [request_log.c[name] for name in ITEM_FIELDS]


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RequestFilter:
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive
    client_key_id: int | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = None
    errors_only: bool = False


def encode_cursor(created_at: dt.datetime, row_id: int) -> str:
    raw = f"{utc(created_at).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|")
        return utc(dt.datetime.fromisoformat(stamp)), int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("invalid cursor") from exc


def list_query(flt: RequestFilter, *, limit: int, cursor: str | None = None) -> Select[Any]:
    """The page query (``limit`` + 1 rows: one more tells whether there is a next page)."""
    c = request_log.c
    conditions = []
    if flt.start is not None:
        conditions.append(c.created_at >= flt.start)
    if flt.end is not None:
        conditions.append(c.created_at < flt.end)
    if flt.client_key_id is not None:
        conditions.append(c.client_key_id == flt.client_key_id)
    if flt.provider is not None:
        conditions.append(c.provider == flt.provider)
    if flt.model is not None:
        conditions.append(c.model == flt.model)
    if flt.status is not None:
        conditions.append(c.status == flt.status)
    if flt.errors_only:
        conditions.append(c.status >= 400)  # matches the partial index's predicate
    if cursor is not None:
        created, row_id = decode_cursor(cursor)
        # Spelled so that the created_at bound is a plain index range on both engines.
        conditions.append(c.created_at <= created)
        conditions.append(or_(c.created_at < created, c.id < row_id))
    query = select(*_ITEM_COLUMNS)
    if conditions:
        query = query.where(and_(*conditions))
    return query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)


async def list_requests(
    engine: AsyncEngine, flt: RequestFilter, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = list_query(flt, limit=limit, cursor=cursor)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [item_json(row._mapping) for row in rows]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return items, next_cursor


async def get_request(engine: AsyncEngine, row_id: int) -> dict[str, Any] | None:
    """The full row (every column), or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(request_log).where(request_log.c.id == row_id))).first()
    return None if row is None else item_json(row._mapping)


def item_json(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = str(key)  # a str subclass (quoted_name) otherwise, which orjson refuses as a key
        if isinstance(value, dt.datetime):
            out[name] = iso(value)
        elif name.endswith("_usd"):
            out[name] = usd(value)
        else:
            out[name] = value
    for name in ("stream", "estimated", "price_unknown"):
        if name in out:
            out[name] = bool(out[name])
    return out

"""Request log reads: filtered newest-first pages with a keyset cursor, and one row's detail.

Every filter has an index ending in ``created_at`` (``db/tables.py``), so a page is an index range scan from the
cursor position backwards, whatever the table size; the cursor encodes ``(created_at, id)`` of the last item, and
``(created_at, id)`` is unique and totally ordered, so pages never skip or repeat a row.

Items and details also carry ``client_key_name``: the names of a page's keys are read by one lookup on
``client_keys`` after the page (not a join, so the page query keeps its index plan); a deleted key's name is None.

Routing writes one row per attempt of a request, all with its request id, only the last one ``final``. A detail
carries ``attempts``: its request's rows (``ATTEMPT_FIELDS``), read by one more query on the request id's index.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophergate.admin.queries.common import iso, usd, utc
from gophergate.core.record import LIST_FIELDS
from gophergate.db.tables import client_keys, request_log

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

ITEM_FIELDS: tuple[str, ...] = ("id", *LIST_FIELDS)
_ITEM_COLUMNS = [request_log.c[name] for name in ITEM_FIELDS]
# What an item has beyond its columns: its client key's name (None without a key or for a deleted one).
EXTRA_FIELDS: tuple[str, ...] = ("client_key_name",)
# What a detail's ``attempts`` tell of each attempt of its request, oldest first.
ATTEMPT_FIELDS: tuple[str, ...] = (
    "id",
    "attempt",
    "final",
    "provider",
    "model",
    "status",
    "error_class",
    "error_type",
    "cost_usd",
    "latency_ms",
    "created_at",
)
_ATTEMPT_COLUMNS = [request_log.c[name] for name in ATTEMPT_FIELDS]
# Rows read on each side of a detail's row for its attempts: more than routing ever makes of one request.
MAX_ATTEMPTS = 32


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
    final_only: bool = False  # each request once: its final row (what the client saw), not its failed attempts


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
    if flt.final_only:
        # No index of its own: nearly every row is final, so a page reads barely more rows than without it.
        conditions.append(c.final.is_(true()))
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
        names = await key_names_in(conn, (row.client_key_id for row in rows))
    items = [_named(item_json(row._mapping), names) for row in rows]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    return items, next_cursor


async def get_request(engine: AsyncEngine, row_id: int) -> dict[str, Any] | None:
    """The full row (every column) and its key's name, or None."""
    return await _detail(engine, select(request_log).where(request_log.c.id == row_id))


async def get_request_by_request_id(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    """The final row of a request id (what the client saw, not a failed attempt; the newest, should a client have
    sent one ``x-request-id`` twice), or None."""
    c = request_log.c
    query = (
        select(request_log)
        .where(c.request_id == request_id)
        .order_by(c.final.desc(), c.created_at.desc(), c.id.desc())
        .limit(1)
    )
    return await _detail(engine, query)


async def _detail(engine: AsyncEngine, query: Select[Any]) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        names = await key_names_in(conn, (row.client_key_id,))
        nearby = (await conn.execute(attempts_query(row.request_id, row.created_at, row.id))).all()
    detail = _named(item_json(row._mapping), names)
    detail["attempts"] = [item_json(r._mapping) for r in attempts_of(row, nearby)]
    return detail


def attempts_query(request_id: str, created_at: dt.datetime, row_id: int) -> Select[Any]:
    """The rows of ``request_id`` nearest the row ``(created_at, row_id)``: up to ``MAX_ATTEMPTS`` up to it (itself
    included) and as many after it, in ``(created_at, id)`` order. One statement on the request id's index; bounded
    even for an ``x-request-id`` a client sends with every request."""
    c = request_log.c
    at_or_before = or_(c.created_at < created_at, and_(c.created_at == created_at, c.id <= row_id))
    before = (
        select(*_ATTEMPT_COLUMNS)
        .where(c.request_id == request_id, at_or_before)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(MAX_ATTEMPTS)
        .subquery()
    )
    after = (
        select(*_ATTEMPT_COLUMNS)
        .where(c.request_id == request_id, ~at_or_before)
        .order_by(c.created_at, c.id)
        .limit(MAX_ATTEMPTS)
        .subquery()
    )
    both = union_all(select(before), select(after)).subquery()
    return select(both).order_by(both.c.created_at, both.c.id)


def attempts_of(row: Any, nearby: list[Any]) -> list[Any]:
    """The attempts of ``row``'s request among ``nearby`` (``attempts_query``), by attempt number.

    One request per request id: all of them. A request id several requests share (a client's ``x-request-id``):
    the run of rows holding ``row`` that starts at an attempt 1 and ends at a final row, in time order."""
    if sum(1 for r in nearby if r.attempt == 1) > 1:
        at = next(i for i, r in enumerate(nearby) if r.id == row.id)
        start = at
        while start > 0 and nearby[start].attempt != 1 and not nearby[start - 1].final:
            start -= 1
        end = at
        while end + 1 < len(nearby) and not nearby[end].final and nearby[end + 1].attempt != 1:
            end += 1
        nearby = nearby[start : end + 1]
    return sorted(nearby, key=lambda r: (r.attempt, r.created_at, r.id))


async def key_names_in(conn: AsyncConnection, key_ids: Iterable[int | None]) -> dict[int, str]:
    """id -> name of the given client keys (revoked ones included), in one query; deleted ones are absent."""
    wanted = {int(key_id) for key_id in key_ids if key_id is not None}
    if not wanted:
        return {}
    query = select(client_keys.c.id, client_keys.c.name).where(client_keys.c.id.in_(sorted(wanted)))
    return {int(row.id): str(row.name) for row in (await conn.execute(query)).all()}


async def key_names(engine: AsyncEngine, key_ids: Iterable[int | None]) -> dict[int, str]:
    """``key_names_in`` on a connection of its own (none when there is no id)."""
    wanted = [key_id for key_id in key_ids if key_id is not None]
    if not wanted:
        return {}
    async with engine.connect() as conn:
        return await key_names_in(conn, wanted)


def _named(item: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    key_id = item.get("client_key_id")
    item["client_key_name"] = names.get(key_id) if key_id is not None else None
    return item


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
    for name in ("stream", "estimated", "price_unknown", "final"):
        if name in out:
            out[name] = bool(out[name])
    return out

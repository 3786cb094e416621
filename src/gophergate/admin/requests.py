"""``/api/requests``: the request log, newest first, filtered, with keyset cursors (any logged-in user)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from gophergate.admin.deps import CurrentUser, get_runtime
from gophergate.admin.json import json_response
from gophergate.admin.queries import requests as queries
from gophergate.admin.queries.common import utc
from gophergate.admin.schemas_data import RequestDetail, RequestPage
from gophergate.core.errors import InvalidRequest, NotFound
from gophergate.core.redact import redact

router = APIRouter(prefix="/api/requests", tags=["request log"])


@router.get("", response_model=RequestPage, summary="Request log page (newest first)")
async def list_requests(
    request: Request,
    user: CurrentUser,
    from_: Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601, inclusive")] = None,
    to: Annotated[dt.datetime | None, Query(description="ISO 8601, exclusive")] = None,
    client_key_id: int | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: Annotated[int | None, Query(ge=0, le=999, description="exact HTTP status")] = None,
    errors_only: bool = False,
    final_only: Annotated[
        bool, Query(description="each request once: only its final row, not the attempts routing retried")
    ] = False,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = queries.DEFAULT_LIMIT,
) -> Response:
    flt = queries.RequestFilter(
        start=utc(from_) if from_ else None,
        end=utc(to) if to else None,
        client_key_id=client_key_id,
        provider=provider,
        model=model,
        status=status,
        errors_only=errors_only,
        final_only=final_only,
    )
    try:
        items, next_cursor = await queries.list_requests(get_runtime(request).engine, flt, limit=limit, cursor=cursor)
    except queries.InvalidCursor as exc:
        raise InvalidRequest(str(exc), param="cursor", code="invalid_cursor") from exc
    return json_response({"data": [_redacted(item) for item in items], "next_cursor": next_cursor})


@router.get(
    "/by-request-id/{request_id}",
    response_model=RequestDetail,
    summary="One request log row by its request id (x-request-id)",
)
async def get_request_by_request_id(request: Request, user: CurrentUser, request_id: str) -> Response:
    """The row of a request id: what live rows (which have no database id) open. Should a client have sent the
    same ``x-request-id`` twice, the newest row."""
    row = None
    if _REQUEST_ID.fullmatch(request_id):
        row = await queries.get_request_by_request_id(get_runtime(request).engine, request_id)
    if row is None:
        raise NotFound(f"no request log row with request id {_shown(request_id)}", code="not_found")
    return json_response(_redacted(row))


@router.get("/{id}", response_model=RequestDetail, summary="One request log row (all columns)")
async def get_request(
    request: Request,
    user: CurrentUser,
    id: Annotated[str, Path(description="the row's numeric id, or a request id such as req_0193...")],
) -> Response:
    """All digits: the database id (the contract's form). Anything else: a request id, as in
    ``/by-request-id/{request_id}`` (a request id made only of digits can be opened there)."""
    engine = get_runtime(request).engine
    if id.isdigit() and len(id) <= 18:  # an int64 row id
        row = await queries.get_request(engine, int(id))
        if row is None:
            raise NotFound(f"request log row {id} not found", code="not_found")
    else:
        row = await queries.get_request_by_request_id(engine, id) if _REQUEST_ID.fullmatch(id) else None
        if row is None:
            raise NotFound(f"no request log row with request id {_shown(id)}", code="not_found")
    return json_response(_redacted(row))


# The request ids the gateway records (http/io.py: a sane x-request-id, else req_<hex>).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def _shown(value: str) -> str:
    """An id as an error message may quote it: short and redacted (a path may carry anything)."""
    return repr(redact(value[:64]) + ("..." if len(value) > 64 else ""))


def _redacted(row: dict[str, Any]) -> dict[str, Any]:
    """Rows are redacted before they are queued; this also covers rows written before that (or by an older
    worker), and secrets configured since. A detail's attempts are rows too."""
    out: dict[str, Any] = {name: redact(value) if isinstance(value, str) else value for name, value in row.items()}
    attempts: list[dict[str, Any]] | None = row.get("attempts")
    if attempts is not None:
        out["attempts"] = [_redacted(attempt) for attempt in attempts]
    return out

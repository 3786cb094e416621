"""``/api/requests``: the request log, newest first, filtered, with keyset cursors (any logged-in user)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

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
    )
    try:
        items, next_cursor = await queries.list_requests(get_runtime(request).engine, flt, limit=limit, cursor=cursor)
    except queries.InvalidCursor as exc:
        raise InvalidRequest(str(exc), param="cursor", code="invalid_cursor") from exc
    return json_response({"data": [_redacted(item) for item in items], "next_cursor": next_cursor})


@router.get("/{id}", response_model=RequestDetail, summary="One request log row (all columns)")
async def get_request(request: Request, user: CurrentUser, id: int) -> Response:  # the contract's {id}
    row = await queries.get_request(get_runtime(request).engine, id)
    if row is None:
        raise NotFound(f"request log row {id} not found", code="not_found")
    return json_response(_redacted(row))


def _redacted(row: dict[str, Any]) -> dict[str, Any]:
    """Rows are redacted before they are queued; this also covers rows written before that (or by an older
    worker), and secrets configured since."""
    return {name: redact(value) if isinstance(value, str) else value for name, value in row.items()}

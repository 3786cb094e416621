"""``/api/analytics``: time series, top N, totals and CSV export, all from the rollup tables (any logged-in user).

``from`` defaults to 24 hours before ``to``, ``to`` to now. Grouped by client key, each series and top item also
carries ``client_key_name`` (one lookup for the whole answer; None for a deleted key or requests without a key).
Groupings: model, provider, target (``provider/model``), client key, model group (only the requests that named one).
Every metric set carries ``cache_hit_ratio`` (cache-read over prompt tokens; null without prompt tokens).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.deps import CurrentUser, get_runtime
from gophergate.admin.json import json_response
from gophergate.admin.queries import analytics as queries
from gophergate.admin.queries.common import utc
from gophergate.admin.queries.requests import key_names
from gophergate.admin.schemas_data import Timeseries, Top, Totals
from gophergate.core.errors import InvalidRequest

router = APIRouter(prefix="/api/analytics", tags=["analytics"])

From = Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601, inclusive; default: to - 24 h")]
To = Annotated[dt.datetime | None, Query(description="ISO 8601, exclusive; default: now")]
BucketQ = Annotated[queries.Bucket, Query(description="coarsened when the range would give over 1500 points")]
GroupByQ = Annotated[
    queries.GroupBy,
    Query(
        description="one series per model, provider, target (provider/model), client key or model group "
        "(group: only requests that named a model group)"
    ),
]
TopByQ = Annotated[
    queries.TopBy,
    Query(description="model, provider, target (provider/model), client key or model group"),
]


def _range(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    end = utc(end) if end else dt.datetime.now(dt.UTC)
    start = utc(start) if start else end - dt.timedelta(hours=24)
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", param="from", code="invalid_range")
    return start, end


@router.get("/timeseries", response_model=Timeseries, summary="Metrics per time bucket, optionally grouped")
async def timeseries(
    request: Request,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    bucket: BucketQ = "hour",
    group_by: GroupByQ = "none",
) -> Response:
    start, end = _range(from_, to)
    engine = get_runtime(request).engine
    result = await queries.timeseries(engine, start, end, bucket, group_by)
    if group_by == "client":
        await _name_keys(engine, result["series"])
    return json_response(result)


@router.get("/top", response_model=Top, summary="Top N models, providers, targets, clients or model groups")
async def top(
    request: Request,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    by: TopByQ = "model",
    metric: queries.Metric = "cost",
    n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    start, end = _range(from_, to)
    engine = get_runtime(request).engine
    result = await queries.top(engine, start, end, by, metric, n)
    if by == "client":
        await _name_keys(engine, result["data"])
    return json_response(result)


@router.get("/totals", response_model=Totals, summary="Totals over a range")
async def totals(request: Request, user: CurrentUser, from_: From = None, to: To = None) -> Response:
    start, end = _range(from_, to)
    return json_response(await queries.totals(get_runtime(request).engine, start, end))


async def _name_keys(engine: AsyncEngine, groups: list[dict[str, Any]]) -> None:
    """Add ``client_key_name`` to groups keyed by a client key id (the key is its id as text, or None)."""
    ids = [int(group["key"]) for group in groups if group["key"] is not None and str(group["key"]).isdigit()]
    names = await key_names(engine, ids)
    for group in groups:
        key = group["key"]
        group["client_key_name"] = names.get(int(key)) if key is not None and str(key).isdigit() else None


@router.get(
    "/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The time series as CSV"}},
    summary="Time series as CSV",
)
async def export_csv(
    request: Request,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    bucket: BucketQ = "hour",
    group_by: GroupByQ = "none",
) -> Response:
    start, end = _range(from_, to)
    result = await queries.timeseries(get_runtime(request).engine, start, end, bucket, group_by)
    return Response(
        queries.timeseries_csv(result),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="gophergate-analytics.csv"'},
    )

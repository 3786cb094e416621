"""``/api/analytics``: time series, top N, totals and CSV export, all from the rollup tables (any logged-in user).

``from`` defaults to 24 hours before ``to``, ``to`` to now.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from gophergate.admin.deps import CurrentUser, get_runtime
from gophergate.admin.json import json_response
from gophergate.admin.queries import analytics as queries
from gophergate.admin.queries.common import utc
from gophergate.admin.schemas_data import Timeseries, Top, Totals
from gophergate.core.errors import InvalidRequest

router = APIRouter(prefix="/api/analytics", tags=["analytics"])

From = Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601, inclusive; default: to - 24 h")]
To = Annotated[dt.datetime | None, Query(description="ISO 8601, exclusive; default: now")]
BucketQ = Annotated[queries.Bucket, Query(description="coarsened when the range would give over 1500 points")]


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
    group_by: queries.GroupBy = "none",
) -> Response:
    start, end = _range(from_, to)
    return json_response(await queries.timeseries(get_runtime(request).engine, start, end, bucket, group_by))


@router.get("/top", response_model=Top, summary="Top N models, providers or clients")
async def top(
    request: Request,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    by: queries.TopBy = "model",
    metric: queries.Metric = "cost",
    n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    start, end = _range(from_, to)
    return json_response(await queries.top(get_runtime(request).engine, start, end, by, metric, n))


@router.get("/totals", response_model=Totals, summary="Totals over a range")
async def totals(request: Request, user: CurrentUser, from_: From = None, to: To = None) -> Response:
    start, end = _range(from_, to)
    return json_response(await queries.totals(get_runtime(request).engine, start, end))


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
    group_by: queries.GroupBy = "none",
) -> Response:
    start, end = _range(from_, to)
    result = await queries.timeseries(get_runtime(request).engine, start, end, bucket, group_by)
    return Response(
        queries.timeseries_csv(result),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="gophergate-analytics.csv"'},
    )

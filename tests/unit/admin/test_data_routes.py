"""/api/requests and /api/analytics over HTTP (a small FastAPI app mounting the two routers)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gophergate.admin import analytics, requests
from gophergate.admin.deps import User, current_user
from gophergate.core.errors import GatewayError
from tests.dashboard_data import BASE, migrated_engine, random_record, write

Z = "%Y-%m-%dT%H:%M:%SZ"


def _app(engine: Any, user: User | None) -> FastAPI:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(engine=engine)
    app.include_router(requests.router)
    app.include_router(analytics.router)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:  # the auth helper's real handler
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    if user is not None:
        app.dependency_overrides[current_user] = lambda: user
    return app


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = await migrated_engine(database_url)
    rng = random.Random(41)
    await write(engine, [random_record(rng, i, span_s=2 * 86400) for i in range(300)])
    viewer = User(id=2, username="v", role="viewer")
    transport = httpx.ASGITransport(app=_app(engine, viewer))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await engine.dispose()


RANGE = {"from": (BASE - dt.timedelta(hours=1)).strftime(Z), "to": (BASE + dt.timedelta(days=3)).strftime(Z)}


async def test_request_log_pages_follow_next_cursor_for_a_viewer(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 30, "provider": "openai"}
    while True:
        body = (await client.get("/api/requests", params=params)).json()
        seen += [item["id"] for item in body["data"]]
        assert all(item["provider"] == "openai" for item in body["data"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen)) > 30
    detail = (await client.get(f"/api/requests/{seen[0]}")).json()
    assert detail["id"] == seen[0] and "error_message" in detail and "price_source" in detail


async def test_request_log_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/requests", params={"cursor": "garbage!"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "cursor"
    response = await client.get("/api/requests/999999")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert (await client.get("/api/requests", params={"limit": 501})).status_code in (400, 422)
    errors = (await client.get("/api/requests", params={"errors_only": "true", "limit": 500})).json()["data"]
    assert errors and all(item["status"] >= 400 for item in errors)


async def test_analytics_shapes(client: httpx.AsyncClient) -> None:
    ts = (
        await client.get("/api/analytics/timeseries", params={**RANGE, "bucket": "day", "group_by": "provider"})
    ).json()
    assert ts["bucket"] == "day" and {s["key"] for s in ts["series"]} <= {"openai", "anthropic", "gemini", None}
    point = ts["series"][0]["points"][0]
    assert set(point) == {
        "t",
        "requests",
        "errors",
        "error_rate",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "unpriced_requests",
        "p50_ms",
        "p95_ms",
    }
    assert isinstance(point["cost_usd"], str) and point["t"].endswith("Z")
    top = (await client.get("/api/analytics/top", params={**RANGE, "by": "model", "metric": "requests", "n": 2})).json()
    assert len(top["data"]) == 2 and set(top["data"][0]) == {
        "key",
        "requests",
        "tokens",
        "cost_usd",
        "unpriced_requests",
    }
    totals = (await client.get("/api/analytics/totals", params=RANGE)).json()
    assert totals["requests"] == 300 and isinstance(totals["cost_usd"], str)
    assert set(totals) == {
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "unpriced_requests",
        "p50_ms",
        "p95_ms",
    }
    assert totals["unpriced_requests"] > 0  # random_record leaves ~10% without a price
    csv = await client.get("/api/analytics/export.csv", params={**RANGE, "bucket": "hour"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("t,key,requests,errors,error_rate,")


async def test_analytics_rejects_a_reversed_range_and_unknown_enums(client: httpx.AsyncClient) -> None:
    reversed_range = {"from": RANGE["to"], "to": RANGE["from"]}
    response = await client.get("/api/analytics/totals", params=reversed_range)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_range"
    assert (await client.get("/api/analytics/timeseries", params={"bucket": "week"})).status_code in (400, 422)
    assert (await client.get("/api/analytics/top", params={"metric": "latency"})).status_code in (400, 422)


async def test_every_data_route_needs_a_logged_in_user(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    transport = httpx.ASGITransport(app=_app(engine, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path in (
            "/api/requests",
            "/api/requests/1",
            "/api/analytics/timeseries",
            "/api/analytics/top",
            "/api/analytics/totals",
            "/api/analytics/export.csv",
        ):
            assert (await http.get(path)).status_code == 401, path
    await engine.dispose()


def test_routes_are_in_the_openapi_schema() -> None:
    paths = _app(None, None).openapi()["paths"]
    for path in (
        "/api/requests",
        "/api/requests/{id}",
        "/api/analytics/timeseries",
        "/api/analytics/top",
        "/api/analytics/totals",
        "/api/analytics/export.csv",
    ):
        assert "get" in paths[path], path

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
from sqlalchemy import insert

from gophergate.admin import analytics, requests
from gophergate.admin.deps import User, current_user
from gophergate.admin.schemas_data import RequestDetail, RequestPage
from gophergate.core.errors import GatewayError
from gophergate.db.tables import client_keys
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


async def test_a_row_opens_by_its_numeric_id_or_by_its_request_id(client: httpx.AsyncClient) -> None:
    item = (await client.get("/api/requests", params={"limit": 1})).json()["data"][0]
    by_number = (await client.get(f"/api/requests/{item['id']}")).json()
    by_request_id = (await client.get(f"/api/requests/{item['request_id']}")).json()
    by_path = (await client.get(f"/api/requests/by-request-id/{item['request_id']}")).json()
    assert by_number == by_request_id == by_path
    assert by_number["id"] == item["id"] and by_number["request_id"] == item["request_id"]
    for missing in ("req_nothing", "by-request-id/req_nothing", "by-request-id/" + "x" * 65, "bad%20id", "0"):
        response = await client.get(f"/api/requests/{missing}")
        assert response.status_code == 404, missing
        assert response.json()["error"]["code"] == "not_found"


async def test_a_routed_request_lists_once_with_final_only_and_its_detail_has_its_attempts(
    client: httpx.AsyncClient, database_url: str
) -> None:
    engine = await migrated_engine(database_url)  # the fixture's database (migrating again is a no-op)
    rng = random.Random(42)
    tries = [random_record(rng, 1000 + n, start=BASE + dt.timedelta(days=4), span_s=1) for n in range(3)]
    for n, (record, status) in enumerate(zip(tries, (429, 503, 200), strict=True), start=1):
        record.request_id, record.status, record.attempt, record.final = "req_routed", status, n, n == 3
        record.created_at, record.model_group = BASE + dt.timedelta(days=4, seconds=n), "fast"
    await write(engine, tries)
    await engine.dispose()
    everything = (await client.get("/api/requests", params={"limit": 500})).json()
    page = (await client.get("/api/requests", params={"limit": 500, "final_only": "true"})).json()
    RequestPage.model_validate(page)
    assert len(everything["data"]) == 303 and len(page["data"]) == 301
    top = page["data"][0]
    assert (top["request_id"], top["attempt"], top["final"], top["model_group"]) == ("req_routed", 3, True, "fast")
    for path in (f"/api/requests/{top['id']}", "/api/requests/req_routed", "/api/requests/by-request-id/req_routed"):
        detail = (await client.get(path)).json()
        RequestDetail.model_validate(detail)
        assert detail["id"] == top["id"], path
        assert [(a["attempt"], a["status"], a["final"]) for a in detail["attempts"]] == [
            (1, 429, False),
            (2, 503, False),
            (3, 200, True),
        ]
    plain = (await client.get(f"/api/requests/{everything['data'][-1]['id']}")).json()
    assert [a["id"] for a in plain["attempts"]] == [plain["id"]]


async def test_analytics_by_client_key_names_each_key_and_a_deleted_key_has_none(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for key_id, name in ((1, "web-app"), (2, "batch-jobs")):
            await conn.execute(
                insert(client_keys).values(
                    id=key_id,
                    name=name,
                    key_hash=f"{key_id:064x}",
                    key_hint="sk-gg-...",
                    created_at=now,
                    updated_at=now,
                )
            )
    rng = random.Random(42)
    records = [random_record(rng, i, span_s=86400) for i in range(60)]
    for i, record in enumerate(records):
        record.client_key_id = (1, 2, 3)[i % 3]  # key 3 has no row (deleted)
    await write(engine, records)
    transport = httpx.ASGITransport(app=_app(engine, User(id=2, username="v", role="viewer")))
    names = {"1": "web-app", "2": "batch-jobs", "3": None}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        top = (await http.get("/api/analytics/top", params={**RANGE, "by": "client", "metric": "requests"})).json()
        assert {(x["key"], x["client_key_name"]) for x in top["data"]} == set(names.items())
        params = {**RANGE, "bucket": "day", "group_by": "client"}
        series = (await http.get("/api/analytics/timeseries", params=params)).json()["series"]
        assert {(s["key"], s["client_key_name"]) for s in series} == set(names.items())
        by_model = (await http.get("/api/analytics/top", params={**RANGE, "by": "model"})).json()["data"]
        assert all("client_key_name" not in x for x in by_model)
    await engine.dispose()


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
        "cache_hit_ratio",
    }
    assert isinstance(point["cost_usd"], str) and point["t"].endswith("Z")
    top = (await client.get("/api/analytics/top", params={**RANGE, "by": "model", "metric": "requests", "n": 2})).json()
    assert len(top["data"]) == 2 and set(top["data"][0]) == {
        "key",
        "requests",
        "tokens",
        "cost_usd",
        "unpriced_requests",
        "cache_hit_ratio",
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
        "cache_hit_ratio",
    }
    assert 0 < totals["cache_hit_ratio"] < 1  # random_record reads part of each prompt from the cache
    assert totals["unpriced_requests"] > 0  # random_record leaves ~10% without a price
    csv = await client.get("/api/analytics/export.csv", params={**RANGE, "bucket": "hour"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("t,key,requests,errors,error_rate,")
    assert csv.text.splitlines()[0].endswith(",cache_hit_ratio")


async def test_analytics_by_target_and_by_model_group(client: httpx.AsyncClient) -> None:
    targets = (await client.get("/api/analytics/top", params={**RANGE, "by": "target", "n": 100})).json()["data"]
    assert {"openai/gpt-4o", "anthropic/claude-sonnet-4"} <= {i["key"] for i in targets}
    assert all(i["key"] is None or i["key"].count("/") == 1 for i in targets)
    groups = (await client.get("/api/analytics/top", params={**RANGE, "by": "group", "metric": "requests"})).json()
    assert {i["key"] for i in groups["data"]} == {"smart", "fast"}  # random_record: half the records name a group
    assert sum(i["requests"] for i in groups["data"]) == 150
    assert all(0 < i["cache_hit_ratio"] < 1 for i in groups["data"])
    for group_by in ("target", "group"):
        params = {**RANGE, "bucket": "day", "group_by": group_by}
        series = (await client.get("/api/analytics/timeseries", params=params)).json()["series"]
        assert series and all(s["points"] for s in series), group_by
        csv = await client.get("/api/analytics/export.csv", params=params)
        assert csv.status_code == 200, group_by


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
        "/api/requests/by-request-id/{request_id}",
        "/api/analytics/timeseries",
        "/api/analytics/top",
        "/api/analytics/totals",
        "/api/analytics/export.csv",
    ):
        assert "get" in paths[path], path
    parameters = {p["name"] for p in paths["/api/requests"]["get"]["parameters"]}
    assert {"errors_only", "final_only"} <= parameters
    top = {p["name"]: p["schema"] for p in paths["/api/analytics/top"]["get"]["parameters"]}
    assert {"target", "group"} <= set(top["by"]["enum"])
    series = {p["name"]: p["schema"] for p in paths["/api/analytics/timeseries"]["get"]["parameters"]}
    assert {"target", "group"} <= set(series["group_by"]["enum"])
    schemas = _app(None, None).openapi()["components"]["schemas"]
    for model in ("Point", "TopItem", "Totals"):
        assert "cache_hit_ratio" in schemas[model]["properties"], model

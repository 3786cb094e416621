"""Request log rows as the dashboard reads them, against a real gateway: every row (API page, live /ws message,
detail) names its client key, and a live row (which has no database id) opens by its request id (issue 16,
items 1, 2 and 7)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-rows-0001"
ADMIN_PASSWORD = "rows-admin-password-1"
VIEWER_PASSWORD = "rows-viewer-password-1"


class _Client(httpx.Client):
    """A client that a ``with`` block can take after it has sent requests (``login`` does)."""

    def __enter__(self) -> _Client:
        return self


class Rows:
    def __init__(self, gateway: Gateway, reporting_key: str) -> None:
        self.gateway = gateway
        self.reporting_key = reporting_key

    def login(self, username: str, password: str) -> httpx.Client:
        client = _Client(base_url=self.gateway.url, timeout=30)
        response = client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        client.headers["x-csrf-token"] = response.json()["csrf_token"]
        return client

    def chat(self, key: str, text: str) -> str:
        client = openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        assert raw.parse().choices[0].message.content == f"echo: {text}"
        return str(raw.headers["x-request-id"])


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rows]:
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        gateway = Gateway(
            tmp_path_factory.mktemp("rows"),
            env={
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": upstream.base_url,
                "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
        )
        try:
            gateway.start()  # makes the key "test"
            reporting = gateway.create_key("reporting")
            yield Rows(gateway, reporting)
        finally:
            gateway.stop()


def _viewer(rows: Rows) -> httpx.Client:
    with rows.login("admin", ADMIN_PASSWORD) as admin:
        if not any(u["username"] == "viewer" for u in admin.get("/api/users").json()["data"]):
            body = {"username": "viewer", "password": VIEWER_PASSWORD, "role": "viewer"}
            response = admin.post("/api/users", json=body)
            assert response.status_code == 201, response.text
    return rows.login("viewer", VIEWER_PASSWORD)


def test_api_rows_and_details_name_their_key_for_a_viewer(rows: Rows) -> None:
    test_id = rows.chat(rows.gateway.key, "from the test key")
    reporting_id = rows.chat(rows.reporting_key, "from the reporting key")
    rows.gateway.row_for(test_id)
    rows.gateway.row_for(reporting_id)
    with _viewer(rows) as viewer:
        items = {i["request_id"]: i for i in viewer.get("/api/requests", params={"limit": 500}).json()["data"]}
        assert items[test_id]["client_key_name"] == "test"
        assert items[reporting_id]["client_key_name"] == "reporting"
        assert items[test_id]["client_key_id"] != items[reporting_id]["client_key_id"]
        detail = viewer.get(f"/api/requests/{items[reporting_id]['id']}").json()
        assert detail["client_key_name"] == "reporting" and detail["request_id"] == reporting_id
        body = viewer.get("/api/requests").text
        assert rows.reporting_key not in body and rows.gateway.key not in body  # names, never secrets


def test_a_row_opens_by_its_request_id_as_well_as_by_its_number(rows: Rows) -> None:
    request_id = rows.chat(rows.gateway.key, "open me by request id")
    row = rows.gateway.row_for(request_id)
    with rows.login("admin", ADMIN_PASSWORD) as admin:
        by_number = admin.get(f"/api/requests/{row['id']}")
        by_request_id = admin.get(f"/api/requests/{request_id}")
        by_path = admin.get(f"/api/requests/by-request-id/{request_id}")
        assert by_number.status_code == by_request_id.status_code == by_path.status_code == 200
        assert by_number.json() == by_request_id.json() == by_path.json()
        assert by_number.json()["id"] == row["id"] and by_number.json()["latency_ms"] > 0
        for missing in ("req_0000000000000000000000", "by-request-id/req_nope", "999999999"):
            response = admin.get(f"/api/requests/{missing}")
            assert response.status_code == 404, missing
            assert response.headers["content-type"].startswith("application/json")
            error = response.json()["error"]
            assert error["code"] == "not_found" and "Traceback" not in error["message"]


async def _next_request(ws: aiohttp.ClientWebSocketResponse, request_id: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = orjson.loads(msg.data)
            if data["type"] == "request" and data["data"]["request_id"] == request_id:
                return dict(data["data"])


def test_live_rows_name_their_key_follow_a_rename_and_open_by_request_id(rows: Rows) -> None:
    admin = rows.login("admin", ADMIN_PASSWORD)
    cookie = f"gg_session={admin.cookies['gg_session']}"
    keys = admin.get("/api/keys").json()["data"]
    reporting = next(k for k in keys if k["name"] == "reporting")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        headers = {"Origin": rows.gateway.url, "Cookie": cookie}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(rows.gateway.url + "/ws", headers=headers) as ws,
        ):
            first_id = await asyncio.to_thread(rows.chat, rows.reporting_key, "live one")
            first = await _next_request(ws, first_id)
            renamed = await asyncio.to_thread(admin.patch, f"/api/keys/{reporting['id']}", json={"name": "reports-v2"})
            assert renamed.status_code == 200, renamed.text
            await asyncio.sleep(0.5)  # every worker's key cache refreshes within GOPHERGATE_KEY_REFRESH_SECONDS (0.2 s)
            second_id = await asyncio.to_thread(rows.chat, rows.reporting_key, "live two")
            second = await _next_request(ws, second_id)
            return first, second

    try:
        first, second = asyncio.run(scenario())
        assert first["id"] is None  # the batch insert returns no database id: rows are told apart by request id
        assert first["client_key_id"] == reporting["id"] and first["client_key_name"] == "reporting"
        assert second["client_key_name"] == "reports-v2"
        detail = admin.get(f"/api/requests/by-request-id/{first['request_id']}")
        assert detail.status_code == 200 and detail.json()["request_id"] == first["request_id"]
        assert detail.json()["client_key_name"] == "reports-v2"  # the key's name now
    finally:
        admin.close()


def test_analytics_by_client_key_names_each_key(rows: Rows) -> None:
    rows.gateway.row_for(rows.chat(rows.reporting_key, "for the analytics"))
    with rows.login("admin", ADMIN_PASSWORD) as admin:
        top = admin.get("/api/analytics/top", params={"by": "client", "metric": "requests"}).json()["data"]
        names = {item["client_key_name"] for item in top}
        assert "test" in names and names & {"reporting", "reports-v2"}
        series = admin.get("/api/analytics/timeseries", params={"group_by": "client"}).json()["series"]
        assert {s["client_key_name"] for s in series} == names

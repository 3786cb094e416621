"""/api/docs: the API explorer is served by the gateway itself (no CDN), under a CSP that allows nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gophergate.admin import create_admin_app
from gophergate.admin.docs import ASSETS

EXTERNAL_URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_admin_app(SimpleNamespace())  # type: ignore[arg-type]  # these routes never reach the runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        yield c


def csp(headers: Any) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))


async def test_docs_page_loads_its_viewer_from_the_gateway_only(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert 'data-spec="/api/openapi.json"' in page
    assert re.search(r'<script src="/api/docs/viewer\.js\?v=[^"]+" defer>', page)
    assert re.search(r'<link rel="stylesheet" href="/api/docs/viewer\.css\?v=[^"]+">', page)
    assert not EXTERNAL_URL.search(page), "the page must not name another site"
    policy = csp(resp.headers)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert resp.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("name", "media"), [("viewer.js", "text/javascript"), ("viewer.css", "text/css")])
async def test_viewer_assets_are_served_from_the_package(client: httpx.AsyncClient, name: str, media: str) -> None:
    resp = await client.get(f"/api/docs/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(media)
    assert resp.content == (ASSETS / name).read_bytes()
    assert not EXTERNAL_URL.search(resp.text), f"{name} must not load anything from another site"


async def test_unknown_docs_asset_is_a_404_in_the_api_error_shape(client: httpx.AsyncClient) -> None:
    for path in ("/api/docs/nope.js", "/api/docs/..%2Fdocs.py", "/api/docs/docs.py"):
        resp = await client.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["code"] == "not_found"


async def test_openapi_document_is_still_served_and_does_not_list_the_docs_routes(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/api/system" in paths and "/api/auth/login" in paths
    assert not [p for p in paths if p.startswith("/api/docs")]

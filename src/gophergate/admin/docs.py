"""/api/docs: the admin API explorer, served from the package with no request beyond the gateway.

FastAPI's own docs page loads Swagger UI from a CDN, so on a gateway without internet access it is blank. This
page is a small viewer of our own (``docs_assets/``: plain JavaScript and CSS, no build step, shipped in the
wheel) that reads ``/api/openapi.json`` and lists every operation by tag with its parameters, request body,
responses and schemas. It works whether or not the dashboard UI was built. The page forbids anything but the
gateway's own origin in its Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, Response

from gophergate import __version__

ASSETS = Path(__file__).resolve().parent / "docs_assets"
_TYPES = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-cache",
}


def page(openapi_url: str, title: str) -> str:
    version = __version__
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/api/docs/viewer.css?v={version}">
<script src="/api/docs/viewer.js?v={version}" defer></script>
</head>
<body>
<main id="docs" data-spec="{openapi_url}" data-testid="api-docs">
<noscript>The API explorer needs JavaScript; the OpenAPI document itself is at
<a href="{openapi_url}">{openapi_url}</a>.</noscript>
<p class="muted" data-testid="docs-loading">Loading the API description…</p>
</main>
</body>
</html>
"""


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """GET /api/docs (the page) and GET /api/docs/{viewer.js, viewer.css}; none of them in the schema."""
    html = page(openapi_url, f"{app.title}: API explorer")

    @app.get("/api/docs", include_in_schema=False)
    async def docs_page() -> Response:
        return HTMLResponse(html, headers={**_HEADERS, "content-security-policy": CSP})

    @app.get("/api/docs/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        media_type = _TYPES.get(name)
        if media_type is None:
            raise HTTPException(404)
        return FileResponse(ASSETS / name, media_type=media_type, headers=_HEADERS)

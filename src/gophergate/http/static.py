"""The dashboard UI: files from the package's ``static/`` folder (built from ``ui/``), with the SPA fallback
(an unknown path that is not a file answers ``index.html``). Without a build, ``/`` says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gophergate.core.asgi import Scope
from gophergate.core.errors import MethodNotAllowed, NotFound
from gophergate.http.io import request_id, send_error

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GopherGate</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>GopherGate</h1>
<p>The dashboard UI is not built. <code>make run</code> builds it from <code>ui/</code> (Node.js and npm needed).</p>
<p>The gateway itself works: the OpenAI-compatible API is at <code>/v1</code>, the admin API at <code>/api</code>
(<a href="/api/docs">docs</a>).</p>
</body></html>
"""


def _locate(directory: Path, path: str) -> tuple[Path | None, bool]:
    """(file to send, is it the SPA index); (None, False) for a missing asset."""
    index = directory / "index.html"
    if not index.is_file():
        return None, False
    relative = path.lstrip("/")
    if relative:
        candidate = (directory / relative).resolve()
        if candidate.is_relative_to(directory.resolve()) and candidate.is_file():
            return candidate, candidate == index.resolve()
        if "." in relative.rsplit("/", 1)[-1]:
            return None, False  # a missing file (e.g. an old hashed asset): 404, not the app shell
    return index, True


class StaticUI:
    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.directory = directory

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # Starlette's file responses are imported with the first page, not by every worker at start.
        from starlette.responses import FileResponse, HTMLResponse

        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            error = (
                NotFound(f"Unknown endpoint: {scope['method']} {path}.")
                if path != "/"
                else MethodNotAllowed(f"Method {scope['method']} is not allowed on /.")
            )
            await send_error(send, error, request_id(scope))
            return
        found, is_index = await asyncio.to_thread(_locate, self.directory, path)
        if found is None:
            if path == "/" or not (self.directory / "index.html").exists():
                if path == "/":
                    response = HTMLResponse(NOT_BUILT, headers={**_SECURITY, "cache-control": "no-cache"})
                    await response(scope, receive, send)
                    return
            await send_error(send, NotFound(f"Not found: {path}."), request_id(scope))
            return
        headers = dict(_SECURITY)
        if is_index:
            headers["cache-control"] = "no-cache"
            headers["content-security-policy"] = _CSP
        elif "/assets/" in found.as_posix():
            headers["cache-control"] = "public, max-age=31536000, immutable"  # Vite's content-hashed names
        await FileResponse(found, headers=headers)(scope, receive, send)

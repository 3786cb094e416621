from __future__ import annotations

from pathlib import Path

import httpx

from gophergate.http.static import StaticUI


def _client(directory: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=StaticUI(directory)), base_url="http://ui")


async def test_without_a_build_the_root_says_the_ui_is_not_built(tmp_path: Path) -> None:
    async with _client(tmp_path / "missing") as c:
        root = await c.get("/")
        assert root.status_code == 200 and "not built" in root.text
        assert (await c.get("/keys")).status_code == 404


async def test_files_are_served_and_unknown_paths_fall_back_to_the_index(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html>app</html>")
    (tmp_path / "assets" / "main-abc123.js").write_text("console.log(1)")
    async with _client(tmp_path) as c:
        index = await c.get("/")
        assert index.text == "<html>app</html>" and index.headers["cache-control"] == "no-cache"
        assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
        asset = await c.get("/assets/main-abc123.js")
        assert asset.text == "console.log(1)" and "immutable" in asset.headers["cache-control"]
        assert (await c.get("/requests/42")).text == "<html>app</html>"  # SPA route
        assert (await c.get("/assets/gone-999.js")).status_code == 404  # a missing file is not the app
        assert (await c.get("/../../etc/passwd")).status_code in (200, 404)
        assert "root:" not in (await c.get("/%2e%2e/%2e%2e/etc/passwd")).text
        assert (await c.post("/")).status_code == 405

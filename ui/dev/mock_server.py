"""Dev tool only: a throwaway mock of the dashboard API contract with canned data, for working on the UI
without the real backend. Never used by the tests (the browser test drives the real gateway).

    python ui/dev/mock_server.py [--port 8080] [--rate 5]

Serves the built UI from src/gophergate/static, /api/* per the dashboard contract, and /ws with `metrics`
every 2 s, a `request` for every POST /v1/chat/completions (answered with a canned completion) plus
`--rate` synthetic requests per second. Users: admin/admin and viewer/viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

STATIC = Path(__file__).resolve().parents[2] / "src" / "gophergate" / "static"
USERS = {"admin": ("admin", 1, "admin"), "viewer": ("viewer", 2, "viewer")}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(s: str | None, default: datetime) -> datetime:
    if not s:
        return default
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def err(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(body, status=status)


class Mock:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sessions: dict[str, dict[str, Any]] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.sends: set[asyncio.Future[None]] = set()
        self.rows: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.key_ids = itertools.count(3)
        self.keys: list[dict[str, Any]] = [self._key(1, "backend-prod"), self._key(2, "notebook")]
        self.secrets: dict[str, int] = {}
        self.providers = [
            {
                "name": "openai",
                "kind": "openai",
                "dialect": "openai",
                "base_url": None,
                "api_key_masked": "sk-...abcd",
                "enabled": True,
                "source": "env",
                "models": ["gpt-4o-mini", "gpt-5-mini"],
                "health": {"error_rate": 0.01, "p50_ms": 420, "requests": 1234},
            },
            {
                "name": "anthropic",
                "kind": "anthropic",
                "dialect": None,
                "base_url": None,
                "api_key_masked": "sk-...wxyz",
                "enabled": True,
                "source": "database",
                "models": ["claude-sonnet-4"],
                "health": {"error_rate": 0.0, "p50_ms": 810, "requests": 321},
            },
        ]
        self.models = [
            {
                "id": m,
                "provider": p["name"],
                "registry_id": m,
                "enabled": True,
                "context_window": 128000,
                "max_output_tokens": 16384,
                "capabilities": {"tools": True},
                "pricing": {
                    "currency": "USD",
                    "unit": "per 1M tokens",
                    "input": 0.15,
                    "output": 0.6,
                    "source": "registry",
                },
                "override": None,
            }
            for p in self.providers
            for m in p["models"]
        ]
        self.users = [
            {"id": 1, "username": "admin", "role": "admin"},
            {"id": 2, "username": "viewer", "role": "viewer"},
        ]
        now = datetime.now(UTC)
        for i in range(120, 0, -1):
            self._add_row(now - timedelta(seconds=i * 20), broadcast=False)

    def _key(self, kid: int, name: str) -> dict[str, Any]:
        return {
            "id": kid,
            "name": name,
            "hint": f"sk-gg-...{kid:04d}",
            "created_at": iso(datetime.now(UTC)),
            "revoked_at": None,
            "last_used_at": None,
            "team": None,
            "expires_at": None,
            "limits": {
                "rpm": None,
                "tpm": None,
                "max_parallel": None,
                "budget_usd": None,
                "budget_period": None,
                "allowed_models": [],
                "max_tokens_cap": None,
            },
        }

    def _add_row(
        self, when: datetime, broadcast: bool = True, key_id: int | None = None, model: str | None = None
    ) -> dict[str, Any]:
        status = random.choice([200] * 18 + [429, 502])
        p, c = random.randint(10, 2000), random.randint(1, 800)
        row = {
            "id": next(self.ids),
            "request_id": "req_" + uuid.uuid4().hex[:16],
            "created_at": iso(when),
            "endpoint": "chat.completions",
            "client_key_id": key_id or random.choice([1, 2]),
            "requested_model": model or "gpt-4o-mini",
            "provider": "openai",
            "model": model or "gpt-4o-mini",
            "stream": random.random() < 0.5,
            "status": status,
            "error_type": None if status == 200 else "upstream_error",
            "finish_reason": "stop" if status == 200 else None,
            "prompt_tokens": p,
            "completion_tokens": c,
            "reasoning_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "estimated": False,
            "cost_usd": f"{(p * 0.15 + c * 0.6) / 1e6:.6f}",
            "price_unknown": False,
            "latency_ms": random.randint(100, 3000),
            "ttfb_ms": random.randint(50, 500),
            "client_ip": f"192.0.2.{random.randint(1, 254)}",
        }
        self.rows.append(row)
        if len(self.rows) > 20000:
            del self.rows[:10000]
        if broadcast:
            self.broadcast({"type": "request", "data": row})
        return row

    def broadcast(self, msg: dict[str, Any]) -> None:
        text = json.dumps(msg)
        for ws in list(self.sockets):
            task = asyncio.ensure_future(ws.send_str(text))
            self.sends.add(task)
            task.add_done_callback(self.sends.discard)

    # -- auth --------------------------------------------------------------------------------------
    def session(self, request: web.Request) -> dict[str, Any] | None:
        return self.sessions.get(request.cookies.get("gg_session", ""))

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api") and path != "/api/auth/login":
            s = self.session(request)
            if s is None:
                return err(401, "not logged in", "unauthorized")
            request["session"] = s
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                if request.headers.get("X-CSRF-Token") != s["csrf"]:
                    return err(403, "CSRF token missing or wrong", "csrf_failed")
                admin_free = path in ("/api/auth/logout",)
                if s["user"]["role"] != "admin" and not admin_free:
                    return err(403, "admin only", "forbidden")
            if s["user"]["role"] != "admin" and (path.startswith("/api/keys") or path.startswith("/api/users")):
                return err(403, "admin only", "forbidden")
        return await handler(request)

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        entry = USERS.get(body.get("username", ""))
        if entry is None or entry[0] != body.get("password"):
            return err(401, "bad credentials", "invalid_credentials")
        token, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        user = {"id": entry[1], "username": body["username"], "role": entry[2]}
        self.sessions[token] = {"user": user, "csrf": csrf}
        resp = web.json_response({"user": user, "csrf_token": csrf, "expires_at": iso(datetime.now(UTC))})
        resp.set_cookie("gg_session", token, httponly=True, samesite="Strict", path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.cookies.get("gg_session", ""), None)
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        s = request["session"]
        return web.json_response({"user": s["user"], "csrf_token": s["csrf"]})

    # -- keys --------------------------------------------------------------------------------------
    async def keys_list(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.keys[::-1], "next_cursor": None})

    async def key_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = self._key(next(self.key_ids), body["name"])
        self.keys.append(key)
        secret = "sk-gg-" + secrets.token_urlsafe(24)
        self.secrets[secret] = key["id"]
        return web.json_response({"key": key, "secret": secret}, status=201)

    def _find_key(self, request: web.Request) -> dict[str, Any]:
        kid = int(request.match_info["id"])
        for k in self.keys:
            if k["id"] == kid:
                return k
        raise web.HTTPNotFound()

    async def key_patch(self, request: web.Request) -> web.Response:
        k, body = self._find_key(request), await request.json()
        if "name" in body:
            k["name"] = body["name"]
        if "limits" in body:
            k["limits"].update(body["limits"])
        return web.json_response(k)

    async def key_revoke(self, request: web.Request) -> web.Response:
        k = self._find_key(request)
        k["revoked_at"] = iso(datetime.now(UTC))
        return web.json_response(k)

    async def key_rotate(self, request: web.Request) -> web.Response:
        k = self._find_key(request)
        secret = "sk-gg-" + secrets.token_urlsafe(24)
        self.secrets[secret] = k["id"]
        return web.json_response({"key": k, "secret": secret})

    # -- lists -------------------------------------------------------------------------------------
    async def providers_list(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.providers, "next_cursor": None})

    async def provider_test(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "latency_ms": 123, "models": 3})

    async def ok(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def models_list(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.models, "next_cursor": None})

    async def users_list(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.users, "next_cursor": None})

    async def system(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": "0.1.0-mock",
                "uptime_s": 3725,
                "host": {
                    "cpu_percent": 12.5,
                    "memory": {"total": 8 << 30, "used": 3 << 30, "percent": 37.5},
                    "disk": {"total": 100 << 30, "used": 40 << 30, "percent": 40.0},
                },
                "process": {"cpu_percent": 3.2, "rss_bytes": 120 << 20},
                "log": {"queue_depth": 0, "writer_lag_s": 0.05, "rows_written": len(self.rows)},
                "registry": {"age_s": 600, "models": len(self.models), "source": "models.dev"},
                "providers": [{"name": p["name"], **p["health"]} for p in self.providers],
            }
        )

    # -- request log -------------------------------------------------------------------------------
    def _filtered(self, q: Any) -> list[dict[str, Any]]:
        rows = self.rows[::-1]
        if q.get("provider"):
            rows = [r for r in rows if r["provider"] == q["provider"]]
        if q.get("model"):
            rows = [r for r in rows if r["model"] == q["model"]]
        if q.get("status"):
            rows = [r for r in rows if str(r["status"]) == q["status"]]
        if q.get("client_key_id"):
            rows = [r for r in rows if str(r["client_key_id"]) == q["client_key_id"]]
        if q.get("errors_only") in ("true", "1"):
            rows = [r for r in rows if r["status"] >= 400]
        return rows

    async def requests(self, request: web.Request) -> web.Response:
        q = request.query
        rows = self._filtered(q)
        if q.get("cursor"):
            rows = [r for r in rows if r["id"] < int(q["cursor"])]
        limit = min(int(q.get("limit", 50)), 500)
        page = rows[:limit]
        nxt = str(page[-1]["id"]) if len(rows) > limit else None
        return web.json_response({"data": page, "next_cursor": nxt})

    async def request_detail(self, request: web.Request) -> web.Response:
        rid = int(request.match_info["id"])
        for r in self.rows:
            if r["id"] == rid:
                return web.json_response({**r, "client_ip": "127.0.0.1", "user_agent": "OpenAI/Python"})
        return err(404, "no such request", "not_found")

    # -- analytics ---------------------------------------------------------------------------------
    def _range(self, q: Any) -> tuple[datetime, datetime]:
        now = datetime.now(UTC)
        return parse(q.get("from"), now - timedelta(hours=24)), parse(q.get("to"), now)

    async def timeseries(self, request: web.Request) -> web.Response:
        q = request.query
        start, end = self._range(q)
        size = {"minute": 60, "hour": 3600, "day": 86400}[q.get("bucket", "hour")]
        group = q.get("group_by", "none")
        series: dict[Any, dict[int, dict[str, Any]]] = {}
        for r in self.rows:
            t = parse(r["created_at"], end)
            if not (start <= t <= end):
                continue
            key = None if group == "none" else str(r[{"client": "client_key_id"}.get(group, group)])
            b = int(t.timestamp()) // size * size
            pt = series.setdefault(key, {}).setdefault(
                b,
                {
                    "t": iso(datetime.fromtimestamp(b, UTC)),
                    "requests": 0,
                    "errors": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "reasoning_tokens": 0,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "cost": 0.0,
                    "lat": [],
                },
            )
            pt["requests"] += 1
            pt["errors"] += r["status"] >= 400
            pt["prompt_tokens"] += r["prompt_tokens"]
            pt["completion_tokens"] += r["completion_tokens"]
            pt["cost"] += float(r["cost_usd"])
            pt["lat"].append(r["latency_ms"])
        out = []
        for key, pts in series.items():
            points = []
            for _, pt in sorted(pts.items()):
                lat = sorted(pt.pop("lat"))
                cost = pt.pop("cost")
                points.append(
                    {
                        **pt,
                        "error_rate": pt["errors"] / pt["requests"],
                        "cost_usd": f"{cost:.6f}",
                        "unpriced_requests": 0,
                        "p50_ms": lat[len(lat) // 2],
                        "p95_ms": lat[int(len(lat) * 0.95)],
                    }
                )
            out.append({"key": key, "points": points})
        return web.json_response({"bucket": q.get("bucket", "hour"), "series": out})

    async def totals(self, request: web.Request) -> web.Response:
        start, end = self._range(request.query)
        rows = [r for r in self.rows if start <= parse(r["created_at"], end) <= end]
        lat = sorted(r["latency_ms"] for r in rows) or [0]
        return web.json_response(
            {
                "requests": len(rows),
                "errors": sum(r["status"] >= 400 for r in rows),
                "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
                "completion_tokens": sum(r["completion_tokens"] for r in rows),
                "cost_usd": f"{sum(float(r['cost_usd']) for r in rows):.6f}",
                "unpriced_requests": 0,
                "p50_ms": lat[len(lat) // 2],
                "p95_ms": lat[int(len(lat) * 0.95)],
            }
        )

    async def top(self, request: web.Request) -> web.Response:
        by = request.query.get("by", "model")
        col = {"client": "client_key_id"}.get(by, by)
        agg: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            a = agg.setdefault(str(r[col]), {"key": str(r[col]), "requests": 0, "tokens": 0, "cost": 0.0})
            a["requests"] += 1
            a["tokens"] += r["prompt_tokens"] + r["completion_tokens"]
            a["cost"] += float(r["cost_usd"])
        data = [
            {**{k: v for k, v in a.items() if k != "cost"}, "cost_usd": f"{a['cost']:.6f}", "unpriced_requests": 0}
            for a in agg.values()
        ]
        return web.json_response({"data": data})

    async def export(self, request: web.Request) -> web.Response:
        return web.Response(text="t,key,requests\n", content_type="text/csv")

    # -- /v1 and /ws -------------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if auth not in self.secrets:
            return err(401, "invalid api key", "invalid_api_key")
        body = await request.json()
        row = self._add_row(datetime.now(UTC), key_id=self.secrets[auth], model=body.get("model"))
        text = "echo: " + str(body["messages"][-1]["content"])
        return web.json_response(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            },
            headers={"x-request-id": row["request_id"]},
        )

    async def user_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        uid = len(self.users) + 1
        USERS[body["username"]] = (body["password"], uid, body["role"])
        user = {"id": uid, "username": body["username"], "role": body["role"]}
        self.users.append(user)
        return web.json_response(user, status=201)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        if self.session(request) is None:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets.discard(ws)
        return ws

    async def ticker(self, app: web.Application) -> Any:
        async def run() -> None:
            last = time.monotonic()
            owed = 0.0
            while True:
                await asyncio.sleep(0.1)
                owed += self.rate / 10
                while owed >= 1:
                    owed -= 1
                    self._add_row(datetime.now(UTC))
                if time.monotonic() - last >= 2:
                    last = time.monotonic()
                    self.broadcast(
                        {
                            "type": "metrics",
                            "data": {
                                "requests_per_s": self.rate + random.random(),
                                "tokens_per_s": 500 * random.random(),
                                "cost_per_min_usd": "0.0123",
                                "unpriced_requests": 0,
                                "error_rate": random.random() / 10,
                                "p95_ms": 1800,
                                "cpu_percent": 10 + random.random() * 5,
                                "memory_percent": 40.0,
                                "queue_depth": 0,
                                "ts": iso(datetime.now(UTC)),
                            },
                        }
                    )

        task = asyncio.create_task(run())
        yield
        task.cancel()

    async def index(self, request: web.Request) -> web.FileResponse:
        path = STATIC / request.path.lstrip("/")
        if request.path != "/" and path.is_file():
            return web.FileResponse(path)
        return web.FileResponse(STATIC / "index.html")


def build(rate: float) -> web.Application:
    m = Mock(rate)
    app = web.Application(middlewares=[m.guard])
    app.cleanup_ctx.append(m.ticker)
    r = app.router
    r.add_post("/api/auth/login", m.login)
    r.add_post("/api/auth/logout", m.logout)
    r.add_get("/api/auth/me", m.me)
    r.add_get("/api/keys", m.keys_list)
    r.add_post("/api/keys", m.key_create)
    r.add_patch("/api/keys/{id}", m.key_patch)
    r.add_post("/api/keys/{id}/revoke", m.key_revoke)
    r.add_post("/api/keys/{id}/rotate", m.key_rotate)
    r.add_get("/api/providers", m.providers_list)
    r.add_post("/api/providers", m.ok)
    r.add_patch("/api/providers/{name}", m.ok)
    r.add_delete("/api/providers/{name}", m.ok)
    r.add_post("/api/providers/{name}/test", m.provider_test)
    r.add_get("/api/models", m.models_list)
    r.add_patch("/api/models/{provider}/{model}", m.ok)
    r.add_put("/api/models/{provider}/{model}/price", m.ok)
    r.add_delete("/api/models/{provider}/{model}/price", m.ok)
    r.add_get("/api/users", m.users_list)
    r.add_post("/api/users", m.user_create)
    r.add_patch("/api/users/{id}", m.ok)
    r.add_delete("/api/users/{id}", m.ok)
    r.add_get("/api/system", m.system)
    r.add_get("/api/requests", m.requests)
    r.add_get("/api/requests/{id}", m.request_detail)
    r.add_get("/api/analytics/timeseries", m.timeseries)
    r.add_get("/api/analytics/totals", m.totals)
    r.add_get("/api/analytics/top", m.top)
    r.add_get("/api/analytics/export.csv", m.export)
    r.add_post("/v1/chat/completions", m.chat)
    r.add_get("/ws", m.ws)
    r.add_get("/{tail:.*}", m.index)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--rate", type=float, default=2.0, help="synthetic requests per second")
    args = parser.parse_args()
    web.run_app(build(args.rate), host="127.0.0.1", port=args.port)

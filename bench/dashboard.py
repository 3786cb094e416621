"""`make bench-dashboard`: seed 1,000,000 request-log rows (+ rollups) and time every dashboard query.

`python -m bench.dashboard [--rows N] [--repeat R] [--postgres [URL]] [--keep DIR]`

SQLite always (a temporary file); PostgreSQL too with ``--postgres URL`` or ``--postgres`` and
``GOPHERGATE_TEST_POSTGRES_URL`` set (a temporary database is created there and dropped). Each query-layer call
and each HTTP route (the routers on a small FastAPI app, through httpx's in-process ASGI transport) runs
``--repeat`` times; p50/p95/max are printed, with calls over the 200 ms target marked. The query plans of the
request-log filters are printed too. Not a test: nothing fails when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.seed_dashboard import seed
from gophergate.admin.queries import analytics
from gophergate.admin.queries import requests as reqs
from gophergate.admin.queries.requests import RequestFilter
from gophergate.db.engine import create_engine
from gophergate.settings import async_database_url

TARGET_MS = 200.0


def _stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


async def _time(name: str, call: Callable[[], Awaitable[Any]], repeat: int, results: list[Any]) -> None:
    await call()  # warm-up (plans, caches)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    p50, p95, worst = _stats(samples)
    flag = "" if worst < TARGET_MS else "  <-- over 200 ms"
    print(f"  {name:<58} p50 {p50:7.1f}  p95 {p95:7.1f}  max {worst:7.1f} ms{flag}", flush=True)
    results.append((name, p50, p95, worst))


def _calls(engine: AsyncEngine, now: dt.datetime) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    day = dt.timedelta(days=1)
    mid = now - 12 * day

    async def deep_page() -> Any:
        cursor = None
        for _ in range(20):  # the 20th page of 50: a cursor deep in the log
            _, cursor = await reqs.list_requests(engine, RequestFilter(), limit=50, cursor=cursor)
        return cursor

    def page(flt: RequestFilter, limit: int = 50) -> Callable[[], Awaitable[Any]]:
        return lambda: reqs.list_requests(engine, flt, limit=limit)

    calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("requests: first page, no filter", page(RequestFilter())),
        ("requests: first page of 500, no filter", page(RequestFilter(), 500)),
        ("requests: 20 pages following the cursor (total)", deep_page),
        ("requests: provider=anthropic", page(RequestFilter(provider="anthropic"))),
        ("requests: model=claude-opus-4-1 (rare)", page(RequestFilter(model="claude-opus-4-1"))),
        ("requests: client_key_id=25 (rare)", page(RequestFilter(client_key_id=25))),
        ("requests: status=504 (rare)", page(RequestFilter(status=504))),
        ("requests: errors only", page(RequestFilter(errors_only=True))),
        ("requests: final attempts only", page(RequestFilter(final_only=True))),
        ("requests: errors only + model=grok-4 (rarest)", page(RequestFilter(errors_only=True, model="grok-4"))),
        ("requests: 1-hour window 12 days ago", page(RequestFilter(start=mid, end=mid + dt.timedelta(hours=1)))),
        (
            "requests: window + provider + client",
            page(RequestFilter(start=mid - day, end=mid, provider="gemini", client_key_id=3)),
        ),
        ("requests: one row's detail", lambda: reqs.get_request(engine, 50_000)),
        ("timeseries: 24 h by minute", lambda: analytics.timeseries(engine, now - day, now, "minute", "none")),
        (
            "timeseries: 24 h by minute, per model (-> hour)",
            lambda: analytics.timeseries(engine, now - day, now, "minute", "model"),
        ),
        ("timeseries: 7 d by hour", lambda: analytics.timeseries(engine, now - 7 * day, now, "hour", "none")),
        (
            "timeseries: 7 d by hour, per provider",
            lambda: analytics.timeseries(engine, now - 7 * day, now, "hour", "provider"),
        ),
        ("timeseries: 30 d by hour", lambda: analytics.timeseries(engine, now - 30 * day, now, "hour", "none")),
        (
            "timeseries: 30 d by hour, per model (-> day)",
            lambda: analytics.timeseries(engine, now - 30 * day, now, "hour", "model"),
        ),
        (
            "timeseries: 4 h by minute, per model (240 points)",
            lambda: analytics.timeseries(engine, now - day / 6, now, "minute", "model"),
        ),
        (
            "timeseries: 10 d by hour, per model (240 points)",
            lambda: analytics.timeseries(engine, now - 10 * day, now, "hour", "model"),
        ),
        (
            "timeseries: 10 d by hour, per target (240 points)",
            lambda: analytics.timeseries(engine, now - 10 * day, now, "hour", "target"),
        ),
        (
            "timeseries: 30 d by day, per client",
            lambda: analytics.timeseries(engine, now - 30 * day, now, "day", "client"),
        ),
        ("top: 30 d models by cost", lambda: analytics.top(engine, now - 30 * day, now, "model", "cost", 10)),
        ("top: 30 d targets by cost", lambda: analytics.top(engine, now - 30 * day, now, "target", "cost", 10)),
        ("top: 30 d clients by tokens", lambda: analytics.top(engine, now - 30 * day, now, "client", "tokens", 10)),
        ("top: 24 h providers by requests", lambda: analytics.top(engine, now - day, now, "provider", "requests", 10)),
        ("totals: last 24 h", lambda: analytics.totals(engine, now - day, now)),
        (
            "totals: last 30 d (ragged edges)",
            lambda: analytics.totals(engine, now - 30 * day + dt.timedelta(minutes=7), now),
        ),
        (
            "export.csv: 7 d by hour, per model",
            lambda: _csv(engine, now - 7 * day, now),
        ),
    ]
    return calls


async def _csv(engine: AsyncEngine, start: dt.datetime, end: dt.datetime) -> str:
    return analytics.timeseries_csv(await analytics.timeseries(engine, start, end, "hour", "model"))


def _http_calls(engine: AsyncEngine, now: dt.datetime) -> tuple[Any, list[tuple[str, str]]]:
    import httpx
    from fastapi import FastAPI

    from gophergate.admin import analytics as analytics_routes
    from gophergate.admin import requests as request_routes
    from gophergate.admin.deps import User, current_user

    app = FastAPI()
    app.state.runtime = type("R", (), {"engine": engine})()
    app.include_router(request_routes.router)
    app.include_router(analytics_routes.router)
    app.dependency_overrides[current_user] = lambda: User(1, "bench", "viewer")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    z = "%Y-%m-%dT%H:%M:%SZ"
    d30 = (now - dt.timedelta(days=30)).strftime(z)
    d7 = (now - dt.timedelta(days=7)).strftime(z)
    h4 = (now - dt.timedelta(hours=4)).strftime(z)
    paths = [
        ("GET /api/requests?limit=50", "/api/requests?limit=50"),
        ("GET /api/requests?limit=500", "/api/requests?limit=500"),
        ("GET /api/requests?errors_only=true&model=grok-4", "/api/requests?errors_only=true&model=grok-4"),
        ("GET /api/requests/{id}", "/api/requests/50000"),
        (
            "GET /api/analytics/timeseries (24 h, minute->hour, model)",
            "/api/analytics/timeseries?bucket=minute&group_by=model",
        ),
        (
            "GET /api/analytics/timeseries (4 h, minute, model)",
            f"/api/analytics/timeseries?from={h4}&bucket=minute&group_by=model",
        ),
        (
            "GET /api/analytics/timeseries (30 d, hour->day, model)",
            f"/api/analytics/timeseries?from={d30}&bucket=hour&group_by=model",
        ),
        ("GET /api/analytics/top (30 d, model, cost)", f"/api/analytics/top?from={d30}&by=model&metric=cost"),
        ("GET /api/analytics/totals (30 d)", f"/api/analytics/totals?from={d30}"),
        (
            "GET /api/analytics/export.csv (7 d, hour, model)",
            f"/api/analytics/export.csv?from={d7}&bucket=hour&group_by=model",
        ),
    ]
    return client, paths


async def _plans(engine: AsyncEngine) -> None:
    print("  query plans of the request-log pages:")
    for label, flt in (
        ("no filter", RequestFilter()),
        ("provider", RequestFilter(provider="anthropic")),
        ("model", RequestFilter(model="claude-opus-4-1")),
        ("client", RequestFilter(client_key_id=25)),
        ("status", RequestFilter(status=504)),
        ("errors only", RequestFilter(errors_only=True)),
        ("final attempts only", RequestFilter(final_only=True)),
    ):
        cursor = reqs.encode_cursor(dt.datetime.now(dt.UTC) - dt.timedelta(days=3), 10**9)
        compiled = reqs.list_query(flt, limit=50, cursor=cursor).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
                plan = " | ".join(str(r[-1]) for r in result.all())
            else:
                result = await conn.exec_driver_sql(f"EXPLAIN {compiled}")
                plan = " | ".join(r[0].strip() for r in result.all() if "Scan" in r[0] or "Sort" in r[0])
        print(f"    {label:<12} {plan}")


async def run(url: str, rows: int, repeat: int, *, seeded: bool = False) -> list[Any]:
    if not seeded:
        print(f"seeding {rows:,} rows into {url.split('@')[-1]} ...", flush=True)
        seconds = await seed(url, rows)
        print(f"  seeded in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
    engine = create_engine(async_database_url(url))
    now = dt.datetime.now(dt.UTC)
    results: list[Any] = []
    try:
        await _plans(engine)
        print("  query layer (ms):")
        for name, call in _calls(engine, now):
            await _time(name, call, repeat, results)
        print("  HTTP routes (in-process ASGI, ms):")
        client, paths = _http_calls(engine, now)
        async with client:
            for name, path in paths:

                async def get(path: str = path) -> None:
                    response = await client.get(path)
                    assert response.status_code == 200, (path, response.status_code, response.text[:300])

                await _time(name, get, repeat, results)
    finally:
        await engine.dispose()
    over = [r for r in results if r[3] >= TARGET_MS]
    print(f"  {len(results) - len(over)}/{len(results)} calls under {TARGET_MS:.0f} ms at their worst")
    return results


async def _with_postgres(base: str, rows: int, repeat: int) -> None:
    import asyncpg

    name = "gg_bench_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(base)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await run(base.rsplit("/", 1)[0] + "/" + name, rows, repeat)
    finally:
        conn = await asyncpg.connect(base)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get("GOPHERGATE_TEST_POSTGRES_URL", ""),
        default=os.environ.get("GOPHERGATE_TEST_POSTGRES_URL") or None,
        help="also on PostgreSQL (a temporary database on this server; default GOPHERGATE_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--keep", type=Path, help="keep the SQLite database in this directory")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--existing", help="time the queries on this already seeded database URL only")
    args = parser.parse_args(argv)
    if args.existing:
        asyncio.run(run(args.existing, args.rows, args.repeat, seeded=True))
        return 0
    if not args.skip_sqlite:
        directory = args.keep or Path(tempfile.mkdtemp(prefix="gg-bench-dashboard-"))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "dashboard.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        print("== SQLite")
        asyncio.run(run(f"sqlite:///{path}", args.rows, args.repeat))
        if args.keep is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            directory.rmdir()
    if args.postgres is not None:
        if not args.postgres:
            print("--postgres needs a URL or GOPHERGATE_TEST_POSTGRES_URL", file=sys.stderr)
            return 2
        print("== PostgreSQL")
        asyncio.run(_with_postgres(args.postgres, args.rows, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())

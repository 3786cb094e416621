"""Seed a database with N realistic request-log rows and their rollups, quickly (bulk, both engines).

`python -m bench.seed_dashboard --url sqlite:///path.db --rows 1000000`

Rows are spread over the last ``--days`` days (a daily traffic wave), newest id = newest row, with skewed
clients, providers and models, ~4% errors, log-normal latencies and token counts, and exact costs from
per-million prices. Rollups are computed by the log writer's own aggregation (``recorder/rollup.py``) per chunk
and upserted like the writer does; minute rollups are only kept for the last ``MINUTE_ROLLUP_DAYS`` days (what
retention would leave). SQLite goes through the log writer's sink (one transaction per chunk); PostgreSQL uses
COPY for the raw rows and the writer's upserts for the rollups.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from gophergate.core.record import COLUMNS
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import ROLLUP_KEYS
from gophergate.recorder.retention import MINUTE_ROLLUP_DAYS
from gophergate.recorder.rollup import Aggregator, upsert_sql
from gophergate.recorder.sink import SqliteSink
from gophergate.settings import async_database_url

# (provider, model, USD per million input tokens, per million output tokens, weight)
MODELS: list[tuple[str, str, Decimal, Decimal, float]] = [
    ("openai", "gpt-4o-mini", Decimal("0.15"), Decimal("0.6"), 30),
    ("openai", "gpt-4o", Decimal("2.5"), Decimal("10"), 12),
    ("openai", "gpt-4.1", Decimal("2"), Decimal("8"), 6),
    ("openai", "o4-mini", Decimal("1.1"), Decimal("4.4"), 4),
    ("openai", "text-embedding-3-small", Decimal("0.02"), Decimal("0"), 8),
    ("anthropic", "claude-sonnet-4-5", Decimal("3"), Decimal("15"), 10),
    ("anthropic", "claude-haiku-4-5", Decimal("1"), Decimal("5"), 6),
    ("anthropic", "claude-opus-4-1", Decimal("15"), Decimal("75"), 1),
    ("gemini", "gemini-2.5-flash", Decimal("0.3"), Decimal("2.5"), 9),
    ("gemini", "gemini-2.5-pro", Decimal("1.25"), Decimal("10"), 3),
    ("deepseek", "deepseek-chat", Decimal("0.28"), Decimal("0.42"), 5),
    ("deepseek", "deepseek-reasoner", Decimal("0.28"), Decimal("0.42"), 2),
    ("xai", "grok-4", Decimal("3"), Decimal("15"), 1),
    ("ollama", "llama3.2", Decimal("0"), Decimal("0"), 2),
    ("custom", "my-finetune", Decimal("0.5"), Decimal("1.5"), 1),
]
CLIENTS = 25
STATUSES = [(200, 0.955), (429, 0.015), (400, 0.01), (502, 0.01), (499, 0.006), (504, 0.004)]
ERROR_TYPES = {429: "rate_limit_error", 400: "invalid_request_error", 502: "upstream_error", 504: "timeout_error"}
ERROR_CLASSES = {429: "rate_limited", 502: "server_error", 504: "timeout"}
CHUNK = 20_000


def _times(rng: random.Random, n: int, end: dt.datetime, days: float) -> list[dt.datetime]:
    """n sorted timestamps over [end - days, end) following a daily wave (busy afternoons, quiet nights)."""
    span = days * 86400
    out = []
    while len(out) < n:
        offset = rng.random() * span
        t = end - dt.timedelta(seconds=span - offset)
        hour = t.hour + t.minute / 60
        if rng.random() < 0.35 + 0.65 * (0.5 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi)):
            out.append(t)
    out.sort()
    return out


def rows(n: int, *, end: dt.datetime, days: float, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """Rows in ``COLUMNS`` order (created_at an aware datetime, USD as Decimal), oldest first."""
    rng = random.Random(seed)
    model_weights = [m[4] for m in MODELS]
    client_weights = [1 / (k + 1) ** 1.1 for k in range(CLIENTS)]
    status_codes = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        stamps = _times(rng, count, end - dt.timedelta(days=days) * (1 - (start + count) / n), days * count / n)
        chosen = rng.choices(MODELS, model_weights, k=count)
        clients = rng.choices(range(1, CLIENTS + 1), client_weights, k=count)
        statuses = rng.choices(status_codes, status_weights, k=count)
        for i in range(count):
            provider, model, price_in, price_out, _ = chosen[i]
            status = statuses[i]
            ok = status < 400
            embedding = "embedding" in model
            prompt = int(rng.lognormvariate(6.5, 1.2)) if status != 400 else 0
            completion = 0 if embedding or not ok else int(rng.lognormvariate(5.2, 1.0))
            reasoning = int(completion * rng.random()) if model.startswith(("o4", "deepseek-r")) else 0
            cache_read = int(prompt * rng.random()) if ok and rng.random() < 0.3 else 0
            cost = (price_in * prompt + price_out * completion).scaleb(-6) if ok else Decimal(0)
            stream = not embedding and rng.random() < 0.6
            latency = rng.lognormvariate(6.3, 0.9) if ok else rng.lognormvariate(4, 1.5)
            yield (
                f"req_{start + i:012x}",
                stamps[i],
                "embeddings" if embedding else "chat.completions",
                clients[i],
                model,
                provider,
                model,
                stream,
                status,
                None if ok else ERROR_TYPES.get(status, "client_disconnected"),
                None if ok else "seeded error",
                ("stop" if rng.random() < 0.9 else "length") if ok and not embedding else None,
                prompt,
                completion,
                reasoning,
                cache_read,
                0,
                False,
                cost,
                latency,
                latency * rng.uniform(0.1, 0.5) if stream else None,
                latency * 0.98,
                latency * 0.02,
                cost if ok else Decimal(0),
                Decimal(0),
                Decimal(0),
                Decimal(0),
                Decimal(0),
                "seed",
                False,
                f"192.0.2.{clients[i]}",  # client_ip: one documentation-range address per client key
                ERROR_CLASSES.get(status),
                1,  # attempt: one attempt per request, final, no model group
                True,
                None,
            )


def _chunks(source: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in source:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _deltas(chunk: list[tuple[Any, ...]], minute_since: dt.datetime) -> dict[str, list[tuple[Any, ...]]]:
    agg = Aggregator()
    agg.add(chunk)
    deltas = agg.deltas()
    for table, delta_rows in deltas.items():
        if table.startswith("rollup_minute"):
            deltas[table] = [d for d in delta_rows if d[0] >= minute_since]
    return deltas


async def seed(url: str, n: int, *, days: float = 30.0, end: dt.datetime | None = None, quiet: bool = False) -> float:
    """Migrate ``url`` and fill it; returns the seconds it took."""
    url = async_database_url(url)
    await asyncio.to_thread(upgrade, url)
    end = end or dt.datetime.now(dt.UTC)
    minute_since = end - dt.timedelta(days=MINUTE_ROLLUP_DAYS)
    began = time.perf_counter()
    done = 0
    if url.startswith("sqlite"):
        sink = SqliteSink(url)
        for chunk in _chunks(rows(n, end=end, days=days)):
            deltas = _deltas(chunk, minute_since)
            await sink.insert([sink.encode(r) for r in chunk], sink.encode_deltas(deltas))
            done += len(chunk)
            if not quiet and done % 200_000 == 0:
                print(f"  seeded {done:,} rows ({time.perf_counter() - began:.1f} s)", flush=True)
        await sink.close()
        engine = create_engine(url)
        async with engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
        await engine.dispose()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            upserts = {table: upsert_sql(table, "numeric_dollar") for table in ROLLUP_KEYS}
            for chunk in _chunks(rows(n, end=end, days=days)):
                deltas = _deltas(chunk, minute_since)
                async with conn.transaction():
                    await conn.copy_records_to_table("request_log", records=chunk, columns=list(COLUMNS))
                    for table, delta_rows in deltas.items():
                        if delta_rows:
                            await conn.executemany(upserts[table], delta_rows)
                done += len(chunk)
                if not quiet and done % 200_000 == 0:
                    print(f"  seeded {done:,} rows ({time.perf_counter() - began:.1f} s)", flush=True)
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="sqlite:///path.db or postgresql://...")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    args = parser.parse_args(argv)
    seconds = asyncio.run(seed(args.url, args.rows, days=args.days))
    print(f"seeded {args.rows:,} rows in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)")


if __name__ == "__main__":
    main()

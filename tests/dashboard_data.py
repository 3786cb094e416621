"""Random but realistic request-log records for the dashboard data tests, written through the real log writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.record import RequestRecord
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import request_log
from gophergate.recorder.writer import Recorder
from gophergate.settings import async_database_url

PROVIDERS = {"openai": ["gpt-4o", "gpt-4o-mini"], "anthropic": ["claude-sonnet-4"], "gemini": ["gemini-2.5-flash"]}
BASE = dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.UTC)
# The model group a record named, by its number (no draw from the generator, so every other field stays as it was):
# half the records name none (a plain model name), as most traffic does.
GROUPS = ("smart", None, "fast", None)


def random_record(rng: random.Random, i: int, *, start: dt.datetime = BASE, span_s: float = 3 * 86400) -> RequestRecord:
    provider = rng.choice([*PROVIDERS, None])
    model = rng.choice(PROVIDERS[provider]) if provider else None
    status = rng.choice([200] * 8 + [400, 429, 499, 502])
    created = start + dt.timedelta(seconds=rng.uniform(0, span_s))
    if rng.random() < 0.1:  # ties on created_at exercise the id tie-break of the cursor
        created = start + dt.timedelta(seconds=int(rng.uniform(0, span_s) / 600) * 600)
    prompt = rng.randint(0, 5000)
    completion = rng.randint(0, 2000)
    cost = None if rng.random() < 0.1 else Decimal(rng.randint(0, 10**9)).scaleb(-12)  # at most 12 decimals
    return RequestRecord(
        request_id=f"req-{i}",
        endpoint=rng.choice(["chat.completions", "embeddings"]),
        started=time.perf_counter(),
        created_at=created,
        client_key_id=rng.choice([None, 1, 2, 3]),
        requested_model=model,
        provider=provider,
        model=model,
        stream=rng.random() < 0.5,
        status=status,
        error_type=None if status < 400 else "upstream_error",
        error_message=None if status < 400 else "boom",
        finish_reason="stop" if status < 400 else None,
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=rng.randint(0, completion),
        cache_read_tokens=rng.randint(0, prompt),
        cache_write_tokens=0,
        cost_usd=cost,
        price_unknown=cost is None,
        latency_ms=rng.choice([0.4, rng.uniform(1, 100), rng.uniform(100, 30_000), 700_000.0]),
        ttfb_ms=rng.uniform(1, 500),
        model_group=GROUPS[i % len(GROUPS)],
    )


async def migrated_engine(database_url: str) -> AsyncEngine:
    url = async_database_url(database_url)
    await asyncio.to_thread(upgrade, url)
    return create_engine(url)


async def write(engine: AsyncEngine, records: list[RequestRecord], batch_size: int = 100) -> None:
    """Through the real writer (its sink, its transactions, its rollup upserts)."""
    recorder = Recorder(engine, max_queue=10**7, batch_size=batch_size, flush_interval=0.001)
    recorder.start()
    for record in records:
        recorder.submit(record)
    await recorder.close()
    assert recorder.failed_batches == 0


async def raw_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(request_log))).all())


def cost(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

"""Log-writer throughput with and without the rollup upserts (what maintaining the rollups costs).

`python -m bench.writer_rollups [--rows N] [--postgres URL] [--grouped SHARE]`

Queues N realistic records (bench/seed_dashboard.py's generator) into the real ``Recorder`` (batch 1000) and
times from the first submit until ``close()`` has committed the last row, on a fresh SQLite file (and a fresh
PostgreSQL database with ``--postgres``). "without" swaps the writer's rollup aggregator for one that yields no
deltas: the same code path minus the rollup work, i.e. the writer as it was before the rollups. ``--grouped`` gives
that share of the records a model group (3 groups), as routing's model groups would: the per-group rollups' cost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.seed_dashboard import rows as seed_rows
from gophergate.core.record import COLUMNS, RequestRecord
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.recorder import writer
from gophergate.recorder.rollup import Aggregator
from gophergate.settings import async_database_url


class _NoRollups(Aggregator):
    def add(self, rows: Any) -> None:
        return None

    def deltas(self) -> dict[str, list[tuple[Any, ...]]]:
        return {}


async def _run(url: str, records: list[RequestRecord], rollups: bool) -> float:
    url = async_database_url(url)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    writer.Aggregator = Aggregator if rollups else _NoRollups  # type: ignore[misc]
    recorder = writer.Recorder(engine, max_queue=10**7, batch_size=1000, flush_interval=0.01)
    recorder.start()
    began = time.perf_counter()
    for record in records:
        recorder.submit(record)
    await recorder.close()
    seconds = time.perf_counter() - began
    writer.Aggregator = Aggregator  # type: ignore[misc]
    await engine.dispose()
    return seconds


def _records(n: int, rate: float, grouped: float = 0.0) -> list[RequestRecord]:
    """n records as they would arrive at ``rate`` requests/s (what a batch covers decides how many rollup rows it
    touches: at high rates a 1000-row batch is about a second of traffic); ``grouped`` of them name a model group."""
    end = dt.datetime.now(dt.UTC)
    days = n / rate / 86400
    records = [
        RequestRecord(started=0.0, **dict(zip(COLUMNS, r, strict=True))) for r in seed_rows(n, end=end, days=days)
    ]
    rng = random.Random(3)
    for record in records:
        if grouped and rng.random() < grouped:
            record.model_group = rng.choice(("smart", "fast", "cheap"))
    return records


async def main_async(n: int, postgres: str | None, rounds: int, rate: float, grouped: float = 0.0) -> None:
    for engine_name in ("sqlite", "postgresql") if postgres else ("sqlite",):
        for rollups in (False, True, False, True)[: 2 * rounds]:
            if engine_name == "sqlite":
                directory = Path(tempfile.mkdtemp(prefix="gg-writer-"))
                seconds = await _run(f"sqlite:///{directory / 'w.db'}", _records(n, rate, grouped), rollups)
            else:
                import asyncpg

                assert postgres is not None
                name = "gg_wbench_" + uuid.uuid4().hex[:8]
                conn = await asyncpg.connect(postgres)
                await conn.execute(f'CREATE DATABASE "{name}"')
                await conn.close()
                try:
                    url = postgres.rsplit("/", 1)[0] + "/" + name
                    seconds = await _run(url, _records(n, rate, grouped), rollups)
                finally:
                    conn = await asyncpg.connect(postgres)
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    await conn.close()
            label = "with rollups   " if rollups else "without rollups"
            share = f", {grouped:.0%} grouped" if grouped else ""
            print(
                f"{engine_name:<10} {label} {n:,} rows, {rate:,.0f} req/s{share}: {seconds:.2f} s = "
                f"{n / seconds:,.0f} rows/s",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writer_rollups", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, choices=(1, 2))
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s the records' timestamps follow")
    parser.add_argument("--postgres", help="also on PostgreSQL (a temporary database on this server)")
    parser.add_argument("--grouped", type=float, default=0.0, help="share of the records that name a model group")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.rows, args.postgres, args.rounds, args.rate, args.grouped))


if __name__ == "__main__":
    main()

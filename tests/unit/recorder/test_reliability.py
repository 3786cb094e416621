"""One bad row never stops the request log; outages are waited out, not dead-lettered; spill
files are replayed exactly once. Real SQLite and PostgreSQL (faults are triggers and locks inside them)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.record import RequestRecord
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import request_log, rollup_minute
from gophergate.recorder.normalize import TRUNCATED
from gophergate.recorder.writer import DEAD_LETTER_FILE, Recorder, is_outage, replay_spilled
from gophergate.settings import async_database_url
from tests.log_faults import accept_sql, execute, record, reject_sql, write_spill


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(upgrade, async_database_url(database_url))
    eng = create_engine(async_database_url(database_url))
    yield eng
    await eng.dispose()


async def _ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(request_log.c.request_id).order_by(request_log.c.id))).scalars())


async def _rollup_requests(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.coalesce(func.sum(rollup_minute.c.requests), 0)))).scalar_one())


def _dead(directory: Path) -> list[dict[str, Any]]:
    path = directory / DEAD_LETTER_FILE
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def _until(check: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_poison_row_is_dead_lettered_and_rows_behind_it_are_written(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await asyncio.to_thread(execute, database_url, reject_sql(database_url, "NEW.request_id = 'poison'"))
    recorder = Recorder(engine, max_queue=10_000, batch_size=100, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    ids = [f"r{i}" for i in range(300)]
    ids[137] = "poison"
    for request_id in ids:
        recorder.submit(record(request_id))
    await _until(lambda: recorder.written == 299 and recorder.dead_lettered == 1)
    assert recorder.not_ready is None  # a dead-lettered row is progress, not a stuck writer
    recorder.submit(record("after"))
    await recorder.close()
    assert await _ids(engine) == [i for i in ids if i != "poison"] + ["after"]
    assert await _rollup_requests(engine) == 300  # the rollups match the rows: the poison row is in neither
    (dead,) = _dead(tmp_path)
    assert dead["row"]["request_id"] == "poison" and "refused by test trigger" in dead["error"] and dead["at"]
    assert recorder.lost == 0


async def test_database_refusing_every_insert_is_an_outage_not_dead_letters(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await asyncio.to_thread(execute, database_url, reject_sql(database_url, "1 = 1"))
    recorder = Recorder(engine, max_queue=10_000, batch_size=100, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    for i in range(50):
        recorder.submit(record(f"r{i}"))
    await _until(lambda: recorder.consecutive_failures >= 5, within=8)
    assert recorder.dead_lettered == 0 and recorder.written == 0
    assert recorder.not_ready is not None and "failed" in recorder.not_ready  # /readyz says so
    await asyncio.to_thread(execute, database_url, accept_sql(database_url))
    await _until(lambda: recorder.written == 50, within=8)
    assert recorder.not_ready is None
    await recorder.close()
    assert len(await _ids(engine)) == 50 and not _dead(tmp_path)


async def test_overlong_finish_reason_is_truncated_on_postgres(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """The same on SQLite (which does not enforce lengths, but the row must be the same on both)."""
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    recorder.submit(
        record(
            "long",
            model="m" * 1000,
            requested_model="q" * 301,
            error_type="e" * 2000,
            finish_reason="f" * 51,
            price_source="p\x00s",
            provider="\ud800bad",
        )
    )
    await recorder.close()
    async with engine.connect() as conn:
        row = (await conn.execute(select(request_log))).one()
    assert len(row.model) == 300 and row.model.endswith(TRUNCATED) and row.model.startswith("m" * 200)
    assert len(row.requested_model) == 300 and row.requested_model.endswith(TRUNCATED)
    assert len(row.error_type) == 100 and len(row.finish_reason) == 50 and row.finish_reason.endswith(TRUNCATED)
    assert row.price_source == "ps" and row.provider == "?bad"
    assert recorder.dead_lettered == 0


async def test_values_of_the_wrong_type_are_coerced_to_their_column(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    odd: Any = record("odd")
    odd.finish_reason = 5
    odd.error_type = {"nested": ["x"]}
    odd.prompt_tokens = "12"
    odd.completion_tokens = 2**40
    odd.reasoning_tokens = None
    odd.latency_ms = float("nan")
    odd.ttfb_ms = float("inf")
    odd.cost_usd = float("nan")
    odd.stream = "yes"
    odd.status = "200"
    odd.attempt, odd.final, odd.model_group = "3", None, 7
    recorder.submit(odd)
    await recorder.close()
    async with engine.connect() as conn:
        row = (await conn.execute(select(request_log))).one()
    assert (row.finish_reason, row.error_type, row.prompt_tokens, row.completion_tokens) == ("5", None, 12, 2**31 - 1)
    assert (row.reasoning_tokens, row.latency_ms, row.ttfb_ms, row.cost_usd) == (0, 0.0, None, None)
    assert row.stream is True and row.status == 200
    assert (row.attempt, row.final, row.model_group) == (3, True, "7")  # a missing final is the column's default
    assert recorder.dead_lettered == 0


async def test_writer_is_restarted_after_an_unexpected_exception(
    database_url: str, engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    real = recorder._write
    calls = 0

    async def flaky(batch: list[RequestRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the writer")
        await real(batch)

    recorder._write = flaky  # type: ignore[method-assign]
    recorder.start()
    recorder.submit(record("first"))
    await _until(lambda: recorder.restarts == 1)
    recorder.submit(record("second"))
    await _until(lambda: recorder.written == 1)
    assert recorder.running
    await recorder.close()
    assert await _ids(engine) == ["second"]
    assert [d["row"]["request_id"] for d in _dead(tmp_path)] == ["first"]  # kept, not dropped
    failure = [r for r in caplog.records if "writer failed; restarting" in r.getMessage()]
    assert failure and failure[0].levelno == logging.ERROR and failure[0].exc_info is not None


async def test_replay_skips_rows_already_logged(database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    created = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    records = [
        record(f"s{i}", created_at=created + dt.timedelta(seconds=i), cost_usd=Decimal("0.25")) for i in range(10)
    ]
    recorder = Recorder(engine, max_queue=100, batch_size=100, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    for rec in records[:4]:
        recorder.submit(rec)
    await recorder.close()
    write_spill(tmp_path / "request_log_spill_20261201T120000_1.jsonl", records)
    assert await replay_spilled(engine, tmp_path, fallback=False) == 6
    write_spill(tmp_path / "request_log_spill_20261201T120001_1.jsonl", records)  # the same rows again
    assert await replay_spilled(engine, tmp_path, fallback=False) == 0
    assert sorted(await _ids(engine)) == sorted(r.request_id for r in records)
    assert await _rollup_requests(engine) == 10  # rollups not added twice either
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT SUM(cost_pusd) FROM rollup_minute"))).scalar_one()
    assert int(total) == 10 * 25 * 10**10  # 0.25 USD = 25e10 pico-USD, ten rows
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("request_log_spill_*")))


async def test_replay_tells_attempts_of_one_request_apart_and_reads_old_lines_as_final_first_attempts(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """Routing's rows of one request share its id (and may share a creation time): replay keys on the attempt
    too. A line spilled before 0009 has no attempt, final or model_group: it is attempt 1, final."""
    created = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    tries = [
        record("routed", created_at=created, attempt=1, final=False, error_class="rate_limited", model_group="fast"),
        record("routed", created_at=created, attempt=2, final=True, model_group="fast"),
    ]
    recorder = Recorder(engine, max_queue=100, batch_size=100, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    recorder.submit(tries[0])
    await recorder.close()
    path = tmp_path / "request_log_spill_20261201T120000_1.jsonl"
    write_spill(path, tries)
    first = orjson.loads(path.read_bytes().splitlines()[0])
    old = {k: v for k, v in first.items() if k not in ("attempt", "final", "model_group")}
    old["request_id"] = "before-0009"
    with path.open("ab") as fh:
        fh.write(orjson.dumps(old) + b"\n")
    assert await replay_spilled(engine, tmp_path, fallback=False) == 2  # the second attempt and the old line
    async with engine.connect() as conn:
        rows = (await conn.execute(select(request_log).order_by(request_log.c.request_id, request_log.c.attempt))).all()
    assert [(r.request_id, r.attempt, r.final, r.model_group) for r in rows] == [
        ("before-0009", 1, True, None),
        ("routed", 1, False, "fast"),
        ("routed", 2, True, "fast"),
    ]
    assert await _rollup_requests(engine) == 2  # the routed request once, the old row once


async def test_replay_dead_letters_bad_lines_and_refused_rows_and_never_raises(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await asyncio.to_thread(execute, database_url, reject_sql(database_url, "NEW.request_id = 'poison'"))
    path = tmp_path / "request_log_spill_20261201T120000_1.jsonl"
    write_spill(path, [record("a"), record("poison"), record("b", finish_reason="f" * 400)])
    with path.open("ab") as fh:
        fh.write(b"{not json\n[1, 2]\n")
    write_spill(path, [record("c")])
    assert await replay_spilled(engine, tmp_path, fallback=False) == 3
    assert sorted(await _ids(engine)) == ["a", "b", "c"]
    dead = _dead(tmp_path)
    assert [d["row"]["request_id"] for d in dead if isinstance(d["row"], dict)] == ["poison"]
    assert [d["row"] for d in dead if isinstance(d["row"], str)] == ["{not json", "[1, 2]"]
    assert not path.exists()


async def test_claim_left_by_a_dead_process_is_reclaimed_and_a_live_one_is_not(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    dead_pid = gone.pid
    write_spill(tmp_path / f"request_log_spill_20261201T120000_1.jsonl.claimed-{dead_pid}", [record("orphan")])
    live = tmp_path / f"request_log_spill_20261201T120001_1.jsonl.claimed-{os.getppid()}"
    write_spill(live, [record("busy")])
    assert await replay_spilled(engine, tmp_path, fallback=False) == 1
    assert await _ids(engine) == ["orphan"] and live.exists()


async def test_a_lost_connection_is_an_outage_and_a_bad_value_is_not() -> None:
    import sqlite3

    assert is_outage(sqlite3.OperationalError("database is locked"))
    assert is_outage(ConnectionResetError())
    assert not is_outage(sqlite3.IntegrityError("NOT NULL constraint failed"))
    assert not is_outage(ValueError("bad"))


async def test_unreachable_postgres_is_an_outage_rows_wait_and_spill(tmp_path: Path) -> None:
    from tests.support import free_port

    engine = create_engine(async_database_url(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"))
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    for i in range(5):
        recorder.submit(record(f"down{i}"))
    await _until(lambda: recorder.consecutive_failures >= 3)
    assert recorder.not_ready is not None and recorder.dead_lettered == 0
    await recorder.close(drain_timeout=0.3)
    (spill,) = await asyncio.to_thread(lambda: list(tmp_path.glob("request_log_spill_*.jsonl")))
    assert [orjson.loads(line)["request_id"] for line in spill.read_bytes().splitlines()] == [
        f"down{i}" for i in range(5)
    ]
    assert recorder.dead_lettered == 0 and recorder.lost == 0 and recorder.spilled == 5
    await engine.dispose()

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from gophergate.core.record import RequestRecord
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import request_log
from gophergate.recorder.writer import Recorder
from gophergate.settings import async_database_url


def _record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", endpoint="chat.completions", started=time.perf_counter(), status=200)


async def _count(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(request_log))).scalar_one())


async def test_full_batch_is_written_without_waiting_for_the_interval(database_url: str) -> None:
    await asyncio.to_thread(upgrade, async_database_url(database_url))
    engine = create_engine(async_database_url(database_url))
    recorder = Recorder(engine, max_queue=1000, batch_size=100, flush_interval=60.0)
    recorder.start()
    for i in range(250):
        recorder.submit(_record(i))
    await asyncio.sleep(0.3)
    assert await _count(engine) == 250  # a full batch is written at once, and what queued behind it too
    recorder.submit(_record(999))
    await asyncio.sleep(0.3)
    assert await _count(engine) == 250  # a lone row waits for the (60 s) interval ...
    await recorder.close()
    assert await _count(engine) == 251 and recorder.depth == 0  # ... or for shutdown
    await engine.dispose()


async def test_failed_batch_is_retried_not_lost(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = async_database_url(f"sqlite:///{tmp_path / 'late.db'}")
    engine = create_engine(url)
    recorder = Recorder(engine, max_queue=1000, batch_size=10, flush_interval=0.01)
    recorder.start()
    recorder.submit(_record(1))
    await asyncio.sleep(0.3)  # no table yet: the insert fails and is retried
    assert recorder.failed_batches >= 1
    await asyncio.to_thread(upgrade, url)
    await recorder.close()
    assert await _count(engine) == 1
    await engine.dispose()


def test_saturation_flag_bounds_the_backlog() -> None:
    recorder = Recorder(None, max_queue=3, batch_size=100, flush_interval=1)  # type: ignore[arg-type]
    for i in range(3):
        assert not recorder.saturated
        recorder.submit(_record(i))
    assert recorder.saturated


async def test_rows_unwritable_at_shutdown_are_spilled_and_replayed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gophergate.recorder.writer import replay_spilled

    url = async_database_url(f"sqlite:///{tmp_path / 'down.db'}")
    engine = create_engine(url)
    recorder = Recorder(engine, max_queue=1000, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    recorder.start()
    for i in range(3):
        recorder.submit(_record(i))
    await recorder.close(drain_timeout=0.2)  # no table: every insert fails until the deadline
    spilled = list(tmp_path.glob("request_log_spill_*.jsonl"))
    assert len(spilled) == 1
    await asyncio.to_thread(upgrade, url)
    assert await replay_spilled(engine, tmp_path) == 3
    assert await _count(engine) == 3 and not list(tmp_path.glob("request_log_spill_*.jsonl"))
    await engine.dispose()


def test_record_columns_are_the_request_log_table() -> None:
    from gophergate.core.record import COLUMNS

    assert set(COLUMNS) == {c.name for c in request_log.c} - {"id"}
    record = _record(1)
    assert dict(zip(COLUMNS, record.values(), strict=True))["request_id"] == "r1"


class _SpySink:
    """Records the ``background`` flag of every batch the recorder hands over."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def encode(self, row):  # type: ignore[no-untyped-def]
        return row

    def encode_deltas(self, deltas):  # type: ignore[no-untyped-def]
        return deltas

    async def insert(self, rows, deltas=None, *, background=False):  # type: ignore[no-untyped-def]
        self.calls.append((len(rows), background))

    async def close(self) -> None:
        return None


async def test_partial_batches_are_background_work_and_full_batches_and_the_drain_are_not() -> None:
    recorder = Recorder(None, max_queue=1000, batch_size=10, flush_interval=0.01)  # type: ignore[arg-type]
    spy = _SpySink()
    recorder._sink = spy  # what start() does, with the spy for the real sink
    recorder._task = asyncio.create_task(recorder._run())
    recorder.submit(_record(1))
    await asyncio.sleep(0.1)
    for i in range(25):
        recorder.submit(_record(100 + i))
    await asyncio.sleep(0.1)
    recorder.submit(_record(2))
    await recorder.close()  # no yield in between: this row is written by the drain
    assert spy.calls[0] == (1, True)  # a lone row: low priority
    assert (10, False) in spy.calls  # full batches: normal priority
    assert spy.calls[-1] == (1, False)  # the drain at shutdown: normal priority
    assert sum(n for n, _ in spy.calls) == 27


async def test_sqlite_background_batches_run_on_a_nice_19_thread_and_others_at_normal_priority(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading

    from gophergate.recorder.sink import SqliteSink

    url = f"sqlite:///{tmp_path / 'nice.db'}"
    await asyncio.to_thread(upgrade, async_database_url(url))
    sink = SqliteSink(url)
    seen: dict[bool, int] = {}
    real_insert = sink._insert

    def spying_insert(rows, deltas, polite):  # type: ignore[no-untyped-def]
        seen[threading.current_thread().name.startswith("gophergate-sqlite-writer-bg")] = os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()
        )
        real_insert(rows, deltas, polite)

    sink._insert = spying_insert  # type: ignore[method-assign]
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    record = _record(1)
    await sink.insert([sink.encode(record.values())], None, background=True)
    record = _record(2)
    await sink.insert([sink.encode(record.values())], None, background=False)
    await sink.close()
    assert seen == {True: 19, False: base}
    engine = create_engine(async_database_url(url))
    assert await _count(engine) == 2  # both threads wrote through the one connection
    await engine.dispose()


async def test_a_backlog_past_the_background_bound_is_written_at_normal_priority_even_below_a_full_batch() -> None:
    from gophergate.recorder.writer import BACKGROUND_MAX_ROWS

    recorder = Recorder(None, max_queue=10_000, batch_size=1000, flush_interval=0.01)  # type: ignore[arg-type]
    spy = _SpySink()
    recorder._sink = spy
    for i in range(BACKGROUND_MAX_ROWS + 10):  # queued before the writer starts: one batch, below batch_size
        recorder.submit(_record(i))
    recorder._task = asyncio.create_task(recorder._run())
    await asyncio.sleep(0.1)
    recorder.submit(_record(99_999))
    await asyncio.sleep(0.1)
    await recorder.close()
    assert spy.calls == [(BACKGROUND_MAX_ROWS + 10, False), (1, True)]


async def test_the_background_sqlite_thread_yields_the_core_every_few_rows_and_a_backlog_seldom(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from gophergate.recorder import sink as sink_module
    from gophergate.recorder.sink import SqliteSink

    url = f"sqlite:///{tmp_path / 'yields.db'}"
    await asyncio.to_thread(upgrade, async_database_url(url))
    yields = []
    monkeypatch.setattr(sink_module, "_yield_cpu", lambda: yields.append(1))
    sink = SqliteSink(url)
    await sink.insert([sink.encode(_record(i).values()) for i in range(40)], None, background=True)
    assert len(yields) >= 40 // sink_module.YIELD_EVERY_ROWS
    yields.clear()
    # A backlog yields far less often: every 4 rows let it grow without end on a saturated loop.
    await sink.insert([sink.encode(_record(100 + i).values()) for i in range(200)], None, background=False)
    assert 1 <= len(yields) <= 200 // sink_module.BACKLOG_YIELD_EVERY_ROWS + 1
    await sink.close()
    engine = create_engine(async_database_url(url))
    assert await _count(engine) == 240
    await engine.dispose()


async def test_multi_row_sqlite_inserts_store_every_value_in_order_within_the_parameter_limit(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Rows go in as multi-row INSERTs; a slice longer than SQLite's bound-parameter limit allows is split."""
    import contextlib
    import datetime as dt
    import sqlite3
    from decimal import Decimal

    from gophergate.core.record import COLUMNS
    from gophergate.recorder import sink as sink_module
    from gophergate.recorder.sink import SqliteSink

    url = f"sqlite:///{tmp_path / 'multi.db'}"
    await asyncio.to_thread(upgrade, async_database_url(url))
    connect = sqlite3.connect

    def small_limit(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 2 * len(COLUMNS) + 1)  # room for 2 rows a statement
        return conn

    monkeypatch.setattr(sink_module.sqlite3, "connect", small_limit)
    records = []
    for i in range(11):
        record = _record(i)
        record.created_at = dt.datetime(2026, 11, 26, 12, 0, i, 1234, tzinfo=dt.UTC)
        record.stream = i % 2 == 0
        record.prompt_tokens, record.completion_tokens = i, 2 * i
        record.cost_usd = Decimal("0.000000123") * i if i % 3 else None
        record.latency_ms = 0.25 * i
        record.error_message = None if i % 4 else f"upstream said 'no' ({i})"
        records.append(record)
    sink = SqliteSink(url)
    rows = [sink.encode(r.values()) for r in records]
    await sink.insert(rows[:5], None, background=True)
    await sink.insert(rows[5:], None, background=False)
    await sink.close()
    with contextlib.closing(connect(tmp_path / "multi.db")) as conn:
        stored = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM request_log ORDER BY id").fetchall()
    assert stored == rows
    assert stored[4][COLUMNS.index("cost_usd")] == "0.000000492"
    assert stored[4][COLUMNS.index("created_at")] == "2026-11-26 12:00:04.001234"

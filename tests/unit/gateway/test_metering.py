"""The metering step: it finishes a record (tokens, estimate, cost) and hands the recorder a finished one; a
malformed or failing estimate marks only its record; a cost priced for the client is not computed again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.calls import ChatCall, Meter
from gophergate.core.record import RequestRecord
from gophergate.core.usage import Usage
from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.db.tables import request_log
from gophergate.gateway.metering import Metering, finalize
from gophergate.pricing.catalog import PriceTable, Rates
from gophergate.pricing.cost import Cost, ModelPrice
from gophergate.recorder.writer import Recorder
from gophergate.settings import async_database_url
from tests.log_faults import record


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(upgrade, async_database_url(database_url))
    eng = create_engine(async_database_url(database_url))
    yield eng
    await eng.dispose()


async def _until(check: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _reached() -> Meter:
    """A meter of a call that reached its upstream and reported no usage."""
    meter = Meter()
    meter.start_upstream()
    return meter


async def test_estimate_is_applied_before_the_record_reaches_the_recorder(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    recorder = Recorder(engine, max_queue=1000, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    metering = Metering(recorder)
    recorder.start()
    metering.start()
    rec = record("est")
    meter = _reached()
    meter.output_text.append("Hello")
    meter.output_events.append(b'data: {"choices":[{"index":0,"delta":{"content":" there, friend"}}]}\n\n')
    metering.finish(rec, meter, [{"role": "user", "content": "hello world"}])
    assert recorder.depth == 0 and metering.depth == 1  # the messages wait in the estimating stage, not the log
    await _until(lambda: recorder.written == 1)
    await metering.close()
    await recorder.close()
    async with engine.connect() as conn:
        row = (await conn.execute(select(request_log))).one()
    assert row.estimated and row.prompt_tokens > 2 and row.completion_tokens >= 3


async def test_metering_survives_malformed_stream_chunk_in_estimate(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    metering = Metering(recorder)
    recorder.start()
    metering.start()
    meter = _reached()
    meter.output_text.append("partial")
    meter.output_events.extend(
        [b'data: {"choices": 5}\n\n', b'data: {"choices": [{"delta": {"tool_calls": 3, "content": "ok"}}]}\n\n']
    )
    metering.finish(record("bad-chunk"), meter, [{"role": "user", "content": "hello", "tool_calls": 7}])
    metering.finish(record("behind"), None, None)
    await _until(lambda: recorder.written == 2)
    await metering.close()
    await recorder.close()
    async with engine.connect() as conn:
        rows = {r.request_id: r for r in (await conn.execute(select(request_log))).all()}
    assert rows["bad-chunk"].estimated and rows["bad-chunk"].completion_tokens > 0  # "partial" + "ok" counted
    assert metering.restarts == 0 and metering.estimate_failures == 0


async def test_failing_estimate_marks_only_its_record_and_never_stops_the_log(
    database_url: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(engine, max_queue=100, batch_size=10, flush_interval=0.01, spill_dir=tmp_path)
    metering = Metering(recorder)

    async def broken(messages: Any, produced: str) -> tuple[int, int]:
        raise RuntimeError("estimator exploded")

    monkeypatch.setattr(metering._estimator, "estimate", broken)
    recorder.start()
    metering.start()
    for i in range(3):
        meter = _reached()
        meter.output_text.append("x")
        metering.finish(record(f"e{i}"), meter, [{"role": "user", "content": "hi"}])
    metering.finish(record("plain"), None, None)
    await _until(lambda: recorder.written == 4)
    assert metering.running and metering.estimate_failures == 3
    await metering.close()
    await recorder.close()
    async with engine.connect() as conn:
        estimated = {r.request_id: r.estimated for r in (await conn.execute(select(request_log))).all()}
    assert estimated == {"e0": True, "e1": True, "e2": True, "plain": False}


def test_saturation_counts_records_being_estimated() -> None:
    recorder = Recorder(None, max_queue=2, batch_size=100, flush_interval=1)  # type: ignore[arg-type]
    metering = Metering(recorder)
    metering.finish(RequestRecord("a", "chat.completions", 0.0), None, None)
    assert not metering.saturated
    meter = _reached()
    meter.output_text.append("x")
    metering.finish(RequestRecord("b", "chat.completions", 0.0), meter, [])
    assert recorder.depth == 1 and metering.depth == 2 and metering.saturated


def _price(counter: list[int]) -> ModelPrice:
    class Counting(ModelPrice):
        def cost(self, usage: Usage, now: Any = None) -> tuple[Cost, str]:
            counter.append(1)
            return ModelPrice.cost(self, usage, now)

    table = PriceTable(Rates(input=Decimal("1"), output=Decimal("2")))
    return Counting(table, "test")


def test_cost_priced_for_the_client_is_not_computed_again() -> None:
    calls: list[int] = []
    price = _price(calls)
    call = ChatCall({}, "m", False, False, "r", pricer=price.cost)
    usage = Usage(prompt=1000, completion=500)
    call.cost_json(usage)  # what a provider does for usage.cost in its answer
    rec = RequestRecord("r", "chat.completions", 0.0)
    rec.price = price
    meter = _reached()
    meter.usage = usage
    assert finalize(rec, meter, None, call.priced) is None
    assert len(calls) == 1
    assert rec.cost_usd == call.cost == Decimal("0.002")
    assert (rec.cost_input_usd, rec.cost_output_usd, rec.price_source) == (Decimal("0.001"), Decimal("0.001"), "test")


def test_cost_is_recomputed_when_the_logged_tokens_differ_from_the_priced_ones() -> None:
    calls: list[int] = []
    price = _price(calls)
    call = ChatCall({}, "m", False, False, "r", pricer=price.cost)
    call.cost_json(Usage(prompt=10, completion=5))
    rec = RequestRecord("r", "chat.completions", 0.0)
    rec.price = price
    meter = _reached()
    meter.usage = Usage(prompt=1000, completion=500)
    finalize(rec, meter, None, call.priced)
    assert len(calls) == 2 and rec.cost_usd == Decimal("0.002")

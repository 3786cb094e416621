"""Request log pages: filters, newest first, keyset cursors that never skip or repeat, index use on both engines."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.admin.queries.common import usd
from gophergate.admin.queries.requests import (
    ATTEMPT_FIELDS,
    EXTRA_FIELDS,
    ITEM_FIELDS,
    InvalidCursor,
    RequestFilter,
    decode_cursor,
    encode_cursor,
    get_request,
    get_request_by_request_id,
    list_query,
    list_requests,
)
from gophergate.db.tables import client_keys
from tests.dashboard_data import BASE, aware, migrated_engine, random_record, raw_rows, write


async def _all_pages(engine: AsyncEngine, flt: RequestFilter, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = await list_requests(engine, flt, limit=limit, cursor=cursor)
        assert len(page) <= limit
        items.extend(page)
        if cursor is None:
            return items
        assert len(page) == limit  # only a full page has a next page


def _matches(row: Any, flt: RequestFilter) -> bool:
    created = aware(row.created_at)
    return (
        (flt.start is None or created >= flt.start)
        and (flt.end is None or created < flt.end)
        and (flt.client_key_id is None or row.client_key_id == flt.client_key_id)
        and (flt.provider is None or row.provider == flt.provider)
        and (flt.model is None or row.model == flt.model)
        and (flt.status is None or row.status == flt.status)
        and (not flt.errors_only or row.status >= 400)
        and (not flt.final_only or row.final)
    )


FILTERS = [
    RequestFilter(),
    RequestFilter(provider="openai"),
    RequestFilter(model="gpt-4o-mini", client_key_id=2),
    RequestFilter(status=429),
    RequestFilter(errors_only=True),
    RequestFilter(start=BASE + dt.timedelta(hours=5), end=BASE + dt.timedelta(hours=30)),
    RequestFilter(start=BASE + dt.timedelta(hours=1), errors_only=True, provider="anthropic"),
    RequestFilter(provider="nobody"),
    RequestFilter(final_only=True),
    RequestFilter(final_only=True, errors_only=True, provider="openai"),
]


async def test_pages_are_newest_first_filtered_and_never_skip_or_repeat(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(11)
    records = [random_record(rng, i) for i in range(700)]
    for record in records[::5]:  # a failed attempt routing retried (its final row is not needed here)
        record.attempt, record.final = 1, False
    await write(engine, records)
    raw = await raw_rows(engine)
    for flt in FILTERS:
        expected = sorted((r for r in raw if _matches(r, flt)), key=lambda r: (aware(r.created_at), r.id), reverse=True)
        for limit in (1, 7, 50, 500):
            if limit == 1 and len(expected) > 150:
                continue
            items = await _all_pages(engine, flt, limit)
            assert [i["id"] for i in items] == [r.id for r in expected], (flt, limit)
    await engine.dispose()


async def test_rows_sharing_a_timestamp_are_split_across_pages_by_id(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(12)
    records = [random_record(rng, i) for i in range(30)]
    for record in records:
        record.created_at = BASE
    await write(engine, records, batch_size=7)
    items = await _all_pages(engine, RequestFilter(), 4)
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 30
    await engine.dispose()


async def test_rows_written_while_paging_do_not_disturb_older_pages(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    rng = random.Random(13)
    await write(engine, [random_record(rng, i) for i in range(100)])
    first, cursor = await list_requests(engine, RequestFilter(), limit=10)
    assert cursor is not None
    await write(engine, [random_record(rng, 999, start=BASE + dt.timedelta(days=10), span_s=1)])
    page, end = await list_requests(engine, RequestFilter(), limit=100, cursor=cursor)
    assert end is None
    all_ids = sorted(r.id for r in await raw_rows(engine))
    newest = all_ids.pop()  # the row written after the first page: on no later page
    assert sorted(i["id"] for i in first + page) == all_ids and newest not in {i["id"] for i in first + page}
    await engine.dispose()


async def test_items_have_the_contract_fields_and_detail_has_every_column(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    record = random_record(random.Random(14), 1)
    record.cost_usd, record.price_unknown, record.status = None, True, 200
    await write(engine, [record])
    (item,), _ = await list_requests(engine, RequestFilter())
    assert tuple(item) == (*ITEM_FIELDS, *EXTRA_FIELDS)
    assert item["created_at"].endswith("Z") and item["cost_usd"] is None and item["price_unknown"] is True
    assert isinstance(item["stream"], bool)
    detail = await get_request(engine, item["id"])
    assert detail is not None and {"error_message", "upstream_ms", "cost_input_usd", "price_source"} <= set(detail)
    assert await get_request(engine, item["id"] + 1) is None
    await engine.dispose()


async def _add_keys(engine: AsyncEngine, names: dict[int, str], revoked: frozenset[int] = frozenset()) -> None:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for key_id, name in names.items():
            values = {"key_hash": f"{key_id:064x}", "key_hint": "sk-gg-...", "created_at": now, "updated_at": now}
            revoked_at = now if key_id in revoked else None
            await conn.execute(insert(client_keys).values(id=key_id, name=name, revoked_at=revoked_at, **values))


async def test_items_and_details_carry_the_key_name_and_a_deleted_key_has_none(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    await _add_keys(engine, {1: "alpha", 2: "beta (revoked)"}, revoked=frozenset({2}))
    rng = random.Random(17)
    records = [random_record(rng, i) for i in range(40)]
    for i, record in enumerate(records):
        record.client_key_id = [1, 2, 3, None][i % 4]  # key 3 has no row: deleted
    await write(engine, records)
    items, _ = await list_requests(engine, RequestFilter(), limit=500)
    expected = {1: "alpha", 2: "beta (revoked)", 3: None, None: None}
    assert len(items) == 40
    assert all(item["client_key_name"] == expected[item["client_key_id"]] for item in items)
    for item in items[:4]:
        detail = await get_request(engine, item["id"])
        assert detail is not None and detail["client_key_name"] == expected[item["client_key_id"]]
    await engine.dispose()


async def test_a_row_is_found_by_its_request_id_and_a_repeated_id_gives_the_newest(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    await _add_keys(engine, {1: "alpha"})
    rng = random.Random(18)
    older, newer, other = (random_record(rng, i) for i in range(3))
    older.request_id = newer.request_id = "client-chosen-id"
    older.created_at, newer.created_at = BASE, BASE + dt.timedelta(seconds=5)
    newer.client_key_id, newer.status = 1, 201
    other.request_id = "req_0193abc"
    await write(engine, [newer, other, older])
    found = await get_request_by_request_id(engine, "client-chosen-id")
    assert found is not None and found["status"] == 201 and found["client_key_name"] == "alpha"
    assert found["created_at"] == "2026-11-20T23:30:05Z"
    by_id = await get_request(engine, found["id"])
    assert by_id == found
    single = await get_request_by_request_id(engine, "req_0193abc")
    assert single is not None and single["request_id"] == "req_0193abc"
    assert await get_request_by_request_id(engine, "req_unknown") is None
    await engine.dispose()


def _tries(request_id: str, start: dt.datetime, outcomes: list[tuple[str, int]], step_s: float = 1.0) -> list[Any]:
    """The rows routing writes for one request: an attempt per (provider, status), the last one final."""
    rows = []
    for n, (provider, status) in enumerate(outcomes, start=1):
        record = random_record(random.Random(n), n)
        record.request_id, record.created_at = request_id, start + dt.timedelta(seconds=step_s * (n - 1))
        record.provider, record.model, record.status = provider, f"{provider}-model", status
        record.error_class = "rate_limited" if status == 429 else "server_error" if status >= 500 else None
        record.attempt, record.final, record.model_group = n, n == len(outcomes), "fast"
        rows.append(record)
    return rows


async def test_a_detail_lists_every_attempt_of_its_request_by_attempt(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    routed = _tries("req_routed", BASE, [("openai", 429), ("anthropic", 503), ("gemini", 200)])
    alone = _tries("req_alone", BASE, [("openai", 200)])
    # Routing may give every attempt the request's time: the attempt numbers still order them.
    same_time = _tries("req_same_time", BASE, [("openai", 502), ("gemini", 200)], step_s=0)
    await write(engine, [*routed[::-1], *alone, *same_time[::-1]])  # written in any order
    final = await get_request_by_request_id(engine, "req_routed")
    assert final is not None and final["final"] is True and final["attempt"] == 3 and final["model_group"] == "fast"
    attempts = final["attempts"]
    assert [(a["attempt"], a["final"], a["provider"], a["status"], a["error_class"]) for a in attempts] == [
        (1, False, "openai", 429, "rate_limited"),
        (2, False, "anthropic", 503, "server_error"),
        (3, True, "gemini", 200, None),
    ]
    assert all(tuple(a) == ATTEMPT_FIELDS for a in attempts)
    assert attempts[2]["id"] == final["id"] and attempts[0]["created_at"] == "2026-11-20T23:30:00Z"
    assert attempts[1]["cost_usd"] == usd(routed[1].cost_usd) and isinstance(attempts[1]["latency_ms"], float)
    first = await get_request(engine, attempts[0]["id"])  # a failed attempt's own row: the same attempts
    assert first is not None and first["final"] is False and first["attempts"] == attempts
    single = await get_request_by_request_id(engine, "req_alone")
    assert single is not None and [(a["attempt"], a["final"]) for a in single["attempts"]] == [(1, True)]
    tied = await get_request_by_request_id(engine, "req_same_time")
    assert tied is not None and tied["status"] == 200
    assert [(a["attempt"], a["provider"]) for a in tied["attempts"]] == [(1, "openai"), (2, "gemini")]
    page, _ = await list_requests(engine, RequestFilter(final_only=True))
    assert sorted(i["request_id"] for i in page) == ["req_alone", "req_routed", "req_same_time"]
    await engine.dispose()


async def test_requests_sharing_a_client_chosen_id_each_list_only_their_own_attempts(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    earlier = _tries("client-chosen-id", BASE, [("openai", 429), ("gemini", 200)])
    middle = _tries("client-chosen-id", BASE + dt.timedelta(minutes=1), [("openai", 200)])
    later = _tries(
        "client-chosen-id", BASE + dt.timedelta(minutes=2), [("openai", 502), ("anthropic", 503), ("x", 502)]
    )
    await write(engine, [*earlier, *middle, *later])
    newest = await get_request_by_request_id(engine, "client-chosen-id")
    assert newest is not None and newest["provider"] == "x"
    assert [a["provider"] for a in newest["attempts"]] == ["openai", "anthropic", "x"]
    rows = {r.provider + str(r.created_at.minute): r.id for r in await raw_rows(engine)}
    for row_id, providers in (
        (rows["openai30"], ["openai", "gemini"]),
        (rows["gemini30"], ["openai", "gemini"]),
        (rows["openai31"], ["openai"]),
        (rows["anthropic32"], ["openai", "anthropic", "x"]),
    ):
        detail = await get_request(engine, row_id)
        assert detail is not None and [a["provider"] for a in detail["attempts"]] == providers, row_id
    await engine.dispose()


async def test_costs_are_exact_decimal_strings(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    record = random_record(random.Random(15), 1)
    record.cost_usd = Decimal("0.000000123456789012")
    await write(engine, [record])
    (item,), _ = await list_requests(engine, RequestFilter())
    assert item["cost_usd"] == "0.000000123456789012"
    await engine.dispose()


def test_cursor_round_trips_and_garbage_is_rejected() -> None:
    t = dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert decode_cursor(encode_cursor(t, 42)) == (t, 42)
    assert decode_cursor(encode_cursor(t.replace(tzinfo=None), 42)) == (t, 42)
    for bad in ("", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(t, 1)[:-3]):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)


INDEX_FOR = [
    (RequestFilter(), "ix_request_log_created_at"),
    (RequestFilter(provider="openai"), "ix_request_log_provider_created"),
    (RequestFilter(model="gpt-4o"), "ix_request_log_model_created"),
    (RequestFilter(client_key_id=1), "ix_request_log_client_created"),
    (RequestFilter(status=502), "ix_request_log_status_created"),
    (RequestFilter(errors_only=True), "ix_request_log_errors_created"),
]


@pytest.mark.parametrize(("flt", "index"), INDEX_FOR, ids=[i for _, i in INDEX_FOR])
async def test_each_filter_pages_through_its_index_without_sorting_on_sqlite(
    tmp_path: Path, flt: RequestFilter, index: str
) -> None:
    # SQLite only: PostgreSQL's planner costs plans by table size (on a test-sized table it sorts a bitmap scan);
    # its plans at 1,000,000 rows are printed by `make bench-dashboard`.
    database_url = f"sqlite:///{tmp_path / 'plans.db'}"
    engine = await migrated_engine(database_url)
    rng = random.Random(16)
    records = [random_record(rng, i) for i in range(1000)]
    for record in records:  # a realistic error rate (3%): the planner's statistics depend on it
        record.status = 502 if rng.random() < 0.03 else 200
    await write(engine, records, batch_size=1000)
    cursor = encode_cursor(BASE + dt.timedelta(days=1), 100)
    compiled = list_query(flt, limit=50, cursor=cursor).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True}
    )
    async with engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE")
        plan = "\n".join(str(r[-1]) for r in (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")).all())
    assert index in plan and "TEMP B-TREE" not in plan, plan
    await engine.dispose()

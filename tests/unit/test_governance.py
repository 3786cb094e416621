"""The governance layer's own parts: rules from a key and its team, OpenAI's reset format, the output limit a request
asks for, the prompt's texts and their count, and the ledger's spend read from the rollups."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from gophergate.db.tables import client_keys, teams
from gophergate.gateway.governance import (
    PromptCounter,
    build_rules,
    ledger_spend,
    log_minute,
    prompt_texts,
    requested_output,
    reset_text,
)
from gophergate.limits import Limits, Scope
from gophergate.security.client_keys import Policy, Principal
from tests.dashboard_data import BASE, migrated_engine, random_record, write


def test_a_key_without_limits_team_or_expiry_has_no_rules() -> None:
    assert build_rules(Principal(1, "k"), None, None) is None


def test_rules_take_the_smaller_cap_both_pattern_lists_and_count_only_when_a_counted_limit_applies() -> None:
    key = Policy(allowed_models=("gpt-4o*",), max_tokens_cap=500)
    team = Policy(allowed_models=("openai/*",), max_tokens_cap=300, rpm=10)
    rules = build_rules(Principal(1, "k", team_id=7, policy=key), team, "research")
    assert rules is not None
    assert rules.cap == 300 and len(rules.patterns) == 2 and rules.counted and not rules.needs_tokens
    assert rules.team == Scope("team", "7", Limits(rpm=10))
    only_rules = build_rules(Principal(2, "k", policy=Policy(allowed_models=("x",))), None, None)
    assert only_rules is not None and not only_rules.counted and only_rules.team is None
    budget = build_rules(Principal(3, "k", policy=Policy(budget_usd=Decimal(5), budget_period="day")), None, None)
    assert budget is not None and budget.needs_tokens and budget.budget
    assert budget.key.limits.budget_period == "day"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0ms"), (0.3501, "351ms"), (1.0, "1s"), (12.3456, "12.346s"), (60.0, "1m0s"), (3725.0, "1h2m5s")],
)
def test_resets_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert reset_text(seconds) == text


def test_the_output_limit_asked_for_is_the_largest_integer_field_set() -> None:
    fields = ("max_tokens", "max_completion_tokens")
    assert requested_output({}, fields) is None
    assert requested_output({"max_tokens": 5}, fields) == ("max_tokens", 5)
    assert requested_output({"max_tokens": 5, "max_completion_tokens": 9}, fields) == ("max_completion_tokens", 9)
    assert requested_output({"max_tokens": True}, fields) is None


def test_prompt_texts_include_tools_and_skip_inline_media() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}]},
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "description": "find things"}}]
    texts = prompt_texts(messages, {"tools": tools})
    assert "look" in texts and '{"a":1}' in texts and "find things" in texts
    assert not any("base64" in t for t in texts)


async def test_before_the_tokenizer_loads_a_prompt_counts_as_its_utf8_length_an_upper_bound() -> None:
    counter = PromptCounter()
    text = "héllo wörld " * 10
    bound = counter._count([text])
    assert bound == len(text.encode()) + PromptCounter.PER_TEXT
    counter.warm()
    assert counter._loading is not None
    await counter._loading
    exact = await counter.count([text])
    assert 0 < exact < bound


async def test_ledger_spend_is_the_exact_sum_of_the_rows_in_the_period_from_the_rollups(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        async with engine.begin() as conn:
            await conn.execute(insert(teams).values(id=1, name="t", created_at=now, updated_at=now))
            for key_id, team in ((1, 1), (2, 1), (3, None)):
                await conn.execute(
                    insert(client_keys).values(
                        id=key_id,
                        name=f"k{key_id}",
                        key_hash=f"{key_id:064d}",
                        key_hint="x",
                        created_at=now,
                        updated_at=now,
                        team_id=team,
                    )
                )
        rng = random.Random(17)
        records = [random_record(rng, i) for i in range(600)]
        await write(engine, records)
        # A period starting at midnight in India (UTC+5:30): a half hour, so minute and hour rollups both count.
        start = dt.datetime(BASE.year, BASE.month, BASE.day, tzinfo=ZoneInfo("Asia/Kolkata")) + dt.timedelta(days=1)

        def expected(keys: set[int], since: dt.datetime | None) -> Decimal:
            return sum(
                (
                    r.cost_usd
                    for r in records
                    if r.client_key_id in keys and r.cost_usd is not None and (since is None or r.created_at >= since)
                ),
                Decimal(0),
            )

        assert await ledger_spend(engine, Scope("key", "1"), start) == expected({1}, start)
        assert await ledger_spend(engine, Scope("key", "3"), None) == expected({3}, None)
        assert await ledger_spend(engine, Scope("team", "1"), start) == expected({1, 2}, start)
        assert expected({1, 2}, start) > 0
    finally:
        await engine.dispose()


async def test_the_log_minute_counts_a_retried_request_once_and_the_tokens_of_every_attempt(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        rng = random.Random(19)
        records = [random_record(rng, i, start=now - dt.timedelta(seconds=30), span_s=20) for i in range(5)]
        for record in records:
            record.client_key_id, record.prompt_tokens, record.completion_tokens = 1, 100, 10
        for n, record in enumerate(records[:3], start=1):  # one request, tried three times
            record.request_id, record.attempt, record.final = "req-routed", n, n == 3
        records[3].client_key_id = 2  # another key's
        records[4].created_at = now - dt.timedelta(minutes=5)  # before this minute
        await write(engine, records)
        doc = {"scope": "key", "id": 1, "requests": {"limit": 10}, "tokens": {"limit": None}}
        got = await log_minute(engine, doc)
        assert got["requests"] == {"limit": 10, "used": 1, "remaining": 9}
        assert got["tokens"] == {"limit": None, "used": 330, "remaining": None}
    finally:
        await engine.dispose()

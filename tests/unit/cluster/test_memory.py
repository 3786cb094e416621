"""Conversation memories shared through a real Redis (``GOPHERGATE_TEST_REDIS_URL``): exact round trips of every
store's values, write-through with the store's TTL, recall that asks only for what is missing (and nothing when
all is here), a full queue that drops without blocking, a Redis that does not answer or is not there (the request
goes on with what the process has), stored responses found on another instance at once; and a Gemini tool turn
on a second "instance" that gets the real thought signature back from a strict fake."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from gophergate.cluster.memory import MAX_RESPONSE_BYTES, SharedMemories
from gophergate.core.calls import ChatCall, Meter
from gophergate.core.errors import GatewayError
from gophergate.core.ttl_store import TTLStore
from gophergate.gateway.stored_responses import ResponseStore, decode, encode
from gophergate.limits.redis import connect
from gophergate.providers.aiohttp_client import AiohttpClient
from gophergate.providers.anthropic.thinking_store import ThinkingStore
from gophergate.providers.gemini.provider import GeminiProvider
from gophergate.providers.gemini.signatures import CallMemory, SignatureStore
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.recall import tool_call_ids
from tests.dashboard_data import migrated_engine
from tests.fakes.gemini import FakeGemini
from tests.support import free_port, redis_url


def shared(prefix: str, **kwargs: Any) -> SharedMemories:
    """One process's shared layer, as the runtime builds it (its own client and pool)."""
    return SharedMemories(connect(redis_url(required=True), max_connections=16), prefix, **kwargs)


@pytest.fixture
async def pair(redis_prefix: str) -> AsyncIterator[tuple[SharedMemories, SharedMemories]]:
    """Two processes (instances) on one Redis, writers running."""
    a, b = shared(redis_prefix), shared(redis_prefix)
    a.start()
    b.start()
    yield a, b
    await a.close()
    await b.close()


async def settled(*memories: SharedMemories) -> None:
    async with asyncio.timeout(5):
        for one in memories:
            await one.settled()


def _stores() -> list[tuple[str, Any, Any]]:
    blocks = (
        {
            "type": "thinking",
            "thinking": 'Line one\nline two: ünïcode \u2028 🚀 "quoted"',
            "signature": "EqQBCkYIBxgC==",
        },
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"},
    )
    return [
        ("reasoning", ReasoningStore(), 'Reasoning with ünïcode, \u2028, emoji 🚀 and "quotes"\n' * 50),
        ("thinking", ThinkingStore(), blocks),
        ("signature", SignatureStore(), CallMemory("c2lnbmF0dXJlLWJ5dGVz/+==", "fc_0a1b2c")),
        ("signature-none", SignatureStore(), CallMemory(None, None)),
        ("signature-no-id", SignatureStore(), CallMemory("c2ln", None)),
    ]


@pytest.mark.parametrize(("name", "store", "value"), _stores(), ids=[s[0] for s in _stores()])
def test_encode_decode_round_trip_exactly(name: str, store: TTLStore[Any], value: Any) -> None:
    back = store.decode(store.encode(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, tuple):
        assert [list(block) for block in back] == [list(block) for block in value]  # key order too


@pytest.mark.parametrize("data", [b"1", b'"text"', b"[1, 2]", b"{}", b"not json", b"[null]"])
def test_decode_refuses_what_the_store_did_not_encode(data: bytes) -> None:
    for store in (ThinkingStore(), SignatureStore()):
        with pytest.raises(ValueError):
            store.decode(data)
    if data != b'"text"':
        with pytest.raises(ValueError):
            ReasoningStore().decode(data)


async def test_values_set_on_one_process_are_recalled_exactly_on_another(
    pair: tuple[SharedMemories, SharedMemories],
) -> None:
    a, b = pair
    for name, _, value in _stores():
        here, there = type(_store_of(name))(), type(_store_of(name))()
        a.attach(here, name)
        b.attach(there, name)
        here.set_many(["call_1", "call_2"], value)
        await settled(a)
        assert there.get("call_1") is None
        await there.recall(["call_2"])
        got = there.get("call_2")
        assert got == value and type(got) is type(value), name
    assert b.loaded == 5 and b.missed == 0 and a.written == 10


def _store_of(name: str) -> TTLStore[Any]:
    return next(store for n, store, _ in _stores() if n == name)


async def test_every_set_is_written_through_with_the_stores_ttl(
    pair: tuple[SharedMemories, SharedMemories], redis_client: Redis, redis_prefix: str
) -> None:
    a, _ = pair
    store = ThinkingStore(ttl_seconds=3600)
    a.attach(store, "thinking:claude")
    blocks = ({"type": "thinking", "thinking": "t", "signature": "s"},)
    store.put(["toolu_1", "toolu_2"], list(blocks))
    assert store.get("toolu_1") == blocks  # here at once; Redis a moment later, off the request path
    await settled(a)
    for key in ("toolu_1", "toolu_2"):
        name = f"{redis_prefix}thinking:claude:{key}"
        assert await redis_client.get(name) == orjson.dumps(blocks)
        assert 3_590_000 < await redis_client.pttl(name) <= 3_600_000
    signatures = SignatureStore(ttl_seconds=48 * 3600)
    a.attach(signatures, "signatures:gemini")
    signatures.put("call_x", CallMemory("sig", "fc_1"))
    await settled(a)
    assert await redis_client.get(f"{redis_prefix}signatures:gemini:call_x") == b'["sig","fc_1"]'
    assert await redis_client.pttl(f"{redis_prefix}signatures:gemini:call_x") > 47 * 3600 * 1000
    assert a.status()["written"] == 3 and a.status()["connected"] is True


async def test_recall_asks_only_for_missing_ids_and_nothing_when_all_are_here(
    pair: tuple[SharedMemories, SharedMemories],
) -> None:
    a, b = pair
    here, there = ReasoningStore(), ReasoningStore()
    a.attach(here, "reasoning")
    b.attach(there, "reasoning")
    asked: list[list[str]] = []
    fetch = b.fetch

    async def counting(names: list[str]) -> list[bytes | None] | None:
        asked.append([n.rsplit(":", 1)[-1] for n in names])
        return await fetch(names)

    b.fetch = counting  # type: ignore[method-assign]
    here.put(["call_a", "call_b"], "thought A")
    there.put(["call_local"], "thought here")
    await settled(a, b)
    await there.recall([])
    await there.recall(["call_local", "call_local"])
    assert asked == []  # nothing missing: no round trip
    await there.recall(["call_local", "call_a", "call_b", "call_unknown", "call_a"])
    assert asked == [["call_a", "call_b", "call_unknown"]]  # one MGET, the missing ids once each
    assert (there.get("call_a"), there.get("call_b"), there.get("call_unknown")) == ("thought A", "thought A", None)
    assert (b.loaded, b.missed) == (2, 1)
    await there.recall(["call_a", "call_b"])
    assert len(asked) == 1  # fetched once, local since
    unshared = ReasoningStore()
    unshared.put(["x"], "y")
    await unshared.recall(["x", "z"])  # without Redis: nothing to do
    assert unshared.shared is None


async def test_a_value_fetched_is_not_written_back(pair: tuple[SharedMemories, SharedMemories]) -> None:
    a, b = pair
    here, there = ReasoningStore(), ReasoningStore()
    a.attach(here, "reasoning")
    b.attach(there, "reasoning")
    here.put(["call_1"], "r")
    await settled(a)
    await there.recall(["call_1"])
    await settled(b)
    assert b.written == 0 and there.get("call_1") == "r"


async def test_full_queue_drops_and_counts_without_blocking(redis_prefix: str, redis_client: Redis) -> None:
    memories = shared(redis_prefix, max_queue=3, max_queue_bytes=1 << 20)
    store = ReasoningStore()
    memories.attach(store, "reasoning")
    started = time.perf_counter()
    for i in range(5):
        store.put([f"call_{i}"], f"reasoning {i}")
    store.put(["call_big"], "x" * (2 << 20))  # more bytes than the queue may hold
    assert time.perf_counter() - started < 0.1  # never waits on Redis (generous: a loaded CI machine)
    assert all(store.get(f"call_{i}") == f"reasoning {i}" for i in range(5))  # every value still serves here
    assert store.get("call_big") is not None
    status = memories.status()
    assert (status["queued"], status["dropped"]) == (3, 3), status
    memories.start()
    await settled(memories)
    assert memories.written == 3
    assert await redis_client.get(f"{redis_prefix}reasoning:call_0") == b'"reasoning 0"'
    assert await redis_client.get(f"{redis_prefix}reasoning:call_3") is None
    await memories.close()


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A server that accepts connections and never answers (a Redis behind a dead network path)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()


async def test_a_redis_that_does_not_answer_costs_one_request_the_timeout(
    silent_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    memories = SharedMemories(connect(silent_redis, max_connections=4), "gg:test:silent:", fetch_timeout=0.25)
    store = SignatureStore()
    memories.attach(store, "signatures:gemini")
    store.put("call_here", CallMemory("sig", None))
    caplog.set_level(logging.WARNING, logger="gophergate.cluster.memory")
    started = time.perf_counter()
    await store.recall(["call_here", "call_elsewhere"])
    first = time.perf_counter() - started
    assert 0.2 <= first < 1.0
    assert store.get("call_here") == CallMemory("sig", None) and store.get("call_elsewhere") is None
    started = time.perf_counter()
    await store.recall(["call_elsewhere"])  # Redis failed a moment ago: not asked again yet
    assert time.perf_counter() - started < 0.05
    status = memories.status()
    assert (status["timeouts"], status["skipped"], status["connected"]) == (1, 1, False)
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1  # at most once a minute
    await memories.close(drain_seconds=0)


async def test_a_closed_port_leaves_each_process_with_its_own_memories() -> None:
    memories = SharedMemories(connect(f"redis://127.0.0.1:{free_port()}/0"), "gg:test:closed:")
    memories.start()
    store = ThinkingStore()
    memories.attach(store, "thinking:claude")
    blocks = [{"type": "thinking", "thinking": "t", "signature": "s"}]
    store.put(["toolu_1"], blocks)
    await settled(memories)
    await store.recall(["toolu_1", "toolu_2"])  # toolu_1 is here: not asked
    await store.recall(["toolu_2"])
    assert store.get("toolu_1") == tuple(blocks) and store.get("toolu_2") is None
    status = memories.status()
    assert status["connected"] is False and status["errors"] >= 1 and status["lost"] == 1
    await memories.close()


# -- stored responses -------------------------------------------------------------------------------------------


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two databases: what one instance's store finds in the other's can only have come through Redis."""
    yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"


def test_stored_response_codec_round_trips() -> None:
    from gophergate.gateway.stored_responses import StoredResponse

    stored = StoredResponse(7, '{"id":"resp_gg1"}', '[{"role":"user","content":"hé"}]', dt.datetime.now(dt.UTC))
    assert decode(encode(stored)) == stored
    with pytest.raises(ValueError):
        decode(b'[1, 2, "x"]')


async def test_a_stored_response_is_found_on_another_instance_at_once_and_deleted_everywhere(
    pair: tuple[SharedMemories, SharedMemories], databases: tuple[str, str], redis_client: Redis, redis_prefix: str
) -> None:
    a, b = pair
    engines = [await migrated_engine(url) for url in databases]
    first, second = ResponseStore(engines[0], 30, a), ResponseStore(engines[1], 30, b)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    first.keep(7, {"id": "resp_gg_1", "object": "response"}, messages)
    await settled(a)
    ttl = await redis_client.pttl(redis_prefix + "responses:resp_gg_1")
    assert 29 * 86400 * 1000 < ttl <= 30 * 86400 * 1000
    found = await second.load("resp_gg_1", 7)
    assert found is not None and found.messages == messages and found.response["id"] == "resp_gg_1"
    assert await second.load("resp_gg_1", 8) is None  # another key's
    assert b.responses_loaded == 1
    assert await second.delete("resp_gg_1", 7)
    assert await redis_client.get(redis_prefix + "responses:resp_gg_1") is None
    assert await ResponseStore(engines[1], 30, shared(redis_prefix)).load("resp_gg_1", 7) is None
    big = [{"role": "user", "content": "x" * MAX_RESPONSE_BYTES}]
    first.keep(7, {"id": "resp_gg_big", "object": "response"}, big)
    await settled(a)
    assert a.responses_too_large == 1 and await redis_client.get(redis_prefix + "responses:resp_gg_big") is None
    await first.close()
    await second.close()
    for engine in engines:
        await engine.dispose()


async def test_a_delete_right_after_the_keep_leaves_nothing_in_redis(
    pair: tuple[SharedMemories, SharedMemories], databases: tuple[str, str], redis_client: Redis, redis_prefix: str
) -> None:
    a, _ = pair
    engine = await migrated_engine(databases[0])
    store = ResponseStore(engine, 30, a)
    store.keep(7, {"id": "resp_gg_2", "object": "response"}, [])
    assert await store.delete("resp_gg_2", 7)  # the queued write is taken back, not written after the DEL
    await settled(a)
    assert await redis_client.get(redis_prefix + "responses:resp_gg_2") is None
    await store.close()
    await engine.dispose()


# -- what a provider recalls ------------------------------------------------------------------------------------


def test_tool_call_ids_are_those_of_the_assistant_messages() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "hi", "tool_calls": [{"id": "not_assistant"}]},
            {"role": "assistant", "content": "no calls"},
            {"role": "assistant", "tool_calls": [{"id": "call_1"}, {"id": ""}, "junk", {"id": 3}, {"id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            {"role": "assistant", "reasoning_content": "kept", "tool_calls": [{"id": "call_3"}]},
            "junk",
        ]
    }
    assert tool_call_ids(body) == ["call_1", "call_2", "call_3"]
    assert tool_call_ids(body, unless="reasoning_content") == ["call_1", "call_2"]
    assert tool_call_ids({"messages": "junk"}) == [] and tool_call_ids({}) == []


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        server.accepts_skip_signature = False  # only the real signature passes
        yield server


async def _turns(
    gemini: FakeGemini, one: GeminiProvider, two: GeminiProvider, writer: SharedMemories | None = None
) -> bytes:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "call tool"}]
    body = {"model": "gemini-3-flash", "messages": messages, "tools": TOOLS}
    first = orjson.loads(await one.chat(ChatCall(body, "gemini-3-flash", False, False, "r1"), Meter()))
    if writer is not None:  # the moment a client takes to run its tool: the first instance's write is done
        await settled(writer)
    message = first["choices"][0]["message"]
    calls = [{"id": c["id"], "type": "function", "function": c["function"]} for c in message["tool_calls"]]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
    ]
    return await two.chat(ChatCall(body, "gemini-3-flash", False, False, "r2"), Meter())


def _gemini(fake: FakeGemini, client: AiohttpClient, store: SignatureStore) -> GeminiProvider:
    return GeminiProvider(
        name="gemini", base_url=fake.base_url + "/v1beta", api_key=fake.api_key, client=client, store=store
    )


async def test_a_gemini_tool_turn_on_another_instance_replays_the_real_signature(
    gemini: FakeGemini, pair: tuple[SharedMemories, SharedMemories]
) -> None:
    a, b = pair
    client = AiohttpClient(max_connections=4, connect_timeout=5, read_timeout=10, total_timeout=20)
    try:
        here, there = SignatureStore(), SignatureStore()
        a.attach(here, "signatures:gemini")
        b.attach(there, "signatures:gemini")
        answer = orjson.loads(await _turns(gemini, _gemini(gemini, client, here), _gemini(gemini, client, there), a))
        assert answer["choices"][0]["message"]["content"] == 'tool result: get_weather={"result":"sunny"}'
        part = gemini.last_request.body["contents"][1]["parts"][0]
        assert part["thoughtSignature"] in gemini.issued_signatures and "id" in part["functionCall"]
        assert b.loaded == 1
        # The control: without the shared layer the second instance has no signature, and the strict fake refuses.
        with pytest.raises(GatewayError) as refused:
            await _turns(gemini, _gemini(gemini, client, SignatureStore()), _gemini(gemini, client, SignatureStore()))
        assert refused.value.status == 400 and "signature" in refused.value.message.lower()
    finally:
        await client.close()

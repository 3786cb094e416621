"""What the shared conversation memories cost on a tool-call turn's request path (bench/README.md, "Conversation
memories"): the provider's step from the client's body to the upstream payload (recall, then translation), for
a Gemini and a DeepSeek tool turn, without Redis, with Redis and the ids held by this process, and with Redis and
the ids fetched from it (one MGET on loopback).

    .venv/bin/python -m bench.memories [--redis redis://127.0.0.1:6379/0] [--turns 2000]

Numbers only: nothing is asserted. The Redis keys are written under a prefix of the run's own and deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from gophergate.cluster.memory import SharedMemories
from gophergate.core.calls import ChatCall
from gophergate.core.ttl_store import TTLStore
from gophergate.limits.redis import connect
from gophergate.providers.gemini.provider import GeminiProvider
from gophergate.providers.gemini.signatures import CallMemory, SignatureStore
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.provider import OpenAICompatProvider
from gophergate.providers.reasoning_store import ReasoningStore

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def tool_turn(calls: int) -> dict[str, Any]:
    """A conversation whose last assistant turn made ``calls`` tool calls, answered by the client."""
    ids = [f"call_{uuid.uuid4().hex[:24]}" for _ in range(calls)]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            for i in ids
        ],
    }
    results = [{"role": "tool", "tool_call_id": i, "content": "sunny"} for i in ids]
    return {"messages": [{"role": "user", "content": "weather in Paris?"}, assistant, *results], "tools": TOOLS}


def ids_of(body: dict[str, Any]) -> list[str]:
    return [c["id"] for c in body["messages"][1]["tool_calls"]]


async def timed(step: Callable[[Any], Awaitable[Any]], providers: list[Any], turns: int) -> tuple[float, ...]:
    """Median, p90 and p99 of ``step(provider)`` in microseconds, after 200 warm-up steps; with one provider per
    turn (``len(providers) > turns``) each step has a provider of its own, the warm-up those past ``turns``."""
    pick = (lambda i: providers[i]) if len(providers) > 1 else (lambda i: providers[0])
    for i in range(turns, turns + 200):
        await step(pick(i))
    samples = []
    for i in range(turns):
        started = time.perf_counter_ns()
        await step(pick(i))
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(turns * 0.9) - 1], samples[int(turns * 0.99) - 1]


async def run(url: str, turns: int, calls: int) -> None:
    prefix = f"gophergate-bench-memories-{uuid.uuid4().hex[:8]}:"
    writer, reader = (SharedMemories(connect(url, max_connections=8), prefix) for _ in range(2))
    writer.start()
    reader.start()
    body = tool_turn(calls)
    gemini_call = ChatCall(body, "gemini-3-flash", False, False, "bench")
    deepseek_call = ChatCall(body, "deepseek-flash", False, False, "bench")
    dialect = get_dialect("deepseek")

    def gemini(store: SignatureStore) -> GeminiProvider:
        return GeminiProvider(name="gemini", base_url="http://127.0.0.1:1", api_key="k", client=None, store=store)  # type: ignore[arg-type]

    def deepseek(store: ReasoningStore) -> OpenAICompatProvider:
        return OpenAICompatProvider(
            name="deepseek", base_url="http://127.0.0.1:1", api_key="k", dialect=dialect, client=None,  # type: ignore[arg-type]
            reasoning_store=store,
        )  # fmt: skip

    async def gemini_step(provider: GeminiProvider) -> Any:
        return await provider._payload(gemini_call)

    async def deepseek_step(provider: OpenAICompatProvider) -> Any:
        await provider._recall(deepseek_call)
        return provider_payload(provider, deepseek_call)

    def provider_payload(provider: OpenAICompatProvider, call: ChatCall) -> bytes:
        from gophergate.providers.openai_compat.dialects import to_upstream_request

        return to_upstream_request(call.body, call.model, False, provider.dialect, provider._store)

    print(f"one tool turn with {calls} tool call(s), {turns} turns per case; microseconds (median / p90 / p99)")
    for name, make_store, value, make_provider, step in (
        ("gemini", SignatureStore, CallMemory("c2lnbmF0dXJl" * 8, "fc_0a1b2c3d"), gemini, gemini_step),
        ("deepseek", ReasoningStore, "Let me think about the weather in Paris. " * 40, deepseek, deepseek_step),
    ):
        # The memory, as the instance that relayed the first turn left it (locally and in Redis).
        source: TTLStore[Any] = make_store()
        writer.attach(source, name)
        source.set_many(ids_of(body), value)
        await writer.settled()

        local: TTLStore[Any] = make_store()
        local.set_many(ids_of(body), value)
        no_redis = make_provider(local)
        base = await timed(step, [no_redis], turns)

        held: TTLStore[Any] = make_store()
        reader.attach(held, name)
        await held.recall(ids_of(body))
        here = make_provider(held)
        with_local = await timed(step, [here], turns)

        fresh: list[TTLStore[Any]] = []
        for _ in range(turns + 200):
            store: TTLStore[Any] = make_store()
            reader.attach(store, name)
            fresh.append(store)
        providers = [make_provider(store) for store in fresh]
        with_fetch = await timed(step, providers, turns)  # each provider's store starts empty: one MGET each
        assert all(store.get(ids_of(body)[0]) == value for store in fresh[:10])
        for label, (median, p90, p99) in (
            ("no Redis", base),
            ("Redis, ids here", with_local),
            ("Redis, ids fetched", with_fetch),
        ):
            print(f"  {name:9} {label:19} {median:8.1f} / {p90:8.1f} / {p99:8.1f}")
    status = reader.status()
    print(f"reader: loaded {status['loaded']}, missed {status['missed']}, timeouts {status['timeouts']}")
    names = [n async for n in writer.client.scan_iter(match=prefix + "*", count=1000)]
    if names:
        await writer.client.delete(*names)
    await writer.close()
    await reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default=os.environ.get("GOPHERGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=2, help="tool calls in the turn")
    args = parser.parse_args()
    asyncio.run(run(args.redis, args.turns, args.calls))


if __name__ == "__main__":
    main()

"""Chat completions through the real gateway, driven by the official openai SDK against strict fakes."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest

from tests.integration.conftest import Stack

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def test_sync_chat_returns_upstream_answer_and_usage(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    request_id = raw.headers["x-request-id"]
    overhead = float(raw.headers["x-gophergate-overhead-ms"])
    assert 0 <= overhead < 1000
    row = stack.gateway.row_for(request_id)
    assert row["status"] == 200
    assert (row["provider"], row["model"], row["requested_model"]) == ("openai", "gpt-4o-mini", "gpt-4o-mini")
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert row["completion_tokens"] == completion.usage.completion_tokens
    assert row["estimated"] is False or row["estimated"] == 0
    # gpt-4o-mini in the test registry: $0.15 / 1M input, $0.60 / 1M output (no cache hits here).
    expected = (
        Decimal("0.15") * completion.usage.prompt_tokens + Decimal("0.6") * completion.usage.completion_tokens
    ) / 10**6
    assert Decimal(str(row["cost_usd"])) == expected
    assert Decimal(raw.headers["x-gophergate-cost-usd"]) == expected
    assert Decimal(str(completion.usage.model_extra["cost"])) == expected
    assert row["latency_ms"] > 0 and row["upstream_ms"] is not None


async def test_async_client_chat(stack: Stack) -> None:
    client = stack.async_client()
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "async hello"}]
    )
    assert completion.choices[0].message.content == "echo: async hello"
    await client.close()


def test_stream_relays_content_and_ends_with_done(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert all(c.usage is None for c in chunks), "usage chunk leaked although the client did not ask for it"
    assert stack.fakes["openai"].requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_usage_chunk_only_when_client_asks(stack: Stack) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "usage please"}], "stream": True}
    headers = {"Authorization": f"Bearer {stack.gateway.key}"}
    with_usage = httpx.post(
        stack.gateway.base_url + "/chat/completions",
        json={**body, "stream_options": {"include_usage": True}},
        headers=headers,
    )
    without = httpx.post(stack.gateway.base_url + "/chat/completions", json=body, headers=headers)
    assert with_usage.text.rstrip().endswith("data: [DONE]")
    assert without.text.rstrip().endswith("data: [DONE]")
    events = [json.loads(line[6:]) for line in with_usage.text.splitlines() if line.startswith("data: {")]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0
    plain = [json.loads(line[6:]) for line in without.text.splitlines() if line.startswith("data: {")]
    assert all(e["choices"] for e in plain)
    row = stack.gateway.row_for(without.headers["x-request-id"])
    assert row["stream"] in (True, 1) and row["completion_tokens"] > 0 and row["estimated"] in (False, 0)
    assert row["ttfb_ms"] is not None


def test_stream_chunks_are_relayed_as_they_arrive(stack: Stack) -> None:
    # The fake waits 300 ms between chunks; a buffering gateway would deliver everything at the end.
    stream = stack.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "SLOW 300 a b c d"}], stream=True
    )
    arrivals: list[float] = []
    start = time.monotonic()
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] > 0.6, f"chunks arrived together: {arrivals}"


def test_tool_call_round_trip_keeps_ids_intact(stack: Stack) -> None:
    client = stack.client()
    messages: list[dict[str, object]] = [{"role": "user", "content": "please call tool for Paris"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert len(call.id) >= 40
    assert json.loads(call.function.arguments)  # type: ignore[union-attr]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'})
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    forwarded = stack.fakes["openai"].requests[-1].body["messages"]
    assert forwarded[-1]["tool_call_id"] == call.id


def test_streamed_tool_call_arrives_whole(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "call tool now"}],
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    ids, args, finish = [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.id:
                ids.append(delta.id)
            args += delta.function.arguments or "" if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1 and finish == "tool_calls"
    assert json.loads(args)


def test_image_content_parts_are_passed_through(stack: Stack) -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    completion = stack.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": parts}],  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content
    assert stack.fakes["openai"].requests[-1].body["messages"][0]["content"] == parts


def test_unknown_request_fields_are_forwarded_unchanged(stack: Stack) -> None:
    extra = {"some_future_field": {"nested": [1, 2, 3]}, "metadata": {"team": "a"}, "seed": 7}
    stack.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_body=extra
    )
    forwarded = stack.fakes["openai"].requests[-1].body
    for key, value in extra.items():
        assert forwarded[key] == value


def test_max_tokens_becomes_max_completion_tokens_for_openai_reasoning_models(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(
        model="o3-mini", messages=[{"role": "user", "content": "think"}], max_tokens=50
    )
    assert completion.choices[0].message.content
    forwarded = stack.fakes["openai"].requests[-1].body
    assert "max_tokens" not in forwarded and forwarded["max_completion_tokens"] == 50


def test_max_tokens_kept_for_non_reasoning_openai_models(stack: Stack) -> None:
    stack.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    assert stack.fakes["openai"].requests[-1].body["max_tokens"] == 50


def test_provider_prefix_routes_explicitly(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(
        model="ollama/llama3.2", messages=[{"role": "user", "content": "prefixed"}]
    )
    assert completion.choices[0].message.content == "echo: prefixed"
    assert stack.fakes["ollama"].requests[-1].body["model"] == "llama3.2"


@pytest.mark.parametrize("model", ["no-such-model", "claude-3-5-sonnet", "gemini-2.5-pro", "mistral/large"])
def test_unknown_or_unconfigured_model_is_404_model_not_found(stack: Stack, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        stack.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert info.value.status_code == 404

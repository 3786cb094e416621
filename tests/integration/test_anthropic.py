"""The native Anthropic provider through the real gateway, driven by the official openai SDK against a strict
fake Anthropic server (tests/fakes/anthropic.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.support import Gateway

UPSTREAM_KEY = "sk-ant-upstream-secret-0123456789"
SONNET = "claude-sonnet-4-5-20250929"  # manual thinking budgets
OPUS = "claude-opus-4-7"  # adaptive thinking + output_config.effort
HAIKU = "claude-3-5-haiku-20241022"  # no thinking
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    },
]


class AnthropicStack:
    def __init__(self, gateway: Gateway, fake: FakeAnthropic) -> None:
        self.gateway = gateway
        self.fake = fake

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0)

    def last_upstream(self) -> dict[str, Any]:
        body: dict[str, Any] = self.fake.message_requests[-1].body
        return body


@pytest.fixture(scope="module", params=["auto", "aiohttp"])
def anthropic_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnthropicStack]:
    """Every test runs with each upstream client setting, like the shared stack."""
    fake = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    gateway = Gateway(
        tmp_path_factory.mktemp("anthropic"),
        env={
            "ANTHROPIC_API_KEY": UPSTREAM_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "GOPHERGATE_UPSTREAM_CLIENT": request.param,
        },
    )
    try:
        gateway.start()
        yield AnthropicStack(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


def test_plain_chat_translates_both_ways_and_logs_canonical_usage(anthropic_stack: AnthropicStack) -> None:
    raw = anthropic_stack.client().chat.completions.with_raw_response.create(
        model=SONNET,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there CACHE 4 CACHEWRITE 3"},
        ],
        user="user-42",
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there CACHE 4 CACHEWRITE 3"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("msg_") and completion.object == "chat.completion"
    sent = anthropic_stack.fake.message_requests[-1]
    assert sent.headers["x-api-key"] == UPSTREAM_KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    # no max_tokens from the client: the registry's output limit for claude-sonnet-4-5 (tests/fixtures)
    assert sent.body["system"] == "Be brief." and sent.body["max_tokens"] == 64000
    assert sent.body["metadata"] == {"user_id": "user-42"}
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    # prompt = input_tokens + cache reads + cache writes (providers.md §10); the fake counts 10 + 2 + 6 words
    assert usage.prompt_tokens == 18 and usage.prompt_tokens_details.cache_write_tokens == 3
    row = anthropic_stack.gateway.row_for(raw.headers["x-request-id"])
    assert (row["status"], row["provider"], row["model"]) == (200, "anthropic", SONNET)
    assert (row["prompt_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (18, 4, 3)
    assert row["completion_tokens"] == usage.completion_tokens and row["finish_reason"] == "stop"
    # claude-sonnet-4-5 per 1M: input 3, cache read 0.3, cache write 3.75, output 15; 11 uncached input tokens
    expected = (
        3 * Decimal(11) + Decimal("0.3") * 4 + Decimal("3.75") * 3 + 15 * Decimal(usage.completion_tokens)
    ) / 10**6
    assert Decimal(str(row["cost_usd"])) == expected == Decimal(raw.headers["x-gophergate-cost-usd"])
    assert Decimal(str(row["cost_cache_write_usd"])) == Decimal("0.00001125")


def test_stream_with_include_usage_ends_with_a_usage_chunk(anthropic_stack: AnthropicStack) -> None:
    stream = anthropic_stack.client().chat.completions.create(
        model=SONNET,
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == 14 and last.usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert anthropic_stack.last_upstream()["stream"] is True


def test_stream_without_include_usage_sends_no_usage_chunk_but_logs_usage(anthropic_stack: AnthropicStack) -> None:
    body = {"model": SONNET, "messages": [{"role": "user", "content": "plain stream"}], "stream": True}
    resp = httpx.post(
        anthropic_stack.gateway.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {anthropic_stack.gateway.key}"},
    )
    assert resp.text.rstrip().endswith("data: [DONE]")
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    assert all(e["choices"] for e in events)
    row = anthropic_stack.gateway.row_for(resp.headers["x-request-id"])
    assert row["prompt_tokens"] == 12 and row["completion_tokens"] == 3 and not row["estimated"]


@pytest.mark.parametrize("stream_first", [False, True], ids=["buffered", "streamed"])
def test_two_step_parallel_tool_calls_with_thinking_reinserted(
    anthropic_stack: AnthropicStack, stream_first: bool
) -> None:
    client = anthropic_stack.client()
    messages: list[Any] = [{"role": "user", "content": "weather and time? call all tools"}]
    kwargs: dict[str, Any] = {"model": SONNET, "tools": TOOLS, "reasoning_effort": "low"}
    if stream_first:
        calls: dict[int, dict[str, Any]] = {}
        reasoning = ""
        finish = None
        for chunk in client.chat.completions.create(messages=messages, stream=True, **kwargs):
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            finish = chunk.choices[0].finish_reason or finish
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = call.id or entry["id"]
                if call.function and call.function.name:
                    entry["name"] = call.function.name
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
        assert finish == "tool_calls" and sorted(calls) == [0, 1]
        tool_calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in (calls[0], calls[1])
        ]
        assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    else:
        completion = client.chat.completions.create(messages=messages, **kwargs)
        message = completion.choices[0].message
        assert completion.choices[0].finish_reason == "tool_calls"
        reasoning = getattr(message, "reasoning_content", "")
        tool_calls = [c.model_dump() for c in message.tool_calls or ()]
        # What the SDK user echoes back: no reasoning, no thinking signature (the OpenAI wire cannot carry it).
        assistant = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    assert reasoning.startswith("Thinking about:")
    issued = anthropic_stack.fake.issued_tool_use_ids
    assert [c["id"] for c in tool_calls] == issued[-2:], "tool-call ids must pass byte for byte"
    assert json.loads(tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    first = anthropic_stack.last_upstream()
    assert first["thinking"]["type"] == "enabled" and first["thinking"]["budget_tokens"] == 2048

    messages += [
        assistant,
        {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "noon"},
    ]
    final = client.chat.completions.create(messages=messages, **kwargs)
    assert final.choices[0].message.content == "tool result: sunny | noon"
    second = anthropic_stack.last_upstream()
    turn = second["messages"][1]
    assert [b["type"] for b in turn["content"]] == ["thinking", "tool_use", "tool_use"]
    assert [b["type"] for b in second["messages"][2]["content"]] == ["tool_result", "tool_result"]
    assert second["thinking"]["type"] == "enabled", "thinking stays on because the thinking block came back"


def test_tool_loop_with_unknown_thinking_turns_thinking_off_instead_of_failing(
    anthropic_stack: AnthropicStack,
) -> None:
    messages = [
        {"role": "user", "content": "what is the weather"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_from_elsewhere",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_from_elsewhere", "content": "rain"},
    ]
    completion = anthropic_stack.client().chat.completions.create(
        model=SONNET, messages=messages, tools=TOOLS, reasoning_effort="high"
    )
    assert completion.choices[0].message.content == "tool result: rain"
    assert "thinking" not in anthropic_stack.last_upstream()


def test_image_input_as_data_uri_and_url(anthropic_stack: AnthropicStack) -> None:
    completion = anthropic_stack.client().chat.completions.create(
        model=SONNET,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "echo: what is this [images: 2, documents: 0]"
    blocks = anthropic_stack.last_upstream()["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG.split(",", 1)[1]}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_json_schema_output_uses_structured_outputs(anthropic_stack: AnthropicStack) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    completion = anthropic_stack.client().chat.completions.create(
        model=OPUS,
        messages=[{"role": "user", "content": "weather as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Paris", "temp": 1}
    assert anthropic_stack.last_upstream()["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_reasoning_effort_on_an_adaptive_model_returns_reasoning_content(anthropic_stack: AnthropicStack) -> None:
    raw = anthropic_stack.client().chat.completions.with_raw_response.create(
        model=OPUS,
        messages=[{"role": "user", "content": "think hard"}],
        reasoning_effort="high",
        temperature=0.2,
        max_completion_tokens=2000,
    )
    completion = raw.parse()
    message = completion.choices[0].message
    assert getattr(message, "reasoning_content", None) == "Thinking about: think hard"
    assert message.content == "echo: think hard"
    sent = anthropic_stack.last_upstream()
    assert sent["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert sent["output_config"] == {"effort": "high"} and sent["max_tokens"] == 2000
    assert "temperature" not in sent, "sampling fields are dropped when thinking is on"
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4
    row = anthropic_stack.gateway.row_for(raw.headers["x-request-id"])
    assert row["reasoning_tokens"] == 4


def test_temperature_and_top_p_together_keep_only_temperature(anthropic_stack: AnthropicStack) -> None:
    completion = anthropic_stack.client().chat.completions.create(
        model=SONNET, messages=[{"role": "user", "content": "sample"}], temperature=0.5, top_p=0.9, stop="zzz"
    )
    assert completion.choices[0].message.content == "echo: sample"
    sent = anthropic_stack.last_upstream()
    assert sent["temperature"] == 0.5 and "top_p" not in sent and sent["stop_sequences"] == ["zzz"]


def test_overloaded_529_becomes_503_with_retry_after(anthropic_stack: AnthropicStack) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        anthropic_stack.client().chat.completions.create(
            model=SONNET, messages=[{"role": "user", "content": "FAIL 529"}]
        )
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "7"
    assert "Overloaded" in str(info.value)


def test_rate_limit_429_passes_retry_after(anthropic_stack: AnthropicStack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        anthropic_stack.client().chat.completions.create(
            model=SONNET, messages=[{"role": "user", "content": "FAIL 429"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    row = anthropic_stack.gateway.row_for(info.value.response.headers["x-request-id"])
    assert row["status"] == 429


def test_streamed_529_is_an_error_before_the_stream_starts(anthropic_stack: AnthropicStack) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        anthropic_stack.client().chat.completions.create(
            model=SONNET, messages=[{"role": "user", "content": "FAIL 529"}], stream=True
        )
    assert info.value.status_code == 503


def test_error_event_mid_stream_raises_in_the_sdk_and_is_logged(anthropic_stack: AnthropicStack) -> None:
    stream = anthropic_stack.client().chat.completions.with_raw_response.create(
        model=SONNET, messages=[{"role": "user", "content": "MIDERROR please"}], stream=True
    )
    request_id = stream.headers["x-request-id"]
    got: list[str] = []
    with pytest.raises(openai.APIError, match="overloaded_error"):
        for chunk in stream.parse():
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "echo: "
    row = anthropic_stack.gateway.row_for(request_id)
    assert row["error_type"] == "upstream_stream_error" and "overloaded_error" in row["error_message"]
    assert row["status"] == 502 and row["finish_reason"] is None
    assert row["error_class"] == "overloaded"


def test_cut_stream_ends_with_an_error_not_a_hang(anthropic_stack: AnthropicStack) -> None:
    stream = anthropic_stack.client().chat.completions.with_raw_response.create(
        model=SONNET, messages=[{"role": "user", "content": "CUT now"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream.parse())
    row = anthropic_stack.gateway.row_for(stream.headers["x-request-id"])
    assert row["error_type"] == "upstream_stream_error" and row["estimated"]


def test_invalid_tool_arguments_are_a_400_naming_the_field(anthropic_stack: AnthropicStack) -> None:
    before = len(anthropic_stack.fake.message_requests)
    messages = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{oops"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        anthropic_stack.client().chat.completions.create(model=SONNET, messages=messages, tools=TOOLS)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"
    assert len(anthropic_stack.fake.message_requests) == before, "nothing reaches the upstream"


def test_n_greater_than_one_is_rejected(anthropic_stack: AnthropicStack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        anthropic_stack.client().chat.completions.create(model=SONNET, messages=[{"role": "user", "content": "x"}], n=2)
    assert info.value.param == "n"


def test_models_are_listed_across_pages(anthropic_stack: AnthropicStack) -> None:
    ids = {m.id for m in anthropic_stack.client().models.list()}
    assert {SONNET, OPUS, HAIKU} <= ids


def test_bad_gateway_key_is_a_502_that_does_not_echo_the_key(tmp_path: Path) -> None:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as fake:
        wrong = "sk-ant-wrong-key-abcdef123456"
        gateway = Gateway(tmp_path, env={"ANTHROPIC_API_KEY": wrong, "ANTHROPIC_BASE_URL": fake.base_url})
        try:
            gateway.start()
            client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model=SONNET, messages=[{"role": "user", "content": "hi"}])
            assert info.value.status_code == 502
            text = info.value.response.text
            assert "ANTHROPIC_API_KEY" in text and wrong not in text and "wrong-key" not in text
            row = gateway.row_for(info.value.response.headers["x-request-id"])
            assert row["error_type"] == "upstream_auth_failed" and wrong not in row["error_message"]
        finally:
            gateway.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
def test_post_is_not_resent_after_connection_closes_without_answer(
    anthropic_stack: AnthropicStack, stream: bool
) -> None:
    """Issue 14, defect 4: the upstream had the request whole; a resend could run (and bill) it twice."""
    client = anthropic_stack.client()
    client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "warm"}])  # a pooled connection
    before = len(anthropic_stack.fake.message_requests)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "HANGUP"}], stream=stream)
    assert len(anthropic_stack.fake.message_requests) == before + 1
    assert info.value.status_code == 502
    row = anthropic_stack.gateway.row_for(info.value.response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_unavailable"


def _stream_text(anthropic_stack: AnthropicStack, content: str) -> httpx.Response:
    return httpx.post(
        anthropic_stack.gateway.base_url + "/chat/completions",
        json={"model": HAIKU, "stream": True, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {anthropic_stack.gateway.key}"},
        timeout=60,
    )


def test_malformed_sse_event_reaches_client_as_error_event(anthropic_stack: AnthropicStack) -> None:
    response = _stream_text(anthropic_stack, "BADEVENT here")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["error"]["code"] == "upstream_stream_error" and "malformed" in events[-1]["error"]["message"]
    assert "[DONE]" not in response.text
    row = anthropic_stack.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"


def test_sse_event_over_cap_ends_stream_with_error_event(anthropic_stack: AnthropicStack) -> None:
    response = _stream_text(anthropic_stack, "HUGEEVENT 20")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert "GOPHERGATE_MAX_SSE_EVENT_BYTES" in events[-1]["error"]["message"]
    assert "[DONE]" not in response.text
    row = anthropic_stack.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"

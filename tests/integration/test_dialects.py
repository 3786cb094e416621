"""Per-provider dialect rules, end to end through the gateway against each provider's strict fake."""

from __future__ import annotations

import json

import httpx

from tests.integration.conftest import Stack
from tests.integration.test_chat import TOOLS


def _sse_events(text: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_deepseek_reasoning_content_streams_as_reasoning_content(stack: Stack) -> None:
    stream = stack.client().chat.completions.create(
        model="deepseek-flash", messages=[{"role": "user", "content": "think about it"}], stream=True
    )
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            content += delta.content or ""
    assert reasoning and content == "echo: think about it"


def test_deepseek_usage_reads_cache_hit_tokens(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="deepseek-flash", messages=[{"role": "user", "content": "cache me " * 20}]
    )
    completion = raw.parse()
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    extra = completion.usage.model_extra or {}  # type: ignore[union-attr]
    assert row["cache_read_tokens"] == extra.get("prompt_cache_hit_tokens", 0)
    assert row["cache_write_tokens"] == 0
    assert row["reasoning_tokens"] > 0


def test_deepseek_tool_turn_gets_reasoning_content_back_when_client_drops_it(stack: Stack) -> None:
    client = stack.client()
    messages: list[dict[str, object]] = [{"role": "user", "content": "call tool for Lima"}]
    first = client.chat.completions.create(model="deepseek-flash", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    message = first.choices[0].message
    assert message.tool_calls
    assert (message.model_extra or {}).get("reasoning_content")
    # A typical OpenAI client echoes only the standard fields: reasoning_content is lost here.
    messages.append(
        {"role": "assistant", "content": None, "tool_calls": [tc.model_dump() for tc in message.tool_calls]}
    )
    messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"})
    second = client.chat.completions.create(model="deepseek-flash", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].message.content
    forwarded = stack.fakes["deepseek"].requests[-1].body["messages"][1]
    assert forwarded["reasoning_content"] == message.model_extra["reasoning_content"]  # type: ignore[index]


def test_developer_role_becomes_system_for_non_openai_upstreams(stack: Stack) -> None:
    stack.client().chat.completions.create(
        model="deepseek-flash",
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
    )
    assert stack.fakes["deepseek"].requests[-1].body["messages"][0]["role"] == "system"
    stack.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
    )
    assert stack.fakes["openai"].requests[-1].body["messages"][0]["role"] == "developer"


def test_ollama_reasoning_is_surfaced_as_reasoning_content(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(
        model="ollama/qwen3:8b", messages=[{"role": "user", "content": "ponder"}]
    )
    extra = completion.choices[0].message.model_extra or {}
    assert extra.get("reasoning_content") and "reasoning" not in extra
    stream = stack.client().chat.completions.create(
        model="ollama/qwen3:8b", messages=[{"role": "user", "content": "ponder"}], stream=True
    )
    deltas = [c.choices[0].delta.model_extra or {} for c in stream if c.choices]
    assert any(d.get("reasoning_content") for d in deltas)
    assert not any("reasoning" in d for d in deltas)


def test_xai_completion_tokens_include_reasoning(stack: Stack) -> None:
    raw = stack.client().chat.completions.with_raw_response.create(
        model="grok-4.3", messages=[{"role": "user", "content": "reason please"}]
    )
    usage = raw.parse().usage
    assert usage is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens  # type: ignore[union-attr]
    assert reasoning and reasoning > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    assert row["completion_tokens"] == usage.completion_tokens
    assert row["reasoning_tokens"] == reasoning
    assert row["completion_tokens"] > reasoning  # visible output plus reasoning


def test_xai_reasoning_models_do_not_get_rejected_sampling_fields(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(
        model="grok-4.3",
        messages=[{"role": "user", "content": "hi"}],
        presence_penalty=0.5,
        frequency_penalty=0.5,
    )
    assert completion.choices[0].message.content
    forwarded = stack.fakes["xai"].requests[-1].body
    assert "presence_penalty" not in forwarded and "frequency_penalty" not in forwarded


def test_moonshot_fixed_sampling_is_not_sent_and_stream_usage_is_lifted(stack: Stack) -> None:
    completion = stack.client().chat.completions.create(
        model="kimi-k2.6", messages=[{"role": "user", "content": "hi"}], temperature=0.3
    )
    assert completion.choices[0].message.content
    assert "temperature" not in stack.fakes["moonshot"].requests[-1].body
    response = httpx.post(
        stack.gateway.base_url + "/chat/completions",
        json={
            "model": "kimi-k2.6",
            "messages": [{"role": "user", "content": "stream it"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"Authorization": f"Bearer {stack.gateway.key}"},
    )
    events = _sse_events(response.text)
    with_usage = [e for e in events if e.get("usage")]
    assert with_usage, "no chunk carried top-level usage"
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert row["prompt_tokens"] == with_usage[-1]["usage"]["prompt_tokens"]  # type: ignore[index]
    assert row["completion_tokens"] > 0

"""/v1/messages (the Anthropic Messages API in) through the real gateway, driven by the official ``anthropic`` SDK:
passed through to backends that speak Messages (the Anthropic fake; DeepSeek's Anthropic-compatible endpoint) and
translated for every other backend (the OpenAI-compatible fakes, the Gemini fake), plus count_tokens and the
errors in Anthropic's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-messages-0123456789"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-3-5-haiku-20241022"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class MessagesStack:
    def __init__(
        self,
        gateway: Gateway,
        anthropic_fake: FakeAnthropic,
        deepseek_messages: FakeAnthropic,
        compat: dict[str, FakeOpenAICompat],
        gemini: FakeGemini,
    ) -> None:
        self.gateway = gateway
        self.anthropic = anthropic_fake
        self.deepseek_messages = deepseek_messages
        self.compat = compat
        self.gemini = gemini

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=self.gateway.key, max_retries=0, **kwargs)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            self.gateway.url + path,
            content=json.dumps(body) if not isinstance(body, bytes) else body,
            headers={"x-api-key": self.gateway.key, "content-type": "application/json", **(headers or {})},
            timeout=30,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessagesStack]:
    fake = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    deepseek_messages = FakeAnthropic(
        api_key=UPSTREAM_KEY, path_prefix="/anthropic", extra_models={"deepseek-flash": ("budget", False, 32000)}
    ).start()
    compat = {name: FakeOpenAICompat(dialect=name, api_key=UPSTREAM_KEY) for name in ("openai", "deepseek", "moonshot")}
    for server in compat.values():
        server.start()
    gemini = FakeGemini()
    gemini.start()
    env = {
        "ANTHROPIC_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "GEMINI_API_KEY": gemini.api_key,
        "GEMINI_BASE_URL": gemini.base_url,
    }
    for name, server in compat.items():
        env[f"{name.upper()}_BASE_URL"] = server.base_url
        env[f"{name.upper()}_API_KEY"] = UPSTREAM_KEY
    toml = f"""
[providers.deepseek]
anthropic_base_url = "{deepseek_messages.base_url}"

[providers.moonshot]
anthropic_base_url = ""

[model_groups.claude-or-gpt]
strategy = "priority"
targets = [{{ model = "anthropic/{HAIKU}" }}]
fallbacks = ["openai/gpt-4o-mini"]
"""
    gateway = Gateway(tmp_path_factory.mktemp("messages"), env=env, config_toml=toml)
    try:
        gateway.start()
        yield MessagesStack(gateway, fake, deepseek_messages, compat, gemini)
    finally:
        gateway.stop()
        fake.stop()
        deepseek_messages.stop()
        for server in compat.values():
            server.stop()
        gemini.stop()


# -- pass-through -------------------------------------------------------------------------------------------------


def test_pass_through_to_anthropic_sends_the_body_as_given_with_only_the_model_replaced(stack: MessagesStack) -> None:
    system = [{"type": "text", "text": "You are terse. " * 30, "cache_control": {"type": "ephemeral"}}]
    raw = stack.client().messages.with_raw_response.create(
        model=f"anthropic/{SONNET}",
        max_tokens=2000,
        system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "hello there CACHE 20"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    message = raw.parse()
    sent = stack.anthropic.message_requests[-1]
    assert sent.body["model"] == SONNET
    assert sent.body["system"] == system and sent.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"] and message.content[0].signature.startswith("sig_")  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 20
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["model"], row["status"]) == ("messages", "anthropic", SONNET, 200)
    assert row["cache_read_tokens"] == 20
    assert row["prompt_tokens"] == message.usage.input_tokens + 20
    assert Decimal(str(row["cost_usd"])) == Decimal(raw.headers["x-gophergate-cost-usd"]) > 0


def test_pass_through_thinking_signature_comes_back_unchanged_on_the_next_turn(stack: MessagesStack) -> None:
    client = stack.client()
    first = client.messages.create(
        model=SONNET,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "call tool for Paris"}],
    )
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    second = client.messages.create(
        model=SONNET,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "call tool for Paris"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
        ],
    )
    assert second.content[-1].type == "text" and "sunny" in second.content[-1].text  # type: ignore[union-attr]
    thinking = stack.anthropic.message_requests[-1].body["messages"][1]["content"][0]
    assert thinking["signature"] == first.content[0].signature  # type: ignore[union-attr]


def test_unsigned_thinking_from_a_translated_turn_is_dropped_before_anthropic(stack: MessagesStack) -> None:
    """A conversation another backend answered (its thinking blocks have no signature) moves to Claude."""
    message = stack.client().messages.create(
        model=HAIKU,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "from kimi"}, {"type": "text", "text": "hello"}],  # type: ignore[typeddict-item]
            },
            {"role": "user", "content": "and now claude"},
        ],
    )
    assert message.content[0].text == "echo: and now claude"  # type: ignore[union-attr]
    sent = stack.anthropic.message_requests[-1].body["messages"]
    assert sent[1]["content"] == [{"type": "text", "text": "hello"}]


def test_pass_through_stream_relays_anthropic_events_and_logs_usage(stack: MessagesStack) -> None:
    with stack.client().messages.stream(
        model=HAIKU, max_tokens=200, messages=[{"role": "user", "content": "WORDS 12"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert events[0] == "message_start" and "content_block_delta" in events and events[-1] == "message_stop"
    assert final.content[0].text.split() == [f"word{i}" for i in range(1, 13)]  # type: ignore[union-attr]
    row = stack.gateway.row_for(request_id)
    assert (row["endpoint"], row["stream"], row["completion_tokens"]) == ("messages", True, final.usage.output_tokens)
    assert row["prompt_tokens"] == final.usage.input_tokens


def test_deepseek_messages_pass_through_to_its_anthropic_endpoint(stack: MessagesStack) -> None:
    before = len(stack.compat["deepseek"].requests)
    message = stack.client().messages.create(
        model="deepseek/deepseek-flash", max_tokens=100, messages=[{"role": "user", "content": "hi deepseek"}]
    )
    assert message.content[0].text == "echo: hi deepseek"  # type: ignore[union-attr]
    sent = stack.deepseek_messages.message_requests[-1]
    assert sent.path == "/anthropic/v1/messages" and sent.body["model"] == "deepseek-flash"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert len(stack.compat["deepseek"].requests) == before  # its chat API was not used


# -- translated ------------------------------------------------------------------------------------------------------


def test_translated_to_openai_chat_answers_a_message_with_anthropic_usage(stack: MessagesStack) -> None:
    raw = stack.client().messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello gpt CACHE 3"}],
        stop_sequences=["END"],
        metadata={"user_id": "user-7"},
        top_k=3,
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "gpt-4o-mini"
    assert message.content[0].text == "echo: hello gpt CACHE 3"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == 3
    sent = stack.compat["openai"].requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["END"] and sent["user"] == "user-7"
    assert "top_k" not in sent  # OpenAI's chat API has no top_k
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["status"]) == ("messages", "openai", 200)
    assert row["prompt_tokens"] == message.usage.input_tokens + 3
    assert row["completion_tokens"] == message.usage.output_tokens
    assert Decimal(str(row["cost_usd"])) == Decimal(raw.headers["x-gophergate-cost-usd"]) > 0


def test_translated_stream_tool_call_round_trip_keeps_the_arguments(stack: MessagesStack) -> None:
    client = stack.client()
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "call tool please"}],
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    second = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "call tool please"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": [{"type": "text", "text": "rainy"}]}
                ],
            },
        ],
    )
    assert second.content[0].text == "tool result: rainy"  # type: ignore[union-attr]
    sent = stack.compat["openai"].requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == tool_use.id
    assert sent[2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "rainy"}


def test_translated_stream_events_follow_anthropics_sequence(stack: MessagesStack) -> None:
    response = stack.post(
        "/v1/messages",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "WORDS 3"}],
        },
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "word1 word2 word3"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] >= 3
    assert "[DONE]" not in response.text


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n", 1)[1].removeprefix("data: ")))
        for block in response.text.strip().split("\n\n")
    ]


def test_translated_stream_of_two_tool_calls_gives_two_tool_use_blocks_with_input_json_deltas(
    stack: MessagesStack,
) -> None:
    time_tool = {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}
    response = stack.post(
        "/v1/messages",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 100,
            "stream": True,
            "tools": [WEATHER, time_tool],
            "messages": [{"role": "user", "content": "call all tools"}],
        },
    )
    events = _events(response)
    starts = [(d["index"], d["content_block"]) for n, d in events if n == "content_block_start"]
    assert [(i, b["type"], b["name"]) for i, b in starts] == [
        (0, "tool_use", "get_weather"),
        (1, "tool_use", "get_time"),
    ]
    for index, _ in starts:
        pieces = [
            d["delta"]["partial_json"]
            for n, d in events
            if n == "content_block_delta" and d["index"] == index and d["delta"]["type"] == "input_json_delta"
        ]
        assert pieces and isinstance(json.loads("".join(pieces)), dict)
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_translated_kimi_reasoning_is_an_unsigned_thinking_block(stack: MessagesStack) -> None:
    # Moonshot's Anthropic endpoint is turned off in this stack: its chat API is translated to.
    message = stack.client().messages.create(
        model="kimi-k3",
        max_tokens=300,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think about it"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0].model_dump()
    assert thinking["thinking"] and not thinking.get("signature")
    assert stack.compat["moonshot"].requests[-1].body["model"] == "kimi-k3"


@pytest.mark.parametrize("echo_thinking", [True, False], ids=["thinking-echoed", "thinking-dropped"])
def test_translated_kimi_tool_turn_gets_its_reasoning_content_back(stack: MessagesStack, echo_thinking: bool) -> None:
    """Kimi rejects a tool-call turn in the history without its reasoning_content: it comes from the client's
    thinking block, or from what the gateway stored when the client dropped the block."""
    client = stack.client()
    ask = {"role": "user", "content": "call tool for Paris"}
    first = client.messages.create(model="kimi-k3", max_tokens=300, tools=[WEATHER], messages=[ask])  # type: ignore[list-item]
    tool_use = next(b for b in first.content if b.type == "tool_use")
    blocks = [b.model_dump(exclude_none=True) for b in first.content if echo_thinking or b.type != "thinking"]
    second = client.messages.create(
        model="kimi-k3",
        max_tokens=300,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            ask,  # type: ignore[list-item]
            {"role": "assistant", "content": blocks},  # type: ignore[typeddict-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
        ],
    )
    assert second.content[-1].text == "tool result: sunny"  # type: ignore[union-attr]
    replayed = stack.compat["moonshot"].requests[-1].body["messages"][1]
    assert replayed["reasoning_content"] == first.content[0].thinking  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3-flash"])
def test_translated_to_gemini_tool_round_trip(stack: MessagesStack, model: str) -> None:
    """Gemini 3 refuses a tool-call turn in the history without its thought signature: the gateway restores it
    from what it stored, keyed by the tool_use id the client sends back."""
    client = stack.client()
    first = client.messages.create(
        model=model,
        max_tokens=300,
        top_k=5,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "call tool for the weather"}],
    )
    assert stack.gemini.requests[-1].body["generationConfig"]["topK"] == 5
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and tool_use.name == "get_weather"
    second = client.messages.create(
        model=model,
        max_tokens=300,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "call tool for the weather"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn" and second.content[-1].type == "text"


# -- count_tokens ----------------------------------------------------------------------------------------------------


def test_count_tokens_on_anthropic_is_anthropics_own_count(stack: MessagesStack) -> None:
    count = stack.client().messages.count_tokens(
        model=SONNET, system="one two three", messages=[{"role": "user", "content": "four five six seven"}]
    )
    assert count.input_tokens == 10 + 3 + 4  # the fake counts 10 + words
    assert stack.anthropic.count_requests[-1].body["model"] == SONNET


def test_count_tokens_on_gemini_uses_its_count_tokens_method(stack: MessagesStack) -> None:
    before = len(stack.gemini.requests)
    response = stack.post(
        "/v1/messages/count_tokens",
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "one two three"}]},
    )
    assert response.status_code == 200 and response.headers["x-gophergate-token-count"] == "upstream"
    assert response.json() == {"input_tokens": 3}
    assert stack.gemini.requests[before].path.endswith(":countTokens")


def test_count_tokens_elsewhere_is_counted_locally_and_errs_high(stack: MessagesStack) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 40
    exact = stack.post(
        "/v1/messages/count_tokens", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    )
    estimate = stack.post(
        "/v1/messages/count_tokens", {"model": "kimi-k3", "messages": [{"role": "user", "content": text}]}
    )
    assert exact.headers["x-gophergate-token-count"] == "tokenizer"
    assert estimate.headers["x-gophergate-token-count"] == "estimate"
    counted = exact.json()["input_tokens"]
    assert 400 <= counted <= 440  # 10 tokens a sentence, 40 sentences, and the framing
    assert estimate.json()["input_tokens"] >= counted * 1.25


def test_count_tokens_of_a_model_the_gateway_does_not_serve_is_an_estimate_not_a_404(stack: MessagesStack) -> None:
    count = stack.client().messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert count.input_tokens > 0


def test_an_unknown_model_is_an_anthropic_not_found_error(stack: MessagesStack) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        stack.client().messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# -- errors ------------------------------------------------------------------------------------------------------------


def test_bad_client_key_is_an_anthropic_authentication_error(stack: MessagesStack) -> None:
    client = anthropic.Anthropic(base_url=stack.gateway.url, api_key="gg-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid or revoked API key."},
    }


def test_bearer_auth_token_is_accepted_like_claude_codes_auth_token(stack: MessagesStack) -> None:
    client = anthropic.Anthropic(base_url=stack.gateway.url, auth_token=stack.gateway.key, max_retries=0)
    message = client.messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "echo: hi"  # type: ignore[union-attr]


def test_missing_max_tokens_is_an_invalid_request_naming_the_field(stack: MessagesStack) -> None:
    response = stack.post("/v1/messages", {"model": HAIKU, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_upstream_overload_is_a_529_overloaded_error(stack: MessagesStack) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        stack.client().messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "FAIL 529"}])
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert UPSTREAM_KEY not in caught.value.response.text


def test_server_tools_on_a_translated_backend_are_refused_naming_the_tool_type(stack: MessagesStack) -> None:
    response = stack.post(
        "/v1/messages",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 10,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 400
    assert "web_search_20250305" in response.json()["error"]["message"]


def test_a_model_group_fails_over_from_anthropic_to_a_translated_backend(stack: MessagesStack) -> None:
    stack.anthropic.fail_next(529)
    raw = stack.client().messages.with_raw_response.create(
        model="claude-or-gpt", max_tokens=20, messages=[{"role": "user", "content": "hello group"}]
    )
    message = raw.parse()
    assert message.content[0].text == "echo: hello group"  # type: ignore[union-attr]
    assert raw.headers["x-gophergate-attempts"] == "2"
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"


def test_an_endpoint_the_provider_lacks_is_400_unsupported_endpoint_and_logs_the_provider(
    stack: MessagesStack,
) -> None:
    response = httpx.post(
        stack.gateway.base_url + "/embeddings",
        json={"model": HAIKU, "input": "hi"},
        headers={"authorization": f"Bearer {stack.gateway.key}"},
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "unsupported_endpoint" and "'anthropic'" in body["message"] and body["param"] == "model"
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["provider"]) == ("embeddings", 400, "anthropic")


def test_thinking_is_not_sent_to_a_model_that_does_not_reason(stack: MessagesStack) -> None:
    """Claude Code asks every model for thinking; the registry says gpt-4o-mini does not reason, and OpenAI rejects
    reasoning_effort for it."""
    message = stack.client().messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        thinking={"type": "adaptive"},  # type: ignore[typeddict-item]
        output_config={"effort": "high"},  # type: ignore[call-arg]
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert "reasoning_effort" not in stack.compat["openai"].requests[-1].body


def test_a_mid_conversation_system_turn_passes_through_to_anthropic_and_is_a_system_message_elsewhere(
    stack: MessagesStack,
) -> None:
    """Claude Code sends its environment as system turns inside `messages` (beta mid-conversation-system)."""
    turn = {"role": "system", "content": [{"type": "text", "text": "cwd: /work"}]}
    messages: Any = [{"role": "user", "content": "hi"}, turn]
    beta = {"anthropic-beta": "mid-conversation-system-2026-04-07"}
    stack.client().messages.create(model=HAIKU, max_tokens=50, messages=messages, extra_headers=beta)
    assert stack.anthropic.message_requests[-1].body["messages"][1] == turn
    stack.client().messages.create(model="gpt-4o-mini", max_tokens=50, messages=messages, extra_headers=beta)
    sent = stack.compat["openai"].requests[-1].body["messages"]
    assert sent[-1] == {"role": "system", "content": "cwd: /work"}


def test_a_translated_stream_that_fails_after_content_ends_with_an_anthropic_error_event(stack: MessagesStack) -> None:
    response = stack.post(
        "/v1/messages",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "MIDERROR"}],
        },
    )
    events = _events(response)
    assert events[0][0] == "message_start" and "content_block_delta" in [n for n, _ in events]
    name, data = events[-1]
    assert name == "error" and data["type"] == "error" and data["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["error_type"]) == ("messages", 502, "upstream_stream_error")


def test_a_rate_limited_key_gets_an_anthropic_rate_limit_error(stack: MessagesStack) -> None:
    key = stack.gateway.cli("keys", "create", "--name", "one-a-minute", "--rpm", "1").stdout.strip().splitlines()[-1]
    client = anthropic.Anthropic(base_url=stack.gateway.url, api_key=key, max_retries=0)
    client.messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "first"}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=HAIKU, max_tokens=10, messages=[{"role": "user", "content": "second"}])
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(caught.value.response.headers["retry-after"]) >= 1

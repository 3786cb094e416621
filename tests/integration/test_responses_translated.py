"""/v1/responses for providers without a Responses API, translated to their chat API and back, driven by the
official ``openai`` SDK against strict fakes (DeepSeek, Gemini, Anthropic); the responses the gateway made are kept
for ``previous_response_id`` and GET/DELETE, per client key, and across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-responses-0123456789"
HAIKU = "claude-3-5-haiku-20241022"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class ResponsesStack:
    def __init__(
        self, gateway: Gateway, compat: dict[str, FakeOpenAICompat], gemini: FakeGemini, claude: FakeAnthropic
    ) -> None:
        self.gateway = gateway
        self.compat = compat
        self.gemini = gemini
        self.claude = claude

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key or self.gateway.key, max_retries=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponsesStack]:
    compat = {name: FakeOpenAICompat(dialect=name, api_key=UPSTREAM_KEY) for name in ("openai", "deepseek")}
    for server in compat.values():
        server.start()
    gemini = FakeGemini()
    gemini.start()
    claude = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    env = {
        "GEMINI_API_KEY": gemini.api_key,
        "GEMINI_BASE_URL": gemini.base_url,
        "ANTHROPIC_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_BASE_URL": claude.base_url,
    }
    for name, server in compat.items():
        env[f"{name.upper()}_BASE_URL"] = server.base_url
        env[f"{name.upper()}_API_KEY"] = UPSTREAM_KEY
    gateway = Gateway(tmp_path_factory.mktemp("responses"), env=env)
    try:
        gateway.start()
        yield ResponsesStack(gateway, compat, gemini, claude)
    finally:
        gateway.stop()
        for server in compat.values():
            server.stop()
        gemini.stop()
        claude.stop()


def test_deepseek_response_is_translated_from_chat_with_usage_and_cost(stack: ResponsesStack) -> None:
    raw = stack.client().responses.with_raw_response.create(
        model="deepseek-flash", instructions="Be brief.", input="hello there CACHE 2", max_output_tokens=200
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed" and response.model == "deepseek-flash"
    assert response.output_text == "echo: hello there CACHE 2"
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]  # DeepSeek thinks by default: its reasoning is a reasoning item
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    sent = stack.compat["deepseek"].requests[-1]
    assert sent.path.endswith("/chat/completions")
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.body["max_tokens"] == 200
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["status"]) == ("responses", "deepseek", 200)
    assert row["prompt_tokens"] == response.usage.input_tokens


def test_deepseek_stream_events_are_what_the_sdk_expects(stack: ResponsesStack) -> None:
    with stack.client().responses.stream(model="deepseek-flash", input="WORDS 4") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.delta" in kinds
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == "word1 word2 word3 word4" == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


def test_tool_call_round_trip_through_previous_response_id_on_gemini(stack: ResponsesStack) -> None:
    client = stack.client()
    first = client.responses.create(model="gemini-2.5-flash", input="call tool for Paris", tools=[WEATHER])  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments
    raw = client.responses.with_raw_response.create(
        model="gemini-2.5-flash",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    second = raw.parse()
    assert second.output_text == 'tool result: get_weather={"result":"sunny"}'  # the Gemini fake's echo
    row = stack.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"]) == ("responses", "gemini")
    assert Decimal(str(row["cost_usd"])) == Decimal(raw.headers["x-gophergate-cost-usd"]) > 0
    contents = stack.gemini.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]  # the history came from the stored response


def test_stream_with_two_tool_calls_on_anthropic(stack: ResponsesStack) -> None:
    time_tool = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    with stack.client().responses.stream(
        model=HAIKU,
        input="call all tools",
        tools=[WEATHER, time_tool],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == [c.arguments for c in calls]  # type: ignore[union-attr]


def test_stored_response_can_be_retrieved_and_deleted_by_its_key_only(stack: ResponsesStack) -> None:
    client = stack.client()
    made = client.responses.create(model="deepseek-flash", input="keep me")
    assert client.responses.retrieve(made.id).output_text == "echo: keep me"
    other = stack.client(stack.gateway.create_key("other"))
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError) as caught:
        other.responses.create(model="deepseek-flash", previous_response_id=made.id, input="next")
    assert caught.value.code == "previous_response_not_found"
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_store_false_keeps_nothing(stack: ResponsesStack) -> None:
    client = stack.client()
    made = client.responses.create(model="deepseek-flash", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_built_in_tools_are_400_naming_the_tool_type(stack: ResponsesStack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client().responses.create(
            model="deepseek-flash",
            input="search",
            tools=[{"type": "web_search_preview"}],  # type: ignore[list-item]
        )
    body: Any = caught.value.body
    assert body["param"] == "tools[0].type" and "web_search_preview" in body["message"]


def test_openai_responses_still_pass_through(stack: ResponsesStack) -> None:
    response = stack.client().responses.create(model="gpt-4o-mini", input="hi openai")
    assert stack.compat["openai"].requests[-1].path.endswith("/responses")
    assert response.output_text


def test_stored_responses_survive_a_restart(stack: ResponsesStack) -> None:
    key = stack.gateway.key
    client = stack.client()
    made = client.responses.create(model="deepseek-flash", input="remember across restarts")
    stack.gateway.stop()
    stack.gateway.start()  # (it makes a new key: the response stays the first key's)
    client = stack.client(key)
    follow = client.responses.create(model="deepseek-flash", previous_response_id=made.id, input="and now?")
    assert follow.output_text == "echo: and now?"
    history = stack.compat["deepseek"].requests[-1].body["messages"]
    assert history[0] == {"role": "user", "content": "remember across restarts"}
    assert history[1]["role"] == "assistant" and history[1]["content"] == "echo: remember across restarts"
    raw = httpx.get(f"{stack.gateway.base_url}/responses/{made.id}", headers={"authorization": f"Bearer {key}"})
    assert raw.status_code == 200 and raw.json()["id"] == made.id


def test_a_follow_up_on_another_instance_continues_the_conversation(
    stack: ResponsesStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two instances on one database: a response made on one is continued on the other at once (its writer may not
    have committed yet: the other looks again briefly for an id the gateway made)."""
    shared = {
        name: value
        for name, value in stack.gateway.env.items()
        if name not in ("GOPHERGATE_PORT", "GOPHERGATE_DATA_DIR", "GOPHERGATE_DATABASE_URL", "HOME")
    }
    other = Gateway(tmp_path_factory.mktemp("second"), env=shared, database_url=stack.gateway.database_url).start()
    try:
        key = stack.gateway.key
        made = stack.client(key).responses.create(model="deepseek-flash", input="first instance")
        assert made.id.startswith("resp_")
        client = openai.OpenAI(base_url=other.base_url, api_key=key, max_retries=0)
        follow = client.responses.create(model="deepseek-flash", previous_response_id=made.id, input="second")
        assert follow.output_text == "echo: second"
        history = stack.compat["deepseek"].requests[-1].body["messages"]
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert history[0]["content"] == "first instance"
    finally:
        other.stop()

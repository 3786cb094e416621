"""Conversation memories across instances: two gateway processes on one PostgreSQL database and one Redis, driven
with the official OpenAI SDK against strict fakes, a tool conversation's first turn on one instance and its next
turn (the tool result, the assistant message echoed with the standard fields only, as the SDK does) on the other.

- Gemini 3 (the fake refuses the documented skip sentinel here, so only the real thought signature passes), Anthropic
  with thinking (its fake checks the thinking block's signature), DeepSeek with thinking (its fake refuses a tool
  turn without ``reasoning_content``), and a translated /v1/responses continued with ``previous_response_id`` on the
  other instance a moment after it was made: all succeed with Redis.
- The control: the same conversations on two instances without Redis fail (Gemini, DeepSeek) or lose thinking
  (Anthropic), so Redis is what makes them work.
- Redis configured but not there (a closed port): one instance still serves the conversation from its own memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import SKIP_SIGNATURE, FakeGemini
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, echoed_assistant, free_port, gateway_cluster

UPSTREAM_KEY = "sk-upstream-memories-0123456789"
SONNET = "claude-sonnet-4-5-20250929"  # manual thinking budgets in the Anthropic fake
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Fakes:
    def __init__(self) -> None:
        self.gemini = FakeGemini()
        self.claude = FakeAnthropic(api_key=UPSTREAM_KEY)
        self.deepseek = FakeOpenAICompat(dialect="deepseek", api_key=UPSTREAM_KEY)

    def env(self) -> dict[str, str]:
        return {
            "GEMINI_API_KEY": self.gemini.api_key,
            "GEMINI_BASE_URL": self.gemini.base_url,
            "ANTHROPIC_API_KEY": UPSTREAM_KEY,
            "ANTHROPIC_BASE_URL": self.claude.base_url,
            "DEEPSEEK_API_KEY": UPSTREAM_KEY,
            "DEEPSEEK_BASE_URL": self.deepseek.base_url,
        }


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    made = Fakes()
    made.gemini.start()
    made.claude.start()
    made.deepseek.start()
    made.gemini.accepts_skip_signature = False  # only the real signature passes: the sentinel would hide a miss
    try:
        yield made
    finally:
        made.gemini.stop()
        made.claude.stop()
        made.deepseek.stop()


class Pair:
    """Two instances on one database; ``key`` is valid on both (it was made on the first, in the shared table)."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.gateways = gateways
        self.key = gateways[0].key

    def client(self, index: int) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateways[index].base_url, api_key=self.key, max_retries=0, timeout=30)

    def ready(self, index: int) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.gateways[index].url + "/readyz", timeout=10).json()
        return body


@contextmanager
def pair(root: Path, fakes: Fakes, *, redis: bool) -> Iterator[Pair]:
    with gateway_cluster(root, fakes.env(), ("gw0", "gw1"), instance_names=False, redis=redis) as instances:
        yield Pair(instances.gateways)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[Pair]:
    with pair(tmp_path_factory.mktemp("shared"), fakes, redis=True) as made:
        yield made


@pytest.fixture(scope="module")
def unshared(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[Pair]:
    with pair(tmp_path_factory.mktemp("unshared"), fakes, redis=False) as made:
        yield made


# -- the conversations --------------------------------------------------------------------------------------------


def gemini_turns(first: openai.OpenAI, second: openai.OpenAI) -> str:
    messages: list[Any] = [{"role": "user", "content": "call tool"}]
    turn = first.chat.completions.create(model="gemini-3-flash", messages=messages, tools=TOOLS)
    message = turn.choices[0].message
    assert turn.choices[0].finish_reason == "tool_calls" and message.tool_calls
    messages += [
        echoed_assistant(message),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"},
    ]
    answer = second.chat.completions.create(model="gemini-3-flash", messages=messages, tools=TOOLS)
    return answer.choices[0].message.content or ""


def anthropic_turns(first: openai.OpenAI, second: openai.OpenAI) -> str:
    kwargs: dict[str, Any] = {"model": SONNET, "tools": TOOLS, "reasoning_effort": "low"}
    messages: list[Any] = [{"role": "user", "content": "weather and time? call all tools"}]
    calls: dict[int, dict[str, Any]] = {}
    for chunk in first.chat.completions.create(messages=messages, stream=True, **kwargs):  # streamed on the first
        for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function and call.function.name:
                entry["name"] = call.function.name
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert sorted(calls) == [0, 1]
    tool_calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in (calls[0], calls[1])
    ]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "noon"},
    ]
    final = second.chat.completions.create(messages=messages, **kwargs)
    return final.choices[0].message.content or ""


def deepseek_turns(first: openai.OpenAI, second: openai.OpenAI) -> str:
    messages: list[Any] = [{"role": "user", "content": "call tool for Lima"}]
    turn = first.chat.completions.create(model="deepseek-flash", messages=messages, tools=TOOLS)
    message = turn.choices[0].message
    assert message.tool_calls and (message.model_extra or {}).get("reasoning_content")
    messages += [
        echoed_assistant(message),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"},
    ]
    answer = second.chat.completions.create(model="deepseek-flash", messages=messages, tools=TOOLS)
    return answer.choices[0].message.content or ""


# -- with Redis: every conversation works across the instances ------------------------------------------------------


def test_both_instances_share_their_memories_in_redis(shared: Pair) -> None:
    for index in (0, 1):
        memories = shared.ready(index)["details"]["memories"]
        assert memories["mode"] == "redis" and memories["connected"] is True, memories


def test_gemini_tool_turn_on_the_other_instance_replays_the_real_signature(shared: Pair, fakes: Fakes) -> None:
    answer = gemini_turns(shared.client(0), shared.client(1))
    assert answer == 'tool result: get_weather={"result":"sunny"}'
    part = fakes.gemini.last_request.body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] in fakes.gemini.issued_signatures and part["thoughtSignature"] != SKIP_SIGNATURE
    assert part["functionCall"]["id"].startswith("fc_")  # Gemini's own call id came back too
    assert shared.ready(1)["details"]["memories"]["loaded"] >= 1


def test_anthropic_thinking_blocks_come_back_on_the_other_instance(shared: Pair, fakes: Fakes) -> None:
    assert anthropic_turns(shared.client(0), shared.client(1)) == "tool result: sunny | noon"
    sent = fakes.claude.message_requests[-1].body
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use", "tool_use"]
    assert sent["thinking"]["type"] == "enabled", "thinking stays on because the thinking block came back"


def test_deepseek_reasoning_comes_back_on_the_other_instance(shared: Pair, fakes: Fakes) -> None:
    assert deepseek_turns(shared.client(0), shared.client(1))
    assert fakes.deepseek.chat_requests[-1].body["messages"][1]["reasoning_content"]


def test_turns_alternating_over_the_instances_keep_working(shared: Pair) -> None:
    for first, second in ((1, 0), (0, 1), (1, 0)):
        assert gemini_turns(shared.client(first), shared.client(second)).startswith("tool result:")
        assert deepseek_turns(shared.client(first), shared.client(second))


def test_a_translated_response_is_continued_on_the_other_instance_at_once(shared: Pair, fakes: Fakes) -> None:
    first = shared.client(0).responses.create(model="gemini-3-flash", input="call tool for Paris", tools=[WEATHER])  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    second = shared.client(1).responses.create(
        model="gemini-3-flash",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == 'tool result: get_weather={"result":"sunny"}'
    contents = fakes.gemini.last_request.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]  # the history came from the stored response
    assert contents[1]["parts"][0]["thoughtSignature"] in fakes.gemini.issued_signatures
    responses = shared.ready(1)["details"]["memories"]["responses"]
    assert responses["loaded"] >= 1, responses  # found in Redis, not by waiting for the other's database write
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {shared.key}"}) as http:
        assert http.delete(f"{shared.gateways[1].base_url}/responses/{first.id}").status_code == 200
        assert http.get(f"{shared.gateways[1].base_url}/responses/{first.id}").status_code == 404


# -- the control: without Redis the same turns fail or lose thinking ------------------------------------------------


def test_without_redis_the_gemini_turn_on_the_other_instance_is_refused(unshared: Pair, fakes: Fakes) -> None:
    assert unshared.ready(1)["details"]["memories"] == {"mode": "process"}
    with pytest.raises(openai.BadRequestError) as refused:
        gemini_turns(unshared.client(0), unshared.client(1))
    assert "signature" in str(refused.value).lower()
    sent = fakes.gemini.last_request.body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == SKIP_SIGNATURE  # what the instance could do without the memory
    # The same conversation on one instance works: the strictness is about the signature, not the test.
    assert gemini_turns(unshared.client(1), unshared.client(1)).startswith("tool result:")


def test_without_redis_the_deepseek_turn_on_the_other_instance_is_refused(unshared: Pair) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        deepseek_turns(unshared.client(0), unshared.client(1))
    assert "reasoning_content" in str(refused.value)


def test_without_redis_anthropic_thinking_is_turned_off_on_the_other_instance(unshared: Pair, fakes: Fakes) -> None:
    assert anthropic_turns(unshared.client(0), unshared.client(1)) == "tool result: sunny | noon"
    assert "thinking" not in fakes.claude.message_requests[-1].body


# -- Redis configured but not there --------------------------------------------------------------------------------


def test_an_unreachable_redis_leaves_one_instance_serving_its_conversations(tmp_path: Path, fakes: Fakes) -> None:
    env = {**fakes.env(), "GOPHERGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    gateway = Gateway(tmp_path, env=env).start()
    try:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=30)
        assert gemini_turns(client, client) == 'tool result: get_weather={"result":"sunny"}'
        assert fakes.gemini.last_request.body["contents"][1]["parts"][0]["thoughtSignature"] != SKIP_SIGNATURE
        assert deepseek_turns(client, client)
        assert anthropic_turns(client, client) == "tool result: sunny | noon"
        assert "thinking" in fakes.claude.message_requests[-1].body
        memories = httpx.get(gateway.url + "/readyz", timeout=10).json()["details"]["memories"]
        assert memories["mode"] == "redis" and memories["connected"] is False, memories
        assert "conversation memories: Redis is unreachable" in gateway.logs()
    finally:
        gateway.stop()

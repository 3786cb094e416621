"""Tests of the strict fake Anthropic server itself: it rejects what the real API rejects (providers.md §4)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.anthropic import FakeAnthropic, FakeError

KEY = "sk-ant-test"
SONNET = "claude-sonnet-4-5-20250929"
OPUS = "claude-opus-4-7"
HAIKU = "claude-3-5-haiku-20241022"
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": SONNET, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return base


def rejects(payload: dict[str, Any], fragment: str, version: str = "2023-06-01") -> None:
    with pytest.raises(FakeError) as info:
        FakeAnthropic().validate(payload, version)
    assert info.value.status == 400 and fragment in info.value.message, info.value.message


def post(
    fake: FakeAnthropic, payload: Any, headers: dict[str, str] | None = None, path: str = "/v1/messages"
) -> tuple[int, dict[str, str], bytes]:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v}
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(fake.base_url + path, data=data, headers=sent, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_valid_request_passes() -> None:
    FakeAnthropic().validate(body(system="s", tools=[TOOL], tool_choice={"type": "auto"}, stop_sequences=["x"]))


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (body(max_tokens=None), "max_tokens: Field required"),
        (body(frequency_penalty=0.1), "frequency_penalty: Extra inputs are not permitted"),
        (body(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]), "messages.0.role"),
        (body(messages=[{"role": "assistant", "content": "x"}]), 'first message must use the "user" role'),
        (body(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]), "must alternate"),
        (body(messages=[{"role": "user", "content": ""}]), "non-empty content"),
        (body(temperature=0.5, top_p=0.9), "cannot both be specified"),
        (body(max_tokens=100000), "maximum allowed number of output tokens"),
    ],
    ids=["no-max-tokens", "unknown-field", "system-role", "first-not-user", "same-role", "empty", "temp+top_p", "max"],
)
def test_rejects_malformed_requests(payload: dict[str, Any], fragment: str) -> None:
    rejects(payload, fragment)


def test_temperature_and_top_p_together_are_fine_on_older_models() -> None:
    FakeAnthropic().validate(body(model=HAIKU, temperature=0.5, top_p=0.9))


def test_sampling_fields_are_unknown_from_version_2026_10_21() -> None:
    FakeAnthropic().validate(body(temperature=1))
    rejects(body(temperature=1), "temperature: Extra inputs are not permitted", version="2026-10-21")


def _tool_turns(result_blocks: list[dict[str, Any]], use_id: str = "toolu_1") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use_id, "name": "get_weather", "input": {}}]},
        {"role": "user", "content": result_blocks},
    ]


def test_tool_result_without_matching_tool_use_is_rejected() -> None:
    turns = _tool_turns(
        [{"type": "tool_result", "tool_use_id": "toolu_1"}, {"type": "tool_result", "tool_use_id": "toolu_other"}]
    )
    rejects(body(messages=turns), "unexpected `tool_use_id`")


def test_tool_result_after_text_in_its_turn_is_rejected() -> None:
    turns = _tool_turns([{"type": "text", "text": "hm"}, {"type": "tool_result", "tool_use_id": "toolu_1"}])
    rejects(body(messages=turns), "tool_result blocks must come before any other content")


def test_tool_use_without_a_result_in_the_next_turn_is_rejected() -> None:
    rejects(body(messages=[*_tool_turns([{"type": "text", "text": "x"}])]), "without `tool_result` blocks")


def test_thinking_tool_loop_without_the_thinking_block_is_rejected() -> None:
    turns = _tool_turns([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}])
    FakeAnthropic().validate(body(messages=turns, max_tokens=3000))
    rejects(
        body(messages=turns, max_tokens=3000, thinking={"type": "enabled", "budget_tokens": 1024}),
        "must start with a thinking block",
    )


def test_thinking_block_with_a_signature_the_fake_never_issued_is_rejected() -> None:
    turns = _tool_turns([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}])
    turns[1]["content"].insert(0, {"type": "thinking", "thinking": "made up", "signature": "forged"})
    rejects(body(messages=turns), "Invalid `signature`")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 2000}, "greater than"),
        ({"thinking": {"type": "adaptive"}}, "'adaptive' is not supported"),
        ({"model": OPUS, "thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4000}, "'enabled'"),
        ({"model": HAIKU, "thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4000}, "thinking"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4000, "temperature": 0.3}, "set to 1"),
        ({"output_config": {"effort": "high"}}, "effort is not supported"),
        ({"tool_choice": {"type": "auto"}}, "may only be specified while providing tools"),
    ],
    ids=["small-budget", "budget>=max", "adaptive-on-budget-model", "enabled-on-adaptive", "no-thinking-model",
         "thinking+temperature", "effort-on-old-model", "tool-choice-without-tools"],
)  # fmt: skip
def test_rejects_unsupported_thinking_and_config(fields: dict[str, Any], fragment: str) -> None:
    rejects(body(**fields), fragment)


def test_auth_and_version_headers_are_checked(fake: FakeAnthropic) -> None:
    status, _, raw = post(fake, body(), {"x-api-key": ""})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    assert post(fake, body(), {"x-api-key": "wrong"})[0] == 401
    assert post(fake, body(), {"x-api-key": "", "Authorization": f"Bearer {KEY}"})[0] == 200  # §11.23
    status, _, raw = post(fake, body(), {"anthropic-version": ""})
    assert status == 400 and "anthropic-version" in json.loads(raw)["error"]["message"]


def test_overloaded_is_529_in_anthropics_error_shape(fake: FakeAnthropic) -> None:
    status, headers, raw = post(fake, body(messages=[{"role": "user", "content": "FAIL 529"}]))
    error = json.loads(raw)
    assert status == 529 and error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert headers["retry-after"] == "7"


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_stream_event_order_with_thinking_and_parallel_tools(fake: FakeAnthropic) -> None:
    payload = body(
        messages=[{"role": "user", "content": "call all tools"}],
        tools=[TOOL, {**TOOL, "name": "get_time"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        max_tokens=4000,
        stream=True,
    )
    status, headers, raw = post(fake, payload)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = _events(raw)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"] and "ping" in names
    assert all(data["type"] == name for name, data in events)
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "tool_use", "tool_use"]
    kinds = {d["delta"]["type"] for n, d in events if n == "content_block_delta"}
    assert kinds == {"thinking_delta", "signature_delta", "input_json_delta"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert "[DONE]" not in raw.decode()


def test_mid_stream_error_event_after_http_200(fake: FakeAnthropic) -> None:
    status, _, raw = post(fake, body(messages=[{"role": "user", "content": "MIDERROR x"}], stream=True))
    events = _events(raw)
    assert status == 200 and events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_models_are_paged(fake: FakeAnthropic) -> None:
    status, _, raw = post(fake, None, path="/v1/models?limit=1000")
    page = json.loads(raw)
    assert status == 200 and len(page["data"]) == 2 and page["has_more"] is True
    status, _, raw = post(fake, None, path=f"/v1/models?limit=1000&after_id={page['last_id']}")
    assert json.loads(raw)["has_more"] is False

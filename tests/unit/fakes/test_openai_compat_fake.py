"""Tests of the strict OpenAI-compatible fake upstream itself (raw HTTP and the official openai SDK)."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.openai_compat import DEFAULT_MODELS, DIALECTS, FakeOpenAICompat

KEY = "sk-upstream-test"
TOOLS: list[dict[str, Any]] = [
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
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "h24": {"type": "boolean"}}},
        },
    },
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeOpenAICompat]]:
    started = {d: FakeOpenAICompat(d, api_key=KEY).start() for d in DIALECTS}
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture(params=DIALECTS)
def fake(request: pytest.FixtureRequest, fakes: dict[str, FakeOpenAICompat]) -> FakeOpenAICompat:
    dialect_fake = fakes[request.param]
    dialect_fake.clear()
    return dialect_fake


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def http(
    fake: FakeOpenAICompat,
    body: Any = None,
    *,
    path: str = "/v1/chat/completions",
    key: str | None = KEY,
    method: str = "POST",
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(fake.root_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def chat(fake: FakeOpenAICompat, **body: Any) -> tuple[int, Any]:
    body.setdefault("model", fake.models[0])
    status, _, data = http(fake, body)
    return status, json.loads(data)


def sse(data: bytes) -> list[Any]:
    """Data payloads of an SSE body, JSON-decoded except [DONE]; comment lines are kept as str."""
    events: list[Any] = []
    for block in data.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith(":"):
                events.append(line)
            elif line.startswith("data: "):
                payload = line[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def stream(fake: FakeOpenAICompat, **body: Any) -> list[Any]:
    body.setdefault("model", fake.models[0])
    status, headers, data = http(fake, {**body, "stream": True})
    assert status == 200, data
    assert headers["content-type"].startswith("text/event-stream")
    return sse(data)


def chunks(events: list[Any]) -> list[dict[str, Any]]:
    return [e for e in events if isinstance(e, dict)]


def error_message(dialect: str, body: Any) -> str:
    return str(body["error"] if dialect == "xai" else body["error"]["message"])


def sdk(fake: FakeOpenAICompat) -> openai.OpenAI:
    base = fake.base_url + "/v1" if fake.dialect == "ollama" else fake.base_url
    return openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=10)


def tool_history(call_id: str, **assistant_extra: Any) -> list[dict[str, Any]]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    return [
        {"role": "user", "content": "call tool"},
        {"role": "assistant", "content": None, "tool_calls": [call], **assistant_extra},
        {"role": "tool", "tool_call_id": call_id, "content": "21 degrees"},
    ]


# --------------------------------------------------------------------------- server basics


def test_base_url_matches_each_sdk_convention(fakes: dict[str, FakeOpenAICompat]) -> None:
    for dialect, fake in fakes.items():
        root = f"http://127.0.0.1:{fake.port}"
        expected = root if dialect in ("deepseek", "ollama") else root + "/v1"
        assert fake.base_url == expected


def test_deepseek_serves_with_and_without_v1(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["deepseek"]
    for path in ("/chat/completions", "/v1/chat/completions"):
        status, _, data = http(fake, {"model": "deepseek-flash", "messages": user("hi")}, path=path)
        assert status == 200, data
    assert http(fake, path="/models", method="GET")[0] == 200


def test_other_dialects_need_v1(fakes: dict[str, FakeOpenAICompat]) -> None:
    for dialect in ("openai", "xai", "moonshot", "ollama"):
        status, _, _ = http(fakes[dialect], {"model": "x", "messages": user("hi")}, path="/chat/completions")
        assert status == 404


def test_start_stop_and_context_manager() -> None:
    fake = FakeOpenAICompat("openai")
    with fake:
        assert http(fake, path="/v1/models", method="GET")[0] == 200
    assert fake.port is None
    again = FakeOpenAICompat("xai").start()
    try:
        assert again.port
    finally:
        again.stop()


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(ValueError):
        FakeOpenAICompat("anthropic")


def test_models_list_and_get(fake: FakeOpenAICompat) -> None:
    prefix = "/v1"
    status, _, data = http(fake, path=prefix + "/models", method="GET")
    assert status == 200
    listing = json.loads(data)
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == DEFAULT_MODELS[fake.dialect]
    assert all(m["object"] == "model" and m["owned_by"] for m in listing["data"])
    model = fake.models[-1]
    status, _, data = http(fake, path=f"{prefix}/models/{model}", method="GET")
    assert status == 200 and json.loads(data)["id"] == model
    status, _, data = http(fake, path=f"{prefix}/models/no-such-model", method="GET")
    assert status == 404


def test_custom_models_argument() -> None:
    with FakeOpenAICompat("openai", models=["my-model"]) as fake:
        assert chat(fake, messages=user("hi"))[0] == 200
        assert chat(fake, model="gpt-4o-mini", messages=user("hi"))[0] == 404


def test_requests_are_recorded_with_headers_and_body(fake: FakeOpenAICompat) -> None:
    chat(fake, messages=user("hi"), some_future_field={"nested": [1, 2]}, seed=7)
    recorded = fake.last_request
    assert recorded.method == "POST" and recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.body["some_future_field"] == {"nested": [1, 2]}
    assert recorded.body["seed"] == 7
    assert fake.chat_requests == [recorded]


def test_requests_list_is_thread_safe_under_concurrency(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    fake.clear()

    def worker() -> None:
        for _ in range(10):
            assert chat(fake, messages=user("hi"))[0] == 200

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.requests) == 80


def test_two_hundred_requests_are_fast(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["deepseek"]
    start = time.monotonic()
    for i in range(200):
        status, _ = chat(fake, messages=user(f"request {i}"))
        assert status == 200
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------------- default behaviour


def test_echo_answer_and_usage_fields(fake: FakeOpenAICompat) -> None:
    model = {"openai": "gpt-4o-mini", "deepseek": "deepseek-flash", "xai": "grok-4.3"}.get(fake.dialect)
    status, body = chat(fake, model=model or fake.models[0], messages=user("hello big world"))
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "echo: hello big world"
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == 3 + 10
    if fake.dialect == "xai":
        assert usage["completion_tokens"] == 4
        assert usage["total_tokens"] == 13 + 4 + usage["completion_tokens_details"]["reasoning_tokens"]
    else:
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_text_parts_are_joined(fake: FakeOpenAICompat) -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    status, body = chat(fake, messages=[{"role": "user", "content": parts}])
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: one two"


def test_words_trigger_and_max_tokens_truncation(fake: FakeOpenAICompat) -> None:
    _, body = chat(fake, messages=user("WORDS 5"))
    assert body["choices"][0]["message"]["content"] == "word1 word2 word3 word4 word5"
    limit = "max_completion_tokens" if fake.dialect == "openai" else "max_tokens"
    _, body = chat(fake, messages=user("WORDS 5"), **{limit: 2})
    assert body["choices"][0]["message"]["content"] == "word1 word2"
    assert body["choices"][0]["finish_reason"] == "length"


def test_cache_trigger_reports_cached_tokens_per_dialect(fakes: dict[str, FakeOpenAICompat]) -> None:
    usages = {d: chat(f, messages=user("CACHE 5 a b c d e f"))[1]["usage"] for d, f in fakes.items()}
    assert usages["openai"]["prompt_tokens_details"]["cached_tokens"] == 5
    assert usages["xai"]["prompt_tokens_details"]["cached_tokens"] == 5
    ds = usages["deepseek"]
    assert ds["prompt_cache_hit_tokens"] == 5
    assert ds["prompt_cache_hit_tokens"] + ds["prompt_cache_miss_tokens"] == ds["prompt_tokens"]
    assert usages["moonshot"]["cached_tokens"] == usages["moonshot"]["prompt_tokens_details"]["cached_tokens"] == 5
    assert set(usages["ollama"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_reasoning_usage_per_dialect(fakes: dict[str, FakeOpenAICompat]) -> None:
    _, o = chat(fakes["openai"], model="o3-mini", messages=user("a b"))
    details = o["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] > 0
    assert o["usage"]["completion_tokens"] == 3 + details["reasoning_tokens"]  # reasoning inside completion
    assert "reasoning_content" not in o["choices"][0]["message"]

    _, x = chat(fakes["xai"], model="grok-4.3", messages=user("a b"))
    reasoning = x["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0 and x["usage"]["completion_tokens"] == 3  # reasoning excluded (§6.2)
    assert x["usage"]["total_tokens"] == x["usage"]["prompt_tokens"] + 3 + reasoning

    _, d = chat(fakes["deepseek"], messages=user("a b"))
    assert d["choices"][0]["message"]["reasoning_content"]
    assert d["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    _, d_off = chat(fakes["deepseek"], messages=user("a b"), thinking={"type": "disabled"})
    assert "reasoning_content" not in d_off["choices"][0]["message"]

    _, k = chat(fakes["moonshot"], model="kimi-k3", messages=user("a b"))
    assert k["choices"][0]["message"]["reasoning_content"]

    _, q = chat(fakes["ollama"], model="qwen3:8b", messages=user("a b"))
    assert q["choices"][0]["message"]["reasoning"] and "reasoning_content" not in q["choices"][0]["message"]
    _, plain = chat(fakes["ollama"], model="llama3.2", messages=user("a b"))
    assert "reasoning" not in plain["choices"][0]["message"]


def test_tool_call_answer(fake: FakeOpenAICompat) -> None:
    status, body = chat(fake, messages=user("please call tool"), tools=TOOLS)
    assert status == 200
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) == 45
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert call["id"] in fake.issued_tool_call_ids


def test_call_all_tools_and_tool_choice(fake: FakeOpenAICompat) -> None:
    _, body = chat(fake, messages=user("call all tools"), tools=TOOLS)
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"zone": "test-zone", "h24": True}
    _, body = chat(fake, messages=user("call tool"), tools=TOOLS, tool_choice="none")
    assert body["choices"][0]["finish_reason"] == "stop"
    if fake.dialect != "ollama":
        named = {"type": "function", "function": {"name": "get_time"}}
        _, body = chat(fake, messages=user("call tool"), tools=TOOLS, tool_choice=named)
        assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"


def test_tool_result_turn_answers_with_the_result(fake: FakeOpenAICompat) -> None:
    extra = {"reasoning_content": "r"} if fake.dialect in ("deepseek", "moonshot") else {}
    status, body = chat(fake, messages=tool_history("call_" + "x" * 40, **extra), tools=TOOLS)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "tool result: 21 degrees"


# --------------------------------------------------------------------------- strict: auth and shape


@pytest.mark.parametrize("key", ["sk-wrong-key-123456", None])
def test_bad_or_missing_key(fake: FakeOpenAICompat, key: str | None) -> None:
    status, _, data = http(fake, {"model": fake.models[0], "messages": user("hi")}, key=key)
    body = json.loads(data)
    if fake.dialect == "ollama":
        assert status == 200  # Ollama ignores auth
    elif fake.dialect == "xai":
        assert status == 400
        assert body["code"] == "Client specified an invalid argument"
        assert body["error"].startswith("Incorrect API key provided")
    else:
        assert status == 401 and body["error"]["message"]
    if fake.dialect == "moonshot":
        assert body["error"] == {"message": "Invalid Authentication", "type": "invalid_authentication_error"}


def test_models_endpoint_needs_the_key_too(fakes: dict[str, FakeOpenAICompat]) -> None:
    assert http(fakes["openai"], path="/v1/models", method="GET", key="nope")[0] == 401


def test_malformed_json(fake: FakeOpenAICompat) -> None:
    status, _, data = http(fake, raw=b'{"model": "x", "messages": [')
    assert status == 400
    assert error_message(fake.dialect, json.loads(data))


@pytest.mark.parametrize(
    "body",
    [{"messages": [{"role": "user", "content": "hi"}]}, {"model": "MODEL"}, {"model": "MODEL", "messages": []}],
    ids=["no-model", "no-messages", "empty-messages"],
)
def test_missing_model_or_messages(fake: FakeOpenAICompat, body: dict[str, Any]) -> None:
    if body.get("model") == "MODEL":
        body = {**body, "model": fake.models[0]}
    status, _, data = http(fake, body)
    assert status == 400, data


def test_unknown_model_per_dialect(fake: FakeOpenAICompat) -> None:
    status, body = chat(fake, model="no-such-model", messages=user("hi"))
    if fake.dialect == "deepseek":
        assert status == 400 and body["error"]["message"] == "Model Not Exist"
    else:
        assert status == 404
    if fake.dialect == "openai":
        assert body["error"]["code"] == "model_not_found" and body["error"]["type"] == "invalid_request_error"
    if fake.dialect == "xai":
        assert set(body) == {"code", "error"}
    if fake.dialect == "moonshot":
        assert set(body["error"]) == {"message", "type"}
    if fake.dialect == "ollama":
        assert body["error"]["type"] == "not_found_error"


# --------------------------------------------------------------------------- strict: parameters


def test_openai_reasoning_models_reject_max_tokens_and_temperature(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    for model in ("o3-mini", "gpt-5-mini"):
        status, body = chat(fake, model=model, messages=user("hi"), max_tokens=10)
        assert status == 400 and "max_completion_tokens" in body["error"]["message"]
        assert body["error"]["param"] == "max_tokens"
        status, body = chat(fake, model=model, messages=user("hi"), temperature=0.2)
        assert status == 400 and body["error"]["param"] == "temperature"
        assert chat(fake, model=model, messages=user("hi"), temperature=1, max_completion_tokens=10)[0] == 200
    assert chat(fake, model="gpt-4o-mini", messages=user("hi"), max_tokens=10, temperature=0.2)[0] == 200


def test_openai_reasoning_effort_rules(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    assert chat(fake, model="gpt-4o-mini", messages=user("hi"), reasoning_effort="low")[0] == 400
    assert chat(fake, model="o3-mini", messages=user("hi"), reasoning_effort="ultra")[0] == 400
    assert chat(fake, model="gpt-5-mini", messages=user("hi"), reasoning_effort="xhigh")[0] == 200


def test_stream_options_without_stream(fakes: dict[str, FakeOpenAICompat]) -> None:
    status, body = chat(fakes["openai"], messages=user("hi"), stream_options={"include_usage": True})
    assert status == 400 and body["error"]["param"] == "stream_options"
    assert chat(fakes["openai"], messages=user("hi"), stream=False)[0] == 200
    assert chat(fakes["deepseek"], messages=user("hi"), stream_options={"include_usage": True})[0] == 200


@pytest.mark.parametrize(
    ("param", "value", "camel"),
    [
        ("presence_penalty", 0.0, "presencePenalty"),
        ("frequency_penalty", 0.5, "frequencyPenalty"),
        ("stop", ["x"], "stop"),
    ],
)
def test_xai_reasoning_models_reject_penalties_and_stop(
    fakes: dict[str, FakeOpenAICompat], param: str, value: Any, camel: str
) -> None:
    status, body = chat(fakes["xai"], model="grok-4.3", messages=user("hi"), **{param: value})
    assert status == 400
    assert body == {
        "code": "Client specified an invalid argument",
        "error": f"Model grok-4.3 does not support parameter {camel}.",
    }


def test_xai_stop_allowed_on_non_reasoning_model() -> None:
    with FakeOpenAICompat("xai", models=["grok-4.20-non-reasoning"]) as fake:
        assert chat(fake, messages=user("hi"), stop=["x"])[0] == 200
        assert chat(fake, messages=user("hi"), presence_penalty=0.1)[0] == 400


def test_xai_reasoning_effort_allowlist() -> None:
    with FakeOpenAICompat("xai", models=["grok-4.3", "grok-4", "grok-3-mini"]) as fake:
        assert chat(fake, model="grok-4.3", messages=user("hi"), reasoning_effort="medium")[0] == 200
        assert chat(fake, model="grok-4", messages=user("hi"), reasoning_effort="low")[0] == 400
        assert chat(fake, model="grok-3-mini", messages=user("hi"), reasoning_effort="medium")[0] == 400
        assert chat(fake, model="grok-3-mini", messages=user("hi"), reasoning_effort="high")[0] == 200


@pytest.mark.parametrize(
    ("param", "bad", "good"),
    [
        ("temperature", 0.7, 1),
        ("top_p", 0.9, 0.95),
        ("n", 2, 1),
        ("presence_penalty", 0.5, 0),
        ("frequency_penalty", 1, 0),
    ],
)
def test_moonshot_fixed_sampling(fakes: dict[str, FakeOpenAICompat], param: str, bad: Any, good: Any) -> None:
    fake = fakes["moonshot"]
    for model in ("kimi-k3", "kimi-k2.6"):
        status, body = chat(fake, model=model, messages=user("hi"), **{param: bad})
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"].startswith(f"invalid {param}: only ")
        assert chat(fake, model=model, messages=user("hi"), **{param: good})[0] == 200


def test_moonshot_temperature_message_and_thinking_off_value(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["moonshot"]
    _, body = chat(fake, model="kimi-k3", messages=user("hi"), temperature=0.3)
    assert body["error"]["message"] == "invalid temperature: only 1 is allowed for this model"
    off = {"type": "disabled"}
    assert chat(fake, model="kimi-k2.6", messages=user("hi"), thinking=off, temperature=0.6)[0] == 200
    _, body = chat(fake, model="kimi-k2.6", messages=user("hi"), thinking=off, temperature=1)
    assert body["error"]["message"] == "invalid temperature: only 0.6 is allowed for this model"


def test_moonshot_tool_choice_required(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["moonshot"]
    assert chat(fake, model="kimi-k2.6", messages=user("hi"), tools=TOOLS, tool_choice="required")[0] == 400
    assert chat(fake, model="kimi-k3", messages=user("hi"), tools=TOOLS, tool_choice="required")[0] == 200


def test_ollama_reasoning_effort_values(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["ollama"]
    status, body = chat(fake, model="qwen3:8b", messages=user("hi"), reasoning_effort="minimal")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    _, body = chat(fake, model="qwen3:8b", messages=user("hi"), reasoning_effort="none")
    assert "reasoning" not in body["choices"][0]["message"]


# --------------------------------------------------------------------------- strict: messages


def test_deepseek_requires_reasoning_content_on_tool_call_turns(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["deepseek"]
    status, body = chat(fake, messages=tool_history("call_abc"), tools=TOOLS)
    assert status == 400
    assert body["error"]["message"] == "Missing `reasoning_content` field in the assistant message at message index 1"
    assert body["error"]["code"] == "invalid_request_error"
    assert chat(fake, messages=tool_history("call_abc", reasoning_content="why"), tools=TOOLS)[0] == 200
    no_thinking = {"type": "disabled"}
    assert chat(fake, messages=tool_history("call_abc"), tools=TOOLS, thinking=no_thinking)[0] == 200


def test_moonshot_thinking_models_require_reasoning_content(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["moonshot"]
    status, body = chat(fake, model="kimi-k3", messages=tool_history("call_abc"), tools=TOOLS)
    assert status == 400
    assert "reasoning_content is missing in assistant tool call message at index 1" in body["error"]["message"]
    assert chat(fake, model="kimi-k3", messages=tool_history("call_abc", reasoning_content="r"), tools=TOOLS)[0] == 200
    off = {"type": "disabled"}
    assert chat(fake, model="kimi-k2.6", messages=tool_history("call_abc"), tools=TOOLS, thinking=off)[0] == 200


def test_tool_call_id_must_match_exactly(fake: FakeOpenAICompat) -> None:
    long_id = "call_" + "A1b2C3d4E5" * 4
    history = tool_history(long_id, reasoning_content="r")
    assert chat(fake, messages=history, tools=TOOLS)[0] == 200
    truncated = [*history[:2], {**history[2], "tool_call_id": long_id[:29]}]
    status, body = chat(fake, messages=truncated, tools=TOOLS)
    assert status == 400
    assert long_id[:29] in error_message(fake.dialect, body)


def test_tool_message_needs_a_preceding_tool_call(fake: FakeOpenAICompat) -> None:
    messages = [*user("hi"), {"role": "tool", "tool_call_id": "call_x", "content": "r"}]
    assert chat(fake, messages=messages)[0] == 400


def test_openai_and_deepseek_need_a_response_for_every_tool_call(fakes: dict[str, FakeOpenAICompat]) -> None:
    for dialect in ("openai", "deepseek"):
        history = tool_history("call_abc", reasoning_content="r")
        unanswered = [*history[:2], *user("and now?")]
        status, body = chat(fakes[dialect], messages=unanswered, tools=TOOLS)
        assert status == 400 and "call_abc" in body["error"]["message"]


def test_tool_call_arguments_must_be_a_string(fake: FakeOpenAICompat) -> None:
    history = tool_history("call_abc", reasoning_content="r")
    history[1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    assert chat(fake, messages=history, tools=TOOLS)[0] == 400


def test_unknown_role_and_missing_content(fake: FakeOpenAICompat) -> None:
    assert chat(fake, messages=[{"role": "robot", "content": "hi"}])[0] == 400
    assert chat(fake, messages=[{"role": "user"}])[0] == 400


def test_ollama_accepts_only_data_uri_images(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["ollama"]

    def image(url: str) -> list[dict[str, Any]]:
        parts = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": url}}]
        return [{"role": "user", "content": parts}]

    status, body = chat(fake, messages=image("https://example.com/cat.png"))
    assert status == 400 and body["error"]["message"] == "invalid image input"
    assert chat(fake, messages=image("data:image/png;base64,iVBORw0KGgo="))[0] == 200
    assert chat(fakes["openai"], messages=image("https://example.com/cat.png"))[0] == 200


def test_kimi_k3_rejects_public_image_urls(fakes: dict[str, FakeOpenAICompat]) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    assert chat(fakes["moonshot"], model="kimi-k3", messages=[{"role": "user", "content": parts}])[0] == 400


# --------------------------------------------------------------------------- scripted failures


@pytest.mark.parametrize("status", [400, 500, 503])
def test_fail_trigger(fake: FakeOpenAICompat, status: int) -> None:
    code, body = chat(fake, messages=user(f"FAIL {status}"))
    assert code == status
    if fake.dialect == "xai":
        assert set(body) == {"code", "error"}
    elif fake.dialect == "moonshot":
        assert set(body["error"]) == {"message", "type"}
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    if status == 400 and fake.dialect != "xai":
        assert body["error"]["type"] == "invalid_request_error"


def test_fail_429_has_retry_after(fake: FakeOpenAICompat) -> None:
    status, headers, data = http(fake, {"model": fake.models[0], "messages": user("FAIL 429")})
    assert status == 429 and headers["retry-after"] == "1"
    if fake.dialect == "openai":
        assert json.loads(data)["error"]["code"] == "rate_limit_exceeded"


def test_fail_trigger_in_stream_is_an_http_error(fake: FakeOpenAICompat) -> None:
    status, _, _ = http(fake, {"model": fake.models[0], "messages": user("FAIL 500"), "stream": True})
    assert status == 500


def test_fail_next_queue(fake: FakeOpenAICompat) -> None:
    fake.fail_next(503)
    fake.fail_next(418, {"custom": True}, headers={"x-test": "1"})
    assert chat(fake, messages=user("hi"))[0] == 503
    status, headers, data = http(fake, {"model": fake.models[0], "messages": user("hi")})
    assert (status, json.loads(data), headers["x-test"]) == (418, {"custom": True}, "1")
    assert chat(fake, messages=user("hi"))[0] == 200


def test_slow_non_stream(fakes: dict[str, FakeOpenAICompat]) -> None:
    for dialect in ("openai", "deepseek"):
        start = time.monotonic()
        status, _, data = http(fakes[dialect], {"model": fakes[dialect].models[0], "messages": user("SLOW 200 hi")})
        assert status == 200 and time.monotonic() - start >= 0.2
        if dialect == "deepseek":
            assert data.startswith(b"\n")  # keep-alive blank lines before the body (§5.4)
        assert json.loads(data)["choices"][0]["message"]["content"] == "echo: SLOW 200 hi"


async def test_slow_stream_spaces_chunks(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    arrivals: list[float] = []
    body = {"model": "gpt-4o-mini", "messages": user("SLOW 100 a b"), "stream": True}
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        async with session.post(fake.chat_url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 6
    assert arrivals[-1] - arrivals[0] >= 0.4


async def test_cut_drops_the_stream(fake: FakeOpenAICompat) -> None:
    body = {"model": fake.models[0], "messages": user("CUT a b c d e"), "stream": True}
    auth = {"Authorization": f"Bearer {KEY}"}
    received = b""
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.root_url + "/v1/chat/completions", json=body, headers=auth) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in resp.content:
                    received += line
    events = chunks(sse(received))
    contents = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    assert [c for c in contents if c] == ["echo: ", "CUT "]
    assert b"[DONE]" not in received and b'finish_reason":"stop' not in received


async def test_cut_drops_a_non_stream_body(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    body = {"model": "gpt-4o-mini", "messages": user("CUT")}
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.chat_url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


def test_mid_stream_error(fake: FakeOpenAICompat) -> None:
    events = stream(fake, messages=user("MIDERROR a b c"))
    data = chunks(events)
    assert "error" in data[-1] and data[-1]["error"]["message"]
    content = [c["choices"][0]["delta"].get("content") for c in data[:-1] if c.get("choices")]
    assert [c for c in content if c] == ["echo: "]
    assert "[DONE]" not in events


# --------------------------------------------------------------------------- streaming shapes


def test_stream_chunk_order_and_words(fake: FakeOpenAICompat) -> None:
    model = {"deepseek": "deepseek-flash", "moonshot": "kimi-k2.6", "ollama": "llama3.2"}.get(fake.dialect)
    events = stream(fake, model=model or fake.models[0], messages=user("WORDS 20"), thinking={"type": "disabled"})
    assert events[-1] == "[DONE]"
    data = chunks(events)
    assert len({c["id"] for c in data}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in data)
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"].get("content") for c in data if c["choices"]]
    content_chunks = [t for t in texts if t]
    assert len(content_chunks) == 20
    assert "".join(content_chunks) == " ".join(f"word{i}" for i in range(1, 21))
    finishes = [c["choices"][0]["finish_reason"] for c in data if c["choices"]]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1


def test_openai_stream_usage_only_with_include_usage(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    without = chunks(stream(fake, messages=user("a b")))
    assert all("usage" not in c for c in without)
    assert all(c["choices"] for c in without)
    assert all("obfuscation" in c for c in without)
    with_usage = chunks(stream(fake, messages=user("a b"), stream_options={"include_usage": True}))
    assert all(c["usage"] is None for c in with_usage[:-1])
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] > 0
    plain = chunks(stream(fake, messages=user("a"), stream_options={"include_obfuscation": False}))
    assert all("obfuscation" not in c for c in plain)


def test_openai_stream_tool_call_fragments(fakes: dict[str, FakeOpenAICompat]) -> None:
    data = chunks(stream(fakes["openai"], messages=user("call tool"), tools=TOOLS))
    deltas = [d for c in data for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(deltas) > 2 and all("id" not in d for d in deltas[1:])
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert data[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_deepseek_stream_usage_keepalive_and_reasoning_first(fakes: dict[str, FakeOpenAICompat]) -> None:
    events = stream(fakes["deepseek"], messages=user("a b"))
    assert events[0] == ": keep-alive"
    data = chunks(events)
    kinds = [
        "reasoning" if c["choices"][0]["delta"].get("reasoning_content") else "content"
        for c in data
        if c["choices"][0]["delta"].get("reasoning_content") or c["choices"][0]["delta"].get("content")
    ]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning") and kinds[0] == "reasoning"
    finish = data[-1]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"]["prompt_cache_miss_tokens"] >= 0
    assert all("usage" not in c for c in data[:-1])  # absent without include_usage
    asked = chunks(stream(fakes["deepseek"], messages=user("a"), stream_options={"include_usage": True}))
    assert all(c["usage"] is None for c in asked[:-1]) and asked[-1]["usage"]
    assert len(asked[-1]["choices"]) == 1


def test_moonshot_stream_usage_in_choice(fakes: dict[str, FakeOpenAICompat]) -> None:
    data = chunks(stream(fakes["moonshot"], model="kimi-k3", messages=user("a b")))
    finish = data[-1]
    assert "usage" not in finish
    assert finish["choices"][0]["usage"]["cached_tokens"] == 0
    assert finish["choices"][0]["usage"]["total_tokens"] > 0
    reasoning = [c for c in data if c["choices"][0]["delta"].get("reasoning_content")]
    assert reasoning


def test_xai_stream_usage_chunk(fakes: dict[str, FakeOpenAICompat]) -> None:
    data = chunks(stream(fakes["xai"], messages=user("a b"), stream_options={"include_usage": True}))
    usage = data[-1]["usage"]
    assert data[-1]["choices"] == []
    assert usage["completion_tokens"] == 3 and usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert all("usage" not in c for c in chunks(stream(fakes["xai"], messages=user("a"))))


def test_ollama_stream_shape(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["ollama"]
    data = chunks(stream(fake, model="qwen3:8b", messages=user("call tool"), tools=TOOLS))
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in data)
    assert data[0]["choices"][0]["delta"].get("reasoning")
    tool_chunks = [c for c in data if c["choices"][0]["delta"].get("tool_calls")]
    assert len(tool_chunks) == 1  # whole, in one delta
    call = tool_chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert call["index"] == 0 and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert data[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" not in c for c in data)
    with_usage = chunks(stream(fake, messages=user("hi"), stream_options={"include_usage": True}))
    assert with_usage[-1]["choices"] == [] and set(with_usage[-1]["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


# --------------------------------------------------------------------------- official SDK


def test_sdk_non_stream(fake: FakeOpenAICompat) -> None:
    completion = sdk(fake).chat.completions.create(model=fake.models[0], messages=user("hello sdk"))  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "echo: hello sdk"
    assert completion.usage is not None and completion.usage.prompt_tokens == 12


def test_sdk_stream(fake: FakeOpenAICompat) -> None:
    events = sdk(fake).chat.completions.create(
        model=fake.models[0],
        messages=user("one two three"),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in events:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
            extra = chunk.choices[0].model_extra or {}
            usage = usage or (extra.get("usage") and openai.types.CompletionUsage(**extra["usage"]))
    assert text == "echo: one two three"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


def test_sdk_tool_call_round_trip(fake: FakeOpenAICompat) -> None:
    client = sdk(fake)
    model = fake.models[0]
    messages: list[dict[str, Any]] = user("call tool please")
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]  # type: ignore[index]
    assert len(call.id) == 45 and json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages.append(message.model_dump(exclude_none=True))  # keeps reasoning_content / reasoning extras
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].message.content == "tool result: sunny"


def test_sdk_streamed_tool_call(fake: FakeOpenAICompat) -> None:
    events = sdk(fake).chat.completions.create(
        model=fake.models[0],
        messages=user("call tool"),  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    ids, args, finish = [], "", None
    for chunk in events:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.id:
                ids.append(delta.id)
            if delta.function and delta.function.arguments:
                args += delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1 and len(ids[0]) == 45
    assert json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


def test_sdk_error_classes(fakes: dict[str, FakeOpenAICompat]) -> None:
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        sdk(fakes["openai"]).chat.completions.create(model="o3-mini", messages=user("hi"), max_tokens=5)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        sdk(fakes["openai"]).chat.completions.create(model="nope", messages=user("hi"))  # type: ignore[arg-type]
    bad_key = openai.OpenAI(base_url=fakes["xai"].base_url, api_key="xai-wrong", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        bad_key.chat.completions.create(model="grok-4.3", messages=user("hi"))  # type: ignore[arg-type]
    # Flat xAI body: the SDK keeps the bare "error" string as the body and has no message to show.
    assert str(raised.value.body).startswith("Incorrect API key")
    bad_key = openai.OpenAI(base_url=fakes["moonshot"].base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model="kimi-k3", messages=user("hi"))  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        sdk(fakes["deepseek"]).chat.completions.create(model="deepseek-flash", messages=user("FAIL 429"))  # type: ignore[arg-type]


def test_sdk_raises_on_mid_stream_error(fakes: dict[str, FakeOpenAICompat]) -> None:
    events = sdk(fakes["openai"]).chat.completions.create(
        model="gpt-4o-mini",
        messages=user("MIDERROR"),  # type: ignore[arg-type]
        stream=True,
    )
    with pytest.raises(openai.APIError):
        for _ in events:
            pass


def test_sdk_models(fake: FakeOpenAICompat) -> None:
    client = sdk(fake)
    assert [m.id for m in client.models.list()] == fake.models
    assert client.models.retrieve(fake.models[0]).owned_by


# --------------------------------------------------------------------------- embeddings, images, responses


def post(fake: FakeOpenAICompat, path: str, body: Any) -> tuple[int, Any]:
    status, _, data = http(fake, body, path=path)
    return status, json.loads(data)


def responses_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) pairs of a Responses stream; asserts each name repeats the payload's type."""
    out: list[tuple[str, dict[str, Any]]] = []
    for block in data.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line)
        if lines:
            payload = json.loads(lines["data"])
            assert lines["event"] == payload["type"]
            out.append((lines["event"], payload))
    return out


@pytest.mark.parametrize(("dialect", "path"), [("deepseek", "/embeddings"), ("moonshot", "/v1/embeddings"),
                                               ("xai", "/v1/embeddings"), ("deepseek", "/images/generations"),
                                               ("moonshot", "/v1/images/generations"), ("deepseek", "/v1/responses"),
                                               ("ollama", "/v1/responses")])  # fmt: skip
def test_dialects_without_an_endpoint_answer_404(fakes: dict[str, FakeOpenAICompat], dialect: str, path: str) -> None:
    status, _, _ = http(fakes[dialect], {"model": "m", "input": "x", "prompt": "x"}, path=path)
    assert status == 404


def test_embeddings_are_deterministic_and_sized_per_model(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    body = {"model": "text-embedding-3-small", "input": ["one two", "three"], "encoding_format": "float"}
    status, first = post(fake, "/v1/embeddings", body)
    _, second = post(fake, "/v1/embeddings", body)
    assert status == 200 and first["data"] == second["data"]
    assert [len(d["embedding"]) for d in first["data"]] == [1536, 1536]
    assert first["data"][0]["embedding"] != first["data"][1]["embedding"]
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    _, small = post(fake, "/v1/embeddings", {**body, "dimensions": 8})
    assert len(small["data"][0]["embedding"]) == 8


def test_embeddings_base64_decodes_to_the_float_vector(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    floats = sdk(fake).embeddings.create(model="text-embedding-3-small", input="hi", encoding_format="float")
    assert fake.last_request.body["encoding_format"] == "float"
    default = sdk(fake).embeddings.create(model="text-embedding-3-small", input="hi")
    assert fake.last_request.body["encoding_format"] == "base64"  # the SDK's default
    assert default.data[0].embedding == floats.data[0].embedding


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 256}, "dimensions"),
    ],
)
def test_embeddings_reject_what_openai_rejects(
    fakes: dict[str, FakeOpenAICompat], body: dict[str, Any], param: str
) -> None:
    status, error = post(fakes["openai"], "/v1/embeddings", body)
    assert status == 400 and error["error"]["param"] == param


def test_embeddings_reject_an_empty_string(fakes: dict[str, FakeOpenAICompat]) -> None:
    status, _ = post(fakes["openai"], "/v1/embeddings", {"model": "text-embedding-3-small", "input": ""})
    assert status == 400


def test_ollama_embeddings(fakes: dict[str, FakeOpenAICompat]) -> None:
    status, body = post(fakes["ollama"], "/v1/embeddings", {"model": "nomic-embed-text", "input": "hello"})
    assert status == 200 and len(body["data"][0]["embedding"]) == 768


def test_images_b64_json_with_gpt_image_usage(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    result = sdk(fake).images.generate(model="gpt-image-1.5", prompt="a red fox", n=2, response_format="b64_json")
    assert len(result.data) == 2 and result.data[0].b64_json
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    assert result.usage is not None and result.usage.input_tokens == 3 and result.usage.output_tokens == 2 * 1056


@pytest.mark.parametrize(
    ("dialect", "body", "param"),
    [
        ("openai", {"model": "gpt-image-1.5", "prompt": "x", "n": 11}, "n"),
        ("openai", {"model": "gpt-image-1.5", "prompt": "x", "n": 0}, "n"),
        ("openai", {"model": "gpt-image-1.5", "prompt": "x", "size": "256x256"}, "size"),
        ("openai", {"model": "gpt-image-1.5", "prompt": "x", "response_format": "url"}, "response_format"),
        ("openai", {"model": "gpt-image-1.5"}, "prompt"),
        ("xai", {"model": "grok-imagine-image", "prompt": "x", "size": "1024x1024"}, None),
        ("ollama", {"model": "x/z-image-turbo", "prompt": "x", "n": 2}, None),
    ],
)
def test_images_reject_what_the_upstream_rejects(
    fakes: dict[str, FakeOpenAICompat], dialect: str, body: dict[str, Any], param: str | None
) -> None:
    status, error = post(fakes[dialect], "/v1/images/generations", body)
    assert status == 400
    if param is not None:
        assert error["error"]["param"] == param


def test_xai_images_default_to_urls_without_usage(fakes: dict[str, FakeOpenAICompat]) -> None:
    status, body = post(fakes["xai"], "/v1/images/generations", {"model": "grok-imagine-image", "prompt": "x"})
    assert status == 200 and body["data"][0]["url"].startswith("https://") and "usage" not in body


def test_responses_body_has_output_text_and_usage(fakes: dict[str, FakeOpenAICompat]) -> None:
    response = sdk(fakes["openai"]).responses.create(model="gpt-5-mini", input="hello there", instructions="be brief")
    assert response.output_text == "echo: hello there" and response.status == "completed"
    assert response.usage is not None
    assert response.usage.input_tokens == 14 and response.usage.output_tokens_details.reasoning_tokens == 4
    assert response.usage.output_tokens == 3 + 4


def test_responses_stream_event_order_and_no_done(fakes: dict[str, FakeOpenAICompat]) -> None:
    status, _, data = http(
        fakes["openai"], {"model": "gpt-4o-mini", "input": "a b c", "stream": True}, path="/v1/responses"
    )
    assert status == 200 and b"[DONE]" not in data
    events = responses_sse(data)
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    text = "".join(p["delta"] for name, p in events if name == "response.output_text.delta")
    assert text == "echo: a b c"
    assert events[-1][1]["response"]["usage"]["output_tokens"] == 4


def test_responses_stream_max_output_tokens_ends_incomplete(fakes: dict[str, FakeOpenAICompat]) -> None:
    body = {"model": "gpt-4o-mini", "input": "WORDS 40", "stream": True, "max_output_tokens": 16}
    _, _, data = http(fakes["openai"], body, path="/v1/responses")
    name, payload = responses_sse(data)[-1]
    assert name == "response.incomplete"
    assert payload["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_stream_triggers(fakes: dict[str, FakeOpenAICompat]) -> None:
    fake = fakes["openai"]
    status, _, _ = http(fake, {"model": "gpt-4o-mini", "input": "FAIL 429", "stream": True}, path="/v1/responses")
    assert status == 429
    _, _, data = http(fake, {"model": "gpt-4o-mini", "input": "MIDERROR a b", "stream": True}, path="/v1/responses")
    name, payload = responses_sse(data)[-1]
    assert name == "error" and payload["error"]["code"] == "server_error"
    with pytest.raises(openai.APIConnectionError):
        list(sdk(fake).responses.create(model="gpt-4o-mini", input="CUT a b c d", stream=True))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "input"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({"model": "gpt-4o-mini", "input": "x", "max_tokens": 50}, "max_tokens"),
        ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 5}, "max_output_tokens"),
        ({"model": "gpt-4o-mini", "input": "x", "stream_options": {}}, "stream_options"),
    ],
)
def test_responses_reject_what_openai_rejects(
    fakes: dict[str, FakeOpenAICompat], body: dict[str, Any], param: str
) -> None:
    status, error = post(fakes["openai"], "/v1/responses", body)
    assert status == 400 and error["error"]["param"] == param

"""The official OpenAI SDK drives the real gateway in front of the strict fake Gemini server."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.gemini import PNG_1X1, SKIP_SIGNATURE, FakeGemini
from tests.support import Gateway, echoed_assistant

TOOLS: list[Any] = [
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
            "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC"]}}},
        },
    },
]


class GeminiStack:
    def __init__(self, gateway: Gateway, fake: FakeGemini, images: str) -> None:
        self.gateway = gateway
        self.fake = fake
        self.images = images  # base URL of a loopback server with /cat.png, /page.html

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0)


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/cat.png":
            body, kind = PNG_1X1, "image/png"
        else:
            body, kind = b"<html></html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def gemini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeminiStack]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with FakeGemini() as fake:
        tmp: Path = tmp_path_factory.mktemp("gemini")
        # the image server is on loopback: allowed here; the default refusal is pinned below
        env = {
            "GEMINI_API_KEY": fake.api_key,
            "GEMINI_BASE_URL": fake.base_url,
            "GOPHERGATE_MEDIA_FETCH_ALLOW_PRIVATE": "true",
        }
        gateway = Gateway(tmp, env=env)
        try:
            gateway.start()
            yield GeminiStack(gateway, fake, f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            gateway.stop()
            server.shutdown()


def test_plain_chat(gemini: GeminiStack) -> None:
    raw = gemini.client().chat.completions.with_raw_response.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        temperature=0.3,
        max_tokens=50,
        stop=["END"],
    )
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "gemini-2.5-flash"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    sent = gemini.fake.last_request
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == gemini.fake.api_key
    assert sent.body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent.body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["END"]}
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    # 2.5 models think by default: the thought tokens are inside completion_tokens (providers.md §3.3).
    assert usage.completion_tokens_details.reasoning_tokens == 12
    assert usage.completion_tokens == 3 + 12
    row = gemini.gateway.row_for(raw.headers["x-request-id"])
    assert (row["provider"], row["model"], row["status"]) == ("gemini", "gemini-2.5-flash", 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        12,
    )
    assert row["estimated"] in (False, 0) and row["finish_reason"] == "stop"
    # gemini-2.5-flash per 1M: input 0.3, output 2.5 (thoughts billed as output: no separate reasoning price)
    expected = (Decimal("0.3") * usage.prompt_tokens + Decimal("2.5") * usage.completion_tokens) / 10**6
    assert Decimal(str(row["cost_usd"])) == expected == Decimal(raw.headers["x-gophergate-cost-usd"])
    assert Decimal(str(row["cost_reasoning_usd"])) == Decimal("2.5") * 12 / 10**6
    assert Decimal(str((usage.model_extra or {})["cost"])) == expected


def test_models_prefix_spelling_is_accepted(gemini: GeminiStack) -> None:
    completion = gemini.client().chat.completions.create(
        model="models/gemini-2.0-flash", messages=[{"role": "user", "content": "prefixed"}]
    )
    assert completion.choices[0].message.content == "echo: prefixed"
    assert gemini.fake.last_request.path == "/v1beta/models/gemini-2.0-flash:generateContent"


def test_models_are_listed(gemini: GeminiStack) -> None:
    ids = {m.id for m in gemini.client().models.list()}
    assert {"gemini-2.5-flash", "gemini-3-pro-preview", "gemini-embedding-001"} <= ids


@pytest.mark.parametrize("framing", ["", "LFONLY", "USAGEONLY"])
def test_stream_with_usage(gemini: GeminiStack, framing: str) -> None:
    stream = gemini.client().chat.completions.with_raw_response.create(
        model="gemini-2.0-flash",
        messages=[{"role": "user", "content": f"one two three {framing}".strip()}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream.parse())
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: one two three {framing}".strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    # The last usageMetadata wins (running totals, never summed): the answer's word count.
    assert last.usage.completion_tokens == len(text.split())
    assert gemini.fake.last_request.query == {"alt": "sse"}
    row = gemini.gateway.row_for(stream.headers["x-request-id"])
    assert row["stream"] in (True, 1) and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (last.usage.prompt_tokens, last.usage.completion_tokens)


def test_stream_without_include_usage_sends_no_usage_chunk(gemini: GeminiStack) -> None:
    chunks = list(
        gemini.client().chat.completions.create(
            model="gemini-2.0-flash", messages=[{"role": "user", "content": "quiet"}], stream=True
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_two_step_tool_conversation_with_parallel_calls_replays_signatures(gemini: GeminiStack) -> None:
    client = gemini.client()
    messages: list[Any] = [{"role": "user", "content": "call all tools please"}]
    first = client.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert len({c.id for c in calls}) == 2 and all(c.id.startswith("call_") for c in calls)
    messages.append(echoed_assistant(choice.message))
    messages.append({"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"})
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 3}'})
    second = client.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == 'tool result: get_time={"result":"12:00"}, get_weather={"temp":3}'
    sent = gemini.fake.last_request.body["contents"]
    model_turn = sent[1]["parts"]
    assert model_turn[0]["thoughtSignature"] in gemini.fake.issued_signatures  # the real one, unchanged
    assert model_turn[0]["thoughtSignature"] != SKIP_SIGNATURE
    assert "thoughtSignature" not in model_turn[1]
    assert [p["functionResponse"]["name"] for p in sent[2]["parts"]] == ["get_time", "get_weather"]


def test_streamed_tool_calls_arrive_whole_and_their_signature_is_replayed(gemini: GeminiStack) -> None:
    client = gemini.client()
    messages: list[Any] = [{"role": "user", "content": "call tool"}]
    chunks = list(client.chat.completions.create(model="gemini-3-flash", messages=messages, tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and len(deltas[0]) == 1
    call = deltas[0][0]
    assert call.index == 0 and call.id and call.function is not None
    assert call.function.name == "get_weather" and json.loads(call.function.arguments or "") == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    answer = client.chat.completions.create(model="gemini-3-flash", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == 'tool result: get_weather={"result":"sunny"}'
    part = gemini.fake.last_request.body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] in gemini.fake.issued_signatures


def test_gemini3_history_from_elsewhere_gets_the_sentinel_signature(gemini: GeminiStack) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_foreign", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_foreign", "content": "rain"},
    ]
    answer = gemini.client().chat.completions.create(model="gemini-3-flash", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == 'tool result: get_weather={"result":"rain"}'


def test_named_tool_choice_forces_that_function(gemini: GeminiStack) -> None:
    completion = gemini.client().chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "call tool"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_time"
    assert gemini.fake.last_request.body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    }


def test_image_input_as_data_uri_and_as_url(gemini: GeminiStack) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
    completion = gemini.client().chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": data_uri}},
                    {"type": "image_url", "image_url": {"url": gemini.images + "/cat.png"}},
                ],
            }
        ],
    )
    size = len(PNG_1X1)
    assert (
        completion.choices[0].message.content == f"echo: what is this [image/png {size} bytes] [image/png {size} bytes]"
    )


def test_pdf_file_part_is_inlined(gemini: GeminiStack) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    completion = gemini.client().chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "summarise"},
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}", "filename": "a.pdf"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "echo: summarise [application/pdf 13 bytes]"


def test_an_image_url_that_is_not_an_image_is_a_400_naming_the_part(gemini: GeminiStack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gemini.client().chat.completions.create(
            model="gemini-2.5-flash",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": gemini.images + "/page.html"}},
                    ],
                }
            ],
        )
    assert info.value.param == "messages[0].content[1].image_url.url"


def test_json_output_with_a_schema(gemini: GeminiStack) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    completion = gemini.client().chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Paris", "n": 1}
    config = gemini.fake.last_request.body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_reasoning_effort_returns_reasoning_content(gemini: GeminiStack) -> None:
    completion = gemini.client().chat.completions.create(
        model="gemini-3-flash", messages=[{"role": "user", "content": "ponder"}], reasoning_effort="high"
    )
    message = completion.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == "Thinking about: ponder"
    assert message.content == "echo: ponder"
    thinking = gemini.fake.last_request.body["generationConfig"]["thinkingConfig"]
    assert thinking == {"thinkingLevel": "HIGH", "includeThoughts": True}


def test_blocked_prompt_is_a_200_with_content_filter(gemini: GeminiStack) -> None:
    completion = gemini.client().chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "BLOCK this"}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter" and choice.message.content == ""
    chunks = list(
        gemini.client().chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "BLOCK this"}], stream=True
        )
    )
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_rate_limit_is_429_with_retry_after(gemini: GeminiStack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        gemini.client().chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "FAIL 429"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    row = gemini.gateway.row_for(info.value.response.headers["x-request-id"])
    assert row["status"] == 429


def test_upstream_400_keeps_its_status(gemini: GeminiStack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gemini.client().chat.completions.create(
            model="gemini-2.0-flash", messages=[{"role": "user", "content": "x"}], reasoning_effort="low"
        )
    assert "Thinking is not supported" in info.value.message


@pytest.mark.parametrize("trigger", ["MIDERROR", "RAWERROR", "CUT", "NOFINISH"])
def test_broken_streams_end_with_an_error_not_a_hang(gemini: GeminiStack, trigger: str) -> None:
    response = httpx.post(
        gemini.gateway.base_url + "/chat/completions",
        json={
            "model": "gemini-2.0-flash",
            "stream": True,
            "messages": [{"role": "user", "content": f"a b c {trigger}"}],
        },
        headers={"Authorization": f"Bearer {gemini.gateway.key}"},
        timeout=30,
    )
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_error"
    assert "[DONE]" not in events  # the stream is not complete: no sentinel after the error (issue 14, defect 8)
    assert not any('"finish_reason":"stop"' in e for e in events)
    with pytest.raises(openai.APIError):
        list(
            gemini.client().chat.completions.create(
                model="gemini-2.0-flash", messages=[{"role": "user", "content": f"a b c {trigger}"}], stream=True
            )
        )
    row = gemini.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"


def test_bad_gemini_key_is_502_about_the_gateway_credentials(tmp_path: Path, gemini: GeminiStack) -> None:
    env = {"GEMINI_API_KEY": "AIza-not-the-right-key-0000000000000", "GEMINI_BASE_URL": gemini.fake.base_url}
    gateway = Gateway(tmp_path, env=env).start()
    try:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 502
        assert "credentials" in info.value.message and "GEMINI_API_KEY" in info.value.message
        assert "AIza-not" not in info.value.response.text
    finally:
        gateway.stop()


def test_client_disconnect_mid_stream_is_recorded_with_the_tokens_seen(gemini: GeminiStack) -> None:
    body = json.dumps(
        {"model": "gemini-2.0-flash", "stream": True, "messages": [{"role": "user", "content": "SLOW 300 w1 w2 w3 w4"}]}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", gemini.gateway.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {gemini.gateway.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b"echo" not in received:
        received += sock.recv(65536)
    request_id = received.split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    sock.close()
    row = gemini.gateway.row_for(request_id)
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["latency_ms"] < 1500  # the upstream stream was abandoned, not read to its end


def test_image_urls_on_internal_addresses_are_refused_by_default(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with FakeGemini() as fake:
        gateway = Gateway(tmp_path, env={"GEMINI_API_KEY": fake.api_key, "GEMINI_BASE_URL": fake.base_url})
        try:
            gateway.start()
            client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
            port = server.server_address[1]
            for url in (
                f"http://127.0.0.1:{port}/cat.png",
                f"http://localhost:{port}/cat.png",
                "http://169.254.169.254/x",
            ):
                with pytest.raises(openai.BadRequestError) as info:
                    client.chat.completions.create(
                        model="gemini-2.5-flash",
                        messages=[
                            {
                                "role": "user",
                                "content": [
                                    {"type": "text", "text": "what is this"},
                                    {"type": "image_url", "image_url": {"url": url}},
                                ],
                            }
                        ],
                    )
                error = info.value.body
                assert isinstance(error, dict)
                assert error["param"] == "messages[0].content[1].image_url.url"
                assert "public address" in error["message"]
            assert fake.generate_requests == []  # nothing reached Gemini
        finally:
            gateway.stop()
            server.shutdown()


def test_embeddings_through_the_gateway_are_batched_logged_and_priced(gemini: GeminiStack) -> None:
    raw = gemini.client().embeddings.with_raw_response.create(
        model="gemini-embedding-001", input=["first text", "second text here"]
    )
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 0 for d in result.data)  # the SDK decoded the default base64
    sent = gemini.fake.last_request
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert len(sent.body["requests"]) == 2
    row = gemini.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["status"]) == ("embeddings", "gemini", 200)
    assert row["prompt_tokens"] > 0
    # gemini-embedding-001: $0.15 per 1M input tokens (tests/fixtures/models-dev-mini.json)
    assert Decimal(str(row["cost_usd"])) == Decimal("0.15") * row["prompt_tokens"] / 10**6


def test_image_generation_through_the_gateway_is_n_calls_returning_b64_json(gemini: GeminiStack) -> None:
    before = len(gemini.fake.generate_requests)
    raw = gemini.client().images.with_raw_response.generate(
        model="gemini-3.1-flash-image", prompt="a small cat", n=2, response_format="b64_json"
    )
    images = raw.parse()
    assert images.data is not None and len(images.data) == 2
    assert all(base64.b64decode(d.b64_json or "").startswith(b"\x89PNG") for d in images.data)
    calls = gemini.fake.generate_requests[before:]
    assert len(calls) == 2 and all("IMAGE" in c.body["generationConfig"]["responseModalities"] for c in calls)
    row = gemini.gateway.row_for(raw.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["status"]) == ("images.generations", "gemini", 200)

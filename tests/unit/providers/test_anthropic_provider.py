"""The Anthropic provider over an in-memory transport (the HTTP client is the seam), and its error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gophergate.core.calls import ChatCall, Meter
from gophergate.core.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from gophergate.core.usage import Cost
from gophergate.providers.anthropic import AnthropicProvider, ThinkingStore
from gophergate.providers.anthropic.errors import anthropic_error
from gophergate.providers.base import Provider
from gophergate.providers.transport import UpstreamResponse

KEY = "sk-ant-api03-secretsecret"


class _Response:
    def __init__(self, status: int, chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self._chunks = chunks
        self._headers = headers or {}
        self.closed_for_reuse: bool | None = None

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self, *, reuse: bool) -> None:
        self.closed_for_reuse = reuse


class _Client:
    def __init__(self, *responses: _Response) -> None:
        self.responses = list(responses)
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        self.sent.append((method, url, headers, orjson.loads(body) if body else None))
        return self.responses.pop(0)

    async def close(self) -> None:
        return None


def provider(
    client: _Client, store: ThinkingStore | None = None, base: str = "http://up.test/v1/"
) -> AnthropicProvider:
    return AnthropicProvider(base_url=base, api_key=KEY, client=client, api_version="2026-10-21", thinking_store=store)


def call(stream: bool = False, **body: Any) -> ChatCall:
    data = {"model": "claude-opus-4-7", "messages": [{"role": "user", "content": "hi"}], **body}
    return ChatCall(data, "claude-opus-4-7", stream, True, "req-1", max_output_tokens=32000)


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-7",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "sig"},
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 5, "output_tokens": 7},
}


def test_provider_satisfies_the_protocol() -> None:
    assert isinstance(provider(_Client()), Provider)


async def test_chat_sends_headers_and_stores_thinking_for_the_tool_calls() -> None:
    client = _Client(_Response(200, [orjson.dumps(MESSAGE)]))
    store = ThinkingStore()
    meter = Meter()
    body = orjson.loads(await provider(client, store).chat(call(temperature=0.5), meter))
    method, url, headers, sent = client.sent[0]
    assert (method, url) == ("POST", "http://up.test/v1/messages"), "a base ending in /v1 is not doubled"
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2026-10-21"
    assert sent["max_tokens"] == 32000 and "temperature" not in sent
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "toolu_9"
    assert store.get("toolu_9") == ({"type": "thinking", "thinking": "hm", "signature": "sig"},)
    assert meter.usage is not None and meter.usage.prompt == 5 and meter.finish_reason == "tool_calls"


async def test_chat_adds_cost_to_usage_when_priced() -> None:
    from decimal import Decimal

    client = _Client(_Response(200, [orjson.dumps(MESSAGE)]))
    priced = call()
    priced.pricer = lambda usage: (Cost(Decimal("0.000123"), *[Decimal(0)] * 4), "test")
    body = orjson.loads(await provider(client).chat(priced, Meter()))
    assert body["usage"]["cost"] == 0.000123


async def test_stream_error_status_raises_before_streaming() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    client = _Client(_Response(529, [orjson.dumps(error)], {"retry-after": "3"}))
    with pytest.raises(GatewayError) as info:
        await provider(client).open_chat_stream(call(stream=True), Meter())
    assert info.value.status == 503 and info.value.headers == {"retry-after": "3"}


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


STREAM = [
    _sse("message_start", {"message": {"id": "msg_2", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    _sse("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    _sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "plan"}}),
    _sse("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "S"}}),
    _sse("content_block_stop", {"index": 0}),
    _sse(
        "content_block_start",
        {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_S", "name": "f", "input": {}}},
    ),
    _sse("content_block_stop", {"index": 1}),
    _sse("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
    _sse("message_stop", {}),
]


async def test_stream_meters_usage_stores_thinking_and_releases_the_connection() -> None:
    response = _Response(200, STREAM)
    store = ThinkingStore()
    meter = Meter()
    out = b"".join([c async for c in await provider(_Client(response), store).open_chat_stream(call(True), meter)])
    assert b'"finish_reason":"tool_calls"' in out and b'"usage":{"prompt_tokens":3' in out
    assert meter.usage is not None and (meter.usage.prompt, meter.usage.completion) == (3, 9)
    assert meter.stream_error is None and response.closed_for_reuse is True
    assert store.get("toolu_S") == ({"type": "thinking", "thinking": "plan", "signature": "S"},)


async def test_stream_abandoned_by_the_client_still_closes_the_books() -> None:
    response = _Response(200, STREAM)
    meter = Meter()
    chunks = await provider(_Client(response)).open_chat_stream(call(True), meter)
    first = await chunks.__anext__()  # type: ignore[attr-defined]
    assert b'"role":"assistant"' in first
    await chunks.aclose()  # type: ignore[attr-defined]
    assert response.closed_for_reuse is False and meter.usage is None
    assert meter.stream_error is None, "the client left; the upstream did nothing wrong"
    assert meter.upstream_done is not None and meter.output_text == [""]


async def test_list_models_follows_pages() -> None:
    page1 = {"data": [{"id": "a"}, {"id": "b"}], "has_more": True, "last_id": "b"}
    page2 = {"data": [{"id": "c"}], "has_more": False, "last_id": "c"}
    client = _Client(_Response(200, [orjson.dumps(page1)]), _Response(200, [orjson.dumps(page2)]))
    assert await provider(client).list_models() == ["a", "b", "c"]
    assert client.sent[1][1] == "http://up.test/v1/models?limit=1000&after_id=b"


def _err(status: int, etype: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message, **extra}, "request_id": "r"})


@pytest.mark.parametrize(
    ("status", "etype", "expected_status", "expected_code"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (404, "not_found_error", 404, "model_not_found"),
        (413, "request_too_large", 413, "request_too_large"),
        (429, "rate_limit_error", 429, "rate_limit_exceeded"),
        (500, "api_error", 502, "upstream_error"),
        (529, "overloaded_error", 503, "upstream_overloaded"),
        (401, "authentication_error", 502, "upstream_auth_failed"),
        (403, "permission_error", 403, "upstream_auth_failed"),
    ],
)
def test_error_statuses(status: int, etype: str, expected_status: int, expected_code: str) -> None:
    message = "model: claude-nope" if status == 404 else "Something"
    error = anthropic_error("anthropic", status, _err(status, etype, message))
    assert (error.status, error.code) == (expected_status, expected_code)
    assert error.message.startswith("Upstream provider 'anthropic'")


def test_timeout_error_is_a_504() -> None:
    assert isinstance(anthropic_error("anthropic", 504, _err(504, "timeout_error", "slow")), UpstreamTimeout)


def test_spend_cap_429_is_not_a_retryable_429() -> None:
    body = _err(429, "rate_limit_error", "cap", details={"error_code": "enforced_spend_limit_reached"})
    error = anthropic_error("anthropic", 429, body, lambda name: "60")
    assert error.status == 402 and error.code == "enforced_spend_limit_reached" and "retry-after" not in error.headers


def test_rate_limit_passes_retry_after() -> None:
    error = anthropic_error("anthropic", 429, _err(429, "rate_limit_error", "slow down"), {"retry-after": "12"}.get)
    assert error.headers == {"retry-after": "12"}


def test_bad_key_error_never_echoes_the_key() -> None:
    body = _err(401, "authentication_error", f"invalid x-api-key {KEY}")
    error = anthropic_error("anthropic", 401, body, None, provider(_Client())._redact)
    assert isinstance(error, UpstreamUnavailable) and error.status == 502
    assert KEY not in error.message and "ANTHROPIC_API_KEY" in error.message


def test_non_json_error_body_is_kept_short() -> None:
    error = anthropic_error("anthropic", 502, b"<html>" + b"x" * 5000)
    assert error.status == 502 and len(error.message) < 700


async def test_error_body_behind_a_200_is_an_error_not_an_empty_answer() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(GatewayError) as info:
        await provider(_Client(_Response(200, [orjson.dumps(error)]))).chat(call(), Meter())
    assert info.value.status == 503

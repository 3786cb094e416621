"""The provider's stream handling over an in-memory transport (the HTTP client is the seam)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gophergate.core.calls import ChatCall, EndpointCall, Meter
from gophergate.core.errors import GatewayError
from gophergate.core.usage import Cost, Usage
from gophergate.providers.base import SupportsEmbeddings, SupportsImages, SupportsResponses
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.provider import OpenAICompatProvider, OpenAIProvider
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.transport import UpstreamResponse


class _Response:
    status = 200

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.closed_for_reuse: bool | None = None

    def header(self, name: str) -> str | None:
        return None

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self, *, reuse: bool) -> None:
        self.closed_for_reuse = reuse


class _Client:
    def __init__(self, response: _Response) -> None:
        self.response = response

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        return self.response

    async def close(self) -> None:
        return None


async def _run(chunks: list[bytes]) -> tuple[bytes, Meter, _Response]:
    response = _Response(chunks)
    provider = OpenAICompatProvider(
        name="t", base_url="http://x/v1", api_key="k", dialect=get_dialect("openai"),
        client=_Client(response), reasoning_store=ReasoningStore(),
    )  # fmt: skip
    meter = Meter()
    call = ChatCall({"model": "m", "messages": []}, "m", True, False, "r")
    out = b"".join([c async for c in await provider.open_chat_stream(call, meter)])
    return out, meter, response


CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'


async def test_stream_with_finish_reason_but_no_done_is_complete() -> None:
    out, meter, response = await _run([CONTENT, FINISH])
    assert meter.stream_error is None and meter.finish_reason == "stop"
    assert b'"error"' not in out and response.closed_for_reuse is False


async def test_stream_cut_before_finish_ends_with_an_error_event() -> None:
    out, meter, _ = await _run([CONTENT])
    assert meter.stream_error is not None
    assert out.endswith(b"\n\n") and b'"code":"upstream_stream_error"' in out


async def test_done_releases_the_connection_for_reuse() -> None:
    _, meter, response = await _run([CONTENT, FINISH, b"data: [DONE]\n\n"])
    assert meter.stream_error is None and response.closed_for_reuse is True


# -- embeddings, images, responses ------------------------------------------------------------------------------


class _Recording(_Client):
    def __init__(self, response: _Response) -> None:
        super().__init__(response)
        self.sent: list[tuple[str, Any]] = []

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> UpstreamResponse:
        self.sent.append((url, orjson.loads(body) if body else None))
        return self.response


def _provider(response: _Response, dialect: str = "openai") -> tuple[OpenAIProvider, _Recording]:
    client = _Recording(response)
    provider = OpenAIProvider(
        name="t", base_url="http://x/v1", api_key="k", dialect=get_dialect(dialect), client=client
    )
    return provider, client


EMBEDDINGS = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAAAA=="}],"usage":{"prompt_tokens":3,"total_tokens":3}}'  # noqa: E501


async def test_embeddings_replace_the_model_and_relay_the_body_unchanged() -> None:
    provider, client = _provider(_Response([EMBEDDINGS]))
    meter = Meter()
    call = EndpointCall({"model": "alias", "input": "x", "encoding_format": "base64", "user": "u"}, "real", "r")
    out = await provider.embeddings(call, meter)
    assert out == EMBEDDINGS
    assert client.sent == [
        ("http://x/v1/embeddings", {"model": "real", "input": "x", "encoding_format": "base64", "user": "u"})
    ]
    assert meter.usage == Usage(prompt=3) and meter.upstream_started is not None


def _flat(total: str) -> Any:
    """A pricer that bills any usage at ``total`` USD, all of it input."""
    zero = Decimal(0)
    return lambda usage: (Cost(Decimal(total), zero, zero, zero, zero), "test")


async def test_embeddings_usage_gets_the_cost_when_priced() -> None:
    provider, _ = _provider(_Response([EMBEDDINGS]))
    call = EndpointCall({"model": "m", "input": "x"}, "m", "r", pricer=_flat("0.00000006"))
    body = orjson.loads(await provider.embeddings(call, Meter()))
    assert body["usage"]["cost"] == 0.00000006


async def test_images_read_gpt_image_usage() -> None:
    payload = b'{"created":1,"data":[{"b64_json":"x"}],"usage":{"input_tokens":4,"output_tokens":1056}}'
    provider, client = _provider(_Response([payload]))
    meter = Meter()
    assert await provider.generate_images(EndpointCall({"model": "m", "prompt": "p"}, "m", "r"), meter) == payload
    assert client.sent[0][0] == "http://x/v1/images/generations"
    assert meter.usage == Usage(prompt=4, completion=1056)


async def test_an_upstream_error_status_is_raised_as_a_gateway_error() -> None:
    response = _Response([b'{"error":{"message":"nope","type":"invalid_request_error","param":"input","code":null}}'])
    response.status = 400
    provider, _ = _provider(response)
    with pytest.raises(GatewayError) as caught:
        await provider.embeddings(EndpointCall({"model": "m", "input": "x"}, "m", "r"), Meter())
    assert caught.value.status == 400 and caught.value.param == "input"


def test_only_the_openai_dialect_has_the_responses_api() -> None:
    client = _Client(_Response([]))
    compat = OpenAICompatProvider(name="d", base_url="http://x", api_key=None, dialect=get_dialect("deepseek"),
                                  client=client)  # fmt: skip
    assert isinstance(compat, SupportsEmbeddings) and isinstance(compat, SupportsImages)
    assert not isinstance(compat, SupportsResponses)
    assert isinstance(_provider(_Response([]))[0], SupportsResponses)
    assert [d for d in ("openai", "deepseek", "xai", "moonshot", "ollama") if get_dialect(d).responses_api] == [
        "openai"
    ]


async def test_responses_body_usage_and_finish_reason() -> None:
    payload = orjson.dumps(
        {
            "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": {"input_tokens": 7, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1}},
        }
    )
    provider, client = _provider(_Response([payload]))
    meter = Meter()
    out = await provider.responses(EndpointCall({"model": "a", "input": "x"}, "b", "r"), meter)
    assert out == payload and client.sent[0] == ("http://x/v1/responses", {"model": "b", "input": "x"})
    assert meter.usage == Usage(prompt=7, completion=2, reasoning=1) and meter.finish_reason == "stop"


RESP_DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n'
RESP_DONE = (
    b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed",'
    b'"output":[],"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
)


async def _responses_stream(chunks: list[bytes]) -> tuple[bytes, Meter, _Response]:
    response = _Response(chunks)
    provider, _ = _provider(response)
    meter = Meter()
    call = EndpointCall({"model": "m", "input": "x", "stream": True}, "m", "r", stream=True)
    out = b"".join([c async for c in await provider.open_responses_stream(call, meter)])
    return out, meter, response


async def test_responses_stream_is_relayed_verbatim_and_metered() -> None:
    out, meter, response = await _responses_stream([RESP_DELTA, RESP_DONE])
    assert out == RESP_DELTA + RESP_DONE and b"[DONE]" not in out
    assert meter.usage == Usage(prompt=3, completion=1) and meter.stream_error is None
    assert meter.finish_reason == "stop" and response.closed_for_reuse is True


async def test_responses_stream_cut_before_its_terminal_event_ends_with_an_error_event() -> None:
    out, meter, response = await _responses_stream([RESP_DELTA])
    assert out.startswith(RESP_DELTA) and out[len(RESP_DELTA) :].startswith(b"event: error\n")
    assert meter.stream_error is not None and meter.usage is None
    assert meter.output_text == ["hi"] and response.closed_for_reuse is False

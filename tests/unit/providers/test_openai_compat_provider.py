"""The provider's stream handling over an in-memory transport (the HTTP client is the seam)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gophergate.gateway.reasoning_store import ReasoningStore
from gophergate.providers.base import ChatCall, Meter
from gophergate.providers.http_client import UpstreamResponse
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.provider import OpenAICompatProvider


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

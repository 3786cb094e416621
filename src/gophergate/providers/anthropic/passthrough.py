"""The Messages API passed through: for a client that speaks Anthropic's Messages API to a backend that speaks it
too (Anthropic itself; DeepSeek and Moonshot through their Anthropic-compatible endpoints).

The client's body goes on with only ``model`` replaced (``cache_control`` markers, thinking blocks and their
signatures, and fields the gateway does not know reach the backend as the client sent them), and the answer comes
back unchanged; the gateway only reads the usage out of it for the log (providers.md §4.3, §4.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from gophergate.core.calls import ChatCall, Meter
from gophergate.core.errors import GatewayError, UpstreamUnavailable, anthropic_error_type
from gophergate.core.usage import Usage, from_anthropic
from gophergate.providers.anthropic.errors import anthropic_error
from gophergate.providers.anthropic.translate import finish_reason
from gophergate.providers.stream import StreamOutcome, relay_upstream
from gophergate.providers.transport import Transport
from gophergate.providers.upstream import open_upstream_stream, request_json, scrub
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEDecoder

# The client's headers that go on to a Messages backend: the API version it was written against and the beta
# features it opts into (Claude Code sends several).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


def messages_error_event(error_type: str, message: str) -> bytes:
    """An Anthropic ``error`` event: what the Messages API streams when a started answer fails."""
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def without_unsigned_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """The body without the thinking blocks that carry no signature: a conversation that another backend answered
    before (through the gateway's translation, whose thinking blocks have none) would otherwise be refused by
    Anthropic, which checks every signature. The body itself when it has none of them (the usual case)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(_unsigned(m) for m in messages):
        return body
    cleaned = []
    for message in messages:
        if _unsigned(message):
            blocks = [b for b in message["content"] if not _unsigned_block(b)]
            message = {**message, "content": blocks or [{"type": "text", "text": "(no answer)"}]}
        cleaned.append(message)
    return {**body, "messages": cleaned}


def _unsigned_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")


def _unsigned(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(_unsigned_block(b) for b in content)


class MessagesPassthrough:
    """POST /v1/messages and /v1/messages/count_tokens on a backend that speaks the Messages API."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        headers: dict[str, str],
        client: Transport,
        secret: str | None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        counts_tokens: bool = False,
    ) -> None:
        self.name = name
        self.counts_tokens = counts_tokens  # the backend has /v1/messages/count_tokens (Anthropic's own API)
        base = base_url.rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        self.base_url = base
        self._url = base + "/v1/messages"
        self._count_url = base + "/v1/messages/count_tokens"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self._client = client
        self._secret = secret
        self._max_event_bytes = max_event_bytes

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return scrub(text)

    def _map_error(self, status: int, raw: bytes, header: Callable[[str], str | None]) -> GatewayError:
        return anthropic_error(self.name, status, raw, header, self._redact)

    def _request_headers(self, call: ChatCall, stream: bool) -> dict[str, str]:
        headers = self._headers
        if call.client_headers or stream:
            headers = {**headers, **(call.client_headers or {})}
            if stream:
                headers["Accept"] = "text/event-stream"
        return headers

    async def messages(self, call: ChatCall, meter: Meter) -> bytes:
        payload = orjson.dumps({**without_unsigned_thinking(call.body), "model": call.model})
        headers = self._request_headers(call, False)
        data, raw = await request_json(
            self._client, self.name, "POST", self._url, headers, payload, meter, self._map_error
        )
        if data.get("type") == "error":  # an error body behind a 200: a server error
            raise anthropic_error(self.name, 500, raw, lambda _: None, self._redact)
        if data.get("type") != "message":
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an unexpected response.")
        usage = data.get("usage")
        meter.usage = from_anthropic(usage) if isinstance(usage, dict) else None
        content = data.get("content")
        tools = isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
        meter.finish_reason = finish_reason(data.get("stop_reason"), tools)
        if meter.usage is not None:
            call.cost_json(meter.usage)  # the answer goes back unchanged: the cost is in the header only
        elif isinstance(content, list):
            meter.output_text.extend(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return raw

    async def open_stream(self, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
        payload = orjson.dumps({**without_unsigned_thinking(call.body), "model": call.model})
        headers = self._request_headers(call, True)
        resp = await open_upstream_stream(self._client, self.name, self._url, headers, payload, meter, self._map_error)
        reader = PassthroughEvents(self.name, self._max_event_bytes, self._redact)
        return relay_upstream(self.name, resp, reader, meter)

    async def count_tokens(self, body: dict[str, Any], model: str, client_headers: Mapping[str, str]) -> int:
        payload = orjson.dumps({**without_unsigned_thinking(body), "model": model})
        headers = {**self._headers, **client_headers} if client_headers else self._headers
        data, _ = await request_json(
            self._client, self.name, "POST", self._count_url, headers, payload, None, self._map_error, "token count"
        )
        count = data.get("input_tokens")
        if type(count) is not int or count < 0:
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an unexpected token count.")
        return count


class PassthroughEvents:
    """The stream translator of a passed-through Messages stream: every byte goes to the client as it came; the
    events are read on the side for the usage (``message_start`` has the input side, ``message_delta`` the output
    and, on newer API versions, updated input counts), the stop reason, and an in-band ``error`` event."""

    __slots__ = ("_decoder", "_error", "_finish", "_provider", "_redact", "_stopped", "_tools", "_usage")

    def __init__(self, provider: str, max_event_bytes: int, redact: Callable[[str], str]) -> None:
        self._provider = provider
        self._decoder = SSEDecoder(max_event_bytes)
        self._redact = redact
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None
        self._tools = False
        self._stopped = False  # message_stop (or an error event) was seen
        self._error: str | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def translate(self, data: bytes) -> bytes | None:
        try:
            events = self._decoder.feed(data)
        except EventTooLarge as exc:
            self._error = f"Upstream provider '{self._provider}' sent a stream event larger than {exc.limit} bytes."
            self._stopped = True
            return messages_error_event("api_error", self._error)
        for event in events:
            self._read(event.data)
        return data

    def _read(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self._usage.update(message["usage"])
        elif kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                self._tools = True
        elif kind == "message_delta":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            delta = obj.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._finish = delta["stop_reason"]
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            error = obj.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self._error = self._redact(str(message or "stream error"))
            self._stopped = True

    def end(self) -> bytes | None:
        if self._stopped:
            return None
        self._error = f"Upstream provider '{self._provider}' ended the stream before the message was complete."
        return messages_error_event("api_error", self._error)

    def fail(self, message: str) -> bytes | None:
        if self._error is None:
            self._error = message
        return messages_error_event(anthropic_error_type(502), message)

    def outcome(self) -> StreamOutcome:
        usage: Usage | None = from_anthropic(self._usage) if self._usage else None
        complete = self._stopped and self._error is None
        finish = finish_reason(self._finish, self._tools) if self._finish is not None else None
        return StreamOutcome(complete, usage, finish, self._error)

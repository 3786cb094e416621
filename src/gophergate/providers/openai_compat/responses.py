"""The OpenAI Responses API passed through: what the gateway reads from its bodies and streams; no I/O.

Bodies and events go to the client as the upstream sent them. The gateway only reads usage and the outcome
from the terminal object (the body, or the ``response`` of ``response.completed`` / ``response.incomplete`` /
``response.failed``) and notices ``error`` events (providers.md §2.9). The stream has no ``[DONE]``: it is
complete once a terminal event arrived.
"""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.core.calls import EndpointCall
from gophergate.core.redact import REDACTOR, redact
from gophergate.core.usage import Usage, from_responses
from gophergate.providers.stream import StreamOutcome
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES, EventCutter, SSEDecoder

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})

# Event bytes holding none of these need no parsing (a false positive, e.g. inside text, only costs a parse).
_MARKERS: tuple[bytes, ...] = (
    b'"response.completed"',
    b'"response.incomplete"',
    b'"response.failed"',
    b'"error"',
)


def finish_reason(response: dict[str, Any]) -> str | None:
    """The outcome of a Responses object in Chat Completions spelling, for the request log."""
    status = response.get("status")
    if status == "completed":
        output = response.get("output")
        calls = isinstance(output, list) and any(
            isinstance(item, dict) and item.get("type") == "function_call" for item in output
        )
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else reason if isinstance(reason, str) else "length"
    return None


def failure_message(response: dict[str, Any]) -> str | None:
    """Why a ``failed`` response failed, or None when it did not."""
    if response.get("status") != "failed":
        return None
    error = response.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else "the upstream reported the response as failed"


def output_texts(response: dict[str, Any]) -> list[str]:
    """Produced text of a Responses object (message text, function-call arguments, reasoning summaries)."""
    out: list[str] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            out.append(str(item.get("name") or "") + str(item.get("arguments") or ""))
        for part in item.get("content") or item.get("summary") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def add_cost(usage_obj: dict[str, Any], usage: Usage, call: EndpointCall) -> bool:
    """Put ``usage.cost`` into a client-visible usage object; True when it changed."""
    cost = call.cost_json(usage)
    if cost is None:
        return False
    usage_obj["cost"] = cost
    return True


def _plain(complete: bytes) -> bool:
    """Whether every complete event carries one ``data: {...}`` line (a few scans in C, no parse): those may go out
    verbatim; otherwise each event is read, and a malformed one becomes an error event."""
    events = complete.count(b"\n\n")
    return complete.count(b"data: {") == events and complete.count(b"}\n\n") == events


def stream_error_event(message: str, sequence_number: int) -> bytes:
    """A Responses ``error`` event. The payload nests the error as the live API does (the official Python SDK
    raises ``APIError`` on a nested ``error``) and repeats it flat as the API reference documents it."""
    error = {"type": "upstream_error", "code": "upstream_stream_error", "message": message, "param": None}
    payload = {
        "type": "error",
        "code": "upstream_stream_error",
        "message": message,
        "param": None,
        "sequence_number": sequence_number,
        "error": error,
    }
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def _event(name: bytes | None, payload: bytes) -> bytes:
    head = b"event: " + name + b"\n" if name is not None else b""
    return head + b"data: " + payload + b"\n\n"


def _redacted(name: bytes | None, payload: bytes) -> bytes | None:
    """The event with configured secrets redacted, or None when nothing had to change."""
    clean = REDACTOR.event(payload)
    return None if clean is payload else _event(name, clean)


class ResponsesStream:
    """Relays Responses SSE bytes, reading usage and the outcome from the few events that carry them.

    ``feed_bytes`` takes whole network reads and returns complete events: verbatim, except a terminal event
    whose usage gets its ``cost`` when the call has a price. Everything relayed is kept (``raw``) so produced
    text can be recovered for an estimate when no usage arrived.
    """

    __slots__ = (
        "_call",
        "_decoder",
        "_ended",
        "_max",
        "_pending",
        "_provider",
        "done",
        "error",
        "events",
        "finish_reason",
        "raw",
        "usage",
    )

    def __init__(
        self, call: EndpointCall, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "openai"
    ) -> None:
        self._call = call
        self._provider = provider
        self._ended = False  # the upstream body ended (not cut, not abandoned by the client)
        self._max = max_event_bytes
        self._decoder: SSEDecoder | None = None  # used only once an upstream frames with CR
        self._pending = EventCutter(max_event_bytes)
        self.raw: list[bytes] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.done = False  # a terminal event arrived
        self.events = 0  # events relayed so far (a sequence number for an error event of our own)

    def feed_bytes(self, data: bytes) -> bytes | None:
        if self.error is not None:
            return None  # an error ended the stream
        if self._decoder is not None or b"\r" in data:
            return self._decoded(data)
        complete = self._pending.feed(data)
        if not complete:
            return None
        self.raw.append(complete)
        plain = _plain(complete)
        if plain and not any(marker in complete for marker in _MARKERS):
            self.events += complete.count(b"\n\n")
            return complete
        out: list[bytes] = []
        for block in complete.split(b"\n\n")[:-1]:
            if not block.strip(b"\n"):
                continue
            self.events += 1
            event = block + b"\n\n"
            if not plain or any(marker in block for marker in _MARKERS):
                for parsed in SSEDecoder(self._max).feed(event):
                    event = self._inspect(parsed.event, parsed.data) or event
            out.append(event)
            if self.error is not None:
                break
        return b"".join(out)

    def flush(self) -> bytes | None:
        """End of the upstream body: a last event without its blank line still counts."""
        if self.error is not None:
            return None
        tail = self._pending.take()
        if self._decoder is None:
            if not tail.strip():
                return None
            self._decoder = SSEDecoder(self._max)
        return self._decoded(tail, final=True)

    # -- the stream translator contract (providers/stream.py) --------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.error is not None

    def translate(self, data: bytes) -> bytes | None:
        return self.feed_bytes(data)

    def end(self) -> bytes | None:
        self._ended = True
        tail = self.flush()
        if self.done or self.error is not None:
            return tail
        self.error = "the upstream closed the stream before it was complete"
        event = stream_error_event(f"Upstream provider '{self._provider}' {self.error}.", self.events)
        return tail + event if tail else event

    def fail(self, message: str) -> bytes | None:
        self.error = message
        return stream_error_event(message, self.events)

    def outcome(self) -> StreamOutcome:
        texts = self.produced_texts() if self.usage is None else []
        return StreamOutcome(self._ended and self.done, self.usage, self.finish_reason, self.error, texts)

    def _decoded(self, data: bytes, *, final: bool = False) -> bytes | None:
        """The slow path, for CR or CRLF framing: events are decoded and written back with LF framing."""
        if self._decoder is None:
            self._decoder = SSEDecoder(self._max)
            data = self._pending.take() + data
        events = self._decoder.feed(data) + (self._decoder.flush() if final else [])
        out: list[bytes] = []
        for parsed in events:
            self.events += 1
            head = b"event: " + parsed.event + b"\n" if parsed.event is not None else b""
            event = head + b"data: " + parsed.data + b"\n\n"
            out.append(self._inspect(parsed.event, parsed.data) or event)
            if self.error is not None:
                break
        if out:
            self.raw.extend(out)
        return b"".join(out) if out else None

    def _inspect(self, name: bytes | None, payload: bytes) -> bytes | None:
        """Read one event of interest; returns its rewritten bytes when they changed."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # In its place the client gets an error event, and the stream ends: the row's 502 agrees with it.
            self.error = "upstream sent a malformed stream event"
            return stream_error_event("The upstream sent a malformed stream event.", self.events)
        if not isinstance(data, dict):
            return None
        kind = data.get("type")
        if kind == "error" or name == b"error":
            err = data.get("error")
            message = err.get("message") if isinstance(err, dict) else None
            self.error = redact(str(message or data.get("message") or "the upstream reported an error"))
            return _redacted(name, payload)
        response = data.get("response")
        if kind not in TERMINAL_EVENTS or not isinstance(response, dict):
            return None
        self.done = True
        self.finish_reason = finish_reason(response)
        failed = failure_message(response)
        if failed is not None:
            self.error = redact(failed)
        usage_obj = response.get("usage")
        changed = False
        if isinstance(usage_obj, dict):
            self.usage = from_responses(usage_obj)
            if self.usage is not None and add_cost(usage_obj, self.usage, self._call):
                payload, changed = orjson.dumps(data), True
        if failed is not None:
            # A failed response's error is upstream text relayed to the client: it may quote the gateway's key.
            clean = REDACTOR.event(payload)
            changed, payload = changed or clean is not payload, clean
        return _event(name, payload) if changed else None

    def produced_texts(self) -> list[str]:
        """Produced text recovered from the relayed events (for an estimate when no usage arrived)."""
        decoder = SSEDecoder()
        out: list[str] = []
        for parsed in [e for block in self.raw for e in decoder.feed(block)] + decoder.flush():
            try:
                data = orjson.loads(parsed.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            if kind in ("response.output_text.delta", "response.function_call_arguments.delta") or (
                isinstance(kind, str) and kind.startswith("response.reasoning") and kind.endswith(".delta")
            ):
                delta = data.get("delta")
                if isinstance(delta, str):
                    out.append(delta)
        return out

"""The one upstream stream relay, and the contract every stream translator keeps.

A translator turns the bytes an upstream streams into the bytes the client gets, and says at the end what the
stream came to (``StreamOutcome``). ``relay_upstream`` is the only loop over an upstream stream's body: it feeds
each read to the translator and yields what comes out, turns a transport failure into the translator's error
event, and, whatever happened (the client may have left mid-stream), releases the upstream connection (reused
only when the stream ended completely) and reports the outcome on the call's ``Meter``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gophergate.core.calls import Meter
from gophergate.core.errors import ErrorClass, GatewayError
from gophergate.core.usage import Usage
from gophergate.providers.transport import UpstreamResponse
from gophergate.providers.upstream import transport_errors
from gophergate.wire.sse import encode_data


@dataclass(slots=True)
class StreamOutcome:
    complete: bool  # the stream ended as its protocol says it should: the upstream connection may be reused
    usage: Usage | None
    finish_reason: str | None
    error: str | None  # an error reported or detected after the stream had started (the client got an event)
    texts: list[str] = field(default_factory=list)  # produced text, for an estimate when there is no usage
    events: list[bytes] = field(default_factory=list)  # relayed OpenAI SSE bytes, parsed only for an estimate
    reasoning_field: str | None = None  # an upstream's own spelling of reasoning in those events


class StreamTranslator(Protocol):
    @property
    def stopped(self) -> bool:
        """Nothing more is wanted from the upstream (its terminal event or an error event was relayed)."""
        ...

    def translate(self, data: bytes) -> bytes | None:
        """One read of the upstream body in; what to send the client now (None or b"": nothing yet)."""
        ...

    def end(self) -> bytes | None:
        """The upstream body ended: what is left to send, with an error event if the stream was incomplete."""
        ...

    def fail(self, message: str) -> bytes | None:
        """The transport failed mid-stream (``message`` is the client-safe text): the client's error event."""
        ...

    def outcome(self) -> StreamOutcome:
        """Called once, last, whatever happened (also when the client left): settle and report."""
        ...


def chat_error_event(message: str) -> bytes:
    """An OpenAI chat-completions error event: the official SDKs raise on a data payload with an ``error`` key."""
    error = {"error": {"message": message, "type": "upstream_error", "param": None, "code": "upstream_stream_error"}}
    return encode_data(orjson.dumps(error))


def in_band_error_class(message: str) -> ErrorClass:
    """The class of an error met inside a started stream (an error event, not a status): ``connection`` for an
    event the gateway could not parse, ``overloaded`` or ``rate_limited`` when the upstream's text says so, else
    ``server_error``: the request itself was accepted, so the failure is the upstream's."""
    text = message.lower()
    if "malformed" in text:  # the gateway could not parse what the upstream sent: broken framing
        return "connection"
    if "overload" in text:
        return "overloaded"
    if "rate limit" in text or "rate_limit" in text or "resource_exhausted" in text:
        return "rate_limited"
    return "server_error"


async def relay_upstream(
    provider: str, resp: UpstreamResponse, translator: StreamTranslator, meter: Meter
) -> AsyncIterator[bytes]:
    try:
        with transport_errors(provider):
            async for data in resp.chunks():
                out = translator.translate(data)
                if out:
                    yield out
                if translator.stopped:
                    break
        tail = translator.end()
        if tail:
            yield tail
    except GatewayError as exc:
        meter.stream_error_class = exc.error_class
        event = translator.fail(exc.message)
        if event:
            yield event
    finally:
        meter.upstream_finished()
        outcome = translator.outcome()
        await resp.aclose(reuse=outcome.complete)
        meter.usage = outcome.usage
        meter.finish_reason = outcome.finish_reason
        meter.stream_error = outcome.error
        if outcome.error is not None and meter.stream_error_class is None:
            meter.stream_error_class = in_band_error_class(outcome.error)
        if outcome.usage is None:
            meter.output_text.extend(outcome.texts)
            meter.output_events = outcome.events
            meter.output_reasoning_field = outcome.reasoning_field

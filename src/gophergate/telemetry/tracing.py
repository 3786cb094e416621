"""OpenTelemetry traces of the /v1 requests, opt-in through the standard ``OTEL_*`` environment variables.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says
otherwise. Off, ``Runtime.tracing`` is None, OpenTelemetry is not even imported, and each hook on the request path
is one ``is None`` test.

On, each /v1 POST gets a server span, whose parent is the client's W3C ``traceparent`` when it sent one, and each
upstream attempt a client span under it (a model group's retries and fallbacks are several attempts). Both are named
and attributed as the GenAI semantic conventions say (``{gen_ai.operation.name} {gen_ai.request.model}``,
``gen_ai.*``, ``error.type``), plus the gateway's own ``gophergate.*``. The upstream requests of an attempt carry a
``traceparent`` naming its client span (``core/context.UPSTREAM_HEADERS``, merged in ``providers/upstream.py``).
A span is ended when metering has finished its record (tokens, cost, finish reason: ``gateway/metering.py``), and
exported by the SDK's ``BatchSpanProcessor``: its own thread batches the spans and posts them (OTLP/HTTP,
protobuf); the request path only appends to its queue.

Message content (the prompt, the answer) is recorded only with ``GOPHERGATE_OTEL_CAPTURE_CONTENT=true``: then the
client spans carry ``gen_ai.input.messages`` and ``gen_ai.output.messages`` (``content.py``: the JSON shapes, as
strings; text parts, tool calls and the kind of any other part).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gophergate import __version__
from gophergate.core.calls import Meter
from gophergate.core.context import UPSTREAM_HEADERS
from gophergate.core.record import RequestRecord
from gophergate.telemetry.content import input_messages, output_messages

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import SpanContext, SpanKind

log = logging.getLogger(__name__)

Attributes = dict[str, Any]  # OpenTelemetry attribute values: str, bool, int, float, or a list of one of them

# gen_ai.operation.name per endpoint (request_log.endpoint). The Responses and Messages APIs are chat operations
# in the conventions (OpenAI's: ``openai.api.type=responses``); an image generation is multimodal content generation.
OPERATIONS: dict[str, str] = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "images.generations": "generate_content",
}
# gen_ai.provider.name: the conventions' well-known value for a built-in provider; any other provider (a custom
# OpenAI-compatible upstream, Ollama) is named as configured.
PROVIDER_NAMES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "moonshot": "moonshot_ai",
}

# The answer's id and model are read from its first bytes, before any array: the first "id" inside ``choices``,
# ``content`` or ``output`` is a tool call's, not the answer's. An embeddings list names its model at the end.
_HEAD = 2048
_TAIL = 512
_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,256})"')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
# W3C Trace Context: version-trace_id-parent_id-flags; a later version may append fields.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")
CLOSE_WAIT_S = 5.0  # a stop waits this long at most for the spans still queued to be exported
CAPTURE_LIMIT = 1024 * 1024  # with content capture, the stream bytes kept for an attempt's output, at most


def tracing_configured(environ: Mapping[str, str]) -> bool:
    """The ``OTEL_*`` variables ask for traces: an OTLP endpoint is set and nothing switches them off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")}
    if "otlp" not in exporters:
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def response_ids(body: bytes, *, tail: bool = True) -> tuple[str | None, str | None]:
    """(gen_ai.response.id, gen_ai.response.model) when they are cheap to see: near the start of an answer (or of a
    stream's first events) before any array, or the model after the last array of the answer's end."""
    head = body[:_HEAD]
    cut = head.find(b"[")
    if cut >= 0:
        head = head[:cut]
    found = _ID.search(head)
    response_id = found.group(1).decode("utf-8", "replace") if found else None
    found = _MODEL.search(head)
    if found is None and tail and len(body) > len(head):
        end = body[-_TAIL:]
        found = _MODEL.search(end[end.rfind(b"]") + 1 :])
    return response_id, found.group(1).decode("utf-8", "replace") if found else None


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def _usage(attributes: Attributes, record: RequestRecord) -> None:
    """Token counts in the conventions' classes: input includes cache reads and writes, output includes reasoning
    (the gateway's canonical usage counts the same way: ``core/usage.py``)."""
    attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
    attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
    if record.cache_read_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = record.cache_read_tokens
    if record.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = record.cache_write_tokens
    if record.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = record.reasoning_tokens


def _error_type(record: RequestRecord) -> str | None:
    """``error.type``: the upstream failure's class (rate_limited, timeout, ...), else the gateway's error code."""
    if record.error_class:
        return record.error_class
    if record.error_type:
        return record.error_type
    return str(record.status) if record.status >= 400 else None


def attempt_attributes(
    record: RequestRecord, meter: Meter | None, response: tuple[str | None, str | None] = (None, None)
) -> Attributes:
    """The client span of one upstream attempt, from its finished record (``response``: its id and model)."""
    attributes: Attributes = {
        "gen_ai.operation.name": OPERATIONS.get(record.endpoint, record.endpoint),
        "gophergate.request_id": record.request_id,
        "gophergate.attempt": record.attempt,
        "gen_ai.request.stream": record.stream,
    }
    if record.model is not None:
        attributes["gen_ai.request.model"] = record.model
    if record.provider is not None:
        attributes["gen_ai.provider.name"] = provider_name(record.provider)
        attributes["gophergate.provider"] = record.provider
    if record.endpoint == "responses":
        attributes["openai.api.type"] = "responses"
    response_id, response_model = response
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    if response_model is not None:
        attributes["gen_ai.response.model"] = response_model
    if record.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
    if meter is not None and meter.usage is not None:
        _usage(attributes, record)
    if record.cost_usd is not None:
        attributes["gophergate.cost_usd"] = float(record.cost_usd)
    error = _error_type(record)
    if error is not None:
        attributes["error.type"] = error
    return attributes


def request_attributes(
    record: RequestRecord, usage: bool, response: tuple[str | None, str | None] = (None, None)
) -> Attributes:
    """The server span of a /v1 request, from its final record (``usage``: the answering attempt reported tokens).
    The cost is the request's: every attempt's."""
    attributes: Attributes = {
        "gen_ai.operation.name": OPERATIONS.get(record.endpoint, record.endpoint),
        "gophergate.request_id": record.request_id,
        "gophergate.attempts": record.attempt,
        "gen_ai.request.stream": record.stream,
        "http.response.status_code": record.status,
    }
    if record.requested_model is not None:
        attributes["gen_ai.request.model"] = record.requested_model
    if record.model_group is not None:
        attributes["gophergate.model_group"] = record.model_group
    if record.provider is not None:
        attributes["gen_ai.provider.name"] = provider_name(record.provider)
        attributes["gophergate.provider"] = record.provider
    response_id, response_model = response
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    if response_model is not None:
        attributes["gen_ai.response.model"] = response_model
    if record.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
    if usage:
        _usage(attributes, record)
    if record.cost_usd is not None or record.prior_cost is not None:
        attributes["gophergate.cost_usd"] = float((record.cost_usd or 0) + (record.prior_cost or 0))
    error = _error_type(record)
    if error is not None:
        attributes["error.type"] = error
    return attributes


def span_name(operation: str, model: str | None) -> str:
    return f"{operation} {model}" if model else operation


# -- the spans ----------------------------------------------------------------------------------------------------
# The SDK's ``Span`` costs ~25 us per span here (a lock and a type check per attribute, as each is set); the gateway
# knows every attribute's type and sets them once, so it builds the SDK's ``ReadableSpan`` itself when the span ends
# and hands it to the batch processor: ~3 us (measured 2026-12-07, bench/tracing.py). Sampling is the SDK's sampler
# (``OTEL_TRACES_SAMPLER``), asked once per request for the server span; an attempt's client span follows its
# decision, as the built-in samplers would decide it.


def _traceparent(context: SpanContext) -> dict[str, str]:
    """The W3C trace context that names ``context``'s span as the parent of what the upstream does."""
    headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    state = context.trace_state.to_header() if context.trace_state else ""
    if state:
        headers["tracestate"] = state
    return headers


def _wall_ns(perf: float) -> int:
    """A ``time.perf_counter()`` reading as Unix nanoseconds (what span times are)."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)


class RequestTrace:
    """The spans of one /v1 request: its server span, and the client span of the attempt in progress. Carried by the
    request's record (``RequestRecord.trace``, passed on to each next attempt's) and recorded from its ``finished``."""

    __slots__ = (
        "_answer",
        "_client",
        "_client_start",
        "_events",
        "_events_size",
        "_first",
        "_parent",
        "_sampled",
        "_server",
        "_start",
        "_streamed",
        "_tracing",
        "_usage",
    )

    def __init__(self, tracing: Tracing, server: SpanContext, parent: SpanContext | None) -> None:
        self._tracing = tracing
        self._server = server
        self._parent = parent  # the client's span, from its traceparent
        self._sampled = server.trace_flags.sampled  # else nothing is recorded: only the trace context is passed on
        self._start = time.time_ns()
        self._client: SpanContext | None = None  # the attempt in progress
        self._client_start = 0
        self._first: bytes | None = None  # the start of the attempt's answer (its id and model)
        self._answer: bytes | None = None  # content capture: the buffered answer
        self._events: list[bytes] | None = None  # content capture: the stream's bytes
        self._events_size = 0
        self._streamed = False
        self._usage = False  # the attempt that answered last reported its tokens

    def call(self, record: RequestRecord) -> None:
        """An attempt starts: its client span, and its trace context on the upstream requests it makes."""
        client = self._tracing.child(self._server)
        self._client = client
        self._client_start = time.time_ns()
        self._first = self._answer = self._events = None
        self._events_size = 0
        self._streamed = False
        UPSTREAM_HEADERS.set(_traceparent(client))

    def answered(self, body: bytes) -> None:
        """The attempt's buffered answer, as the client gets it."""
        if not self._sampled:
            return
        self._first = body if len(body) <= _HEAD + _TAIL else body[:_HEAD] + body[-_TAIL:]
        if self._tracing.capture_content:
            self._answer = body

    def watch(self, chunks: AsyncIterator[bytes], prefix: bytes) -> AsyncIterator[bytes]:
        """The attempt's stream as the client gets it (``prefix``: what routing held back), its first bytes kept."""
        if not self._sampled:
            return chunks
        self._streamed = True
        if prefix:
            self._saw(prefix)
        return _Watched(self, chunks)

    def _saw(self, chunk: bytes) -> None:
        if self._first is None:
            self._first = chunk[:_HEAD]
        elif len(self._first) < _HEAD:
            self._first += chunk[: _HEAD - len(self._first)]
        if self._tracing.capture_content and self._events_size < CAPTURE_LIMIT:
            if self._events is None:
                self._events = []
            self._events.append(chunk)
            self._events_size += len(chunk)

    def finished(self, record: RequestRecord, meter: Meter | None, messages: Any) -> None:
        """Metering finished ``record`` (an attempt's, or the request's when no attempt was made): its client span
        ends, and the server span with the final record. Never raises: a trace must not cost a request its row."""
        try:
            self._finished(record, meter, messages)
        except Exception:
            log.exception("recording the spans of request %s failed", record.request_id)

    def _finished(self, record: RequestRecord, meter: Meter | None, messages: Any) -> None:
        tracing = self._tracing
        sampled = self._sampled
        client = self._client
        response: tuple[str | None, str | None] = (None, None)
        if client is not None:
            self._client = None
            UPSTREAM_HEADERS.set(None)
            if self._first is not None:
                response = response_ids(self._first, tail=not self._streamed)
            if sampled:
                attributes = attempt_attributes(record, meter, response)
                if tracing.capture_content:
                    self._content(attributes, record, messages)
                failed = record.status >= 400 or record.error_type is not None
                done = meter.upstream_done if meter is not None else None
                tracing.record(
                    span_name(attributes["gen_ai.operation.name"], record.model),
                    client,
                    self._server,
                    tracing.client_kind,
                    attributes,
                    _error_type(record) if failed else None,
                    self._client_start,
                    _wall_ns(done) if done is not None else time.time_ns(),
                )
        self._usage = meter is not None and meter.usage is not None
        if not record.final or not sampled:
            return
        attributes = request_attributes(record, self._usage, response)
        failed = record.status >= 500 or record.status == 0
        tracing.record(
            span_name(attributes["gen_ai.operation.name"], record.requested_model),
            self._server,
            self._parent,
            tracing.server_kind,
            attributes,
            _error_type(record) if failed else None,
            self._start,
            time.time_ns(),
        )

    def _content(self, attributes: Attributes, record: RequestRecord, messages: Any) -> None:
        limit = self._tracing.max_length
        inputs = input_messages(messages)
        if inputs:
            attributes["gen_ai.input.messages"] = orjson.dumps(inputs).decode()[:limit]
        outputs = output_messages(self._answer, self._events, record.finish_reason)
        if outputs:
            attributes["gen_ai.output.messages"] = orjson.dumps(outputs).decode()[:limit]
        self._answer = self._events = None


class _Watched:
    """A stream passed on chunk by chunk, each one shown to the trace; closing it closes the stream, even when it was
    never iterated (an async generator wrapper would not: the relay closes what it was given, and the upstream
    connection must be released)."""

    __slots__ = ("_chunks", "_iterator", "_trace")

    def __init__(self, trace: RequestTrace, chunks: AsyncIterator[bytes]) -> None:
        self._trace = trace
        self._chunks = chunks
        self._iterator = chunks.__aiter__()

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._iterator.__anext__()
        self._trace._saw(chunk)
        return chunk

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


class Tracing:
    """What the spans of a worker need: the SDK's sampler, ids and resource (a ``TracerProvider`` built from the
    ``OTEL_*`` variables), and the processor that exports them (one ``BatchSpanProcessor`` per worker)."""

    def __init__(self, provider: TracerProvider, processor: SpanProcessor, capture_content: bool = False) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
        from opentelemetry.sdk.trace.sampling import Decision
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.provider = provider
        self.processor = processor
        self.capture_content = capture_content
        self.max_length = SpanLimits().max_span_attribute_length  # OTEL_(SPAN_)ATTRIBUTE_VALUE_LENGTH_LIMIT
        self.server_kind = trace.SpanKind.SERVER
        self.client_kind = trace.SpanKind.CLIENT
        self._sampler = provider.sampler
        self._sample = Decision.RECORD_AND_SAMPLE  # RECORD_ONLY spans are never exported: not recorded either
        self._ids = provider.id_generator
        self._resource = provider.resource
        self._scope = InstrumentationScope("gophergate", __version__)
        self._span = ReadableSpan
        self._context = trace.SpanContext
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self._not_sampled = trace.TraceFlags(trace.TraceFlags.DEFAULT)
        self._status = trace.Status
        self._ok = trace.Status(trace.StatusCode.UNSET)
        self._error = trace.StatusCode.ERROR
        self._in_context = trace.set_span_in_context
        self._non_recording = trace.NonRecordingSpan
        self._flags = trace.TraceFlags
        self._trace_state = trace.TraceState

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], capture_content: bool = False) -> Tracing | None:
        """The tracing the ``OTEL_*`` variables ask for (exporter endpoint, headers, batching, sampler and resource
        are the SDK's own variables), or None when they ask for none."""
        if not tracing_configured(environ):
            return None
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol.strip().lower() != "http/protobuf":
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported (only http/protobuf): traces are off", protocol
            )
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes: dict[str, str] = {"service.version": __version__}
        if not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            attributes["service.name"] = "gophergate"
        provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        processor = BatchSpanProcessor(OTLPSpanExporter())
        provider.add_span_processor(processor)  # its shutdown exports what is queued
        log.info("OpenTelemetry traces on: exporting OTLP/HTTP to %s", _endpoint(environ))
        return cls(provider, processor, capture_content)

    def begin(self, scope: Mapping[str, Any], endpoint: str) -> RequestTrace:
        """The server span of a /v1 request, the client's trace continued when it sent a ``traceparent``."""
        parent: Context | None = None
        parent_span: SpanContext | None = None
        traceparent = tracestate = None
        for name, value in scope.get("headers") or ():
            if name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
        if traceparent is not None:
            parent_span = self.remote_parent(traceparent, tracestate)
            if parent_span is not None:
                parent = self._in_context(self._non_recording(parent_span))
        trace_id = parent_span.trace_id if parent_span is not None else self._ids.generate_trace_id()
        operation = OPERATIONS.get(endpoint, endpoint)
        decision = self._sampler.should_sample(parent, trace_id, operation, self.server_kind)
        flags = self._sampled if decision.decision is self._sample else self._not_sampled
        server = self._context(trace_id, self._ids.generate_span_id(), False, flags, decision.trace_state)
        return RequestTrace(self, server, parent_span)

    def remote_parent(self, traceparent: bytes, tracestate: bytes | None) -> SpanContext | None:
        """The client's span from its W3C ``traceparent`` (and ``tracestate``); None for one that is not valid, which
        starts a new trace (the SDK's propagator does the same, about 9 us slower here)."""
        found = _TRACEPARENT.fullmatch(traceparent.strip())
        if found is None:
            return None
        version, trace_hex, span_hex, flags, rest = found.groups()
        if version == b"ff" or (version == b"00" and rest):
            return None
        trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
        if not trace_id or not span_id:
            return None
        state = self._trace_state.from_header([tracestate.decode("latin-1")]) if tracestate else None
        return self._context(trace_id, span_id, True, self._flags(int(flags, 16)), state)

    def child(self, parent: SpanContext) -> SpanContext:
        """A new span's context under ``parent`` (same trace, same sampling decision)."""
        return self._context(
            parent.trace_id, self._ids.generate_span_id(), False, parent.trace_flags, parent.trace_state
        )

    def record(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        error: str | None,
        start: int,
        end: int,
    ) -> None:
        """Hand one ended span to the processor (the batch processor only queues it)."""
        status = self._ok if error is None else self._status(self._error, error)
        span = self._span(
            name,
            context,
            parent,
            self._resource,
            attributes,
            kind=kind,
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=self._scope,
        )
        self.processor.on_end(span)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread (blocking)."""
        self.provider.shutdown()

    async def close(self) -> None:
        """``shutdown`` off the event loop, waited for ``CLOSE_WAIT_S`` at most: a collector that does not answer (the
        exporter retries for up to ``OTEL_EXPORTER_OTLP_TIMEOUT``) never holds up a stop."""
        thread = threading.Thread(target=self.shutdown, name="gophergate-otel-shutdown", daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, CLOSE_WAIT_S)


def _endpoint(environ: Mapping[str, str]) -> str:
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    return environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").rstrip("/") + "/v1/traces"

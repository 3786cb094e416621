"""The span attributes built from a finished record, the answer's id and model, the content shapes, and one
request's spans (server, client per attempt, parentage, the upstream's trace context) on an in-memory exporter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler
from opentelemetry.trace import SpanKind, StatusCode

from gophergate.core.calls import Meter
from gophergate.core.context import UPSTREAM_HEADERS
from gophergate.core.record import RequestRecord
from gophergate.core.usage import Usage
from gophergate.telemetry.tracing import (
    Tracing,
    attempt_attributes,
    request_attributes,
    response_ids,
    tracing_configured,
)

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _record(**fields: object) -> RequestRecord:
    record = RequestRecord("req_1", "chat.completions", time.perf_counter())
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def test_attempt_attributes_follow_the_genai_conventions() -> None:
    record = _record(
        provider="openai", model="gpt-4o-mini", requested_model="fast", status=200, finish_reason="stop",
        prompt_tokens=120, completion_tokens=30, cache_read_tokens=100, cache_write_tokens=5, reasoning_tokens=10,
        cost_usd=Decimal("0.000123"), attempt=2, stream=True,
    )  # fmt: skip
    meter = Meter(usage=Usage(120, 30, 10, 100, 5))
    attributes = attempt_attributes(record, meter, ("chatcmpl-9", "gpt-4o-mini-2024-07-18"))
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "gophergate.provider": "openai",
        "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.request.stream": True,
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 10,
        "gophergate.request_id": "req_1",
        "gophergate.attempt": 2,
        "gophergate.cost_usd": 0.000123,
    }


def test_no_usage_attributes_without_reported_usage_and_error_type_on_failure() -> None:
    record = _record(provider="gemini", model="gemini-2.5-flash", status=429, error_type="rate_limit_exceeded")
    record.error_class = "rate_limited"
    attributes = attempt_attributes(record, Meter())
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["error.type"] == "rate_limited"
    assert not any(name.startswith("gen_ai.usage.") for name in attributes)
    assert "gophergate.cost_usd" not in attributes
    record.error_class = None
    assert attempt_attributes(record, Meter())["error.type"] == "rate_limit_exceeded"


def test_request_attributes_sum_the_attempts_cost_and_name_the_group() -> None:
    record = _record(
        endpoint="messages", requested_model="smart", provider="my-ollama", model="llama3.2", status=200,
        model_group="smart", attempt=3, cost_usd=Decimal("0.5"), prior_cost=Decimal("0.25"),
    )  # fmt: skip
    attributes = request_attributes(record, usage=False)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "smart"
    assert attributes["gen_ai.provider.name"] == "my-ollama"  # not a well-known provider: as configured
    assert attributes["gophergate.model_group"] == "smart"
    assert attributes["gophergate.attempts"] == 3
    assert attributes["gophergate.cost_usd"] == 0.75
    assert attributes["http.response.status_code"] == 200
    assert "error.type" not in attributes


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [("embeddings", "embeddings"), ("images.generations", "generate_content"), ("responses", "chat")],
)
def test_operation_names(endpoint: str, operation: str) -> None:
    assert attempt_attributes(_record(endpoint=endpoint), None)["gen_ai.operation.name"] == operation


def test_response_ids_are_read_before_any_array() -> None:
    chat = b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[]}'
    assert response_ids(chat) == ("chatcmpl-1", "gpt-4o")
    # A tool call's id inside choices is not the answer's.
    odd = b'{"choices":[{"message":{"tool_calls":[{"id":"call_1"}]}}],"model":"m"}'
    assert response_ids(odd) == (None, "m")
    stream = b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x"'
    assert response_ids(stream, tail=False) == ("msg_1", "claude-x")
    embeddings = b'{"object":"list","data":[' + b"0.1," * 2000 + b'0.1],"model":"text-embedding-3-small"}'
    assert response_ids(embeddings) == (None, "text-embedding-3-small")
    assert response_ids(b"") == (None, None)


def test_tracing_is_configured_by_the_otel_variables() -> None:
    assert not tracing_configured({})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not tracing_configured({**on, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_configured({**on, "OTEL_TRACES_EXPORTER": "none"})
    assert Tracing.from_environ({}) is None
    assert Tracing.from_environ({**on, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) is None


# -- one request's spans ----------------------------------------------------------------------------------------


def _tracing(capture: bool = False, sampler: Sampler | None = None) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return Tracing(provider, processor, capture_content=capture), exporter


def _scope(traceparent: str | None) -> dict[str, object]:
    headers = [(b"content-type", b"application/json")]
    if traceparent is not None:
        headers.append((b"traceparent", traceparent.encode()))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


def test_a_routed_request_has_a_server_span_and_a_client_span_per_attempt() -> None:
    tracing, exporter = _tracing()
    trace = tracing.begin(_scope(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"), "chat.completions")
    first = _record(requested_model="smart", model_group="smart", provider="openai", model="gpt-4o-mini")
    first.trace = trace
    trace.call(first)
    upstream = UPSTREAM_HEADERS.get()
    assert upstream is not None and upstream["traceparent"].startswith(f"00-{CLIENT_TRACE}-")
    first.status, first.error_class = 503, "overloaded"
    second = first.next_attempt(time.perf_counter())
    trace.finished(first, Meter(), None)
    assert UPSTREAM_HEADERS.get() is None
    second.provider, second.model = "deepseek", "deepseek-chat"
    trace.call(second)
    assert UPSTREAM_HEADERS.get() != upstream  # the second attempt's own span
    trace.answered(b'{"id":"chatcmpl-2","model":"deepseek-chat","choices":[]}')
    second.status, second.finish_reason, second.prompt_tokens, second.completion_tokens = 200, "stop", 7, 3
    second.cost_usd = Decimal("0.001")
    trace.finished(second, Meter(usage=Usage(7, 3)), None)

    spans = {(s.kind, s.attributes.get("gophergate.attempt")): s for s in exporter.get_finished_spans()}
    server = spans[(SpanKind.SERVER, None)]
    failed, answered = spans[(SpanKind.CLIENT, 1)], spans[(SpanKind.CLIENT, 2)]
    assert server.name == "chat smart"
    assert server.parent is not None and format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    for client in (failed, answered):
        assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert (failed.name, answered.name) == ("chat gpt-4o-mini", "chat deepseek-chat")
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "overloaded"
    assert answered.attributes["gen_ai.response.id"] == "chatcmpl-2"
    assert answered.attributes["gen_ai.provider.name"] == "deepseek"
    assert server.attributes["gophergate.attempts"] == 2
    assert server.attributes["gen_ai.usage.output_tokens"] == 3
    assert server.status.status_code is StatusCode.UNSET
    assert upstream["traceparent"] == f"00-{CLIENT_TRACE}-{format(failed.context.span_id, '016x')}-01"


def test_a_request_refused_before_any_attempt_has_only_its_server_span() -> None:
    tracing, exporter = _tracing()
    record = _record(status=401, error_type="invalid_api_key")
    record.trace = tracing.begin(_scope(None), "chat.completions")
    record.trace.finished(record, None, None)
    (server,) = exporter.get_finished_spans()
    assert server.name == "chat" and server.parent is None
    assert server.attributes["error.type"] == "invalid_api_key"
    assert server.status.status_code is StatusCode.UNSET  # a client error is not the server's


async def test_content_is_recorded_only_when_asked_and_the_stream_is_passed_on_unchanged() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'data: {"id":"chatcmpl-3","model":"gpt-4o","choices":[{"delta":{"content":"he"}}]}\n\n'
        await asyncio.sleep(0)
        yield b'data: {"choices":[{"delta":{"content":"llo"}}]}\n\n'

    prompt = [{"role": "user", "content": "secret prompt"}]
    for capture in (False, True):
        tracing, exporter = _tracing(capture)
        record = _record(provider="openai", model="gpt-4o", status=200)
        record.trace = trace = tracing.begin(_scope(None), "chat.completions")
        trace.call(record)
        relayed = [chunk async for chunk in trace.watch(chunks(), b"")]
        assert b"".join(relayed).count(b"data:") == 2
        trace.finished(record, Meter(), prompt)
        client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
        assert client.attributes["gen_ai.response.id"] == "chatcmpl-3"
        dumped = str(dict(client.attributes))
        if not capture:
            assert "secret prompt" not in dumped and "gen_ai.input.messages" not in client.attributes
        else:
            assert orjson.loads(client.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == "secret prompt"
            output = orjson.loads(client.attributes["gen_ai.output.messages"])
            assert output[0]["parts"][0]["content"] == "hello"


def test_a_trace_the_sampler_drops_records_nothing_but_still_passes_its_context_on() -> None:
    tracing, exporter = _tracing(sampler=ALWAYS_OFF)
    record = _record(provider="openai", model="gpt-4o-mini", status=200)
    record.trace = trace = tracing.begin(_scope(None), "chat.completions")
    trace.call(record)
    upstream = UPSTREAM_HEADERS.get()
    assert upstream is not None and upstream["traceparent"].endswith("-00")
    trace.finished(record, Meter(), None)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "value",
    [
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # a zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # a zero span id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden version
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper-case hex
        b"not a traceparent",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(value: bytes) -> None:
    tracing, _ = _tracing()
    assert tracing.remote_parent(value, None) is None


def test_a_later_version_and_the_tracestate_are_taken() -> None:
    tracing, _ = _tracing()
    parent = tracing.remote_parent(f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-00-more".encode(), b"vendor=abc")
    assert parent is not None and parent.is_remote
    assert (format(parent.trace_id, "032x"), format(parent.span_id, "016x")) == (CLIENT_TRACE, CLIENT_SPAN)
    assert not parent.trace_flags.sampled and parent.trace_state.get("vendor") == "abc"


async def test_a_watched_stream_that_was_never_read_still_closes_the_upstream() -> None:
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"data: {}\n\n"
        finally:
            closed.append(True)

    tracing, _ = _tracing()
    trace = tracing.begin(_scope(None), "chat.completions")
    stream = chunks()
    await anext(stream)  # started (as the routing hold-back does), then never read through the wrapper
    watched = trace.watch(stream, b"data: {}\n\n")
    await watched.aclose()  # type: ignore[attr-defined]
    assert closed == [True]

"""OpenTelemetry traces end to end: the real gateway (OTEL_EXPORTER_OTLP_ENDPOINT set) in front of a strict fake,
driven by the official openai SDK with a W3C traceparent, exporting to a real OTLP/HTTP receiver on loopback that
decodes the protobuf. Spans, attributes, parentage, the upstream's trace context, no content by default; and the
JSON log format of the same gateway."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, free_port

KEY = "sk-upstream-test"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
PROMPT = "a prompt that must not reach the traces"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class Exported:
    """A span as the receiver decoded it."""

    def __init__(self, span: Span, resource: dict[str, Any]) -> None:
        self.name = span.name
        self.kind = span.kind
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex()
        self.status = span.status.code
        self.attributes = {a.key: _value(a.value) for a in span.attributes}
        self.resource = resource


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf (gzip or not), every span kept."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                if ok:
                    request = ExportTraceServiceRequest.FromString(body)
                    with receiver.lock:
                        for resource_spans in request.resource_spans:
                            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                            for scope_spans in resource_spans.scope_spans:
                                receiver.spans.extend(Exported(s, resource) for s in scope_spans.spans)
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace(self, request_id: str, count: int, timeout: float = 10.0) -> list[Exported]:
        """The spans of one request (its server span and its client spans), once ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            server = [s for s in spans if s.attributes.get("gophergate.request_id") == request_id]
            mine = [s for s in spans if server and s.trace_id == server[0].trace_id]
            if len(mine) >= count or time.monotonic() > deadline:
                return [s for s in mine if s.attributes.get("gophergate.request_id") == request_id]
            time.sleep(0.05)


CONFIG = """
[providers.dead]
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "{key}"
models = ["dead-model"]

[model_groups.unreachable]
strategy = "priority"
targets = [{{ model = "dead/dead-model" }}, {{ model = "openai/gpt-4o-mini" }}]
"""


class Traced:
    def __init__(self, gateway: Gateway, fake: FakeOpenAICompat, receiver: Receiver) -> None:
        self.gateway, self.fake, self.receiver = gateway, fake, receiver
        self.client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    fake = FakeOpenAICompat("openai", api_key=KEY)
    fake.start()
    receiver = Receiver().start()
    tmp: Path = tmp_path_factory.mktemp("tracing")
    env = {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": KEY,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_SERVICE_NAME": "gophergate-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "GOPHERGATE_LOG_FORMAT": "json",
    }
    gateway = Gateway(tmp, env=env, config_toml=CONFIG.format(dead_port=free_port(), key=KEY))
    try:
        gateway.start()
        yield Traced(gateway, fake, receiver)
    finally:
        gateway.stop()
        receiver.stop()
        fake.stop()


def _traceparent() -> dict[str, str]:
    return {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}


def _split(spans: list[Exported]) -> tuple[Exported, list[Exported]]:
    servers = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert len(servers) == 1, [s.name for s in spans]
    clients = sorted(
        (s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.attributes["gophergate.attempt"]
    )
    return servers[0], clients


def test_a_chat_request_continues_the_clients_trace_and_passes_it_upstream(traced: Traced) -> None:
    raw = traced.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], extra_headers=_traceparent()
    )
    completion = raw.parse()
    assert completion.usage is not None
    request_id = raw.headers["x-request-id"]
    server, clients = _split(traced.receiver.trace(request_id, 2))
    (client,) = clients

    assert (server.trace_id, server.parent_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert (client.trace_id, client.parent_id) == (CLIENT_TRACE, server.span_id)
    upstream = traced.fake.chat_requests[-1].headers["traceparent"]
    assert upstream == f"00-{CLIENT_TRACE}-{client.span_id}-01"

    assert server.name == client.name == "chat gpt-4o-mini"
    assert server.resource["service.name"] == "gophergate-test"
    for span in (server, client):
        attributes = span.attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.response.model"] == completion.model
        assert attributes["gen_ai.response.id"] == completion.id
        assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
        assert attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
        assert attributes["gophergate.cost_usd"] == pytest.approx(float(raw.headers["x-gophergate-cost-usd"]))
        assert "error.type" not in attributes
        assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes
        assert not any(PROMPT in str(value) for value in attributes.values())
    assert client.attributes["gophergate.attempt"] == 1
    assert server.attributes["http.response.status_code"] == 200


def test_a_stream_is_traced_with_its_usage(traced: Traced) -> None:
    with traced.client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=_traceparent(),
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None
    server, (client,) = _split(traced.receiver.trace(request_id, 2))
    assert client.parent_id == server.span_id
    assert client.attributes["gen_ai.request.stream"] is True
    assert client.attributes["gen_ai.response.id"] == chunks[0].id
    assert client.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert traced.fake.chat_requests[-1].headers["traceparent"].split("-")[2] == client.span_id


def test_a_routed_request_has_a_client_span_per_attempt(traced: Traced) -> None:
    raw = traced.client.chat.completions.with_raw_response.create(
        model="unreachable", messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-gophergate-attempts"] == "2"
    server, (first, second) = _split(traced.receiver.trace(raw.headers["x-request-id"], 3))
    assert server.parent_id == ""  # no traceparent from the client: a new trace
    assert server.name == "chat unreachable"
    assert server.attributes["gophergate.model_group"] == "unreachable"
    assert server.attributes["gophergate.attempts"] == 2
    assert first.parent_id == second.parent_id == server.span_id
    assert first.attributes["gophergate.provider"] == "dead"
    assert first.attributes["error.type"] == "connection"
    assert first.status == 2  # STATUS_CODE_ERROR
    assert second.attributes["gophergate.provider"] == "openai" and "error.type" not in second.attributes
    assert traced.fake.chat_requests[-1].headers["traceparent"].split("-")[2] == second.span_id


def test_a_refused_request_has_its_server_span_with_the_error(traced: Traced) -> None:
    client = openai.OpenAI(base_url=traced.gateway.base_url, api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as failed:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    request_id = failed.value.response.headers["x-request-id"]
    (server,) = traced.receiver.trace(request_id, 1)
    assert server.kind == Span.SPAN_KIND_SERVER and server.name == "chat"
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["error.type"]


def test_the_log_is_one_json_object_per_line(traced: Traced) -> None:
    lines = [line for line in traced.gateway.logs().splitlines() if line.strip()]
    assert lines, "the gateway logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry), line
    assert any("OpenTelemetry traces on" in json.loads(line)["message"] for line in lines)

"""`python -m bench.tracing`: what OpenTelemetry tracing costs a /v1 request, in process (printed, not asserted).

- **off**: the statements tracing added to a request's path when no OTLP endpoint is configured (the request id's
  context variable, one ``is None`` test per hook, the upstream seam's context-variable read), timed together;
- **on**: one request's spans as the gateway makes them (the server span continuing a client ``traceparent``, one
  client span, the answer's id and model, both spans recorded with a finished record's attributes), with the SDK's
  ``BatchSpanProcessor``: once with an exporter that drops the batches (the request path's own cost), once with the
  real OTLP/HTTP exporter posting to a receiver in another process on loopback (the whole CPU cost of the gateway's
  process: the spans, their protobuf encoding and the HTTP posts), exported every 256 requests so none is dropped.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
import timeit
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from gophergate.core.calls import Meter
from gophergate.core.context import REQUEST_ID, UPSTREAM_HEADERS
from gophergate.core.record import RequestRecord
from gophergate.core.usage import Usage
from gophergate.telemetry.tracing import Tracing

SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "headers": [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer gg-xxxxxxxxxxxxxxxxxxxxxxxx"),
        (b"content-type", b"application/json"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ],
}
BODY = b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[]}' + b" " * 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Runtime:
    tracing: Tracing | None = None


def _off(rt: _Runtime, record: RequestRecord) -> None:
    REQUEST_ID.set(record.request_id)  # v1.endpoint
    if rt.tracing is not None:
        raise AssertionError
    if record.trace is not None:  # before the call
        raise AssertionError
    extra = UPSTREAM_HEADERS.get()  # providers/upstream.py
    if extra is not None:
        raise AssertionError
    if record.trace is not None:  # _answer / _relay
        raise AssertionError
    if record.trace is not None:  # metering.finish
        raise AssertionError


def _request(tracing: Tracing) -> None:
    record = RequestRecord("req_0", "chat.completions", time.perf_counter())
    record.trace = trace = tracing.begin(SCOPE, "chat.completions")
    record.requested_model = record.model = "gpt-4o-mini"
    record.provider = "openai"
    meter = Meter(usage=Usage(100, 20))
    trace.call(record)
    meter.start_upstream()
    meter.upstream_finished()
    trace.answered(BODY)
    record.status, record.finish_reason, record.prompt_tokens, record.completion_tokens = 200, "stop", 100, 20
    record.cost_usd = Decimal("0.000027")
    trace.finished(record, meter, None)


class _Drop(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _per_request_us(tracing: Tracing, count: int, flush_every: int = 0) -> tuple[float, float]:
    """(wall, process CPU) microseconds per request, the export of every span included (``flush_every``: export
    after that many requests, in this thread, so that no span is dropped for a full queue)."""
    for _ in range(1000):
        _request(tracing)
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(1, count + 1):
        _request(tracing)
        if flush_every and n % flush_every == 0:
            tracing.processor.force_flush()
    tracing.shutdown()
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def _receive(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Receiver).serve_forever()


def main() -> None:
    rt, record = _Runtime(), RequestRecord("req_0", "chat.completions", time.perf_counter())
    number = 1_000_000
    off = min(timeit.repeat(lambda: _off(rt, record), number=number, repeat=5)) / number * 1e9
    empty = min(timeit.repeat(lambda: None, number=number, repeat=5)) / number * 1e9
    print(f"off: {off - empty:.0f} ns per request (the hooks; {empty:.0f} ns of call overhead subtracted)")

    count = 20_000
    provider, processor = TracerProvider(), BatchSpanProcessor(_Drop())
    provider.add_span_processor(processor)
    wall, cpu = _per_request_us(Tracing(provider, processor), count)
    print(f"on, exporter dropping the batches: {wall:.1f} us wall, {cpu:.1f} us CPU per request (2 spans)")

    port = free_port()
    receiver = multiprocessing.get_context("fork").Process(target=_receive, args=(port,), daemon=True)
    receiver.start()
    time.sleep(0.5)
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    tracing = Tracing.from_environ(os.environ)
    assert tracing is not None
    wall, cpu = _per_request_us(tracing, count, flush_every=256)
    print(f"on, OTLP/HTTP to a receiver in another process: {wall:.1f} us wall, {cpu:.1f} us CPU per request")
    receiver.terminate()


def loaded(seconds: float, rounds: int) -> None:
    """The gateway under load (wrk, 64 clients, non-streaming; pinned as ``make bench`` pins), tracing off and on
    interleaved, with an OTLP/HTTP receiver in its own process on the load CPU. Gateway CPU per request from its
    process's CPU time."""
    import tempfile
    from pathlib import Path

    import psutil

    from bench.client import request_body
    from bench.procs import (
        ManagedProcess,
        create_client_key,
        gateway_env,
        plan_cpus,
        start_fake_upstream,
        start_gateway,
    )
    from bench.procs import free_port as port_for
    from bench.wrk import run_wrk

    plan = plan_cpus(True)
    modes: dict[str, dict[str, str]] = {"off": {}}
    with tempfile.TemporaryDirectory(prefix="gg-bench-tracing-") as tmp_dir:
        tmp = Path(tmp_dir)
        upstream_port, receiver_port = port_for(), port_for()
        upstream = start_fake_upstream(upstream_port, plan, tmp / "upstream.log")
        receiver_cmd = [
            *plan.prefix(plan.load),
            sys.executable,
            "-c",
            "import sys; from bench.tracing import _receive; _receive(int(sys.argv[1]))",
            str(receiver_port),
        ]
        receiver = ManagedProcess("receiver", receiver_cmd, None, tmp / "receiver.log")
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
        modes["on"] = otel
        modes["on, 10% sampled"] = {
            **otel,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        }
        modes["on, none sampled"] = {**otel, "OTEL_TRACES_SAMPLER": "always_off"}
        try:
            for round_ in range(rounds):
                for mode, extra in modes.items():
                    data = tmp / f"data-{round_}-{len(mode)}"
                    env = gateway_env(upstream_port, data, {"GOPHERGATE_LOG_LEVEL": "warning", **extra})
                    key = create_client_key(env, tmp)
                    port = port_for()
                    gateway = start_gateway(port, env, plan, tmp / "gateway.log", tmp)
                    try:
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                        body = request_body("gpt-4o-mini", False)
                        prefix = plan.prefix(plan.load)
                        run_wrk(url, body, headers, connections=64, duration_s=2, cpu_prefix=prefix)
                        procs = [psutil.Process(gateway.pid), *psutil.Process(gateway.pid).children(recursive=True)]
                        before = sum(sum(p.cpu_times()[:2]) for p in procs)
                        result = run_wrk(url, body, headers, connections=64, duration_s=seconds, cpu_prefix=prefix)
                        used = sum(sum(p.cpu_times()[:2]) for p in procs) - before
                        per = used / max(result.requests, 1) * 1e6
                        print(
                            f"{mode:>16}: {result.requests_per_s:8,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                            f"p99 {result.p99_ms:.2f} ms, gateway CPU {per:.0f} us per request, "
                            f"errors {result.non_2xx + result.socket_errors}"
                        )
                    finally:
                        gateway.stop()
        finally:
            receiver.stop()
            upstream.stop()


if __name__ == "__main__":
    if "--loaded" in sys.argv:
        loaded(seconds=8.0, rounds=2)
    else:
        main()

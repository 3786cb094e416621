"""`python -m bench.paced`: hold N concurrent slowly generated streams against a server and time each one.

LLM traffic is many concurrent streams that each last about a second or more, not fast small requests. This
load generator keeps ``--streams`` keep-alive connections busy, each sending a streaming chat completion for
the fake upstream's paced model (20 chunks, 50 ms apart) again as soon as the last one ended, and records the
whole-stream latency (request written -> last byte of the answer) and the time to the first body chunk.

Connections open spread over ``--ramp`` seconds (not in one burst that overflows listen backlogs). The
measurement window starts once as many streams have ended as there are connections (every connection is then
in its steady cycle) or after ``--settle-cap`` seconds, and lasts ``--duration`` seconds: streams/s is the
number of streams that ended inside the window divided by its length, and the latency percentiles are over
those streams. Streams still running when the window closes are dropped, so the run never takes longer than
ramp + settle cap + duration. Errors are counted over the whole run.

It runs on uvloop with raw protocols (a few microseconds per chunk), so that one core can drive thousands of
streams; it prints one JSON line (``RESULT_MARKER`` + JSON) that ``parse_output`` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

RESULT_MARKER = "GOPHERGATE_PACED_RESULT "
KEY_VARIABLE = "BENCH_PACED_KEY"
ERROR_KINDS = ("connect", "status", "read", "timeout", "incomplete")
MAX_HEAD_BYTES = 64 * 1024


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list; 0.0 for no values."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class PacedResult:
    """What one paced run measured. Latencies in milliseconds."""

    streams: int
    """Concurrent streams held (connections)."""
    window_s: float
    completed: int
    """Streams that ended, whole and well-formed, inside the window."""
    streams_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    first_chunk_p50_ms: float
    first_chunk_p99_ms: float
    settled_after_s: float
    """When the window started, from the start of the run (connections opening included)."""
    settled: bool
    """False when the window started at the settle cap, before every connection had ended a stream."""
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    streams: int,
    samples: list[tuple[float, float, float]],
    window: tuple[float, float],
    settled_after_s: float,
    settled: bool,
    errors: dict[str, int],
    first_error: str | None,
) -> PacedResult:
    """Reduce per-stream samples ``(end time, whole-stream s, first chunk s)`` to the window's figures."""
    start, end = window
    inside = [s for s in samples if start <= s[0] < end]
    length = max(end - start, 1e-9)
    totals = sorted(s[1] * 1000 for s in inside)
    firsts = sorted(s[2] * 1000 for s in inside)
    return PacedResult(
        streams=streams,
        window_s=round(length, 3),
        completed=len(inside),
        streams_per_s=len(inside) / length,
        p50_ms=percentile(totals, 50),
        p90_ms=percentile(totals, 90),
        p99_ms=percentile(totals, 99),
        max_ms=totals[-1] if totals else 0.0,
        mean_ms=statistics.fmean(totals) if totals else 0.0,
        first_chunk_p50_ms=percentile(firsts, 50),
        first_chunk_p99_ms=percentile(firsts, 99),
        settled_after_s=round(settled_after_s, 3),
        settled=settled,
        errors={kind: errors.get(kind, 0) for kind in ERROR_KINDS},
        first_error=first_error,
    )


def parse_output(output: str) -> PacedResult:
    """The result line that ``python -m bench.paced`` printed."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = orjson.loads(line[len(RESULT_MARKER) :])
            return PacedResult(**raw)
    raise ValueError(f"the paced load printed no result line; its output was:\n{output[-2000:]}")


class StreamError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ResponseReader:
    """Incremental parser of one HTTP/1.1 response at a time (content-length or chunked body)."""

    __slots__ = (
        "_buf",
        "_remaining",
        "_state",
        "_tail",
        "chunked",
        "close",
        "done",
        "first_body",
        "saw_done_event",
        "status",
    )

    def __init__(self) -> None:
        self._buf = b""
        self.reset()

    def reset(self) -> None:
        self._state = 0  # 0 head, 1 content-length body, 2 chunk size line, 3 chunk data, 4 trailers
        self._remaining = 0
        self.status = 0
        self.close = False
        self.chunked = False
        self.done = False
        self.saw_done_event = False
        self.first_body = False
        self._tail = b""

    def feed(self, data: bytes) -> None:
        """Consume ``data``; sets ``done`` when the response is complete (extra bytes are an error)."""
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos, n = 0, len(buf)
        while pos < n:
            if self.done:
                raise StreamError("read", "bytes after the end of the response")
            state = self._state
            if state == 0:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD_BYTES:
                        raise StreamError("read", "response head too large")
                    self._buf = buf[pos:]
                    return
                self._head(buf[pos:end])
                pos = end + 4
                if self._state == 1 and self._remaining == 0:
                    self.done = True
            elif state == 1:
                step = min(self._remaining, n - pos)
                if step:
                    self.first_body = True
                self._remaining -= step
                pos += step
                if self._remaining == 0:
                    self.done = True
            elif state == 3:
                step = min(self._remaining, n - pos)
                if not self.saw_done_event:
                    # The marker may straddle two reads: keep the last bytes of the data seen so far.
                    seen = self._tail + buf[pos : pos + step]
                    self.saw_done_event = b"[DONE]" in seen
                    self._tail = seen[-5:]
                self._remaining -= step
                pos += step
                if self._remaining == 0:
                    self._state = 2
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    self._buf = buf[pos:]
                    return
                line = buf[pos:eol]
                pos = eol + 2
                if state == 4:
                    if not line:
                        self.done = True
                    continue
                if not line:  # the CRLF that ends a chunk's data
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise StreamError("read", f"bad chunk size line {line[:40]!r}") from None
                self.first_body = True
                if size == 0:
                    self._state = 4
                else:
                    self._state, self._remaining = 3, size

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        try:
            self.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise StreamError("read", f"bad status line {lines[0][:80]!r}") from None
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                self.close = value.strip().lower() == b"close"
        self.chunked = chunked
        if chunked:
            self._state = 2
        elif length is not None:
            self._state, self._remaining = 1, length
        else:
            raise StreamError("read", "answer has neither content-length nor chunked framing")


class StreamConnection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends one and waits for its whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader()
        self._waiter: asyncio.Future[None] | None = None
        self.first_chunk_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(StreamError("read", f"connection closed mid-answer ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        had_body = reader.first_body
        try:
            reader.feed(data)
        except StreamError as exc:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if not had_body and reader.first_body:
            self.first_chunk_at = time.perf_counter()
        if reader.done and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def request(self, raw: bytes, timeout_s: float) -> None:
        assert self.transport is not None
        self.reader.reset()
        self.first_chunk_at = 0.0
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        # A timer rather than asyncio.wait_for: cheaper, and a cancellation is never lost to a race with the
        # answer completing (Python 3.11's wait_for can swallow one).
        timer = loop.call_later(timeout_s, self._time_out, waiter, timeout_s)
        self.transport.write(raw)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    @staticmethod
    def _time_out(waiter: asyncio.Future[None], timeout_s: float) -> None:
        if not waiter.done():
            waiter.set_exception(StreamError("timeout", f"no whole answer within {timeout_s:g} s"))


@dataclass
class Run:
    host: str
    port: int
    raw: bytes
    streams: int
    duration_s: float
    ramp_s: float
    settle_cap_s: float
    timeout_s: float
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    ended: int = 0
    settled_at: float | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    connections: list[StreamConnection] = field(default_factory=list)
    stopping: bool = False

    def _error(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.first_error is None:
            self.first_error = f"{kind}: {message}"

    async def _connect(self) -> StreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(StreamConnection, self.host, self.port), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise StreamError("connect", repr(exc)) from None
        self.connections.append(proto)
        return proto

    async def worker(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        conn: StreamConnection | None = None
        while not self.stopping:
            try:
                if conn is None or conn.transport is None:
                    conn = await self._connect()
                started = time.perf_counter()
                await conn.request(self.raw, self.timeout_s)
                ended = time.perf_counter()
                reader = conn.reader
                if reader.status != 200:
                    raise StreamError("status", f"HTTP {reader.status}")
                if reader.chunked and not reader.saw_done_event:
                    raise StreamError("incomplete", "stream ended without data: [DONE]")
                first = (conn.first_chunk_at or ended) - started
                self.samples.append((ended, ended - started, first))
                if reader.close and conn.transport is not None:
                    conn.transport.close()
                    conn = None
            except StreamError as exc:
                self._error(exc.kind, str(exc))
                if conn is not None and conn.transport is not None and exc.kind in ("timeout", "read"):
                    conn.transport.close()
                    conn = None
                if exc.kind in ("connect", "status"):
                    await asyncio.sleep(0.05)  # no hot loop against a server that refuses
            self.ended += 1
            if self.settled_at is None and self.ended >= self.streams:
                self.settled_at = time.perf_counter()
                self.settled.set()

    async def run(self) -> PacedResult:
        begin = time.perf_counter()
        tasks = [asyncio.create_task(self.worker(self.ramp_s * i / self.streams)) for i in range(self.streams)]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settled.wait(), self.ramp_s + self.settle_cap_s)
            settled = self.settled_at is not None
            start = time.perf_counter()
            await asyncio.sleep(self.duration_s)
            end = time.perf_counter()
        finally:
            self.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for conn in self.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        return summarize(
            self.streams, self.samples, (start, end), start - begin, settled, self.errors, self.first_error
        )


def build_request(url: str, key: str | None, model: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only plain http:// URLs are supported, got {url!r}")
    prefix = parts.path.rstrip("/")
    if not prefix.endswith("/v1"):
        prefix += "/v1"
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    port = parts.port or 80
    head = [
        f"POST {prefix}/chat/completions HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return parts.hostname, port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _main(args: argparse.Namespace) -> PacedResult:
    host, port, raw = build_request(args.url, args.key, args.model)
    run = Run(
        host=host,
        port=port,
        raw=raw,
        streams=args.streams,
        duration_s=args.duration,
        ramp_s=args.ramp,
        settle_cap_s=args.settle_cap,
        timeout_s=args.timeout,
    )
    return await run.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paced", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="server root or its /v1 base, http:// only")
    parser.add_argument("--key", default=os.environ.get(KEY_VARIABLE), help=f"Bearer token (default: ${KEY_VARIABLE})")
    parser.add_argument("--model", default="gpt-4o-mini-paced")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (connections)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the measurement window")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which the connections open")
    parser.add_argument("--settle-cap", type=float, default=10.0, help="longest wait for the steady cycle")
    parser.add_argument("--timeout", type=float, default=30.0, help="longest a stream (or a connect) may take")
    args = parser.parse_args(argv)
    if args.streams < 1 or args.duration <= 0:
        parser.error("--streams must be >= 1 and --duration > 0")
    limit = raise_open_file_limit()
    if limit < args.streams + 64:
        print(f"the open-file limit ({limit}) is too low for {args.streams} streams", file=sys.stderr)
        return 2
    try:
        import uvloop

        result = uvloop.run(_main(args))
    except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway
        result = asyncio.run(_main(args))
    print(RESULT_MARKER + orjson.dumps(result.to_dict()).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run_client(
    base_url: str,
    key: str | None,
    *,
    model: str,
    streams: int,
    duration_s: float,
    ramp_s: float = 1.0,
    settle_cap_s: float = 10.0,
    timeout_s: float = 30.0,
    cpu_prefix: list[str] | None = None,
) -> PacedResult:
    """Run ``python -m bench.paced`` (pinned by ``cpu_prefix``) and return what it measured.

    Raises ``RuntimeError`` when it fails or prints no result; it never runs longer than its own caps allow.
    """
    cmd = [
        *(cpu_prefix or []),
        sys.executable,
        "-m",
        "bench.paced",
        "--url",
        base_url,
        "--model",
        model,
        "--streams",
        str(streams),
        "--duration",
        f"{duration_s:g}",
        "--ramp",
        f"{ramp_s:g}",
        "--settle-cap",
        f"{settle_cap_s:g}",
        "--timeout",
        f"{timeout_s:g}",
    ]
    # The key goes in the environment, not on a command line that every process can read.
    env = {**os.environ, KEY_VARIABLE: key} if key else None
    limit = ramp_s + settle_cap_s + duration_s + 60
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the paced load did not finish within {limit:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the paced load exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        return parse_output(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None

"""A minimal blocking HTTP/1.1 client over a raw socket, for response checks and time to first chunk.

It is deliberately tiny (no TLS, no redirects) so that its own overhead is a few microseconds and the
same for the gateway and the direct measurements, which cancel out in the reported difference.
"""

from __future__ import annotations

import math
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send chat completion requests."""

    host: str
    port: int
    path: str
    headers: dict[str, str]

    @classmethod
    def from_url(cls, base_url: str, key: str | None) -> Endpoint:
        """``base_url`` is a server root (``http://h:p``) or its ``/v1`` base."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only plain http:// URLs are supported, got {base_url!r}")
        prefix = parts.path.rstrip("/")
        if not prefix.endswith("/v1"):
            prefix += "/v1"
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return cls(parts.hostname, parts.port or 80, f"{prefix}/chat/completions", headers)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def raw_request(self, body: bytes) -> bytes:
        head = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def request_body(model: str, stream: bool) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    first_data_ns: int | None
    """perf_counter_ns when the body first held ``data:`` (the first SSE event began), if it did."""
    done_ns: int


class ProtocolError(RuntimeError):
    pass


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self._address = (host, port)
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buf = bytearray()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self._address, timeout=self._timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        return self._sock

    def _recv(self) -> None:
        data = self._socket().recv(65536)
        if not data:
            raise ProtocolError("connection closed by the server mid-response")
        self._buf += data

    def _read_line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._recv()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def send(self, raw: bytes) -> int:
        """Write a request; returns perf_counter_ns just before the write."""
        sock = self._socket()
        start = time.perf_counter_ns()
        sock.sendall(raw)
        return start

    def read_response(self) -> Response:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._recv()
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"bad status line {head[0]!r}") from exc
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        first_data_ns: int | None = None
        body = bytearray()

        def seen(chunk: bytes) -> None:
            nonlocal first_data_ns
            body.extend(chunk)
            if first_data_ns is None and b"data:" in body:
                first_data_ns = time.perf_counter_ns()

        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._read_line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._read_line():  # trailers, then the blank line
                        pass
                    break
                while len(self._buf) < size + 2:
                    self._recv()
                seen(bytes(self._buf[:size]))
                del self._buf[: size + 2]
        elif "content-length" in headers:
            length = int(headers["content-length"])
            while len(self._buf) < length:
                self._recv()
            seen(bytes(self._buf[:length]))
            del self._buf[:length]
        else:  # delimited by the server closing the connection
            while True:
                data = self._socket().recv(65536)
                if not data:
                    break
                seen(bytes(data))
            self.close()
        done_ns = time.perf_counter_ns()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, bytes(body), first_data_ns, done_ns)


def check_response(response: Response, stream: bool, expected_chunks: int) -> list[str]:
    """Problems with one chat completion answer (empty when it looks right)."""
    problems: list[str] = []
    if response.status != 200:
        snippet = response.body[:300].decode("utf-8", "replace")
        return [f"HTTP {response.status}: {snippet}"]
    if not stream:
        try:
            doc = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return [f"body is not JSON: {response.body[:200]!r}"]
        if not isinstance(doc, dict) or doc.get("object") != "chat.completion" or not doc.get("choices"):
            problems.append(f"not a chat.completion: {response.body[:200]!r}")
        elif "usage" not in doc:
            problems.append("chat.completion without usage")
        return problems
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        problems.append(f"stream content-type is {response.headers.get('content-type')!r}")
    events = [e.strip() for e in response.body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    data = [e[5:].strip() for e in events if e.startswith(b"data:")]
    if not data or data[-1] != b"[DONE]":
        problems.append("stream does not end with data: [DONE]")
    content_chunks = 0
    for item in data:
        if item == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(item)
        except orjson.JSONDecodeError:
            problems.append(f"stream event is not JSON: {item[:120]!r}")
            continue
        if chunk.get("object") != "chat.completion.chunk":
            problems.append(f"stream event is not a chat.completion.chunk: {item[:120]!r}")
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                content_chunks += 1
    if content_chunks != expected_chunks:
        problems.append(f"stream had {content_chunks} content chunks, expected {expected_chunks}")
    return problems


def check_endpoint(endpoint: Endpoint, model: str, expected_chunks: int) -> dict[str, list[str]]:
    """Send one non-streaming and one streaming request and report what looks wrong with each."""
    found: dict[str, list[str]] = {}
    with Connection(endpoint.host, endpoint.port) as conn:
        for stream in (False, True):
            name = "stream" if stream else "non-stream"
            try:
                conn.send(endpoint.raw_request(request_body(model, stream)))
                found[name] = check_response(conn.read_response(), stream, expected_chunks)
            except (OSError, ProtocolError, ValueError) as exc:
                found[name] = [f"request failed: {exc!r}"]
                conn.close()
    return found


@dataclass
class TtfcResult:
    """Time to first chunk of sequential streaming requests on one connection, in milliseconds."""

    sent: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    total_p50_ms: float
    first_error: str | None = None
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["samples_ms"]
        return out


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def measure_ttfc(endpoint: Endpoint, model: str, requests: int, warmup: int = 50) -> TtfcResult:
    """Send ``requests`` streaming requests one after another; time request write -> first SSE data."""
    raw = endpoint.raw_request(request_body(model, stream=True))
    ttfc: list[float] = []
    totals: list[float] = []
    errors = 0
    first_error: str | None = None
    with Connection(endpoint.host, endpoint.port) as conn:
        for i in range(warmup + requests):
            try:
                start = conn.send(raw)
                response = conn.read_response()
            except (OSError, ProtocolError, ValueError) as exc:
                conn.close()
                errors += 1
                first_error = first_error or repr(exc)
                continue
            if response.status != 200 or response.first_data_ns is None:
                errors += 1
                first_error = first_error or f"HTTP {response.status}: {response.body[:200]!r}"
                continue
            if i >= warmup:
                ttfc.append((response.first_data_ns - start) / 1e6)
                totals.append((response.done_ns - start) / 1e6)
    return TtfcResult(
        sent=warmup + requests,
        requests=len(ttfc),
        errors=errors,
        p50_ms=percentile(ttfc, 50),
        p99_ms=percentile(ttfc, 99),
        mean_ms=statistics.fmean(ttfc) if ttfc else 0.0,
        total_p50_ms=percentile(totals, 50),
        first_error=first_error,
        samples_ms=ttfc,
    )

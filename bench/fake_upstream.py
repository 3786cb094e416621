"""A very fast fake OpenAI-compatible upstream for benchmarking.

A raw asyncio ``Protocol`` HTTP/1.1 server (on uvloop when available) with keep-alive and pipelining.
It answers in a few microseconds so that it is never the bottleneck of a gateway benchmark:

* ``POST /v1/chat/completions``: a fixed ``chat.completion`` with usage, or, with ``"stream": true``,
  20 content chunks, a finish chunk, a usage chunk (only with ``stream_options.include_usage``) and
  ``data: [DONE]``, sent as Server-Sent Events over chunked transfer encoding in a single write.
  A model whose name ends in ``-paced`` (e.g. ``gpt-4o-mini-paced``) streams like a generating model instead:
  the head at once, then one content chunk every 50 ms, the last one together with the finish chunk, the
  usage chunk and ``[DONE]`` (about 1 s a stream). The same server thus serves fast and paced streams.
* ``GET /v1/models``: one model list.
* ``GET /healthz``: ``{"status": "ok"}``.

Run it with ``python -m bench.fake_upstream --port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any, cast

import orjson

STREAM_CONTENT_CHUNKS = 20
COMPLETION_TEXT = "Hello! This is the GopherGate benchmark upstream answering."
PROMPT_TOKENS = 9
COMPLETION_TOKENS = 12
STREAM_COMPLETION_TOKENS = STREAM_CONTENT_CHUNKS
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
PACED_SUFFIX = "-paced"
PACE_INTERVAL_S = 0.05

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def build_completion(model: str, created: int) -> bytes:
    """The JSON body of a non-streaming answer."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000001",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(COMPLETION_TOKENS),
        }
    )


def build_stream_events(model: str, created: int, include_usage: bool) -> list[bytes]:
    """The SSE events (each ``data: ...\\n\\n``) of a streaming answer, ``[DONE]`` included."""
    base: dict[str, Any] = {
        "id": "chatcmpl-bench0000000000000000000002",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_bench",
    }
    payloads: list[dict[str, Any]] = []
    for i in range(STREAM_CONTENT_CHUNKS):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta = {"role": "assistant", "content": "tok0 "}
        payloads.append({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
    payloads.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        payloads.append({**base, "choices": [], "usage": _usage(STREAM_COMPLETION_TOKENS)})
    events = [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads]
    events.append(b"data: [DONE]\n\n")
    return events


def _frame(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


def _chunked(events: list[bytes]) -> bytes:
    """Frame each event as one HTTP/1.1 chunk and add the terminating chunk."""
    return b"".join(_frame(e) for e in events) + b"0\r\n\r\n"


def paced_writes(events: list[bytes]) -> list[bytes]:
    """The timed writes of a paced stream: one per content chunk, the rest of the stream with the last one."""
    writes = [_frame(e) for e in events[: STREAM_CONTENT_CHUNKS - 1]]
    writes.append(b"".join(_frame(e) for e in events[STREAM_CONTENT_CHUNKS - 1 :]) + b"0\r\n\r\n")
    return writes


class Paced:
    """A paced streaming answer: ``head`` at once, then each of ``writes`` ``PACE_INTERVAL_S`` after the last."""

    __slots__ = ("head", "writes")

    def __init__(self, head: bytes, writes: list[bytes]) -> None:
        self.head = head
        self.writes = writes


def _response(status: int, content_type: bytes, body: bytes, keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        content_type,
        len(body),
    )
    if not keep_alive:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


def _error(status: int, message: str, keep_alive: bool) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
    return _response(status, b"application/json", body, keep_alive)


class Answers:
    """Prebuilt response bytes, keyed by what varies between requests."""

    def __init__(self) -> None:
        self.created = int(time.time())
        self._cache: dict[tuple[str, bool, bool, bool], bytes | Paced] = {}
        models = {
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": self.created, "owned_by": "bench"}],
        }
        self._models = orjson.dumps(models)

    def models(self, keep_alive: bool) -> bytes:
        return _response(200, b"application/json", self._models, keep_alive)

    def chat(self, body: bytes, keep_alive: bool) -> bytes | Paced:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "request body is not valid JSON", keep_alive)
        if not isinstance(request, dict):
            return _error(400, "request body must be a JSON object", keep_alive)
        model = request.get("model")
        if not isinstance(model, str):
            model = "gpt-4o-mini"
        stream = request.get("stream") is True
        options = request.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        key = (model, stream, include_usage, keep_alive)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._build(model, stream, include_usage, keep_alive)
            if len(self._cache) < 1024:
                self._cache[key] = cached
        return cached

    def _build(self, model: str, stream: bool, include_usage: bool, keep_alive: bool) -> bytes | Paced:
        if not stream:
            return _response(200, b"application/json", build_completion(model, self.created), keep_alive)
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
        )
        if not keep_alive:
            head += b"connection: close\r\n"
        events = build_stream_events(model, self.created, include_usage)
        if model.endswith(PACED_SUFFIX):
            return Paced(head + b"\r\n", paced_writes(events))
        return head + b"\r\n" + _chunked(events)


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parses pipelined requests and writes prebuilt answers.

    A paced answer holds the connection: requests that arrive meanwhile wait in the buffer until it ends.
    """

    __slots__ = ("_answers", "_buffer", "_due", "_paced", "_paced_close", "_paced_next", "_timer", "_transport")

    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._paced: list[bytes] | None = None
        self._paced_next = 0
        self._paced_close = False
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, hence the cast.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._paced is None:
            self._serve_buffer()

    def _serve_buffer(self) -> None:
        out: list[bytes] = []
        close = False
        paced: Paced | None = None
        while not close:
            parsed = self._next_request()
            if parsed is None:
                break
            response, keep_alive = parsed
            close = not keep_alive
            if isinstance(response, Paced):
                out.append(response.head)
                paced = response
                break
            out.append(response)
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if paced is not None:
            self._paced, self._paced_next, self._paced_close = paced.writes, 0, close
            loop = asyncio.get_running_loop()
            # Absolute due times: the pace does not drift by the time each write takes.
            self._due = loop.time() + PACE_INTERVAL_S
            self._timer = loop.call_at(self._due, self._pace)
        elif close:
            transport.close()
        elif len(self._buffer) > MAX_HEADER_BYTES + MAX_BODY_BYTES:
            transport.close()

    def _pace(self) -> None:
        self._timer = None
        transport, writes = self._transport, self._paced
        if transport is None or writes is None:
            return
        transport.write(writes[self._paced_next])
        self._paced_next += 1
        if self._paced_next < len(writes):
            self._due += PACE_INTERVAL_S
            self._timer = asyncio.get_running_loop().call_at(self._due, self._pace)
            return
        self._paced = None
        if self._paced_close:
            transport.close()
        elif self._buffer:
            self._serve_buffer()

    def _next_request(self) -> tuple[bytes | Paced, bool] | None:
        """Parse one complete request off the buffer and answer it; None if more bytes are needed."""
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                return _error(400, "request head too large", False), False
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            return _error(400, "malformed request line", False), False
        content_length = 0
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    return _error(400, "bad content-length", False), False
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                connection = value.strip().lower()
        if version == b"HTTP/1.0":
            keep_alive = connection == b"keep-alive"
        else:
            keep_alive = connection != b"close"
        start = end + 4
        if chunked:
            try:
                decoded = _dechunk(buf, start)
            except ValueError:
                return _error(400, "malformed chunked body", False), False
            if decoded is None:
                return None
            body, consumed = decoded
            del buf[:consumed]
        else:
            if content_length > MAX_BODY_BYTES:
                return _error(400, "request body too large", False), False
            if len(buf) < start + content_length:
                return None
            body = bytes(buf[start : start + content_length])
            del buf[: start + content_length]
        return self._answer(method, target, body, keep_alive), keep_alive

    def _answer(self, method: bytes, target: bytes, body: bytes, keep_alive: bool) -> bytes | Paced:
        path = target.split(b"?", 1)[0]
        if path == b"/v1/chat/completions":
            if method != b"POST":
                return _error(405, "use POST", keep_alive)
            return self._answers.chat(body, keep_alive)
        if path == b"/v1/models" and method == b"GET":
            return self._answers.models(keep_alive)
        if path == b"/healthz":
            return _response(200, b"application/json", b'{"status":"ok"}', keep_alive)
        return _error(404, f"no route for {path.decode('latin-1')}", keep_alive)


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body starting at ``start``; (body, end offset) or None if incomplete."""
    pos = start
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            # Skip trailers up to the blank line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    answers = Answers()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(answers), host, port, reuse_address=True, backlog=4096)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def run(host: str, port: int) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port))
    else:
        uvloop.run(serve(host, port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI-compatible upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args(argv)
    try:
        run(args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""The built-in HTTP/1.1 server (server/http11.py) with small ASGI apps, driven byte for byte over loopback.

Each test starts the server's protocol on the test's own loop and speaks raw HTTP to it, so framing, keep-alive,
pipelining, limits, disconnects and backpressure are exercised on real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from gophergate.server.http11 import BODY_ERROR, ClientGone, HttpConnection, ServerState

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[tuple[int, ServerState]]:
    state = ServerState(app, **options)
    server = await asyncio.get_running_loop().create_server(lambda: HttpConnection(state), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], state
    finally:
        server.close()
        for conn in list(state.connections):
            conn.transport.close()
        for task in list(state.tasks):
            task.cancel()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One response: status line, headers (lower-cased names), and the body as framed (length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    status = lines[0]
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


async def text_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the method, path, query and body."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"%s %s ?%s [%s]" % (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": answer})


async def test_keep_alive_answers_several_requests_on_one_connection_with_a_length_and_a_date() -> None:
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(3):
            writer.write(b"POST /p%d?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" % n)
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert body == b"POST /p%d ?x=1 [hi]" % n
            assert headers[b"content-length"] == str(len(body)).encode()
            assert headers[b"date"].endswith(b"GMT") and b"connection" not in headers
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/first":
            await asyncio.sleep(0.05)
        await text_app(scope, receive, send)

    async with serving(slow_first) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        assert bodies == [b"GET /first ? []", b"POST /second ? [abc]", b"GET /third ? []"]
        writer.close()


async def test_path_is_percent_decoded_and_raw_path_kept_and_absolute_form_accepted() -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models/a%2Fb%20c?q=%20 HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == b"HTTP/1.1 204 No Content" and b"content-length" not in headers and body == b""
        writer.write(b"GET http://example.com/abs/path?k=v HTTP/1.1\r\nHost: example.com\r\n\r\n")
        await read_response(reader)
        writer.close()
    assert seen == [("/v1/models/a/b c", b"/v1/models/a%2Fb%20c", b"q=%20"), ("/abs/path", b"/abs/path", b"k=v")]


async def test_streamed_answer_is_chunked_and_each_part_is_written_when_sent() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        assert await asyncio.wait_for(reader.readuntil(b"data: 1\n\n\r\n"), 2) == b"9\r\ndata: 1\n\n\r\n"
        release.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # the connection is still good
        release.set()
        _, _, body = await read_response(reader)
        assert body == b"data: 1\n\ndata: 2\n\n"
        writer.close()


async def test_an_answer_with_a_given_length_is_not_chunked() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        _, headers, body = await read_response(reader)
        assert b"transfer-encoding" not in headers and body == b"abcdef"
        writer.close()


async def test_chunked_request_body_reaches_the_app_in_parts() -> None:
    parts: list[tuple[bytes, bool]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            parts.append((message["body"], message["more_body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        _, _, body = await read_response(reader)
        assert body == b"ok"
        writer.close()
    assert b"".join(part for part, _ in parts) == b"hello world"
    assert parts[0] == (b"hello", True) and parts[-1][1] is False


async def test_expect_100_continue_is_answered_only_when_the_app_reads_the_body() -> None:
    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too big"})

    head = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        _, _, body = await read_response(reader)
        assert body == b"POST / ? [hello]"
        writer.close()
    async with serving(refuses) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        status, headers, _ = await read_response(reader)
        assert status == b"HTTP/1.1 413 Request Entity Too Large"
        # The body was never read: the connection cannot carry another request, so it is closed.
        assert headers[b"connection"] == b"close"
        assert await reader.read() == b""


async def test_head_gets_the_length_but_no_body() -> None:
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 12\r\n" in head  # len(b"HEAD /x ? []")
        _, _, body = await read_response(reader)  # the next answer follows at once: no body came in between
        assert body == b"GET /y ? []"
        writer.close()


async def test_http_1_0_closes_after_the_answer_and_a_stream_is_ended_by_the_close() -> None:
    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async with serving(stream) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in data
        assert data.endswith(b"\r\n\r\nab") and b"chunked" not in data


async def test_invalid_http_gets_400_and_the_connection_closes() -> None:
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in data


async def test_a_head_over_64_kib_gets_431() -> None:
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_an_app_that_fails_before_answering_gives_500_and_after_the_head_cuts_the_connection() -> None:
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    async with serving(fails) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /early HTTP/1.1\r\nHost: a\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"boom" not in data
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"4\r\npart\r\n")  # no final chunk


async def test_a_response_header_with_a_line_break_is_refused_with_500() -> None:
    async def splits(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nset-cookie: x")]})
        await send({"type": "http.response.body", "body": b"hi"})

    async with serving(splits) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 500 ") and b"set-cookie" not in data


async def test_a_client_that_leaves_is_seen_by_receive_and_send_raises() -> None:
    events: list[str] = []
    sent_after = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["more_body"] is False
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        events.append((await receive())["type"])  # blocks until the client goes: no busy loop
        try:
            await send({"type": "http.response.body", "body": b"y", "more_body": True})
        except ClientGone:
            events.append("send raised")
        sent_after.set()

    async with serving(app) as (port, _state):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await reader.readuntil(b"x\r\n")
        await asyncio.sleep(0.05)
        assert events == []
        writer.close()
        await asyncio.wait_for(sent_after.wait(), 2)
    assert events == ["http.disconnect", "send raised"]


async def test_receive_after_the_answer_reports_a_disconnect() -> None:
    after: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        watcher = asyncio.create_task(receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        after.append((await asyncio.wait_for(watcher, 1))["type"])

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await read_response(reader)
        await asyncio.sleep(0.05)
        writer.close()
    assert after == ["http.disconnect"]


async def test_send_waits_while_the_client_does_not_read() -> None:
    chunk = b"z" * (1024 * 1024)
    progress: list[int] = []

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % (32 * len(chunk)))]}
        )
        for n in range(32):
            await send({"type": "http.response.body", "body": chunk, "more_body": n < 31})
            progress.append(n)

    async with serving(big) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
        writer.transport.pause_reading()
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.3)
        assert len(progress) < 32  # 32 MiB did not all go into the server's buffer
        writer.transport.resume_reading()
        _, _, body = await asyncio.wait_for(read_response(reader), 10)
        assert len(body) == 32 * len(chunk) and len(progress) == 32
        writer.close()


async def test_idle_connections_close_after_the_keep_alive_timeout_and_a_slow_head_gets_408() -> None:
    async with serving(text_app, keepalive_timeout=0.2, head_timeout=0.2) as (port, state):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await read_response(reader)
        await asyncio.sleep(0.3)
        state.tick()
        assert await asyncio.wait_for(reader.read(), 1) == b""

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # the head never ends
        await asyncio.sleep(0.3)
        state.tick()
        data = await asyncio.wait_for(reader.read(), 1)
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_stopping_closes_idle_connections_and_busy_ones_after_their_answer() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await text_app(scope, receive, send)

    async with serving(app) as (port, state):
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await read_response(idle_reader)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.05)
        state.close_idle()
        assert await asyncio.wait_for(idle_reader.read(), 1) == b""
        release.set()
        _status, headers, body = await read_response(busy_reader)
        assert body == b"GET /slow ? []" and headers[b"connection"] == b"close"
        assert await asyncio.wait_for(busy_reader.read(), 1) == b""


@pytest.mark.parametrize("status", [200, 404, 502])
async def test_status_lines_carry_the_standard_reason(status: int) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        line, _, _ = await read_response(reader)
        assert (
            line == {200: b"HTTP/1.1 200 OK", 404: b"HTTP/1.1 404 Not Found", 502: b"HTTP/1.1 502 Bad Gateway"}[status]
        )
        writer.close()


async def test_an_upgrade_to_another_protocol_is_answered_as_plain_http_then_closed() -> None:
    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n")
        status, headers, body = await asyncio.wait_for(read_response(reader), 2)
        assert status == b"HTTP/1.1 200 OK" and body == b"GET /x ? []"
        assert headers[b"connection"] == b"close"
        assert await asyncio.wait_for(reader.read(), 2) == b""


async def test_a_body_that_stops_arriving_gets_408_and_the_app_hears_a_disconnect() -> None:
    heard: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                heard.append("disconnect")
                return
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app, body_timeout=0.5) as (port, state):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes never come
        await asyncio.sleep(0.6)
        state.tick()
        data = await asyncio.wait_for(reader.read(), 1)
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        await asyncio.sleep(0.05)
        assert heard == ["disconnect"]

        # A slow body that arrives whole within the deadline is not cut.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\na")
        for part in (b"b", b"c", b"d"):
            await asyncio.sleep(0.1)
            state.tick()
            writer.write(part)
        _, _, body = await asyncio.wait_for(read_response(reader), 1)
        assert body == b"ok"
        writer.close()


async def test_trickled_body_is_cut_at_whole_body_deadline() -> None:
    """A byte now and then no longer resets the deadline: the whole body must arrive within it."""
    heard: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                heard.append("disconnect")
                return
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app, body_timeout=0.9) as (port, state):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\na")
        for _ in range(3):  # a byte every 0.2 s: each gap is far below the deadline, the whole body is not
            await asyncio.sleep(0.2)
            state.tick()
            writer.write(b"b")
        await asyncio.sleep(0.5)  # 0.5 s after the last byte, 1.1 s after the head
        state.tick()
        data = await asyncio.wait_for(reader.read(), 1)
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"did not arrive in time" in data
        assert heard == ["disconnect"]


async def test_a_request_body_the_app_does_not_read_yet_stops_being_read_past_1_mib() -> None:
    from gophergate.server import http11

    read = asyncio.Event()
    got = bytearray()

    async def late_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read.wait()
        while True:
            message = await receive()
            got.extend(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(got)})

    size = 8 * 1024 * 1024
    async with serving(late_reader) as (port, state):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        sending = asyncio.create_task(_send_all(writer, b"x" * size))
        await asyncio.sleep(0.3)
        (conn,) = state.connections
        assert conn.cycle is not None and conn.reading_paused
        assert conn.cycle.body_size <= http11._BODY_HIGH_WATER + 256 * 1024  # not the whole 8 MiB in memory
        read.set()
        _, _, body = await asyncio.wait_for(read_response(reader), 10)
        await sending
        assert body == b"%d" % size and len(got) == size
        writer.close()


async def _send_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def test_the_servers_own_error_answers_are_openai_style_json() -> None:

    async with serving(text_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP\r\n\r\n")
        status, headers, body = await asyncio.wait_for(read_response(reader), 2)
        assert status == b"HTTP/1.1 400 Bad Request" and headers[b"content-type"] == b"application/json"
        error = orjson.loads(body)["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "bad_request"
        assert error["message"] and error["param"] is None


async def test_a_chunked_body_that_breaks_off_malformed_gets_400_at_once_and_the_app_hears_why() -> None:
    heard: list[dict[str, Any]] = []

    async def reading_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:  # an app that does not know the reason: it stops on the disconnect and answers nothing
            message = await receive()
            heard.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return

    async def answering_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        reason = message[BODY_ERROR].encode()
        await send({"type": "http.response.start", "status": 422, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"app: " + reason})

    broken = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nxyz\r\n0\r\n\r\n"
    async with serving(reading_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(broken)
        data = await asyncio.wait_for(reader.read(), 2)  # at once, not after the 30 s body timeout
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in data
        error = orjson.loads(data.partition(b"\r\n\r\n")[2])["error"]
        assert "chunked framing" in error["message"] and error["type"] == "invalid_request_error"
    assert heard[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert heard[-1]["type"] == "http.disconnect" and "chunked framing" in heard[-1][BODY_ERROR]

    async with serving(answering_app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(broken)
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 422 ") and b"connection: close" in data
        assert data.endswith(b"app: The request body is not valid HTTP/1.1 (its chunked framing is broken).")


async def test_trailer_fields_of_a_chunked_body_are_not_request_headers_and_count_against_the_head_limit() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        if message["type"] == "http.disconnect":
            return
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"Authorization: Bearer sk-trailer\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == b"HTTP/1.1 200 OK" and body == b"ok"
        assert [name for name, _ in seen[0]] == [b"host", b"transfer-encoding"]
        writer.write(head + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")  # past 64 KiB: refused at once
        data = await asyncio.wait_for(reader.read(), 2)
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"exceed 64 KiB" in data

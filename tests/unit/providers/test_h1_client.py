"""The h1 backend (providers/h1_client.py) against a scripted loopback server: what is particular to it (the
request bytes, the pool, the liveness peek, TLS, back-pressure). The rules both backends follow (sent once, framing
errors, caps, decoding) are checked on each in test_transport.py.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from gophergate.core.errors import UpstreamUnavailable
from gophergate.providers import h1_client as h1
from gophergate.providers import transport as t
from gophergate.providers.upstream import transport_errors
from tests.fakes.tls import self_signed
from tests.unit.providers.scripted import ScriptedServer, answer, collect, fixed


def client(**overrides: float) -> h1.H1Client:
    options = {"max_connections": 8, "connect_timeout": 2.0, "read_timeout": 5.0, "total_timeout": 10.0}
    options.update(overrides)
    return h1.H1Client(**options)  # type: ignore[arg-type]


async def test_request_bytes_carry_host_length_agent_and_the_headers_given() -> None:
    async with ScriptedServer(fixed(answer(200, b"{}"))) as server:
        port = server.url.rsplit(":", 1)[1]
        c = client()
        resp = await c.request(
            "POST", server.url + "/v1/chat/completions?x=1", {"Authorization": "Bearer k"}, b'{"a":1}', stream=False
        )
        assert resp.status == 200 and await resp.read() == b"{}"
        await c.close()
    request = server.requests[0][1]
    assert request.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in request
    assert b"Authorization: Bearer k\r\n" in request
    assert b"User-Agent: gophergate\r\n" in request
    assert b'Content-Length: 7\r\n\r\n{"a":1}' in request


async def test_keep_alive_connection_is_reused_for_the_next_request() -> None:
    async with ScriptedServer(fixed(answer(200, b"ok"))) as server:
        c = client()
        for _ in range(5):
            resp = await c.request("GET", server.url + "/", {}, None, stream=False)
            assert await resp.read() == b"ok"
        await c.close()
    assert server.connections == 1 and len(server.requests) == 5


async def test_connection_close_answer_is_not_reused() -> None:
    async with ScriptedServer(fixed(answer(200, b"ok", extra=b"Connection: close\r\n"), keep=False)) as server:
        c = client()
        for _ in range(3):
            assert await (await c.request("GET", server.url + "/", {}, None, stream=False)).read() == b"ok"
        await c.close()
    assert server.connections == 3


async def test_chunked_body_and_repeated_headers() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with ScriptedServer(fixed(data)) as server:
        c = client()
        resp = await c.request("GET", server.url + "/", {}, None, stream=False)
        assert await resp.read() == b"hello world"
        assert resp.header("x-a") == "1, 2" and resp.header("X-A") == "1, 2"
        assert resp.header("missing") is None
        await c.close()


async def test_body_delimited_by_close_is_read_to_the_end() -> None:
    async with ScriptedServer(fixed(b"HTTP/1.1 200 OK\r\n\r\nall of it", keep=False)) as server:
        c = client()
        assert await (await c.request("GET", server.url + "/", {}, None, stream=False)).read() == b"all of it"
        await c.close()


async def test_gzip_body_is_decoded() -> None:
    packed = gzip.compress(b'{"big": "' + b"x" * 5000 + b'"}')
    async with ScriptedServer(fixed(answer(200, packed, extra=b"Content-Encoding: gzip\r\n"))) as server:
        c = client()
        body = await (await c.request("GET", server.url + "/", {}, None, stream=False)).read()
        assert body.startswith(b'{"big": "xxx') and len(body) == 5011
        await c.close()


async def test_error_status_and_no_content() -> None:
    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if b" /gone " in request:
            writer.write(answer(404, b'{"error":{"message":"nope"}}'))
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    async with ScriptedServer(handler) as server:
        c = client()
        resp = await c.request("GET", server.url + "/gone", {}, None, stream=False)
        assert resp.status == 404 and b"nope" in await resp.read()
        resp = await c.request("DELETE", server.url + "/x", {}, None, stream=False)
        assert resp.status == 204 and await resp.read() == b""
        await c.close()
    assert server.connections == 1


async def test_stream_chunks_arrive_before_the_answer_ends() -> None:
    release = asyncio.Event()

    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"8\r\ndata: 1\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"8\r\ndata: 2\n\r\n0\r\n\r\n")
        await writer.drain()
        return True

    async with ScriptedServer(handler) as server:
        c = client()
        resp = await c.request("POST", server.url + "/s", {}, b"{}", stream=True)
        assert resp.status == 200 and resp.header("content-type") == "text/event-stream"
        chunks = resp.chunks()
        assert await asyncio.wait_for(anext(chunks), 2) == b"data: 1\n"  # before the server sends the rest
        release.set()
        assert await collect(chunks) == [b"data: 2\n"]
        # the finished stream gave its connection back
        assert await (await c.request("POST", server.url + "/s2", {}, b"{}", stream=True)).read()
        await c.close()
    assert server.connections == 1


async def test_abandoned_stream_closes_its_connection() -> None:
    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        try:
            await reader.read(1)  # the client hangs up: EOF here
        except ConnectionError:
            pass
        return False

    async with ScriptedServer(handler) as server:
        c = client()
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        assert await anext(resp.chunks()) == b"first"
        await resp.aclose(reuse=True)  # not finished: never reused
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        await resp.aclose(reuse=False)
        await c.close()
    assert server.connections == 2


async def test_idle_connection_seen_closed_is_dropped_from_the_pool() -> None:
    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"ok"))
        await writer.drain()
        return False  # keep-alive was announced, but the server drops the connection right after

    async with ScriptedServer(handler) as server:
        c = client()
        assert await (await c.request("POST", server.url + "/", {}, b"1", stream=False)).read() == b"ok"
        # The close has reached the client before the next request: the pool drops the dead connection.
        await asyncio.sleep(0.05)
        assert await (await c.request("POST", server.url + "/", {}, b"2", stream=False)).read() == b"ok"
        await c.close()
    assert [r[0] for r in server.requests] == [1, 2]


class _ThreadedServer:
    """A blocking server on its own thread: it closes a kept-alive connection while the client's loop is not
    running, so that only a look at the socket itself (not a callback) can tell the connection is dead."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hits: list[int] = []
        self.close_first = threading.Event()
        self.closed_first = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for number in (1, 2):
            conn, _ = self.sock.accept()
            with conn:
                conn.recv(65536)
                self.hits.append(number)
                conn.sendall(answer(200, b"conn%d" % number))
                if number == 1:
                    self.close_first.wait(5)
                    conn.shutdown(socket.SHUT_RDWR)
                    self.closed_first.set()
                else:
                    conn.recv(1)
        self.sock.close()


async def test_idle_connection_closed_by_the_peer_is_not_used() -> None:
    server = _ThreadedServer()
    c = client()
    assert await (await c.request("POST", server.url + "/", {}, b"1", stream=False)).read() == b"conn1"
    server.close_first.set()
    assert server.closed_first.wait(5)
    # The FIN is in the socket and the loop has not run: no callback saw it; idle long enough to be peeked at.
    time.sleep(h1.PEEK_AFTER_IDLE + 0.05)  # noqa: ASYNC251
    assert await (await c.request("POST", server.url + "/", {}, b"2", stream=False)).read() == b"conn2"
    await c.close()
    assert server.hits == [1, 2]


async def test_read_timeout_when_the_upstream_goes_silent() -> None:
    async def silent(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with ScriptedServer(silent) as server:
        c = client(read_timeout=0.2)
        with pytest.raises(t.ReadTimeout):
            await c.request("GET", server.url + "/", {}, None, stream=False)
        await c.close()


async def test_slow_but_steady_stream_is_not_a_read_timeout_and_total_timeout_still_ends_it() -> None:
    async def trickle(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(40):
            writer.write(b"1\r\n.\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        return False

    async with ScriptedServer(trickle) as server:
        c = client(read_timeout=0.3, total_timeout=1.0)
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        got: list[bytes] = []
        with pytest.raises(t.TotalTimeout):
            async for chunk in resp.chunks():
                got.append(chunk)
        assert len(got) >= 8  # ~0.05 s apart, each well inside the read timeout
        await c.close()


async def test_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with ScriptedServer(fixed(answer(200, b"ok"))) as server:
        c = client()
        with pytest.raises(t.ProtocolError, match="line break"):
            await c.request("GET", server.url + "/", {"X-Bad": "a\r\nInjected: 1"}, None, stream=False)
        await c.close()
    assert server.requests == []


async def test_pool_limit_queues_requests_until_a_connection_is_free() -> None:
    gate = asyncio.Event()

    async def slow(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await gate.wait()
        writer.write(answer(200, b"ok"))
        await writer.drain()
        return True

    async with ScriptedServer(slow) as server:
        c = client(max_connections=2)
        tasks = [asyncio.create_task(c.request("GET", server.url + "/", {}, None, stream=False)) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert server.connections == 2
        gate.set()
        results = await asyncio.gather(*tasks)
        assert [await r.read() for r in results] == [b"ok"] * 5
        await c.close()
    assert server.connections == 2


async def test_slow_reader_pauses_the_socket_and_gets_every_byte() -> None:
    size = 4 << 20

    async def big(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()
        return True

    async with ScriptedServer(big) as server:
        c = client()
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        await asyncio.sleep(0.3)  # the upstream writes far more than the high-water mark meanwhile
        total = 0
        async for chunk in resp.chunks():
            total += len(chunk)
        assert total == size
        await c.close()


async def test_https_upstream_is_verified_and_kept_alive(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(answer(200, b"secure"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"
    trusting = ssl.create_default_context(cafile=str(cert))
    c = h1.H1Client(max_connections=4, connect_timeout=2.0, read_timeout=2.0, total_timeout=5.0, ssl_context=trusting)
    for _ in range(3):
        assert await (await c.request("GET", url, {}, None, stream=False)).read() == b"secure"
    await c.close()
    # The default context does not know this certificate: the handshake fails, mapped to "could not connect".
    strict = client()
    with pytest.raises(UpstreamUnavailable, match="Could not connect"), transport_errors("openai"):
        await strict.request("GET", url, {}, None, stream=False)
    await strict.close()
    server.close()
    assert len(requests) == 3 and len(connections) == 1


async def test_full_pool_closes_another_hosts_idle_connection_instead_of_waiting() -> None:
    async with ScriptedServer(fixed(answer(200, b"a"))) as a, ScriptedServer(fixed(answer(200, b"b"))) as b:
        c = client(max_connections=1, total_timeout=2.0)
        assert await (await c.request("GET", a.url + "/", {}, None, stream=False)).read() == b"a"
        assert await (await c.request("GET", b.url + "/", {}, None, stream=False)).read() == b"b"
        assert await (await c.request("GET", a.url + "/", {}, None, stream=False)).read() == b"a"
        await c.close()
    assert (a.connections, b.connections) == (2, 1)


async def test_host_name_is_resolved_and_kept_in_the_host_header() -> None:
    """A name, not an address: resolved (through getaddrinfo and Happy Eyeballs), and sent as the Host."""
    async with ScriptedServer(fixed(answer(200, b"named"))) as server:
        port = server.url.rsplit(":", 1)[1]
        c = client()
        resp = await c.request("GET", f"http://localhost:{port}/", {}, None, stream=False)
        assert await resp.read() == b"named"
        await c.close()
    assert f"Host: localhost:{port}\r\n".encode() in server.requests[0][1]

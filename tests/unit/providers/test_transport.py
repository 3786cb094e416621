"""The transport seam (providers/transport.py) on both backends, h1 and aiohttp, against a scripted loopback upstream.

Every rule of the seam is checked on each backend: a request is sent once, a body shorter or longer than its
framing is an error (never a truncated or spliced answer), broken chunk framing and broken compression are
errors, buffered and decoded bodies are capped, and each failure comes out as the seam's own exception.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from pathlib import Path

import pytest

from gophergate.core.errors import UpstreamTimeout, UpstreamUnavailable
from gophergate.providers import transport as t
from gophergate.providers.aiohttp_client import AiohttpClient
from gophergate.providers.h1_client import H1Client
from gophergate.providers.upstream import transport_errors
from tests.fakes.tls import self_signed, server_context
from tests.unit.providers.scripted import ScriptedServer, answer, collect, fixed

BACKENDS = ["h1", "aiohttp"]
CAP = 64 * 1024


def make(kind: t.ClientKind, **overrides: float) -> t.Transport:
    options: dict[str, float] = {"connect_timeout": 2.0, "read_timeout": 5.0, "total_timeout": 10.0}
    options.update(overrides)
    return t.create_transport(kind, max_connections=8, max_response_bytes=CAP, environ={}, **options)  # type: ignore[arg-type]


def body_of(request: bytes) -> bytes:
    return request.split(b"\r\n\r\n", 1)[1]


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> t.ClientKind:
    value: t.ClientKind = request.param
    return value


# -- sent once -----------------------------------------------------------------------------------------------------


async def test_post_is_not_resent_after_connection_closes_without_answer(kind: t.ClientKind) -> None:
    """The upstream read the whole request on a kept-alive connection and closed it without a byte of answer: it
    may have acted on it, so the request is not sent again (issue 14, defect 4)."""

    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if request.endswith(b"again"):
            return False  # the second request on the kept-alive connection: read whole, closed without a byte
        writer.write(answer(200, b"ok"))
        await writer.drain()
        return True

    async with ScriptedServer(handler) as server:
        c = make(kind)
        for stream in (False, True):
            assert await (await c.request("POST", server.url + "/", {}, b"first", stream=stream)).read() == b"ok"
            with pytest.raises(t.RemoteClosed):
                await c.request("POST", server.url + "/", {}, b"again", stream=stream)
        await c.close()
    assert [body_of(r) for _, r in server.requests] == [b"first", b"again"] * 2


async def test_fresh_connection_closed_without_answer_is_an_error_not_a_retry(kind: t.ClientKind) -> None:
    async with ScriptedServer(fixed(b"", keep=False)) as server:
        c = make(kind)
        with pytest.raises(t.RemoteClosed):
            await c.request("POST", server.url + "/", {}, b"x", stream=False)
        await c.close()
    assert len(server.requests) == 1


async def test_keep_alive_connection_is_reused(kind: t.ClientKind) -> None:
    async with ScriptedServer(fixed(answer(200, b"ok"))) as server:
        c = make(kind)
        for stream in (False, True, False):
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=stream)
            assert await resp.read() == b"ok"
            await resp.aclose(reuse=True)
        await c.close()
    assert server.connections == 1 and len(server.requests) == 3


async def test_abandoned_stream_closes_its_connection(kind: t.ClientKind) -> None:
    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read(1)  # the client hangs up: EOF here
        return False

    async with ScriptedServer(handler) as server:
        c = make(kind)
        for _ in range(2):
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
            assert await anext(resp.chunks()) == b"first"
            await resp.aclose(reuse=True)  # not finished: never reused
        await c.close()
    assert server.connections == 2


# -- framing: shorter, longer, broken ------------------------------------------------------------------------------


async def test_body_shorter_than_content_length_is_remote_closed_and_a_502(kind: t.ClientKind) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    async with ScriptedServer(fixed(cut, keep=False)) as server:
        c = make(kind)
        with pytest.raises(t.RemoteClosed):
            await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
        with pytest.raises(UpstreamUnavailable, match="failed: RemoteClosed") as info, transport_errors("openai"):
            await collect(resp.chunks())
        assert info.value.status == 502
        await c.close()


async def test_chunked_body_cut_short_is_remote_closed(kind: t.ClientKind) -> None:
    cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nonly"
    async with ScriptedServer(fixed(cut, keep=False)) as server:
        c = make(kind)
        with pytest.raises(t.RemoteClosed):
            await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
        with pytest.raises(t.RemoteClosed):
            await collect(resp.chunks())
        await c.close()


@pytest.mark.parametrize(
    "broken",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the chunk's data
        b"5\r\nhello\r\n3\r\nabcdefgh\r\n0\r\n\r\n",  # a chunk longer than its size
    ],
    ids=["chunk-size", "chunk-crlf", "chunk-overlong"],
)
async def test_broken_chunked_framing_is_a_protocol_error_and_a_502(kind: t.ClientKind, broken: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + broken
    async with ScriptedServer(fixed(data)) as server:
        c = make(kind)
        with pytest.raises(UpstreamUnavailable, match="failed: ProtocolError") as info, transport_errors("openai"):
            await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        assert info.value.status == 502
        await c.close()


async def test_garbage_answer_is_a_protocol_error(kind: t.ClientKind) -> None:
    async with ScriptedServer(fixed(b"SSH-2.0-OpenSSH\r\n\r\n", keep=False)) as server:
        c = make(kind)
        with pytest.raises(t.ProtocolError):
            await c.request("GET", server.url + "/", {}, None, stream=False)
        await c.close()


async def test_bytes_past_content_length_in_the_same_read_are_an_error(kind: t.ClientKind) -> None:
    """More bytes than the Content-Length says, arriving with the answer: a 502, and the connection is dropped."""
    async with ScriptedServer(fixed(answer(200, b"ok") + b"EXTRA")) as server:
        c = make(kind)
        for stream in (False, True):
            with pytest.raises(t.ProtocolError):
                resp = await c.request("POST", server.url + "/", {}, b"{}", stream=stream)
                await resp.read()
        await c.close()
    assert server.connections == 2


async def test_a_second_answer_in_the_same_read_is_never_taken_for_the_next_request(kind: t.ClientKind) -> None:
    """The upstream sends its answer and a whole second one at once. h1 fails the request (the answer is longer than
    its length says); aiohttp answers with the framed body and drops the connection (it cannot tell the two apart
    from outside). Either way the second answer never reaches the next request, which gets its own."""
    served = 0

    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal served
        served += 1
        writer.write(answer(200, b"ok%d" % served) + (answer(200, b"BAD") if served == 1 else b""))
        await writer.drain()
        return True

    async with ScriptedServer(handler) as server:
        c = make(kind)
        if kind == "h1":
            with pytest.raises(t.ProtocolError):
                await c.request("POST", server.url + "/", {}, b"1", stream=False)
        else:
            assert await (await c.request("POST", server.url + "/", {}, b"1", stream=False)).read() == b"ok1"
        assert await (await c.request("POST", server.url + "/", {}, b"2", stream=False)).read() == b"ok2"
        await c.close()
    assert [body_of(r) for _, r in server.requests] == [b"1", b"2"] and server.connections == 2


async def test_late_bytes_after_an_answer_are_never_read_as_the_next_answer(kind: t.ClientKind) -> None:
    """Bytes past the Content-Length that arrive after the answer was handed over, on a kept-alive connection: the
    connection is dropped, and the next request is sent (once) on a new one and gets its own answer. (aiohttp on its
    own parses them as the next request's answer: ``_CheckedConnector``.)"""
    served = 0

    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal served
        served += 1
        writer.write(answer(200, b"ok%d" % served))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(answer(200, b"BAD"))
        await writer.drain()
        return True

    async with ScriptedServer(handler) as server:
        c = make(kind)
        for stream in (False, True):
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=stream)
            assert (await resp.read()).startswith(b"ok")
            await resp.aclose(reuse=True)
            await asyncio.sleep(0.1)  # the late bytes arrive while the connection is idle in the pool
        await c.close()
    assert served == 2 and server.connections == 2


# -- decoding and the cap -----------------------------------------------------------------------------------------


def _chunked(total: int, piece: int = 8192) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    one = b"%x\r\n%s\r\n" % (piece, b"x" * piece)
    return head + one * (total // piece) + b"0\r\n\r\n"


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "packed"),
    [
        (b"gzip", gzip.compress(b'{"big": "' + b"x" * 5000 + b'"}')),
        (b"deflate", zlib.compress(b'{"big": "' + b"x" * 5000 + b'"}')),
        (b"deflate", _raw_deflate(b'{"big": "' + b"x" * 5000 + b'"}')),  # what some servers call deflate
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
async def test_compressed_body_is_decoded(kind: t.ClientKind, encoding: bytes, packed: bytes) -> None:
    async with ScriptedServer(fixed(answer(200, packed, extra=b"Content-Encoding: " + encoding + b"\r\n"))) as server:
        c = make(kind)
        for stream in (False, True):
            body = await (await c.request("POST", server.url + "/", {}, b"{}", stream=stream)).read()
            assert body.startswith(b'{"big": "xxx') and len(body) == 5011
        await c.close()
    assert b"accept-encoding" not in server.requests[0][1].lower()  # nothing asked for: most servers send none


@pytest.mark.parametrize(
    "packed",
    [
        gzip.compress(b"x" * 5000)[:-12],  # the gzip stream cut before its end (framing intact)
        gzip.compress(b"x" * 5000) + b"trailing",  # bytes after the end of the gzip stream
        b"\x1f\x8b\x08\x00not gzip at all",
    ],
    ids=["truncated", "trailing", "invalid"],
)
async def test_broken_compressed_body_is_a_protocol_error(kind: t.ClientKind, packed: bytes) -> None:
    async with ScriptedServer(fixed(answer(200, packed, extra=b"Content-Encoding: gzip\r\n"))) as server:
        c = make(kind)
        with pytest.raises(t.ProtocolError):
            await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        with pytest.raises(t.ProtocolError):  # h1 finds it before it hands the head over: the body came with it
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
            await collect(resp.chunks())
        await c.close()


@pytest.mark.parametrize(
    "answer_bytes",
    [
        answer(200, b"y" * (CAP + 1)),  # a declared length over the cap: refused before the body is read
        _chunked(4 * CAP),  # no length: refused as the body grows past the cap
        # 64 MiB of zeros in ~64 KiB of gzip: refused while decoding, not after
        answer(200, gzip.compress(bytes(64 << 20)), extra=b"Content-Encoding: gzip\r\n"),
        answer(200, zlib.compress(bytes(64 << 20)), extra=b"Content-Encoding: deflate\r\n"),
    ],
    ids=["content-length", "chunked", "gzip-bomb", "deflate-bomb"],
)
async def test_buffered_answer_over_cap_is_refused(kind: t.ClientKind, answer_bytes: bytes) -> None:
    async with ScriptedServer(fixed(answer_bytes)) as server:
        c = make(kind)
        with pytest.raises(t.ResponseTooLarge) as info:
            await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        assert info.value.limit == CAP
        # A streamed answer's read() (error bodies) is bounded by the same cap (h1 refuses a compressed read that
        # decodes past the cap at once, before the head is handed over).
        with pytest.raises(t.ResponseTooLarge):
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
            try:
                await resp.read()
            finally:
                await resp.aclose(reuse=False)
        await c.close()


async def test_one_compressed_read_past_the_cap_is_refused_in_a_stream(kind: t.ClientKind) -> None:
    """A stream is not capped as a whole, but no single read may decode to more than the cap (a small bomb)."""
    bomb = answer(200, gzip.compress(bytes(64 << 20)), extra=b"Content-Encoding: gzip\r\n")
    async with ScriptedServer(fixed(bomb)) as server:
        c = make(kind)
        with pytest.raises(t.ResponseTooLarge):
            resp = await c.request("POST", server.url + "/", {}, b"{}", stream=True)
            try:
                await collect(resp.chunks())
            finally:
                await resp.aclose(reuse=False)
        await c.close()


async def test_answer_at_the_cap_passes(kind: t.ClientKind) -> None:
    body = zlib.compress(b"z" * CAP)
    async with ScriptedServer(fixed(answer(200, body, extra=b"Content-Encoding: deflate\r\n"))) as server:
        c = make(kind)
        assert await (await c.request("POST", server.url + "/", {}, b"{}", stream=False)).read() == b"z" * CAP
        await c.close()


# -- failures come out as the seam's exceptions, mapped to 502 / 504 ------------------------------------------------


async def test_connect_refused_is_connect_error_and_a_502(kind: t.ClientKind) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    c = make(kind)
    with pytest.raises(t.ConnectError):
        await c.request("GET", f"http://127.0.0.1:{port}/", {}, None, stream=False)
    with pytest.raises(UpstreamUnavailable, match="Could not connect") as info, transport_errors("openai"):
        await c.request("GET", f"http://127.0.0.1:{port}/", {}, None, stream=False)
    assert info.value.status == 502
    await c.close()


async def test_untrusted_certificate_is_connect_error(kind: t.ClientKind, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server_context(cert, key))
    c = make(kind)
    with pytest.raises(UpstreamUnavailable, match="Could not connect") as info, transport_errors("openai"):
        await c.request("GET", f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/", {}, None, stream=False)
    assert isinstance(info.value.__cause__, t.ConnectError)
    await c.close()
    server.close()


async def test_silent_upstream_is_read_timeout_and_a_504(kind: t.ClientKind) -> None:
    async def silent(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3)
        return False

    async with ScriptedServer(silent) as server:
        c = make(kind, read_timeout=0.2)
        with pytest.raises(UpstreamTimeout) as info, transport_errors("openai"):
            await c.request("GET", server.url + "/", {}, None, stream=False)
        assert isinstance(info.value.__cause__, t.ReadTimeout) and info.value.status == 504
        await c.close()


async def test_total_timeout_ends_a_trickling_stream(kind: t.ClientKind) -> None:
    async def trickle(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(40):
            writer.write(b"1\r\n.\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        return False

    async with ScriptedServer(trickle) as server:
        c = make(kind, read_timeout=0.3, total_timeout=1.0)
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        with pytest.raises(t.TotalTimeout):
            await collect(resp.chunks())
        await c.close()


async def test_stream_read_timeout_cuts_an_idle_stream_but_not_a_slow_buffered_answer(kind: t.ClientKind) -> None:
    async def pause_then_answer(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n.\r\n")
        await writer.drain()
        await asyncio.sleep(0.6)
        writer.write(b"1\r\n.\r\n0\r\n\r\n")
        await writer.drain()
        return False

    async with ScriptedServer(pause_then_answer) as server:
        c = t.create_transport(
            kind,
            max_connections=8,
            connect_timeout=2.0,
            read_timeout=5.0,
            total_timeout=10.0,
            environ={},
            stream_read_timeout=0.3,
        )
        resp = await c.request("GET", server.url + "/", {}, None, stream=True)
        with pytest.raises(t.ReadTimeout):  # routing's stream_idle_timeout_s: the pause is longer
            await collect(resp.chunks())
        buffered = await c.request("GET", server.url + "/", {}, None, stream=False)
        assert await buffered.read() == b".."  # the read timeout (5 s) applies to buffered answers
        await c.close()


def test_every_seam_error_maps_to_its_status_and_message() -> None:
    cases: list[tuple[t.TransportError, int, str]] = [
        (t.ConnectError("x"), 502, "Could not connect to upstream provider 'p'."),
        (t.ConnectTimeout("x"), 504, "Connecting to upstream provider 'p' timed out."),
        (t.ReadTimeout("x"), 504, "Upstream provider 'p' timed out."),
        (t.TotalTimeout("x"), 504, "Upstream provider 'p' timed out."),
        (t.RemoteClosed("x"), 502, "Connection to upstream provider 'p' failed: RemoteClosed."),
        (t.ProtocolError("x"), 502, "Connection to upstream provider 'p' failed: ProtocolError."),
    ]
    for error, status, message in cases:
        with pytest.raises((UpstreamUnavailable, UpstreamTimeout)) as info, transport_errors("p"):
            raise error
        assert (info.value.status, info.value.message) == (status, message)
    with pytest.raises(UpstreamUnavailable) as too_large, transport_errors("p"):
        raise t.ResponseTooLarge(CAP)
    assert too_large.value.status == 502 and too_large.value.code == "upstream_response_too_large"
    assert "GOPHERGATE_MAX_UPSTREAM_RESPONSE_BYTES" in too_large.value.message and str(CAP) in too_large.value.message


def test_transport_errors_maps_only_the_seams_exceptions() -> None:
    """A backend's own exception reaching a provider is a bug in that backend's mapping, not something to guess at."""
    with pytest.raises(ConnectionResetError), transport_errors("p"):
        raise ConnectionResetError("a backend forgot to map this")


# -- choosing the backend -----------------------------------------------------------------------------------------


def test_removed_client_values_start_as_auto_with_one_warning_line() -> None:
    assert t.client_kind("h1") == ("h1", None) and t.client_kind("aiohttp") == ("aiohttp", None)
    for removed in t.REMOVED_KINDS:
        kind, warning = t.client_kind(removed)
        assert kind == "auto" and warning is not None and "\n" not in warning
        assert warning.startswith(f"GOPHERGATE_UPSTREAM_CLIENT={removed} was removed; using auto")


async def test_without_proxy_variables_each_kind_is_one_backend() -> None:
    options = {"max_connections": 4, "connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 1.0}
    environ = {"NO_PROXY": "x", "HTTPS_PROXY": " "}  # blank: no proxy
    for kind, expected in (("auto", H1Client), ("h1", H1Client), ("aiohttp", AiohttpClient)):
        transport = t.create_transport(kind, environ=environ, **options)  # type: ignore[arg-type]
        assert type(transport) is expected
        await transport.close()


def _proxy_handler(seen: list[bytes]) -> ScriptedServer:
    """A plain-HTTP forward proxy stand-in: records what it is sent (absolute-form targets) and answers itself."""

    async def handler(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        seen.append(request)
        writer.write(answer(200, b"via proxy"))
        await writer.drain()
        return True

    return ScriptedServer(handler)


@pytest.mark.parametrize("kind", ["auto", "aiohttp", "h1"])
async def test_proxy_is_chosen_per_origin_once_and_no_proxy_goes_direct(
    kind: t.ClientKind, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []
    async with (
        _proxy_handler(seen) as proxy,
        ScriptedServer(fixed(answer(200, b"direct"))) as proxied,
        ScriptedServer(fixed(answer(200, b"direct"))) as listed,
    ):
        proxied_url = proxied.url.replace("127.0.0.1", "localhost") + "/v1/x"  # NO_PROXY lists 127.0.0.1 only
        environ = {"http_proxy": proxy.url.replace("http://", "http://user:p%40ss@"), "NO_PROXY": "127.0.0.1"}
        caplog.set_level(logging.INFO, logger="gophergate.providers.transport")
        c = t.create_transport(
            kind, max_connections=4, connect_timeout=2, read_timeout=2, total_timeout=5, environ=environ
        )
        for _ in range(3):
            assert await (await c.request("POST", proxied_url, {}, b"{}", stream=False)).read() == (
                b"direct" if kind == "h1" else b"via proxy"
            )
            assert await (await c.request("POST", listed.url + "/v1/y", {}, b"{}", stream=False)).read() == b"direct"
        await c.close()
    assert len(listed.requests) == 3
    records = [r for r in caplog.records if r.name == "gophergate.providers.transport"]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and "localhost" in lines[0] and "p%40ss" not in lines[0] and "user" not in lines[0]
    if kind == "h1":  # named h1: direct, with one warning that the proxy is not used
        assert not seen and len(proxied.requests) == 3 and records[0].levelno == logging.WARNING
        return
    assert not proxied.requests and len(seen) == 3
    assert seen[0].startswith(f"POST {proxied_url} HTTP/1.1\r\n".encode())  # absolute-form: a proxy request
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in seen[0]  # user:p@ss


async def test_unsupported_proxy_scheme_fails_the_requests_saying_so(caplog: pytest.LogCaptureFixture) -> None:
    """A socks proxy the aiohttp backend cannot use: never a silent direct connection, a clear error instead."""
    async with ScriptedServer(fixed(answer(200, b"direct"))) as server:
        c = t.create_transport(
            "auto",
            max_connections=4,
            connect_timeout=2,
            read_timeout=2,
            total_timeout=5,
            environ={"ALL_PROXY": "socks5://user:pw@127.0.0.1:1080"},
        )
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable, match="Could not connect"), transport_errors("p"):
                await c.request("POST", server.url + "/", {}, b"{}", stream=False)
        await c.close()
    assert not server.requests
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "socks5://127.0.0.1:1080" in errors[0] and "pw" not in errors[0]


async def test_empty_body_marked_compressed_is_empty_not_an_error(kind: t.ClientKind) -> None:
    async with ScriptedServer(fixed(answer(200, b"", extra=b"Content-Encoding: gzip\r\n"))) as server:
        c = make(kind)
        for stream in (False, True):
            assert await (await c.request("POST", server.url + "/", {}, b"{}", stream=stream)).read() == b""
        await c.close()

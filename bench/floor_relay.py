"""The machine floor: the least any Python gateway has to do, as a relay pinned where the gateway runs.

A keep-alive HTTP/1.1 relay on uvloop: it reads a request (``content-length`` body), writes it unchanged to
the upstream over one persistent connection per client connection, and passes the answer back as its bytes
arrive (each read from the upstream is written to the client at once, so a slowly generated stream reaches
the client chunk by chunk), following the ``content-length`` or chunked framing only to find where the
answer ends. No authentication, no parsing of JSON or SSE, no logging. The bench loads it exactly as it
loads the gateway (same pinning, same load), so its figures are what the machine's topology costs by itself:
the cross-core hops and wake-ups of a proxy on one core talking to a client and an upstream on the other,
and the reads and writes of each chunk. On some VMs an idle core takes hundreds of microseconds to wake, and
this shows how much of the gateway's added latency is that.

Run it with ``python -m bench.floor_relay --port 9002 --upstream-port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio

MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024


class ChunkedEnd:
    """Follows chunked framing over the reads of one body and tells where the body ends."""

    __slots__ = ("_buf", "_skip", "_trailers")

    def __init__(self) -> None:
        self._buf = b""  # an incomplete size or trailer line
        self._skip = 0  # bytes of chunk data (and its CRLF) still to pass
        self._trailers = False

    def feed(self, data: bytes) -> int | None:
        """The offset in ``data`` just past the end of the body, or None when the body goes on."""
        pos = 0
        n = len(data)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                self._buf += data[pos:]
                if len(self._buf) > MAX_HEAD_BYTES:
                    raise ValueError("chunk size line too long")
                return None
            line = (self._buf + data[pos:eol]).rstrip(b"\r")
            self._buf = b""
            pos = eol + 1
            if self._trailers:
                if not line:
                    return pos
                continue
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                self._trailers = True
            else:
                self._skip = size + 2  # the chunk and its CRLF
        return None


def _framing(head: bytes) -> tuple[int | None, bool]:
    """(content-length, chunked) of a message head."""
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start >= 0:
        start += len(b"\r\ncontent-length:")
        return int(lower[start : lower.index(b"\r\n", start)]), False
    return None, b"\r\ntransfer-encoding: chunked" in lower


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ConnectionError("header block too large")
    length, _ = _framing(head)
    return head + await reader.readexactly(length) if length else head


async def _relay_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pass one answer from the upstream to the client, each read as it comes."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ConnectionError("header block too large")
    length, chunked = _framing(head)
    if length is not None:
        writer.write(head + await reader.readexactly(length) if length else head)
        return
    if not chunked:
        writer.write(head)
        return
    end = ChunkedEnd()
    # What came with the head is relayed with it; the upstream answers one request at a time, so a read
    # never holds bytes past the end of the answer.
    pending = head
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("upstream closed mid-answer")
        done = end.feed(data) is not None
        writer.write(pending + data if pending else data)
        pending = b""
        if done:
            return


class Relay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            while True:
                up_writer.write(await _read_request(client_reader))
                await _relay_answer(up_reader, client_writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            client_writer.close()
            up_writer.close()


async def serve(port: int, upstream_host: str, upstream_port: int) -> None:
    relay = Relay(upstream_host, upstream_port)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="A minimal HTTP/1.1 relay, the bench's machine floor.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--upstream-host", default="127.0.0.1")
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway
        run = asyncio.run
    try:
        run(serve(args.port, args.upstream_host, args.upstream_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

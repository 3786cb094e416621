"""The machine floor: the least any Python gateway has to do, as a relay pinned where the gateway runs.

A keep-alive HTTP/1.1 relay on uvloop: it reads a request (``content-length`` body), writes it unchanged to
the upstream over one persistent connection per client connection, reads the answer (``content-length`` or
chunked) and writes it back. No authentication, no parsing of JSON, no logging. The bench loads it exactly as
it loads the gateway (same pinning, same wrk runs), so its "added" latency is what the machine's topology
costs by itself: the cross-core hops and wake-ups of a proxy on one core talking to a client and an upstream
on the other. On some VMs an idle core takes hundreds of microseconds to wake, and this shows how much of the
gateway's added latency is that.

Run it with ``python -m bench.floor_relay --port 9002 --upstream-port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio

MAX_HEAD_BYTES = 64 * 1024


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ConnectionError("header block too large")
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start >= 0:
        start += len(b"\r\ncontent-length:")
        length = int(lower[start : lower.index(b"\r\n", start)])
        return head + await reader.readexactly(length)
    if b"\r\ntransfer-encoding: chunked" in lower:
        parts = [head]
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            parts.append(size_line)
            parts.append(await reader.readexactly(size + 2))  # the chunk and its CRLF
            if size == 0:
                return b"".join(parts)
    return head


class Relay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            while True:
                up_writer.write(await _read_message(client_reader))
                client_writer.write(await _read_message(up_reader))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            client_writer.close()
            up_writer.close()


async def serve(port: int, upstream_host: str, upstream_port: int) -> None:
    relay = Relay(upstream_host, upstream_port)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", port, backlog=2048)
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

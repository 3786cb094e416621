"""The worker's lifespan handling (server/run.py): a startup that fails stops it before it serves."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from gophergate.server.run import bind, serve_socket


async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("bug in startup")


@pytest.mark.parametrize("app", [refuses, raises])
async def test_a_failed_startup_returns_a_non_zero_code_and_serves_nothing(app: Any) -> None:
    sock = bind("127.0.0.1", 0, 16)
    port = sock.getsockname()[1]
    try:
        assert await serve_socket(app, sock, grace=1, keepalive=5, backlog=16) == 3
        probe = socket.socket()
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))  # the socket listens (bound by the parent) but nobody answers
        probe.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(TimeoutError):
            probe.recv(1)
        probe.close()
    finally:
        sock.close()


def test_the_server_raises_its_soft_open_file_limit_to_the_hard_one() -> None:
    """Run in a child process so that the test process keeps its own limits."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import resource
        from gophergate.server.run import raise_open_file_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        now = raise_open_file_limit()
        expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
        assert now == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0], (now, expected)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

"""The bench's machine-floor relay relays answers unchanged: its figures stand for a real (if minimal) proxy."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

REPO = Path(__file__).resolve().parents[3]


def _start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not listen on {port}")


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    upstream, relay = free_port(), free_port()
    procs = [_start(["bench.fake_upstream", "--port", str(upstream)], upstream)]
    try:
        procs.append(_start(["bench.floor_relay", "--port", str(relay), "--upstream-port", str(upstream)], relay))
        yield upstream, relay
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _post(port: int, body: dict[str, object], client: httpx.Client) -> httpx.Response:
    return client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)


def test_floor_relay_passes_plain_and_chunked_answers_through_unchanged_on_one_connection(
    ports: tuple[int, int],
) -> None:
    upstream, relay = ports
    plain = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    stream = {**plain, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client() as direct_client, httpx.Client() as relay_client:
        for body in (plain, stream, plain, stream):  # several requests on the relay's kept-alive connection
            direct = _post(upstream, body, direct_client)
            relayed = _post(relay, body, relay_client)
            assert relayed.status_code == direct.status_code == 200
            assert relayed.content == direct.content
        assert relayed.text.endswith("data: [DONE]\n\n") and relayed.text.count("data: ") == 23


def test_floor_relay_passes_upstream_errors_through(ports: tuple[int, int]) -> None:
    _, relay = ports
    with httpx.Client() as client:
        response = client.post(f"http://127.0.0.1:{relay}/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400 and "error" in response.json()

"""The bench's machine-floor relay relays answers unchanged: its figures stand for a real (if minimal) proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.floor_relay import ChunkedEnd
from bench.procs import plan_cpus, start_fake_upstream, start_floor_relay

from tests.support import free_port


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """The fake upstream and the relay, started as `make bench` starts them (unpinned here)."""
    logs: Path = tmp_path_factory.mktemp("floor")
    plan = plan_cpus(pin=False)
    upstream, relay = free_port(), free_port()
    procs = [start_fake_upstream(upstream, plan, logs / "fake.log")]
    try:
        procs.append(start_floor_relay(relay, upstream, plan, logs / "relay.log"))
        yield upstream, relay
    finally:
        for proc in procs:
            proc.stop()


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


@pytest.mark.parametrize("step", [1, 3, 50, 100_000])
def test_floor_relay_finds_the_end_of_a_chunked_answer_however_the_reads_split_it(step: int) -> None:
    body = b"5;ext=1\r\nhello\r\n4\r\n\r\n\r\n\r\n0\r\nx-trailer: 1\r\n\r\n"  # a chunk of two CRLF pairs
    end = ChunkedEnd()
    found = None
    for i in range(0, len(body), step):
        offset = end.feed(body[i : i + step])
        if offset is not None:
            found = i + offset
            break
    assert found == len(body)


def test_floor_relay_passes_a_paced_stream_on_chunk_by_chunk(ports: tuple[int, int]) -> None:
    """A slowly generated stream reaches the client as it is generated, not at its end."""
    upstream, relay = ports
    body = {"model": "gpt-4o-mini-paced", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.Client() as client:
        direct = _post(upstream, body, client).content
        started = time.monotonic()
        with client.stream("POST", f"http://127.0.0.1:{relay}/v1/chat/completions", json=body) as response:
            pieces = [(time.monotonic() - started, piece) for piece in response.iter_raw()]
    first_at, total_at = pieces[0][0], pieces[-1][0]
    assert b"".join(p for _, p in pieces) == direct
    assert first_at < 0.5 and total_at > 0.9  # 20 chunks 50 ms apart: about 1 s in all

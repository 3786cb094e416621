"""The bench's machine-floor relay relays answers unchanged: its figures stand for a real (if minimal) proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
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

"""Exactly one log row per /v1 request, on SQLite and PostgreSQL, including at shutdown and on disconnect."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
from decimal import Decimal
from typing import Any

import httpx
import openai

from tests.fakes.openai_compat import FakeOpenAICompat


def _env(fake: FakeOpenAICompat, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": fake.base_url,
        "GOPHERGATE_DATABASE_URL": database_url,
        **extra,
    }


def test_n_requests_make_n_rows(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, database_url), database_url=database_url).start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

        def one(i: int) -> None:
            if i % 5 == 0:
                stream = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"n {i}"}], stream=True
                )
                for _ in stream:
                    pass
            elif i % 7 == 0:
                try:
                    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
                except openai.NotFoundError:
                    pass
            else:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n {i}"}])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(60)))
        rows = gateway.wait_rows(60)
        assert len(rows) == 60
        assert len({r["request_id"] for r in rows}) == 60
        assert sum(1 for r in rows if r["status"] == 404) == len([i for i in range(60) if i % 5 and i % 7 == 0])
        assert sum(1 for r in rows if r["stream"]) == 12


def test_sigterm_drains_queued_rows(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        # A long flush interval and a large batch keep every row queued until shutdown.
        env = _env(fake, database_url, GOPHERGATE_LOG_FLUSH_INTERVAL_MS="600000", GOPHERGATE_LOG_BATCH_SIZE="100000")
        gateway = make_gateway(env=env, database_url=database_url).start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
        for i in range(25):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q {i}"}])
        assert gateway.rows() == [], "rows were written before shutdown: the test would prove nothing"
        assert gateway.stop(signal.SIGTERM) == 0
        assert len(gateway.rows()) == 25


def test_sigterm_finishes_in_flight_stream(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, database_url), database_url=database_url).start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

        def slow_stream() -> str:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "SLOW 200 a b c d e"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(slow_stream)
            time.sleep(0.5)
            gateway.proc.send_signal(signal.SIGTERM)
            text = future.result(timeout=30)
        assert text.endswith("a b c d e")
        assert gateway.proc.wait(timeout=30) == 0
        rows = gateway.rows()
        assert len(rows) == 1 and rows[0]["status"] == 200


def test_client_disconnect_mid_stream_is_recorded_with_estimate(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, database_url), database_url=database_url).start()
        body = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"SLOW 300 w1 w2 w3 w4 w5"}]}'
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"echo" not in received:
            received += sock.recv(65536)
        sock.close()
        rows = gateway.wait_rows(1)
        assert len(rows) == 1
        row = rows[0]
        assert row["status"] == 499 and row["error_type"] == "client_disconnected"
        assert row["estimated"] in (True, 1) and row["completion_tokens"] > 0
        # Billed for what was produced, at gpt-4o-mini's price ($0.15 / $0.60 per 1M tokens).
        expected = (Decimal("0.15") * row["prompt_tokens"] + Decimal("0.6") * row["completion_tokens"]) / 10**6
        assert Decimal(str(row["cost_usd"])) == expected > 0
        # The upstream stream was abandoned too: the fake saw its client go away well before the 5 words.
        assert row["latency_ms"] < 1500


def test_revoked_key_is_refused(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, database_url), database_url=database_url).start()
        key = gateway.create_key("to-revoke")
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers).status_code == 200
        listing = gateway.cli("keys", "list").stdout
        key_id = next(line.split()[0] for line in listing.splitlines() if "to-revoke" in line)
        assert key not in listing
        gateway.cli("keys", "revoke", key_id)
        deadline = time.monotonic() + 5
        status = 200
        while status == 200 and time.monotonic() < deadline:
            status = httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers).status_code
            time.sleep(0.05)
        assert status == 401
        stored = gateway.rows("client_key_id = :id", {"id": int(key_id)})
        assert stored and all(r["client_key_id"] == int(key_id) for r in stored)

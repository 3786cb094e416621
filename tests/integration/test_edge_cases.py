"""Edge cases from probing the gateway as an attacker and a faulty upstream would (issue 14, defects 1, 7, 9, 10):
client disconnects while a non-streamed upstream call runs, over-deep JSON, trickled bodies, double-decoded
model ids, token counts sent as strings, conflicting key headers, over-long model names, login lockouts.

One gateway (body deadline 2 s, an admin user) in front of one strict OpenAI fake, shared by the module.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-test"
ADMIN_PASSWORD = "edge-admin-pass-1"
BODY_TIMEOUT = 2.0


class Edge:
    def __init__(self, gateway: Gateway, fake: FakeOpenAICompat) -> None:
        self.gateway = gateway
        self.fake = fake

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0, **kwargs)

    def post(self, path: str, content: bytes, **headers: str) -> httpx.Response:
        hdrs = {"content-type": "application/json", "authorization": f"Bearer {self.gateway.key}", **headers}
        return httpx.post(self.gateway.base_url + path, content=content, headers=hdrs, timeout=30)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    fake = FakeOpenAICompat("openai", api_key=UPSTREAM_KEY).start()
    tmp: Path = tmp_path_factory.mktemp("edge")
    gateway = Gateway(
        tmp,
        env={
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "GOPHERGATE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "GOPHERGATE_LOGIN_MAX_FAILURES": "3",
        },
    )
    try:
        gateway.start()
        yield Edge(gateway, fake)
    finally:
        gateway.stop()
        fake.stop()


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# -- 7: a client that leaves while a non-streamed call runs -----------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_nonstreaming_client_disconnect_cancels_upstream_and_logs_499(edge: Edge, endpoint: str) -> None:
    request_id = f"edge-gone-{endpoint}-{uuid.uuid4().hex[:8]}"
    marker = f"SLOW 8000 {request_id}"
    client = edge.client(timeout=0.5)  # the SDK gives up after 0.5 s and closes its connection
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        if endpoint == "chat":
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": marker}],
                extra_headers={"x-request-id": request_id},
            )
        else:
            client.responses.create(model="gpt-4o-mini", input=marker, extra_headers={"x-request-id": request_id})
    # The gateway noticed and closed its upstream connection: the fake saw its client go, long before its 8 s.
    deadline = time.monotonic() + 4
    while not any(marker.encode() in body for body in edge.fake.abandoned) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(marker.encode() in body for body in edge.fake.abandoned)
    assert time.monotonic() - started < 5
    row = edge.gateway.row_for(request_id)
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
    assert row["upstream_ms"] is not None and 300 <= row["upstream_ms"] < 5000  # what the upstream call took


# -- 9: JSON nesting --------------------------------------------------------------------------------------------


def test_request_nested_deeper_than_limit_is_400_naming_field(edge: Edge) -> None:
    for depth in (210, 300, 1_000):  # parseable by orjson, but not serialisable past 254
        nested = b"[" * depth + b"]" * depth
        body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + nested + b"}"
        response = edge.post("/chat/completions", body)
        assert response.status_code == 400, response.text
        error = _error(response)
        assert error["param"] == "metadata" and "nested" in error["message"]
        assert edge.gateway.row_for(response.headers["x-request-id"])["status"] == 400
    assert "Traceback" not in edge.gateway.logs()
    assert "Recursion limit" not in edge.gateway.logs()


# -- 10a: the whole body within a deadline ----------------------------------------------------------------------


def test_trickled_body_is_cut_at_whole_body_deadline(edge: Edge) -> None:
    request_id = f"edge-trickle-{uuid.uuid4().hex[:8]}"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {edge.gateway.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 1000\r\nx-request-id: {request_id}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", edge.gateway.port), timeout=10) as sock:
        sock.sendall(head + b"{")
        started = time.monotonic()
        sock.settimeout(0.4)
        answer = b""
        while time.monotonic() - started < BODY_TIMEOUT + 3:  # a byte every 0.4 s: never a gap near the deadline
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b" ")
                continue
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(2)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT - 0.5 <= elapsed < BODY_TIMEOUT + 1.5
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout" and "did not arrive" in error["message"]
    row = edge.gateway.row_for(request_id)
    assert row["status"] == 408 and row["error_type"] == "request_timeout"


# -- 10b: /v1/models/{id} decoded once --------------------------------------------------------------------------


def test_model_id_with_encoded_slash_is_decoded_once(edge: Edge) -> None:
    headers = {"authorization": f"Bearer {edge.gateway.key}"}
    url = edge.gateway.base_url + "/models/"
    response = httpx.get(url + "openai%2Fgpt-4o-mini", headers=headers)
    assert response.status_code == 200 and response.json()["id"] == "openai/gpt-4o-mini"
    # %25 is a literal '%': "openai%2Fgpt-4o-mini" is not a model (decoding twice made it "openai/gpt-4o-mini").
    response = httpx.get(url + "openai%252Fgpt-4o-mini", headers=headers)
    assert response.status_code == 404, response.text
    assert "'openai%2Fgpt-4o-mini'" in _error(response)["message"]
    row = edge.gateway.row_for(response.headers["x-request-id"])
    assert row["requested_model"] == "openai%2Fgpt-4o-mini"


# -- 10c: token counts sent as strings --------------------------------------------------------------------------


def _completion(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-edge",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "four words of answer"}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


def test_string_token_counts_are_parsed_or_marked_estimated(edge: Edge) -> None:
    client = edge.client()
    messages: Any = [{"role": "user", "content": "hello there"}]
    edge.fake.fail_next(200, _completion({"prompt_tokens": "12", "completion_tokens": "4", "total_tokens": "16"}))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    row = edge.gateway.row_for(raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["completion_tokens"], row["estimated"]) == (12, 4, False)

    edge.fake.fail_next(200, _completion({"prompt_tokens": "twelve", "completion_tokens": 4}))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    row = edge.gateway.row_for(raw.headers["x-request-id"])
    deadline = time.monotonic() + 5  # the estimate is the log writer's
    while not row["estimated"] and time.monotonic() < deadline:
        time.sleep(0.05)
        row = edge.gateway.row_for(raw.headers["x-request-id"])
    assert row["estimated"] and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


# -- 10d: two key headers -----------------------------------------------------------------------------------------


def test_conflicting_authorization_and_x_api_key_is_400(edge: Edge) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    response = edge.post("/chat/completions", body, **{"x-api-key": "gg-someone-elses-key"})
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "conflicting_api_keys"
    assert "'Authorization'" in error["message"] and "'x-api-key'" in error["message"]
    assert edge.gateway.row_for(response.headers["x-request-id"])["status"] == 400
    assert edge.post("/chat/completions", body, **{"x-api-key": edge.gateway.key}).status_code == 200


# -- 1: model names longer than the log column --------------------------------------------------------------------


def test_overlong_model_name_is_400_naming_model(edge: Edge) -> None:
    client = edge.client()
    long_name = "m" * 301
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=long_name, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(model=long_name, input="hi")
    with pytest.raises(openai.BadRequestError) as models:
        client.models.retrieve(long_name)
    for caught in (chat, embeddings, models):
        assert caught.value.param == "model"
        row = edge.gateway.row_for(caught.value.response.headers["x-request-id"])
        assert row["status"] == 400 and row["requested_model"] is None


# -- 10e: login lockout by username and address -------------------------------------------------------------------


def _login(edge: Edge, password: str, source: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as http:
        return http.post(edge.gateway.url + "/api/auth/login", json={"username": "admin", "password": password})


def test_lockout_from_one_address_does_not_lock_out_another(edge: Edge) -> None:
    for _ in range(3):
        assert _login(edge, "wrong-password", "127.0.0.2").status_code == 401
    assert _login(edge, ADMIN_PASSWORD, "127.0.0.2").status_code == 429  # that address waits, even when right
    assert _login(edge, ADMIN_PASSWORD, "127.0.0.3").status_code == 200  # the admin elsewhere gets in

"""Bad input and failing upstreams: OpenAI-style bodies, the right status, the field named, a log row each."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai
import psutil
import pytest

from tests.integration.conftest import Stack
from tests.support import free_port


def _post(stack: Stack, content: bytes | str, key: str | None = "default", **headers: str) -> httpx.Response:
    hdrs = {"content-type": "application/json", **headers}
    if key is not None:
        hdrs["authorization"] = f"Bearer {stack.gateway.key if key == 'default' else key}"
    return httpx.post(stack.gateway.base_url + "/chat/completions", content=content, headers=hdrs, timeout=30)


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return dict(body["error"])


def _logged(stack: Stack, response: httpx.Response) -> dict[str, Any]:
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == response.status_code
    assert row["error_message"]
    return row


GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_malformed_json_is_400(stack: Stack) -> None:
    response = _post(stack, b'{"model": "gpt-4o-mini", "messages": [')
    assert response.status_code == 400
    assert "not valid JSON" in _error(response)["message"]
    _logged(stack, response)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({**GOOD, "stream": "yes"}, "stream"),
        ({**GOOD, "max_tokens": -1}, "max_tokens"),
        ({**GOOD, "temperature": "hot"}, "temperature"),
        ({**GOOD, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_missing_or_ill_typed_field_is_400_naming_the_field(stack: Stack, body: dict[str, Any], param: str) -> None:
    response = _post(stack, json.dumps(body))
    assert response.status_code == 400
    assert _error(response)["param"] == param
    _logged(stack, response)


def test_non_object_body_is_400(stack: Stack) -> None:
    response = _post(stack, b"[1, 2]")
    assert response.status_code == 400
    assert _error(response)["type"] == "invalid_request_error"


def test_body_over_limit_is_413(stack: Stack) -> None:
    big = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * (11 * 1024 * 1024)}]})
    response = _post(stack, big)
    assert response.status_code == 413
    _error(response)
    _logged(stack, response)


@pytest.mark.parametrize("key", [None, "sk-gg-not-a-real-key", "sk-gg-" + "A" * 43])
def test_missing_or_unknown_key_is_401(stack: Stack, key: str | None) -> None:
    response = _post(stack, json.dumps(GOOD), key=key)
    assert response.status_code == 401
    assert _error(response)["type"] == "authentication_error"
    _logged(stack, response)


def test_x_api_key_header_is_accepted(stack: Stack) -> None:
    response = _post(stack, json.dumps(GOOD), key=None, **{"x-api-key": stack.gateway.key})
    assert response.status_code == 200


def test_upstream_4xx_is_passed_through_with_status_and_message(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        stack.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FAIL 400"}])
    assert info.value.status_code == 400
    assert "openai" in info.value.message


def test_upstream_429_keeps_status_and_retry_after(stack: Stack) -> None:
    response = _post(stack, json.dumps({**GOOD, "messages": [{"role": "user", "content": "FAIL 429"}]}))
    assert response.status_code == 429
    assert response.headers.get("retry-after")
    _logged(stack, response)


def test_upstream_5xx_is_502(stack: Stack) -> None:
    response = _post(stack, json.dumps({**GOOD, "messages": [{"role": "user", "content": "FAIL 500"}]}))
    assert response.status_code == 502
    assert _error(response)["type"] == "upstream_error"
    row = _logged(stack, response)
    assert row["prompt_tokens"] == 0 and row["completion_tokens"] == 0


@pytest.mark.parametrize(
    ("upstream_status", "client_status", "error_class"),
    [(429, 429, "rate_limited"), (503, 502, "overloaded"), (500, 502, "server_error"), (400, 400, None)],
)
def test_the_log_row_records_the_class_of_the_upstream_failure(
    stack: Stack, upstream_status: int, client_status: int, error_class: str | None
) -> None:
    response = _post(stack, json.dumps({**GOOD, "messages": [{"role": "user", "content": f"FAIL {upstream_status}"}]}))
    assert response.status_code == client_status
    assert _logged(stack, response)["error_class"] == error_class


def test_a_request_the_gateway_refuses_itself_has_no_upstream_failure_class(stack: Stack) -> None:
    response = _post(stack, b"{not json")
    assert response.status_code == 400
    assert _logged(stack, response)["error_class"] is None


def test_upstream_error_messages_never_carry_secrets(stack: Stack) -> None:
    stack.fakes["openai"].fail_next(
        401,
        {
            "error": {
                "message": "Incorrect API key provided: sk-upstre*****test.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )
    response = _post(stack, json.dumps(GOOD))
    assert response.status_code == 401
    message = _error(response)["message"]
    assert "sk-upstre" not in message and "gateway's provider credentials" in message


def test_xai_bad_key_400_is_reported_as_401(stack: Stack) -> None:
    stack.fakes["xai"].fail_next(
        400, {"code": "Client specified an invalid argument", "error": "Incorrect API key provided: xa***xx."}
    )
    response = _post(stack, json.dumps({**GOOD, "model": "grok-4.3"}))
    assert response.status_code == 401


def test_refused_connection_is_502(make_gateway: Any) -> None:
    gateway = make_gateway(env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    gateway.start()
    response = httpx.post(
        gateway.base_url + "/chat/completions", json=GOOD, headers={"authorization": f"Bearer {gateway.key}"}
    )
    assert response.status_code == 502
    assert "connect" in _error(response)["message"].lower()
    assert gateway.row_for(response.headers["x-request-id"])["status"] == 502


def test_upstream_timeout_is_504(make_gateway: Any) -> None:
    from tests.fakes.openai_compat import FakeOpenAICompat

    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(
            env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake.base_url, "GOPHERGATE_UPSTREAM_READ_TIMEOUT": "0.3"}
        )
        gateway.start()
        response = httpx.post(
            gateway.base_url + "/chat/completions",
            json={**GOOD, "messages": [{"role": "user", "content": "SLOW 2000"}]},
            headers={"authorization": f"Bearer {gateway.key}"},
            timeout=30,
        )
        assert response.status_code == 504
        assert _error(response)["code"] == "upstream_timeout"
        assert gateway.row_for(response.headers["x-request-id"])["status"] == 504


def test_stream_cut_short_ends_with_error_event_and_estimated_row(stack: Stack) -> None:
    client = stack.client()
    received = ""
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "CUT right here please"}], stream=True
        ):
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert received
    rows = stack.gateway.wait_rows(1, "error_type = 'upstream_stream_error'")
    row = rows[-1]
    assert row["status"] == 502
    assert row["estimated"] in (True, 1) and row["completion_tokens"] > 0 and row["prompt_tokens"] > 0


def test_mid_stream_upstream_error_is_relayed_as_error_event(stack: Stack) -> None:
    response = _post(stack, json.dumps({**GOOD, "stream": True, "messages": [{"role": "user", "content": "MIDERROR"}]}))
    assert response.status_code == 200
    errors = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith('data: {"error"')]
    assert errors
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert row["error_type"] == "upstream_stream_error"
    assert row["error_class"] == "server_error"  # the upstream's 500 error event


def test_a_stream_cut_by_the_upstream_is_classed_connection(stack: Stack) -> None:
    response = _post(stack, json.dumps({**GOOD, "stream": True, "messages": [{"role": "user", "content": "CUT"}]}))
    assert response.status_code == 200
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert (row["error_type"], row["error_class"]) == ("upstream_stream_error", "connection")


def test_wrong_method_and_unknown_path(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {stack.gateway.key}"}
    get = httpx.get(stack.gateway.base_url + "/chat/completions", headers=headers)
    assert get.status_code == 405
    _error(get)
    unknown = httpx.post(stack.gateway.base_url + "/nothing-here", headers=headers)
    assert unknown.status_code == 404
    _error(unknown)


def test_a_chunked_body_with_broken_framing_is_400_logged_and_answered_at_once(stack: Stack) -> None:
    url = httpx.URL(stack.gateway.base_url)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Bearer {stack.gateway.key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port), timeout=5) as sock:  # at once: not the 30 s body timeout
        sock.sendall(head + b'8\r\n{"model"\r\nnot-hex\r\n:1}\r\n0\r\n\r\n')
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_text, _, body = data.partition(b"\r\n\r\n")
    assert head_text.startswith(b"HTTP/1.1 400 ")
    headers = dict(line.split(": ", 1) for line in head_text.decode().split("\r\n")[1:])
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_body" and "chunked framing" in error["message"]
    row = stack.gateway.row_for(headers["x-request-id"])
    assert row["status"] == 400 and row["error_type"] == "invalid_body"


def _request_id(exc: openai.APIStatusError) -> str:
    return exc.response.headers["x-request-id"]


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
def test_post_is_not_resent_after_connection_closes_without_answer(stack: Stack, stream: bool) -> None:
    """The upstream read the whole request on a kept-alive connection and closed it without answering: it may
    have run the generation, so the gateway must not send it again (issue 14, defect 4: 2 hits per request)."""
    fake, client = stack.fakes["openai"], stack.client()
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm"}])  # pooled
    before = len(fake.chat_requests)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "HANGUP now"}], stream=stream
        )
    assert len(fake.chat_requests) == before + 1
    assert info.value.status_code == 502
    row = stack.gateway.row_for(_request_id(info.value))
    assert row["status"] == 502 and row["error_type"] == "upstream_unavailable"


def test_idle_connection_closed_by_the_upstream_is_not_used(stack: Stack) -> None:
    fake, client = stack.fakes["openai"], stack.client()
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "DROPIDLE"}])
    time.sleep(0.5)  # the upstream has closed the pooled connection
    before = len(fake.chat_requests)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    assert answer.choices[0].message.content == "echo: again"
    assert len(fake.chat_requests) == before + 1


def test_malformed_sse_event_reaches_client_as_error_event(stack: Stack) -> None:
    body = {**GOOD, "stream": True, "messages": [{"role": "user", "content": "BADEVENT here"}]}
    response = _post(stack, json.dumps(body))
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_error"
    assert "[DONE]" not in response.text and "cut-off" not in response.text
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"
    with pytest.raises(openai.APIError):  # the official SDK raises on it
        list(stack.client().chat.completions.create(**body))


def test_sse_event_over_cap_ends_stream_with_error_event(stack: Stack) -> None:
    body = {**GOOD, "stream": True, "messages": [{"role": "user", "content": "HUGEEVENT 20"}]}
    response = _post(stack, json.dumps(body))
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert any(e.get("choices") and e["choices"][0]["delta"].get("content") for e in events[:-1])
    error = events[-1]["error"]
    assert "GOPHERGATE_MAX_SSE_EVENT_BYTES" in error["message"] and "pad" not in error["message"]
    assert "[DONE]" not in response.text
    row = stack.gateway.row_for(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"


@pytest.mark.parametrize("backend", ["h1", "aiohttp"])
@pytest.mark.parametrize("trigger", ["HUGELENGTH 200", "HUGEBODY 200"], ids=["content-length", "chunked"])
def test_buffered_answer_over_cap_is_502(make_gateway: Any, backend: str, trigger: str) -> None:
    """A 200 MiB answer is refused at the 100 MiB default cap, and the gateway's memory stays within it (issue 14,
    defect 8: 891 MB RSS before)."""
    from tests.fakes.openai_compat import FakeOpenAICompat

    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(
            env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake.base_url, "GOPHERGATE_UPSTREAM_CLIENT": backend}
        )
        gateway.start()
        process = psutil.Process(gateway.proc.pid)
        headers = {"authorization": f"Bearer {gateway.key}"}
        assert httpx.post(gateway.base_url + "/chat/completions", json=GOOD, headers=headers, timeout=30).is_success
        before = process.memory_info().rss
        body = {**GOOD, "messages": [{"role": "user", "content": trigger}]}
        response = httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=60)
        grown = process.memory_info().rss - before
        assert response.status_code == 502
        error = _error(response)
        assert (
            error["code"] == "upstream_response_too_large"
            and "GOPHERGATE_MAX_UPSTREAM_RESPONSE_BYTES" in error["message"]
        )
        assert "xxxx" not in response.text
        assert grown < 160 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"
        print(f"{backend} {trigger}: RSS grew by {grown / 2**20:.1f} MiB")
        row = gateway.row_for(response.headers["x-request-id"])
        assert row["status"] == 502 and row["error_type"] == "upstream_response_too_large"

"""Embeddings, image generation and the Responses API through the real gateway, driven by the openai SDK."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import Stack


def _post(stack: Stack, path: str, body: Any, **headers: str) -> httpx.Response:
    hdrs = {"authorization": f"Bearer {stack.gateway.key}", **headers}
    return httpx.post(stack.gateway.base_url + path, json=body, headers=hdrs, timeout=30)


def _row(stack: Stack, response: httpx.Response | Any) -> dict[str, Any]:
    return stack.gateway.row_for(response.headers["x-request-id"])


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# -- embeddings -------------------------------------------------------------------------------------------------


def test_embeddings_float_through_the_gateway_are_logged_with_prompt_tokens(stack: Stack) -> None:
    raw = stack.client().embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["hello world", "again"], encoding_format="float"
    )
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [1536, 1536]
    assert result.usage.prompt_tokens == 3
    assert float(raw.headers["x-gophergate-overhead-ms"]) >= 0
    upstream = stack.fakes["openai"].last_request
    assert upstream.path == "/v1/embeddings" and upstream.body["model"] == "text-embedding-3-small"
    row = _row(stack, raw)
    assert (row["endpoint"], row["status"], row["provider"], row["model"]) == (
        "embeddings",
        200,
        "openai",
        "text-embedding-3-small",
    )
    assert row["prompt_tokens"] == 3 and row["completion_tokens"] == 0 and row["estimated"] in (False, 0)
    assert row["upstream_ms"] is not None


def test_embeddings_sdk_default_base64_round_trips(stack: Stack) -> None:
    client = stack.client()
    floats = client.embeddings.create(model="text-embedding-3-small", input="same text", encoding_format="float")
    default = client.embeddings.create(model="text-embedding-3-small", input="same text")
    assert stack.fakes["openai"].last_request.body["encoding_format"] == "base64"
    assert default.data[0].embedding == floats.data[0].embedding


def test_embeddings_dimensions_and_token_arrays_pass_through(stack: Stack) -> None:
    result = stack.client().embeddings.create(
        model="openai/text-embedding-3-large", input=[[1, 2, 3], [4, 5]], dimensions=16, encoding_format="float"
    )
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.usage.prompt_tokens == 5


def test_embeddings_on_ollama(stack: Stack) -> None:
    result = stack.client().embeddings.create(model="ollama/nomic-embed-text", input="local", encoding_format="float")
    assert len(result.data[0].embedding) == 768


def test_embeddings_on_a_provider_without_them_pass_the_upstream_404_through(stack: Stack) -> None:
    response = _post(stack, "/embeddings", {"model": "deepseek-flash", "input": "x"})
    assert response.status_code == 404
    assert "deepseek" in _error(response)["message"]
    row = _row(stack, response)
    assert (row["endpoint"], row["status"], row["provider"]) == ("embeddings", 404, "deepseek")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": ""}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": [1, "a"]}, "input"),
        ({"model": "text-embedding-3-small", "input": ["a", ""]}, "input[1]"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_embeddings_validation_names_the_param(stack: Stack, body: dict[str, Any], param: str) -> None:
    before = len(stack.fakes["openai"].requests)
    response = _post(stack, "/embeddings", body)
    assert response.status_code == 400 and _error(response)["param"] == param
    assert len(stack.fakes["openai"].requests) == before, "an invalid request reached the upstream"
    row = _row(stack, response)
    assert (row["endpoint"], row["status"]) == ("embeddings", 400)


def test_upstream_embeddings_rejection_is_passed_through(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client().embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    assert "does not support specifying dimensions" in caught.value.message
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]


# -- images -----------------------------------------------------------------------------------------------------


def test_images_b64_json_with_usage_logged(stack: Stack) -> None:
    raw = stack.client().images.with_raw_response.generate(
        model="gpt-image-1.5", prompt="a lighthouse at dusk", n=2, response_format="b64_json"
    )
    result = raw.parse()
    assert result.data is not None and len(result.data) == 2
    assert base64.b64decode(result.data[0].b64_json or "").startswith(b"\x89PNG")
    row = _row(stack, raw)
    assert (row["endpoint"], row["status"], row["provider"]) == ("images.generations", 200, "openai")
    assert row["prompt_tokens"] == 4 and row["completion_tokens"] == 2 * 1056 and row["estimated"] in (False, 0)


def test_images_url_on_xai_without_usage_is_estimated(stack: Stack) -> None:
    raw = stack.client().images.with_raw_response.generate(model="grok-imagine-image", prompt="a boat", n=1)
    result = raw.parse()
    assert result.data is not None and (result.data[0].url or "").startswith("https://")
    row = _row(stack, raw)
    assert row["provider"] == "xai" and row["status"] == 200 and row["estimated"] in (True, 1)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "gpt-image-1.5"}, "prompt"),
        ({"model": "gpt-image-1.5", "prompt": "  "}, "prompt"),
        ({"model": "gpt-image-1.5", "prompt": "x", "n": 11}, "n"),
        ({"model": "gpt-image-1.5", "prompt": "x", "n": 0}, "n"),
        ({"model": "gpt-image-1.5", "prompt": "x", "response_format": "png"}, "response_format"),
        ({"model": "gpt-image-1.5", "prompt": "x", "size": 1024}, "size"),
        ({"model": "gpt-image-1.5", "prompt": "x", "stream": True}, "stream"),
    ],
)
def test_images_validation_names_the_param(stack: Stack, body: dict[str, Any], param: str) -> None:
    response = _post(stack, "/images/generations", body)
    assert response.status_code == 400 and _error(response)["param"] == param
    assert _row(stack, response)["endpoint"] == "images.generations"


def test_upstream_image_size_rejection_is_passed_through(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client().images.generate(model="gpt-image-1.5", prompt="x", size="256x256")
    assert caught.value.body["param"] == "size"  # type: ignore[index]


def test_images_upstream_429_keeps_status(stack: Stack) -> None:
    response = _post(stack, "/images/generations", {"model": "gpt-image-1.5", "prompt": "FAIL 429"})
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert _row(stack, response)["status"] == 429


# -- responses --------------------------------------------------------------------------------------------------


def test_responses_plain_is_passed_through_and_logged(stack: Stack) -> None:
    raw = stack.client().responses.with_raw_response.create(
        model="gpt-5-mini", input="hello there", instructions="be brief", max_output_tokens=64
    )
    response = raw.parse()
    assert response.output_text == "echo: hello there"
    sent = stack.fakes["openai"].last_request
    assert sent.path == "/v1/responses" and sent.body["max_output_tokens"] == 64 and "messages" not in sent.body
    row = _row(stack, raw)
    assert (row["endpoint"], row["status"]) == ("responses", 200) and row["stream"] in (False, 0)
    assert response.usage is not None
    assert row["prompt_tokens"] == response.usage.input_tokens
    assert row["completion_tokens"] == response.usage.output_tokens
    assert row["reasoning_tokens"] == response.usage.output_tokens_details.reasoning_tokens > 0
    assert row["finish_reason"] == "stop"


def test_responses_cached_tokens_are_recorded(stack: Stack) -> None:
    raw = stack.client().responses.with_raw_response.create(model="gpt-4o-mini", input="CACHE 5 please")
    assert _row(stack, raw)["cache_read_tokens"] == 5


def test_responses_stream_with_the_sdk_helper(stack: Stack) -> None:
    with stack.client().responses.stream(model="gpt-4o-mini", input="one two three") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: one two three" == final.output_text
    assert final.usage is not None and final.usage.output_tokens == 4


def test_responses_stream_relays_events_verbatim_without_done_and_logs_usage(stack: Stack) -> None:
    response = _post(stack, "/responses", {"model": "gpt-4o-mini", "input": "a b c d", "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    blocks = [b for b in response.text.split("\n\n") if b]
    assert all(b.startswith("event: ") for b in blocks), "event names must be relayed"
    last = json.loads(blocks[-1].split("data: ", 1)[1])
    assert last["type"] == "response.completed"
    row = _row(stack, response)
    assert (row["endpoint"], row["status"]) == ("responses", 200) and row["stream"] in (True, 1)
    assert row["prompt_tokens"] == last["response"]["usage"]["input_tokens"]
    assert row["completion_tokens"] == last["response"]["usage"]["output_tokens"]
    assert row["finish_reason"] == "stop" and row["ttfb_ms"] is not None


def test_responses_stream_true_with_the_sdk(stack: Stack) -> None:
    events = list(stack.client().responses.create(model="gpt-4o-mini", input="max please", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


def test_responses_stream_incomplete_is_logged_with_length(stack: Stack) -> None:
    body = {"model": "gpt-4o-mini", "input": "WORDS 40", "stream": True, "max_output_tokens": 16}
    response = _post(stack, "/responses", body)
    assert "event: response.incomplete" in response.text
    row = _row(stack, response)
    assert row["status"] == 200 and row["finish_reason"] == "length" and row["completion_tokens"] == 16


def test_responses_stream_cut_ends_with_an_error_event_and_an_estimated_row(stack: Stack) -> None:
    with pytest.raises(openai.APIError):
        list(stack.client().responses.create(model="gpt-4o-mini", input="CUT w1 w2 w3 w4", stream=True))
    row = stack.gateway.wait_rows(1, "endpoint = 'responses' AND status = 502")[-1]
    assert row["error_type"] == "upstream_stream_error"
    assert row["estimated"] in (True, 1) and row["completion_tokens"] > 0 and row["prompt_tokens"] > 0


def test_responses_mid_stream_error_event_is_relayed_and_logged(stack: Stack) -> None:
    response = _post(stack, "/responses", {"model": "gpt-4o-mini", "input": "MIDERROR x y", "stream": True})
    assert response.status_code == 200
    assert response.text.rstrip().split("\n\n")[-1].startswith("event: error")
    row = _row(stack, response)
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"
    assert "server had an error" in row["error_message"]


def test_responses_upstream_errors_are_passed_through(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client().responses.create(model="gpt-4o-mini", input="x", max_output_tokens=5)
    assert caught.value.body["param"] == "max_output_tokens"  # type: ignore[index]
    stream = _post(stack, "/responses", {"model": "gpt-4o-mini", "input": "FAIL 500", "stream": True})
    assert stream.status_code == 502 and _row(stack, stream)["status"] == 502


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "gpt-4o-mini", "input": 5}, "input"),
        ({"model": "gpt-4o-mini", "input": "x", "stream": "yes"}, "stream"),
        ({"model": "gpt-4o-mini", "input": "x", "stream_options": {}}, "stream_options"),
        ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_responses_validation_names_the_param(stack: Stack, body: dict[str, Any], param: str) -> None:
    response = _post(stack, "/responses", body)
    assert response.status_code == 400 and _error(response)["param"] == param


def test_responses_client_disconnect_mid_stream_is_one_row(stack: Stack) -> None:
    request_id = "disc-" + uuid.uuid4().hex
    body = b'{"model":"gpt-4o-mini","stream":true,"input":"SLOW 300 w1 w2 w3 w4 w5"}'
    sock = socket.create_connection(("127.0.0.1", stack.gateway.port))
    sock.sendall(
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {stack.gateway.key}\r\nx-request-id: {request_id}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b"echo" not in received:
        received += sock.recv(65536)
    sock.close()
    row = stack.gateway.row_for(request_id)
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
    assert row["estimated"] in (True, 1) and row["completion_tokens"] > 0
    assert row["latency_ms"] < 1500


# -- shared behaviour -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/embeddings", "/images/generations", "/responses"])
def test_endpoints_need_a_key_reject_other_methods_and_large_bodies(stack: Stack, path: str) -> None:
    url = stack.gateway.base_url + path
    unauthenticated = httpx.post(url, json={"model": "gpt-4o-mini"})
    assert unauthenticated.status_code == 401
    get = httpx.get(url, headers={"authorization": f"Bearer {stack.gateway.key}"})
    assert get.status_code == 405 and _error(get)["code"] == "method_not_allowed"
    assert "x-request-id" in get.headers and "x-gophergate-overhead-ms" in get.headers
    malformed = httpx.post(url, content=b"{", headers={"authorization": f"Bearer {stack.gateway.key}"})
    assert malformed.status_code == 400
    big = _post(stack, path, {"model": "gpt-4o-mini", "input": "x" * (11 * 1024 * 1024)})
    assert big.status_code == 413
    for response in (unauthenticated, get, malformed, big):
        row = _row(stack, response)
        assert row["status"] == response.status_code and row["error_message"]


def test_unknown_model_is_404_model_not_found(stack: Stack) -> None:
    response = _post(stack, "/embeddings", {"model": "no-such-embedder", "input": "x"})
    assert response.status_code == 404 and _error(response)["code"] == "model_not_found"

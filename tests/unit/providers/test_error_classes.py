"""Every upstream failure carries its class (what routing retries, falls back on and cools down for) and the status
the upstream answered; client errors and refused provider keys carry none. The client-facing status, type and code
are unchanged by it."""

from __future__ import annotations

import orjson
import pytest

from gophergate.core.errors import GatewayError
from gophergate.providers.anthropic.errors import anthropic_error
from gophergate.providers.gemini.errors import gemini_error
from gophergate.providers.stream import in_band_error_class
from gophergate.providers.transport import (
    ConnectError,
    ConnectTimeout,
    ProtocolError,
    ReadTimeout,
    RemoteClosed,
    ResponseTooLarge,
    TotalTimeout,
)
from gophergate.providers.upstream import error_class, transport_errors, upstream_error


def openai_body(message: str, code: str | None = None, etype: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


@pytest.mark.parametrize(
    ("status", "body", "expected_class", "client_status"),
    [
        (429, openai_body("Rate limit reached for requests", "rate_limit_exceeded"), "rate_limited", 429),
        (429, openai_body("You exceeded your current quota", "insufficient_quota"), "rate_limited", 429),
        (503, b"<html>overloaded</html>", "overloaded", 502),
        (529, openai_body("Overloaded"), "overloaded", 502),
        (500, openai_body("The server had an error", etype="server_error"), "server_error", 502),
        (502, b"Bad Gateway", "server_error", 502),
        (504, b"Gateway Timeout", "server_error", 502),
        (
            400,
            openai_body("This model's maximum context length is 128000 tokens.", "context_length_exceeded"),
            "context_window_exceeded",
            400,
        ),
        (
            400,
            b'{"code":"x","error":"This model\'s maximum prompt length is 131072 but the request has 140000"}',
            "context_window_exceeded",
            400,
        ),
        (400, openai_body("'messages' must contain at least one message", "invalid_value"), None, 400),
        (401, openai_body("Incorrect API key provided", "invalid_api_key"), None, 401),
        (403, openai_body("Project does not have access"), None, 403),
        (404, openai_body("The model 'gpt-9' does not exist", "model_not_found"), None, 404),
        (422, openai_body("Unprocessable"), None, 422),
    ],
)
def test_openai_compatible_errors_are_classed_and_keep_what_the_client_sees(
    status: int, body: bytes, expected_class: str | None, client_status: int
) -> None:
    err = upstream_error("openai", status, body)
    assert (err.error_class, err.upstream_status, err.status) == (expected_class, status, client_status)


def test_xai_bad_key_answered_400_is_not_retryable_and_keeps_the_upstream_status() -> None:
    err = upstream_error("xai", 400, b'{"code":"x","error":"Incorrect API key provided: xai-abc***"}')
    assert (err.status, err.error_class, err.upstream_status) == (401, None, 400)


def _anthropic(status: int, etype: str, message: str, details: dict[str, str] | None = None) -> bytes:
    error: dict[str, object] = {"type": etype, "message": message}
    if details:
        error["details"] = details
    return orjson.dumps({"type": "error", "error": error})


@pytest.mark.parametrize(
    ("status", "etype", "message", "expected_class"),
    [
        (529, "overloaded_error", "Overloaded", "overloaded"),
        (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", "rate_limited"),
        (500, "api_error", "Internal server error", "server_error"),
        (504, "timeout_error", "Request timed out", "server_error"),
        (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", "context_window_exceeded"),
        (400, "invalid_request_error", "messages: roles must alternate", None),
        (401, "authentication_error", "invalid x-api-key", None),
        (403, "permission_error", "not allowed", None),
        (404, "not_found_error", "model: claude-nope", None),
    ],
)
def test_anthropic_errors_are_classed(status: int, etype: str, message: str, expected_class: str | None) -> None:
    err = anthropic_error("anthropic", status, _anthropic(status, etype, message))
    assert (err.error_class, err.upstream_status) == (expected_class, status)


def test_anthropics_spend_cap_is_a_billing_stop_not_a_rate_limit() -> None:
    body = _anthropic(429, "rate_limit_error", "cap", {"error_code": "enforced_spend_limit_reached"})
    err = anthropic_error("anthropic", 429, body)
    assert (err.status, err.error_class) == (402, None)


def _gemini(code: int, status: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


@pytest.mark.parametrize(
    ("status", "rpc", "message", "expected_class"),
    [
        (429, "RESOURCE_EXHAUSTED", "Quota exceeded", "rate_limited"),
        (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", "overloaded"),
        (500, "INTERNAL", "An internal error has occurred", "server_error"),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            "context_window_exceeded",
        ),
        (400, "INVALID_ARGUMENT", "Invalid JSON payload received.", None),
        (404, "NOT_FOUND", "models/x is not found", None),
    ],
)
def test_gemini_errors_are_classed(status: int, rpc: str, message: str, expected_class: str | None) -> None:
    err = gemini_error("gemini", status, _gemini(status, rpc, message))
    assert (err.error_class, err.upstream_status) == (expected_class, status)


def test_geminis_refused_key_is_not_retryable() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 400,
                "message": "API key not valid.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            }
        }
    )
    assert gemini_error("gemini", 400, body).error_class is None


@pytest.mark.parametrize(
    ("failure", "expected_class"),
    [
        (ConnectTimeout("connect"), "timeout"),
        (ReadTimeout("read"), "timeout"),
        (TotalTimeout("total"), "timeout"),
        (ConnectError("refused"), "connection"),
        (RemoteClosed("closed"), "connection"),
        (ProtocolError("bad framing"), "connection"),
    ],
)
def test_transport_failures_are_classed_timeout_or_connection(failure: Exception, expected_class: str) -> None:
    with pytest.raises(GatewayError) as info, transport_errors("openai"):
        raise failure
    assert (info.value.error_class, info.value.upstream_status) == (expected_class, None)


def test_an_answer_too_large_for_the_gateway_is_not_retried() -> None:
    with pytest.raises(GatewayError) as info, transport_errors("openai"):
        raise ResponseTooLarge(1024)
    assert info.value.error_class is None


def test_errors_the_gateway_raises_itself_have_no_class() -> None:
    assert GatewayError("nope").error_class is None and error_class(418) is None


@pytest.mark.parametrize(
    ("message", "expected_class"),
    [
        ("Upstream provider 'anthropic' reported overloaded_error: Overloaded", "overloaded"),
        ("Upstream provider 'gemini' reported RESOURCE_EXHAUSTED: quota", "rate_limited"),
        ("Upstream provider 'openai' reported an error: The server had an error", "server_error"),
        ("The upstream sent a malformed stream event.", "connection"),
    ],
)
def test_errors_inside_a_started_stream_are_classed_from_what_the_upstream_said(
    message: str, expected_class: str
) -> None:
    assert in_band_error_class(message) == expected_class

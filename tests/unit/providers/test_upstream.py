from __future__ import annotations

from gophergate.errors import UpstreamError, UpstreamUnavailable
from gophergate.providers.upstream import scrub, upstream_error


def test_openai_shape_keeps_status_type_code_param() -> None:
    err = upstream_error(
        "openai", 422, b'{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":"x"}}'
    )
    assert isinstance(err, UpstreamError)
    assert (err.status, err.type, err.code, err.param) == (422, "invalid_request_error", "x", "messages")
    assert "openai" in err.message and "bad" in err.message


def test_xai_flat_error_and_bad_key_reclassified() -> None:
    err = upstream_error(
        "xai",
        400,
        b'{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xai-abcdef***"}',
    )
    assert err.status == 401 and "xai-abcdef" not in err.message


def test_5xx_becomes_502_and_non_json_body_is_quoted() -> None:
    err = upstream_error("deepseek", 503, b"<html>overloaded</html>")
    assert isinstance(err, UpstreamUnavailable) and err.status == 502 and "overloaded" in err.message


def test_moonshot_error_without_code() -> None:
    err = upstream_error(
        "moonshot", 429, b'{"error":{"type":"engine_overloaded_error","message":"busy"}}', {"retry-after": "3"}.get
    )
    assert err.status == 429 and err.type == "engine_overloaded_error" and err.headers == {"retry-after": "3"}


def test_scrub_removes_keys() -> None:
    assert "sk-proj" not in scrub("Incorrect API key provided: sk-proj-abcdefgh1234")

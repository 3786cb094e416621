from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest

from gophergate.core.calls import EndpointCall
from gophergate.core.errors import UpstreamError, UpstreamUnavailable
from gophergate.core.redact import REDACTOR
from gophergate.providers.anthropic.errors import anthropic_error
from gophergate.providers.gemini.errors import gemini_error
from gophergate.providers.openai_compat.dialects import StreamTranslator, get_dialect
from gophergate.providers.openai_compat.responses import ResponsesStream
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


CUSTOM_KEY = "Zq9!custom-KEY.with/slash+plus="


@pytest.fixture
def custom_key() -> str:
    REDACTOR.add([CUSTOM_KEY])
    return CUSTOM_KEY


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
def test_a_configured_key_of_any_shape_is_redacted_from_every_upstream_error_field(
    custom_key: str, status: int
) -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": f"bad key {custom_key}",
                "type": f"t-{custom_key}",
                "param": custom_key,
                "code": custom_key,
            }
        }
    )
    err = upstream_error("custom", status, body, {"retry-after": custom_key}.get)
    rendered = err.body().decode() + repr(err.headers)
    assert custom_key not in rendered and custom_key not in err.message
    assert custom_key not in f"{err.type} {err.code} {err.param}"
    assert "[redacted]" in err.message


def test_a_configured_key_in_a_non_json_body_is_redacted(custom_key: str) -> None:
    err = upstream_error("custom", 502, f"<html>key={quote(custom_key, safe='')}</html>".encode())
    assert quote(custom_key, safe="") not in err.message and "[redacted]" in err.message


def test_anthropic_errors_redact_a_configured_key_from_message_type_and_headers(custom_key: str) -> None:
    body = orjson.dumps({"type": "error", "error": {"type": custom_key, "message": f"key {custom_key}"}})
    for status in (400, 401, 429, 529):
        err = anthropic_error("anthropic", status, body, {"retry-after": custom_key}.get)
        assert custom_key not in err.body().decode() + repr(err.headers) + f"{err.type} {err.code} {err.message}"


def test_gemini_errors_redact_a_configured_key(custom_key: str) -> None:
    body = orjson.dumps({"error": {"code": 429, "message": f"quota for {custom_key}", "status": custom_key}})
    err = gemini_error("gemini", 429, body, {"retry-after": custom_key}.get)
    assert custom_key not in err.body().decode() + repr(err.headers) + f"{err.code} {err.message}"


def test_an_openai_compat_stream_error_event_is_relayed_redacted(custom_key: str) -> None:
    translator = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    ok = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    error = b"data: " + orjson.dumps({"error": {"message": f"bad key {custom_key}", "code": custom_key}}) + b"\n\n"
    out = (translator.feed_bytes(ok) or b"") + (translator.feed_bytes(error) or b"")
    assert custom_key.encode() not in out and b"[redacted]" in out and ok in out
    assert translator.error is not None and custom_key not in translator.error


def test_a_responses_stream_error_and_failed_event_are_relayed_redacted(custom_key: str) -> None:
    call = EndpointCall({"model": "m", "input": "x"}, "m", "req", stream=True)
    for payload in (
        {"type": "error", "code": custom_key, "message": f"bad key {custom_key}", "sequence_number": 1},
        {
            "type": "response.failed",
            "sequence_number": 1,
            "response": {"status": "failed", "error": {"code": "x", "message": f"key {custom_key}"}, "output": []},
        },
    ):
        state = ResponsesStream(call)
        event = b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        out = (state.feed_bytes(event) or b"") + (state.flush() or b"")
        assert custom_key.encode() not in out and b"[redacted]" in out
        assert state.error is not None and custom_key not in state.error

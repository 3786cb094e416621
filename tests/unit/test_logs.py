"""The JSON log format: one object per line with the request id of the request that logged it, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import sys

from gophergate.core.context import REQUEST_ID
from gophergate.core.redact import REDACTOR, RedactingFilter
from gophergate.logs import JSONFormatter


def _logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("gophergate.test_logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_each_line_is_one_json_object_with_the_request_id() -> None:
    logger, stream = _logger()
    logger.info("outside %s", "a request")
    token = REQUEST_ID.set("req_0123")
    try:
        logger.warning("inside a request")
    finally:
        REQUEST_ID.reset(token)
    logger.info("named", extra={"request_id": "req_named"})
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["message"] == "outside a request" and first["level"] == "INFO"
    assert first["logger"] == "gophergate.test_logs" and first["time"].endswith("+00:00")
    assert second["request_id"] == "req_0123" and second["level"] == "WARNING"
    assert third["request_id"] == "req_named"


def test_exceptions_are_one_field_and_secrets_are_redacted() -> None:
    secret = "sk-json-log-secret-0123456789abcdef"
    REDACTOR.add([secret])
    logger, stream = _logger()
    try:
        raise ValueError(f"upstream said {secret}\nsecond line")
    except ValueError:
        logger.exception("failed with %s", secret)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert secret not in lines[0]
    assert "ValueError" in entry["exception"] and entry["level"] == "ERROR"
    assert sys.exc_info() == (None, None, None)

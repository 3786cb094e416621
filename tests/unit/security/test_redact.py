from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import orjson
import pytest

from gophergate.core.redact import REDACTED, REDACTOR, RedactingFilter, Redactor
from gophergate.logs import setup_logging

ODD_KEYS = (
    "Zq9!custom-KEY.with/slash+plus=",
    "0123456789abcdef0123456789abcdef01234567",
    "3f1c1d2e-9b7a-4c55-8e0f-2a6b9c1d7e42",
    "key with spaces and % signs",
    'quote"back\\slash-key',
)


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.add(ODD_KEYS)
    return r


@pytest.mark.parametrize("key", ODD_KEYS)
def test_a_configured_key_of_any_shape_is_redacted_raw_url_encoded_and_json_escaped(
    redactor: Redactor, key: str
) -> None:
    escaped = orjson.dumps(key).decode()[1:-1]
    for form in (key, quote(key, safe=""), quote(key), quote_plus(key), escaped, escaped.replace("/", "\\/")):
        text = redactor(f"Invalid key '{form}' (see docs)")
        assert key not in text and form not in text and REDACTED in text
        assert text.startswith("Invalid key '") and text.endswith("' (see docs)")
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe=""))
    assert lower_hex not in redactor(lower_hex)


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("user", ["", "u", "us", "user", "api"])
def test_the_key_inside_basic_auth_base64_is_redacted_whatever_the_user(
    redactor: Redactor, key: str, user: str
) -> None:
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    text = redactor(f"Authorization: Basic {token}")
    assert token not in text
    # At most the first quad (the user's part, and two bytes of the key with it) is left.
    left = text.removeprefix("Authorization: Basic ").split(REDACTED)[0]
    assert len(left) <= 4 * (1 + len(user) // 3)


def test_the_longest_form_wins_and_short_values_are_not_redacted() -> None:
    r = Redactor()
    r.add(["abcdefgh", "abcdefgh-longer-key", "short", None, "", "   "])
    assert r("x abcdefgh-longer-key y") == f"x {REDACTED} y"
    assert r("the short answer") == "the short answer"
    assert r.too_short == frozenset({"short"})


def test_secrets_are_never_forgotten_once_learned() -> None:
    r = Redactor()
    r.add(["first-key-123456"])
    r.add(["second-key-123456"])
    assert r("first-key-123456 second-key-123456") == f"{REDACTED} {REDACTED}"


def test_well_known_key_shapes_stay_redacted_as_a_second_net() -> None:
    r = Redactor()
    assert r("key sk-proj-abcdefgh1234 and AIza" + "x" * 30 + " and xai-abcdef123") == (
        f"key {REDACTED} and {REDACTED} and {REDACTED}"
    )


def test_event_bytes_are_the_same_object_when_nothing_matched(redactor: Redactor) -> None:
    clean = b'{"error":{"message":"boom"}}'
    assert redactor.event(clean) is clean
    dirty = orjson.dumps({"error": {"message": f"bad key {ODD_KEYS[4]}"}})
    out = redactor.event(dirty)
    assert ODD_KEYS[4].encode() not in out and orjson.loads(out)["error"]["message"] == f"bad key {REDACTED}"


@pytest.fixture
def global_secret() -> Iterator[str]:
    REDACTOR.add([ODD_KEYS[0]])
    yield ODD_KEYS[0]


def test_the_log_filter_redacts_message_args_and_exception_text(global_secret: str) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    try:
        logger.warning("upstream said %s", f"bad key {global_secret}")
        logger.warning(f"inline {global_secret}")
        try:
            raise RuntimeError(f"echo {quote(global_secret, safe='')}")
        except RuntimeError:
            logger.exception("failed: %r", {"key": global_secret})
    finally:
        logger.removeHandler(handler)
    assert len(records) == 3
    for line in records:
        assert global_secret not in line and quote(global_secret, safe="") not in line and REDACTED in line
    assert "RuntimeError: echo [redacted]" in records[2]


def test_the_gateways_log_handler_has_the_filter() -> None:
    setup_logging("INFO")
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_gophergate", False)]
    assert handlers and all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)

"""Configured secrets are redacted by value from every text that leaves the gateway or is stored.

An upstream may echo the gateway's credentials back in an error (its message, code, headers, a stream's error
event). Keys have no common shape (a custom upstream's key can be anything), so every configured secret is
matched by value, in the forms an upstream is likely to echo: as it is, URL-encoded, JSON-escaped, and inside
Base64 (e.g. ``user:key`` basic auth). The shape patterns of well-known keys (``sk-``, ``AIza``, ``xai-``) stay
as a second net. Only error texts are scanned, never the success path.

The secret set is process-wide (``REDACTOR``): secrets are process-wide configuration, and error texts are made
deep in providers and in log handlers that have no runtime at hand.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import orjson

REDACTED = "[redacted]"
# Shorter values would redact common words; such a secret is reported (``Redactor.too_short``) instead.
MIN_SECRET_LENGTH = 8
# Well-known key shapes, redacted whether configured here or not.
SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{20,}|xai-[A-Za-z0-9_\-*]{6,})")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def encodings(secret: str) -> set[str]:
    """The forms of ``secret`` an upstream may echo."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {_ESCAPE.sub(lambda m: m.group().lower(), form) for form in forms}
    escaped = orjson.dumps(secret).decode()[1:-1]
    forms |= {escaped, escaped.replace("/", "\\/")}
    raw = secret.encode()
    for offset in range(3):
        # Base64 of any text that ends with the secret ("user:key"): whatever precedes it, the quads after the
        # first one that mixes prefix and secret depend on the secret alone (one per prefix length mod 3).
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        tail = encoded[4:] if offset else encoded
        if len(tail) >= MIN_SECRET_LENGTH:
            forms |= {tail, tail.rstrip("=")}
            forms.add(tail.replace("+", "-").replace("/", "_"))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """The configured secrets compiled into one alternation, longest first (the longest form of a secret wins)."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.too_short: frozenset[str] = frozenset()

    def add(self, secrets: Iterable[str | None]) -> None:
        """Learn more secrets. None is ever forgotten while the process lives: a key replaced from the dashboard
        is still a secret (it may still be valid, and requests started with it may still fail)."""
        values = {s for s in secrets if s and not s.isspace()}
        fresh = values - self._secrets
        if not fresh:
            return
        known = self._secrets | fresh
        self.too_short = frozenset(s for s in known if len(s) < MIN_SECRET_LENGTH)
        forms = {form for secret in known - self.too_short for form in encodings(secret)}
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        # One assignment each: a reader on another thread (a log handler) sees the old or the new set, whole.
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._secrets = known

    def clear(self) -> None:
        """Forget every secret (tests)."""
        self._secrets = frozenset()
        self._pattern = None
        self.too_short = frozenset()

    def __call__(self, text: str) -> str:
        """``text`` without any configured secret (in any of its forms) or well-known key shape."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return SHAPES.sub(REDACTED, text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def event(self, data: bytes) -> bytes:
        """Bytes of an event being relayed (a stream's error event): the same bytes when nothing matched."""
        text = data.decode("utf-8", "surrogateescape")
        clean = self(text)
        return data if clean == text else clean.encode("utf-8", "surrogateescape")


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR(text)


class RedactingFilter(logging.Filter):
    """Installed on the gateway's log handlers: a record's message, arguments, exception and stack text are
    redacted before any handler formats them (whatever logger the record came from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it as usual
            return True
        record.msg = REDACTOR(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = REDACTOR(record.exc_text)
        if record.stack_info:
            record.stack_info = REDACTOR(record.stack_info)
        return True

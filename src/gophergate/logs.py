"""Process logging: one line per record on stderr; secrets are never formatted into messages, and any
configured secret that still gets into one is redacted by the handler's filter.

Two formats (``GOPHERGATE_LOG_FORMAT``): ``text`` for people, and ``json``, one JSON object per line for log
shippers (``time``, ``level``, ``logger``, ``message``; ``request_id`` when the line was logged while a /v1 request
ran, or names one in ``extra``; ``exception`` and ``stack`` when the record has them).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

import orjson

from gophergate.core.context import REQUEST_ID
from gophergate.core.redact import RedactingFilter


class JSONFormatter(logging.Formatter):
    """One JSON object per record. The message, exception and stack text are the filter's redacted ones."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str, log_format: str = "text") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_gophergate", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())  # configured secrets never reach a log line, whoever logs them
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._gophergate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""Process logging: one line per record on stderr; secrets are never formatted into messages, and any
configured secret that still gets into one is redacted by the handler's filter."""

from __future__ import annotations

import logging
import sys

from gophergate.core.redact import RedactingFilter


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_gophergate", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())  # configured secrets never reach a log line, whoever logs them
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._gophergate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""What a request's task carries without passing it along, in context variables (every asyncio task has its own
copy, so one request never sees another's): the request id for log lines, and the headers each upstream request of
the current attempt adds (its trace context). Both are None outside a request; reading one is a dictionary lookup."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

# Set by the /v1 handlers; the JSON log format writes it beside each line logged while the request runs.
REQUEST_ID: ContextVar[str | None] = ContextVar("gophergate_request_id", default=None)
# Set per attempt when tracing is on (``telemetry/tracing.py``); merged into the headers by ``providers/upstream.py``.
UPSTREAM_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("gophergate_upstream_headers", default=None)

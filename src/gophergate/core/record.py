"""The one record a request produces, finalized exactly once whatever happened to the request."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gophergate.core.calls import Meter, Price


class Trace(Protocol):
    """A request's spans when tracing is on (``telemetry/tracing.RequestTrace``): an attempt starts (``call``), its
    answer is seen as the client gets it (``answered``, ``watch``), and metering finished its record."""

    def call(self, record: RequestRecord) -> None: ...

    def answered(self, body: bytes) -> None: ...

    def watch(self, chunks: AsyncIterator[bytes], prefix: bytes) -> AsyncIterator[bytes]: ...

    def finished(self, record: RequestRecord, meter: Meter | None, messages: Any) -> None: ...


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    endpoint: str
    started: float  # time.perf_counter() at arrival
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    client_key_id: int | None = None
    requested_model: str | None = None
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    error_message: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    upstream_ms: float | None = None
    overhead_ms: float | None = None
    cost_input_usd: Decimal | None = None
    cost_cache_read_usd: Decimal | None = None
    cost_cache_write_usd: Decimal | None = None
    cost_output_usd: Decimal | None = None
    cost_reasoning_usd: Decimal | None = None
    price_source: str | None = None
    price_unknown: bool = False
    # The client's address: the peer's, or the one a trusted reverse proxy forwarded (http/forwarded.py).
    client_ip: str | None = None
    # The class of the upstream failure the request met (core/errors.py:ErrorClass), for routing and analytics.
    error_class: str | None = None
    # Routing (issue 18): a request that is retried or falls back writes one row per attempt, all with its
    # request_id; ``attempt`` counts from 1 and only the last row is ``final`` (the status the client saw).
    # ``model_group`` is the model group the client named, None for a plain model name.
    attempt: int = 1
    final: bool = True
    model_group: str | None = None
    # The price of the routed model (None: unknown); the cost is computed from it once tokens are final.
    price: Price | None = None
    # Governance: the id of the request's limits admission (settled once, when it is billed; the gateway's own id,
    # never the client's x-request-id, which two requests may share), and the rate-limit headers of its answers.
    admission: str | None = None
    limit_headers: list[tuple[bytes, bytes]] | None = None
    # Routing: "provider/model" of the target this attempt went to (x-gophergate-served-by), and the cost of the
    # request's earlier attempts (its limits are settled once, on the final row, with the sum).
    served_by: bytes | None = None
    prior_cost: Decimal | None = None
    # The request's spans when tracing is on (``telemetry/tracing.py``), passed on to each next attempt's record;
    # metering calls its ``finished`` once the record is.
    trace: Trace | None = None

    def values(self) -> tuple[Any, ...]:
        """The stored columns, in ``COLUMNS`` order."""
        return _values(self)

    def next_attempt(self, started: float) -> RequestRecord:
        """The record of the request's next attempt: this one is no longer final, and the limits admission (settled
        once per request) and the rate-limit headers move to the new one."""
        following = RequestRecord(
            self.request_id,
            self.endpoint,
            started,
            client_key_id=self.client_key_id,
            requested_model=self.requested_model,
            stream=self.stream,
            client_ip=self.client_ip,
            attempt=self.attempt + 1,
            model_group=self.model_group,
            admission=self.admission,
            limit_headers=self.limit_headers,
            trace=self.trace,
        )
        self.final = False
        self.admission = None
        return following


# The request_log columns the writer fills, in insert order (the id is the database's).
COLUMNS: tuple[str, ...] = (
    "request_id",
    "created_at",
    "endpoint",
    "client_key_id",
    "requested_model",
    "provider",
    "model",
    "stream",
    "status",
    "error_type",
    "error_message",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "ttfb_ms",
    "upstream_ms",
    "overhead_ms",
    "cost_input_usd",
    "cost_cache_read_usd",
    "cost_cache_write_usd",
    "cost_output_usd",
    "cost_reasoning_usd",
    "price_source",
    "price_unknown",
    "client_ip",
    "error_class",
    "attempt",
    "final",
    "model_group",
)
# What the dashboard lists of a row (GET /api/requests items, /ws request events): metadata only, no error text.
LIST_FIELDS: tuple[str, ...] = (
    "request_id",
    "created_at",
    "endpoint",
    "client_key_id",
    "requested_model",
    "provider",
    "model",
    "stream",
    "status",
    "error_type",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "estimated",
    "cost_usd",
    "price_unknown",
    "latency_ms",
    "ttfb_ms",
    "client_ip",
    "error_class",
    "attempt",
    "final",
    "model_group",
)
# Exact decimal columns (USD): decimal text on SQLite.
DECIMAL_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c.endswith("_usd"))
_values = attrgetter(*COLUMNS)  # one C call per row instead of a tuple built in Python

"""Response models of the request-log and analytics routes (they document the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field

_CACHE_HIT_RATIO = (
    "The prompt-cache hit ratio: cache_read_tokens / prompt_tokens (prompt tokens include the cached ones), "
    "4 decimals; null when prompt_tokens is 0"
)


class RequestItem(BaseModel):
    id: int
    request_id: str
    created_at: str
    endpoint: str
    client_key_id: int | None
    client_key_name: str | None  # None: no key, or the key was deleted
    requested_model: str | None
    provider: str | None
    model: str | None
    stream: bool
    status: int
    error_type: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    estimated: bool
    cost_usd: str | None
    price_unknown: bool
    latency_ms: float
    ttfb_ms: float | None
    client_ip: str | None
    error_class: str | None
    # Routing writes a row per attempt of a request (same request_id): its number from 1, whether it is the last
    # (what the client saw), and the model group the client named (None: a plain model name).
    attempt: int
    final: bool
    model_group: str | None


class RequestAttempt(BaseModel):
    """One attempt of a request (a row of its request id), as a request detail lists them."""

    id: int
    attempt: int
    final: bool
    provider: str | None
    model: str | None
    status: int
    error_class: str | None
    error_type: str | None
    cost_usd: str | None
    latency_ms: float
    created_at: str


class RequestDetail(RequestItem):
    error_message: str | None
    upstream_ms: float | None
    overhead_ms: float | None
    cost_input_usd: str | None
    cost_cache_read_usd: str | None
    cost_cache_write_usd: str | None
    cost_output_usd: str | None
    cost_reasoning_usd: str | None
    price_source: str | None
    attempts: list[RequestAttempt] = Field(description="every attempt of the request, by attempt number")


class RequestPage(BaseModel):
    data: list[RequestItem]
    next_cursor: str | None


class Point(BaseModel):
    t: str
    requests: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: str | None = Field(description="Exact USD of the priced requests; null when none had a known price")
    unpriced_requests: int = Field(description="Requests with tokens but no known price (not in cost_usd)")
    p50_ms: float | None
    p95_ms: float | None
    cache_hit_ratio: float | None = Field(description=_CACHE_HIT_RATIO)


class Series(BaseModel):
    key: str | None = Field(
        description="the grouping's key: model, provider, provider/model (target), client key id or model group; "
        "null ungrouped or for requests without one"
    )
    client_key_name: str | None = None  # grouped by client key: the key's name (None when deleted)
    points: list[Point]


class Timeseries(BaseModel):
    bucket: str
    series: list[Series]


class TopItem(BaseModel):
    key: str | None = Field(
        description="model, provider, provider/model (target), client key id or model group; null for requests "
        "without one"
    )
    client_key_name: str | None = None  # by client key: the key's name (None when deleted)
    requests: int
    tokens: int
    cost_usd: str | None = Field(description="Exact USD of the priced requests; null when none had a known price")
    unpriced_requests: int = Field(description="Requests with tokens but no known price (not in cost_usd)")
    cache_hit_ratio: float | None = Field(description=_CACHE_HIT_RATIO)


class Top(BaseModel):
    data: list[TopItem]


class Totals(BaseModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str | None = Field(description="Exact USD of the priced requests; null when none had a known price")
    unpriced_requests: int = Field(description="Requests with tokens but no known price (not in cost_usd)")
    p50_ms: float | None
    p95_ms: float | None
    cache_hit_ratio: float | None = Field(description=_CACHE_HIT_RATIO)

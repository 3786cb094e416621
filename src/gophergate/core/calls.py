"""The per-call objects a provider works with: the routed call (``ChatCall``, ``EndpointCall``), what it reports
while it runs (``Meter``), and its price (``Pricer``, ``Priced``, ``Price``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson

from gophergate.core.usage import Cost, Usage


class Price(Protocol):
    """A model's price as the request record holds it (``pricing.cost.ModelPrice``)."""

    @property
    def source(self) -> str: ...

    def cost(self, usage: Usage, now: dt.datetime | None = None) -> tuple[Cost, str]: ...


# Prices a usage for the call's model: the exact USD cost and the price source to record. A call whose model has
# no known price has no pricer.
Pricer = Callable[[Usage], "tuple[Cost, str]"]


@dataclass(slots=True)
class Priced:
    """A cost computed while the call ran (for ``usage.cost`` in the answer): the log row reuses it when its
    tokens are the same, so a request is priced once."""

    usage: Usage
    cost: Cost
    source: str


def _priced(pricer: Pricer | None, usage: Usage) -> tuple[Priced | None, orjson.Fragment | None]:
    if pricer is None:
        return None, None
    cost, source = pricer(usage)
    return Priced(usage, cost, source), orjson.Fragment(format(cost.total, "f").encode())


@dataclass(slots=True, kw_only=True)
class _PricedCall:
    """What every call does with its price: ``cost_json`` prices a usage once and keeps it (``priced``)."""

    pricer: Pricer | None = None  # set by the pipeline when the model has a price
    priced: Priced | None = None  # set by ``cost_json``: what the client was told

    @property
    def cost(self) -> Decimal | None:
        return None if self.priced is None else self.priced.cost.total

    def cost_json(self, usage: Usage) -> orjson.Fragment | None:
        """``usage.cost`` for a response body: the exact USD cost as a JSON number, or None when unknown."""
        self.priced, fragment = _priced(self.pricer, usage)
        return fragment


@dataclass(slots=True)
class ChatCall(_PricedCall):
    """One chat request after routing. ``body`` is the client's parsed JSON; the provider may copy it."""

    body: dict[str, Any]
    model: str  # the upstream's model id
    stream: bool
    include_usage: bool  # the client asked for a usage chunk (stream_options.include_usage)
    request_id: str
    max_output_tokens: int | None = None  # the model's output limit from the registry, when known
    # Client headers a pass-through backend gets (/v1/messages: anthropic-version, anthropic-beta).
    client_headers: Mapping[str, str] | None = None
    # The registry says whether the model reasons (None: unknown): a translated request's reasoning controls are
    # dropped for one that does not (Claude Code always asks for thinking).
    reasons: bool | None = None


@dataclass(slots=True)
class Conversation:
    """/v1/responses translated for a provider without a Responses API: the gateway keeps the conversation."""

    # The chat messages so far, from the stored response that previous_response_id names (None: it names none).
    history: list[dict[str, Any]] | None
    # Keeps a finished response and its conversation's chat messages (None: ``store: false``).
    keep: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None


@dataclass(slots=True)
class EndpointCall(_PricedCall):
    """One non-chat request (embeddings, images, responses) after routing; ``body`` is the client's JSON."""

    body: dict[str, Any]
    model: str  # the upstream's model id
    request_id: str
    stream: bool = False  # /v1/responses only
    max_output_tokens: int | None = None  # the model's output limit (a translated /v1/responses call)
    conversation: Conversation | None = None  # /v1/responses: what a translated call keeps
    reasons: bool | None = None  # as ChatCall.reasons


@dataclass(slots=True)
class Meter:
    """What a provider reports about one call while it runs; the pipeline turns it into the log record."""

    usage: Usage | None = None
    finish_reason: str | None = None
    upstream_started: float | None = None  # perf_counter before the upstream request was sent
    upstream_headers: float | None = None  # perf_counter when the upstream answered with headers
    upstream_done: float | None = None  # perf_counter when the upstream body ended
    first_chunk: float | None = None  # perf_counter when the first chunk went to the client
    # What was produced, for a local estimate when no usage arrives: plain text (buffered answers) and/or the
    # stream's relayed SSE bytes (parsed only if an estimate is needed, off the request path).
    output_text: list[str] = field(default_factory=list)
    output_events: list[bytes] = field(default_factory=list)
    output_reasoning_field: str | None = None
    stream_error: str | None = None  # an error reported or detected after the stream had started
    stream_error_class: str | None = None  # its class (core/errors.py:ErrorClass)

    def start_upstream(self) -> None:
        self.upstream_started = time.perf_counter()

    def upstream_answered(self) -> None:
        self.upstream_headers = time.perf_counter()

    def upstream_finished(self) -> None:
        self.upstream_done = time.perf_counter()

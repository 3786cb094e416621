"""The narrow provider protocol every upstream implements, and the per-call objects it works with.

Handlers only ever talk to ``Provider``; native providers (Gemini, Anthropic) plug in beside the
OpenAI-compatible family without touching the HTTP layer. Optional capabilities (embeddings, images,
responses) are separate protocols checked in one place.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from gophergate.gateway.usage import Usage

if TYPE_CHECKING:
    from gophergate.pricing.cost import Cost

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


@dataclass(slots=True)
class ChatCall:
    """One chat request after routing. ``body`` is the client's parsed JSON; the provider may copy it."""

    body: dict[str, Any]
    model: str  # the upstream's model id
    stream: bool
    include_usage: bool  # the client asked for a usage chunk (stream_options.include_usage)
    request_id: str
    pricer: Pricer | None = None  # set by the pipeline when the model has a price
    max_output_tokens: int | None = None  # the model's output limit from the registry, when known
    priced: Priced | None = None  # set by ``cost_json``: what the client was told

    @property
    def cost(self) -> Decimal | None:
        return None if self.priced is None else self.priced.cost.total

    def cost_json(self, usage: Usage) -> orjson.Fragment | None:
        """``usage.cost`` for a response body: the exact USD cost as a JSON number, or None when unknown."""
        self.priced, fragment = _priced(self.pricer, usage)
        return fragment


@dataclass(slots=True)
class EndpointCall:
    """One non-chat request (embeddings, images, responses) after routing; ``body`` is the client's JSON."""

    body: dict[str, Any]
    model: str  # the upstream's model id
    request_id: str
    stream: bool = False  # /v1/responses only
    pricer: Pricer | None = None
    priced: Priced | None = None  # set by ``cost_json``: what the client was told

    @property
    def cost(self) -> Decimal | None:
        return None if self.priced is None else self.priced.cost.total

    def cost_json(self, usage: Usage) -> orjson.Fragment | None:
        """``usage.cost`` for a response body: the exact USD cost as a JSON number, or None when unknown."""
        self.priced, fragment = _priced(self.pricer, usage)
        return fragment


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

    def start_upstream(self) -> None:
        self.upstream_started = time.perf_counter()

    def upstream_answered(self) -> None:
        self.upstream_headers = time.perf_counter()

    def upstream_finished(self) -> None:
        self.upstream_done = time.perf_counter()


@runtime_checkable
class Provider(Protocol):
    name: str

    async def chat(self, call: ChatCall, meter: Meter) -> bytes:
        """A complete OpenAI ``chat.completion`` body. Raises ``GatewayError`` on failure."""
        ...

    async def open_chat_stream(self, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
        """Connect and check the upstream's answer (raising ``GatewayError`` before anything is sent to the
        client); the returned iterator yields OpenAI SSE bytes, without the final ``[DONE]``."""
        ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SupportsEmbeddings(Protocol):
    async def embeddings(self, call: EndpointCall, meter: Meter) -> bytes:
        """A complete OpenAI embeddings ``list`` body; sets ``meter.usage``."""
        ...


@runtime_checkable
class SupportsImages(Protocol):
    async def generate_images(self, call: EndpointCall, meter: Meter) -> bytes:
        """A complete OpenAI images response (``data`` of ``b64_json`` or ``url`` items)."""
        ...


@runtime_checkable
class SupportsResponses(Protocol):
    async def responses(self, call: EndpointCall, meter: Meter) -> bytes:
        """A complete OpenAI Responses API body."""
        ...

    async def open_responses_stream(self, call: EndpointCall, meter: Meter) -> AsyncIterator[bytes]:
        """Like ``open_chat_stream`` for the Responses API: yields its SSE events as bytes."""
        ...

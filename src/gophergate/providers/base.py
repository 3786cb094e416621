"""The narrow provider protocol every upstream implements (the per-call objects it works with are in
``core/calls.py``).

Handlers only ever talk to ``Provider``; native providers (Gemini, Anthropic) plug in beside the
OpenAI-compatible family without touching the HTTP layer. Optional capabilities (embeddings, images,
responses) are separate protocols checked in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from gophergate.core.calls import ChatCall, EndpointCall, Meter


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

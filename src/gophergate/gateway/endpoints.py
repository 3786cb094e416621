"""The non-chat /v1 endpoints as data: validation, the optional provider protocol, the provider call.

``http/v1.py`` runs every one of them through the same path (parse, validate, resolve, capability check, call,
send, record once); adding an endpoint is adding a row here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gophergate.gateway.validate import check_embeddings, check_images, check_responses
from gophergate.providers.base import EndpointCall, Meter, SupportsEmbeddings, SupportsImages, SupportsResponses


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str  # request_log.endpoint
    path: str
    check: Callable[[dict[str, Any]], tuple[str, bool]]  # (model, stream) or InvalidRequest naming the field
    capability: type  # the optional protocol a provider must implement
    call: Callable[[Any, EndpointCall, Meter], Awaitable[bytes]]
    # The request's input as chat-like messages, for a local estimate when the upstream reports no usage.
    prompt: Callable[[dict[str, Any]], Any]
    open_stream: Callable[[Any, EndpointCall, Meter], Awaitable[AsyncIterator[bytes]]] | None = None
    ends_with_done: bool = True  # the stream's last event is `data: [DONE]` (added by the relay)


def _text_messages(texts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": t} for t in texts if isinstance(t, str)]


def embeddings_prompt(data: dict[str, Any]) -> Any:
    value = data.get("input")
    return _text_messages([value] if isinstance(value, str) else value if isinstance(value, list) else ())


def images_prompt(data: dict[str, Any]) -> Any:
    return _text_messages([data.get("prompt")])


def responses_prompt(data: dict[str, Any]) -> Any:
    """``instructions`` and ``input``: message items carry ``content`` (a string or parts with ``text``)."""
    out = _text_messages([data.get("instructions")])
    value = data.get("input")
    if isinstance(value, str):
        out.extend(_text_messages([value]))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and "content" in item:
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("output"), str):  # function_call_output
                out.extend(_text_messages([item["output"]]))
    return out


def _no_stream(check: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], tuple[str, bool]]:
    def run(data: dict[str, Any]) -> tuple[str, bool]:
        return check(data), False

    return run


async def _embeddings(provider: SupportsEmbeddings, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.embeddings(call, meter)


async def _images(provider: SupportsImages, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.generate_images(call, meter)


async def _responses(provider: SupportsResponses, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.responses(call, meter)


async def _responses_stream(provider: SupportsResponses, call: EndpointCall, meter: Meter) -> AsyncIterator[bytes]:
    return await provider.open_responses_stream(call, meter)


EMBEDDINGS = EndpointSpec(
    "embeddings", "/v1/embeddings", _no_stream(check_embeddings), SupportsEmbeddings, _embeddings, embeddings_prompt
)
IMAGES = EndpointSpec(
    "images.generations", "/v1/images/generations", _no_stream(check_images), SupportsImages, _images, images_prompt
)
RESPONSES = EndpointSpec(
    "responses",
    "/v1/responses",
    check_responses,
    SupportsResponses,
    _responses,
    responses_prompt,
    open_stream=_responses_stream,
    ends_with_done=False,  # a Responses stream ends after its terminal event (providers.md §2.9)
)

ENDPOINTS: dict[str, EndpointSpec] = {spec.path: spec for spec in (EMBEDDINGS, IMAGES, RESPONSES)}

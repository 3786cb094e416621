"""The /v1 POST endpoints as data: validation, the provider protocol they need, the call they make.

``http/v1.py`` runs every one of them (chat completions included) through the same path: admission, parse,
validate, resolve, capability check, call or stream, send, and one record; adding an endpoint is adding a row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gophergate.core.calls import ChatCall, EndpointCall, Meter, Pricer
from gophergate.gateway.validate import check_chat, check_embeddings, check_images, check_responses
from gophergate.providers.base import Provider, SupportsEmbeddings, SupportsImages, SupportsResponses

# What validation found: (model, stream, include_usage); include_usage is chat's stream_options.include_usage.
Checked = tuple[str, bool, bool]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str  # request_log.endpoint
    path: str
    check: Callable[[dict[str, Any]], Checked]  # or InvalidRequest naming the field
    capability: type | None  # the optional protocol a provider must implement (None: every provider serves it)
    call: Callable[[Any, Any, Meter], Awaitable[bytes]]
    # The request's input as chat-like messages, for a local estimate when the upstream reports no usage.
    prompt: Callable[[dict[str, Any]], Any]
    open_stream: Callable[[Any, Any, Meter], Awaitable[AsyncIterator[bytes]]] | None = None
    ends_with_done: bool = True  # the stream's last event is `data: [DONE]` (added by the relay)
    chat: bool = False  # the call is a ChatCall (include_usage, the model's output limit)
    # The request's output limit fields, the one a key's max_tokens_cap is written to first; () = no output tokens.
    output_fields: tuple[str, ...] = ()

    def make_call(
        self,
        data: dict[str, Any],
        model: str,
        request_id: str,
        checked: Checked,
        pricer: Pricer | None,
        max_output_tokens: int | None,
    ) -> ChatCall | EndpointCall:
        _, stream, include_usage = checked
        if self.chat:
            return ChatCall(data, model, stream, include_usage, request_id, max_output_tokens, pricer=pricer)
        return EndpointCall(data, model, request_id, stream=stream, pricer=pricer)


def chat_prompt(data: dict[str, Any]) -> Any:
    return data.get("messages")


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


def _no_stream(check: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], Checked]:
    def run(data: dict[str, Any]) -> Checked:
        return check(data), False, False

    return run


def _with_stream(check: Callable[[dict[str, Any]], tuple[str, bool]]) -> Callable[[dict[str, Any]], Checked]:
    def run(data: dict[str, Any]) -> Checked:
        model, stream = check(data)
        return model, stream, False

    return run


async def _chat(provider: Provider, call: ChatCall, meter: Meter) -> bytes:
    return await provider.chat(call, meter)


async def _chat_stream(provider: Provider, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
    return await provider.open_chat_stream(call, meter)


async def _embeddings(provider: SupportsEmbeddings, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.embeddings(call, meter)


async def _images(provider: SupportsImages, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.generate_images(call, meter)


async def _responses(provider: SupportsResponses, call: EndpointCall, meter: Meter) -> bytes:
    return await provider.responses(call, meter)


async def _responses_stream(provider: SupportsResponses, call: EndpointCall, meter: Meter) -> AsyncIterator[bytes]:
    return await provider.open_responses_stream(call, meter)


CHAT = EndpointSpec(
    "chat.completions",
    "/v1/chat/completions",
    check_chat,
    None,
    _chat,
    chat_prompt,
    open_stream=_chat_stream,
    chat=True,
    output_fields=("max_tokens", "max_completion_tokens"),
)
EMBEDDINGS = EndpointSpec(
    "embeddings", "/v1/embeddings", _no_stream(check_embeddings), SupportsEmbeddings, _embeddings, embeddings_prompt
)
IMAGES = EndpointSpec(
    "images.generations", "/v1/images/generations", _no_stream(check_images), SupportsImages, _images, images_prompt
)
RESPONSES = EndpointSpec(
    "responses",
    "/v1/responses",
    _with_stream(check_responses),
    SupportsResponses,
    _responses,
    responses_prompt,
    open_stream=_responses_stream,
    ends_with_done=False,  # a Responses stream ends after its terminal event (providers.md §2.9)
    output_fields=("max_output_tokens",),
)

ENDPOINTS: dict[str, EndpointSpec] = {spec.path: spec for spec in (CHAT, EMBEDDINGS, IMAGES, RESPONSES)}

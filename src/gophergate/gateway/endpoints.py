"""The /v1 POST endpoints as data: validation, the provider protocol they need, the call they make.

``http/v1.py`` runs every one of them (chat completions included) through the same path: admission, parse,
validate, resolve, capability check, call or stream, send, and one record; adding an endpoint is adding a row.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gophergate.core.calls import ChatCall, Conversation, EndpointCall, Meter, Pricer
from gophergate.core.errors import InvalidRequest
from gophergate.gateway.governance import prompt_texts
from gophergate.gateway.validate import check_chat, check_embeddings, check_images, check_responses
from gophergate.inbound.messages import MessagesStream, chat_to_message, check_messages, messages_to_chat, ping_event
from gophergate.inbound.responses import (
    ResponsesStream,
    chat_to_response,
    conversation_messages,
    output_messages,
    responses_to_chat,
)
from gophergate.providers.anthropic.passthrough import FORWARDED_HEADERS
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
    anthropic: bool = False  # an Anthropic Messages API endpoint: its errors in Anthropic's shape
    # Client headers a pass-through backend gets (lower-case names).
    forwarded_headers: tuple[bytes, ...] = ()

    def make_call(
        self,
        data: dict[str, Any],
        model: str,
        request_id: str,
        checked: Checked,
        pricer: Pricer | None,
        max_output_tokens: int | None,
        client_headers: Mapping[str, str] | None = None,
        conversation: Conversation | None = None,
        reasons: bool | None = None,
    ) -> ChatCall | EndpointCall:
        _, stream, include_usage = checked
        if self.chat:
            call = ChatCall(data, model, stream, include_usage, request_id, max_output_tokens, pricer=pricer)
            if client_headers:
                call.client_headers = client_headers
            call.reasons = reasons
            return call
        return EndpointCall(
            data,
            model,
            request_id,
            stream=stream,
            pricer=pricer,
            max_output_tokens=max_output_tokens,
            conversation=conversation,
            reasons=reasons,
        )


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


# -- /v1/responses: passed through to a provider with a Responses API, translated for every other ------------------
# A translated response is kept by the gateway (gateway/stored_responses.py) for previous_response_id; a follow-up
# naming one goes the translated way even to a provider with a Responses API, which would not know the id.


def _passes_through(provider: Provider, call: EndpointCall) -> bool:
    conversation = call.conversation
    return isinstance(provider, SupportsResponses) and (conversation is None or conversation.history is None)


def _responses_chat(call: EndpointCall) -> ChatCall:
    conversation = call.conversation
    history = conversation.history if conversation is not None else None
    previous = call.body.get("previous_response_id")
    if history is None and previous is not None:
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    body = responses_to_chat(call.body, history)
    if call.reasons is False:
        body.pop("reasoning_effort", None)  # a model that does not reason rejects it
    return ChatCall(body, call.model, call.stream, True, call.request_id, call.max_output_tokens, pricer=call.pricer)


GATEWAY_RESPONSE_PREFIX = "resp_gg"  # the ids of responses the gateway made (OpenAI's: resp_ and hex)


def _response_id() -> str:
    return GATEWAY_RESPONSE_PREFIX + secrets.token_hex(23)


def _keep(call: EndpointCall, chat: ChatCall, response: dict[str, Any] | None) -> None:
    """Keep a finished translated response for previous_response_id (not with ``store: false``)."""
    conversation = call.conversation
    if response is None or conversation is None or conversation.keep is None:
        return
    conversation.keep(response, conversation_messages(chat.body, call.body) + output_messages(response))


async def _responses(provider: Provider, call: EndpointCall, meter: Meter) -> bytes:
    if _passes_through(provider, call):
        return await provider.responses(call, meter)  # type: ignore[attr-defined, no-any-return]
    chat = _responses_chat(call)
    try:
        body = await provider.chat(chat, meter)
    finally:
        call.priced = chat.priced
    response = chat_to_response(orjson.loads(body), call.body, _response_id(), int(time.time()))
    _keep(call, chat, response)
    return orjson.dumps(response)


async def _responses_stream(provider: Provider, call: EndpointCall, meter: Meter) -> AsyncIterator[bytes]:
    if _passes_through(provider, call):
        return await provider.open_responses_stream(call, meter)  # type: ignore[attr-defined, no-any-return]
    chat = _responses_chat(call)
    chunks = await provider.open_chat_stream(chat, meter)
    return _translate_responses(chunks, ResponsesStream(call.body, _response_id(), int(time.time())), chat, call)


async def _translate_responses(
    chunks: AsyncIterator[bytes], stream: ResponsesStream, chat: ChatCall, call: EndpointCall
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            out = stream.feed(chunk)
            if out:
                yield out
        tail = stream.end()
        if tail:
            yield tail
        _keep(call, chat, stream.response)
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        call.priced = chat.priced


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
    None,  # every provider serves it: natively or translated
    _responses,
    responses_prompt,
    open_stream=_responses_stream,
    ends_with_done=False,  # a Responses stream ends after its terminal event (providers.md §2.9)
    output_fields=("max_output_tokens",),
)


# -- /v1/messages: the Anthropic Messages API in ----------------------------------------------------------------------
# A backend that speaks Messages gets the client's body as it is (``messages_api``, providers/anthropic/passthrough.py);
# every other backend gets it translated into the gateway's chat form, and its chat answer translated back
# (inbound/messages.py).

PING_SECONDS = 10.0  # a translated stream sends Anthropic's `ping` after this long without an event


def messages_prompt(data: dict[str, Any]) -> Any:
    """The system prompt and the messages, as chat-like messages (text parts only) for estimates and rules."""
    out: list[dict[str, Any]] = []
    system = data.get("system")
    if isinstance(system, str):
        out.append({"role": "system", "content": system})
    elif isinstance(system, list):
        out.append({"role": "system", "content": [b for b in system if isinstance(b, dict)]})
    messages = data.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, list):  # tool results nest their text one level down
                    parts: list[Any] = []
                    for block in content:
                        if isinstance(block, dict) and isinstance(block.get("content"), list | str):
                            inner = block["content"]
                            parts.extend(inner if isinstance(inner, list) else [{"type": "text", "text": inner}])
                        else:
                            parts.append(block)
                    out.append({"role": message.get("role"), "content": parts})
                else:
                    out.append(message)
    return out


def _message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _translated_call(provider: Provider, call: ChatCall) -> ChatCall:
    """The chat call a translating backend gets for a Messages call (same model, price and limits)."""
    body = messages_to_chat(call.body)
    if not getattr(provider, "takes_top_k", False):
        body.pop("top_k", None)  # OpenAI-compatible backends reject it
    if call.reasons is False:
        body.pop("reasoning_effort", None)  # a model that does not reason rejects it
    return ChatCall(body, call.model, call.stream, True, call.request_id, call.max_output_tokens, pricer=call.pricer)


async def _messages(provider: Provider, call: ChatCall, meter: Meter) -> bytes:
    api = getattr(provider, "messages_api", None)
    if api is not None:
        return await api.messages(call, meter)  # type: ignore[no-any-return]
    chat = _translated_call(provider, call)
    try:
        body = await provider.chat(chat, meter)
    finally:
        call.priced = chat.priced
    return orjson.dumps(chat_to_message(orjson.loads(body), str(call.body.get("model")), _message_id()))


async def _messages_stream(provider: Provider, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
    api = getattr(provider, "messages_api", None)
    if api is not None:
        return await api.open_stream(call, meter)  # type: ignore[no-any-return]
    chat = _translated_call(provider, call)
    chunks = await provider.open_chat_stream(chat, meter)
    return translate_messages_stream(chunks, MessagesStream(str(call.body.get("model")), _message_id()), chat, call)


_END = object()  # the backend's stream ended (or failed: then the exception follows the marker)
_PING = object()  # the backend has been silent for the ping interval


async def translate_messages_stream(
    chunks: AsyncIterator[bytes],
    stream: MessagesStream,
    chat: ChatCall,
    call: ChatCall,
    ping_seconds: float = PING_SECONDS,
) -> AsyncIterator[bytes]:
    """The backend's chat stream as Anthropic events, with a ``ping`` whenever the backend is silent for
    ``ping_seconds`` (a client's read timeout then never mistakes a slow backend for a dead one).

    A reader task moves the backend's chunks into a queue and one timer per stream looks for silence, so a chunk
    costs a queue hand-over (a task and a wait per chunk cost four times as much: bench/front_door.py)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    last = loop.time()
    failure: list[BaseException] = []
    timer: asyncio.TimerHandle | None = None

    async def read() -> None:
        nonlocal last
        try:
            async for chunk in chunks:
                last = loop.time()
                queue.put_nowait(chunk)
        except Exception as exc:
            failure.append(exc)
        finally:
            queue.put_nowait(_END)

    def watch() -> None:
        nonlocal last, timer
        idle = loop.time() - last
        if idle >= ping_seconds:
            queue.put_nowait(_PING)
            last, idle = loop.time(), 0.0
        timer = loop.call_later(ping_seconds - idle, watch)

    reader = loop.create_task(read())
    timer = loop.call_later(ping_seconds, watch)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if item is _PING:
                if stream.started:
                    yield ping_event()
                continue
            out = stream.feed(item)
            if out:
                yield out
        if failure:
            raise failure[0]
        tail = stream.end()
        if tail:
            yield tail
    finally:
        if timer is not None:
            timer.cancel()
        if not reader.done():
            reader.cancel()
        await asyncio.wait((reader,))  # the backend's stream is closed (its finally) before the request is metered
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        call.priced = chat.priced


# /v1/messages/count_tokens where the backend cannot count: the o200k tokenizer, exact for OpenAI's current models;
# for every other family its count plus ESTIMATE_MARGIN, because an agent that is told too few tokens compacts
# its context too late (a Claude, Gemini or DeepSeek tokenizer gives 0-20% more tokens than o200k for English and
# code). An image counts as IMAGE_TOKENS, a document as DOCUMENT_TOKENS per started 3 KB of its data.
ESTIMATE_MARGIN = 1.25
IMAGE_TOKENS = 1600  # Anthropic's largest image (1.15 megapixels at 750 pixels a token) is ~1,600 tokens
DOCUMENT_TOKENS = 1000
_O200K_MODELS = re.compile(r"(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o[134]|chatgpt|codex)")


def check_count_tokens(data: dict[str, Any]) -> str:
    """A count_tokens request is a Messages request without ``max_tokens``; returns the model."""
    model, _ = check_messages({**data, "max_tokens": 1, "stream": False})
    return model


async def count_message_tokens(
    provider: Provider | None, data: dict[str, Any], model: str, headers: Mapping[str, str], counter: Any
) -> tuple[int, str]:
    """The input tokens of a Messages request for ``model`` on ``provider``, and how they were counted:
    ``upstream`` (the backend's own count endpoint), ``tokenizer`` (o200k for OpenAI's models) or ``estimate``."""
    api = getattr(provider, "messages_api", None)
    if api is not None and api.counts_tokens:
        return await api.count_tokens(data, model, headers), "upstream"
    chat_body = messages_to_chat({**data, "max_tokens": 1, "stream": False})
    chat_body.pop("top_k", None)
    counter_method = getattr(provider, "count_tokens", None)
    if counter_method is not None:
        return await counter_method(ChatCall(chat_body, model, False, False, "count_tokens")), "upstream"
    messages = chat_body.get("messages") or []
    count = await counter.count_with_tokenizer(prompt_texts(messages, chat_body))
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":
                count += IMAGE_TOKENS
            elif kind == "file":
                size = len(str((part.get("file") or {}).get("file_data") or ""))
                count += DOCUMENT_TOKENS * (1 + size // 3072)
    if _is_openai(provider) and _O200K_MODELS.match(model.rsplit("/", 1)[-1]):
        return count, "tokenizer"
    return math.ceil(count * ESTIMATE_MARGIN), "estimate"


def _is_openai(provider: Provider | None) -> bool:
    dialect = getattr(provider, "dialect", None)
    return getattr(dialect, "name", None) == "openai"


def _check_messages(data: dict[str, Any]) -> Checked:
    model, stream = check_messages(data)
    return model, stream, True


MESSAGES = EndpointSpec(
    "messages",
    "/v1/messages",
    _check_messages,
    None,  # every provider serves it: natively or translated
    _messages,
    messages_prompt,
    open_stream=_messages_stream,
    ends_with_done=False,  # a Messages stream ends with its message_stop event
    chat=True,
    output_fields=("max_tokens",),
    anthropic=True,
    forwarded_headers=tuple(name.encode() for name in FORWARDED_HEADERS),
)

ENDPOINTS: dict[str, EndpointSpec] = {spec.path: spec for spec in (CHAT, EMBEDDINGS, IMAGES, RESPONSES, MESSAGES)}

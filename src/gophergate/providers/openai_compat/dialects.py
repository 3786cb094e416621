"""Per-provider dialect rules of the OpenAI-compatible family; pure functions and one stream state machine.

The request body is forwarded as the client sent it (unknown fields included) except for the rules below,
each taken from providers.md (section in brackets):

- developer role -> system for every upstream but OpenAI [§11.19];
- OpenAI reasoning models: ``max_tokens`` -> ``max_completion_tokens`` [§2.2];
- xAI reasoning models: ``presence_penalty``, ``frequency_penalty``, ``stop`` are errors, so dropped [§6.2];
- Moonshot K3/K2.6/K2.7-code: fixed sampling parameters are errors, so dropped [§7.2];
- DeepSeek thinking mode and Moonshot K3/K2.7-code: ``reasoning_content`` of tool-call turns must be sent
  back; restored from the reasoning store when the client dropped it [§5.5, §7.2];
- streams always ask for usage; the usage-only chunk is dropped again if the client did not ask [§10].

Responses: Ollama's ``reasoning`` becomes ``reasoning_content`` [§8.1]; xAI's ``completion_tokens`` gets its
reasoning tokens added so usage has OpenAI semantics [§6.2]; Moonshot's ``choices[0].usage`` is lifted to the
top-level ``usage`` [§7.3]. Tool-call ids are relayed byte for byte, never shortened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gophergate.core.redact import REDACTOR, redact
from gophergate.core.usage import USAGE_READERS, Usage
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.stream import StreamOutcome, chat_error_event
from gophergate.wire.chat_text import texts_from_sse
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES, EventCutter, SSEDecoder, SSEEvent, encode_data


def _prefixes(*names: str) -> Callable[[str], bool]:
    def match(model: str) -> bool:
        base = model.rsplit("/", 1)[-1].lower()
        return base.startswith(names)

    return match


def _never(model: str) -> bool:
    return False


def _always(model: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    developer_to_system: bool = True
    # Upstream spelling of reasoning text in messages and deltas, when it is not reasoning_content.
    reasoning_field: str | None = None
    max_completion_tokens: Callable[[str], bool] = _never
    dropped_params: tuple[str, ...] = ()
    drops_params_for: Callable[[str], bool] = _never
    replays_reasoning: Callable[[str], bool] = _never
    usage_in_choice: bool = False
    completion_excludes_reasoning: bool = False
    # The upstream serves OpenAI's Responses API (POST /responses). Others have it too (xAI, Moonshot, Ollama's
    # stateless subset; providers.md §6.1, §7.1, §8.1), with differences the gateway does not translate yet.
    responses_api: bool = False

    def read_usage(self, usage: dict[str, Any]) -> Usage | None:
        return USAGE_READERS.get(self.name, USAGE_READERS["openai"])(usage)


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            "openai",
            developer_to_system=False,
            max_completion_tokens=_prefixes("o1", "o3", "o4", "gpt-5"),
            responses_api=True,
        ),
        # DeepSeek thinking mode is on by default for its current models (deepseek-flash, V4.x).
        Dialect("deepseek", replays_reasoning=_always),
        Dialect(
            "xai",
            dropped_params=("presence_penalty", "frequency_penalty", "stop"),
            drops_params_for=_prefixes("grok-4", "grok-3-mini"),
            completion_excludes_reasoning=True,
        ),
        Dialect(
            "moonshot",
            dropped_params=("temperature", "top_p", "n", "presence_penalty", "frequency_penalty"),
            drops_params_for=_prefixes("kimi-k3", "kimi-k2.6", "kimi-k2.7"),
            replays_reasoning=_prefixes("kimi-k3", "kimi-k2.7"),
            usage_in_choice=True,
        ),
        Dialect("ollama", reasoning_field="reasoning"),
    )
}


def get_dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected one of {', '.join(DIALECTS)}") from None


# -- requests -------------------------------------------------------------------------------------------------


def to_upstream_request(
    body: dict[str, Any], model: str, stream: bool, dialect: Dialect, store: ReasoningStore | None
) -> bytes:
    """The upstream request body. ``body`` is the client's parsed JSON; it is not modified."""
    out = dict(body)
    out["model"] = model
    if stream:
        options = out.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        out["stream_options"] = options
    if dialect.max_completion_tokens(model) and "max_tokens" in out:
        value = out.pop("max_tokens")
        out.setdefault("max_completion_tokens", value)
    if dialect.dropped_params and dialect.drops_params_for(model):
        for param in dialect.dropped_params:
            out.pop(param, None)
    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = _messages_for(messages, model, dialect, store)
    return orjson.dumps(out)


def _messages_for(messages: list[Any], model: str, dialect: Dialect, store: ReasoningStore | None) -> list[Any]:
    replay = store is not None and dialect.replays_reasoning(model)
    result: list[Any] | None = None  # copied only when a message changes
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        changed: dict[str, Any] | None = None
        role = message.get("role")
        if role == "developer" and dialect.developer_to_system:
            changed = dict(message)
            changed["role"] = "system"
        elif role == "assistant":
            if dialect.reasoning_field and "reasoning_content" in message:
                changed = dict(message)
                changed[dialect.reasoning_field] = changed.pop("reasoning_content")
            elif replay and message.get("tool_calls") and not message.get("reasoning_content"):
                restored = _restore_reasoning(message, store)
                if restored is not None:
                    changed = dict(message)
                    changed["reasoning_content"] = restored
        if changed is not None:
            if result is None:
                result = list(messages)
            result[i] = changed
    return messages if result is None else result


def _restore_reasoning(message: dict[str, Any], store: ReasoningStore | None) -> str | None:
    if store is None:
        return None
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            found = store.get(call["id"])
            if found is not None:
                return found
    return None


# -- non-streaming responses ----------------------------------------------------------------------------------


@dataclass(slots=True)
class CompletionInfo:
    usage: Usage | None
    finish_reason: str | None
    text: str
    changed: bool


def from_upstream_response(data: dict[str, Any], dialect: Dialect, store: ReasoningStore | None) -> CompletionInfo:
    """Apply the response rules in place; report usage, finish reason and whether ``data`` changed."""
    changed = False
    finish: str | None = None
    texts: list[str] = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        finish = finish or choice.get("finish_reason")
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        if dialect.reasoning_field and dialect.reasoning_field in message:
            message["reasoning_content"] = message.pop(dialect.reasoning_field)
            changed = True
        if isinstance(message.get("content"), str):
            texts.append(message["content"])
        _remember_reasoning(message, store)
    usage_obj = data.get("usage")
    usage = None
    if isinstance(usage_obj, dict):
        usage = dialect.read_usage(usage_obj)
        if usage is not None and dialect.completion_excludes_reasoning and usage.reasoning:
            _normalise_usage(usage_obj, usage)
            changed = True
    return CompletionInfo(usage, finish, "".join(texts), changed)


def _remember_reasoning(message: dict[str, Any], store: ReasoningStore | None) -> None:
    if store is None:
        return
    reasoning = message.get("reasoning_content")
    calls = message.get("tool_calls")
    if isinstance(reasoning, str) and reasoning and isinstance(calls, list):
        ids = [c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)]
        store.put(ids, reasoning)


def _normalise_usage(usage_obj: dict[str, Any], usage: Usage) -> None:
    """Rewrite the client-visible usage with OpenAI semantics (completion includes reasoning)."""
    usage_obj["completion_tokens"] = usage.completion
    usage_obj["total_tokens"] = usage.prompt + usage.completion


# -- streams --------------------------------------------------------------------------------------------------


def malformed_event_error() -> bytes:
    """The OpenAI-style error event for an upstream event the gateway cannot read (no upstream text in it)."""
    message = "The upstream sent a malformed stream event."
    error = {"error": {"message": message, "type": "upstream_error", "param": None, "code": "upstream_stream_error"}}
    return encode_data(orjson.dumps(error))


def _plain(complete: bytes) -> bool:
    """Whether complete events are all one line, each ``data: {...}`` or a comment (a few scans in C, no parse):
    those may go out verbatim; anything else (a broken or cut JSON payload) is decoded and judged."""
    if complete.endswith(b"\n\n") and complete.count(b"\n") == 2:  # one event (the common read): two tests
        return complete.startswith(b":") or (complete.startswith(b"data: {") and complete.endswith(b"}\n\n"))
    events = complete.count(b"\n\n")
    objects = complete.startswith(b"data: {") + complete.count(b"\n\ndata: {")
    comments = complete.startswith(b":") + complete.count(b"\n\n:")
    return objects + comments == events and complete.count(b"}\n\n") == objects and complete.count(b"\n") == 2 * events


def _markers(dialect: Dialect) -> tuple[bytes, ...]:
    # Event bytes holding none of these need no parsing: they are relayed verbatim and kept for later
    # (estimates, the reasoning store). "usage":null rides on every chunk once usage is asked for, so only an
    # object counts; both JSON spacings are matched.
    base: tuple[bytes, ...] = (
        b'"usage":{',
        b'"usage": {',
        b'"error"',
        b"tool_calls",
        b'"finish_reason":"',
        b'"finish_reason": "',
        b"[DONE]",
        b"\r",
    )
    if dialect.reasoning_field:
        base += (f'"{dialect.reasoning_field}"'.encode(),)
    return base


class StreamTranslator:
    """Turns upstream SSE bytes into the bytes to relay to the client (the original where unchanged).

    Most of a stream is plain content deltas. ``feed_bytes`` takes whole network reads: the complete events
    in a read that holds no marker of interest are relayed verbatim without being parsed (one scan per read
    instead of a JSON parse per event); the rest goes through the SSE decoder and ``feed``. Everything
    relayed is kept (``raw``) so that produced text (for an estimate) and reasoning (for the reasoning store)
    can be recovered afterwards, only when needed.
    """

    __slots__ = (
        "_cost_json",
        "_cr",
        "_decoder",
        "_dialect",
        "_include_usage",
        "_markers",
        "_max_event",
        "_pending",
        "_provider",
        "_store",
        "_tool_ids",
        "done",
        "error",
        "finish_reason",
        "raw",
        "usage",
    )

    def __init__(
        self,
        dialect: Dialect,
        include_usage: bool,
        store: ReasoningStore | None,
        cost_json: Callable[[Usage], orjson.Fragment | None] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        provider: str = "openai",
    ) -> None:
        self._dialect = dialect
        self._provider = provider
        self._cost_json = cost_json
        self._include_usage = include_usage
        self._store = store
        self._markers = _markers(dialect)
        self._tool_ids: list[str] = []
        self._decoder = SSEDecoder(max_event_bytes)
        self._pending = EventCutter(max_event_bytes)
        self._max_event = max_event_bytes
        self._cr = False  # the upstream frames with CR or CRLF: every event goes through the decoder
        self.raw: list[bytes] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.error: str | None = None

    def feed_bytes(self, data: bytes) -> bytes | None:
        if self.error is not None:
            return None  # the stream was ended by an error event; nothing after it is relayed
        if self._cr or b"\r" in data:
            # CRLF framing never has two LFs in a row: blank lines are found by the decoder, line by line.
            if not self._cr:
                self._cr = True
                data = self._pending.take() + data
            return self._feed_events(self._decoder.feed(data))
        pending = self._pending
        # The common read is whole events and nothing left over: no buffering needed.
        whole = not pending.buf and len(data) <= self._max_event and data.endswith(b"\n\n")
        complete = data if whole else pending.feed(data)
        if not complete:
            return None
        first = -1
        for marker in self._markers:
            at = complete.find(marker)
            if at >= 0 and (first < 0 or at < first):
                first = at
        if first < 0:
            if _plain(complete):  # no marker and well formed (most reads): out verbatim
                self.raw.append(complete)
                return complete
            first = len(complete)
        # Events before the first one holding a marker (usually all but the last few) go out verbatim, if they
        # all look like one-line JSON objects; otherwise each is read (a malformed one becomes an error event).
        sep = complete.rfind(b"\n\n", 0, first)
        split = sep + 2 if sep >= 0 else 0
        head, rest = complete[:split], complete[split:]
        if not _plain(head):
            head, rest = b"", complete
        if not rest:
            self.raw.append(head)
            return head
        out = [head] if head else []
        if head:
            self.raw.append(head)
        events = self._feed_events(self._decoder.feed(rest))
        if events:
            out.append(events)
        return b"".join(out) if out else None

    def _feed_events(self, events: list[SSEEvent]) -> bytes | None:
        out: list[bytes] = []
        for event in events:
            relayed = self.feed(event.data)
            if relayed is not None:
                out.append(relayed)
            if self.error is not None:
                break  # an error event ends the stream
        return b"".join(out) if out else None

    def flush(self) -> bytes | None:
        """End of the upstream body: a last event without its blank line still counts."""
        if self.error is not None:
            return None
        return self._feed_events(self._decoder.feed(self._pending.take()) + self._decoder.flush())

    def feed(self, payload: bytes) -> bytes | None:
        """One event's ``data`` payload."""
        if self.error is not None:
            return None
        if payload == b"[DONE]":
            self.done = True
            return None
        self.raw.append(b"data: " + payload + b"\n\n")
        return self._parse(payload)

    def _parse(self, payload: bytes) -> bytes | None:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # The client sees it (an error event) and the stream ends: the row's 502 and the answer agree.
            self.error = "upstream sent a malformed stream event"
            return malformed_event_error()
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            # Relayed as sent, but it is upstream text that may quote the gateway's credentials: redacted.
            err = chunk["error"]
            self.error = redact(str(err.get("message") if isinstance(err, dict) else err))
            return b"data: " + REDACTOR.event(payload) + b"\n\n"
        changed = False
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and self._choice(choice, chunk):
                    changed = True
        usage_obj = chunk.get("usage")
        if isinstance(usage_obj, dict):
            usage = self._dialect.read_usage(usage_obj)
            self.usage = usage
            if usage is not None and self._dialect.completion_excludes_reasoning and usage.reasoning:
                _normalise_usage(usage_obj, usage)
                changed = True
            if not choices and not self._include_usage:
                return None  # the usage chunk the gateway asked for on its own behalf
            if usage is not None and self._cost_json is not None:
                cost = self._cost_json(usage)
                if cost is not None:
                    usage_obj["cost"] = cost
                    changed = True
        if changed:
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return b"data: " + payload + b"\n\n"

    def _choice(self, choice: dict[str, Any], chunk: dict[str, Any]) -> bool:
        changed = False
        finish = choice.get("finish_reason")
        if finish:
            self.finish_reason = finish
        delta = choice.get("delta")
        if isinstance(delta, dict):
            field = self._dialect.reasoning_field
            if field and field in delta:
                delta["reasoning_content"] = delta.pop(field)
                changed = True
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict) and isinstance(call.get("id"), str):
                        self._tool_ids.append(call["id"])
        if self._dialect.usage_in_choice and isinstance(choice.get("usage"), dict) and chunk.get("usage") is None:
            chunk["usage"] = choice.pop("usage")
            changed = True
        return changed

    # -- the stream translator contract (providers/stream.py) --------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.done or self.error is not None

    def translate(self, data: bytes) -> bytes | None:
        return self.feed_bytes(data)

    def end(self) -> bytes | None:
        if self.done:
            return None
        tail = self.flush()
        # Not every OpenAI-compatible server sends [DONE]; a stream that gave its finish reason is complete.
        if self.done or self.finish_reason is not None or self.error is not None:
            return tail
        self.error = "the upstream closed the stream before it was complete"
        event = chat_error_event(f"Upstream provider '{self._provider}' {self.error}.")
        return tail + event if tail else event

    def fail(self, message: str) -> bytes | None:
        self.error = message
        return chat_error_event(message)

    def outcome(self) -> StreamOutcome:
        self.finish()
        return StreamOutcome(
            self.done, self.usage, self.finish_reason, self.error, [], self.raw, self._dialect.reasoning_field
        )

    def finish(self) -> None:
        if self._store is not None and self._tool_ids:
            reasoning = "".join(texts_from_sse(self.raw, self._dialect.reasoning_field, reasoning_only=True))
            if reasoning:
                self._store.put(self._tool_ids, reasoning)

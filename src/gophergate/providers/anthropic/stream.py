"""Anthropic Messages stream -> OpenAI chat.completion.chunk events; a state machine with no I/O.

``feed(bytes) -> bytes`` takes network reads and returns the OpenAI SSE bytes to relay (possibly empty);
``finish()`` returns the tail after the upstream body ended. Event handling follows providers.md §4.4:

- ``message_start`` -> the role chunk; its usage carries the input side (input + cache fields);
- ``content_block_start`` of a ``tool_use`` block -> the first tool-call delta (OpenAI ``index`` counts only
  tool_use blocks, §11.10; id and name here, ``arguments: ""``; the initial ``input: {}`` is never sent);
- ``text_delta`` -> content, ``thinking_delta`` -> ``reasoning_content``, ``input_json_delta`` -> argument
  fragments, ``signature_delta`` -> kept with its thinking block for the thinking store;
- ``message_delta`` -> stop reason and cumulative usage; ``message_stop`` -> the finish chunk, then the usage
  chunk when the client asked for it (§10);
- ``ping`` is ignored; ``error`` (e.g. overloaded_error after HTTP 200) -> an OpenAI error event (§11.8);
- a body that ends before ``message_stop`` ends with an error event, never a finish chunk (§11.5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gophergate.core.usage import Usage, from_anthropic
from gophergate.providers.anthropic.thinking_store import ThinkingStore
from gophergate.providers.anthropic.translate import finish_reason, usage_object
from gophergate.providers.stream import StreamOutcome
from gophergate.providers.upstream import scrub
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, encode_data


def error_event(message: str) -> bytes:
    """An OpenAI-style error event: the official SDKs raise on a data payload with an ``error`` key."""
    error = {"error": {"message": message, "type": "upstream_error", "param": None, "code": "upstream_stream_error"}}
    return encode_data(orjson.dumps(error))


class StreamTranslator:
    __slots__ = (
        "_blocks",
        "_cost",
        "_created",
        "_decoder",
        "_head",
        "_include_usage",
        "_model",
        "_prefix",
        "_provider",
        "_saw_delta",
        "_scrub",
        "_stop_reason",
        "_store",
        "_tool_index",
        "_usage_raw",
        "completed",
        "done",
        "error",
        "finish_reason",
        "text",
        "thinking_blocks",
        "tool_call_ids",
        "usage",
    )

    def __init__(
        self,
        provider: str,
        model: str,
        include_usage: bool,
        *,
        created: int | None = None,
        redact: Callable[[str], str] = scrub,
        cost: Callable[[Usage], orjson.Fragment | None] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        store: ThinkingStore | None = None,
    ) -> None:
        self._provider = provider
        self._store = store  # where the thinking blocks of a tool-call turn are kept for the next turn
        self._model = model
        self._include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._scrub = redact
        self._decoder = SSEDecoder(max_event_bytes)
        self._cost = cost
        self._head: dict[str, Any] = {}
        self._prefix = b""
        self._set_head("msg_unknown", model)
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
        self._blocks: dict[int, dict[str, Any]] = {}  # thinking blocks being assembled, by block index
        self._usage_raw: dict[str, Any] = {}
        self._saw_delta = False
        self._stop_reason: Any = None
        self.done = False  # nothing more will be read (message_stop or an error event)
        self.completed = False  # message_stop arrived
        self.error: str | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.text: list[str] = []  # produced text, for a local estimate when no usage arrives
        self.tool_call_ids: list[str] = []
        self.thinking_blocks: list[dict[str, Any]] = []

    # -- input ------------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        for event in self._decoder.feed(data):
            self._event(event.data, out)
            if self.done:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """The upstream body ended: a last event without its blank line still counts; then close the books."""
        out: list[bytes] = []
        if not self.done:
            for event in self._decoder.flush():
                self._event(event.data, out)
                if self.done:
                    break
        if not self.done:
            self.error = "the upstream closed the stream before it was complete"
            out.append(error_event(f"Upstream provider '{self._provider}' {self.error}."))
            self.done = True
        self.settle()
        return b"".join(out)

    def settle(self) -> None:
        """Close the books without judging the stream (the client went away): usage if it arrived."""
        if self._saw_delta:
            self.usage = from_anthropic(self._usage_raw)

    # -- the stream translator contract (providers/stream.py) ------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.done

    def translate(self, data: bytes) -> bytes | None:
        return self.feed(data)

    def end(self) -> bytes | None:
        return self.finish()

    def fail(self, message: str) -> bytes | None:
        if self.done:
            return None
        self.error = message
        self.done = True
        return error_event(message)

    def outcome(self) -> StreamOutcome:
        self.settle()  # also when the client went away mid-stream
        if self._store is not None:
            self._store.put(self.tool_call_ids, self.thinking_blocks)
        texts = ["".join(self.text)] if self.usage is None else []
        return StreamOutcome(self.completed, self.usage, self.finish_reason, self.error, texts)

    # -- events -----------------------------------------------------------------------------------------------

    def _event(self, payload: bytes, out: list[bytes]) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail("sent a malformed stream event", out)
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "content_block_delta":
            self._delta(event, out)
        elif kind == "content_block_start":
            self._block_start(event, out)
        elif kind == "content_block_stop":
            self._block_stop(event)
        elif kind == "message_start":
            self._message_start(event, out)
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            self._message_stop(out)
        elif kind == "error":
            err = event.get("error")
            err = err if isinstance(err, dict) else {}
            detail = f"{err.get('type') or 'error'}: {err.get('message') or 'no message'}"
            self._fail(f"reported an error mid-stream: {detail}", out)
        # ping and event types added later are ignored (§4.4)

    def _fail(self, what: str, out: list[bytes]) -> None:
        self.error = self._scrub(f"Upstream provider '{self._provider}' {what}")
        out.append(error_event(self.error + ("" if self.error.endswith(".") else ".")))
        self.done = True

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return b"data: " + self._prefix + delta + b',"finish_reason":' + finish + b',"logprobs":null}]}\n\n'

    def _set_head(self, message_id: Any, model: Any) -> None:
        self._head = {"id": message_id, "object": "chat.completion.chunk", "created": self._created, "model": model}
        # Every chunk shares this head; it is serialised once.
        self._prefix = orjson.dumps(self._head)[:-1] + b',"choices":[{"index":0,"delta":'

    def _message_start(self, event: dict[str, Any], out: list[bytes]) -> None:
        message = event.get("message")
        message = message if isinstance(message, dict) else {}
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage_raw.update(usage)
        self._set_head(message.get("id") or "msg_unknown", message.get("model") or self._model)
        out.append(self._chunk(b'{"role":"assistant","content":""}'))

    def _block_start(self, event: dict[str, Any], out: list[bytes]) -> None:
        index = event.get("index")
        block = event.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "tool_use":
            k = len(self._tool_index)
            self._tool_index[index] = k
            call_id = block.get("id")
            if isinstance(call_id, str):
                self.tool_call_ids.append(call_id)
            head = {
                "index": k,
                "id": call_id,
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            self.text.append(str(block.get("name") or ""))
            out.append(self._chunk(b'{"tool_calls":[' + orjson.dumps(head) + b"]}"))
        elif kind == "thinking":
            self._blocks[index] = {
                "type": "thinking",
                "thinking": [block.get("thinking") or ""],
                "signature": [block.get("signature") or ""],
            }
        elif kind == "redacted_thinking":
            self.thinking_blocks.append(dict(block))
        elif kind == "text" and block.get("text"):
            self._text(block["text"], out)

    def _text(self, text: str, out: list[bytes]) -> None:
        self.text.append(text)
        out.append(self._chunk(b'{"content":' + orjson.dumps(text) + b"}"))

    def _delta(self, event: dict[str, Any], out: list[bytes]) -> None:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                self._text(text, out)
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            k = self._tool_index.get(event.get("index"))  # type: ignore[arg-type]
            if isinstance(fragment, str) and fragment and k is not None:
                self.text.append(fragment)
                call = b'{"index":' + str(k).encode() + b',"function":{"arguments":' + orjson.dumps(fragment) + b"}}"
                out.append(self._chunk(b'{"tool_calls":[' + call + b"]}"))
        elif kind == "thinking_delta":
            thinking = delta.get("thinking")
            if isinstance(thinking, str) and thinking:
                block = self._blocks.get(event.get("index"))  # type: ignore[arg-type]
                if block is not None:
                    block["thinking"].append(thinking)
                self.text.append(thinking)
                out.append(self._chunk(b'{"reasoning_content":' + orjson.dumps(thinking) + b"}"))
        elif kind == "signature_delta":
            block = self._blocks.get(event.get("index"))  # type: ignore[arg-type]
            if block is not None and isinstance(delta.get("signature"), str):
                block["signature"].append(delta["signature"])
        # citations_delta and delta types added later carry nothing an OpenAI client can show

    def _block_stop(self, event: dict[str, Any]) -> None:
        block = self._blocks.pop(event.get("index"), None)  # type: ignore[arg-type]
        if block is not None:
            self.thinking_blocks.append(
                {"type": "thinking", "thinking": "".join(block["thinking"]), "signature": "".join(block["signature"])}
            )

    def _message_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason") is not None:
            self._stop_reason = delta["stop_reason"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Cumulative (§4.4): later values replace earlier ones; nulls do not erase the input side.
            self._usage_raw.update({k: v for k, v in usage.items() if v is not None})
            self._saw_delta = True

    def _message_stop(self, out: list[bytes]) -> None:
        self.finish_reason = finish_reason(self._stop_reason, bool(self._tool_index))
        out.append(self._chunk(b"{}", b'"' + self.finish_reason.encode() + b'"'))
        self.completed = True
        self.done = True
        if self._saw_delta:
            self.usage = from_anthropic(self._usage_raw)
        if self._include_usage and self.usage is not None:
            usage = usage_object(self.usage)
            cost = self._cost(self.usage) if self._cost is not None else None
            if cost is not None:
                usage["cost"] = cost
            out.append(encode_data(orjson.dumps({**self._head, "choices": [], "usage": usage})))

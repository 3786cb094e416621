"""Gemini ``streamGenerateContent?alt=sse`` bytes -> OpenAI ``chat.completion.chunk`` SSE bytes; no I/O.

Each upstream event becomes OpenAI chunks at once (providers.md §3.4): a role chunk first, then reasoning
(``thought: true`` parts) and content deltas, one tool-call delta per ``functionCall`` with its whole
arguments (the Developer API does not stream arguments), and a finish chunk when a candidate has a
``finishReason``. Usage is a running total on many chunks: the last ``usageMetadata`` wins, never summed
(§11.1); the usage chunk goes out at the end, only when the client asked for it. There is no ``[DONE]``
(§11.5): a stream that ends without a finish reason, or reports an error (as a ``data:`` event or as raw JSON
lines outside the SSE framing, §3.6), ends with an OpenAI error event instead.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gophergate.core.usage import Usage, from_gemini
from gophergate.providers.gemini.errors import stream_error_message
from gophergate.providers.gemini.signatures import SignatureStore
from gophergate.providers.gemini.translate import CostFn, block_message, finish_reason, tool_call, usage_json
from gophergate.providers.stream import StreamOutcome, chat_error_event
from gophergate.providers.upstream import scrub
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEDecoder, encode_data

_LINES = re.compile(rb"\r\n|\r|\n")
_MAX_LOOSE = 1 << 20


class _LooseJson:
    """JSON documents on lines outside the SSE framing (Gemini may report an error after 200 as raw, even
    pretty-printed, JSON; the official SDK keeps a brace-balancing fallback for it, §3.6)."""

    __slots__ = ("_doc", "_doc_size", "_line", "_max")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._line = bytearray()  # the unfinished line; only new bytes are searched for line ends (linear)
        self._doc: list[bytes] | None = None
        self._doc_size = 0
        self._max = max_event_bytes

    def feed(self, data: bytes) -> list[bytes]:
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:
            self._line += data
            if len(self._line) > self._max:
                raise EventTooLarge(self._max)
            return []
        lines = _LINES.split(bytes(self._line) + data[:cut] if self._line else data[:cut])
        self._line = bytearray(data[cut + 1 :])
        out: list[bytes] = []
        for line in lines:
            self._take(line, out)
        return out

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        if self._line:
            self._take(bytes(self._line), out)
            self._line.clear()
        return out

    def _take(self, line: bytes, out: list[bytes]) -> None:
        if self._doc is None:
            if not line.lstrip().startswith((b"{", b"[")):
                return
            self._doc = []
            self._doc_size = 0
        self._doc.append(line)
        self._doc_size += len(line) + 1
        if self._doc_size > _MAX_LOOSE:
            self._doc = None
            return
        if not line.rstrip().endswith((b"}", b"]")):
            return  # cannot end a document: not worth a parse of everything so far
        text = b"\n".join(self._doc)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            if len(text) > _MAX_LOOSE:
                self._doc = None
            return
        self._doc = None
        out.append(text)


class GeminiStream:
    """One stream's translation state: ``feed(bytes) -> bytes`` per network read, ``finish() -> bytes`` at the end."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        completion_id: str,
        created: int,
        include_usage: bool,
        store: SignatureStore | None,
        cost: CostFn | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._provider = provider
        self._include_usage = include_usage
        self._store = store
        self._cost = cost
        self._decoder = SSEDecoder(max_event_bytes)
        self._loose = _LooseJson(max_event_bytes)
        self._head = (
            b'{"id":'
            + orjson.dumps(completion_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b","
        )
        self._started: set[int] = set()
        self._tool_counts: dict[int, int] = {}
        self._finished: dict[int, str] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.texts: list[str] = []  # produced text, for an estimate when no usage arrives
        self._complete = False  # the upstream body ended and the stream was whole

    # -- input ----------------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        if self.error is not None:
            return b""
        payloads = [e.data for e in self._decoder.feed(data)]
        payloads += self._loose.feed(data)
        return self._events(payloads)

    def finish(self) -> bytes:
        """End of the upstream body: flush, then close the stream honestly (error, or usage when asked)."""
        out = b""
        if self.error is None:
            out = self._events([e.data for e in self._decoder.flush()] + self._loose.flush())
        if self.error is not None:
            return out
        if not self._finished:
            self.error = f"Upstream provider '{self._provider}' closed the stream before it was complete."
            return out + chat_error_event(self.error)
        if self._include_usage and self.usage is not None:
            usage = usage_json(self.usage, self._cost)
            out += encode_data(self._head + b'"choices":[],"usage":' + orjson.dumps(usage) + b"}")
        return out

    # -- the stream translator contract (providers/stream.py) ------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.error is not None

    def translate(self, data: bytes) -> bytes | None:
        return self.feed(data)

    def end(self) -> bytes | None:
        tail = self.finish()
        self._complete = self.error is None
        return tail

    def fail(self, message: str) -> bytes | None:
        self.error = message
        return chat_error_event(message)

    def outcome(self) -> StreamOutcome:
        texts = self.texts if self.usage is None else []
        return StreamOutcome(self._complete, self.usage, self.finish_reason, self.error, texts)

    # -- events ---------------------------------------------------------------------------------------------------

    def _events(self, payloads: list[bytes]) -> bytes:
        out: list[bytes] = []
        for payload in payloads:
            if self.error is not None:
                break
            self._event(payload, out)
        return b"".join(out)

    def _event(self, payload: bytes, out: list[bytes]) -> None:
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail(f"Upstream provider '{self._provider}' sent a malformed stream event.", out)
            return
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            return
        if "error" in data:
            self._fail(scrub(stream_error_message(self._provider, data)), out)
            return
        metadata = data.get("usageMetadata")
        if isinstance(metadata, dict):
            self.usage = from_gemini(metadata)  # a running total: the last one wins (§3.4)
        candidates = data.get("candidates")
        if isinstance(candidates, list) and candidates:
            for position, candidate in enumerate(candidates):
                if isinstance(candidate, dict):
                    index = candidate.get("index")
                    self._candidate(candidate, index if isinstance(index, int) else position, out)
            return
        refusal = block_message(data.get("promptFeedback"))
        if refusal is not None and 0 not in self._finished:
            self._role(0, out)
            out.append(self._chunk(0, {"refusal": refusal}))
            self._finish(0, "content_filter", out)

    def _candidate(self, candidate: dict[str, Any], index: int, out: list[bytes]) -> None:
        if index in self._finished:
            return
        self._role(index, out)
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            if "functionCall" in part:
                call = tool_call(part, self._store)
                if call is None:
                    continue
                k = self._tool_counts.get(index, 0)
                self._tool_counts[index] = k + 1
                fn = call["function"]
                self.texts.append(fn["name"] + fn["arguments"])
                out.append(self._chunk(index, {"tool_calls": [{"index": k, **call}]}))
            elif isinstance(part.get("text"), str) and part["text"]:
                text = part["text"]
                self.texts.append(text)
                key = "reasoning_content" if part.get("thought") is True else "content"
                out.append(self._chunk(index, {key: text}))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._finish(index, finish_reason(reason, self._tool_counts.get(index, 0) > 0), out)

    def _role(self, index: int, out: list[bytes]) -> None:
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))

    def _finish(self, index: int, reason: str, out: list[bytes]) -> None:
        self._finished[index] = reason
        if self.finish_reason is None or index == 0:
            self.finish_reason = reason
        out.append(self._chunk(index, {}, reason))

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return encode_data(self._head + b'"choices":[' + orjson.dumps(choice) + b"]}")

    def _fail(self, message: str, out: list[bytes]) -> None:
        self.error = message
        out.append(chat_error_event(message))

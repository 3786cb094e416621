"""Incremental Server-Sent Events decoder: bytes in, events out; no I/O.

Lines end at CR, LF or CRLF (Gemini uses CRLF) and never at Unicode line separators, which can sit unescaped
inside JSON strings. Comment lines (DeepSeek's ``: keep-alive``) are dropped; ``data:`` lines of one event are
joined with ``\\n`` as the SSE spec says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: bytes | None = None
    id: bytes | None = None


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_event", "_has_data", "_id", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: bytes | None = None
        self._id: bytes | None = None
        self._has_data = False
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            # The CR of a CRLF pair ended the previous chunk: the LF is not a second line end.
            chunk = chunk[1:]
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        if b"\r" not in buf:
            # Fast path: LF-only framing, the common case for OpenAI-compatible upstreams. Whole events are cut
            # at blank lines; a lone "data: ..." line (nearly every event) needs no line-by-line parsing.
            *blocks, rest = buf.split(b"\n\n")
            for block in blocks:
                if not self._has_data and self._event is None and block[:6] == b"data: " and b"\n" not in block:
                    events.append(SSEEvent(block[6:]))
                    continue
                for line in block.split(b"\n"):
                    self._line(line, events)
                self._line(b"", events)
            self._buf = rest
            return events
        start = 0
        n = len(buf)
        while True:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if lf < 0 and cr < 0:
                break
            if cr < 0 or (0 <= lf < cr):
                self._line(buf[start:lf], events)
                start = lf + 1
                continue
            self._line(buf[start:cr], events)
            if cr + 1 < n:
                start = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            else:
                start = cr + 1
                self._pending_cr = True
        self._buf = buf[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line is still delivered."""
        events: list[SSEEvent] = []
        if self._buf:
            # The fast path of ``feed`` keeps whole unterminated events, which may span several lines
            # (``event:`` then ``data:``, as Anthropic sends them).
            for line in self._buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                self._line(line, events)
            self._buf = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._has_data:
                events.append(SSEEvent(b"\n".join(self._data), self._event, self._id))
            self._data = []
            self._event = None
            self._has_data = False
            return
        if line[0] == 0x3A:  # ':' comment / keep-alive
            return
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data.append(value)
            self._has_data = True
        elif field == b"event":
            self._event = value
        elif field == b"id":
            self._id = value


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"

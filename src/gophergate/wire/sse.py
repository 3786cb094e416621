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


DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventTooLarge(ValueError):
    """One event (or the part of it received so far) is longer than the cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a stream event is larger than the limit of {limit} bytes")
        self.limit = limit


class SSEDecoder:
    """Bytes are buffered in a bytearray and only new bytes are scanned for line ends, so feeding N bytes in any
    number of chunks costs O(N); an event longer than ``max_event_bytes`` raises ``EventTooLarge`` as soon as
    that many of its bytes are buffered (no blank line needed)."""

    __slots__ = ("_buf", "_data", "_event", "_has_data", "_id", "_max", "_pending_cr", "_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()  # the current line, not yet ended
        self._data: list[bytes] = []
        self._size = 0  # data bytes of the current event
        self._event: bytes | None = None
        self._id: bytes | None = None
        self._has_data = False
        self._pending_cr = False
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            # The CR of a CRLF pair ended the previous chunk: the LF is not a second line end.
            chunk = chunk[1:]
        self._pending_cr = False
        events: list[SSEEvent] = []
        buf = self._buf
        if not buf and b"\r" not in chunk:
            # Fast path: LF-only framing from a line start, the common case for OpenAI-compatible upstreams. Whole
            # events are cut at blank lines; a lone "data: ..." line (nearly every event) needs no line parsing.
            *blocks, rest = chunk.split(b"\n\n")
            for block in blocks:
                if not self._has_data and self._event is None and block[:6] == b"data: " and b"\n" not in block:
                    if len(block) - 6 > self._max:
                        raise EventTooLarge(self._max)
                    events.append(SSEEvent(block[6:]))
                    continue
                for line in block.split(b"\n"):
                    self._line(line, events)
                self._line(b"", events)
            cut = rest.rfind(b"\n")
            if cut >= 0:
                for line in rest[:cut].split(b"\n"):
                    self._line(line, events)
                rest = rest[cut + 1 :]
            buf += rest
            self._check()
            return events
        pos = len(buf)  # what is buffered holds no line end: only the new bytes are scanned
        buf += chunk
        n = len(buf)
        start = 0
        lf = buf.find(b"\n", pos)
        cr = buf.find(b"\r", pos)
        while lf >= 0 or cr >= 0:
            if cr < 0 or 0 <= lf < cr:
                end, pos = lf, lf + 1
            elif cr + 1 < n:
                end, pos = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            else:
                end, pos = cr, cr + 1
                self._pending_cr = True
            self._line(bytes(buf[start:end]), events)
            start = pos
            # Each search resumes where the last line ended and is repeated only once passed: linear.
            if 0 <= lf < pos:
                lf = buf.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = buf.find(b"\r", pos)
        del buf[:start]  # from the front of a bytearray: no copy of the rest
        self._check()
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line is still delivered."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(bytes(self._buf), events)
            self._buf.clear()
        self._line(b"", events)
        return events

    def _check(self) -> None:
        if self._size + len(self._buf) > self._max:
            raise EventTooLarge(self._max)

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._has_data:
                events.append(SSEEvent(b"\n".join(self._data), self._event, self._id))
            self._data = []
            self._size = 0
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
            self._size += len(value) + 1
            if self._size > self._max:
                raise EventTooLarge(self._max)
            self._has_data = True
        elif field == b"event":
            self._event = value
        elif field == b"id":
            self._id = value


class EventCutter:
    """LF-framed bytes cut after their last blank line, for relays that pass whole events on verbatim: the
    unfinished event is kept in a bytearray and only new bytes are searched (linear in the input), and it may not
    grow past ``max_event_bytes`` (``EventTooLarge``)."""

    __slots__ = ("_max", "buf")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.buf = bytearray()  # the unfinished event (read it, do not change it)
        self._max = max_event_bytes

    def feed(self, data: bytes) -> bytes:
        """The complete events buffered so far (up to and including the last blank line), or b""."""
        buf = self.buf
        if not buf:
            cut = data.rfind(b"\n\n")
            complete = data[: cut + 2] if cut >= 0 else b""
            buf += data[cut + 2 :] if cut >= 0 else data
        else:
            start = len(buf) - 1  # a blank line may straddle the old and the new bytes
            buf += data
            cut = buf.rfind(b"\n\n", start)
            complete = b""
            if cut >= 0:
                complete = bytes(buf[: cut + 2])
                del buf[: cut + 2]
        if len(buf) > self._max or (len(complete) > self._max and max(map(len, complete.split(b"\n\n"))) > self._max):
            raise EventTooLarge(self._max)
        return complete

    def take(self) -> bytes:
        """What is left (an event without its blank line), emptying the buffer."""
        rest = bytes(self.buf)
        self.buf.clear()
        return rest

    def __bool__(self) -> bool:
        return bool(self.buf)


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"

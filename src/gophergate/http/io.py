"""Small raw-ASGI helpers: reading a bounded body, sending whole responses, request ids."""

from __future__ import annotations

import asyncio
import re
import weakref
from random import getrandbits
from time import time
from typing import Any

from gophergate.core.asgi import Scope, header
from gophergate.core.errors import BodyTimeout, BodyTooLarge, GatewayError, InvalidRequest

JSON = b"application/json"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,64}")


def request_id(scope: Scope) -> str:
    """The caller's ``x-request-id`` when it is sane, else a fresh one."""
    given = header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given.decode()
    # Time-ordered: 48 bits of Unix milliseconds, then 48 random bits from the process's PRNG (reseeded in each
    # forked worker). New ids land at the right edge of the request_id index, so a log batch dirties one leaf
    # there instead of one random leaf per row; and no getrandom(2) syscall per request. An id is a correlation
    # handle, not a secret.
    return f"req_{int(time() * 1000):012x}{getrandbits(48):012x}"


_BROKEN_BODY = (
    "The request body broke off before it was complete (broken chunked framing, or fewer bytes than its "
    "Content-Length)."
)


async def read_body(receive: Any, scope: Scope, limit: int, seconds: float) -> bytes:
    """The whole body, within ``limit`` bytes and ``seconds`` for all of it (408), so that a client that sends
    the head and then nothing, or trickles a byte now and then, cannot hold a request open: the server has no
    deadline for a body. A body that breaks off (malformed chunked framing, a connection that ends early: the
    server reports both as ``http.disconnect``) is a 400; a client that has gone does not see it, one that sent
    a malformed body does. Here, in the app, so that it holds on any ASGI server."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    task = asyncio.current_task()
    if task is None:
        return await _read_body(receive, limit)
    deadlines = _BodyDeadlines.of(asyncio.get_running_loop())
    deadlines.add(task, seconds)
    try:
        return await _read_body(receive, limit)
    except asyncio.CancelledError:
        if deadlines.expired(task):
            raise BodyTimeout(f"The request body did not arrive within {seconds:g} s.") from None
        raise
    finally:
        deadlines.discard(task)


class _BodyDeadlines:
    """The deadlines of a loop's body reads, on one timer: at the earliest deadline, the reads past theirs are
    cancelled (``read_body`` turns that into a 408). A timer per read costs a request several microseconds;
    adding to and removing from a dict costs next to nothing, and the timer fires about once per deadline
    period."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _BodyDeadlines] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reads: dict[asyncio.Task[Any], float] = {}
        self.cut: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None

    _last: _BodyDeadlines | None = None  # the one of the loop asked for last (a worker has one loop)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _BodyDeadlines:
        last = cls._last
        if last is not None and last.loop is loop:
            return last
        deadlines = cls._by_loop.get(loop)
        if deadlines is None:
            deadlines = cls._by_loop[loop] = cls(loop)
        cls._last = deadlines
        return deadlines

    def add(self, task: asyncio.Task[Any], seconds: float) -> None:
        deadline = self.loop.time() + seconds
        self.reads[task] = deadline
        if self.timer is None or deadline < self.timer.when():
            self._arm(deadline)

    def discard(self, task: asyncio.Task[Any]) -> None:
        self.reads.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """``task`` was cancelled for its deadline (and by nothing else): it may go on, to answer 408."""
        if task not in self.cut:
            return False
        self.cut.discard(task)
        return task.uncancel() == 0

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        for task, deadline in list(self.reads.items()):
            if deadline <= now:
                del self.reads[task]
                self.cut.add(task)
                task.cancel()
        if self.reads:
            self._arm(min(self.reads.values()))


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest(_BROKEN_BODY, code="invalid_body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replaying(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` (read already) as the whole request body, then what ``receive`` gives."""
    pending = True

    async def replay() -> Any:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def base_headers(req_id: str, content_type: bytes = JSON) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"x-request-id", req_id.encode())]


async def send_bytes(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Any,
    error: GatewayError,
    req_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    anthropic: bool = False,
) -> None:
    """An error answer; ``anthropic``: in the Anthropic Messages API's shape (its endpoints' clients parse that)."""
    headers = base_headers(req_id)
    for name, value in error.headers.items():
        headers.append((name.lower().encode(), value.encode()))
    if extra:
        headers.extend(extra)
    await send_bytes(send, error.status, error.anthropic_body() if anthropic else error.body(), headers)


def client_headers(scope: Any, names: tuple[bytes, ...]) -> dict[str, str]:
    """The client's headers of ``names`` (lower-case), for a pass-through backend."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in names:
            key = name.decode()
            found[key] = f"{found[key]},{value.decode('latin-1')}" if key in found else value.decode("latin-1")
    return found

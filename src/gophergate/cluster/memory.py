"""Conversation memories shared by every process of a cluster through Redis (``GOPHERGATE_REDIS_URL``).

The gateway remembers, per process, what OpenAI-SDK clients cannot carry back between the turns of a tool
conversation: DeepSeek/Kimi reasoning, Anthropic thinking blocks, Gemini thought signatures (``core/ttl_store.py``
and its stores), and the responses /v1/responses made by translation (``gateway/stored_responses.py``). A
conversation whose turns land on different instances (or workers) needs them wherever its next turn lands, so with
Redis each of them is also kept there, under ``<prefix>memories:``, with its store's time to live:

- **Writes never wait.** ``TTLStore.set_many`` keeps the value here and queues it; one task drains the queue in
  pipelines of ``SET ... PX`` (encoding the values there, off the request path). The queue is bounded by the bytes
  it holds; when it is full a value is dropped and counted (it still serves this process).
- **Reads happen once per request, before translation, and only when needed.** The provider asks its store to
  ``recall`` the tool-call ids the history names; ids held here cost nothing, the others are fetched with one
  ``MGET`` bounded by ``fetch_timeout`` (0.25 s). A request without tool calls, or whose ids are all here, never
  reaches Redis.
- **Redis unreachable or slow**: the request is translated with what this process has (today's per-process
  behaviour), a warning at most once a minute, and for ``RETRY_AFTER_S`` after a failure the fetches do not try
  (a Redis that does not answer costs one request the timeout, not every one); ``status()`` says so on /readyz.

A value fetched from Redis is kept here for the store's whole TTL again (at most that much longer than on the
instance that made it). A client that sends the next turn within the moment the writer takes to write the value
(a millisecond or so: the queue is drained at once, not on a timer) can miss it, as a restarted process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from gophergate.core.ttl_store import TTLStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

V = TypeVar("V")

FETCH_TIMEOUT_S = 0.25  # the longest a request waits for the memories it needs from Redis
QUEUE_BYTES = 64 << 20  # the values waiting to be written, at most
QUEUE_ENTRIES = 20_000
BATCH = 256  # values per pipeline
RETRY_AFTER_S = 1.0  # after a failure, fetches skip Redis this long
PING_EVERY_S = 10.0  # an idle writer checks Redis this often (for /readyz)
WARN_EVERY_S = 60.0
MAX_RESPONSE_BYTES = 1 << 20  # a stored response larger than this is found through the database only


@dataclass(slots=True)
class _Write:
    prefix: str
    keys: tuple[str, ...]
    value: Any
    encode: Callable[[Any], bytes]
    ttl_ms: int
    size: int


class _Slot(Generic[V]):
    """One store's view of the shared memories (``core.ttl_store.Shared``): its keys live under ``prefix``."""

    __slots__ = ("_memories", "_prefix", "_store", "_ttl_ms")

    def __init__(self, memories: SharedMemories, prefix: str, store: TTLStore[V]) -> None:
        self._memories = memories
        self._prefix = prefix
        self._store = store
        self._ttl_ms = max(int(store.ttl_seconds * 1000), 1)

    def write(self, keys: tuple[str, ...], value: V, size: int) -> None:
        self._memories.enqueue(_Write(self._prefix, keys, value, self._store.encode, self._ttl_ms, size))

    async def load(self, keys: list[str]) -> dict[str, V]:
        memories = self._memories
        values = await memories.fetch([self._prefix + key for key in keys])
        found: dict[str, V] = {}
        if values is None:
            return found
        for key, data in zip(keys, values, strict=True):
            if data is None:
                memories.missed += 1
                continue
            try:
                found[key] = self._store.decode(data)
            except (ValueError, TypeError) as exc:  # written by another version, or not by the gateway
                memories.undecodable += 1
                memories.warn(f"an unreadable value under {self._prefix}{key} ({exc}); ignored")
        memories.loaded += len(found)
        return found


class SharedMemories:
    """The shared layer of one process: one Redis client, one write queue and its writer task, and the counters
    ``status()`` reports. ``attach`` shares a ``TTLStore``; ``keep_response`` / ``load_response`` /
    ``forget_response`` serve the stored responses. ``start`` runs the writer (on the running loop), ``close``
    writes what is queued (briefly) and closes the client."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        fetch_timeout: float = FETCH_TIMEOUT_S,
        max_queue_bytes: int = QUEUE_BYTES,
        max_queue: int = QUEUE_ENTRIES,
        batch: int = BATCH,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.fetch_timeout = fetch_timeout
        self._max_queue_bytes = max_queue_bytes
        self._max_queue = max_queue
        self._batch = batch
        self._queue: deque[_Write] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued or being written
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the pipeline being written now
        self._down_until = 0.0
        self._warned = -WARN_EVERY_S
        self.connected = False  # the last Redis operation succeeded
        self.loaded = 0  # memories fetched from Redis and kept here
        self.missed = 0  # memories asked of Redis that it did not have
        self.written = 0  # values written to Redis (one per key)
        self.dropped = 0  # values not queued: the queue was full
        self.lost = 0  # values in a pipeline that failed
        self.errors = 0  # Redis operations that failed (timeouts included)
        self.timeouts = 0  # fetches that gave up at ``fetch_timeout``
        self.skipped = 0  # fetches not tried: Redis failed less than RETRY_AFTER_S ago
        self.undecodable = 0
        self.responses_loaded = 0
        self.responses_missed = 0
        self.responses_too_large = 0  # kept in memory and the database only

    # -- sharing ------------------------------------------------------------------------------------------------
    def attach(self, store: TTLStore[V], name: str) -> None:
        """Share ``store``: its values go to Redis under ``<prefix><name>:<key>`` and ``recall`` finds them."""
        store.shared = _Slot(self, f"{self.prefix}{name}:", store)

    def enqueue(self, write: _Write) -> None:
        if len(self._queue) >= self._max_queue or self._queued_bytes + write.size > self._max_queue_bytes:
            self.dropped += len(write.keys)
            self.warn(f"the write queue is full; {self.dropped} values kept in this process only so far")
            return
        self._queue.append(write)
        self._queued_bytes += write.size
        self._idle.clear()
        self._wake.set()

    # -- stored responses (gateway/stored_responses.py) -----------------------------------------------------------
    def keep_response(
        self, response_id: str, value: Any, encode: Callable[[Any], bytes], ttl_seconds: float, size: int
    ) -> None:
        """Queue a stored response (``encode``d by the writer) under ``<prefix>responses:<id>`` for ``ttl_seconds``;
        one of more than ``MAX_RESPONSE_BYTES`` is not (the database keeps it)."""
        if size > MAX_RESPONSE_BYTES:
            self.responses_too_large += 1
            return
        ttl_ms = max(int(ttl_seconds * 1000), 1)
        self.enqueue(_Write(self.prefix + "responses:", (response_id,), value, encode, ttl_ms, size))

    async def load_response(self, response_id: str) -> bytes | None:
        """The stored response's value; None when absent or Redis does not answer in time."""
        values = await self.fetch([self.prefix + "responses:" + response_id])
        if values is None:
            return None
        if values[0] is None:
            self.responses_missed += 1
        else:
            self.responses_loaded += 1
        return values[0]

    async def forget_response(self, response_id: str) -> None:
        """Remove a stored response: from the queue, then (after a pipeline in flight) from Redis."""
        prefix = self.prefix + "responses:"
        if any(w.prefix == prefix and response_id in w.keys for w in self._queue):
            kept = deque(w for w in self._queue if not (w.prefix == prefix and response_id in w.keys))
            self._queued_bytes = sum(w.size for w in kept)
            self._queue = kept
        if self._writing is not None:
            await asyncio.shield(self._writing)
        try:
            async with asyncio.timeout(self.fetch_timeout):
                await self.client.delete(prefix + response_id)
        except TimeoutError:
            self._failed(f"DEL timed out after {self.fetch_timeout} s")
        except Exception as exc:
            self._failed(exc)
        else:
            self._ok()

    # -- Redis ----------------------------------------------------------------------------------------------------
    async def fetch(self, names: list[str]) -> list[bytes | None] | None:
        """``MGET names`` within ``fetch_timeout``; None when Redis failed (now or a moment ago)."""
        if time.monotonic() < self._down_until:
            self.skipped += 1
            return None
        try:
            async with asyncio.timeout(self.fetch_timeout):
                values = cast("list[bytes | None]", await self.client.mget(names))  # no decode_responses: bytes
        except TimeoutError:
            self.timeouts += 1
            self._failed(f"no answer within {self.fetch_timeout} s")
            return None
        except Exception as exc:
            self._failed(exc)
            return None
        self._ok()
        return values

    def _ok(self) -> None:
        self.connected = True
        self._down_until = 0.0

    def _failed(self, exc: BaseException | str) -> None:
        self.errors += 1
        self.connected = False
        self._down_until = time.monotonic() + RETRY_AFTER_S
        self.warn(f"Redis is unreachable ({exc}); each process serves the memories it has meanwhile")

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("conversation memories: %s", message)

    # -- the writer -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gophergate-shared-memories")

    async def _run(self) -> None:
        backoff = 0.1
        await self._ping()
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                try:
                    async with asyncio.timeout(PING_EVERY_S if self.connected else backoff):
                        await self._wake.wait()
                except TimeoutError:
                    await self._ping()
                    backoff = 0.1 if self.connected else min(backoff * 2, 5.0)
                    continue
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            if await self._write(batch):
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)  # what queues meanwhile is written when Redis is back (or dropped)
                backoff = min(backoff * 2, 5.0)

    async def _write(self, batch: list[_Write]) -> bool:
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for write in batch:
            self._queued_bytes -= write.size
            try:
                data = write.encode(write.value)
            except Exception:
                self.undecodable += 1
                log.exception("conversation memories: a value could not be encoded")
                continue
            for key in write.keys:
                pipe.set(write.prefix + key, data, px=write.ttl_ms)
            count += len(write.keys)
        if not count:
            return True
        self._writing = asyncio.get_running_loop().create_future()
        try:
            await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.lost += count
            self._failed(exc)
            return False
        finally:
            self._writing.set_result(None)
            self._writing = None
        self.written += count
        self._ok()
        return True

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self.client.ping()
        except Exception as exc:
            self._failed(exc if not isinstance(exc, TimeoutError) else "PING timed out")
        else:
            self._ok()

    async def settled(self) -> None:
        """Everything queued so far has been written (or given up on); needs the writer to run."""
        await self._idle.wait()

    async def close(self, drain_seconds: float = 1.0) -> None:
        """Write what is queued (for ``drain_seconds`` at most), stop the writer, close the client."""
        if self._task is not None:
            if not self._task.done() and self.connected:  # a Redis that is not there gets nothing more
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain_seconds):
                        await self.settled()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def status(self) -> dict[str, Any]:
        """For /readyz (``details["memories"]``)."""
        return {
            "mode": "redis",
            "connected": self.connected,
            "loaded": self.loaded,
            "missed": self.missed,
            "written": self.written,
            "queued": len(self._queue),
            "dropped": self.dropped,
            "lost": self.lost,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "skipped": self.skipped,
            "undecodable": self.undecodable,
            "responses": {
                "loaded": self.responses_loaded,
                "missed": self.responses_missed,
                "too_large": self.responses_too_large,
            },
        }

"""The cluster bus: one Redis pub/sub channel that every process of every instance publishes to and listens on.

A message is ``topic SEP sender SEP payload`` (bytes): a receiver reads the topic and the sender without decoding
the payload, skips its own messages, and hands the payload to the topic's handler as bytes (the live hub's request
rows are forwarded to the dashboards as they are, never decoded). Handlers run on the event loop and must not block.

Publishing never waits: ``publish`` appends to a bounded queue that one task drains in pipelines; when the queue is
full, or Redis does not answer, messages are dropped and counted (``dropped``). What is published is either
redundant by design (the database polling stays as the safety net for a pushed change) or live display (hub rows
and metrics).

Redis unreachable: the subscriber retries with a backoff up to 5 s and, once connected again, calls the
``on_reconnect`` callbacks (a process that was cut off reloads what it may have missed); a warning at most once a
minute; ``status()`` says so on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

SEP = b"\x1f"
MAX_PENDING = 10_000
BATCH = 256
WARN_EVERY_S = 60.0

Handler = Callable[[str, bytes], None]  # (sender, payload)


async def listen(
    client: Redis,
    channel: str,
    on_message: Callable[[Any], None],
    on_subscribed: Callable[[], Awaitable[None]],
    on_error: Callable[[BaseException], None],
) -> None:
    """Subscribe to ``channel`` and hand each message's data to ``on_message`` until cancelled. After every
    (re)subscription ``on_subscribed`` runs (load what may have been missed); after a failure ``on_error``, then a
    new attempt after a backoff (0.1 s, doubling up to 5 s)."""
    wait = 0.1
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            await on_subscribed()
            wait = 0.1
            while True:
                message = await pubsub.get_message(timeout=0.25)  # below the client's socket timeout
                if message is not None:
                    on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_error(exc)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def frame(topic: str, sender: str, payload: bytes) -> bytes:
    return topic.encode() + SEP + sender.encode() + SEP + payload


async def publish_once(url: str, prefix: str, topic: str, payload: bytes, wait_seconds: float = 2.0) -> bool:
    """One message from a process that is not on the bus (the CLI after a change): True when Redis took it."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_timeout=wait_seconds, socket_connect_timeout=wait_seconds)
    try:
        await client.publish(prefix + "bus", frame(topic, f"cli/{os.getpid()}", payload))
        return True
    except Exception as exc:
        log.warning(
            "could not tell the running gateways through Redis (%s); they notice within their polling interval",
            type(exc).__name__,
        )
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class ClusterBus:
    def __init__(self, client: Redis, prefix: str, instance: str, *, max_pending: int = MAX_PENDING) -> None:
        self.client = client
        self.channel = prefix + "bus"
        self.instance = instance
        # One name per process: the instance's name, this process's pid and a nonce (a pid is reused by a restart).
        self.sender = f"{instance}/{os.getpid()}/{secrets.token_hex(3)}"
        self._sender = self.sender.encode()
        self.max_pending = max_pending
        self._handlers: dict[bytes, Handler] = {}
        self.on_reconnect: list[Callable[[], None]] = []
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self._ever_connected = False
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self._warned = 0.0

    # -- handlers -----------------------------------------------------------------------------------------------
    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic.encode()] = handler

    # -- publishing (never blocks) ------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one message for the cluster; False (dropped, counted) when the queue is full."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        self._pending.append(frame(topic, self.sender, payload))
        self._wake.set()
        self._drained.clear()
        return True

    async def _publisher(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
            batch = [pending.popleft() for _ in range(min(len(pending), BATCH))]
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
                self.published += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                self._unreachable(exc)
                await asyncio.sleep(0.5)  # do not spin on a dead Redis; the queue bounds what waits meanwhile

    # -- receiving ----------------------------------------------------------------------------------------------
    def _dispatch(self, data: Any) -> None:
        raw = data if isinstance(data, bytes) else str(data).encode()
        topic, _, rest = raw.partition(SEP)
        sender, _, payload = rest.partition(SEP)
        if sender == self._sender:
            return
        handler = self._handlers.get(topic)
        if handler is None:
            return
        self.received += 1
        try:
            handler(sender.decode(errors="replace"), payload)
        except Exception:
            log.exception("cluster bus: handling a %s message failed", topic.decode(errors="replace"))

    async def _subscriber(self) -> None:
        await listen(self.client, self.channel, self._dispatch, self._subscribed, self._unreachable)

    async def _subscribed(self) -> None:
        reconnected = self._ever_connected
        self.connected = self._ever_connected = True
        if reconnected:
            log.info("cluster bus: Redis is reachable again")
            for callback in self.on_reconnect:
                try:
                    callback()
                except Exception:
                    log.exception("cluster bus: a reconnect callback failed")

    def _unreachable(self, exc: BaseException) -> None:
        self.errors += 1
        self.connected = False
        self.last_error = type(exc).__name__
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "cluster: Redis is unreachable (%s): the live hub, conversation memories and pushed changes are this "
                "process's own until it is back; /v1 keeps serving",
                type(exc).__name__,
            )

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="gophergate-bus-subscriber"),
            loop.create_task(self._publisher(), name="gophergate-bus-publisher"),
        ]

    async def flush(self, wait_seconds: float = 1.0) -> None:
        """Wait (up to ``wait_seconds``) until what is queued has been handed to Redis (or dropped)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), wait_seconds)

    async def close(self) -> None:
        await self.flush(1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "state": "connected" if self.connected else "unreachable",
            "instance": self.instance,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "queued": len(self._pending),
            "errors": self.errors,
            "last_error": self.last_error,
        }

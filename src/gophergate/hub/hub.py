"""The live hub: a set of WebSocket connections, each with a bounded queue, fed without ever blocking.

``publish`` appends one already-encoded message to every connection's queue: O(connections), no awaiting, and
nothing at all with no connection. Each connection's own handler (``ws.py``) drains its queue onto the socket,
so a client that reads slowly only fills its own queue; when that queue is full the connection is dropped
(closed with 1013 "try again later") instead of slowing the log writer, the gateway or the other clients.

One task (``run``) drives the clock: a ``metrics`` message every ``metrics_interval`` and a ping every
``ping_interval``. ``close`` ends the task and closes every connection with 1001 (going away).

In a cluster (``cluster``, with ``GOPHERGATE_REDIS_URL``) every row and event is also handed to the cluster bus,
the other processes' rows and events reach this process's connections, and the ``metrics`` message sums the
cluster with a per-instance breakdown (``hub/cluster.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gophergate.core.record import RequestRecord
from gophergate.hub.cluster import ClusterLive, instance_rows
from gophergate.hub.events import PING, EventKind, event_message, metrics_message, now_iso, request_message
from gophergate.hub.sampler import Sampler, Window, figures

log = logging.getLogger(__name__)

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class HubUser(Protocol):
    """What the hub needs of a logged-in user (the auth package's ``User`` fits)."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...


class Connection:
    """One client: its bounded queue of encoded messages and the future that says it must close, and why."""

    def __init__(self, user: HubUser, max_queue: int) -> None:
        self.user = user
        self.max_queue = max_queue
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def offer(self, message: str) -> bool:
        """Queue one message; False (and nothing queued) when the queue is full."""
        if len(self.queue) >= self.max_queue:
            return False
        self.queue.append(message)
        self.ready.set()
        return True

    def close(self, code: int) -> None:
        if not self.closed.done():
            self.queue.clear()
            self.closed.set_result(code)


class Hub:
    """Built inside the running loop (in the lifespan); everything but ``event`` is for that loop's thread."""

    def __init__(
        self,
        sampler: Sampler,
        *,
        max_queue: int = 1000,
        max_connections: int = 256,
        metrics_interval: float = 2.0,
        ping_interval: float = 20.0,
        key_names: Mapping[int, str] | None = None,
        instance: str = "local",
        cluster: ClusterLive | None = None,
    ) -> None:
        self.sampler = sampler
        self.instance = instance
        self.cluster = cluster
        # Client key id -> name (the key cache's live map), so request messages name their key without a query.
        self.key_names: Mapping[int, str] = key_names if key_names is not None else {}
        self.max_queue = max_queue
        self.max_connections = max_connections
        self.metrics_interval = metrics_interval
        self.ping_interval = ping_interval
        self.connections: set[Connection] = set()
        self.dropped = 0  # connections closed because their queue was full
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        if cluster is not None:
            cluster.attach(self)

    # -- connections ----------------------------------------------------------------------------------------
    def connect(self, user: HubUser) -> Connection | None:
        """A new connection, or None when the hub is shutting down or full."""
        if self._closing or len(self.connections) >= self.max_connections:
            return None
        conn = Connection(user, self.max_queue)
        self.connections.add(conn)
        self._idle.clear()
        return conn

    def disconnect(self, conn: Connection) -> None:
        conn.close(GOING_AWAY)
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    # -- publishing (never blocks) --------------------------------------------------------------------------
    def publish(self, message: str) -> None:
        if not self.connections:
            return
        full = [conn for conn in self.connections if not conn.offer(message)]
        for conn in full:
            self.dropped += 1
            log.warning("live hub: dropping %s's connection, %d messages unread", conn.user.username, conn.max_queue)
            conn.close(TRY_AGAIN_LATER)
            self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def publish_committed(self, records: Sequence[RequestRecord]) -> None:
        """The recorder's ``on_committed`` listener: count for the metrics, then one ``request`` per row."""
        self.sampler.observe(records)
        cluster = self.cluster
        if self.connections or cluster is not None:
            messages = [request_message(record, self.key_names) for record in records]
            for message in messages:
                self.publish(message)
            if cluster is not None:
                cluster.publish_rows(messages)

    def event(self, kind: EventKind, detail: dict[str, Any]) -> None:
        """Announce something that happened (``detail`` must hold no secrets: every viewer receives it).

        Safe to call from another thread (the registry loads a saved copy in a worker thread): the message is
        then handed to the hub's loop.
        """
        if threading.get_ident() != self._thread:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is listening
                self._loop.call_soon_threadsafe(self.event, kind, detail)
            return
        if self.connections or self.cluster is not None:
            message = event_message(kind, detail, self.instance)
            self.publish(message)
            if self.cluster is not None:
                self.cluster.publish_event(message)

    # -- the hub task ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        since_ping = 0.0
        while True:
            await asyncio.sleep(self.metrics_interval)
            if self.connections or self.cluster is not None:
                try:
                    local = self.sampler.window()
                    if self.cluster is not None:
                        self.cluster.publish_window(local)
                    if self.connections:
                        self.publish(metrics_message(self.metrics_data(local)))
                except Exception:  # a failing probe must not end the hub
                    log.exception("live hub: sampling metrics failed")
            since_ping += self.metrics_interval
            if since_ping >= self.ping_interval:
                since_ping = 0.0
                self.publish(PING)

    def metrics_data(self, local: Window) -> dict[str, Any]:
        """The ``metrics`` message: the cluster's figures (this process's alone without a cluster), the instances."""
        seconds = self.sampler.window_seconds
        cluster = self.cluster
        others = cluster.fresh() if cluster is not None else []
        data = figures([local, *(w for _, _, w in others)], seconds)
        data["ts"] = now_iso()
        data["instances"] = rows = instance_rows(self.instance, local, others, seconds)
        data["cluster"] = {
            "redis": "off" if cluster is None else "connected" if cluster.bus.connected else "unreachable",
            "instances": len(rows),
            "hub_dropped": 0 if cluster is None else cluster.bus.dropped,
        }
        return data

    async def close(self, wait_seconds: float = 5.0) -> None:
        """Close every connection (1001) and wait, up to ``wait_seconds``, for their handlers to finish."""
        self._closing = True
        for conn in list(self.connections):
            conn.close(GOING_AWAY)
        try:
            await asyncio.wait_for(self._idle.wait(), wait_seconds)
        except TimeoutError:
            log.warning("live hub: %d connections still open at shutdown", len(self.connections))

"""The live hub across a cluster: what this process publishes on the cluster bus, and what it keeps of the others.

- ``rows``: each committed batch's ``request`` messages, already encoded, one per line. A receiver forwards the
  lines to its dashboards as they are (nothing decoded), and nothing at all when it has none.
- ``event``: an encoded ``event`` message, forwarded the same way.
- ``window``: every metrics interval, this process's ``Window`` (counts and a latency sample over the last window),
  its instance's name and its provider health samples. Each process keeps the latest window of every other process
  and forgets one that has not reported for three intervals; the ``metrics`` message sums them (p95 over the merged
  samples) and breaks them down by instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gophergate.hub.sampler import Window, figures

if TYPE_CHECKING:
    from gophergate.hub.hub import Hub

log = logging.getLogger(__name__)

FRESH_INTERVALS = 3.0  # a process that has not reported for this many intervals is gone


class Bus(Protocol):
    """What the hub needs of the cluster bus (``cluster/bus.py``)."""

    connected: bool
    dropped: int

    def on(self, topic: str, handler: Any) -> None: ...

    def publish(self, topic: str, payload: bytes) -> bool: ...


class Health(Protocol):
    def snapshot(self) -> dict[str, list[Any]]: ...

    def remember(self, sender: str, snapshot: Any) -> None: ...


class ClusterLive:
    def __init__(self, bus: Bus, instance: str, health: Health | None = None) -> None:
        self.bus = bus
        self.instance = instance
        self.health = health
        self.hub: Hub | None = None
        self.interval = 2.0
        # sender -> (received at, instance, window)
        self.peers: dict[str, tuple[float, str, Window]] = {}
        bus.on("rows", self._on_rows)
        bus.on("event", self._on_event)
        bus.on("window", self._on_window)

    def attach(self, hub: Hub) -> None:
        self.hub = hub
        self.interval = hub.metrics_interval

    # -- out ------------------------------------------------------------------------------------------------------
    def publish_rows(self, messages: Sequence[str]) -> None:
        if messages:
            self.bus.publish("rows", "\n".join(messages).encode())

    def publish_event(self, message: str) -> None:
        self.bus.publish("event", message.encode())

    def publish_window(self, window: Window) -> None:
        body: dict[str, Any] = {"instance": self.instance, "window": window.encode()}
        if self.health is not None:
            body["health"] = self.health.snapshot()
        self.bus.publish("window", orjson.dumps(body))

    # -- in -------------------------------------------------------------------------------------------------------
    def _on_rows(self, sender: str, payload: bytes) -> None:
        hub = self.hub
        if hub is not None and hub.connections:
            for line in payload.decode().split("\n"):
                hub.publish(line)

    def _on_event(self, sender: str, payload: bytes) -> None:
        hub = self.hub
        if hub is not None and hub.connections:
            hub.publish(payload.decode())

    def _on_window(self, sender: str, payload: bytes) -> None:
        try:
            body = orjson.loads(payload)
            window = Window.decode(body["window"])
            instance = str(body["instance"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError):
            log.warning("live hub: ignoring a malformed window from %s", sender)
            return
        now = time.monotonic()
        self.peers[sender] = (now, instance, window)
        if self.health is not None and "health" in body:
            self.health.remember(sender, body["health"])
        limit = FRESH_INTERVALS * self.interval
        for gone in [s for s, (at, _, _) in self.peers.items() if now - at > limit]:
            del self.peers[gone]

    # -- the metrics message ------------------------------------------------------------------------------------
    def fresh(self) -> list[tuple[str, float, Window]]:
        """(instance, age in seconds, window) of every other process that reported recently."""
        now = time.monotonic()
        limit = FRESH_INTERVALS * self.interval
        return [(instance, now - at, w) for at, instance, w in self.peers.values() if now - at <= limit]


def instance_rows(
    local_instance: str, local: Window, others: list[tuple[str, float, Window]], window_seconds: float
) -> list[dict[str, Any]]:
    """One entry per instance (its processes' windows merged), sorted by name."""
    groups: dict[str, list[tuple[float, Window]]] = {local_instance: [(0.0, local)]}
    for instance, age, window in others:
        groups.setdefault(instance, []).append((age, window))
    rows = []
    for instance in sorted(groups):
        members = groups[instance]
        windows = [w for _, w in members]
        merged = figures(windows, window_seconds)
        rows.append(
            {
                "instance": instance,
                "processes": len(members),
                "requests_per_s": merged["requests_per_s"],
                "tokens_per_s": merged["tokens_per_s"],
                "cost_per_min_usd": merged["cost_per_min_usd"],
                "error_rate": merged["error_rate"],
                "p95_ms": merged["p95_ms"],
                "queue_depth": merged["queue_depth"],
                "cpu_percent": max(w.cpu_percent for w in windows),
                "memory_percent": max(w.memory_percent for w in windows),
                "age_s": round(min(age for age, _ in members), 3),
            }
        )
    return rows

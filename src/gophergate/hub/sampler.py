"""Live metrics from the request log writer's committed batches: counters in memory, no database queries.

Committed records are counted into buckets of ``bucket_seconds`` (keyed by the monotonic clock at commit);
``sample`` reads the buckets of the last ``window_seconds`` and turns them into the ``metrics`` message data:
rates per second (requests, tokens), cost per minute (exact decimal text; null when every request of the window had
no known price) with the count of those unpriced requests, error rate and p95 latency over that window, plus host
CPU and memory (psutil) and the log queue depth at the moment of sampling.

Latencies are kept per bucket up to ``max_latencies`` by reservoir sampling, so a burst of traffic costs a
bounded amount of memory and sorting.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psutil

from gophergate.core.record import RequestRecord
from gophergate.hub.events import now_iso, usd


@dataclass(slots=True)
class _Bucket:
    key: int
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unpriced: int = 0  # requests with tokens but no known price (not in cost)
    latencies: list[float] = field(default_factory=list)
    seen_latencies: int = 0


def is_error(record: RequestRecord) -> bool:
    return record.status >= 400 or record.error_type is not None


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def host_load() -> tuple[float, float]:
    """Host CPU percent since the previous call (non-blocking) and host memory percent."""
    return float(psutil.cpu_percent(interval=None)), float(psutil.virtual_memory().percent)


class Sampler:
    def __init__(
        self,
        queue_depth: Callable[[], int],
        *,
        window_seconds: float = 10.0,
        bucket_seconds: float = 2.0,
        max_latencies: int = 2048,
        clock: Callable[[], float] = time.monotonic,
        load: Callable[[], tuple[float, float]] = host_load,
    ) -> None:
        self._queue_depth = queue_depth
        self.window_seconds = window_seconds
        self._bucket_seconds = bucket_seconds
        self._max_latencies = max_latencies
        self._clock = clock
        self._load = load
        self._buckets: deque[_Bucket] = deque()
        self._random = random.Random()

    def _keep(self) -> int:
        return math.ceil(self.window_seconds / self._bucket_seconds)

    def _current(self) -> _Bucket:
        key = int(self._clock() // self._bucket_seconds)
        buckets = self._buckets
        if not buckets or buckets[-1].key != key:
            buckets.append(_Bucket(key))
            while buckets[0].key <= key - self._keep():
                buckets.popleft()
        return buckets[-1]

    def observe(self, records: Iterable[RequestRecord]) -> None:
        """Count a committed batch (called by the writer's ``on_committed``; O(batch), no I/O)."""
        bucket = self._current()
        for record in records:
            bucket.tokens += record.prompt_tokens + record.completion_tokens
            if record.cost_usd is not None:
                bucket.cost += record.cost_usd
            if record.price_unknown:
                bucket.unpriced += 1
            # A request routing retried has a record per attempt: it counts once, by its final one (as the rollups).
            if not record.final:
                continue
            bucket.requests += 1
            if is_error(record):
                bucket.errors += 1
            bucket.seen_latencies += 1
            if len(bucket.latencies) < self._max_latencies:
                bucket.latencies.append(record.latency_ms)
            else:
                slot = self._random.randrange(bucket.seen_latencies)
                if slot < self._max_latencies:
                    bucket.latencies[slot] = record.latency_ms

    def window(self) -> Window:
        """This process's figures over the last window (host load read once per call)."""
        oldest = int(self._clock() // self._bucket_seconds) - self._keep() + 1
        recent = [b for b in self._buckets if b.key >= oldest]
        cpu, memory = self._load()
        return Window(
            requests=sum(b.requests for b in recent),
            errors=sum(b.errors for b in recent),
            tokens=sum(b.tokens for b in recent),
            cost=sum((b.cost for b in recent), Decimal(0)),
            unpriced=sum(b.unpriced for b in recent),
            latencies=[(b.seen_latencies / len(b.latencies), b.latencies) for b in recent if b.latencies],
            queue_depth=self._queue_depth(),
            cpu_percent=cpu,
            memory_percent=memory,
        )

    def sample(self) -> dict[str, Any]:
        """The ``metrics`` message data for the last window, this process's alone."""
        return {**figures([self.window()], self.window_seconds), "ts": now_iso()}


@dataclass(slots=True)
class Window:
    """One process's figures over the window, mergeable with other processes' (``figures``). Latencies are
    reservoir samples, each group with the weight of one of its values (requests seen / values kept)."""

    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unpriced: int = 0
    latencies: list[tuple[float, list[float]]] = field(default_factory=list)
    queue_depth: int = 0
    cpu_percent: float = 0.0
    memory_percent: float = 0.0

    def encode(self, max_values: int = 1024) -> dict[str, Any]:
        """A JSON-ready form for the cluster: at most ``max_values`` latencies, the weights adjusted to match."""
        kept = sum(len(values) for _, values in self.latencies)
        groups = []
        for weight, values in self.latencies:
            if kept > max_values:
                share = max(1, len(values) * max_values // kept)
                if share < len(values):
                    weight = weight * len(values) / share
                    values = random.sample(values, share)
            groups.append([round(weight, 6), [round(v, 3) for v in values]])
        return {
            "requests": self.requests,
            "errors": self.errors,
            "tokens": self.tokens,
            "cost": format(self.cost, "f"),
            "unpriced": self.unpriced,
            "latencies": groups,
            "queue_depth": self.queue_depth,
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Window:
        return cls(
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            tokens=int(data["tokens"]),
            cost=Decimal(str(data["cost"])),
            unpriced=int(data["unpriced"]),
            latencies=[(float(weight), [float(v) for v in values]) for weight, values in data["latencies"]],
            queue_depth=int(data["queue_depth"]),
            cpu_percent=float(data["cpu_percent"]),
            memory_percent=float(data["memory_percent"]),
        )


def weighted_p95(groups: Iterable[tuple[float, list[float]]]) -> float | None:
    """Nearest-rank 95th percentile of weighted samples: the smallest value whose cumulative weight reaches 95%
    of the total (with equal weights, ``p95``)."""
    pairs = sorted((value, weight) for weight, values in groups for value in values)
    if not pairs:
        return None
    total = sum(weight for _, weight in pairs)
    goal = 0.95 * total * (1 - 1e-9)
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= goal:
            return value
    return pairs[-1][0]


def figures(windows: list[Window], window_seconds: float) -> dict[str, Any]:
    """The ``metrics`` figures of one or more processes' windows: sums, and p95 over their merged samples. Host
    load is the first window's (this process's host)."""
    requests = sum(w.requests for w in windows)
    errors = sum(w.errors for w in windows)
    tokens = sum(w.tokens for w in windows)
    cost = sum((w.cost for w in windows), Decimal(0))
    unpriced = sum(w.unpriced for w in windows)
    worst = weighted_p95(group for w in windows for group in w.latencies)
    window = Decimal(str(window_seconds))
    first = windows[0] if windows else Window()
    return {
        "requests_per_s": round(requests / window_seconds, 3),
        "tokens_per_s": round(tokens / window_seconds, 3),
        "cost_per_min_usd": None
        if unpriced and unpriced >= requests and not cost
        else usd((cost * 60 / window).normalize() if cost else Decimal(0)),
        "unpriced_requests": unpriced,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "p95_ms": None if worst is None else round(worst, 3),
        "cpu_percent": first.cpu_percent,
        "memory_percent": first.memory_percent,
        "queue_depth": sum(w.queue_depth for w in windows),
    }

"""The live hub's cluster figures: windows that travel between processes, merged p95, the instance breakdown."""

from __future__ import annotations

import random
from decimal import Decimal

import orjson

from gophergate.gateway.health import ProviderHealth
from gophergate.hub.cluster import ClusterLive, instance_rows
from gophergate.hub.sampler import Window, figures, p95, weighted_p95


class Bus:
    connected = True
    dropped = 0

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}
        self.sent: list[tuple[str, bytes]] = []

    def on(self, topic: str, handler: object) -> None:
        self.handlers[topic] = handler

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, payload))
        return True


def test_weighted_p95_with_equal_weights_is_the_nearest_rank_p95() -> None:
    values = [float(v) for v in random.Random(7).sample(range(1, 1000), 200)]
    assert weighted_p95([(1.0, values)]) == p95(values)
    assert weighted_p95([]) is None


def test_merged_p95_weighs_a_sampled_reservoir_by_the_requests_it_stands_for() -> None:
    # Process A kept 100 of the 10,000 fast requests it saw (weight 100); B saw 100 slow ones and kept them all.
    fast = (100.0, [10.0] * 100)
    slow = (1.0, [500.0] * 100)
    # Unweighted, half the samples are slow and p95 would be 500; weighted, 99% of requests are fast.
    assert weighted_p95([fast, slow]) == 10.0
    assert p95(fast[1] + slow[1]) == 500.0


def test_a_window_survives_the_trip_between_processes_with_its_weights() -> None:
    window = Window(
        requests=5000,
        errors=12,
        tokens=90_000,
        cost=Decimal("0.000123456789"),
        unpriced=3,
        latencies=[(2.5, [float(i) for i in range(2000)]), (1.0, [7.0, 8.0])],
        queue_depth=4,
        cpu_percent=12.5,
        memory_percent=40.0,
    )
    back = Window.decode(orjson.loads(orjson.dumps(window.encode(max_values=500))))
    assert (back.requests, back.errors, back.tokens, back.cost, back.unpriced) == (5000, 12, 90_000, window.cost, 3)
    kept = sum(len(values) for _, values in back.latencies)
    assert kept <= 500
    # The total weight (the requests the samples stand for) is kept while the values are thinned.
    total = sum(weight * len(values) for weight, values in back.latencies)
    assert abs(total - (2.5 * 2000 + 2)) < 1.0


def test_the_cluster_figures_sum_the_processes_and_the_breakdown_groups_them_by_instance() -> None:
    a1 = Window(requests=20, errors=2, tokens=100, cost=Decimal("0.2"), latencies=[(1.0, [10.0] * 20)], queue_depth=1)
    a2 = Window(requests=10, tokens=50, cost=Decimal("0.1"), latencies=[(1.0, [30.0] * 10)], queue_depth=2)
    b = Window(requests=10, tokens=10, latencies=[(1.0, [90.0] * 10)], cpu_percent=80.0)
    merged = figures([a1, a2, b], 10.0)
    assert merged["requests_per_s"] == 4.0 and merged["tokens_per_s"] == 16.0
    assert merged["error_rate"] == 0.05 and merged["queue_depth"] == 3
    assert merged["cost_per_min_usd"] == "1.8"  # 0.3 USD in 10 s
    assert merged["p95_ms"] == 90.0
    rows = instance_rows("gw-a", a1, [("gw-b", 1.5, b), ("gw-a", 0.4, a2)], 10.0)
    assert [(r["instance"], r["processes"], r["requests_per_s"], r["age_s"]) for r in rows] == [
        ("gw-a", 2, 3.0, 0.0),
        ("gw-b", 1, 1.0, 1.5),
    ]
    assert rows[0]["p95_ms"] == 30.0 and rows[1]["cpu_percent"] == 80.0


def test_a_peer_window_is_kept_until_it_goes_quiet_and_its_health_is_merged() -> None:
    bus = Bus()
    health = ProviderHealth()
    live = ClusterLive(bus, "gw-a", health)  # type: ignore[arg-type]
    body = {
        "instance": "gw-b",
        "window": Window(requests=4, latencies=[(1.0, [1.0, 2.0, 3.0, 4.0])]).encode(),
        "health": {"openai": [1, [100.0, 200.0, 300.0, 400.0]]},
    }
    bus.handlers["window"]("gw-b/1/x", orjson.dumps(body))  # type: ignore[operator]
    assert [(name, w.requests) for name, _, w in live.fresh()] == [("gw-b", 4)]
    stats = health.stats("openai")
    assert stats["requests"] == 4 and stats["error_rate"] == 0.25 and stats["p50_ms"] == 200.0
    bus.handlers["window"]("gw-c/1/y", b"{not json")  # type: ignore[operator]
    assert len(live.fresh()) == 1
    live.interval = 0.0  # every report is now stale
    assert live.fresh() == []


def test_rows_from_another_process_are_forwarded_as_they_are_and_only_to_connected_dashboards() -> None:
    bus = Bus()
    live = ClusterLive(bus, "gw-a")  # type: ignore[arg-type]

    class HubLike:
        metrics_interval = 2.0
        connections: set[object] = set()

        def __init__(self) -> None:
            self.published: list[str] = []

        def publish(self, message: str) -> None:
            self.published.append(message)

    hub = HubLike()
    live.attach(hub)  # type: ignore[arg-type]
    lines = ['{"type":"request","data":{"request_id":"r1"}}', '{"type":"request","data":{"request_id":"r2"}}']
    bus.handlers["rows"]("gw-b/1/x", "\n".join(lines).encode())  # type: ignore[operator]
    assert hub.published == []  # nobody watching here: nothing decoded, nothing queued
    hub.connections = {object()}
    bus.handlers["rows"]("gw-b/1/x", "\n".join(lines).encode())  # type: ignore[operator]
    assert hub.published == lines

"""What a benchmark run measured, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.client import TtfcResult
from bench.paced import PacedResult
from bench.rss import MB, RssSample
from bench.wrk import WrkResult

if TYPE_CHECKING:
    from bench.front_door import FrontDoorRun
    from bench.limits import LimitsRun
    from bench.routing import RoutingRun

NON_STREAM = "non-stream"
STREAM = "stream"


@dataclass
class Measured:
    """One wrk run, or why it has no result."""

    result: WrkResult | None = None
    error: str | None = None
    server_cpu_percent: float | None = None
    """CPU used by the server under test (its whole process tree) during the run; 100 = one core."""
    foreign_cpu_percent: float | None = None
    """CPU that other processes took on the gateway's pinned core during a gateway run."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result.to_dict() if self.result else None,
            "error": self.error,
            "server_cpu_percent": self.server_cpu_percent,
            "foreign_cpu_percent": self.foreign_cpu_percent,
        }


def ratio(part: float | None, whole: float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None when either is unknown or ``whole`` is zero."""
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole * 100


def _rps_of(measured: Measured | None) -> float | None:
    if measured is None or measured.result is None:
        return None
    return measured.result.requests_per_s


def _latency_of(measured: Measured | None, attr: str) -> float | None:
    if measured is None or measured.result is None or measured.result.requests == 0:
        return None
    value: float = getattr(measured.result, attr)
    return value


@dataclass
class Scenario:
    """One load shape measured through the gateway, through the minimal relay (when run) and directly
    against the fake upstream."""

    mode: str
    connections: int
    gateway: Measured = field(default_factory=Measured)
    direct: Measured = field(default_factory=Measured)
    relay: Measured | None = None

    @property
    def label(self) -> str:
        kind = "non-stream" if self.mode == NON_STREAM else "stream"
        clients = "1 client" if self.connections == 1 else f"{self.connections} clients"
        return f"{kind}, {clients}"

    def added(self, attr: str, over: str = "direct") -> float | None:
        """The gateway's latency ``attr`` minus that of ``over`` (``direct`` or ``relay``)."""
        gw = _latency_of(self.gateway, attr)
        base = _latency_of(self.direct if over == "direct" else self.relay, attr)
        return None if gw is None or base is None else gw - base

    def relay_added(self, attr: str) -> float | None:
        """The relay's latency ``attr`` minus direct: what the machine's topology costs by itself."""
        relay, direct = _latency_of(self.relay, attr), _latency_of(self.direct, attr)
        return None if relay is None or direct is None else relay - direct

    def throughput_ratio(self, over: str = "direct") -> float | None:
        """The gateway's req/s as a percentage of ``over``'s (``direct`` or ``relay``)."""
        return ratio(_rps_of(self.gateway), _rps_of(self.direct if over == "direct" else self.relay))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "connections": self.connections,
            "gateway": self.gateway.to_dict(),
            "relay": self.relay.to_dict() if self.relay else None,
            "direct": self.direct.to_dict(),
            "gateway_rps_pct_of_direct": self.throughput_ratio("direct"),
            "gateway_rps_pct_of_relay": self.throughput_ratio("relay"),
            "added_p50_ms": self.added("p50_ms"),
            "added_p99_ms": self.added("p99_ms"),
            "added_over_relay_p50_ms": self.added("p50_ms", "relay"),
            "added_over_relay_p99_ms": self.added("p99_ms", "relay"),
            "relay_added_p50_ms": self.relay_added("p50_ms"),
        }


@dataclass
class PacedMeasured:
    """One paced run (``python -m bench.paced``) against one server, or why it has no result."""

    result: PacedResult | None = None
    error: str | None = None
    server_cpu_percent: float | None = None
    rss_peak_mb: float | None = None
    """Peak RSS of the server's process tree while the streams ran (sampled every 0.25 s)."""
    rss_after_mb: float | None = None
    """RSS 2 s after the load client exited, cutting the streams still open at the window's end."""

    def streams_per_s(self) -> float | None:
        return None if self.result is None else self.result.streams_per_s

    def p50_ms(self) -> float | None:
        return None if self.result is None or not self.result.completed else self.result.p50_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result.to_dict() if self.result else None,
            "error": self.error,
            "server_cpu_percent": self.server_cpu_percent,
            "rss_peak_mb": self.rss_peak_mb,
            "rss_after_mb": self.rss_after_mb,
        }


@dataclass
class PacedScenario:
    """N concurrent paced streams through the gateway, the minimal relay and directly."""

    streams: int
    sides: dict[str, PacedMeasured] = field(default_factory=dict)
    """By side name: ``gateway``, ``relay``, ``direct`` (``bench.peers`` uses its own names)."""

    def ratio(self, side: str, over: str) -> float | None:
        """``side``'s streams/s as a percentage of ``over``'s."""
        a, b = self.sides.get(side), self.sides.get(over)
        return ratio(a.streams_per_s() if a else None, b.streams_per_s() if b else None)

    def added_p50(self, side: str, over: str) -> float | None:
        a, b = self.sides.get(side), self.sides.get(over)
        pa, pb = (a.p50_ms() if a else None), (b.p50_ms() if b else None)
        return None if pa is None or pb is None else pa - pb

    def to_dict(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "sides": {name: side.to_dict() for name, side in self.sides.items()},
        }


@dataclass
class Ttfc:
    gateway: TtfcResult | None = None
    direct: TtfcResult | None = None

    def added(self, attr: str) -> float | None:
        if self.gateway is None or self.direct is None or not self.gateway.requests or not self.direct.requests:
            return None
        value: float = getattr(self.gateway, attr) - getattr(self.direct, attr)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway.to_dict() if self.gateway else None,
            "direct": self.direct.to_dict() if self.direct else None,
            "added_p50_ms": self.added("p50_ms"),
            "added_p99_ms": self.added("p99_ms"),
        }


@dataclass
class Memory:
    """RSS of the gateway's process tree (main process + workers)."""

    at_start: RssSample | None = None
    peak: RssSample | None = None
    after_soak: RssSample | None = None
    requests_before_after_soak: int = 0
    samples: list[RssSample] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def mb(sample: RssSample | None) -> dict[str, Any] | None:
            if sample is None:
                return None
            return {
                "total_mb": round(sample.total_bytes / MB, 1),
                "largest_process_mb": round(sample.largest_bytes / MB, 1),
                "pss_total_mb": None if sample.pss_bytes is None else round(sample.pss_bytes / MB, 1),
                "processes": sample.processes,
                "per_process_mb": {str(pid): round(rss / MB, 1) for pid, rss in sample.per_process.items()},
                "elapsed_s": sample.elapsed_s,
            }

        return {
            "at_start": mb(self.at_start),
            "peak": mb(self.peak),
            "after_soak": mb(self.after_soak),
            "requests_before_after_soak": self.requests_before_after_soak,
            "note": self.note,
            "samples": [[s.elapsed_s, round(s.total_bytes / MB, 2)] for s in self.samples],
        }


@dataclass
class BenchResults:
    config: dict[str, Any]
    scenarios: list[Scenario] = field(default_factory=list)
    ttfc: Ttfc = field(default_factory=Ttfc)
    paced: list[PacedScenario] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    soak: list[dict[str, Any]] = field(default_factory=list)
    gateway_requests: int = 0
    checks: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    limits: LimitsRun | None = None
    """The limits scenario (bench/limits.py); None when it was not run."""
    routing: RoutingRun | None = None
    """The routing scenario (bench/routing.py); None when it was not run."""
    front_door: FrontDoorRun | None = None
    """The front-door scenario (bench/front_door.py); None when it was not run."""

    def scenario(self, mode: str, connections: int) -> Scenario | None:
        for found in self.scenarios:
            if found.mode == mode and found.connections == connections:
                return found
        return None

    def paced_scenario(self, streams: int) -> PacedScenario | None:
        for found in self.paced:
            if found.streams == streams:
                return found
        return None

    def to_dict(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "config": self.config,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "ttfc": self.ttfc.to_dict(),
            "paced": [p.to_dict() for p in self.paced],
            "memory": self.memory.to_dict(),
            "soak": self.soak,
            "gateway_requests": self.gateway_requests,
            "checks": self.checks,
            "problems": self.problems,
            "limits": self.limits.to_dict() if self.limits else None,
            "routing": self.routing.to_dict() if self.routing else None,
            "front_door": self.front_door.to_dict() if self.front_door else None,
            "targets": targets,
        }

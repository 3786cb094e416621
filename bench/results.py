"""What a benchmark run measured, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.client import TtfcResult
from bench.rss import MB, RssSample
from bench.wrk import WrkResult

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


@dataclass
class Scenario:
    """One load shape measured through the gateway and directly against the fake upstream."""

    mode: str
    connections: int
    gateway: Measured = field(default_factory=Measured)
    direct: Measured = field(default_factory=Measured)

    @property
    def label(self) -> str:
        kind = "non-stream" if self.mode == NON_STREAM else "stream"
        clients = "1 client" if self.connections == 1 else f"{self.connections} clients"
        return f"{kind}, {clients}"

    def added(self, attr: str) -> float | None:
        gw, direct = self.gateway.result, self.direct.result
        if gw is None or direct is None or gw.requests == 0 or direct.requests == 0:
            return None
        value: float = getattr(gw, attr) - getattr(direct, attr)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "connections": self.connections,
            "gateway": self.gateway.to_dict(),
            "direct": self.direct.to_dict(),
            "added_p50_ms": self.added("p50_ms"),
            "added_p99_ms": self.added("p99_ms"),
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
    # The machine floor (bench/floor_relay.py): each scenario's "gateway" side is the minimal relay.
    floor: list[Scenario] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    soak: list[dict[str, Any]] = field(default_factory=list)
    gateway_requests: int = 0
    checks: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def scenario(self, mode: str, connections: int, *, floor: bool = False) -> Scenario | None:
        """A measured scenario of the gateway, or with ``floor`` of the minimal relay."""
        for found in self.floor if floor else self.scenarios:
            if found.mode == mode and found.connections == connections:
                return found
        return None

    def to_dict(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "config": self.config,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "ttfc": self.ttfc.to_dict(),
            "floor": [s.to_dict() for s in self.floor],
            "memory": self.memory.to_dict(),
            "soak": self.soak,
            "gateway_requests": self.gateway_requests,
            "checks": self.checks,
            "problems": self.problems,
            "targets": targets,
        }

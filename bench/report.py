"""Targets and the printed report. Targets are shown as met / not met; nothing here fails a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.results import NON_STREAM, STREAM, BenchResults, Measured, Scenario
from bench.rss import MB, RssSample

TARGET_CONNECTIONS = 64
SOAK_TARGET_REQUESTS = 100_000


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    unit: str
    at_least: bool
    """True for ``value >= limit`` (throughput), False for ``value <= limit`` (latency, memory)."""
    note: str = ""
    applicable: bool = True
    """False when the run did not reach the target's conditions (e.g. fewer than 100k requests)."""

    @property
    def met(self) -> bool | None:
        if self.value is None or not self.applicable:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "comparison": ">=" if self.at_least else "<=",
            "met": self.met,
            "note": self.note,
        }


def _rps(scenario: Scenario | None) -> float | None:
    if scenario is None or scenario.gateway.result is None:
        return None
    return scenario.gateway.result.requests_per_s


def evaluate_targets(results: BenchResults, connections: int) -> list[Target]:
    """The issue's targets for this 2-core machine, against what this run measured."""
    note = "" if connections == TARGET_CONNECTIONS else f"target is for 64 clients, ran {connections}"
    targets = [
        Target(
            f"non-stream req/s, {connections} clients",
            _rps(results.scenario(NON_STREAM, connections)),
            5000,
            "req/s",
            True,
            note,
        ),
        Target(
            f"streams/s (20 chunks), {connections} clients",
            _rps(results.scenario(STREAM, connections)),
            2500,
            "req/s",
            True,
            note,
        ),
    ]
    # The latency targets are for a plain request; a stream's own target is its time to first chunk
    # (the whole-stream figures are printed in the table above).
    one = results.scenario(NON_STREAM, 1)
    targets.append(Target(f"{NON_STREAM} added p50, 1 client", one.added("p50_ms") if one else None, 0.3, "ms", False))
    targets.append(Target(f"{NON_STREAM} added p99, 1 client", one.added("p99_ms") if one else None, 1.0, "ms", False))
    targets.append(Target("added time to first chunk, p50", results.ttfc.added("p50_ms"), 0.5, "ms", False))
    after = results.memory.after_soak
    requests = results.memory.requests_before_after_soak
    rss_note = "" if requests >= SOAK_TARGET_REQUESTS else f"only {requests:,} requests were sent"
    targets.append(
        Target(
            "gateway RSS after 100k requests",
            after.total_bytes / MB if after else None,
            150,
            "MB",
            False,
            rss_note if after else (results.memory.note or "not measured"),
            applicable=requests >= SOAK_TARGET_REQUESTS,
        )
    )
    return targets


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _get(obj: object | None, attr: str) -> float | None:
    if obj is None:
        return None
    value: float = getattr(obj, attr)
    return value


def _fmt_rps(measured: Measured) -> str:
    if measured.result is None:
        return "error" if measured.error else "-"
    return f"{measured.result.requests_per_s:,.0f}"


def _pct(measured: Measured) -> str:
    """The server's CPU use; ``*`` when other processes also took more than 10% of the gateway's core."""
    if measured.server_cpu_percent is None:
        return "-"
    busy = measured.foreign_cpu_percent is not None and measured.foreign_cpu_percent > 10
    return f"{measured.server_cpu_percent:.0f}%{'*' if busy else ''}"


def _mb(sample: RssSample | None) -> str:
    if sample is None:
        return "-"
    pss = "" if sample.pss_bytes is None else f" [{sample.pss_bytes / MB:.1f}]"
    return f"{sample.total_bytes / MB:.1f} MB{pss}"


def _over(gateway: Scenario, floor: Scenario, attr: str) -> float | None:
    """The gateway's added latency minus the relay's: the part the machine's topology does not explain."""
    gw, relay = gateway.added(attr), floor.added(attr)
    return None if gw is None or relay is None else gw - relay


def render(results: BenchResults, targets: list[Target]) -> str:
    cfg = results.config
    out: list[str] = []
    out.append("GopherGate benchmark")
    out.append(f"  gateway : {cfg['gateway']}")
    out.append(f"  direct  : {cfg['direct']}")
    out.append(f"  load    : wrk -t{cfg['wrk_threads']}, {cfg['duration_s']:g} s per run")
    out.append(f"  CPUs    : {cfg['cpus']}")
    out.append("")
    header = (
        f"{'scenario':<22} | {'gateway req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>5} | "
        f"{'direct req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>5} | {'added p50':>9} {'p99 ms':>7}"
    )
    out.append(header)
    out.append("-" * len(header))
    for sc in results.scenarios:
        gw, direct = sc.gateway.result, sc.direct.result
        gw = gw if gw is not None and gw.requests else None
        direct = direct if direct is not None and direct.requests else None
        out.append(
            f"{sc.label:<22} | {_fmt_rps(sc.gateway):>13} {_fmt(_get(gw, 'p50_ms')):>7} "
            f"{_fmt(_get(gw, 'p99_ms')):>7} {_pct(sc.gateway):>5} | {_fmt_rps(sc.direct):>12} "
            f"{_fmt(_get(direct, 'p50_ms')):>7} {_fmt(_get(direct, 'p99_ms')):>7} {_pct(sc.direct):>5} | "
            f"{_fmt(sc.added('p50_ms'), signed=True):>9} {_fmt(sc.added('p99_ms'), signed=True):>7}"
        )
    out.append("  (CPU: the server's CPU use during the run, 100% = one core; * = other processes were busy there)")
    out.append("")
    ttfc = results.ttfc
    out.append(f"time to first chunk, 1 client, {cfg['ttfc_requests']:,} sequential streams (ms):")
    for name, result in (("gateway", ttfc.gateway), ("direct", ttfc.direct)):
        measured = result if result is not None and result.requests else None
        out.append(
            f"  {name:<8} p50 {_fmt(_get(measured, 'p50_ms'), 3):>7}  p99 {_fmt(_get(measured, 'p99_ms'), 3):>7}"
            f"   (whole stream p50 {_fmt(_get(measured, 'total_p50_ms'), 3)})"
        )
    added_p50, added_p99 = _fmt(ttfc.added("p50_ms"), 3, True), _fmt(ttfc.added("p99_ms"), 3, True)
    out.append(f"  {'added':<8} p50 {added_p50:>7}  p99 {added_p99:>7}")
    if results.floor:
        out.append("")
        out.append(
            "machine floor: a minimal Python relay (bench/floor_relay.py) pinned where the gateway runs, same load:"
        )
        for sc in results.floor:
            out.append(
                f"  {sc.label:<22} relay {_fmt_rps(sc.gateway):>7} req/s {_pct(sc.gateway):>5}, "
                f"direct {_fmt_rps(sc.direct):>7} req/s | relay added p50 {_fmt(sc.added('p50_ms'), 3, True)} "
                f"p99 {_fmt(sc.added('p99_ms'), 3, True)} ms"
            )
        gw_one, floor_one = results.scenario(NON_STREAM, 1), results.scenario(NON_STREAM, 1, floor=True)
        if gw_one is not None and floor_one is not None:
            over = [_over(gw_one, floor_one, attr) for attr in ("p50_ms", "p99_ms")]
            out.append(
                f"  the gateway over the relay, non-stream 1 client: p50 {_fmt(over[0], 3, True)} "
                f"p99 {_fmt(over[1], 3, True)} ms (what the gateway's own work adds)"
            )
    mem = results.memory
    out.append("")
    out.append("gateway memory (main process + workers; RSS summed over the tree, PSS in brackets):")
    if mem.note and mem.peak is None:
        out.append(f"  {mem.note}")
    else:
        out.append(
            f"  at start {_mb(mem.at_start)}, peak {_mb(mem.peak)}, "
            f"after {mem.requests_before_after_soak:,} requests {_mb(mem.after_soak)}"
        )
        if mem.after_soak is not None:
            per = ", ".join(f"pid {pid} {rss / MB:.1f} MB" for pid, rss in mem.after_soak.per_process.items())
            out.append(f"  per process at the end: {per}")
    out.append(f"  requests sent through the gateway in total: {results.gateway_requests:,}")
    rounds = [
        f"{r['mode']} {r['result']['requests_per_s']:,.0f}/s" for r in results.soak if r.get("result") is not None
    ]
    if rounds:
        out.append(f"  soak rounds ({results.config['connections']} clients): {', '.join(rounds)}")
    out.append("")
    out.append("targets (informational, never fail the run):")
    for t in targets:
        mark = {True: "met", False: "NOT MET", None: "n/a"}[t.met]
        limit = f"{'>=' if t.at_least else '<='} {t.limit:,g} {t.unit}"
        if t.value is None:
            value = "-"
        elif t.unit == "req/s":
            value = f"{t.value:,.0f}"
        elif t.unit == "MB":
            value = f"{t.value:.1f}"
        else:
            value = f"{t.value:.3f}"
        note = f"  ({t.note})" if t.note else ""
        out.append(f"  [{mark:^7}] {t.name:<38} {limit:<14} got {value}{note}")
    if results.problems:
        out.append("")
        out.append("problems seen:")
        out.extend(f"  - {p}" for p in results.problems)
    return "\n".join(out)

"""Targets and the printed report. Targets are shown as met / not met; nothing here fails a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.front_door import CHAT, FrontDoorRun
from bench.limits import IN_PROCESS, LIMITED, REDIS, TARGET_PCT, KeyRuns, LimitsRun
from bench.results import NON_STREAM, STREAM, BenchResults, Measured, PacedMeasured, PacedScenario, Scenario
from bench.routing import GROUPED, PLAIN, RoutingRun
from bench.rss import MB, RssSample

TARGET_CONNECTIONS = 64
SOAK_TARGET_REQUESTS = 100_000
PACED_TARGET_STREAMS = 1000
PACED_MIN_PCT_OF_RELAY = 95.0
PACED_MAX_ADDED_P50_MS = 50.0
PACED_MAX_RSS_MB = 200.0


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
    targets.extend(paced_targets(results.paced_scenario(PACED_TARGET_STREAMS)))
    if results.limits is not None:
        targets.extend(limits_targets(results.limits))
    return targets


def limits_targets(run: LimitsRun) -> list[Target]:
    """The limited key's req/s as a share of the unlimited key's: >= 90% in process, >= 80% with Redis."""
    targets = []
    for name in (IN_PROCESS, REDIS):
        backend = run.backend(name)
        note = "not run" if backend is None else (backend.skipped or "")
        if backend is not None and backend.invalid:
            note = "invalid: " + "; ".join(backend.invalid)
        for mode in (NON_STREAM, STREAM):
            found = backend.comparison(mode) if backend is not None else None
            targets.append(
                Target(
                    f"limits {name}: {mode} req/s, % of unlimited",
                    found.ratio_pct if found is not None else None,
                    TARGET_PCT[name],
                    "%",
                    True,
                    note,
                    applicable=backend is not None and not backend.invalid,
                )
            )
    return targets


def paced_targets(scenario: PacedScenario | None) -> list[Target]:
    """One worker at 1,000 paced streams: >= 95% of the relay's streams/s, p50 <= relay's + 50 ms, < 200 MB."""
    n = PACED_TARGET_STREAMS
    missing = "not run" if scenario is None else ""
    gateway = scenario.sides.get("gateway") if scenario else None
    return [
        Target(
            f"paced {n:,}: streams/s, % of relay",
            scenario.ratio("gateway", "relay") if scenario else None,
            PACED_MIN_PCT_OF_RELAY,
            "%",
            True,
            missing,
        ),
        Target(
            f"paced {n:,}: p50 over relay",
            scenario.added_p50("gateway", "relay") if scenario else None,
            PACED_MAX_ADDED_P50_MS,
            "ms",
            False,
            missing,
        ),
        Target(
            f"paced {n:,}: gateway peak RSS, streaming",
            gateway.rss_peak_mb if gateway else None,
            PACED_MAX_RSS_MB,
            "MB",
            False,
            missing,
        ),
    ]


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


def _pct_of(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _cell_rps(measured: Measured | None) -> str:
    if measured is None:
        return "-"
    return f"{_fmt_rps(measured)} ({_pct(measured)})"


def _cell_latency(measured: Measured | None) -> str:
    if measured is None or measured.result is None or not measured.result.requests:
        return "-"
    return f"{measured.result.p50_ms:.2f} / {measured.result.p99_ms:.2f}"


def _cell_added(p50: float | None, p99: float | None) -> str:
    if p50 is None or p99 is None:
        return "-"
    return f"{p50:+.3f} / {p99:+.3f}"


def header_lines(cfg: dict[str, Any], title: str) -> list[str]:
    out = [title]
    out.append(f"  date    : {cfg.get('date', cfg.get('started', '?'))}")
    out.append(f"  machine : {cfg.get('machine', '?')}")
    if cfg.get("command"):
        out.append(f"  command : {cfg['command']}")
    out.append(f"  CPUs    : {cfg['cpus']}")
    return out


def render_paced(
    scenarios: list[PacedScenario], base: str, base_label: str, others: list[str], as_times: bool = False
) -> list[str]:
    """The paced table: one row per side, then the ratios of ``base`` over each of ``others`` (as a percentage,
    or with ``as_times`` as a multiple)."""
    out: list[str] = []
    header = (
        f"{'streams':>7} {'side':<10} | {'streams/s':>9} {'p50 s':>6} {'p99 s':>6} {'1st chunk p50 ms':>16} | "
        f"{'errors':>7} {'CPU':>5} {'RSS MB peak':>11} {'after':>5}"
    )
    out.append(header)
    out.append("-" * len(header))
    for sc in scenarios:
        for name, side in sc.sides.items():
            out.append(f"{sc.streams:>7,} {name:<10} | {_paced_cells(side)}")
        for other in others:
            if other in sc.sides and base in sc.sides:
                pct = sc.ratio(base, other)
                added = sc.added_p50(base, other)
                share = _pct_of(pct) if not as_times else ("-" if pct is None else f"{pct / 100:.1f}x")
                out.append(
                    f"{'':>7} {base_label} vs {other}: streams/s {share}, "
                    f"p50 {'-' if added is None else f'{added:+,.0f} ms'}"
                )
    return out


def _paced_cells(side: PacedMeasured) -> str:
    result = side.result
    cpu = "-" if side.server_cpu_percent is None else f"{side.server_cpu_percent:.0f}%"
    rss = "-" if side.rss_peak_mb is None else f"{side.rss_peak_mb:.0f}"
    rss += " " + ("    -" if side.rss_after_mb is None else f"{side.rss_after_mb:>5.0f}")
    if result is None:
        return f"{'error':>9} {'-':>6} {'-':>6} {'-':>16} | {'-':>7} {cpu:>5} {rss:>17}  ({side.error})"
    if not result.completed:
        stats = f"{0:>9} {'-':>6} {'-':>6} {'-':>16}"
    else:
        stats = (
            f"{result.streams_per_s:>9,.0f} {result.p50_ms / 1000:>6.2f} {result.p99_ms / 1000:>6.2f} "
            f"{result.first_chunk_p50_ms:>16.1f}"
        )
    return f"{stats} | {result.error_count:>7,} {cpu:>5} {rss:>17}"


def _key_cells(runs: KeyRuns, width: int = 7) -> str:
    rps = "-" if runs.requests_per_s is None else f"{runs.requests_per_s:,.0f}"
    latency = "-" if runs.p50_ms is None or runs.p99_ms is None else f"{runs.p50_ms:.2f} / {runs.p99_ms:.2f}"
    return f"{rps:>{width}} {latency:>15}"


def render_limits(run: LimitsRun) -> list[str]:
    """The limits section: per store and mode, each key's req/s and p50 / p99, the ratio, each run's req/s."""
    cfg = run.config
    key = cfg.get("key", {})
    out = [
        f"limits: a key with rpm {key.get('rpm', 0):,}, tpm {key.get('tpm', 0):,} and a budget of "
        f"${key.get('budget_usd', 0):,}/{key.get('budget_period', '?')} (never reached: every request is counted, "
        f"none refused) against a key without limits, {cfg.get('connections')} clients, {cfg.get('rounds')} runs "
        f"of {cfg.get('duration_s', 0):g} s per key and mode in the order {', '.join(cfg.get('order', []))};",
        "req/s and p50 / p99 ms are means over the runs; in-process: the bench's gateway, limits in its memory; "
        "redis: a second gateway with GOPHERGATE_REDIS_URL:",
    ]
    if run.skipped:
        out.append(f"  skipped: {run.skipped}")
        return out
    header = (
        f"{'store':<10} {'scenario':<10} | {'unlimited req/s':>15} {'p50 / p99':>7} | {'limited req/s':>13} "
        f"{'p50 / p99':>9} | {'limited %':>9} | runs, req/s (u = unlimited, l = limited)"
    )
    out.append(header)
    out.append("-" * len(header))
    for backend in run.backends:
        if backend.skipped:
            out.append(f"{backend.name:<10} skipped: {backend.skipped}")
            continue
        for found in backend.modes:
            runs = " ".join(f"{who[0]} {'-' if rps is None else f'{rps:,.0f}'}" for who, rps in found.rounds_rps())
            out.append(
                f"{backend.name:<10} {found.mode:<10} | {_key_cells(found.unlimited)} | {_key_cells(found.limited)} | "
                f"{_pct_of(found.ratio_pct):>9} | {runs}"
            )
        for why in backend.invalid:
            out.append(f"{backend.name:<10} INVALID: {why}")
    for backend in run.backends:
        if backend.skipped or backend.rss_before_mb is None:
            continue
        loaded = (
            "the tokenizer's load was not seen"
            if backend.tokenizer_loaded_after_s is None
            else f"the tokenizer loaded {backend.tokenizer_loaded_after_s:g} s after the first counted request"
        )
        after = "-" if backend.rss_after_mb is None else f"{backend.rss_after_mb:.0f} MB"
        out.append(
            f"  {backend.name} gateway RSS: {backend.rss_before_mb:.0f} MB before the {LIMITED} key's first request, "
            f"{after} after the runs ({loaded}); limits counted in: {backend.store or '?'}"
        )
        if backend.redis_cpu_percent is not None:
            out.append(
                f"  the Redis server used {backend.redis_cpu_percent:.0f}% of a core during the {LIMITED} key's runs "
                "(not pinned: it shares the machine's two cores with the gateway and the load)"
            )
    return out


def render_routing(run: RoutingRun) -> list[str]:
    """The routing section: per mode, the plain model's and the group's req/s and p50 / p99, the group's share
    and added p50, each run's req/s; then which targets served the group and the routing gateway's RSS."""
    cfg = run.config
    out = [
        f"routing: the model group {cfg.get('group')} ({cfg.get('strategy')}, 1:1 over "
        f"{' and '.join(cfg.get('targets', []))}, both the fake upstream) against the plain model "
        f"{cfg.get('plain_model')}, on a gateway started with the group in GOPHERGATE_CONFIG, "
        f"{cfg.get('connections')} clients, {cfg.get('rounds')} runs of {cfg.get('duration_s', 0):g} s per model and "
        f"mode in the order {', '.join(cfg.get('order', []))}; req/s, p50 / p99 ms and the gateway's CPU per "
        "request (its CPU time over its requests, in µs; it moves less than req/s on a busy machine) are means over "
        "the runs:",
    ]
    if run.skipped:
        out.append(f"  skipped: {run.skipped}")
        return out
    header = (
        f"{'scenario':<10} | {'plain req/s':>11} {'p50 / p99':>15} | {'group req/s':>11} {'p50 / p99':>15} | "
        f"{'group %':>7} {'p50 added':>10} | {'CPU µs/req p / g':>16} | runs, req/s (p = plain, g = group)"
    )
    out.append(header)
    out.append("-" * len(header))
    for found in run.modes:
        runs = " ".join(f"{who[0]} {'-' if rps is None else f'{rps:,.0f}'}" for who, rps in found.rounds_rps())
        added = found.added_p50_ms
        cpu = " / ".join("-" if us is None else f"{us:.0f}" for us in found.cpu_us)
        out.append(
            f"{found.mode:<10} | {_key_cells(found.plain, 11)} | {_key_cells(found.group, 11)} | "
            f"{_pct_of(found.share_pct):>7} {'-' if added is None else f'{added:+.2f} ms':>10} | {cpu:>16} | {runs}"
        )
    if run.served_by:
        served = ", ".join(f"{name} {n}" for name, n in sorted(run.served_by.items()))
        out.append(f"  {sum(run.served_by.values())} {GROUPED} answers before timing, served by: {served}")
    if run.rss_before_mb is not None:
        loaded = (
            "the tokenizer's load was not seen"
            if run.tokenizer_loaded_after_s is None
            else f"the tokenizer loaded {run.tokenizer_loaded_after_s:g} s after the first {GROUPED} request: "
            f"a group counts the prompt, a {PLAIN} model does not"
        )
        after = "-" if run.rss_after_mb is None else f"{run.rss_after_mb:.0f} MB"
        out.append(
            f"  routing gateway RSS: {run.rss_before_mb:.0f} MB before the first {GROUPED} request, {after} after "
            f"the runs ({loaded})"
        )
    return out


def render_front_door(run: FrontDoorRun) -> list[str]:
    """The front-door section: per mode and door, req/s and p50 / p99, the share of chat's req/s and the added p50,
    the gateway's CPU per request during the runs and with what it did after them, each run's req/s; then the
    doors, what the gateway did after the runs and its RSS."""
    cfg = run.config
    provider = cfg.get("translated_provider", {})
    out = [
        f"front door: the same answer through each client protocol, on a gateway started with {provider.get('name')} "
        f"(dialect {provider.get('dialect')}, no Responses API, on the fake upstream) in GOPHERGATE_CONFIG, "
        f"{cfg.get('connections')} clients, {cfg.get('rounds')} runs of {cfg.get('duration_s', 0):g} s per door and "
        f"mode in the order {', '.join(cfg.get('order', []))}, each followed by a wait until the gateway is idle; "
        "req/s, p50 / p99 ms and the gateway's CPU per request in µs (during the runs / with its CPU after them until "
        "idle: work done after the answer) are means over the runs:",
    ]
    for name, door in cfg.get("doors", {}).items():
        out.append(f"  {name}: POST {door.get('path')} {door.get('model')}, served by {door.get('served_by')}")
    for name, why in cfg.get("skipped_doors", {}).items():
        out.append(f"  {name}: {why}")
    if run.skipped:
        out.append(f"  skipped: {run.skipped}")
        return out
    width = max((len(name) for name in cfg.get("doors", {})), default=20)
    header = (
        f"{'scenario':<10} {'door':<{width}} | {'req/s':>7} {'p50 / p99':>15} | {'% of chat':>9} {'p50 added':>10} | "
        f"{'CPU µs/req run / +after':>23} | runs, req/s"
    )
    out.append(header)
    out.append("-" * len(header))
    for found in run.modes:
        for name, runs in found.doors.items():
            rounds = " ".join("-" if rps is None else f"{rps:,.0f}" for who, rps in found.rounds_rps() if who == name)
            share = "-" if name == CHAT else _pct_of(found.share_pct(name))
            added = found.added_p50_ms(name)
            added_cell = "-" if name == CHAT or added is None else f"{added:+.2f} ms"
            cpu = " / ".join("-" if us is None else f"{us:.0f}" for us in (runs.cpu_us, runs.cpu_us_with_after))
            out.append(
                f"{found.mode:<10} {name:<{width}} | {_key_cells(runs)} | {share:>9} {added_cell:>10} | {cpu:>23} | "
                f"{rounds}"
            )
    for found in run.modes:
        busy = [
            f"{name} {runs.after_cpu_s:.1f} CPU s over {runs.after_wait_s:.1f} s"
            for name, runs in found.doors.items()
            if runs.after_cpu_s >= 0.1
        ]
        if busy:
            out.append(f"  after the {found.mode} runs the gateway was still busy: {', '.join(busy)}")
    if run.rss_before_mb is not None:
        peak = "-" if run.rss_peak_mb is None else f"{run.rss_peak_mb:.0f} MB"
        after = "-" if run.rss_after_mb is None else f"{run.rss_after_mb:.0f} MB"
        out.append(
            f"  front-door gateway RSS: {run.rss_before_mb:.0f} MB before the runs, peak {peak}, {after} after them"
        )
    return out


def render(results: BenchResults, targets: list[Target]) -> str:
    cfg = results.config
    out = header_lines(cfg, "GopherGate benchmark")
    out.append(f"  gateway : {cfg['gateway']}")
    if cfg.get("relay"):
        out.append(f"  relay   : {cfg['relay']}, the least a Python proxy does (the machine floor)")
    out.append(f"  direct  : {cfg['direct']}")
    out.append(f"  load    : wrk -t{cfg['wrk_threads']}, {cfg['duration_s']:g} s per run")
    out.append("")
    out.append("throughput, req/s (the server's CPU use; 100% = one core, * = other processes were busy there):")
    header = (
        f"{'scenario':<22} | {'gateway':>14} | {'relay':>14} | {'direct':>14} | {'gw % of direct':>14} "
        f"{'gw % of relay':>13}"
    )
    out.append(header)
    out.append("-" * len(header))
    for sc in results.scenarios:
        out.append(
            f"{sc.label:<22} | {_cell_rps(sc.gateway):>14} | {_cell_rps(sc.relay):>14} | {_cell_rps(sc.direct):>14} | "
            f"{_pct_of(sc.throughput_ratio('direct')):>14} {_pct_of(sc.throughput_ratio('relay')):>13}"
        )
    out.append("")
    out.append("latency, ms p50 / p99 (streams: the whole stream); added = gateway minus direct, or minus relay:")
    header = (
        f"{'scenario':<22} | {'gateway':>15} | {'relay':>15} | {'direct':>15} | {'added over direct':>17} | "
        f"{'added over relay':>17}"
    )
    out.append(header)
    out.append("-" * len(header))
    for sc in results.scenarios:
        out.append(
            f"{sc.label:<22} | {_cell_latency(sc.gateway):>15} | {_cell_latency(sc.relay):>15} | "
            f"{_cell_latency(sc.direct):>15} | {_cell_added(sc.added('p50_ms'), sc.added('p99_ms')):>17} | "
            f"{_cell_added(sc.added('p50_ms', 'relay'), sc.added('p99_ms', 'relay')):>17}"
        )
    out.append("  (the relay's own added latency over direct is what the machine's topology costs any proxy)")
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
    if results.paced:
        out.append("")
        out.append(
            "paced streams: N concurrent streams of 20 chunks 50 ms apart (about 1 s each), whole-stream latency;"
        )
        out.append(
            "CPU and RSS of the server under test (relay: the relay process; direct: the fake upstream); RSS peak "
            "while streaming and 2 s after the streams open at the window's end were cut:"
        )
        out.extend(render_paced(results.paced, "gateway", "gateway", ["relay", "direct"]))
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
    if results.routing is not None:
        out.append("")
        out.extend(render_routing(results.routing))
    if results.front_door is not None:
        out.append("")
        out.extend(render_front_door(results.front_door))
    if results.limits is not None:
        out.append("")
        out.extend(render_limits(results.limits))
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
        elif t.unit == "%":
            value = f"{t.value:.1f}%"
        else:
            value = f"{t.value:.3f}"
        note = f"  ({t.note})" if t.note else ""
        out.append(f"  [{mark:^7}] {t.name:<42} {limit:<14} got {value}{note}")
    if results.problems:
        out.append("")
        out.append("problems seen:")
        out.extend(f"  - {p}" for p in results.problems)
    return "\n".join(out)

"""The routing scenario: a model group of two targets next to the plain model, on a gateway started with a TOML
file that defines the group (bench/README.md, "Routing").

Both targets are the bench's one fake upstream, reached through two provider entries (the built-in ``openai`` and
a second OpenAI-compatible entry, ``openai-b``), so the difference between the two figures is the routing work on
the hot path: the group's plan (the prompt counted for the context-window check, the weighted order), the attempt
bookkeeping and the routing headers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Connection, Endpoint, ProtocolError, check_response, request_body
from bench.limits import KeyRuns, _last_error, interleaved, rss_mb, wait_for_tokenizer
from bench.procs import BenchSetupError, CpuPlan, ManagedProcess, free_port, start_gateway
from bench.results import NON_STREAM, STREAM, Measured, ratio
from bench.rss import RssSampler

GROUP = "bench-group"
SECOND_PROVIDER = "openai-b"
STRATEGY = "weighted"
PLAIN = "plain"
GROUPED = "group"
MODES = (NON_STREAM, STREAM)

GROUP_HEADER = "x-gophergate-model-group"
ATTEMPTS_HEADER = "x-gophergate-attempts"
SERVED_BY_HEADER = "x-gophergate-served-by"
SPREAD_REQUESTS = 20
"""Group answers sent before timing to see that both targets serve (both the same one: 2 in a million)."""

RoutingMeasure = Callable[[Endpoint, str, str, float, int, str | None], Measured]
"""Runs wrk against the routing gateway on the gateway's CPU: (endpoint, model, mode, seconds, its pid, where to
name it in the problems seen, or None for a warm-up whose problems do not matter)."""


def group_targets(model: str) -> list[str]:
    return [f"openai/{model}", f"{SECOND_PROVIDER}/{model}"]


def routing_toml(upstream_port: int, model: str) -> str:
    """The routing gateway's configuration: a second provider entry on the fake upstream and the group.

    The second entry declares no ``models``: a declared bare name would be served by it, and the plain model must
    stay on the built-in ``openai`` provider, as in the rest of the bench."""
    targets = ", ".join(f'{{ model = "{name}", weight = 1 }}' for name in group_targets(model))
    return (
        f"[providers.{SECOND_PROVIDER}]\n"
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        'api_key = "sk-bench-b"\n'
        'registry_provider = "openai"\n'
        "\n"
        f"[model_groups.{GROUP}]\n"
        f'strategy = "{STRATEGY}"\n'
        f"targets = [{targets}]\n"
    )


def header_problems(who: str, headers: dict[str, str]) -> list[str]:
    """What is wrong with the routing headers of one answer (``who``: ``plain`` or ``group``; names lower-case):
    a group answer names the group and took one attempt; a plain one took one attempt and names no group."""
    found: list[str] = []
    attempts = headers.get(ATTEMPTS_HEADER)
    if attempts != "1":
        found.append(f"{ATTEMPTS_HEADER} is {attempts!r}, not '1'")
    group = headers.get(GROUP_HEADER)
    if who == GROUPED and group != GROUP:
        found.append(f"{GROUP_HEADER} is {group!r}, not {GROUP!r}")
    elif who == PLAIN and group is not None:
        found.append(f"{GROUP_HEADER} is {group!r} on a plain model's answer")
    return found


def spread_problems(served: dict[str, int], targets: list[str]) -> list[str]:
    """Group answers served by something else than the group's targets, and targets that served none."""
    found = [f"{n} group answers served by {name!r}, not a target" for name, n in served.items() if name not in targets]
    idle = [name for name in targets if not served.get(name)]
    if idle and served:
        found.append(f"no group answer of {sum(served.values())} was served by {', '.join(idle)}")
    return found


def cpu_us_per_request(runs: KeyRuns) -> float | None:
    """The gateway's CPU time per request in microseconds (its CPU use over its req/s), a mean over the runs that
    have both: it moves less than req/s when other processes take some of the gateway's core."""
    values = [
        m.server_cpu_percent / 100 / m.result.requests_per_s * 1e6
        for m in runs.runs
        if m.result is not None and m.result.requests_per_s > 0 and m.server_cpu_percent is not None
    ]
    return sum(values) / len(values) if values else None


def routing_config(connections: int, duration_s: float, rounds: int, model: str) -> dict[str, Any]:
    return {
        "group": GROUP,
        "strategy": STRATEGY,
        "targets": group_targets(model),
        "plain_model": model,
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "order": interleaved(rounds, PLAIN, GROUPED),
    }


@dataclass
class RoutingMode:
    """The plain model's and the group's runs of one mode."""

    mode: str
    plain: KeyRuns = field(default_factory=KeyRuns)
    group: KeyRuns = field(default_factory=KeyRuns)
    order: list[str] = field(default_factory=list)
    """Which model each run used, in run order."""

    @property
    def share_pct(self) -> float | None:
        """The group's req/s as a percentage of the plain model's."""
        return ratio(self.group.requests_per_s, self.plain.requests_per_s)

    @property
    def added_p50_ms(self) -> float | None:
        """The group's p50 minus the plain model's."""
        group, plain = self.group.p50_ms, self.plain.p50_ms
        return None if group is None or plain is None else group - plain

    @property
    def cpu_us(self) -> tuple[float | None, float | None]:
        """The gateway's CPU per request (µs), plain and group."""
        return cpu_us_per_request(self.plain), cpu_us_per_request(self.group)

    def rounds_rps(self) -> list[tuple[str, float | None]]:
        """Each run's req/s, in run order."""
        taken = {PLAIN: iter(self.plain.runs), GROUPED: iter(self.group.runs)}
        out: list[tuple[str, float | None]] = []
        for who in self.order:
            measured = next(taken[who], None)
            rps = None if measured is None or measured.result is None else measured.result.requests_per_s
            out.append((who, rps))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "order": self.order,
            "plain": self.plain.to_dict(),
            "group": self.group.to_dict(),
            "group_pct_of_plain": self.share_pct,
            "group_added_p50_ms": self.added_p50_ms,
            "plain_cpu_us_per_request": self.cpu_us[0],
            "group_cpu_us_per_request": self.cpu_us[1],
        }


@dataclass
class RoutingRun:
    config: dict[str, Any] = field(default_factory=dict)
    gateway: str = ""
    skipped: str | None = None
    checks: dict[str, list[str]] = field(default_factory=dict)
    """Problems per answer checked before timing (``plain non-stream``, ``group stream``, ...)."""
    served_by: dict[str, int] = field(default_factory=dict)
    """``x-gophergate-served-by`` of the group answers sent before timing."""
    modes: list[RoutingMode] = field(default_factory=list)
    rss_before_mb: float | None = None
    """The routing gateway's RSS before the first group request (the tokenizer not loaded yet)."""
    rss_after_mb: float | None = None
    tokenizer_loaded_after_s: float | None = None
    problems: list[str] = field(default_factory=list)

    def mode(self, mode: str) -> RoutingMode | None:
        return next((m for m in self.modes if m.mode == mode), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "gateway": self.gateway,
            "skipped": self.skipped,
            "checks": self.checks,
            "served_by": self.served_by,
            "modes": [m.to_dict() for m in self.modes],
            "rss_before_mb": self.rss_before_mb,
            "rss_after_mb": self.rss_after_mb,
            "tokenizer_loaded_after_s": self.tokenizer_loaded_after_s,
            "problems": self.problems,
        }


@dataclass
class RoutingGateway:
    """How to start the routing gateway: the bench gateway's environment plus ``GOPHERGATE_CONFIG``."""

    env: dict[str, str]
    cwd: Path
    plan: CpuPlan
    log_path: Path
    upstream_port: int
    key: str
    """The bench's client key (the routing gateway shares the bench gateway's data dir)."""


def _answer(
    conn: Connection, endpoint: Endpoint, model: str, stream: bool, chunks: int
) -> tuple[int, dict[str, str], list[str]]:
    """One answer's status (0: no answer), headers and what is wrong with its shape."""
    try:
        conn.send(endpoint.raw_request(request_body(model, stream)))
        response = conn.read_response()
    except (OSError, ProtocolError, ValueError) as exc:
        conn.close()
        return 0, {}, [f"request failed: {exc!r}"]
    return response.status, response.headers, check_response(response, stream, chunks)


def check_answers(run: RoutingRun, endpoint: Endpoint, model: str, chunks: int) -> bool:
    """One answer per model and mode: its shape and routing headers (problems in ``run.checks``), then
    ``SPREAD_REQUESTS`` group answers for the targets that served them. False when an answer was not a 200."""
    answered = True
    with Connection(endpoint.host, endpoint.port) as conn:
        for who, name in ((PLAIN, model), (GROUPED, GROUP)):
            for stream in (False, True):
                status, headers, found = _answer(conn, endpoint, name, stream, chunks)
                if status == 200:
                    found += header_problems(who, headers)
                else:
                    answered = False
                run.checks[f"{who} {STREAM if stream else NON_STREAM}"] = found
        served: Counter[str] = Counter()
        for _ in range(SPREAD_REQUESTS if answered else 0):
            status, headers, _found = _answer(conn, endpoint, GROUP, False, chunks)
            served[headers.get(SERVED_BY_HEADER, "?") if status == 200 else f"HTTP {status}"] += 1
        run.served_by = dict(served)
    for where, found in run.checks.items():
        run.problems.extend(f"{where} answer check: {problem}" for problem in found)
    run.problems.extend(spread_problems(run.served_by, group_targets(model)))
    return answered


def run_routing(
    measure: RoutingMeasure,
    start: RoutingGateway,
    model: str,
    duration_s: float,
    rounds: int,
    warmup_s: float,
    chunks: int,
    log: Callable[[str], None],
    run: RoutingRun,
) -> None:
    """Start the routing gateway, check its answers, warm both models up, wait for the tokenizer (a group counts
    the prompt), then the interleaved runs of each mode; the gateway is stopped at the end."""
    config_path = start.cwd / "routing.toml"
    config_path.write_text(routing_toml(start.upstream_port, model))
    port = free_port()
    env = {**start.env, "GOPHERGATE_CONFIG": str(config_path)}
    log(f"routing: starting a gateway on 127.0.0.1:{port} with {GROUP} in GOPHERGATE_CONFIG")
    try:
        proc: ManagedProcess = start_gateway(port, env, start.plan, start.log_path, cwd=start.cwd)
    except BenchSetupError as exc:
        run.skipped = (
            f"the gateway did not start with the routing configuration ({_last_error(str(exc))}; "
            f"log in {start.log_path})"
        )
        run.problems.append(run.skipped)
        return
    try:
        base = f"http://127.0.0.1:{port}"
        run.gateway = f"{base} (gophergate serve --workers 1, pid {proc.pid}, log {start.log_path})"
        endpoint = Endpoint.from_url(base, start.key)
        sampler = RssSampler(proc.pid)
        run.rss_before_mb = rss_mb(sampler)
        if not check_answers(run, endpoint, model, chunks):
            run.skipped = "an answer checked before timing failed (see the problems seen)"
            return
        run.tokenizer_loaded_after_s = wait_for_tokenizer(sampler, run.rss_before_mb)
        for mode in MODES:
            for who, name in ((PLAIN, model), (GROUPED, GROUP)):
                log(f"routing: warm-up, {who} ({name}), {mode}, {warmup_s:g} s")
                measure(endpoint, name, mode, warmup_s, proc.pid, None)
        for mode in MODES:
            found = RoutingMode(mode, order=interleaved(rounds, PLAIN, GROUPED))
            run.modes.append(found)
            for who in found.order:
                name = GROUP if who == GROUPED else model
                log(f"routing: {mode}, {who} ({name}), {duration_s:g} s")
                runs = found.group if who == GROUPED else found.plain
                runs.runs.append(measure(endpoint, name, mode, duration_s, proc.pid, f"routing {mode}, {who}"))
        time.sleep(1.0)
        run.rss_after_mb = rss_mb(sampler)
        if not proc.alive():
            run.problems.append(f"the gateway exited during the run:\n{proc.log_tail()}")
    finally:
        proc.stop()

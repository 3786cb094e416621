"""Orchestrates a benchmark run: processes, warm-up, timed wrk runs, time to first chunk, soak, memory."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import fake_upstream, paced
from bench.client import Endpoint, check_endpoint, measure_ttfc, request_body
from bench.front_door import FrontDoorGateway, FrontDoorRun, front_door_config, run_front_door
from bench.limits import (
    IN_PROCESS,
    BackendRun,
    Comparison,
    CreatedKey,
    LimitsRefused,
    LimitsRun,
    RedisGateway,
    create_limited_key,
    limits_config,
    limits_mode,
    run_redis,
)
from bench.machine import describe_machine
from bench.procs import (
    BenchSetupError,
    CpuPlan,
    ManagedProcess,
    create_client_key,
    find_listening_pid,
    free_port,
    gateway_env,
    pin_self,
    plan_cpus,
    start_fake_upstream,
    start_floor_relay,
    start_gateway,
)
from bench.report import evaluate_targets, render
from bench.results import NON_STREAM, STREAM, BenchResults, Measured, PacedMeasured, PacedScenario, Scenario
from bench.routing import RoutingGateway, RoutingRun, routing_config, run_routing
from bench.rss import MB, RssSampler, cpu_busy_seconds, tree_cpu_seconds
from bench.wrk import WrkError, find_wrk, run_wrk

MAX_SOAK_ROUND_S = 60
SOAK_ROUND_REQUESTS = 25_000
FOREIGN_CPU_WARN_PERCENT = 10.0
PACED_NOMINAL_STREAM_S = 1.05
"""What one paced stream (20 chunks 50 ms apart) takes with a little slack: N streams should give N/1.05 s."""
LOAD_BOUND_PERCENT = 90.0
TEARDOWN_WAIT_S = 2.0
TEARDOWN_GROWTH_WARN_MB = 25.0


@dataclass
class Options:
    duration_s: float
    connections: int
    threads: int
    warmup_s: float
    ttfc_requests: int
    soak_requests: int
    pin: bool
    model: str
    results_dir: Path
    target: str | None = None
    key: str | None = None
    target_pid: int | None = None
    gateway_env: dict[str, str] = field(default_factory=dict)
    floor: bool = True
    paced_streams: list[int] = field(default_factory=lambda: [1000, 3000])
    """Concurrencies of the paced scenario; empty skips it."""
    limits: bool = True
    """Run the limits scenario (bench/limits.py)."""
    redis_url: str | None = None
    """Redis for the limits scenario's second gateway; None skips that half."""
    limits_duration_s: float = 4.0
    limits_rounds: int = 2
    routing: bool = True
    """Run the routing scenario (bench/routing.py)."""
    routing_duration_s: float = 4.0
    routing_rounds: int = 2
    front_door: bool = True
    """Run the front-door scenario (bench/front_door.py)."""
    front_door_duration_s: float = 4.0
    front_door_rounds: int = 2
    command: str = ""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, opts: Options, plan: CpuPlan) -> None:
        self.opts = opts
        self.plan = plan
        self.gateway_proc: ManagedProcess | None = None
        self.gateway: Endpoint | None = None
        self.direct: Endpoint | None = None
        self.sampler: RssSampler | None = None
        self.gateway_pid: int | None = None
        self.direct_pid: int | None = None
        self.relay: Endpoint | None = None
        self.relay_pid: int | None = None
        self.results = BenchResults(config={})
        self.limited_key: CreatedKey | None = None
        self.redis_gateway: RedisGateway | None = None
        self.routing_gateway: RoutingGateway | None = None
        self.front_door_gateway: FrontDoorGateway | None = None

    # -- helpers -------------------------------------------------------------------------------------

    def _gateway_alive(self) -> bool:
        if self.gateway_proc is None or self.gateway_proc.alive():
            return True
        problem = (
            f"the gateway exited with code {self.gateway_proc.popen.returncode} during the run; "
            f"log tail:\n{self.gateway_proc.log_tail()}"
        )
        if problem not in self.results.problems:
            self.results.problems.append(problem)
        return False

    def _wrk(
        self,
        endpoint: Endpoint,
        mode: str,
        connections: int,
        duration_s: float,
        server_pid: int | None = None,
        gateway_core: bool = False,
        model: str | None = None,
        body: bytes | None = None,
    ) -> Measured:
        body = body or request_body(model or self.opts.model, stream=mode == STREAM)
        if server_pid is None:
            server_pid = {id(self.direct): self.direct_pid, id(self.relay): self.relay_pid}.get(
                id(endpoint), self.gateway_pid
            )
        on_gateway_core = gateway_core or (endpoint is self.gateway and self.gateway_proc is not None)
        watch_core = self.plan.gateway if on_gateway_core else None
        cpu_before = tree_cpu_seconds(server_pid) if server_pid else None
        core_before = cpu_busy_seconds(watch_core) if watch_core is not None else None
        started = time.monotonic()
        try:
            result = run_wrk(
                endpoint.url,
                body,
                endpoint.headers,
                connections=connections,
                duration_s=duration_s,
                threads=self.opts.threads,
                cpu_prefix=self.plan.prefix(self.plan.load),
            )
        except (WrkError, subprocess.TimeoutExpired) as exc:
            return Measured(error=str(exc))
        elapsed = time.monotonic() - started
        cpu_after = tree_cpu_seconds(server_pid) if server_pid else None
        cpu_percent = None
        # A process that exited during the run takes its CPU time with it: then the figure is unknown.
        if cpu_before is not None and cpu_after is not None and cpu_after >= cpu_before and elapsed > 0:
            cpu_percent = round((cpu_after - cpu_before) / elapsed * 100, 1)
        foreign = None
        if watch_core is not None and core_before is not None and cpu_percent is not None:
            core_percent = (cpu_busy_seconds(watch_core) - core_before) / elapsed * 100
            foreign = round(max(0.0, core_percent - cpu_percent), 1)
        return Measured(result=result, server_cpu_percent=cpu_percent, foreign_cpu_percent=foreign)

    def _count(self, measured: Measured) -> None:
        if measured.result is not None:
            self.results.gateway_requests += measured.result.requests

    def _note_errors(self, where: str, measured: Measured) -> None:
        foreign = measured.foreign_cpu_percent
        if foreign is not None and foreign > FOREIGN_CPU_WARN_PERCENT:
            self.results.problems.append(
                f"{where}: other processes used {foreign:.0f}% of the gateway's CPU {self.plan.gateway} "
                "during the run (a busy machine): its figures are unreliable"
            )
        result = measured.result
        if result is None:
            return
        if result.requests == 0:
            self.results.problems.append(f"{where}: no request completed")
        elif result.non_2xx or result.socket_errors or result.timeouts:
            self.results.problems.append(
                f"{where}: {result.non_2xx:,} non-2xx responses, {result.socket_errors:,} socket errors, "
                f"{result.timeouts:,} timeouts out of {result.requests:,} requests"
            )

    # -- phases --------------------------------------------------------------------------------------

    def check(self) -> None:
        assert self.gateway and self.direct
        for name, endpoint in (("gateway", self.gateway), ("direct", self.direct)):
            found = check_endpoint(endpoint, self.opts.model, fake_upstream.STREAM_CONTENT_CHUNKS)
            self.results.checks[name] = found
            if name == "gateway":
                self.results.gateway_requests += 2
            for mode, problems in found.items():
                for problem in problems:
                    self.results.problems.append(f"{name} {mode} response check: {problem}")

    def warm_up(self) -> None:
        assert self.gateway
        if self.opts.warmup_s <= 0:
            return
        for mode in (NON_STREAM, STREAM):
            if not self._gateway_alive():
                return
            log(f"warm-up: gateway {mode}, {self.opts.connections} clients, {self.opts.warmup_s:g} s")
            measured = self._wrk(self.gateway, mode, self.opts.connections, self.opts.warmup_s)
            self._count(measured)

    def timed_runs(self) -> None:
        assert self.gateway and self.direct
        for mode in (NON_STREAM, STREAM):
            for connections in dict.fromkeys((self.opts.connections, 1)):
                scenario = Scenario(mode, connections)
                self.results.scenarios.append(scenario)
                if self._gateway_alive():
                    log(f"{scenario.label}: gateway, {self.opts.duration_s:g} s")
                    scenario.gateway = self._wrk(self.gateway, mode, connections, self.opts.duration_s)
                    self._count(scenario.gateway)
                    self._note_errors(f"gateway {scenario.label}", scenario.gateway)
                    if scenario.gateway.error:
                        self.results.problems.append(f"gateway {scenario.label}: {scenario.gateway.error}")
                else:
                    scenario.gateway = Measured(error="gateway not running")
                if self.relay is not None:
                    log(f"{scenario.label}: relay, {self.opts.duration_s:g} s")
                    scenario.relay = self._wrk(self.relay, mode, connections, self.opts.duration_s)
                    self._note_errors(f"relay {scenario.label}", scenario.relay)
                    if scenario.relay.error:
                        self.results.problems.append(f"relay {scenario.label}: {scenario.relay.error}")
                log(f"{scenario.label}: direct, {self.opts.duration_s:g} s")
                scenario.direct = self._wrk(self.direct, mode, connections, self.opts.duration_s)
                self._note_errors(f"direct {scenario.label}", scenario.direct)
                if scenario.direct.error:
                    self.results.problems.append(f"direct {scenario.label}: {scenario.direct.error}")

    def start_relay(self, stack: contextlib.ExitStack) -> None:
        """Start the minimal relay (bench/floor_relay.py) pinned where the gateway runs, and warm it up."""
        assert self.direct
        if not self.opts.floor:
            return
        port = free_port()
        try:
            relay_proc = start_floor_relay(port, self.direct.port, self.plan, self.opts.results_dir / "floor-relay.log")
        except BenchSetupError as exc:
            self.results.problems.append(f"minimal relay: {exc}")
            return
        stack.callback(relay_proc.stop)
        self.relay = Endpoint.from_url(f"http://127.0.0.1:{port}", None)
        self.relay_pid = relay_proc.pid
        found = check_endpoint(self.relay, self.opts.model, fake_upstream.STREAM_CONTENT_CHUNKS)
        self.results.checks["relay"] = found
        for mode, problems in found.items():
            for problem in problems:
                self.results.problems.append(f"relay {mode} response check: {problem}")
        self._wrk(self.relay, NON_STREAM, self.opts.connections, min(self.opts.warmup_s, 1.0))

    def paced_runs(self) -> None:
        """N concurrent paced streams (20 chunks 50 ms apart) through the gateway, the relay and directly."""
        assert self.gateway and self.direct
        model = self.opts.model + fake_upstream.PACED_SUFFIX
        for streams in self.opts.paced_streams:
            scenario = PacedScenario(streams)
            self.results.paced.append(scenario)
            sides: list[tuple[str, Endpoint, int | None]] = [("gateway", self.gateway, self.gateway_pid)]
            if self.relay is not None:
                sides.append(("relay", self.relay, self.relay_pid))
            sides.append(("direct", self.direct, self.direct_pid))
            for name, endpoint, pid in sides:
                if name == "gateway" and not self._gateway_alive():
                    scenario.sides[name] = PacedMeasured(error="gateway not running")
                    continue
                log(f"paced streams, {streams:,} concurrent: {name}, {self.opts.duration_s:g} s window")
                measured = measure_paced(
                    endpoint, model, streams, self.opts.duration_s, pid, self.plan.prefix(self.plan.load)
                )
                scenario.sides[name] = measured
                self.results.problems.extend(paced_problems(f"{name} paced {streams:,} streams", measured))
                if name == "gateway" and measured.result is not None:
                    self.results.gateway_requests += measured.result.completed
            direct = scenario.sides.get("direct")
            if direct is not None and direct.result is not None:
                ideal = streams / PACED_NOMINAL_STREAM_S
                if direct.result.streams_per_s < ideal * LOAD_BOUND_PERCENT / 100:
                    self.results.problems.append(
                        f"paced {streams:,} streams: direct reached {direct.result.streams_per_s:,.0f} streams/s, "
                        f"under {LOAD_BOUND_PERCENT:.0f}% of {ideal:,.0f} (N/1.05 s): the load side (fake upstream "
                        "and load client on one CPU) limits this concurrency, so every side's figure there is "
                        "partly the load side's"
                    )

    def limits_runs(self) -> None:
        """The limits scenario: the unlimited and the limited key, interleaved, on this gateway (limits in its
        process), then on a second gateway with its limits in Redis."""
        opts = self.opts
        run = LimitsRun(
            config=limits_config(opts.connections, opts.limits_duration_s, opts.limits_rounds, opts.redis_url)
        )
        self.results.limits = run
        if self.limited_key is None or self.gateway is None or self.gateway_pid is None:
            run.skipped = "not run against --target (the bench creates its keys itself)"
            return
        unlimited_key = self.gateway.headers["Authorization"].removeprefix("Bearer ")

        def measure(endpoint: Endpoint, mode: str, seconds: float, pid: int, where: str | None) -> Measured:
            measured = self._wrk(endpoint, mode, opts.connections, seconds, pid, gateway_core=True)
            if pid == self.gateway_pid:
                self._count(measured)
            if where is not None:
                self._note_errors(where, measured)
                if measured.error:
                    self.results.problems.append(f"{where}: {measured.error}")
            return measured

        comparison = Comparison(
            measure, opts.model, opts.limits_duration_s, opts.limits_rounds, min(opts.warmup_s, 1.0), log
        )
        local = BackendRun(IN_PROCESS, gateway=str(self.results.config.get("gateway", "")))
        run.backends.append(local)
        if self._gateway_alive():
            local.store = limits_mode(f"http://{self.gateway.host}:{self.gateway.port}")
            limited = Endpoint.from_url(f"http://{self.gateway.host}:{self.gateway.port}", self.limited_key.key)
            comparison.run(local, self.gateway, limited, self.gateway_pid, False)
        else:
            local.skipped = "the gateway is not running"
        if self.redis_gateway is not None:
            run.backends.append(
                run_redis(comparison, opts.redis_url, self.redis_gateway, unlimited_key, self.limited_key)
            )
        for backend in run.backends:
            if backend.skipped:
                log(f"limits, {backend.name}: skipped: {backend.skipped}")
        self.results.problems.extend(f"limits scenario invalid: {why}" for why in run.invalid)

    def routing_runs(self) -> None:
        """The plain model and a model group of two targets, interleaved, on a gateway started with the group in
        its TOML file."""
        opts = self.opts
        run = RoutingRun(
            config=routing_config(opts.connections, opts.routing_duration_s, opts.routing_rounds, opts.model)
        )
        self.results.routing = run
        if self.routing_gateway is None:
            run.skipped = "not run against --target (the bench starts a gateway with the model group itself)"
            return

        def measure(endpoint: Endpoint, model: str, mode: str, seconds: float, pid: int, where: str | None) -> Measured:
            measured = self._wrk(endpoint, mode, opts.connections, seconds, pid, gateway_core=True, model=model)
            if where is not None:
                self._note_errors(where, measured)
                if measured.error:
                    self.results.problems.append(f"{where}: {measured.error}")
            return measured

        run_routing(
            measure,
            self.routing_gateway,
            opts.model,
            opts.routing_duration_s,
            opts.routing_rounds,
            min(opts.warmup_s, 1.0),
            fake_upstream.STREAM_CONTENT_CHUNKS,
            log,
            run,
        )
        if run.skipped:
            log(f"routing: skipped: {run.skipped}")
        self.results.problems.extend(f"routing: {problem}" for problem in run.problems)

    def front_door_runs(self) -> None:
        """Chat, Anthropic Messages and Responses (translated) for the same answer, rotated, on a gateway started with
        a provider entry without a Responses API in its TOML file."""
        opts = self.opts
        run = FrontDoorRun(
            config=front_door_config(opts.connections, opts.front_door_duration_s, opts.front_door_rounds, opts.model)
        )
        self.results.front_door = run
        if self.front_door_gateway is None:
            run.skipped = "not run against --target (the bench starts a gateway with the provider entry itself)"
            return

        def measure(endpoint: Endpoint, body: bytes, seconds: float, pid: int, where: str | None) -> Measured:
            measured = self._wrk(endpoint, NON_STREAM, opts.connections, seconds, pid, gateway_core=True, body=body)
            if where is not None:
                self._note_errors(where, measured)
                if measured.error:
                    self.results.problems.append(f"{where}: {measured.error}")
            return measured

        run_front_door(
            measure,
            self.front_door_gateway,
            opts.model,
            opts.front_door_duration_s,
            opts.front_door_rounds,
            min(opts.warmup_s, 1.0),
            fake_upstream.STREAM_CONTENT_CHUNKS,
            log,
            run,
        )
        if run.skipped:
            log(f"front door: skipped: {run.skipped}")
        self.results.problems.extend(f"front door: {problem}" for problem in run.problems)

    def time_to_first_chunk(self) -> None:
        assert self.gateway and self.direct
        n = self.opts.ttfc_requests
        if n <= 0:
            return
        if self._gateway_alive():
            log(f"time to first chunk: gateway, {n:,} sequential streams")
            gw = measure_ttfc(self.gateway, self.opts.model, n)
            self.results.ttfc.gateway = gw
            self.results.gateway_requests += gw.sent
            if gw.errors:
                self.results.problems.append(
                    f"gateway time to first chunk: {gw.errors} failed streams, first: {gw.first_error}"
                )
        log(f"time to first chunk: direct, {n:,} sequential streams")
        direct = measure_ttfc(self.direct, self.opts.model, n)
        self.results.ttfc.direct = direct
        if direct.errors:
            self.results.problems.append(
                f"direct time to first chunk: {direct.errors} failed streams, first: {direct.first_error}"
            )

    def soak(self) -> None:
        """Send more load until the gateway has seen ``soak_requests`` requests, alternating modes."""
        assert self.gateway
        rates: dict[str, float] = {}
        for mode in (NON_STREAM, STREAM):
            scenario = self.results.scenario(mode, self.opts.connections)
            if scenario is not None and scenario.gateway.result is not None:
                rates[mode] = scenario.gateway.result.requests_per_s
        modes = itertools.cycle((NON_STREAM, STREAM))
        for _ in range(40):
            remaining = self.opts.soak_requests - self.results.gateway_requests
            if remaining <= 0 or not self._gateway_alive():
                break
            mode = next(modes)
            rate = max(rates.get(mode, 0.0), 200.0)
            duration = max(1, min(MAX_SOAK_ROUND_S, math.ceil(min(remaining, SOAK_ROUND_REQUESTS) / rate)))
            log(f"soak: gateway {mode}, {self.opts.connections} clients, {duration} s ({remaining:,} to go)")
            measured = self._wrk(self.gateway, mode, self.opts.connections, duration)
            self._count(measured)
            self._note_errors(f"gateway soak {mode}", measured)
            self.results.soak.append({"mode": mode, "duration_s": duration, **measured.to_dict()})
            if measured.result is None:
                self.results.problems.append(f"gateway soak {mode}: {measured.error}")
                break
            if measured.result.requests == 0:
                break
            rates[mode] = measured.result.requests_per_s

    def memory_after_soak(self) -> None:
        if self.sampler is None:
            return
        time.sleep(1.0)
        self.results.memory.after_soak = self.sampler.sample()
        self.results.memory.requests_before_after_soak = self.results.gateway_requests

    # -- the whole run -------------------------------------------------------------------------------

    def run(self) -> BenchResults:
        opts = self.opts
        find_wrk()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        opts.results_dir.mkdir(parents=True, exist_ok=True)
        busy_before = self._machine_busy()
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gg-bench-")))
            upstream_port = free_port()
            log(f"starting the fake upstream on 127.0.0.1:{upstream_port}")
            fake = start_fake_upstream(upstream_port, self.plan, tmp / "fake-upstream.log")
            stack.callback(fake.stop)
            self.direct_pid = fake.pid
            self.direct = Endpoint.from_url(f"http://127.0.0.1:{upstream_port}", None)

            gateway_pid: int | None
            if opts.target:
                self.gateway = Endpoint.from_url(opts.target, opts.key or "sk-bench")
                gateway_pid = opts.target_pid or find_listening_pid(self.gateway.port)
                gateway_desc = f"{self.gateway.url} (already running, pid {gateway_pid or 'unknown'})"
            else:
                data_dir = tmp / "data"
                data_dir.mkdir()
                env = gateway_env(upstream_port, data_dir, opts.gateway_env)
                log("creating a client key with `gophergate keys create --name bench`")
                key = create_client_key(env, cwd=tmp)
                if opts.limits:
                    log("creating a limited key with `gophergate keys create --name bench-limited --rpm ...`")
                    self.limited_key = create_limited_key(env, cwd=tmp)
                    self.redis_gateway = RedisGateway(
                        env, tmp, self.plan, opts.results_dir / f"gateway-redis-{stamp}.log"
                    )
                if opts.routing:
                    self.routing_gateway = RoutingGateway(
                        env, tmp, self.plan, opts.results_dir / f"gateway-routing-{stamp}.log", upstream_port, key
                    )
                if opts.front_door:
                    self.front_door_gateway = FrontDoorGateway(
                        env, tmp, self.plan, opts.results_dir / f"gateway-front-door-{stamp}.log", upstream_port, key
                    )
                port = free_port()
                log_path = opts.results_dir / f"gateway-{stamp}.log"
                log(f"starting the gateway on 127.0.0.1:{port} (1 worker), log in {log_path}")
                self.gateway_proc = start_gateway(port, env, self.plan, log_path, cwd=tmp)
                stack.callback(self._stop_gateway)
                self.gateway = Endpoint.from_url(f"http://127.0.0.1:{port}", key)
                gateway_pid = self.gateway_proc.pid
                gateway_desc = f"{self.gateway.url} (gophergate serve --workers 1, pid {gateway_pid}, log {log_path})"

            self.start_relay(stack)

            self.results.config = {
                "started": stamp,
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "machine": describe_machine(),
                "command": opts.command,
                "relay": f"{self.relay.url} (bench/floor_relay.py)" if self.relay else None,
                "paced_streams": opts.paced_streams,
                "gateway": gateway_desc,
                "direct": f"{self.direct.url} (the bench's fake upstream)",
                "duration_s": opts.duration_s,
                "connections": opts.connections,
                "wrk_threads": opts.threads,
                "warmup_s": opts.warmup_s,
                "ttfc_requests": opts.ttfc_requests,
                "soak_requests": opts.soak_requests,
                "model": opts.model,
                "stream_chunks": fake_upstream.STREAM_CONTENT_CHUNKS,
                "cpus": self.plan.describe()
                + (" (the --target server itself is not pinned by the bench)" if opts.target else ""),
                "cpu_count": os.cpu_count(),
                "cpu_busy_before_start_percent": busy_before,
                "python": platform.python_version(),
                "platform": platform.platform(),
            }

            self.gateway_pid = gateway_pid
            if gateway_pid is not None:
                self.sampler = RssSampler(gateway_pid)
                self.sampler.start()
                stack.callback(self.sampler.stop)
            else:
                self.results.memory.note = "gateway pid unknown (pass --target-pid): RSS not measured"

            log("checking one non-streaming and one streaming answer from each side")
            self.check()
            self.warm_up()
            self.timed_runs()
            self.time_to_first_chunk()
            self.soak()
            self.memory_after_soak()
            self.paced_runs()

            if self.sampler is not None:
                self.sampler.stop()
                memory = self.results.memory
                memory.samples = list(self.sampler.samples)
                memory.at_start = memory.samples[0] if memory.samples else None
                memory.peak = self.sampler.peak
            # Each on a gateway of its own (started with its TOML file): the memory figures above are the bench
            # gateway's alone.
            if opts.routing:
                self.routing_runs()
            if opts.front_door:
                self.front_door_runs()
            # Last: a limited key loads the tokenizer (~150 MB) into the gateway for good, which the memory
            # figures above must not include.
            if opts.limits:
                self.limits_runs()
        return self.results

    def _machine_busy(self) -> list[float]:
        """Per-CPU use over one second before the run; a busy machine makes every figure unreliable."""
        busy: list[float] = psutil.cpu_percent(interval=1.0, percpu=True)
        worst = max(busy, default=0.0)
        if worst > FOREIGN_CPU_WARN_PERCENT * 2:
            self.results.problems.append(
                "the machine was not idle before the run (CPU use per core: "
                + ", ".join(f"{b:.0f}%" for b in busy)
                + "): other processes compete with the gateway, the fake upstream and wrk"
            )
        return busy

    def _stop_gateway(self) -> None:
        if self.gateway_proc is None:
            return
        was_alive = self._gateway_alive()
        code = self.gateway_proc.stop()
        if was_alive and code not in (0, None, -15):
            self.results.problems.append(f"the gateway exited with code {code} when asked to stop")


def measure_paced(
    endpoint: Endpoint, model: str, streams: int, duration_s: float, pid: int | None, cpu_prefix: list[str]
) -> PacedMeasured:
    """One paced run against ``endpoint``, with the server's CPU use and peak RSS (when its pid is known)."""
    base = endpoint.url.removesuffix("/chat/completions")
    key = endpoint.headers.get("Authorization", "").removeprefix("Bearer ") or None
    sampler = RssSampler(pid, interval_s=0.25) if pid else None
    cpu_before = tree_cpu_seconds(pid) if pid else None
    started = time.monotonic()
    if sampler is not None:
        sampler.start()
    try:
        result = paced.run_client(base, key, model=model, streams=streams, duration_s=duration_s, cpu_prefix=cpu_prefix)
    except RuntimeError as exc:
        if sampler is not None:
            sampler.stop()
        return PacedMeasured(error=str(exc))
    elapsed = time.monotonic() - started
    cpu_after = tree_cpu_seconds(pid) if pid else None
    cpu = None
    if cpu_before is not None and cpu_after is not None and cpu_after >= cpu_before and elapsed > 0:
        cpu = round((cpu_after - cpu_before) / elapsed * 100, 1)
    if sampler is None:
        return PacedMeasured(result=result, server_cpu_percent=cpu)
    peak = sampler.peak
    # The streams still open when the window closed were cut by the client's exit: the server's memory a
    # moment later shows what tearing them down cost.
    time.sleep(TEARDOWN_WAIT_S)
    sampler.stop()
    after = sampler.sample()
    return PacedMeasured(
        result=result,
        server_cpu_percent=cpu,
        rss_peak_mb=round(peak.total_bytes / MB, 1) if peak is not None else None,
        rss_after_mb=round(after.total_bytes / MB, 1) if after is not None else None,
    )


def paced_problems(where: str, measured: PacedMeasured) -> list[str]:
    """What to warn about in one paced run: no result, errors, no stream completed, never settled."""
    if measured.result is None:
        return [f"{where}: {measured.error}"]
    result = measured.result
    found: list[str] = []
    if result.error_count:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in result.errors.items() if n)
        found.append(f"{where}: errors ({kinds}); first: {result.first_error}")
    if (
        measured.rss_peak_mb is not None
        and measured.rss_after_mb is not None
        and measured.rss_after_mb > measured.rss_peak_mb + TEARDOWN_GROWTH_WARN_MB
    ):
        found.append(
            f"{where}: RSS went from {measured.rss_peak_mb:.0f} MB (peak while streaming) to "
            f"{measured.rss_after_mb:.0f} MB {TEARDOWN_WAIT_S:g} s after the streams still open at the window's end "
            "were cut"
        )
    if result.completed == 0:
        found.append(f"{where}: no stream completed in the window")
    elif not result.settled:
        found.append(
            f"{where}: not every connection had ended a stream after {result.settled_after_s:.0f} s; "
            "the window started anyway"
        )
    return found


def run_and_report(opts: Options) -> Path:
    # Thousands of paced streams need as many sockets in the gateway (twice: client and upstream side), the
    # relay and the fake upstream, which inherit this limit.
    paced.raise_open_file_limit()
    plan = plan_cpus(opts.pin)
    pin_self(plan.load)
    results = Bench(opts, plan).run()
    targets = evaluate_targets(results, opts.connections)
    print(render(results, targets), flush=True)
    path = opts.results_dir / f"bench-{results.config['started']}.json"
    document: dict[str, Any] = results.to_dict([t.to_dict() for t in targets])
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print(f"\nresults written to {path}", flush=True)
    if results.limits is not None and results.limits.invalid:
        raise LimitsRefused("; ".join(results.limits.invalid))
    return path

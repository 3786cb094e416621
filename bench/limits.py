"""The limits scenario: what a key with rpm, tpm and a budget costs next to a key without limits, with the limits
counted in the gateway's process and in Redis (bench/README.md, "Limits").

The limited key's limits are far above anything a run reaches, so nothing is refused while every counting path
runs: the rpm window, the prompt's token count at admission, the tpm and budget reservations and their settle.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.client import Connection, Endpoint, request_body
from bench.procs import (
    BenchSetupError,
    CpuPlan,
    ManagedProcess,
    find_listening_pid,
    free_port,
    gophergate_executable,
    start_gateway,
)
from bench.results import NON_STREAM, STREAM, Measured, ratio
from bench.rss import MB, RssSampler, tree_cpu_seconds

LIMITED_KEY_NAME = "bench-limited"
LIMITED_RPM = 100_000_000
LIMITED_TPM = 1_000_000_000
"""A request reserves its prompt plus its output limit (16,384 tokens for gpt-4o-mini) until it settles."""
LIMITED_BUDGET_USD = 1_000_000
LIMITED_BUDGET_PERIOD = "month"

UNLIMITED = "unlimited"
LIMITED = "limited"
IN_PROCESS = "in-process"
REDIS = "redis"
MODES = (NON_STREAM, STREAM)
TARGET_PCT = {IN_PROCESS: 90.0, REDIS: 80.0}
"""The issue's targets: the limited key's req/s as a share of the unlimited key's, per store."""

COUNTED_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-gophergate-budget-remaining-usd")
"""Headers on every answer to a request that rpm, tpm and a budget counted (docs/governance.md)."""
TOKENIZER_GROWTH_MB = 50.0
TOKENIZER_WAIT_S = 15.0
REDIS_PREFIX_STEM = "gophergate-bench-"
"""The Redis gateway's ``GOPHERGATE_REDIS_KEY_PREFIX`` is this plus a random token: a run starts with no counter
(a fresh data dir numbers its keys from 1 again) and shares none with anyone else on that Redis."""

Measure = Callable[[Endpoint, str, float, int, str | None], Measured]
"""Runs wrk against a gateway on the gateway's CPU: (endpoint, mode, seconds, its pid, where to name it in the
problems seen, or None for a warm-up whose problems do not matter)."""


class LimitsRefused(RuntimeError):
    """The limited key was refused (or not counted) during the run: its figures do not measure the limits."""


@dataclass(frozen=True)
class CreatedKey:
    id: int
    key: str


def limited_key_args() -> list[str]:
    return [
        "keys",
        "create",
        "--name",
        LIMITED_KEY_NAME,
        "--rpm",
        str(LIMITED_RPM),
        "--tpm",
        str(LIMITED_TPM),
        "--budget",
        str(LIMITED_BUDGET_USD),
        "--budget-period",
        LIMITED_BUDGET_PERIOD,
    ]


def parse_created_key(stdout: str, stderr: str) -> CreatedKey:
    """The key `gophergate keys create` printed (its last stdout line) and its id (from ``created key N`` on
    stderr)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    found = re.search(r"created key (\d+)", stderr)
    if not lines or not lines[-1].startswith("sk-") or found is None:
        raise BenchSetupError(f"`gophergate keys create` printed no key and id:\n{stdout}\n{stderr}")
    return CreatedKey(int(found.group(1)), lines[-1])


def create_limited_key(env: dict[str, str], cwd: Path) -> CreatedKey:
    cmd = [gophergate_executable(), *limited_key_args()]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchSetupError(f"`gophergate keys create` exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return parse_created_key(proc.stdout, proc.stderr)


def interleaved(rounds: int, first: str = UNLIMITED, second: str = LIMITED) -> list[str]:
    """The order of one mode's runs: unlimited, limited, then limited, unlimited, and so on (or ``first`` and
    ``second``). Each pair of rounds is symmetric in time, so a drift of the machine's speed that is linear over
    the pair cancels out."""
    order: list[str] = []
    for n in range(rounds):
        order += [first, second] if n % 2 == 0 else [second, first]
    return order


def redacted(url: str) -> str:
    """A Redis URL without its password, for the report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=f"{user}{host}{port}").geturl()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class KeyRuns:
    """One key's runs of one mode; figures are means over the runs that have a result."""

    runs: list[Measured] = field(default_factory=list)

    def _values(self, attr: str) -> list[float]:
        return [getattr(m.result, attr) for m in self.runs if m.result is not None and m.result.requests]

    @property
    def requests_per_s(self) -> float | None:
        return _mean([m.result.requests_per_s for m in self.runs if m.result is not None])

    @property
    def p50_ms(self) -> float | None:
        return _mean(self._values("p50_ms"))

    @property
    def p99_ms(self) -> float | None:
        return _mean(self._values("p99_ms"))

    @property
    def failed(self) -> int:
        """Non-2xx answers, socket errors and timeouts over the runs."""
        return sum(m.result.non_2xx + m.result.socket_errors + m.result.timeouts for m in self.runs if m.result)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_per_s": self.requests_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "failed": self.failed,
            "runs": [m.to_dict() for m in self.runs],
        }


@dataclass
class ModeComparison:
    mode: str
    unlimited: KeyRuns = field(default_factory=KeyRuns)
    limited: KeyRuns = field(default_factory=KeyRuns)
    order: list[str] = field(default_factory=list)
    """Which key each run used, in run order."""

    @property
    def ratio_pct(self) -> float | None:
        """The limited key's req/s as a percentage of the unlimited key's."""
        return ratio(self.limited.requests_per_s, self.unlimited.requests_per_s)

    def refusal(self) -> str | None:
        """Why the limited key's runs do not measure counting alone: it got non-2xx answers (429s: the bench's
        limits were reached), socket errors or timeouts."""
        if not self.limited.failed:
            return None
        return (
            f"{self.mode}: the limited key got {self.limited.failed:,} non-2xx answers or errors (429s mean the "
            "bench's limits were reached: its figures do not measure counting alone)"
        )

    def rounds_rps(self) -> list[tuple[str, float | None]]:
        """Each run's req/s, in run order."""
        taken = {UNLIMITED: iter(self.unlimited.runs), LIMITED: iter(self.limited.runs)}
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
            "unlimited": self.unlimited.to_dict(),
            "limited": self.limited.to_dict(),
            "limited_pct_of_unlimited": self.ratio_pct,
        }


@dataclass
class BackendRun:
    """The comparison on one gateway: its limits in its process (``in-process``) or in Redis (``redis``)."""

    name: str
    gateway: str = ""
    skipped: str | None = None
    store: str | None = None
    """The limits mode the gateway's /readyz reported."""
    modes: list[ModeComparison] = field(default_factory=list)
    rss_before_mb: float | None = None
    """Before the limited key's first request (the tokenizer not loaded yet)."""
    rss_after_mb: float | None = None
    tokenizer_loaded_after_s: float | None = None
    """Seconds from the limited key's first request until the gateway's RSS grew by the tokenizer's size."""
    redis_counters: int | None = None
    """Keys of the limited key's scope in Redis after the run (the counters really live there)."""
    redis_cpu_percent: float | None = None
    """CPU the Redis server used during the limited key's runs (100 = one core), when it runs on this machine."""
    invalid: list[str] = field(default_factory=list)
    """Why the limited key's figures do not measure the limits (refusals, uncounted requests)."""

    def comparison(self, mode: str) -> ModeComparison | None:
        return next((m for m in self.modes if m.mode == mode), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "gateway": self.gateway,
            "skipped": self.skipped,
            "store": self.store,
            "modes": [m.to_dict() for m in self.modes],
            "rss_before_mb": self.rss_before_mb,
            "rss_after_mb": self.rss_after_mb,
            "tokenizer_loaded_after_s": self.tokenizer_loaded_after_s,
            "redis_counters": self.redis_counters,
            "redis_cpu_percent": self.redis_cpu_percent,
            "invalid": self.invalid,
            "target_pct": TARGET_PCT.get(self.name),
        }


@dataclass
class LimitsRun:
    config: dict[str, Any] = field(default_factory=dict)
    backends: list[BackendRun] = field(default_factory=list)
    skipped: str | None = None

    def backend(self, name: str) -> BackendRun | None:
        return next((b for b in self.backends if b.name == name), None)

    @property
    def invalid(self) -> list[str]:
        return [f"{b.name}: {why}" for b in self.backends for why in b.invalid]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "skipped": self.skipped, "backends": [b.to_dict() for b in self.backends]}


def limits_config(connections: int, duration_s: float, rounds: int, redis_url: str | None) -> dict[str, Any]:
    return {
        "key": {
            "rpm": LIMITED_RPM,
            "tpm": LIMITED_TPM,
            "budget_usd": LIMITED_BUDGET_USD,
            "budget_period": LIMITED_BUDGET_PERIOD,
        },
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "order": interleaved(rounds),
        "redis_url": redacted(redis_url) if redis_url else None,
    }


# -- Redis ------------------------------------------------------------------------------------------------


def redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used (None when it answers PING)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def redis_prefix() -> str:
    return f"{REDIS_PREFIX_STEM}{secrets.token_hex(4)}:"


def scope_pattern(prefix: str, key_id: int) -> str:
    """The Redis keys of one client key's counters under a gateway's ``GOPHERGATE_REDIS_KEY_PREFIX``
    (``{prefix}limits:s:{kind}:{id}:...``, gophergate/limits/redis.py)."""
    return f"{prefix}limits:s:key:{key_id}:*"


def _redis_keys(url: str, pattern: str, delete: bool) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        found = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(found), 1000) if delete else ():
            client.delete(*found[start : start + 1000])
        return len(found)
    finally:
        client.close()


# -- the runs ---------------------------------------------------------------------------------------------


def limits_mode(base_url: str) -> str | None:
    """The limits mode the gateway's /readyz reports (``memory``, ``redis``, ``redis-unavailable``)."""
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        mode = orjson.loads(body)["details"]["limits"]["mode"]
        return str(mode)
    return None


def _probe(endpoint: Endpoint, model: str, stream: bool) -> tuple[int, dict[str, str], bytes]:
    with Connection(endpoint.host, endpoint.port) as conn:
        conn.send(endpoint.raw_request(request_body(model, stream)))
        response = conn.read_response()
    return response.status, response.headers, response.body


def rss_mb(sampler: RssSampler) -> float | None:
    sample = sampler.sample()
    return None if sample is None else round(sample.total_bytes / MB, 1)


def wait_for_tokenizer(sampler: RssSampler, before_mb: float | None) -> float | None:
    """Seconds until the RSS grew by the tokenizer's size (it loads in the background at the first counted
    request), so that no run measures its loading; None when that was not seen within the wait."""
    started = time.monotonic()
    while before_mb is not None and time.monotonic() - started < TOKENIZER_WAIT_S:
        now = rss_mb(sampler)
        if now is not None and now - before_mb >= TOKENIZER_GROWTH_MB:
            time.sleep(0.5)
            return round(time.monotonic() - started, 1)
        time.sleep(0.1)
    return None


@dataclass
class Comparison:
    """Runs the comparison on one gateway; ``measure`` is the bench's wrk runner."""

    measure: Measure
    model: str
    duration_s: float
    rounds: int
    warmup_s: float
    log: Callable[[str], None]

    def run(
        self,
        backend: BackendRun,
        unlimited: Endpoint,
        limited: Endpoint,
        pid: int,
        warm_unlimited: bool,
        redis_pid: int | None = None,
    ) -> None:
        sampler = RssSampler(pid)
        backend.rss_before_mb = rss_mb(sampler)
        for stream in (False, True):
            for who, endpoint in ((UNLIMITED, unlimited), (LIMITED, limited)):
                status, headers, body = _probe(endpoint, self.model, stream)
                kind = STREAM if stream else NON_STREAM
                if status != 200:
                    backend.invalid.append(f"{who} key, {kind}: HTTP {status}: {body[:200]!r}")
                elif who == LIMITED and (missing := [h for h in COUNTED_HEADERS if h not in headers]):
                    backend.invalid.append(f"{who} key, {kind}: no {', '.join(missing)}: the request was not counted")
        if backend.invalid:
            return
        backend.tokenizer_loaded_after_s = wait_for_tokenizer(sampler, backend.rss_before_mb)
        for mode in MODES:
            keys = [(LIMITED, limited)] + ([(UNLIMITED, unlimited)] if warm_unlimited else [])
            for who, endpoint in keys:
                self.log(f"limits, {backend.name}: warm-up, {who} key, {mode}, {self.warmup_s:g} s")
                self.measure(endpoint, mode, self.warmup_s, pid, None)
        redis_cpu_s = redis_wall_s = 0.0
        for mode in MODES:
            comparison = ModeComparison(mode, order=interleaved(self.rounds))
            backend.modes.append(comparison)
            for who in comparison.order:
                self.log(f"limits, {backend.name}: {mode}, {who} key, {self.duration_s:g} s")
                endpoint = limited if who == LIMITED else unlimited
                runs = comparison.limited if who == LIMITED else comparison.unlimited
                where = f"limits {backend.name} {mode}, {who} key"
                cpu_before = tree_cpu_seconds(redis_pid) if redis_pid and who == LIMITED else None
                started = time.monotonic()
                runs.runs.append(self.measure(endpoint, mode, self.duration_s, pid, where))
                cpu_after = tree_cpu_seconds(redis_pid) if cpu_before is not None and redis_pid else None
                if cpu_before is not None and cpu_after is not None:
                    redis_cpu_s += cpu_after - cpu_before
                    redis_wall_s += time.monotonic() - started
            if (refused := comparison.refusal()) is not None:
                backend.invalid.append(refused)
        if redis_wall_s > 0:
            backend.redis_cpu_percent = round(redis_cpu_s / redis_wall_s * 100, 1)
        time.sleep(1.0)
        backend.rss_after_mb = rss_mb(sampler)


def _local_redis_pid(url: str) -> int | None:
    """The Redis server's pid when it listens on this machine's loopback (for its CPU use)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return find_listening_pid(parts.port or 6379)


def _last_error(text: str) -> str:
    """The last line of a log that names an exception (``ModuleNotFoundError: ...``), else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return named[-1] if named else (lines[0] if lines else "no output")


@dataclass
class RedisGateway:
    """How to start the second gateway, the one that keeps its limits in Redis."""

    env: dict[str, str]
    cwd: Path
    plan: CpuPlan
    log_path: Path


def run_redis(
    comparison: Comparison,
    redis_url: str | None,
    start: RedisGateway,
    unlimited_key: str,
    limited: CreatedKey,
) -> BackendRun:
    backend = BackendRun(REDIS)
    if not redis_url:
        backend.skipped = "no Redis URL (--redis-url)"
        return backend
    problem = redis_problem(redis_url)
    if problem is not None:
        backend.skipped = f"Redis at {redacted(redis_url)} did not answer ({problem})"
        return backend
    prefix = redis_prefix()
    port = free_port()
    env = {**start.env, "GOPHERGATE_REDIS_URL": redis_url, "GOPHERGATE_REDIS_KEY_PREFIX": prefix}
    comparison.log(f"limits, redis: starting a second gateway on 127.0.0.1:{port} with GOPHERGATE_REDIS_URL")
    try:
        proc: ManagedProcess = start_gateway(port, env, start.plan, start.log_path, cwd=start.cwd)
    except BenchSetupError as exc:
        backend.skipped = (
            f"the gateway did not start with GOPHERGATE_REDIS_URL ({_last_error(str(exc))}; log in {start.log_path})"
        )
        return backend
    try:
        base = f"http://127.0.0.1:{port}"
        backend.gateway = f"{base} (gophergate serve --workers 1, pid {proc.pid}, log {start.log_path})"
        backend.store = limits_mode(base)
        if backend.store != "redis":
            backend.invalid.append(f"/readyz reports the limits mode {backend.store!r}, not 'redis'")
            return backend
        comparison.run(
            backend,
            Endpoint.from_url(base, unlimited_key),
            Endpoint.from_url(base, limited.key),
            proc.pid,
            True,
            redis_pid=_local_redis_pid(redis_url),
        )
        backend.redis_counters = _redis_keys(redis_url, scope_pattern(prefix, limited.id), delete=False)
        if backend.modes and not backend.redis_counters:
            backend.invalid.append("no counter of the limited key in Redis after the run")
        if not proc.alive():
            backend.invalid.append(f"the gateway with Redis exited during the run:\n{proc.log_tail()}")
    finally:
        proc.stop()
        with contextlib.suppress(Exception):  # leave nothing behind; a failure here changes no figure
            _redis_keys(redis_url, f"{prefix}*", delete=True)
    return backend

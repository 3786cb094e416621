"""Run wrk with a generated Lua script and parse its results."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

RESULT_MARKER = "GOPHERGATE_BENCH_RESULT "

# `done` prints exact percentiles (wrk's text output rounds them and has no p99.9) as one JSON line.
_DONE_FUNCTION = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"p999_us":%.1f,"mean_us":%.1f,"max_us":%.1f}\n',
    "__MARKER__", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured. Latencies are in milliseconds."""

    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    timeouts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WrkError(RuntimeError):
    pass


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: install it with `apt-get install -y wrk`")
    return path


def _lua_string(value: str) -> str:
    """A Lua long-bracket string literal that holds ``value`` verbatim."""
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    eq = "=" * level
    return f"[{eq}[{value}]{eq}]"


def lua_script(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    return "\n".join(lines) + "\n" + _DONE_FUNCTION.replace("__MARKER__", RESULT_MARKER)


def parse_output(output: str, connections: int) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = orjson.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no result line; its output was:\n{output}")
    duration_s = raw["duration_us"] / 1e6
    requests = int(raw["requests"])
    return WrkResult(
        connections=connections,
        duration_s=round(duration_s, 3),
        requests=requests,
        requests_per_s=requests / duration_s if duration_s > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        socket_errors=int(raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]),
        non_2xx=int(raw["status_errors"]),
        timeouts=int(raw["timeouts"]),
    )


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    timeout_s: float = 10.0,
    cpu_prefix: list[str] | None = None,
) -> WrkResult:
    """Run wrk against ``url`` posting ``body`` and return its measurements."""
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="gg-bench-wrk-") as tmp:
        script = Path(tmp) / "request.lua"
        script.write_text(lua_script(body, headers))
        cmd = [
            *(cpu_prefix or []),
            wrk,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    if proc.returncode != 0 or proc.stderr.strip():
        # wrk reports Lua errors on stderr but still exits 0.
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_output(proc.stdout, connections)

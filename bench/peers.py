"""`python -m bench.peers` (`make bench-peers`): the same load against GopherGate and the LiteLLM proxy.

Both run on the same machine in the same run, one worker each, pinned to the same CPU, in front of the same
fake upstream (``bench/fake_upstream.py``): 64-client non-streaming and streaming load, 1-client
non-streaming latency, and 1,000 concurrent paced streams (20 chunks 50 ms apart). It prints both sides and
GopherGate's ratio over LiteLLM, and writes the figures as JSON to ``bench/results/``.

LiteLLM is installed once, pinned to ``LITELLM_VERSION``, into its own virtualenv under ``bench/.cache/``
(git-ignored; ``--cache-dir`` to move it). It is configured as its production docs advise: no database
(so no spend or error logs are written), a master key for auth, ``LITELLM_LOG=ERROR``,
``LITELLM_MODE=PRODUCTION``, ``set_verbose: false``, ``json_logs: true`` and the bundled model cost map
(``LITELLM_LOCAL_MODEL_COST_MAP=True``, nothing fetched). GopherGate runs with its defaults (request log to
SQLite on). A side that fails a scenario is reported with its errors; the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import fake_upstream
from bench.client import Endpoint, check_endpoint, request_body
from bench.machine import describe_machine
from bench.paced import raise_open_file_limit
from bench.procs import (
    REPO_ROOT,
    BenchSetupError,
    CpuPlan,
    ManagedProcess,
    create_client_key,
    free_port,
    gateway_env,
    pin_self,
    plan_cpus,
    start_fake_upstream,
    start_gateway,
    wait_for_healthz,
)
from bench.report import header_lines, render_paced
from bench.results import NON_STREAM, STREAM, Measured, PacedScenario, Scenario
from bench.rss import MB, RssSampler, tree_cpu_seconds
from bench.runner import log, measure_paced, paced_problems
from bench.wrk import WrkError, find_wrk, run_wrk

LITELLM_VERSION = "1.108.6"
"""The newest litellm whose ``[proxy]`` extra installs from PyPI here (later ones need unreleased extras)."""
DEFAULT_CACHE = REPO_ROOT / "bench" / ".cache"
SIDES = ("gophergate", "litellm")
LABELS = {"gophergate": "GopherGate", "litellm": "LiteLLM"}
STAMP = ".bench-installed"


def litellm_config(upstream_port: int, models: list[str], master_key: str) -> str:
    """The proxy's config.yaml (JSON is valid YAML): each model routed to the fake upstream as OpenAI-compatible."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "sk-bench",
                },
            }
            for model in models
        ],
        "litellm_settings": {"set_verbose": False, "json_logs": True, "request_timeout": 600},
        "general_settings": {
            "master_key": master_key,
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }
    return orjson.dumps(config, option=orjson.OPT_INDENT_2).decode()


def litellm_env(base: dict[str, str]) -> dict[str, str]:
    """LiteLLM's environment: the bench's hermetic one, quiet and production mode, no database, no fetches."""
    env = {name: value for name, value in base.items() if name not in ("DATABASE_URL",)}
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "NO_DOCS": "True",
        }
    )
    return env


def ensure_litellm(cache_dir: Path, version: str = LITELLM_VERSION) -> Path:
    """The ``litellm`` executable of the cached virtualenv, created and installed on first use."""
    venv = cache_dir / f"litellm-{version}"
    exe = venv / "bin" / "litellm"
    stamp = venv / STAMP
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return exe
    log(f"installing litellm[proxy]=={version} into {venv} (once; a few minutes)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    proc = subprocess.run([*pip, f"litellm[proxy]=={version}"], capture_output=True, text=True)
    if proc.returncode != 0 or not exe.exists():
        raise BenchSetupError(
            f"installing litellm[proxy]=={version} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    stamp.write_text(version + "\n")
    return exe


def start_litellm(
    exe: Path, config: Path, port: int, env: dict[str, str], plan: CpuPlan, log_path: Path, cwd: Path
) -> ManagedProcess:
    cmd = [
        *plan.prefix(plan.gateway),
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = ManagedProcess("LiteLLM proxy", cmd, env, log_path, cwd=cwd)
    try:
        wait_for_healthz(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout_s=180)
    except BenchSetupError:
        proc.stop()
        raise
    return proc


@dataclass
class PeerResults:
    config: dict[str, Any]
    scenarios: list[Scenario] = field(default_factory=list)
    """Each scenario's ``gateway`` is GopherGate and its ``direct`` is LiteLLM."""
    paced: PacedScenario | None = None
    rss_after_mb: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "scenarios": [
                {
                    "mode": sc.mode,
                    "connections": sc.connections,
                    "gophergate": sc.gateway.to_dict(),
                    "litellm": sc.direct.to_dict(),
                    "gophergate_rps_over_litellm": times(sc),
                }
                for sc in self.scenarios
            ],
            "paced": self.paced.to_dict() if self.paced else None,
            "rss_after_mb": self.rss_after_mb,
            "problems": self.problems,
        }


def times(sc: Scenario) -> float | None:
    """GopherGate's req/s over LiteLLM's (2.0: twice as many)."""
    pct = sc.throughput_ratio("direct")
    return None if pct is None else pct / 100


def wrk_measure(
    endpoint: Endpoint,
    model: str,
    mode: str,
    connections: int,
    duration_s: float,
    pid: int,
    plan: CpuPlan,
    timeout_s: float = 10.0,
) -> Measured:
    cpu_before = tree_cpu_seconds(pid)
    started = time.monotonic()
    try:
        result = run_wrk(
            endpoint.url,
            request_body(model, stream=mode == STREAM),
            endpoint.headers,
            connections=connections,
            duration_s=duration_s,
            timeout_s=timeout_s,
            cpu_prefix=plan.prefix(plan.load),
        )
    except (WrkError, subprocess.TimeoutExpired) as exc:
        return Measured(error=str(exc))
    elapsed = time.monotonic() - started
    cpu_after = tree_cpu_seconds(pid)
    cpu = None
    if cpu_before is not None and cpu_after is not None and cpu_after >= cpu_before:
        cpu = round((cpu_after - cpu_before) / elapsed * 100, 1)
    return Measured(result=result, server_cpu_percent=cpu)


def _errors(where: str, measured: Measured) -> list[str]:
    if measured.result is None:
        return [f"{where}: {measured.error}"]
    r = measured.result
    if r.requests == 0:
        return [f"{where}: no request completed"]
    if r.non_2xx or r.socket_errors or r.timeouts:
        return [f"{where}: {r.non_2xx:,} non-2xx, {r.socket_errors:,} socket errors, {r.timeouts:,} timeouts"]
    return []


def run_peers(args: argparse.Namespace) -> PeerResults:
    find_wrk()
    raise_open_file_limit()
    plan = plan_cpus(not args.no_pin)
    pin_self(plan.load)
    exe = ensure_litellm(args.cache_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    paced_model = args.model + fake_upstream.PACED_SUFFIX
    results = PeerResults(
        config={
            "started": stamp,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": describe_machine(),
            "command": " ".join(["python -m bench.peers", *args.argv]),
            "cpus": plan.describe().replace("gateway", "server under test"),
            "litellm": f"litellm[proxy]=={LITELLM_VERSION}, 1 worker, no database, LITELLM_LOG=ERROR",
            "gophergate": "gophergate serve --workers 1, defaults (request log to SQLite on)",
            "duration_s": args.duration,
            "paced_streams": args.paced_streams,
        }
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gg-peers-")))
        upstream_port = free_port()
        fake = start_fake_upstream(upstream_port, plan, tmp / "fake-upstream.log")
        stack.callback(fake.stop)

        data_dir = tmp / "data"
        data_dir.mkdir()
        env = gateway_env(upstream_port, data_dir, {})
        key = create_client_key(env, cwd=tmp)
        gg_port = free_port()
        log(f"starting GopherGate on 127.0.0.1:{gg_port}")
        gg = start_gateway(gg_port, env, plan, args.results_dir / f"peers-gophergate-{stamp}.log", cwd=tmp)
        stack.callback(gg.stop)

        master = "sk-bench-" + secrets.token_hex(16)
        config = tmp / "litellm.yaml"
        config.write_text(litellm_config(upstream_port, [args.model, paced_model], master))
        ll_port = free_port()
        log(f"starting the LiteLLM proxy {LITELLM_VERSION} on 127.0.0.1:{ll_port} (slow to start)")
        ll_log = args.results_dir / f"peers-litellm-{stamp}.log"
        ll = start_litellm(exe, config, ll_port, litellm_env(env), plan, ll_log, cwd=tmp)
        stack.callback(ll.stop)

        sides = {
            "gophergate": (Endpoint.from_url(f"http://127.0.0.1:{gg_port}", key), gg),
            "litellm": (Endpoint.from_url(f"http://127.0.0.1:{ll_port}", master), ll),
        }
        for name, (endpoint, _) in sides.items():
            for mode, problems in check_endpoint(endpoint, args.model, fake_upstream.STREAM_CONTENT_CHUNKS).items():
                results.problems.extend(f"{LABELS[name]} {mode} response check: {p}" for p in problems)
            for mode in (NON_STREAM, STREAM):
                log(f"warm-up: {LABELS[name]} {mode}, 64 clients, {args.warmup:g} s")
                wrk_measure(endpoint, args.model, mode, 64, args.warmup, sides[name][1].pid, plan)

        for mode, connections in ((NON_STREAM, 64), (STREAM, 64), (NON_STREAM, 1)):
            scenario = Scenario(mode, connections)
            results.scenarios.append(scenario)
            for name, (endpoint, proc) in sides.items():
                if not proc.alive():
                    measured = Measured(error=f"{LABELS[name]} is not running")
                else:
                    log(f"{scenario.label}: {LABELS[name]}, {args.duration:g} s")
                    measured = wrk_measure(endpoint, args.model, mode, connections, args.duration, proc.pid, plan)
                results.problems.extend(_errors(f"{LABELS[name]} {scenario.label}", measured))
                if name == "gophergate":
                    scenario.gateway = measured
                else:
                    scenario.direct = measured

        for streams in args.paced_streams:
            paced = PacedScenario(streams)
            results.paced = paced
            for name, (endpoint, proc) in sides.items():
                log(f"paced streams, {streams:,} concurrent: {LABELS[name]}, {args.duration:g} s window")
                measured = measure_paced(
                    endpoint, paced_model, streams, args.duration, proc.pid, plan.prefix(plan.load)
                )
                paced.sides[name] = measured
                results.problems.extend(paced_problems(f"{LABELS[name]} paced {streams:,} streams", measured))

        for name, (_, proc) in sides.items():
            sample = RssSampler(proc.pid).sample() if proc.alive() else None
            results.rss_after_mb[name] = round(sample.total_bytes / MB, 1) if sample else None
            if not proc.alive():
                results.problems.append(f"{LABELS[name]} exited during the run; log tail:\n{proc.log_tail()}")
    return results


def render_peers(results: PeerResults) -> str:
    out = header_lines(results.config, "GopherGate vs LiteLLM proxy (same machine, same run, 1 worker each)")
    out.append(f"  GopherGate : {results.config['gophergate']}")
    out.append(f"  LiteLLM    : {results.config['litellm']}")
    out.append(f"  load       : wrk -t1, {results.config['duration_s']:g} s per run; paced: python -m bench.paced")
    out.append("")
    header = (
        f"{'scenario':<22} | {'GopherGate req/s':>16} {'p50 ms':>8} {'p99 ms':>8} | "
        f"{'LiteLLM req/s':>13} {'p50 ms':>8} {'p99 ms':>8} | {'req/s ratio':>11}"
    )
    out.append(header)
    out.append("-" * len(header))
    for sc in results.scenarios:
        cells = []
        for measured in (sc.gateway, sc.direct):
            r = measured.result
            if r is None or not r.requests:
                cells.append(
                    f"{'error' if measured.error or r is not None else '-':>{16 if not cells else 13}} "
                    f"{'-':>8} {'-':>8}"
                )
            else:
                width = 16 if not cells else 13
                cells.append(f"{r.requests_per_s:>{width},.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}")
        x = times(sc)
        out.append(f"{sc.label:<22} | {cells[0]} | {cells[1]} | {'-' if x is None else f'{x:.1f}x':>11}")
    if results.paced is not None:
        out.append("")
        out.append("paced streams (20 chunks 50 ms apart), whole-stream latency, server CPU and peak RSS:")
        out.extend(render_paced([results.paced], "gophergate", "GopherGate", ["litellm"], as_times=True))
    out.append("")
    rss = ", ".join(
        f"{LABELS[name]} {'-' if mb is None else f'{mb:.0f} MB'}" for name, mb in results.rss_after_mb.items()
    )
    out.append(f"RSS at the end (process tree): {rss}")
    if results.problems:
        out.append("")
        out.append("problems seen:")
        out.extend(f"  - {p}" for p in results.problems)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run and paced window (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per side and mode (2)")
    parser.add_argument("--paced-streams", type=int, nargs="*", default=[1000], help="paced concurrencies (1000)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where LiteLLM's virtualenv lives")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    try:
        results = run_peers(args)
    except (BenchSetupError, WrkError, subprocess.CalledProcessError) as exc:
        log(f"cannot run the comparison: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    print(render_peers(results), flush=True)
    path = args.results_dir / f"peers-{results.config['started']}.json"
    path.write_bytes(orjson.dumps(results.to_dict(), option=orjson.OPT_INDENT_2))
    print(f"\nresults written to {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

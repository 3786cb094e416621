"""`python -m bench`: benchmark the gateway against a fake upstream (see bench/README.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.limits import LimitsRefused, redacted
from bench.procs import REPO_ROOT, BenchSetupError
from bench.runner import Options, log, run_and_report
from bench.wrk import WrkError

DEFAULTS = {
    "duration": 10.0,
    "warmup": 2.0,
    "ttfc_requests": 2000,
    "limits_duration": 4.0,
    "routing_duration": 4.0,
    "front_door_duration": 4.0,
}
QUICK = {
    "duration": 2.0,
    "warmup": 1.0,
    "ttfc_requests": 300,
    "limits_duration": 2.0,
    "routing_duration": 2.0,
    "front_door_duration": 2.0,
}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return counts


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _shown(arg: str) -> str:
    """A command-line argument as the report shows it: a URL without its password."""
    head, sep, url = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    return head + sep + redacted(url) if "://" in url else arg


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Start a fake upstream and the gateway (1 worker), load both with wrk and print requests/s, "
            "p50/p99 latency, the gateway's added latency and time to first chunk, and its peak RSS."
        ),
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10, --quick 2)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients of the loaded runs")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--warmup", type=float, help="seconds of gateway warm-up per mode (default 2)")
    parser.add_argument("--ttfc-requests", type=int, help="sequential streams for time to first chunk")
    parser.add_argument(
        "--soak-requests",
        type=int,
        default=100_000,
        help="top up the load until the gateway has served this many requests, then read its RSS",
    )
    parser.add_argument("--target", metavar="URL", help="bench this already-running server instead")
    parser.add_argument("--key", help="client key for --target (sent as a Bearer token)")
    parser.add_argument("--target-pid", type=int, help="pid of --target, for RSS (found from its port if omitted)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--no-floor",
        "--no-relay",
        dest="no_floor",
        action="store_true",
        help="skip the minimal relay (bench/floor_relay.py), the machine floor",
    )
    parser.add_argument(
        "--no-paced", action="store_true", help="skip the paced scenario (concurrent streams of 20 chunks 50 ms apart)"
    )
    parser.add_argument(
        "--paced-streams",
        type=_counts,
        default=[1000, 3000],
        metavar="N[,N...]",
        help="concurrent streams of the paced scenario (default 1000,3000)",
    )
    parser.add_argument(
        "--no-limits", action="store_true", help="skip the limits scenario (a key with rpm, tpm and a budget)"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("GOPHERGATE_BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis for the limits scenario's second gateway (default $GOPHERGATE_BENCH_REDIS_URL or "
        f"{DEFAULT_REDIS_URL}; empty skips that half)",
    )
    parser.add_argument("--limits-duration", type=float, help="seconds per run of the limits scenario (default 4)")
    parser.add_argument(
        "--limits-rounds", type=int, default=2, help="runs per key and mode in the limits scenario (default 2)"
    )
    parser.add_argument(
        "--no-routing",
        action="store_true",
        help="skip the routing scenario (a model group of two targets against the plain model)",
    )
    parser.add_argument(
        "--routing-duration", type=float, help="seconds per run of the routing scenario (default 4, --quick 2)"
    )
    parser.add_argument(
        "--routing-rounds", type=int, default=2, help="runs per model and mode in the routing scenario (default 2)"
    )
    parser.add_argument(
        "--no-front-door",
        action="store_true",
        help="skip the front-door scenario (Anthropic Messages and Responses, translated, against chat)",
    )
    parser.add_argument(
        "--front-door-duration", type=float, help="seconds per run of the front-door scenario (default 4, --quick 2)"
    )
    parser.add_argument(
        "--front-door-rounds", type=int, default=2, help="runs per door and mode in the front-door scenario (default 2)"
    )
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument(
        "--gateway-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for the gateway (repeatable)",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    if args.limits_rounds < 1:
        parser.error("--limits-rounds must be at least 1")
    if args.routing_rounds < 1:
        parser.error("--routing-rounds must be at least 1")
    if args.front_door_rounds < 1:
        parser.error("--front-door-rounds must be at least 1")
    return Options(
        duration_s=args.duration if args.duration is not None else base["duration"],
        connections=args.connections,
        threads=max(1, args.threads),
        warmup_s=args.warmup if args.warmup is not None else base["warmup"],
        ttfc_requests=args.ttfc_requests if args.ttfc_requests is not None else int(base["ttfc_requests"]),
        soak_requests=args.soak_requests,
        pin=not args.no_pin,
        model=args.model,
        results_dir=args.results_dir,
        target=args.target,
        key=args.key,
        target_pid=args.target_pid,
        gateway_env=dict(args.gateway_env),
        floor=not args.no_floor,
        paced_streams=[] if args.no_paced else args.paced_streams,
        limits=not args.no_limits,
        redis_url=args.redis_url or None,
        limits_duration_s=args.limits_duration if args.limits_duration is not None else base["limits_duration"],
        limits_rounds=args.limits_rounds,
        routing=not args.no_routing,
        routing_duration_s=args.routing_duration if args.routing_duration is not None else base["routing_duration"],
        routing_rounds=args.routing_rounds,
        front_door=not args.no_front_door,
        front_door_duration_s=(
            args.front_door_duration if args.front_door_duration is not None else base["front_door_duration"]
        ),
        front_door_rounds=args.front_door_rounds,
        command=" ".join(["python -m bench", *map(_shown, sys.argv[1:] if argv is None else argv)]),
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        run_and_report(opts)
    except (BenchSetupError, WrkError) as exc:
        log(f"cannot run the benchmark: {exc}")
        return 1
    except LimitsRefused as exc:
        log(f"the limits scenario is invalid (the results were written): {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

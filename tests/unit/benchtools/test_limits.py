"""The bench's limits scenario: run order, the limited key, the comparison's figures, targets, report, JSON and
options (no load is run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from bench.__main__ import parse_args
from bench.limits import (
    IN_PROCESS,
    LIMITED,
    REDIS,
    UNLIMITED,
    BackendRun,
    KeyRuns,
    LimitsRun,
    ModeComparison,
    _last_error,
    create_limited_key,
    interleaved,
    limits_config,
    parse_created_key,
    redacted,
    scope_pattern,
)
from bench.procs import BenchSetupError, gateway_env, gophergate_executable
from bench.report import evaluate_targets, limits_targets, render
from bench.results import NON_STREAM, STREAM, BenchResults, Measured
from bench.wrk import WrkResult


def _run(rps: float, p50: float, p99: float, non_2xx: int = 0) -> Measured:
    return Measured(result=WrkResult(64, 4.0, int(rps * 4), rps, p50, p50, p99, p99, p50, p99, 0, non_2xx, 0))


def _comparison(mode: str, unlimited: list[float], limited: list[float], non_2xx: int = 0) -> ModeComparison:
    found = ModeComparison(mode, order=interleaved(len(unlimited)))
    found.unlimited.runs = [_run(r, 10.0, 20.0) for r in unlimited]
    found.limited.runs = [_run(r, 12.0, 30.0, non_2xx) for r in limited]
    return found


def _limits() -> LimitsRun:
    run = LimitsRun(config=limits_config(64, 4.0, 2, "redis://:secret@127.0.0.1:6379/0"))
    local = BackendRun(IN_PROCESS, store="memory", rss_before_mb=150.0, rss_after_mb=290.0)
    local.tokenizer_loaded_after_s = 1.2
    local.modes = [_comparison(NON_STREAM, [5000, 4600], [4700, 4300]), _comparison(STREAM, [3000, 3000], [2400, 2400])]
    run.backends.append(local)
    run.backends.append(BackendRun(REDIS, skipped="Redis at redis://127.0.0.1:6379/0 did not answer (refused)"))
    return run


def test_runs_alternate_so_that_a_linear_drift_cancels() -> None:
    assert interleaved(1) == [UNLIMITED, LIMITED]
    assert interleaved(2) == [UNLIMITED, LIMITED, LIMITED, UNLIMITED]
    order = interleaved(4)
    for who in (UNLIMITED, LIMITED):
        assert order.count(who) == 4
    # A speed that drifts linearly with the run's index weighs both keys equally: same mean position.
    positions = {who: [i for i, w in enumerate(order) if w == who] for who in (UNLIMITED, LIMITED)}
    assert sum(positions[UNLIMITED]) == sum(positions[LIMITED])


def test_comparison_averages_the_runs_and_gives_the_limited_share() -> None:
    found = _comparison(NON_STREAM, [5000, 4600], [4700, 4300])
    assert found.unlimited.requests_per_s == 4800 and found.limited.requests_per_s == 4500
    assert found.ratio_pct == pytest.approx(93.75)
    assert found.limited.p50_ms == 12.0 and found.limited.p99_ms == 30.0
    assert found.rounds_rps() == [(UNLIMITED, 5000), (LIMITED, 4700), (LIMITED, 4300), (UNLIMITED, 4600)]
    assert found.refusal() is None
    assert KeyRuns([Measured(error="wrk failed")]).requests_per_s is None


def test_a_refused_limited_key_makes_the_comparison_invalid() -> None:
    found = _comparison(STREAM, [3000, 3000], [2000, 2000], non_2xx=7)
    assert found.limited.failed == 14
    refusal = found.refusal()
    assert refusal is not None and refusal.startswith("stream: the limited key got 14 non-2xx answers")


def test_created_key_and_its_id_are_read_from_the_cli_output() -> None:
    created = parse_created_key("sk-gg-abc\n", "created key 2 (bench-limited); it is shown only this once:\n")
    assert (created.id, created.key) == (2, "sk-gg-abc")
    with pytest.raises(BenchSetupError):
        parse_created_key("sk-gg-abc\n", "")
    with pytest.raises(BenchSetupError):
        parse_created_key("no key\n", "created key 2 (bench-limited)")


def test_the_limited_key_is_created_with_rpm_tpm_and_a_monthly_budget(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = gateway_env(1, data, {})
    created = create_limited_key(env, cwd=tmp_path)
    listed = subprocess.run(
        [gophergate_executable(), "keys", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    row = next(line for line in listed.stdout.splitlines() if "bench-limited" in line)
    assert created.key.startswith("sk-") and str(created.id) in row
    assert "rpm 100000000" in row and "tpm 1000000000" in row and "$1000000" in row and "/month" in row


def test_the_redis_gateway_counters_are_found_under_its_prefix() -> None:
    assert scope_pattern("gophergate-bench-1a2b3c4d:", 2) == "gophergate-bench-1a2b3c4d:limits:s:key:2:*"


def test_redis_urls_lose_their_password_in_the_report() -> None:
    assert redacted("redis://:secret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redacted("redis://user:secret@host/1") == "redis://user:***@host/1"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert limits_config(64, 4.0, 2, "redis://:secret@h:1/0")["redis_url"] == "redis://:***@h:1/0"
    command = parse_args(["--quick", "--redis-url=redis://:secret@h:1/0"]).command
    assert "secret" not in command and "--redis-url=redis://:***@h:1/0" in command
    assert "secret" not in parse_args(["--redis-url", "redis://:secret@h:1/0"]).command


def test_a_failed_start_is_named_by_its_last_exception() -> None:
    log = "gateway exited with 3:\nTraceback\n  File x\nModuleNotFoundError: No module named 'y'\nERROR other\n"
    assert _last_error(log) == "ModuleNotFoundError: No module named 'y'"
    assert _last_error("did not listen\n") == "did not listen"


def test_limits_options_default_on_with_redis_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOPHERGATE_BENCH_REDIS_URL", raising=False)
    opts = parse_args([])
    assert opts.limits and opts.redis_url == "redis://127.0.0.1:6379/0"
    assert opts.limits_duration_s == 4.0 and opts.limits_rounds == 2
    assert parse_args(["--quick"]).limits_duration_s == 2.0
    assert not parse_args(["--no-limits"]).limits
    assert parse_args(["--redis-url", ""]).redis_url is None
    monkeypatch.setenv("GOPHERGATE_BENCH_REDIS_URL", "redis://10.0.0.5:6380/2")
    assert parse_args([]).redis_url == "redis://10.0.0.5:6380/2"


def test_limits_targets_are_90_percent_in_process_and_80_with_redis() -> None:
    run = _limits()
    targets = {t.name: t for t in limits_targets(run)}
    local = targets[f"limits {IN_PROCESS}: {NON_STREAM} req/s, % of unlimited"]
    assert local.limit == 90.0 and local.value == pytest.approx(93.75) and local.met is True
    assert targets[f"limits {IN_PROCESS}: {STREAM} req/s, % of unlimited"].met is False  # 80%
    redis = targets[f"limits {REDIS}: {NON_STREAM} req/s, % of unlimited"]
    assert redis.limit == 80.0 and redis.met is None and "did not answer" in redis.note
    run.backends[0].invalid.append("stream: the limited key got 3 non-2xx answers")
    assert all(t.met is None for t in limits_targets(run))


def test_report_and_json_show_both_keys_the_ratio_and_the_gateway_rss() -> None:
    results = BenchResults(
        config={
            "date": "2026-12-07 01:00:00 UTC",
            "machine": "Test CPU",
            "cpus": "gateway on CPU 0",
            "gateway": "gw",
            "direct": "direct",
            "wrk_threads": 1,
            "duration_s": 2.0,
            "ttfc_requests": 0,
            "connections": 64,
        }
    )
    results.limits = _limits()
    text = render(results, evaluate_targets(results, 64))
    row = next(line for line in text.splitlines() if line.startswith(f"{IN_PROCESS} {NON_STREAM}"))
    assert "4,800" in row and "4,500" in row and "94%" in row and "u 5,000 l 4,700 l 4,300 u 4,600" in row
    assert "12.00 / 30.00" in row
    assert "redis      skipped: Redis at redis://127.0.0.1:6379/0 did not answer" in text
    assert "in-process gateway RSS: 150 MB before the limited key's first request, 290 MB after" in text
    assert "secret" not in text
    document = orjson.loads(orjson.dumps(results.to_dict([])))
    local = document["limits"]["backends"][0]
    assert local["modes"][0]["limited_pct_of_unlimited"] == pytest.approx(93.75)
    assert local["modes"][1]["limited"]["requests_per_s"] == 2400 and local["rss_after_mb"] == 290.0
    assert document["limits"]["config"]["order"] == [UNLIMITED, LIMITED, LIMITED, UNLIMITED]
    assert document["limits"]["backends"][1]["skipped"].startswith("Redis at")

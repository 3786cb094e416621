"""The bench's routing scenario: the gateway's configuration, the answer checks, run order, figures, report, JSON and
options (no load is run)."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import orjson
import pytest
from bench.__main__ import parse_args
from bench.report import evaluate_targets, render
from bench.results import NON_STREAM, STREAM, BenchResults, Measured
from bench.routing import (
    GROUP,
    GROUPED,
    PLAIN,
    RoutingMode,
    RoutingRun,
    cpu_us_per_request,
    group_targets,
    header_problems,
    routing_config,
    routing_toml,
    spread_problems,
)
from bench.wrk import WrkResult

from gophergate.settings import load_settings


def _run(rps: float, p50: float, cpu: float | None = 100.0) -> Measured:
    result = WrkResult(64, 4.0, int(rps * 4), rps, p50, p50, p50 * 2, p50 * 2, p50, p50 * 3, 0, 0, 0)
    return Measured(result=result, server_cpu_percent=cpu)


def _mode(mode: str, plain: list[float], group: list[float]) -> RoutingMode:
    found = RoutingMode(mode, order=routing_config(64, 4.0, len(plain), "gpt-4o-mini")["order"])
    found.plain.runs = [_run(r, 8.0) for r in plain]
    found.group.runs = [_run(r, 10.0) for r in group]
    return found


def _routing() -> RoutingRun:
    run = RoutingRun(config=routing_config(64, 4.0, 2, "gpt-4o-mini"), gateway="gw-routing")
    run.modes = [_mode(NON_STREAM, [8000, 7600], [6000, 6400]), _mode(STREAM, [5000, 5000], [4000, 4000])]
    run.served_by = {"openai/gpt-4o-mini": 11, "openai-b/gpt-4o-mini": 9}
    run.rss_before_mb, run.rss_after_mb, run.tokenizer_loaded_after_s = 150.0, 292.0, 1.4
    return run


def test_the_configuration_is_a_second_provider_and_a_weighted_group_of_two(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = routing_toml(9001, "gpt-4o-mini")
    doc = tomllib.loads(text)
    provider = doc["providers"]["openai-b"]
    assert provider["base_url"] == "http://127.0.0.1:9001/v1" and provider["registry_provider"] == "openai"
    assert "models" not in provider  # a declared bare name would take the plain model away from `openai`
    group = doc["model_groups"][GROUP]
    assert group["strategy"] == "weighted"
    assert group["targets"] == [{"model": m, "weight": 1} for m in ("openai/gpt-4o-mini", "openai-b/gpt-4o-mini")]
    # The gateway accepts it.
    config = tmp_path / "routing.toml"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", secrets.token_hex(32))
    settings = load_settings(_env_file=None)
    assert [t.model for t in settings.model_groups[GROUP].targets] == group_targets("gpt-4o-mini")
    assert settings.providers["openai-b"].registry_provider == "openai"


def test_a_group_answer_names_the_group_and_a_plain_one_does_not() -> None:
    assert header_problems(GROUPED, {"x-gophergate-attempts": "1", "x-gophergate-model-group": GROUP}) == []
    assert header_problems(PLAIN, {"x-gophergate-attempts": "1", "x-gophergate-served-by": "openai/gpt-4o-mini"}) == []
    assert header_problems(GROUPED, {"x-gophergate-attempts": "1"}) == [
        "x-gophergate-model-group is None, not 'bench-group'"
    ]
    assert header_problems(GROUPED, {"x-gophergate-attempts": "2", "x-gophergate-model-group": GROUP}) == [
        "x-gophergate-attempts is '2', not '1'"
    ]
    assert header_problems(PLAIN, {"x-gophergate-model-group": GROUP}) == [
        "x-gophergate-attempts is None, not '1'",
        "x-gophergate-model-group is 'bench-group' on a plain model's answer",
    ]


def test_both_targets_must_serve_the_group() -> None:
    targets = group_targets("gpt-4o-mini")
    assert spread_problems({targets[0]: 12, targets[1]: 8}, targets) == []
    assert spread_problems({targets[0]: 20}, targets) == ["no group answer of 20 was served by openai-b/gpt-4o-mini"]
    assert spread_problems({targets[0]: 19, "?": 1}, targets) == [
        "1 group answers served by '?', not a target",
        "no group answer of 20 was served by openai-b/gpt-4o-mini",
    ]
    assert spread_problems({}, targets) == []  # not sent (an answer failed before)


def test_runs_alternate_and_the_group_is_a_share_of_the_plain_model() -> None:
    assert routing_config(64, 4.0, 2, "gpt-4o-mini")["order"] == [PLAIN, GROUPED, GROUPED, PLAIN]
    found = _mode(NON_STREAM, [8000, 7600], [6000, 6400])
    assert found.plain.requests_per_s == 7800 and found.group.requests_per_s == 6200
    assert found.share_pct == pytest.approx(6200 / 7800 * 100)
    assert found.added_p50_ms == pytest.approx(2.0)
    assert found.rounds_rps() == [(PLAIN, 8000), (GROUPED, 6000), (GROUPED, 6400), (PLAIN, 7600)]
    assert found.cpu_us[0] == pytest.approx((125 + 1e6 / 7600) / 2)  # 100% of a core over 8,000 req/s: 125 us


def test_cpu_per_request_skips_runs_without_a_figure() -> None:
    found = _mode(STREAM, [4000], [2000])
    found.group.runs.append(_run(1000, 10.0, cpu=None))
    found.group.runs.append(Measured(error="wrk failed"))
    assert cpu_us_per_request(found.group) == pytest.approx(500.0)
    assert cpu_us_per_request(RoutingMode(STREAM).plain) is None


def test_report_and_json_show_both_models_the_share_and_the_targets_served() -> None:
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
    results.routing = _routing()
    text = render(results, evaluate_targets(results, 64))
    assert (
        "routing: the model group bench-group (weighted, 1:1 over openai/gpt-4o-mini and openai-b/gpt-4o-mini" in text
    )
    row = next(line for line in text.splitlines() if line.startswith(f"{NON_STREAM} |"))
    assert "7,800" in row and "6,200" in row and "79%" in row and "+2.00 ms" in row
    assert "p 8,000 g 6,000 g 6,400 p 7,600" in row and "128 / 161" in row
    assert "20 group answers before timing, served by: openai-b/gpt-4o-mini 9, openai/gpt-4o-mini 11" in text
    assert "routing gateway RSS: 150 MB before the first group request, 292 MB after" in text
    document = orjson.loads(orjson.dumps(results.to_dict([])))
    routing = document["routing"]
    assert routing["modes"][0]["group_pct_of_plain"] == pytest.approx(6200 / 7800 * 100)
    assert routing["modes"][1]["group"]["requests_per_s"] == 4000
    assert routing["config"]["targets"] == group_targets("gpt-4o-mini")
    assert routing["served_by"]["openai/gpt-4o-mini"] == 11

    results.routing = RoutingRun(config=routing_config(64, 4.0, 2, "gpt-4o-mini"), skipped="not run against --target")
    assert "  skipped: not run against --target" in render(results, [])


def test_routing_options_default_on_and_quick_shortens_the_runs() -> None:
    opts = parse_args([])
    assert opts.routing and opts.routing_duration_s == 4.0 and opts.routing_rounds == 2
    assert parse_args(["--quick"]).routing_duration_s == 2.0
    assert parse_args(["--quick", "--routing-duration", "3"]).routing_duration_s == 3.0
    assert parse_args(["--routing-rounds", "3"]).routing_rounds == 3
    assert not parse_args(["--no-routing"]).routing
    with pytest.raises(SystemExit):
        parse_args(["--routing-rounds", "0"])

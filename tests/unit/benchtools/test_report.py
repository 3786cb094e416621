"""The bench report's ratios, paced targets and rendering, and the peers' LiteLLM config (no load is run)."""

from __future__ import annotations

import orjson
from bench.machine import cpu_model
from bench.paced import summarize
from bench.peers import litellm_config, litellm_env
from bench.report import evaluate_targets, paced_targets, render
from bench.results import NON_STREAM, STREAM, BenchResults, Measured, PacedMeasured, PacedScenario, Scenario
from bench.wrk import WrkResult


def _wrk(rps: float, p50: float, p99: float, connections: int = 64) -> Measured:
    result = WrkResult(connections, 10.0, int(rps * 10), rps, p50, p50, p99, p99, p50, p99, 0, 0, 0)
    return Measured(result=result, server_cpu_percent=99.0)


def _paced(streams_per_s: float, p50_ms: float, rss: float | None = None) -> PacedMeasured:
    samples = [(1.0 + i / streams_per_s, p50_ms / 1000, 0.05) for i in range(int(streams_per_s * 2))]
    result = summarize(1000, samples, (1.0, 3.0), 1.0, True, {}, None)
    return PacedMeasured(result=result, rss_peak_mb=rss)


def _results() -> BenchResults:
    results = BenchResults(
        config={
            "date": "2026-12-06 20:00:00 UTC",
            "machine": "Test CPU, 2 cores",
            "command": "python -m bench --quick",
            "cpus": "gateway on CPU 0",
            "gateway": "gw",
            "relay": "relay",
            "direct": "direct",
            "wrk_threads": 1,
            "duration_s": 10.0,
            "ttfc_requests": 10,
            "connections": 64,
        }
    )
    results.scenarios.append(
        Scenario(NON_STREAM, 64, gateway=_wrk(4000, 2.0, 5.0), direct=_wrk(10000, 1.0, 2.0), relay=_wrk(8000, 1.5, 4.0))
    )
    results.scenarios.append(Scenario(STREAM, 64, gateway=_wrk(2000, 3.0, 6.0), direct=_wrk(8000, 1.0, 2.0)))
    paced = PacedScenario(1000)
    paced.sides = {"gateway": _paced(570, 1630, 119), "relay": _paced(750, 1280, 30), "direct": _paced(900, 1100)}
    results.paced.append(paced)
    return results


def test_scenario_ratios_are_the_gateway_over_direct_and_over_the_relay() -> None:
    sc = _results().scenarios[0]
    assert sc.throughput_ratio("direct") == 40.0 and sc.throughput_ratio("relay") == 50.0
    assert sc.added("p50_ms") == 1.0 and sc.added("p50_ms", "relay") == 0.5 and sc.relay_added("p50_ms") == 0.5
    stream = _results().scenarios[1]  # the relay was not run for it
    assert stream.throughput_ratio("relay") is None and stream.added("p99_ms", "relay") is None


def test_paced_targets_compare_the_gateway_with_the_relay_at_1000_streams() -> None:
    scenario = _results().paced[0]
    pct, p50, rss = paced_targets(scenario)
    assert pct.value is not None and abs(pct.value - 570 / 750 * 100) < 0.5 and pct.met is False
    assert p50.value is not None and abs(p50.value - 350) < 1e-6 and p50.met is False
    assert rss.value == 119 and rss.met is True
    scenario.sides["gateway"] = _paced(740, 1300, 150)
    assert [t.met for t in paced_targets(scenario)] == [True, True, True]
    assert [t.met for t in paced_targets(None)] == [None, None, None]


def test_report_shows_header_absolute_numbers_and_ratios() -> None:
    results = _results()
    text = render(results, evaluate_targets(results, 64))
    assert "date    : 2026-12-06 20:00:00 UTC" in text and "machine : Test CPU, 2 cores" in text
    assert "command : python -m bench --quick" in text
    row = next(line for line in text.splitlines() if line.startswith("non-stream, 64 clients") and "%" in line)
    assert "4,000" in row and "8,000" in row and "10,000" in row and "40%" in row and "50%" in row
    assert "gateway vs relay: streams/s 76%, p50 +350 ms" in text
    assert "paced 1,000: streams/s, % of relay" in text and "NOT MET" in text


def test_results_json_has_the_relay_ratios_and_the_paced_sides() -> None:
    document = orjson.loads(orjson.dumps(_results().to_dict([])))
    first = document["scenarios"][0]
    assert first["gateway_rps_pct_of_relay"] == 50.0 and first["relay"]["result"]["requests_per_s"] == 8000
    assert set(document["paced"][0]["sides"]) == {"gateway", "relay", "direct"}


def test_cpu_model_reads_proc_cpuinfo() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n") == "AMD EPYC 7B13"
    assert cpu_model("processor : 0\n") is None


def test_litellm_config_points_every_model_at_the_fake_upstream_with_logging_off() -> None:
    config = orjson.loads(litellm_config(9001, ["gpt-4o-mini", "gpt-4o-mini-paced"], "sk-master"))
    assert [m["litellm_params"]["model"] for m in config["model_list"]] == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o-mini-paced",
    ]
    assert {m["litellm_params"]["api_base"] for m in config["model_list"]} == {"http://127.0.0.1:9001/v1"}
    assert config["general_settings"]["master_key"] == "sk-master"
    assert config["general_settings"]["disable_spend_logs"] is True
    assert config["litellm_settings"]["set_verbose"] is False
    env = litellm_env({"DATABASE_URL": "postgresql://x", "PATH": "/bin"})
    assert "DATABASE_URL" not in env and env["LITELLM_LOG"] == "ERROR" and env["PATH"] == "/bin"


def test_paced_problems_name_errors_unsettled_windows_and_memory_kept_after_the_streams_were_cut() -> None:
    from bench.runner import paced_problems

    measured = _paced(500, 1300, 120)
    assert paced_problems("gw", measured) == []
    measured.rss_after_mb = 276.0
    assert paced_problems("gw", measured) == [
        "gw: RSS went from 120 MB (peak while streaming) to 276 MB 2 s after the streams still open at the "
        "window's end were cut"
    ]
    failed = PacedMeasured(result=summarize(1000, [], (0.0, 1.0), 11.0, False, {"connect": 3}, "connect: refused"))
    problems = paced_problems("ll", failed)
    assert problems[0] == "ll: errors (3 connect); first: connect: refused"
    assert problems[1] == "ll: no stream completed in the window"
    assert paced_problems("x", PacedMeasured(error="boom")) == ["x: boom"]

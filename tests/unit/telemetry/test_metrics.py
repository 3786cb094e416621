"""Metrics: records counted under bounded labels, figures read from the runtime's parts, workers summed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from gophergate.core.record import RequestRecord
from gophergate.telemetry.metrics import Metrics
from gophergate.telemetry.metrics_dir import MULTIPROC_ENV, MetricsDir

ROOT = Path(__file__).resolve().parents[3]


class Served:
    """openai serves gpt-4o-mini; every other provider or model is not configured."""

    def serves(self, provider: str, model: str | None = None) -> bool:
        return provider == "openai" and model in (None, "gpt-4o-mini")


class Log:
    written = 7
    failed_batches = 1
    dead_lettered = 2
    lost = 1
    consecutive_failures = 3
    restarts = 1
    price_unknown = 4


class Meter:
    depth = 5
    restarts = 1
    not_ready: str | None = None


class Governance:
    def __init__(self) -> None:
        self.refusals: Counter[str] = Counter()


class Registry:
    age_seconds = 12.5
    catalog = None


def record(**fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": "req_1",
        "endpoint": "chat.completions",
        "started": time.perf_counter(),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status": 200,
        "latency_ms": 800.0,
        "overhead_ms": 0.4,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost_usd": Decimal("0.0003"),
    }
    values.update(fields)
    return RequestRecord(**values)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def label_values(found: dict[Any, float], label: str) -> set[str]:
    return {dict(key[1])[label] for key in found if label in dict(key[1])}


@pytest.fixture
def metrics() -> tuple[Metrics, Governance]:
    governance = Governance()
    m = Metrics()
    m.attach(Served(), Log(), Meter(), governance, Registry())
    return m, governance


async def render(m: Metrics) -> dict[Any, float]:
    return samples((await m.render()).decode())


def test_labels_are_the_configured_providers_and_models_else_other_or_none() -> None:
    m = Metrics()
    m.attach(Served(), Log(), Meter(), Governance(), Registry())
    assert m.labels("openai", "gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert m.labels("openai", "my-own-model-name") == ("openai", "other")  # passed through from the client
    assert m.labels("made-up-provider", "gpt-4o-mini") == ("other", "other")
    assert m.labels("openai", None) == ("openai", "none")
    assert m.labels(None, None) == ("none", "none")  # the request never reached a provider


async def test_records_are_counted_once_under_bounded_labels(metrics: tuple[Metrics, Governance]) -> None:
    m, _ = metrics
    m.observe(record())
    m.observe(record(stream=True, ttfb_ms=250.0, reasoning_tokens=3, cache_read_tokens=4, cache_write_tokens=5))
    m.observe(record(model="client-invented-name", status=404, prompt_tokens=0, completion_tokens=0, cost_usd=None))
    m.observe(record(provider=None, model=None, status=401, prompt_tokens=0, completion_tokens=0, cost_usd=None))
    found = await render(m)

    requests = "gophergate_requests_total"
    assert (
        value(found, requests, endpoint="chat.completions", provider="openai", model="gpt-4o-mini", status_class="2xx")
        == 2
    )
    assert (
        value(found, requests, endpoint="chat.completions", provider="openai", model="other", status_class="4xx") == 1
    )
    assert value(found, requests, endpoint="chat.completions", provider="none", model="none", status_class="4xx") == 1
    assert "client-invented-name" not in label_values(found, "model")

    tokens = "gophergate_tokens_total"
    assert value(found, tokens, provider="openai", model="gpt-4o-mini", type="prompt") == 20
    assert value(found, tokens, provider="openai", model="gpt-4o-mini", type="completion") == 40
    assert value(found, tokens, provider="openai", model="gpt-4o-mini", type="reasoning") == 3
    assert value(found, tokens, provider="openai", model="gpt-4o-mini", type="cache_read") == 4
    assert value(found, tokens, provider="openai", model="gpt-4o-mini", type="cache_write") == 5
    assert value(found, "gophergate_cost_usd_total", provider="openai", model="gpt-4o-mini") == pytest.approx(0.0006)

    duration = "gophergate_request_duration_seconds"
    labels = {"endpoint": "chat.completions", "provider": "openai", "model": "gpt-4o-mini"}
    assert value(found, duration + "_count", **labels) == 2
    assert value(found, duration + "_sum", **labels) == pytest.approx(1.6)
    assert value(found, duration + "_bucket", **labels, le="0.5") == 0
    assert value(found, duration + "_bucket", **labels, le="1.0") == 2
    ttft = "gophergate_time_to_first_token_seconds"
    assert value(found, ttft + "_count", **labels) == 1  # streams only
    assert value(found, ttft + "_bucket", **labels, le="0.2") == 0
    assert value(found, ttft + "_bucket", **labels, le="0.3") == 1
    assert value(found, "gophergate_overhead_seconds_count", endpoint="chat.completions") == 4
    assert value(found, "gophergate_overhead_seconds_bucket", endpoint="chat.completions", le="0.0005") == 4


async def test_a_routed_request_counts_once_and_its_attempts_tokens_and_errors_each(
    metrics: tuple[Metrics, Governance],
) -> None:
    m, _ = metrics
    failed = record(status=502, error_class="server_error", final=False, prompt_tokens=0, completion_tokens=0)
    m.observe(failed)
    m.attempted_again(same_target=True)
    m.observe(record(status=429, error_class="rate_limited", final=False, prompt_tokens=0, completion_tokens=0))
    m.attempted_again(same_target=False)
    m.observe(record(provider="openai", model="gpt-4o-mini", attempt=3))
    found = await render(m)
    assert sum(v for (name, _), v in found.items() if name == "gophergate_requests_total") == 1
    assert value(found, "gophergate_upstream_errors_total", provider="openai", **{"class": "server_error"}) == 1
    assert value(found, "gophergate_upstream_errors_total", provider="openai", **{"class": "rate_limited"}) == 1
    assert value(found, "gophergate_retries_total") == 1
    assert value(found, "gophergate_fallbacks_total") == 1
    assert value(found, "gophergate_cost_usd_total", provider="openai", model="gpt-4o-mini") == pytest.approx(0.0009)


async def test_figures_of_the_log_governance_and_registry(metrics: tuple[Metrics, Governance]) -> None:
    m, governance = metrics
    governance.refusals["rpm"] += 2
    m.in_flight = 3
    found = await render(m)
    assert value(found, "gophergate_log_rows_written_total") == 7
    assert value(found, "gophergate_log_rows_dropped_total") == 3  # dead-lettered and lost
    assert value(found, "gophergate_log_dead_letter_rows_total") == 2
    assert value(found, "gophergate_log_failed_batches_total") == 1
    assert value(found, "gophergate_log_writer_restarts_total") == 2  # the writer's and the estimating stage's
    assert value(found, "gophergate_price_unknown_requests_total") == 4
    assert value(found, "gophergate_log_queue_depth") == 5
    assert value(found, "gophergate_log_consecutive_failures") == 3
    assert value(found, "gophergate_log_ready") == 1
    assert value(found, "gophergate_registry_age_seconds") == 12.5
    assert value(found, "gophergate_registry_models") == 0
    assert value(found, "gophergate_requests_in_flight") == 3
    assert value(found, "gophergate_limit_rejections_total", reason="rpm") == 2
    assert any(name == "process_cpu_seconds_total" for name, _ in found)
    assert any(name == "python_info" for name, _ in found)

    governance.refusals["rpm"] += 1  # counters grow by what their source gained, not by its total again
    Log.written = 9
    try:
        found = await render(m)
    finally:
        Log.written = 7
    assert value(found, "gophergate_limit_rejections_total", reason="rpm") == 3
    assert value(found, "gophergate_log_rows_written_total") == 9


_WORKER = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from gophergate.core.record import RequestRecord
    from gophergate.telemetry.metrics import Metrics
    from gophergate.telemetry.metrics_dir import multiprocess_dir

    class Served:
        def serves(self, provider, model=None):
            return True

    m = Metrics(multiprocess_dir())
    m.attach(Served(), None, None, None, None)
    for _ in range(int(sys.argv[1])):
        m.observe(RequestRecord("r", "chat.completions", time.perf_counter(), provider="openai", model="gpt-4o-mini",
                                status=200, latency_ms=5.0, prompt_tokens=3, cost_usd=Decimal("0.25")))
    m.in_flight = 2
    m.flush()
    print(flush=True)
    """
)


def test_workers_are_summed_and_an_exited_workers_gauges_removed(tmp_path: Path) -> None:
    """Two worker processes on one directory (prometheus_client's multiprocess mode): the counters and histograms
    sum, and a worker marked dead keeps its counters and loses its gauges."""
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    pids = []
    for count in (3, 4):
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(count)], env=env, cwd=ROOT)
        assert proc.wait(timeout=60) == 0
        pids.append(proc.pid)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]

    def read() -> dict[Any, float]:
        return samples(__import__("prometheus_client").generate_latest(registry).decode())

    found = read()
    labels = {"endpoint": "chat.completions", "provider": "openai", "model": "gpt-4o-mini"}
    assert value(found, "gophergate_requests_total", **labels, status_class="2xx") == 7
    assert value(found, "gophergate_request_duration_seconds_count", **labels) == 7
    assert value(found, "gophergate_tokens_total", provider="openai", model="gpt-4o-mini", type="prompt") == 21
    assert value(found, "gophergate_cost_usd_total", provider="openai", model="gpt-4o-mini") == 1.75
    assert value(found, "gophergate_requests_in_flight") == 4
    assert value(found, "process_cpu_seconds_total") > 0
    mark_process_dead(pids[0], str(tmp_path))  # type: ignore[no-untyped-call]
    found = read()
    assert value(found, "gophergate_requests_total", **labels, status_class="2xx") == 7
    assert value(found, "gophergate_requests_in_flight") == 2


def test_the_serve_command_empties_the_operators_directory_and_removes_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    own = MetricsDir()
    assert own.temporary and os.environ[MULTIPROC_ENV] == str(own.path) and own.path.is_dir()
    own.close()
    assert not own.path.exists() and MULTIPROC_ENV not in os.environ

    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"x")  # the previous run's
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    operators = MetricsDir()
    assert not operators.temporary and list(given.iterdir()) == []
    operators.close()
    assert given.is_dir()

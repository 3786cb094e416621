"""/metrics end to end: the real gateway with two workers in front of a strict fake upstream, known traffic sent with
the official openai SDK, and the exposition parsed with prometheus_client's own parser. The counts add up to the
traffic across both workers, the token and cost totals are the request log's, label values are bounded, and the
metrics token is required."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_compat import Behaviour, FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-metrics"
TOKEN = "metrics-token-for-the-test-0123456789"
INVENTED = ("no-such-model-xyz", "made-up-model-123")  # model names only a client made up
CONFIG = """
[routing]
cooldown_after = 1000

[model_groups.grp]
strategy = "priority"
targets = [{ model = "openai/gpt-4o-mini" }, { model = "openai/gpt-5-mini" }]
retries = 1
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Traffic:
    """What the module's requests were, as the client saw them."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.limited = 0  # 429s refused by the limited key's rpm


class Env:
    def __init__(self, gateway: Gateway, upstream: FakeOpenAICompat, limited_key: str, metrics_dir: Path) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.limited_key = limited_key
        self.metrics_dir = metrics_dir
        self.traffic = Traffic()

    def client(self, key: str | None = None) -> openai.OpenAI:
        # A connection per client (and a client per request): Granian's workers share the socket, so the requests
        # spread over both.
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key or self.gateway.key, max_retries=0)

    def chat(self, text: str = "hello", model: str = "gpt-4o-mini", key: str | None = None, **kwargs: Any) -> None:
        with self.client(key) as client:
            try:
                result = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": text}], **kwargs
                )
                if kwargs.get("stream"):
                    for _ in result:  # type: ignore[union-attr]
                        pass
                self.traffic.statuses.append(200)
            except openai.APIStatusError as exc:
                self.traffic.statuses.append(exc.status_code)
                if exc.status_code == 429 and key == self.limited_key:
                    self.traffic.limited += 1

    def scrape(self, token: str | None = TOKEN) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(self.gateway.url + "/metrics", headers=headers, timeout=10)

    def samples(self) -> Samples:
        response = self.scrape()
        assert response.status_code == 200, response.text
        return parse(response.text)


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in found.items() if n == name and labels.items() <= dict(ls).items())


def label_values(found: Samples, label: str) -> set[str]:
    return {dict(ls)[label] for (_, ls) in found if label in dict(ls)}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("metrics")
    metrics_dir = tmp / "prometheus"
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        gateway = Gateway(
            tmp,
            env={
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": upstream.base_url,
                "GOPHERGATE_WORKERS": "2",
                "GOPHERGATE_METRICS_TOKEN": TOKEN,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            },
            config_toml=CONFIG,
        )
        limited = gateway.cli("keys", "create", "--name", "limited", "--rpm", "1").stdout.strip().splitlines()[-1]
        try:
            gateway.start()
            e = Env(gateway, upstream, limited, metrics_dir)
            send_traffic(e)
            yield e
        finally:
            gateway.stop()
    assert not metrics_dir.exists() or metrics_dir.is_dir()  # the operator's directory is kept


def send_traffic(e: Env) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent, on fresh connections: both workers take some
        list(pool.map(lambda i: e.chat(f"hello {i}"), range(16)))
    e.chat("stream me", stream=True, stream_options={"include_usage": True})
    e.chat("FAIL 500")  # the upstream fails: an upstream error, 5xx
    e.chat(model=INVENTED[0])  # resolves to no provider: 404, provider "none"
    e.chat(model=f"openai/{INVENTED[1]}")  # passed to openai, which does not know it: 404, model "other"
    e.upstream.script_chat(Behaviour("status", status=500), Behaviour("status", status=500))
    e.chat("routed", model="grp")  # fails, is retried, fails, falls back to gpt-5-mini: 200
    for _ in range(3):  # rpm 1 per worker (no Redis): at least one is refused
        e.chat("limited", key=e.limited_key)


def settled(e: Env, timeout: float = 15.0) -> tuple[Samples, list[dict[str, Any]]]:
    """The metrics once every worker has folded in the traffic (once a second) and the log has every row."""
    sent = len(e.traffic.statuses)
    deadline = time.monotonic() + timeout
    while True:
        found = e.samples()
        rows = e.gateway.rows()
        if (total(found, "gophergate_requests_total") == sent and sum(1 for r in rows if r["final"]) == sent) or (
            time.monotonic() > deadline
        ):
            return found, rows
        time.sleep(0.2)


def test_metrics_need_the_token(env: Env) -> None:
    assert env.scrape(token=None).status_code == 401
    refused = env.scrape(token="wrong")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    answered = env.scrape()
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_request_counts_add_up_to_the_traffic_across_both_workers(env: Env) -> None:
    found, rows = settled(env)
    statuses = env.traffic.statuses
    assert total(found, "gophergate_requests_total") == len(statuses) == 24
    by_class = Counter(f"{s // 100}xx" for s in statuses)
    for status_class, count in by_class.items():
        assert total(found, "gophergate_requests_total", status_class=status_class) == count, status_class
    final = [r for r in rows if r["final"]]
    assert Counter(f"{r['status'] // 100}xx" for r in final) == by_class
    assert total(found, "gophergate_requests_total", provider="none") == 1  # the unknown model
    ok = total(found, "gophergate_requests_total", provider="openai", model="gpt-4o-mini", status_class="2xx")
    assert ok == 16 + 1 + statuses[-3:].count(200)  # the chats, the stream, the limited key's admitted ones
    assert total(found, "gophergate_requests_total", model="gpt-5-mini", status_class="2xx") == 1  # the fallback

    assert total(found, "gophergate_request_duration_seconds_count") == len(statuses)
    assert total(found, "gophergate_overhead_seconds_count") == len(statuses)
    assert total(found, "gophergate_time_to_first_token_seconds_count") == 1  # the one stream
    assert total(found, "gophergate_retries_total") == 1
    assert total(found, "gophergate_fallbacks_total") == 1
    assert env.traffic.limited >= 1
    assert total(found, "gophergate_limit_rejections_total", reason="rpm") == env.traffic.limited
    errors = Counter((r["provider"], r["error_class"]) for r in rows if r["error_class"])
    assert errors[("openai", "server_error")] >= 2  # FAIL 500 and the routed request's failed attempt(s)
    for (provider, kind), count in errors.items():
        assert total(found, "gophergate_upstream_errors_total", provider=provider, **{"class": kind}) == count
    assert total(found, "gophergate_log_rows_written_total") == len(rows)
    assert total(found, "gophergate_log_rows_dropped_total") == 0
    assert total(found, "gophergate_requests_in_flight") == 0

    # Both workers served some of it, and the scrape (answered by one of them) summed the two.
    per_worker = requests_per_worker(env.metrics_dir)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == len(statuses)
    assert total(found, "process_cpu_seconds_total") > 0
    assert total(found, "process_resident_memory_bytes") > 0


def requests_per_worker(directory: Path) -> dict[str, float]:
    """Each worker's own requests_total, from its files alone (a copy of them in a directory of their own)."""
    pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    counts = {}
    for pid in pids:
        alone = directory.parent / f"worker-{pid}"
        alone.mkdir(exist_ok=True)
        for path in directory.glob(f"*_{pid}.db"):
            shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        counts[pid] = total(parse(generate_latest(registry).decode()), "gophergate_requests_total")
    return counts


def test_token_and_cost_totals_are_the_request_logs(env: Env) -> None:
    found, rows = settled(env)
    columns = {
        "prompt": "prompt_tokens",
        "completion": "completion_tokens",
        "reasoning": "reasoning_tokens",
        "cache_read": "cache_read_tokens",
        "cache_write": "cache_write_tokens",
    }
    for kind, column in columns.items():
        assert total(found, "gophergate_tokens_total", type=kind) == sum(r[column] or 0 for r in rows), kind
    assert total(found, "gophergate_tokens_total", type="prompt") > 0
    cost = sum(Decimal(str(r["cost_usd"])) for r in rows if r["cost_usd"] is not None)
    assert cost > 0
    assert total(found, "gophergate_cost_usd_total") == pytest.approx(float(cost), rel=1e-9)
    mini = sum(Decimal(str(r["cost_usd"])) for r in rows if r["model"] == "gpt-4o-mini" and r["cost_usd"])
    assert total(found, "gophergate_cost_usd_total", provider="openai", model="gpt-4o-mini") == pytest.approx(
        float(mini), rel=1e-9
    )


def test_no_client_supplied_model_name_is_a_label_value(env: Env) -> None:
    found, _ = settled(env)
    models = label_values(found, "model")
    assert not models & set(INVENTED)
    assert models <= {"gpt-4o-mini", "gpt-5-mini", "other", "none"}
    assert "other" in models  # the invented model openai was asked for
    assert label_values(found, "provider") <= {"openai", "other", "none"}
    assert not any(name.startswith("gophergate_") and "key" in dict(labels) for name, labels in found)

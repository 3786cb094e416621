"""Governance across instances: three gateway processes share one PostgreSQL database and one Redis, and are driven
concurrently with the official OpenAI SDK against a strict fake upstream that reports known usage. Limits hold for
the cluster as for one process; spend survives a Redis flush (rebuilt from the log); an unreachable Redis is
refused or tolerated as configured."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, admin_session, delete_redis_prefix, free_port, gateway_cluster

UPSTREAM_KEY = "sk-upstream-cluster"
ADMIN_PASSWORD = "admin-pass-cluster-1"
# gpt-4o-mini in tests/fixtures/models-dev-mini.json: $0.15 input, $0.60 output per 1M tokens.
OUTPUT = Decimal("0.6") / 1_000_000


class Cluster:
    def __init__(self, gateways: list[Gateway], upstream: FakeOpenAICompat, redis_url: str, prefix: str) -> None:
        self.gateways = gateways
        self.upstream = upstream
        self.redis_url = redis_url
        self.prefix = prefix

    def admin(self, index: int = 0) -> Any:
        return admin_session(self.gateways[index].url, ADMIN_PASSWORD)

    def key(self, name: str, **body: Any) -> tuple[int, str]:
        with self.admin() as c:
            r = c.post("/api/keys", json={"name": name, **body})
            assert r.status_code == 201, r.text
            return int(r.json()["key"]["id"]), str(r.json()["secret"])

    def sdk(self, index: int, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateways[index].base_url, api_key=secret, max_retries=0, timeout=30)

    def chat(self, index: int, secret: str, text: str = "hi") -> httpx.Response:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        with httpx.Client(timeout=30) as c:
            return c.post(
                self.gateways[index].base_url + "/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {secret}"},
            )

    def logged_cost(self, key_id: int, count: int) -> Decimal:
        """The key's cost as the shared request log has it, once ``count`` rows (from any instance) are in."""
        deadline = time.monotonic() + 15
        with self.admin() as c:
            while True:
                rows = c.get("/api/requests", params={"client_key_id": key_id, "limit": 500}).json()["data"]
                if len(rows) >= count or time.monotonic() > deadline:
                    assert len(rows) >= count, (len(rows), count)
                    return sum((Decimal(r["cost_usd"]) for r in rows if r["cost_usd"]), Decimal(0))
                time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        root = tmp_path_factory.mktemp("cluster")
        with gateway_cluster(root, env, ("gw0", "gw1", "gw2"), instance_names=False) as instances:
            yield Cluster(instances.gateways, upstream, instances.redis_url, instances.prefix)


def test_every_instance_says_its_limits_live_in_redis(cluster: Cluster) -> None:
    for gateway in cluster.gateways:
        ready = httpx.get(gateway.url + "/readyz", timeout=10).json()
        assert ready["details"]["limits"]["mode"] == "redis"


def test_rpm_30_gives_exactly_30_successes_across_three_instances(cluster: Cluster) -> None:
    _, secret = cluster.key("rpm-30", limits={"rpm": 30})
    clients = [cluster.sdk(i, secret) for i in range(3)]

    def one(n: int) -> str:
        try:
            clients[n % 3].chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.body is not None and exc.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
            return "429"

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(75)))
    assert results.count("ok") == 30 and results.count("429") == 45


def test_a_budget_driven_by_40_concurrent_streams_ends_within_the_bound(cluster: Cluster) -> None:
    budget = Decimal("0.0004")
    key_id, secret = cluster.key("budget-streams", limits={"budget_usd": str(budget), "budget_period": "total"})
    clients = [cluster.sdk(i, secret) for i in range(3)]
    max_tokens = 60

    def one(n: int) -> str:
        try:
            stream = clients[n % 3].chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "WORDS 40"}],
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.body is not None and exc.body["code"] == "budget_exceeded"  # type: ignore[index]
            return "refused"

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    admitted = results.count("ok")
    assert 0 < admitted < 40 and results.count("refused") == 40 - admitted
    # Reservations held back the rest while they ran; what they left (if any) is spent by the next requests.
    sent = 40
    while True:
        r = cluster.chat(sent % 3, secret, "WORDS 40")
        sent += 1
        if r.status_code == 429:
            break
        assert r.status_code == 200 and sent < 80
    spent = cluster.logged_cost(key_id, sent)
    # The bound: one request's worst case (its prompt, a few tokens here, plus max_tokens; priced at the higher
    # output rate to stay an upper bound).
    worst = (max_tokens + 50) * OUTPUT
    assert spent <= budget + worst, (spent, budget + worst)
    assert spent >= budget  # the key was refused only once the budget was spent
    with cluster.admin(1) as c:
        usage = c.get(f"/api/keys/{key_id}/usage").json()
    assert Decimal(usage["budget"]["spend_usd"]) == spent and Decimal(usage["budget"]["reserved_usd"]) == 0
    for index in range(3):  # nothing is admitted once the budget is gone, on any instance
        r = cluster.chat(index, secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"


def test_a_team_limit_holds_across_its_keys_and_instances(cluster: Cluster) -> None:
    with cluster.admin() as c:
        team = c.post("/api/teams", json={"name": "cluster-team", "limits": {"rpm": 8}}).json()
    secrets_ = [cluster.key(f"team-key-{n}", team_id=team["id"])[1] for n in range(2)]

    def one(n: int) -> int:
        return cluster.chat(n % 3, secrets_[n % 2]).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(one, range(20)))
    assert codes.count(200) == 8 and codes.count(429) == 12


def _refused_everywhere_within(cluster: Cluster, secret: str, code: str, seconds: float) -> float:
    """Seconds until all three instances refuse ``secret`` with ``code`` (fails after ``seconds``)."""
    start = time.monotonic()
    pending = set(range(3))
    while pending:
        for index in list(pending):
            r = cluster.chat(index, secret)
            if r.status_code == 401 and r.json()["error"]["code"] == code:
                pending.discard(index)
        elapsed = time.monotonic() - start
        assert elapsed <= seconds, f"instances {sorted(pending)} still accept the key after {elapsed:.2f} s"
    return time.monotonic() - start


def test_a_revoked_or_expired_key_is_refused_by_all_three_within_a_second(cluster: Cluster) -> None:
    key_id, secret = cluster.key("to-revoke", limits={"rpm": 1000})
    assert [cluster.chat(i, secret).status_code for i in range(3)] == [200, 200, 200]
    with cluster.admin(2) as c:
        assert c.post(f"/api/keys/{key_id}/revoke").status_code == 200
    _refused_everywhere_within(cluster, secret, "invalid_api_key", 1.0)

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    _, expiring = cluster.key("to-expire", expires_at=expires.isoformat())
    assert [cluster.chat(i, expiring).status_code for i in range(3)] == [200, 200, 200]
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()))
    _refused_everywhere_within(cluster, expiring, "key_expired", 1.0)


def test_spend_is_rebuilt_from_the_log_after_redis_is_flushed(cluster: Cluster) -> None:
    key_id, secret = cluster.key("flushed", limits={"budget_usd": "5", "budget_period": "month"})
    for index in range(3):
        assert cluster.chat(index, secret, "WORDS 30").status_code == 200
    spent = cluster.logged_cost(key_id, 3)
    assert delete_redis_prefix(cluster.redis_url, cluster.prefix) > 0  # Redis lost every counter
    with cluster.admin(1) as c:
        usage = c.get(f"/api/keys/{key_id}/usage").json()
    assert Decimal(usage["budget"]["spend_usd"]) == spent  # rebuilt before the scope was read or admitted again
    r = cluster.chat(2, secret, "WORDS 10")
    assert r.status_code == 200
    assert Decimal(r.headers["x-gophergate-budget-remaining-usd"]) < Decimal(5) - spent


def test_a_budget_spent_before_a_flush_stays_spent(cluster: Cluster) -> None:
    key_id, secret = cluster.key("spent-then-flushed", limits={"budget_usd": "0.00003", "budget_period": "day"})
    while cluster.chat(0, secret, "WORDS 40").status_code == 200:
        pass
    cluster.logged_cost(key_id, 2)
    delete_redis_prefix(cluster.redis_url, cluster.prefix)
    for index in range(3):
        r = cluster.chat(index, secret)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"


# -- Redis unreachable ---------------------------------------------------------------------------------------------


def _dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_an_unreachable_redis_is_refused_or_tolerated_as_configured(mode: str, make_gateway: type[Gateway]) -> None:
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        gateway = make_gateway(
            env={
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": upstream.base_url,
                "GOPHERGATE_REDIS_URL": _dead_redis(),
                "GOPHERGATE_LIMITS_ON_REDIS_ERROR": mode,
            }
        )
        gateway.start()
        limited = gateway.cli("keys", "create", "--name", "limited", "--rpm", "100").stdout.strip().splitlines()[-1]
        with httpx.Client(timeout=30) as c:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            url = gateway.base_url + "/chat/completions"
            free = c.post(url, json=body, headers={"authorization": f"Bearer {gateway.key}"})
            assert free.status_code == 200  # a key without limits never waits on Redis
            started = time.monotonic()
            r = c.post(url, json=body, headers={"authorization": f"Bearer {limited}"})
            assert time.monotonic() - started < 5
            if mode == "deny":
                assert r.status_code == 503 and r.json()["error"]["code"] == "limits_unavailable"
                assert r.headers["retry-after"] == "1"
            else:
                assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "100"
            ready = c.get(gateway.url + "/readyz").json()
            assert ready["details"]["limits"]["mode"] == "redis-unavailable"

"""Governance on /v1 in one gateway process (limits counted in memory): the check order, each refusal's error, row
and headers, budgets reserved and settled against the priced usage a strict fake reports, spend rebuilt from the
log after a restart, and a team's limits over its keys. The cluster version (three processes, Redis) is
``test_governance_cluster.py``."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import UNPRICED_MODEL, Gateway, admin_session, priced_and_unpriced_gateway

UPSTREAM_KEY = "sk-upstream-governance"
CUSTOM_KEY = "sk-custom-governance"
ADMIN_PASSWORD = "admin-pass-governance-1"
UNPRICED = UNPRICED_MODEL
# gpt-4o-mini in tests/fixtures/models-dev-mini.json: $0.15 input, $0.60 output per 1M tokens.
INPUT, OUTPUT = Decimal("0.15") / 1_000_000, Decimal("0.6") / 1_000_000


class Env:
    def __init__(self, gateway: Gateway, upstream: FakeOpenAICompat) -> None:
        self.gateway = gateway
        self.upstream = upstream

    def admin(self) -> Any:
        return admin_session(self.gateway.url, ADMIN_PASSWORD)

    def key(self, name: str, **body: Any) -> tuple[int, str]:
        with self.admin() as c:
            r = c.post("/api/keys", json={"name": name, **body})
            assert r.status_code == 201, r.text
            return int(r.json()["key"]["id"]), str(r.json()["secret"])

    def team(self, name: str, limits: dict[str, Any]) -> int:
        with self.admin() as c:
            r = c.post("/api/teams", json={"name": name, "limits": limits})
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

    def chat(self, secret: str, text: str = "hi", **extra: Any) -> httpx.Response:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
        with httpx.Client(timeout=30) as c:
            return c.post(
                self.gateway.base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
            )

    def rows(self, key_id: int, count: int) -> list[dict[str, Any]]:
        """The key's request-log rows, newest first, once ``count`` are written."""
        deadline = time.monotonic() + 10
        with self.admin() as c:
            while True:
                rows = c.get("/api/requests", params={"client_key_id": key_id, "limit": 200}).json()["data"]
                if len(rows) >= count or time.monotonic() > deadline:
                    return list(rows)
                time.sleep(0.1)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with priced_and_unpriced_gateway(
        tmp_path_factory.mktemp("governance"),
        upstream_key=UPSTREAM_KEY,
        custom_key=CUSTOM_KEY,
        admin_password=ADMIN_PASSWORD,
        env={"GOPHERGATE_BUDGET_TIMEZONE": "America/New_York"},
    ) as (gateway, upstream):
        yield Env(gateway, upstream)


def error_of(r: httpx.Response) -> dict[str, Any]:
    return dict(r.json()["error"])


def test_a_key_without_limits_gets_no_rate_limit_headers(env: Env) -> None:
    r = env.chat(env.gateway.key)
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("x-ratelimit") or h.startswith("x-gophergate-budget")]


def test_an_expired_key_is_refused_with_key_expired_and_logged(env: Env) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)).isoformat()
    key_id, secret = env.key("expiring", expires_at=soon)
    assert env.chat(secret).status_code == 200
    time.sleep(1.6)
    before = len(env.upstream.chat_requests)
    r = env.chat(secret)
    assert r.status_code == 401 and error_of(r)["code"] == "key_expired"
    assert "expired at" in error_of(r)["message"]
    assert len(env.upstream.chat_requests) == before  # no upstream call
    rows = env.rows(key_id, 2)
    assert rows[0]["status"] == 401 and rows[0]["error_type"] == "key_expired"


def test_models_outside_the_keys_patterns_are_refused_naming_the_model(env: Env) -> None:
    _, secret = env.key("patterns", limits={"allowed_models": ["gpt-4o-mini*", "anthropic/*"]})
    assert env.chat(secret).status_code == 200
    r = env.chat(secret, model="gpt-4o")
    assert r.status_code == 403
    error = error_of(r)
    assert error["code"] == "model_not_allowed" and error["param"] == "model" and "'gpt-4o'" in error["message"]
    _, by_provider = env.key("provider-pattern", limits={"allowed_models": ["openai/*"]})
    assert env.chat(by_provider).status_code == 200  # "gpt-4o-mini" resolves to openai/gpt-4o-mini: it matches


def test_max_tokens_above_the_cap_is_a_400_naming_it_and_a_missing_one_is_set_to_the_cap(env: Env) -> None:
    _, secret = env.key("capped", limits={"max_tokens_cap": 64})
    r = env.chat(secret, max_tokens=65)
    assert r.status_code == 400 and error_of(r)["param"] == "max_tokens"
    r = env.chat(secret, max_completion_tokens=100)
    assert r.status_code == 400 and error_of(r)["param"] == "max_completion_tokens"
    assert env.chat(secret, max_tokens=64).status_code == 200
    assert env.chat(secret, "no limit given").status_code == 200
    assert env.upstream.chat_requests[-1].body["max_tokens"] == 64


def test_the_order_of_checks_expiry_then_model_then_max_tokens(env: Env) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat()
    _, secret = env.key("ordered", expires_at=soon, limits={"allowed_models": ["gpt-4o-mini"], "max_tokens_cap": 5})
    r = env.chat(secret, model="gpt-4o", max_tokens=50)
    assert error_of(r)["code"] == "model_not_allowed"
    r = env.chat(secret, max_tokens=50)
    assert r.status_code == 400 and error_of(r)["param"] == "max_tokens"
    time.sleep(1.1)
    assert error_of(env.chat(secret, model="gpt-4o", max_tokens=50))["code"] == "key_expired"


def test_rpm_admits_exactly_its_count_then_429_with_retry_after_and_openai_headers(env: Env) -> None:
    key_id, secret = env.key("rpm", limits={"rpm": 3})
    answers = [env.chat(secret) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[0].headers["x-ratelimit-reset-requests"].endswith("s")
    before = len(env.upstream.chat_requests)
    refused = env.chat(secret)
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(env.upstream.chat_requests) == before
    rows = env.rows(key_id, 4)
    assert rows[0]["status"] == 429 and rows[0]["error_type"] == "rate_limit_exceeded"
    # The official SDK sees a RateLimitError.
    client = openai.OpenAI(base_url=env.gateway.base_url, api_key=secret, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def _seconds(reset: str) -> float:
    if reset.endswith("ms"):
        return float(reset[:-2]) / 1000
    minutes, _, rest = reset.rstrip("s").rpartition("m")
    return float(minutes or 0) * 60 + float(rest)


def test_tpm_reserves_prompt_plus_output_and_refuses_type_tokens(env: Env) -> None:
    _, secret = env.key("tpm", limits={"tpm": 100})
    first = env.chat(secret, "hello there", max_tokens=20)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    left = _seconds(first.headers["x-ratelimit-reset-tokens"])
    assert 0 < left <= 60
    if left < 5:  # keep the rest of the test inside one minute window
        time.sleep(left + 0.2)
    # Admitted while the window has tokens: the reservation (prompt + 200) is capped at what is left...
    flood = env.chat(secret, "WORDS 150", max_tokens=200)
    assert flood.status_code == 200
    assert flood.headers["x-ratelimit-remaining-tokens"] == "0"
    # ...and settled to the real count (over 150 tokens), so the window is spent.
    refused = env.chat(secret, "x", max_tokens=5)
    assert refused.status_code == 429
    assert error_of(refused)["type"] == "tokens" and error_of(refused)["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_max_parallel_refuses_the_request_over_the_limit_while_others_run(env: Env) -> None:
    _, secret = env.key("parallel", limits={"max_parallel": 1})
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(env.chat, secret, "SLOW 800")
        time.sleep(0.3)
        quick = pool.submit(env.chat, secret, "quick")
        assert quick.result().status_code == 429
        assert error_of(quick.result())["code"] == "rate_limit_exceeded"
        assert slow.result().status_code == 200
    assert env.chat(secret).status_code == 200  # the lease ended with the request


def test_a_budget_is_reserved_settled_to_the_exact_cost_and_refused_once_spent(env: Env) -> None:
    budget = Decimal("0.0002")
    key_id, secret = env.key("budget", limits={"budget_usd": str(budget), "budget_period": "day"})
    spent = Decimal(0)
    answers = []
    for _ in range(20):
        r = env.chat(secret, "WORDS 60", max_tokens=100)
        answers.append(r)
        if r.status_code != 200:
            break
        spent += Decimal(r.headers["x-gophergate-cost-usd"])
    refused = answers[-1]
    assert refused.status_code == 429, [a.status_code for a in answers]
    error = error_of(refused)
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    # the period's end: the next local midnight in America/New_York, as UTC
    tz = dt.timezone(dt.timedelta(hours=-5))  # December: EST
    midnight = (dt.datetime.now(tz) + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert midnight.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") in error["message"]
    # Overshoot bound: at most one request's worst case (prompt + max_tokens at the model's prices).
    assert budget <= spent <= budget + 200 * OUTPUT
    assert refused.headers["x-gophergate-budget-remaining-usd"] == "0"
    assert Decimal(answers[0].headers["x-gophergate-budget-remaining-usd"]) < budget
    rows = env.rows(key_id, len(answers))
    logged = sum((Decimal(r["cost_usd"]) for r in rows if r["cost_usd"] is not None), Decimal(0))
    assert logged == spent  # what the budget counted is what the log carries
    assert rows[0]["error_type"] == "budget_exceeded"


def test_a_model_without_a_price_is_refused_for_a_key_with_a_budget(env: Env) -> None:
    _, secret = env.key("unpriced", limits={"budget_usd": "5", "budget_period": "month"})
    r = env.chat(secret, model=UNPRICED)
    assert r.status_code == 403 and error_of(r)["code"] == "budget_unpriced_model"
    _, free = env.key("unpriced-no-budget", limits={"rpm": 100})
    assert env.chat(free, model=UNPRICED).status_code == 200


def test_a_team_limit_holds_over_the_sum_of_its_keys_and_names_the_team(env: Env) -> None:
    team_id = env.team("platform", {"rpm": 3})
    _, first = env.key("team-a", team_id=team_id)
    _, second = env.key("team-b", team_id=team_id, limits={"rpm": 100})
    assert [env.chat(s).status_code for s in (first, second, first)] == [200, 200, 200]
    refused = env.chat(second)
    assert refused.status_code == 429 and "team 'platform'" in error_of(refused)["message"]
    # the tightest of key and team: the key allows 100, the team 3
    assert refused.headers["x-ratelimit-limit-requests"] == "3"


def test_a_total_budget_spent_before_a_restart_is_still_spent_after_it(env: Env) -> None:
    key_id, secret = env.key("restart-budget", limits={"budget_usd": "0.00003", "budget_period": "total"})
    while env.chat(secret, "WORDS 40", max_tokens=50).status_code == 200:
        pass
    env.rows(key_id, 2)
    env.gateway.stop()
    env.gateway.start()
    r = env.chat(secret)
    assert r.status_code == 429 and error_of(r)["code"] == "budget_exceeded"
    assert "does not reset" in error_of(r)["message"]


def test_usage_endpoints_the_cli_and_readyz_report_the_same_spend(env: Env) -> None:
    team_id = env.team("usage-team", {"rpm": 50, "budget_usd": "10", "budget_period": "month"})
    key_id, secret = env.key(
        "usage", team_id=team_id, limits={"tpm": 100_000, "budget_usd": "1", "budget_period": "week"}
    )
    costs = [Decimal(env.chat(secret, f"WORDS {n}").headers["x-gophergate-cost-usd"]) for n in (5, 9)]
    env.rows(key_id, 2)
    with env.admin() as c:
        usage = c.get(f"/api/keys/{key_id}/usage").json()
        assert usage["mode"] == "memory" and usage["scope"] == "key" and usage["id"] == key_id
        budget = usage["budget"]
        assert Decimal(budget["spend_usd"]) == sum(costs) and Decimal(budget["reserved_usd"]) == 0
        assert Decimal(budget["remaining_usd"]) == Decimal(1) - sum(costs)
        assert budget["period"] == "week" and budget["resets_at"].endswith("Z")
        assert usage["tokens"]["limit"] == 100_000 and usage["tokens"]["used"] > 0
        assert usage["in_flight"] == {"limit": None, "used": 0}
        team = c.get(f"/api/teams/{team_id}/usage").json()
        assert team["requests"]["limit"] == 50 and team["requests"]["used"] == 2
        assert Decimal(team["budget"]["spend_usd"]) == sum(costs)
        assert c.get("/api/keys/999999/usage").status_code == 404
        ready = c.get("/readyz").json()
        assert ready["details"]["limits"]["mode"] == "memory"
    printed = env.gateway.cli("keys", "usage", str(key_id), "--json")
    doc = json.loads(printed.stdout)
    assert Decimal(doc["budget"]["spend_usd"]) == sum(costs) and doc["requests"]["used"] == 2
    text = env.gateway.cli("keys", "usage", str(key_id)).stdout
    assert "budget: $" in text and "requests in the current minute: 2" in text
    missing = env.gateway.cli("keys", "usage", "999999", check=False)
    assert missing.returncode == 1 and "no key with id 999999" in missing.stderr


def test_two_requests_sharing_an_x_request_id_are_admitted_separately(env: Env) -> None:
    _, secret = env.key("same-request-id", limits={"rpm": 100, "budget_usd": "1", "budget_period": "day"})
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "SLOW 300"}]}
    headers = {"authorization": f"Bearer {secret}", "x-request-id": "client-chosen-id-1"}

    def one() -> int:
        with httpx.Client(timeout=30) as c:
            return c.post(env.gateway.base_url + "/chat/completions", json=body, headers=headers).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda _: one(), range(2))) == [200, 200]


def test_several_workers_without_redis_warn_that_limits_are_counted_per_worker(make_gateway: type[Gateway]) -> None:
    gateway = make_gateway(env={"GOPHERGATE_WORKERS": "2"})
    gateway.start()
    with httpx.Client(timeout=10) as c:
        assert c.get(gateway.url + "/readyz").json()["details"]["limits"]["mode"] == "memory"
    text = gateway.log_path.read_text()
    assert "GOPHERGATE_WORKERS=2 without GOPHERGATE_REDIS_URL" in text and "counted per worker" in text

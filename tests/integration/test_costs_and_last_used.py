"""A real gateway with a priced model (gpt-4o-mini, in the registry) and a custom provider's model that has no known
price: the analytics API never turns the unknown price into $0, and /api/keys shows when each key was last used."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import UNPRICED_MODEL, Gateway, admin_session, priced_and_unpriced_gateway

UPSTREAM_KEY = "sk-upstream-costs"
CUSTOM_KEY = "sk-custom-costs"
ADMIN_PASSWORD = "admin-pass-costs-1"
UNPRICED = UNPRICED_MODEL


class Env:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def admin(self) -> Any:
        return admin_session(self.gateway.url, ADMIN_PASSWORD)

    def v1(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with priced_and_unpriced_gateway(
        tmp_path_factory.mktemp("costs"),
        upstream_key=UPSTREAM_KEY,
        custom_key=CUSTOM_KEY,
        admin_password=ADMIN_PASSWORD,
    ) as (gateway, _):
        yield Env(gateway)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait(fetch: Any, ready: Any, timeout: float = 10.0) -> Any:
    """Poll an /api answer until ``ready`` holds (the log writer commits every 50 ms here)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_keys_show_when_they_were_last_used(env: Env) -> None:
    with env.admin() as c:
        created = c.post("/api/keys", json={"name": "last-used"}).json()
        key_id, secret = created["key"]["id"], created["secret"]
        idle = c.post("/api/keys", json={"name": "never-used"}).json()["key"]["id"]
        assert created["key"]["last_used_at"] is None
        before = dt.datetime.now(dt.UTC)
        for _ in range(3):
            env.v1(secret).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        after = dt.datetime.now(dt.UTC)

        def keys() -> dict[int, Any]:
            return {k["id"]: k for k in c.get("/api/keys", params={"limit": 500}).json()["data"]}

        listed = _wait(keys, lambda ks: ks[key_id]["last_used_at"] is not None)
        used_at = listed[key_id]["last_used_at"]
        assert used_at is not None and used_at.endswith("Z")
        # The newest of the three requests' times (taken when each arrived), not the time it was written.
        assert before - dt.timedelta(seconds=1) <= _parse(used_at) <= after
        assert listed[idle]["last_used_at"] is None


def test_unknown_prices_are_counted_never_summed_as_zero(env: Env) -> None:
    client = env.v1(env.gateway.key)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "priced"}])
    ids = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=UNPRICED, messages=[{"role": "user", "content": "unpriced"}]
        )
        ids.append(raw.headers["x-request-id"])
    for request_id in ids:
        row = env.gateway.row_for(request_id)
        assert row["price_unknown"] in (True, 1) and row["cost_usd"] is None and row["prompt_tokens"] > 0
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    span = {"from": start, "to": end}
    with env.admin() as c:
        totals = _wait(
            lambda: c.get("/api/analytics/totals", params=span).json(), lambda t: t["unpriced_requests"] >= 3
        )
        assert totals["unpriced_requests"] >= 3 and totals["requests"] >= 5
        assert totals["cost_usd"] is not None and float(totals["cost_usd"]) > 0  # the priced requests' cost
        top = c.get("/api/analytics/top", params={**span, "by": "model", "metric": "cost"}).json()["data"]
        by_model = {item["key"]: item for item in top}
        assert by_model[UNPRICED]["cost_usd"] is None and by_model[UNPRICED]["unpriced_requests"] == 3
        assert float(by_model["gpt-4o-mini"]["cost_usd"]) > 0 and by_model["gpt-4o-mini"]["unpriced_requests"] == 0
        assert top[-1]["key"] == UNPRICED  # no known cost ranks after every known one
        series = c.get("/api/analytics/timeseries", params={**span, "bucket": "minute", "group_by": "model"}).json()
        points = [p for s in series["series"] if s["key"] == UNPRICED for p in s["points"] if p["requests"]]
        assert points and all(p["cost_usd"] is None for p in points)
        assert sum(p["unpriced_requests"] for p in points) == 3
        csv = c.get("/api/analytics/export.csv", params={**span, "bucket": "minute", "group_by": "model"}).text
        header = csv.splitlines()[0].split(",")
        assert "unpriced_requests" in header
        for line in csv.splitlines()[1:]:
            cells = dict(zip(header, line.split(","), strict=True))
            if cells["key"] == UNPRICED and cells["requests"] != "0":
                assert cells["cost_usd"] == ""  # empty, never "0"


def test_last_used_through_a_gateway_on_each_database(make_gateway: Any, database_url: str) -> None:
    """The same on PostgreSQL as on SQLite: the writer's batch moves the key's last_used_at, /api/keys shows it."""
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        gateway = make_gateway(
            env={
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": upstream.base_url,
                "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
            database_url=database_url,
        )
        gateway.start()
        env = Env(gateway)
        before = dt.datetime.now(dt.UTC)
        env.v1(gateway.key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        with env.admin() as c:
            listed = _wait(lambda: c.get("/api/keys").json()["data"], lambda ks: ks[0]["last_used_at"] is not None)
        (key,) = listed
        assert key["last_used_at"] is not None
        assert before - dt.timedelta(seconds=1) <= _parse(key["last_used_at"]) <= dt.datetime.now(dt.UTC)

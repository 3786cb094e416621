"""One live state across instances: two gateway processes on one PostgreSQL database and one Redis.

Their own polling is slowed to 30 s here (keys, providers, prices, model switches), so what reaches the other
instance within a second can only have been pushed through the cluster bus. A dashboard connected to one instance
sees the other's rows and events; its metrics sum both, broken down by instance; provider health counts both.
A gateway whose Redis does not answer keeps serving and says so on /readyz."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import (
    Gateway,
    admin_session,
    delete_redis_prefix,
    free_port,
    gateway_cluster,
    redis_url,
    unique_prefix,
)

UPSTREAM_KEY = "sk-upstream-cluster-hub"
ADMIN_PASSWORD = "admin-pass-cluster-hub-1"
SLOW_POLL = "30"


class Pair:
    def __init__(self, a: Gateway, b: Gateway, prefix: str) -> None:
        self.a, self.b, self.prefix = a, b, prefix

    def cookie(self, gw: Gateway) -> str:
        body = orjson.dumps({"username": "admin", "password": ADMIN_PASSWORD})
        request = urllib.request.Request(
            gw.url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(resp.headers["set-cookie"]).split(";", 1)[0]


def chat(gw: Gateway, secret: str, model: str = "gpt-4o-mini") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        gw.base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}, timeout=30
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "GOPHERGATE_KEY_REFRESH_SECONDS": SLOW_POLL,
            "GOPHERGATE_PRICE_REFRESH_SECONDS": SLOW_POLL,
        }
        with gateway_cluster(tmp_path_factory.mktemp("cluster-hub"), env, ("gw-a", "gw-b")) as instances:
            yield Pair(instances.gateways[0], instances.gateways[1], instances.prefix)


async def _watch(pair: Pair, gw: Gateway, seconds: float, until: Any) -> list[dict[str, Any]]:
    """Every message a dashboard on ``gw`` receives until ``until(messages)`` holds (or ``seconds`` pass)."""
    messages: list[dict[str, Any]] = []
    headers = {"Cookie": pair.cookie(gw), "Origin": f"http://127.0.0.1:{gw.port}"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(gw.url.replace("http", "ws") + "/ws", headers=headers) as ws,
    ):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until(messages):
            try:
                msg = await asyncio.wait_for(ws.receive(), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                messages.append(orjson.loads(msg.data))
    return messages


def test_a_dashboard_on_one_instance_sees_every_request_of_the_cluster(pair: Pair) -> None:
    async def run() -> tuple[set[str], list[dict[str, Any]]]:
        sent: set[str] = set()

        async def traffic() -> None:
            await asyncio.sleep(0.5)  # the dashboard is connected
            for i in range(12):
                r = await asyncio.to_thread(chat, pair.b if i % 3 else pair.a, pair.a.key)
                assert r.status_code == 200, r.text
                sent.add(r.headers["x-request-id"])

        task = asyncio.create_task(traffic())

        def seen_all(messages: list[dict[str, Any]]) -> bool:
            got = {m["data"]["request_id"] for m in messages if m["type"] == "request"}
            return task.done() and sent <= got

        messages = await _watch(pair, pair.a, 20, seen_all)
        await task
        return sent, messages

    sent, messages = asyncio.run(run())
    got = {m["data"]["request_id"] for m in messages if m["type"] == "request"}
    assert len(sent) == 12 and sent <= got, f"missing on gw-a's dashboard: {sent - got}"
    from_b = [m for m in messages if m["type"] == "request" and m["data"]["request_id"] in sent]
    assert all(m["data"]["client_key_name"] == "test" for m in from_b)


def test_the_metrics_message_sums_the_cluster_and_breaks_it_down_by_instance(pair: Pair) -> None:
    for i in range(10):
        assert chat(pair.b if i % 2 else pair.a, pair.a.key).status_code == 200

    def both_report(messages: list[dict[str, Any]]) -> bool:
        last = [m for m in messages if m["type"] == "metrics"]
        return bool(last) and [i["instance"] for i in last[-1]["data"]["instances"]] == ["gw-a", "gw-b"]

    messages = asyncio.run(_watch(pair, pair.b, 10, both_report))
    metrics = [m["data"] for m in messages if m["type"] == "metrics"][-1]
    instances = {i["instance"]: i for i in metrics["instances"]}
    assert set(instances) == {"gw-a", "gw-b"}
    assert metrics["cluster"] == {"redis": "connected", "instances": 2, "hub_dropped": 0}
    assert instances["gw-a"]["requests_per_s"] > 0 and instances["gw-b"]["requests_per_s"] > 0
    # The cluster's rate is the sum of the instances' (each rounded to 3 places on its own).
    total = instances["gw-a"]["requests_per_s"] + instances["gw-b"]["requests_per_s"]
    assert abs(metrics["requests_per_s"] - total) < 0.002
    assert metrics["p95_ms"] is not None and metrics["p95_ms"] >= min(i["p95_ms"] for i in instances.values())
    assert all(i["processes"] == 1 and i["age_s"] < 6 for i in instances.values())


def test_provider_health_counts_the_requests_of_every_instance(pair: Pair) -> None:
    def requests_seen(gw: Gateway) -> int:
        with admin_session(gw.url, ADMIN_PASSWORD) as c:
            providers = c.get("/api/system").json()["providers"]
        return next(p["requests"] for p in providers if p["name"] == "openai")

    before = requests_seen(pair.a)
    for _ in range(6):
        assert chat(pair.b, pair.a.key).status_code == 200
    deadline = time.monotonic() + 8
    while requests_seen(pair.a) < before + 6 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert requests_seen(pair.a) >= before + 6  # gw-a never served these: it learned them from gw-b's window


def test_a_key_revoked_on_one_instance_is_refused_by_the_other_within_a_second(pair: Pair) -> None:
    with admin_session(pair.a.url, ADMIN_PASSWORD) as c:
        created = c.post("/api/keys", json={"name": "revoke-me"}).json()
        key_id, secret = created["key"]["id"], created["secret"]
    assert chat(pair.b, secret).status_code == 200  # gw-b looked it up (a key it had not seen)
    with admin_session(pair.a.url, ADMIN_PASSWORD) as c:
        assert c.post(f"/api/keys/{key_id}/revoke").status_code == 200
    revoked_at = time.monotonic()
    while chat(pair.b, secret).status_code != 401:
        assert time.monotonic() - revoked_at < 1.0, "gw-b still accepts the revoked key (its poll is 30 s)"
        time.sleep(0.02)


def test_a_key_revoked_with_the_cli_is_refused_by_both_instances_within_a_second(pair: Pair) -> None:
    """The CLI is no process of the cluster: it publishes the change on Redis after committing it."""
    with admin_session(pair.a.url, ADMIN_PASSWORD) as c:
        created = c.post("/api/keys", json={"name": "revoke-by-cli"}).json()
        key_id, secret = created["key"]["id"], created["secret"]
    assert chat(pair.a, secret).status_code == 200 and chat(pair.b, secret).status_code == 200
    result = pair.a.cli("keys", "revoke", str(key_id))
    assert f"revoked key {key_id}" in result.stdout, result.stderr
    revoked_at = time.monotonic()
    for gw in (pair.a, pair.b):
        while chat(gw, secret).status_code != 401:
            assert time.monotonic() - revoked_at < 1.0, "an instance still accepts the key revoked by the CLI"
            time.sleep(0.02)


def test_a_model_switched_off_on_one_instance_is_refused_by_the_other_and_its_dashboards_see_the_event(
    pair: Pair,
) -> None:
    async def run() -> tuple[float, list[dict[str, Any]]]:
        async def switch() -> float:
            await asyncio.sleep(0.5)
            with admin_session(pair.a.url, ADMIN_PASSWORD) as c:
                r = await asyncio.to_thread(c.patch, "/api/models/openai/gpt-4o", json={"enabled": False})
                assert r.status_code == 200, r.text
            switched = time.monotonic()
            while (await asyncio.to_thread(chat, pair.b, pair.a.key, "gpt-4o")).status_code != 404:
                assert time.monotonic() - switched < 1.0, "gw-b still serves the switched-off model"
            return time.monotonic() - switched

        task = asyncio.create_task(switch())

        def event_seen(messages: list[dict[str, Any]]) -> bool:
            return task.done() and any(m["type"] == "event" for m in messages)

        messages = await _watch(pair, pair.b, 10, event_seen)
        return await task, messages

    _, messages = asyncio.run(run())
    events = [m["data"] for m in messages if m["type"] == "event"]
    assert any(e["kind"] == "config_changed" and e["instance"] == "gw-a" for e in events), events
    with admin_session(pair.a.url, ADMIN_PASSWORD) as c:
        assert c.patch("/api/models/openai/gpt-4o", json={"enabled": True}).status_code == 200


def test_a_logout_on_one_instance_ends_the_session_on_the_other_at_once(pair: Pair) -> None:
    cookie = pair.cookie(pair.a)
    headers = {"cookie": cookie}
    csrf = httpx.get(pair.a.url + "/api/auth/me", headers=headers, timeout=10).json()["csrf_token"]
    with httpx.Client(timeout=10) as client:
        assert client.get(pair.b.url + "/api/auth/me", headers=headers).status_code == 200
        checked = time.monotonic()  # gw-b re-reads a session it checked only after a second: sooner is the push
        r = client.post(pair.a.url + "/api/auth/logout", headers={**headers, "x-csrf-token": csrf})
        assert r.status_code == 204, r.text
        while client.get(pair.b.url + "/api/auth/me", headers=headers).status_code != 401:
            assert time.monotonic() - checked < 0.9, "gw-b still accepts the session (it re-checks once a second)"
            time.sleep(0.01)


def test_every_instance_reports_the_cluster_on_readyz(pair: Pair) -> None:
    for gw, name in ((pair.a, "gw-a"), (pair.b, "gw-b")):
        ready = httpx.get(gw.url + "/readyz", timeout=10).json()
        assert ready["status"] == "ready" and ready["degraded"] == []
        assert ready["details"]["instance"] == name
        cluster = ready["details"]["cluster"]
        assert cluster["state"] == "connected" and cluster["published"] > 0 and cluster["received"] > 0
        figures = _scrape(gw)
        assert figures["gophergate_cluster_connected"] == 1.0
        assert figures["gophergate_cluster_messages_published_total"] > 0


def _scrape(gw: Gateway) -> dict[str, float]:
    """The unlabelled samples of an instance's /metrics, once its workers' figures are flushed (every second)."""
    time.sleep(1.2)
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_an_unreachable_redis_leaves_v1_serving_and_readyz_says_degraded(tmp_path: Any) -> None:
    redis_url()  # skips the test without GOPHERGATE_TEST_REDIS_URL
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "GOPHERGATE_LIMITS_ON_REDIS_ERROR": "allow",
        }
        gw = Gateway(tmp_path, env=env).start()
        try:
            started = time.monotonic()
            r = chat(gw, gw.key)
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 5
            ready = httpx.get(gw.url + "/readyz", timeout=10)
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "ready" and body["details"]["cluster"]["state"] == "unreachable"
            assert any("Redis is unreachable" in line for line in body["degraded"])
            assert "cluster: Redis is unreachable" in gw.logs()
            assert _scrape(gw)["gophergate_cluster_connected"] == 0.0
        finally:
            gw.stop()


def test_with_redis_the_dashboard_of_a_two_worker_instance_sees_both_workers_traffic(tmp_path: Any) -> None:
    """Without Redis each worker's hub shows its own share; with it, one instance's two workers are one view."""
    url = redis_url()
    prefix = unique_prefix()
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "GOPHERGATE_REDIS_URL": url,
            "GOPHERGATE_REDIS_KEY_PREFIX": prefix,
            "GOPHERGATE_WORKERS": "2",
            "GOPHERGATE_INSTANCE_NAME": "gw-w",
        }
        gw = Gateway(tmp_path, env=env).start()
        try:
            pair = Pair(gw, gw, prefix)

            def both_workers(messages: list[dict[str, Any]]) -> bool:
                last = [m["data"] for m in messages if m["type"] == "metrics"]
                return bool(last) and last[-1]["instances"][0]["processes"] == 2 and last[-1]["requests_per_s"] > 0

            async def run() -> tuple[set[str], list[dict[str, Any]]]:
                sent: set[str] = set()

                async def traffic() -> None:
                    await asyncio.sleep(0.5)
                    for _ in range(16):  # new connections: the kernel spreads them over the two workers
                        r = await asyncio.to_thread(chat, gw, gw.key)
                        assert r.status_code == 200, r.text
                        sent.add(r.headers["x-request-id"])

                task = asyncio.create_task(traffic())

                def done(messages: list[dict[str, Any]]) -> bool:
                    got = {m["data"]["request_id"] for m in messages if m["type"] == "request"}
                    return task.done() and sent <= got and both_workers(messages)

                messages = await _watch(pair, gw, 15, done)
                await task
                return sent, messages

            sent, messages = asyncio.run(run())
            got = {m["data"]["request_id"] for m in messages if m["type"] == "request"}
            assert sent <= got, f"missing on the dashboard: {len(sent - got)} of {len(sent)}"
            assert both_workers(messages)
            metrics = [m["data"] for m in messages if m["type"] == "metrics"][-1]
            assert [i["instance"] for i in metrics["instances"]] == ["gw-w"]
        finally:
            gw.stop()
            delete_redis_prefix(url, prefix)

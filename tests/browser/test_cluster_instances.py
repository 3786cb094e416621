"""The dashboard of a cluster (issue 20): two gateway processes on one PostgreSQL and one Redis, traffic sent to both,
and the System page of one of them lists both instances, each with its own requests per second, while the Overview
says that its live counters add up two instances.

The states a healthy cluster does not reach (Redis unreachable, an older server whose ``metrics`` message has no
``instances``) are shown by rewriting the real server's messages on their way to the page (Playwright's WebSocket
routing): the page code is the one served, nothing in it exists for the test.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.browser.support import STATIC_INDEX, login
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, gateway_cluster, require_cluster_services

UPSTREAM_KEY = "sk-upstream-browser-cluster"
ADMIN_PASSWORD = "admin-pass-browser-cluster-1"
NAMES = ("gw-a", "gw-b")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    require_cluster_services()  # skips without PostgreSQL and Redis, before the UI build is checked
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        with gateway_cluster(tmp_path_factory.mktemp("browser-cluster"), env, NAMES) as instances:
            yield instances.gateways


class Traffic:
    """Chat requests to every gateway, a few per second each, until stopped: the live figures cover ~10 s."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.gateways = gateways
        self.stopped = threading.Event()
        self.sent = dict.fromkeys(range(len(gateways)), 0)
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=10) as client:
            while not self.stopped.is_set():
                for index, gateway in enumerate(self.gateways):
                    r = client.post(
                        gateway.base_url + "/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {gateway.key}"},
                    )
                    if r.status_code == 200:
                        self.sent[index] += 1
                    else:
                        self.failures.append(f"{gateway.url}: {r.status_code} {r.text[:200]}")
                self.stopped.wait(0.1)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=15)


def _new_page(browser: Browser, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def _requests_per_s(page: Page, instance: str) -> str:
    return page.locator(f"[data-testid=instances-table] tr[data-instance='{instance}'] td").nth(1).inner_text()


def test_the_system_page_of_one_instance_lists_both_instances_with_their_traffic(
    cluster: list[Gateway], browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    page = _new_page(browser, errors)
    with Traffic(cluster) as traffic:
        login(page, cluster[0].url, "admin", ADMIN_PASSWORD)

        # The Overview's live counters are the cluster's: it says how many instances they add up.
        expect(page.get_by_test_id("cluster-hint")).to_have_text("2 instances", timeout=15_000)
        expect(page.get_by_test_id("cluster-hint")).to_be_visible()

        page.get_by_test_id("nav-system").click()
        expect(page.get_by_test_id("cluster-status")).to_have_text("Cluster: 2 instances, Redis connected")
        table = page.get_by_test_id("instances-table")
        expect(table.locator("tbody tr")).to_have_count(2)
        # One row per instance, sorted by name, each with the traffic sent to it (a metrics message every 2 s).
        assert table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.instance)") == list(NAMES)
        for name in NAMES:
            page.wait_for_function(
                """name => {
                    const row = document.querySelector(`[data-testid=instances-table] tr[data-instance='${name}']`);
                    return row !== null && Number(row.cells[1].textContent) > 0;
                }""",
                arg=name,
                timeout=10_000,
            )
        row = table.locator("tr[data-instance='gw-b']")
        expect(row.locator("td").nth(4)).to_have_text("0.0%")  # error rate: every request succeeded
        expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+ ms$"))  # p95 of its own requests
        expect(row.locator("td").nth(9)).to_have_text(re.compile(r"^[1-9]\d*$"))  # processes reporting
        expect(row.locator("td").nth(10)).to_have_text(re.compile(r"^\d+\.\d s ago$"))
        page.screenshot(path=tmp_path / "system-instances.png", full_page=True)
    assert traffic.failures == [] and min(traffic.sent.values()) > 0, (traffic.failures[:3], traffic.sent)
    assert errors == []
    page.context.close()


def test_redis_unreachable_and_an_older_server_are_shown_for_what_they_are(
    cluster: list[Gateway], browser: Browser
) -> None:
    # What the gateway's own messages become on their way to the page.
    mode = {"now": "unreachable"}
    one = {
        "instance": "gw-a",
        "processes": 1,
        "requests_per_s": 0.5,
        "tokens_per_s": 4.0,
        "cost_per_min_usd": None,
        "error_rate": 0.25,
        "p95_ms": 12.3,
        "queue_depth": 7,
        "cpu_percent": 12.0,
        "memory_percent": 40.1,
        "age_s": 0.4,
    }

    def rewrite(message: str | bytes) -> str | bytes:
        msg: Any = json.loads(message)
        if msg.get("type") != "metrics":
            return message
        if mode["now"] == "unreachable":
            msg["data"]["instances"] = [one]
            msg["data"]["cluster"] = {"redis": "unreachable", "instances": 1, "hub_dropped": 3}
        else:  # a server from before the hub across instances
            msg["data"].pop("instances", None)
            msg["data"].pop("cluster", None)
        return json.dumps(msg)

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: ws.send(rewrite(message)))

    errors: list[str] = []
    page = _new_page(browser, errors)
    page.route_web_socket(re.compile(r"/ws$"), route)
    login(page, cluster[0].url, "admin", ADMIN_PASSWORD)
    expect(page.get_by_test_id("counter-rps")).not_to_contain_text("—", timeout=15_000)
    expect(page.get_by_test_id("cluster-hint")).to_be_hidden()  # one instance: no hint

    page.get_by_test_id("nav-system").click()
    status = page.get_by_test_id("cluster-status")
    expect(status).to_have_text(
        "Redis unreachable: figures are this instance's only · 3 live messages dropped on the way to Redis"
    )
    expect(status).to_have_attribute("data-redis", "unreachable")
    cells = page.locator("[data-testid=instances-table] tr[data-instance='gw-a'] td")
    expect(cells).to_have_text(["gw-a", "0.50", "4.0", "?", "25.0%", "12 ms", "7", "12.0%", "40.1%", "1", "0.4 s ago"])

    mode["now"] = "older"
    expect(page.get_by_test_id("instances")).to_be_hidden(timeout=10_000)
    expect(page.get_by_test_id("system-info")).to_contain_text("Uptime")
    page.get_by_test_id("nav-overview").click()
    expect(page.get_by_test_id("counter-rps")).not_to_contain_text("—")
    expect(page.get_by_test_id("cluster-hint")).to_be_hidden()
    assert errors == []
    page.context.close()

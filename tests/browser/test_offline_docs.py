"""Issue 16 items 6 and 12 in a real browser (the Debian Chromium, as in test_dashboard.py).

/api/docs with the network cut off from everything but the gateway: every request to another origin is aborted
(and recorded: the page may not even try), and the explorer must still list the operations and open one. The
system page says when it has no events yet and labels the registry in words, not field names. Screenshots at
desktop and phone widths go to this test's tmp_path."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.support import login
from tests.browser.test_dashboard import ADMIN_PASSWORD, gateway, upstream  # noqa: F401  (fixtures)
from tests.support import Gateway

WIDTHS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}


class Offline:
    """A browser context that reaches only the gateway: anything else is aborted and recorded."""

    def __init__(self, chromium: Browser, gw: Gateway, viewport: dict[str, int]) -> None:
        self.origin = gw.url
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context: BrowserContext = chromium.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.context.set_default_timeout(10_000)
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )  # CSP violations are reported here

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")


def log_in_elsewhere(gw: Gateway) -> None:
    body = json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode()
    req = urllib.request.Request(
        gw.url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture
def offline(browser: Browser, gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[Offline]:  # noqa: F811
    ctx = Offline(browser, gateway, WIDTHS[getattr(request, "param", "desktop")])
    try:
        yield ctx
    finally:
        ctx.context.close()


@pytest.mark.parametrize("offline", list(WIDTHS), indirect=True)
def test_api_docs_render_with_no_network_beyond_the_gateway(
    offline: Offline,
    gateway: Gateway,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = offline.page
    page.goto(gateway.url + "/api/docs")
    expect(page.get_by_test_id("api-docs")).to_have_attribute("data-loaded", "true")
    operations = page.get_by_test_id("operation")
    spec = page.request.get(gateway.url + "/api/openapi.json")
    assert spec.ok
    expected = sum(
        1 for item in spec.json()["paths"].values() for m in ("get", "post", "put", "patch", "delete") if m in item
    )
    assert expected > 20
    expect(operations).to_have_count(expected)
    expect(page.get_by_test_id("tag-section").first).to_be_visible()

    # Open one operation: its parameters, responses and schema are rendered from the document.
    login_op = page.locator("[data-testid=operation][data-method=post][data-path='/api/auth/login']")
    login_op.locator("summary").click()
    expect(login_op).to_contain_text("Request body")
    expect(login_op).to_contain_text("password")
    expect(login_op).to_contain_text("Responses")
    requests_op = page.locator("[data-testid=operation][data-method=get][data-path='/api/requests']")
    requests_op.locator("summary").click()
    expect(requests_op).to_contain_text("Parameters")
    expect(requests_op).to_contain_text("cursor")

    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the docs page is {width}px wide"  # type: ignore[index]
    page.screenshot(path=tmp_path / f"api-docs-{page.viewport_size['width']}.png", full_page=True)  # type: ignore[index]

    # The filter narrows the list.
    page.get_by_test_id("docs-filter").fill("/api/system")
    expect(page.locator("[data-testid=operation]:visible")).to_have_count(1)
    assert offline.blocked == [], f"the docs page tried to reach other sites: {offline.blocked}"
    assert offline.errors == [], offline.errors


def test_api_docs_try_it_uses_the_dashboard_session(offline: Offline, gateway: Gateway) -> None:  # noqa: F811
    page = offline.page
    login(page, gateway.url, "admin", ADMIN_PASSWORD)
    page.goto(gateway.url + "/api/docs")
    system = page.locator("[data-testid=operation][data-method=get][data-path='/api/system']")
    system.locator("summary").click()
    system.get_by_role("button", name="Send GET /api/system").click()
    result = system.get_by_test_id("try-result")
    expect(result).to_contain_text("200", timeout=10_000)
    expect(result).to_contain_text('"uptime_s"')
    assert offline.blocked == [], offline.blocked


@pytest.mark.parametrize("offline", list(WIDTHS), indirect=True)
def test_system_page_says_when_there_are_no_events_and_labels_the_registry_in_words(
    offline: Offline,
    gateway: Gateway,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = offline.page
    login(page, gateway.url, "admin", ADMIN_PASSWORD)
    page.goto(gateway.url + "/#/system")
    registry = page.get_by_test_id("registry-info")
    expect(registry).to_be_visible()

    # Events: none yet on a fresh page, and the section says so...
    events = page.get_by_test_id("events").locator("li")
    empty = page.get_by_test_id("events-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No events yet")
    expect(events).to_have_count(0)
    # ...until one happens: a login elsewhere is an event, shown in words.
    log_in_elsewhere(gateway)
    expect(events.first).to_contain_text("User logged in")
    expect(events.first).to_contain_text("username admin")
    expect(events.first).to_contain_text(f"on {socket.gethostname()}:{gateway.port}")  # where it happened
    expect(empty).to_be_hidden()

    labels = registry.locator("dt").all_inner_texts()
    assert {"Source", "Last checked", "Last check", "Prices from"} <= set(labels), labels
    assert not [label for label in labels if "_" in label or label != label.strip()], labels
    values = dict(zip(labels, registry.locator("dd").all_inner_texts(), strict=True))
    assert values["Source"] == "models.dev"  # the gateway's registry is the repository's mini fixture
    assert re.fullmatch(r"\d[\d,]*", values["Models"]), values
    assert values["Prices from"].startswith("registry snapshot models.dev:"), values
    assert re.search(r"\(\d+ (s|min) ago\)$", values["Last checked"]), values

    page.screenshot(path=tmp_path / f"system-{page.viewport_size['width']}.png", full_page=True)  # type: ignore[index]
    assert offline.blocked == [], offline.blocked

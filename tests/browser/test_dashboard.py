"""The dashboard in a real browser: the Debian Chromium (/usr/bin/chromium), headless, driven by Playwright.

Scenario of issue 5, item 7: log in as admin, create a client key in the UI, send a chat request through /v1
with it to a fake upstream, see it appear in the live view within 2 s and in the request log, see the overview
chart change; create a viewer, log in as the viewer and find no mutating controls and no secrets.

Playwright never downloads a browser here: it launches the system Chromium by path (`.ci/run` installs the
`chromium` package when missing). The UI must be built first (`make test` does it: `make ui`). Screenshots go
to this test's tmp_path.

Named so that pytest does not collect it until the backend (/api, /ws, the static UI at /) is merged:
enable it with `git mv tests/browser/dashboard_scenario.py tests/browser/test_dashboard.py`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.support import STATIC_INDEX, login
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-browser"
ADMIN_PASSWORD = "admin-pass-browser-1"
VIEWER_PASSWORD = "viewer-pass-browser-1"

# Pages a viewer can open (client keys and users are admin-only and absent from a viewer's navigation).
VIEWER_PAGES = ("overview", "analytics", "requests", "teams", "providers", "models", "system")
# Words on controls that would change server state: none may appear on a button a viewer sees.
MUTATING_WORDS = re.compile(
    r"\b(create|add|new|save|delete|remove|revoke|rotate|rename|edit|enable|disable|test|set price|clear|"
    r"limits|role|password)\b",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat(dialect="openai", api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAICompat, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    gw = Gateway(
        tmp_path_factory.mktemp("dashboard"),
        env={
            "OPENAI_BASE_URL": upstream.base_url,
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
    )
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def test_admin_sees_a_chat_request_live_and_a_viewer_sees_no_mutating_controls(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    # Admin: log in.
    login(page, gateway.url, "admin", ADMIN_PASSWORD)
    page.screenshot(path=shots / "01-admin-overview.png", full_page=True)

    # Create a client key; its secret is revealed once.
    page.get_by_test_id("nav-keys").click()
    page.get_by_test_id("create-key").click()
    page.locator("[data-testid=modal] input[name=name]").fill("browser-key")
    page.get_by_test_id("modal-submit").click()
    secret = page.get_by_test_id("secret-value").inner_text().strip()
    assert secret.startswith("sk-gg-")
    page.screenshot(path=shots / "02-key-created.png")
    page.get_by_test_id("secret-done").click()
    expect(page.get_by_test_id("secret-dialog")).to_have_count(0)
    expect(page.get_by_test_id("keys-table")).to_contain_text("browser-key")
    assert secret not in page.content(), "the secret must be gone from the page once the reveal is closed"

    # Overview: remember what the requests-per-minute chart shows before the request.
    page.get_by_test_id("nav-overview").click()
    chart = page.get_by_test_id("overview-chart")
    expect(chart).to_have_attribute("data-loaded", "true", timeout=5000)
    before = float(chart.get_attribute("data-total") or "0")

    # A chat request through /v1 with the new key, to the fake upstream.
    client = openai.OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello from the browser test"}]
    )
    sent_at = time.monotonic()
    assert raw.parse().choices[0].message.content == "echo: hello from the browser test"
    request_id = raw.headers["x-request-id"]

    # It appears in the live view within 2 s...
    live_row = page.locator(f"[data-testid=live-table] tr[data-request-id='{request_id}']")
    expect(live_row).to_have_count(1, timeout=2000)
    assert time.monotonic() - sent_at < 2.0
    expect(live_row).to_contain_text("gpt-4o-mini")
    # ...and the overview chart changes.
    page.wait_for_function(
        "before => Number(document.querySelector('[data-testid=overview-chart]').dataset.total) > before",
        arg=before,
        timeout=5000,
    )
    page.screenshot(path=shots / "03-overview-after-request.png", full_page=True)

    # It is in the request log, with its detail.
    page.get_by_test_id("nav-requests").click()
    log_row = page.locator(f"[data-testid=log-table] tr[data-request-id='{request_id}']")
    expect(log_row).to_have_count(1, timeout=5000)
    log_row.click()
    expect(page.get_by_test_id("request-detail")).to_contain_text(request_id)
    page.screenshot(path=shots / "04-request-log.png", full_page=True)

    # Create a viewer through the Users page, then sign out.
    page.get_by_test_id("nav-users").click()
    page.get_by_test_id("create-user").click()
    page.locator("[data-testid=modal] input[name=username]").fill("watcher")
    page.locator("[data-testid=modal] input[name=password]").fill(VIEWER_PASSWORD)
    page.locator("[data-testid=modal] select[name=role]").select_option("viewer")
    page.get_by_test_id("modal-submit").click()
    expect(page.get_by_test_id("users-table")).to_contain_text("watcher")
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-submit")).to_be_visible()
    context.close()

    # Viewer: every page they can open has no mutating control and no secret.
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    login(page, gateway.url, "watcher", VIEWER_PASSWORD)
    expect(page.get_by_test_id("nav-keys")).to_have_count(0)
    expect(page.get_by_test_id("nav-users")).to_have_count(0)
    for name in VIEWER_PAGES:
        page.get_by_test_id(f"nav-{name}").click()
        expect(page.locator(f"[data-route={name}].active")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        assert page.locator("[data-mutating]").count() == 0, f"mutating control on {name}"
        labels = [t.strip() for t in page.locator("button, a.btn").all_inner_texts()]
        assert not [t for t in labels if MUTATING_WORDS.search(t)], f"{name}: {labels}"
        html = page.content()
        assert secret not in html
        assert not re.search(r"\bsk-", page.locator("main").inner_text()), f"{name} shows a (masked) secret"
        page.screenshot(path=shots / f"05-viewer-{name}.png", full_page=True)
    # An admin-only page typed into the address bar falls back to the overview.
    page.goto(gateway.url + "/#/keys")
    expect(page.locator("[data-route=overview].active")).to_have_count(1)
    expect(page.get_by_test_id("create-key")).to_have_count(0)
    context.close()

    assert page_errors == []
    assert len(list(shots.glob("*.png"))) == 4 + len(VIEWER_PAGES)

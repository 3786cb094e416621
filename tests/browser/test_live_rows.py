"""Live rows in a real browser (issue 16, items 1, 2, 7 and 10), driven like a person would.

Log in to a gateway that has served nothing yet and see the overview say so; send traffic and see it arrive;
reload and still see it (the latest rows come from the API, not only from the live feed); leave the request log
open with its live tail on, send three requests with the official OpenAI SDK and watch the three rows appear
without pressing Search; open one of those live rows and read its detail (status, timing bar, tokens, cost);
see client keys by name, with the id on hover, in the overview, the log and the by-key analytics.

Uses the Debian Chromium through Playwright (fixtures and login from ``test_dashboard``); screenshots go to
the test's tmp folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.support import STATIC_INDEX, login
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-live-rows"
ADMIN_PASSWORD = "admin-pass-live-rows-1"
KEY_NAME = "browser-app"
DURATION = re.compile(r"^\d+(\.\d{1,2})? (ms|s)$")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    with (
        FakeOpenAICompat(dialect="openai", api_key=UPSTREAM_KEY) as upstream,
        FakeOpenAICompat(dialect="moonshot", api_key=UPSTREAM_KEY) as moonshot,  # kimi-k3: no known price
    ):
        gw = Gateway(
            tmp_path_factory.mktemp("live-rows"),
            env={
                "OPENAI_BASE_URL": upstream.base_url,
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "MOONSHOT_BASE_URL": moonshot.base_url,
                "MOONSHOT_API_KEY": UPSTREAM_KEY,
                "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
        )
        try:
            gw.start()
            yield gw
        finally:
            gw.stop()


def send(client: openai.OpenAI, text: str, model: str = "gpt-4o-mini") -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])
    assert raw.parse().choices[0].message.content == f"echo: {text}"
    return str(raw.headers["x-request-id"])


def row(page: Page, table: str, request_id: str) -> Locator:
    return page.locator(f"[data-testid={table}] tr[data-request-id='{request_id}']")


def key_cells(page: Page, table: str) -> list[str]:
    return [t.strip() for t in page.locator(f"[data-testid={table}] td.key-name").all_inner_texts()]


def test_rows_appear_live_open_readably_survive_a_reload_and_name_their_keys(
    gateway: Gateway,
    browser: Browser,
    tmp_path: Path,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    secret = gateway.create_key(KEY_NAME)
    client = openai.OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    # A gateway that has served nothing: the overview says so instead of showing an empty table.
    login(page, gateway.url, "admin", ADMIN_PASSWORD)
    expect(page.get_by_test_id("recent-empty")).to_contain_text("No requests yet")
    page.screenshot(path=shots / "01-overview-empty.png", full_page=True)

    # Two requests arrive live on the overview, by key name.
    first = [send(client, f"overview {i}") for i in range(2)]
    for request_id in first:
        expect(row(page, "live-table", request_id)).to_have_count(1)
    expect(page.get_by_test_id("recent-empty")).to_be_hidden()

    # After a reload the live feed is empty, yet the overview shows the latest rows (from the API), once each.
    page.reload()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open")
    for request_id in first:
        expect(row(page, "live-table", request_id)).to_have_count(1)
    expect(page.get_by_test_id("recent-empty")).to_be_hidden()
    assert key_cells(page, "live-table") == [KEY_NAME, KEY_NAME]
    key_cell = page.locator("[data-testid=live-table] td.key-name").first
    assert re.fullmatch(r"client key id \d+", key_cell.get_attribute("title") or ""), "the key's id on hover"
    page.screenshot(path=shots / "02-overview-after-reload.png", full_page=True)

    # The request log, live tail on (the default): three new requests appear without pressing Search.
    page.get_by_test_id("nav-requests").click()
    expect(page.get_by_test_id("live-tail")).to_be_checked()
    for request_id in first:  # the first page has loaded
        expect(row(page, "log-table", request_id)).to_have_count(1)
    sent = [send(client, f"log tail {i}") for i in range(3)]
    for request_id in sent:
        expect(row(page, "log-table", request_id)).to_have_count(1, timeout=5000)
    # Newest on top, each once, and they came from the live feed (no database id on the row).
    ids = page.locator("[data-testid=log-table] tbody tr").evaluate_all("rs => rs.map(r => r.dataset.requestId)")
    assert ids[:3] == sent[::-1] and len(ids) == len(set(ids)) == 5
    assert row(page, "log-table", sent[0]).get_attribute("data-id") is None
    assert key_cells(page, "log-table") == [KEY_NAME] * 5
    assert not [t for t in key_cells(page, "log-table") if t.startswith("#")]
    page.screenshot(path=shots / "03-log-live-tail.png", full_page=True)

    # Open a live row: a readable detail, not a dump of the database row.
    row(page, "log-table", sent[1]).click()
    detail = page.get_by_test_id("request-detail")
    expect(detail.get_by_test_id("detail-request-id")).to_have_text(sent[1])
    expect(detail.get_by_test_id("detail-status")).to_have_text("200 OK")
    expect(detail.get_by_test_id("detail-key")).to_have_text(KEY_NAME)
    expect(detail.get_by_test_id("timing-bar")).to_be_visible()
    for part in ("timing-total", "timing-gateway", "timing-upstream"):
        text = detail.get_by_test_id(part).inner_text().strip()
        assert DURATION.match(text), f"{part}: {text!r}"
    expect(detail.get_by_test_id("detail-tokens")).to_contain_text("Prompt")
    expect(detail.get_by_test_id("detail-tokens")).to_contain_text("Completion")
    cost = detail.get_by_test_id("detail-cost").inner_text().strip()
    assert cost == "?" or re.fullmatch(r"\$\d[\d,]*(\.\d+)?", cost), cost
    assert "latency_ms" not in detail.inner_text(), "the raw columns stay folded away"
    page.screenshot(path=shots / "04-live-row-detail.png", full_page=True)
    detail.get_by_test_id("detail-close").click()
    expect(detail).to_be_hidden()

    # Reload the overview: the latest rows, newest first, by key name.
    page.get_by_test_id("nav-overview").click()
    page.reload()
    for request_id in sent:
        expect(row(page, "live-table", request_id)).to_have_count(1)
    ids = page.locator("[data-testid=live-table] tbody tr").evaluate_all("rs => rs.map(r => r.dataset.requestId)")
    assert ids == [*sent[::-1], *first[::-1]]
    assert key_cells(page, "live-table") == [KEY_NAME] * 5
    page.screenshot(path=shots / "05-overview-latest.png", full_page=True)

    # By-key analytics name the key too.
    page.get_by_test_id("nav-analytics").click()
    top = page.get_by_test_id("analytics-top")
    expect(top).to_contain_text("gpt-4o-mini")  # the first answer (by model) is in: it cannot land after ours
    page.get_by_test_id("analytics-top_by").select_option("client")
    expect(top).to_contain_text(KEY_NAME)
    assert not re.search(r"#\d", top.inner_text())
    page.screenshot(path=shots / "06-analytics-by-key.png", full_page=True)

    # An unpriced model and a failed request, live in the log: "?" (never $0) and a readable error.
    page.get_by_test_id("nav-requests").click()
    expect(row(page, "log-table", sent[0])).to_have_count(1)
    unpriced = send(client, "no price for me", model="kimi-k3")
    with pytest.raises(openai.NotFoundError) as failed:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    missing = failed.value.response.headers["x-request-id"]
    expect(row(page, "log-table", unpriced)).to_have_count(1)
    expect(row(page, "log-table", missing)).to_have_count(1)
    assert row(page, "log-table", unpriced).locator("td").nth(6).inner_text().strip() == "?"
    row(page, "log-table", unpriced).click()
    expect(detail.get_by_test_id("detail-request-id")).to_have_text(unpriced)
    expect(detail.get_by_test_id("detail-cost")).to_have_text("?")
    expect(detail).to_contain_text("No price is known for this model")
    row(page, "log-table", missing).click()
    expect(detail.get_by_test_id("detail-request-id")).to_have_text(missing)
    expect(detail.get_by_test_id("detail-status")).to_contain_text("404")
    expect(detail.get_by_test_id("detail-error")).to_be_visible()
    expect(detail).to_contain_text("The upstream was not called.")
    expect(detail).not_to_contain_text("asked for")  # no routed model: only the one asked for
    page.screenshot(path=shots / "07-error-detail.png", full_page=True)

    context.close()
    assert page_errors == []

"""Costs in the dashboard (issue 16, items 3, 4, 5, 9), in the Debian Chromium driven by Playwright.

A custom provider's model that no price catalogue knows ("house-model") is sent traffic beside a priced one
(gpt-4o-mini). No cost cell for the unpriced requests may read $0 (overview, analytics, request log): they show "?"
and the totals say how many requests they leave out. Every amount uses one format (3 significant digits below $1)
with the exact decimal on hover. The keys page shows when a key was last used. Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.support import STATIC_INDEX, login
from tests.support import UNPRICED_MODEL, Gateway, priced_and_unpriced_gateway

UPSTREAM_KEY = "sk-upstream-costs-browser"
CUSTOM_KEY = "sk-custom-costs-browser"
ADMIN_PASSWORD = "admin-pass-costs-browser-1"
UNPRICED = UNPRICED_MODEL
PRICED = "gpt-4o-mini"
ZERO_USD = re.compile(r"^-?\$0(\.0*)?$")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    with priced_and_unpriced_gateway(
        tmp_path_factory.mktemp("costs-browser"),
        upstream_key=UPSTREAM_KEY,
        custom_key=CUSTOM_KEY,
        admin_password=ADMIN_PASSWORD,
    ) as (gw, _):
        yield gw


def send(gateway: Gateway, model: str, n: int = 1) -> list[str]:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    ids = []
    for i in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": f"cost check {i}"}]
        )
        ids.append(raw.headers["x-request-id"])
    return ids


def expected_usd(exact: str) -> str:
    """The dashboard's rule: two decimals from $1, three significant digits (at least two decimals) below."""
    value = Decimal(exact)
    if value == 0:
        return "$0.00"
    if abs(value) >= 1:
        return f"${abs(value).quantize(Decimal('0.01'), ROUND_HALF_EVEN):,.2f}"
    decimals = max(2, 2 - abs(value).adjusted())
    text = format(abs(value).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN), "f")
    text = re.sub(r"(\.\d\d\d*?)0+$", r"\1", text)
    return ("-" if value < 0 else "") + "$" + text


def cost_column(page: Page, table_testid: str) -> int:
    """Where the "Cost" column is in a request table (other columns may come and go)."""
    headers = [t.strip() for t in page.locator(f"[data-testid={table_testid}] thead th").all_inner_texts()]
    return headers.index("Cost")


def assert_never_zero(cell: Locator, where: str) -> None:
    """A cost cell for unpriced requests: "?", never an amount of $0."""
    for amount in cell.locator(".usd").all_inner_texts():
        assert not ZERO_USD.match(amount.strip()), f"{where}: an unknown price shows as {amount!r}"
    text = cell.inner_text()
    assert not ZERO_USD.match(text.split()[0] if text.split() else ""), f"{where}: {text!r}"


def assert_formatted_with_exact_title(amount: Locator) -> None:
    """An amount shows the one format and carries the exact decimal on hover."""
    title = amount.get_attribute("title") or ""
    match = re.fullmatch(r"\$(\d+(?:\.\d+)?) \(exact\)", title)
    assert match, f"no exact value on hover: {title!r}"
    assert amount.inner_text().strip() == expected_usd(match.group(1)), title


def test_unknown_prices_never_show_as_zero_and_keys_show_last_use(
    gateway: Gateway,
    browser: Browser,
    tmp_path: Path,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # Traffic before the dashboard opens: the totals, the analytics and the request log read it from the database.
    unpriced_ids = send(gateway, UNPRICED, 3)
    priced_ids = send(gateway, PRICED, 2)
    for request_id in unpriced_ids + priced_ids:
        gateway.row_for(request_id)  # committed
    assert all(gateway.row_for(i)["price_unknown"] in (True, 1) for i in unpriced_ids)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    login(page, gateway.url, "admin", ADMIN_PASSWORD)

    # Overview: the 24 h cost total says how many requests it leaves out; a new unpriced request streams in with "?".
    total = page.get_by_test_id("total-cost")
    expect(total).to_contain_text("3 unpriced")
    assert_never_zero(total, "overview total")
    assert_formatted_with_exact_title(total.locator(".usd").first)  # the priced requests' cost
    (live_id,) = send(gateway, UNPRICED)
    live_row = page.locator(f"[data-testid=live-table] tr[data-request-id='{live_id}']")
    expect(live_row).to_have_count(1)
    expect(live_row.locator("td").nth(cost_column(page, "live-table"))).to_have_text("?")
    # The live cost per minute counts the unpriced request of its window beside the cost.
    expect(page.get_by_test_id("counter-cost")).to_contain_text("unpriced", timeout=8000)
    assert_never_zero(page.get_by_test_id("counter-cost"), "cost per minute")
    page.screenshot(path=shots / "01-overview.png", full_page=True)

    # Analytics: totals, the top table and the cost chart.
    page.get_by_test_id("nav-analytics").click()
    analytics_total = page.get_by_test_id("analytics-total-cost")
    expect(analytics_total).to_contain_text("4 unpriced")
    assert_never_zero(analytics_total, "analytics total")
    top = page.get_by_test_id("analytics-top")
    unpriced_row = top.locator("tr", has_text=UNPRICED)
    expect(unpriced_row).to_have_count(1)
    cost_cell = unpriced_row.locator("td").nth(3)
    expect(cost_cell).to_contain_text("?")
    expect(cost_cell).to_contain_text("4 unpriced")
    assert_never_zero(cost_cell, "top table")
    priced_cost = top.locator("tr", has_text=PRICED).locator("td").nth(3).locator(".usd")
    assert_formatted_with_exact_title(priced_cost)
    expect(page.get_by_test_id("chart-cost-unpriced")).to_contain_text("4 requests without a known price")
    page.screenshot(path=shots / "02-analytics.png", full_page=True)

    # Request log: every unpriced row shows "?"; a priced row the one format, exact on hover.
    page.get_by_test_id("nav-requests").click()
    expect(page.locator(f"[data-testid=log-table] tr[data-request-id='{live_id}']")).to_have_count(1)
    cost = cost_column(page, "log-table")
    for request_id in [*unpriced_ids, live_id]:
        row = page.locator(f"[data-testid=log-table] tr[data-request-id='{request_id}']")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(cost)).to_have_text("?")
        assert_never_zero(row.locator("td").nth(cost), f"request log {request_id}")
    priced_row = page.locator(f"[data-testid=log-table] tr[data-request-id='{priced_ids[0]}']")
    assert_formatted_with_exact_title(priced_row.locator("td").nth(cost).locator(".usd"))
    page.screenshot(path=shots / "03-request-log.png", full_page=True)

    # Keys: the key that sent the traffic shows when it was last used (not "—").
    page.get_by_test_id("nav-keys").click()
    keys = page.get_by_test_id("keys-table")
    expect(keys).to_be_visible()
    headers = [t.strip() for t in keys.locator("thead th").all_inner_texts()]
    last_used = headers.index("Last used")
    key_row = keys.locator("tbody tr", has_text="test").first
    used_text = key_row.locator("td").nth(last_used).inner_text().strip()
    assert used_text not in ("", "—"), f"last used: {used_text!r}"
    # The limits dialog opens (limits are enforced now: no "not enforced yet" note).
    key_row.get_by_role("button", name="Limits").click()
    expect(page.get_by_test_id("modal")).to_be_visible()
    expect(page.get_by_test_id("limits-note")).to_have_count(0)
    page.screenshot(path=shots / "04-keys-limits.png")
    page.locator("[data-testid=modal] button", has_text="Cancel").click()
    expect(page.get_by_test_id("modal")).to_have_count(0)
    context.close()

    assert page_errors == []
    assert len(list(shots.glob("*.png"))) == 4

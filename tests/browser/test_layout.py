"""The dashboard's layout, dialogs and charts in a real browser (issue 16, items 8, 11, 13 and 14).

Every page at a phone's size (390 x 844) and at a desktop's (1440 x 900) is never wider than the window (at 390
the navigation is a menu behind a button); every dialog reachable from the keys, providers and users pages
closes with Escape and with a click outside and gives the focus back; the overview's counters fit one row at
1440 and wrap into equal rows below; a chart without data shows the one empty state; errors are drawn red and
the series without a model has one name in the legend and the table; the y axis is as wide as its labels.

Same setup as test_dashboard.py: the Debian Chromium by path, a real gateway and a fake upstream on loopback.
Screenshots of every page at both sizes go to this test's tmp_path (screenshots/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from gophergate.providers.openai_compat.dialects import DIALECTS
from gophergate.providers.stored import KINDS
from tests.browser.support import STATIC_INDEX, login
from tests.browser.test_dashboard import ADMIN_PASSWORD, UPSTREAM_KEY
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

ADMIN_PAGES = ("overview", "analytics", "requests", "keys", "teams", "providers", "models", "users", "system")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
RED = "rgb(220, 38, 38)"

# Why the document is wider than the window, when it is: the elements that stick out on the right.
OVERFLOW_JS = """() => {
  const w = window.innerWidth;
  const out = [];
  if (document.documentElement.scrollWidth > w) {
    for (const el of document.querySelectorAll("body *")) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > w + 0.5 && !el.closest(".table-wrap, .split-main")) {
        const names = typeof el.className === "string" ? el.className.trim().split(/\\s+/) : [];
        const cls = names.filter(Boolean).map((n) => "." + n).join("");
        out.push(`${el.tagName.toLowerCase()}${cls} right=${Math.round(r.right)}`);
      }
    }
  }
  return { scrollWidth: document.documentElement.scrollWidth, innerWidth: w, offenders: out.slice(0, 8) };
}"""

# The width the y axis needs for its widest label: the text in the axis font, plus tick and gap.
LABEL_WIDTH_JS = """labels => {
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  return Math.max(0, ...labels.filter(Boolean).map(l => ctx.measureText(l).width));
}"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat(dialect="openai", api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAICompat, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    gw = Gateway(
        tmp_path_factory.mktemp("layout"),
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


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Gateway:
    """Rows in every table and chart: successful chats, an upstream error, and a request for no known model."""
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    for i in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FAIL 500"}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="no-such-model-anywhere", messages=[{"role": "user", "content": "hi"}])
    assert len(gateway.wait_rows(5)) == 5
    return gateway


def admin_page(browser: Browser, gateway: Gateway, viewport: dict[str, int], errors: list[str]) -> Page:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, gateway.url, "admin", ADMIN_PASSWORD)
    return page


def settle(page: Page, name: str) -> None:
    """Wait until the page has rendered its data: nothing says "Loading…" and every chart has loaded."""
    expect(page.locator(f"main[data-rendered={name}]")).to_have_count(1)
    page.wait_for_function(
        """() => {
          const main = document.querySelector("main");
          const charts = [...main.querySelectorAll(".chart")];
          return !main.innerText.includes("Loading…") && charts.every(c => c.dataset.loaded);
        }"""
    )
    page.wait_for_load_state("networkidle")


def go(page: Page, name: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/{name}")
    expect(page.locator(f"[data-route={name}].active")).to_have_count(1)
    settle(page, name)


def assert_fits(page: Page, where: str) -> None:
    report: dict[str, Any] = page.evaluate(OVERFLOW_JS)
    assert report["scrollWidth"] <= report["innerWidth"], f"{where}: wider than the window: {report}"


def test_every_page_fits_the_window_at_390_and_1440_and_the_phone_menu_works(
    traffic: Gateway, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    for viewport in (PHONE, DESKTOP):
        width = viewport["width"]
        page = admin_page(browser, traffic, viewport, errors)
        toggle = page.get_by_test_id("nav-toggle")
        for name in ADMIN_PAGES:
            link = page.get_by_test_id(f"nav-{name}")
            if width < 800:
                # The navigation is a menu: hidden until the button opens it, closed again by choosing a page.
                expect(link).to_be_hidden()
                expect(toggle).to_have_attribute("aria-expanded", "false")
                toggle.click()
                expect(toggle).to_have_attribute("aria-expanded", "true")
                expect(link).to_be_visible()
                link.click()
                expect(link).to_be_hidden()
                expect(toggle).to_have_attribute("aria-expanded", "false")
            else:
                expect(toggle).to_be_hidden()
                link.click()
            expect(page.locator(f"[data-route={name}].active")).to_have_count(1)
            settle(page, name)
            assert_fits(page, f"{name} at {width} px")
            page.screenshot(path=shots / f"{width}-{name}.png", full_page=True)
            if name == "keys":
                # A dialog fits the window too.
                page.get_by_test_id("create-key").click()
                box = page.get_by_role("dialog").bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
                assert_fits(page, f"a dialog at {width} px")
                page.screenshot(path=shots / f"{width}-keys-dialog.png")
                page.keyboard.press("Escape")
                expect(page.get_by_role("dialog")).to_have_count(0)
        if width < 800:
            # Open on a page, the menu itself fits too.
            toggle.click()
            expect(page.get_by_test_id("nav-overview")).to_be_visible()
            assert_fits(page, f"the open menu at {width} px")
            page.keyboard.press("Escape")
            expect(toggle).to_have_attribute("aria-expanded", "false")
        page.context.close()
    assert errors == []
    assert len(list(shots.glob("*.png"))) == 2 * (len(ADMIN_PAGES) + 1)


def rows_per_line(cards: Locator) -> list[int]:
    tops: list[float] = []
    for box in (c.bounding_box() for c in cards.all()):
        assert box is not None
        tops.append(round(box["y"]))
    return [tops.count(t) for t in sorted(set(tops))]


def test_the_overview_counters_fit_one_row_at_1440_and_wrap_into_equal_rows(gateway: Gateway, browser: Browser) -> None:
    errors: list[str] = []
    page = admin_page(browser, gateway, DESKTOP, errors)
    cards = page.locator("[data-testid=live-counters] > .card")
    expect(cards).to_have_count(8)
    expect(cards.last).to_contain_text("Log queue")
    assert rows_per_line(cards) == [8]
    for width, expected in ((1024, [4, 4]), (390, [2, 2, 2, 2])):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_function("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert rows_per_line(cards) == expected, width
    page.context.close()
    assert errors == []


def table_row(page: Page, table: str, cell_text: str) -> Locator:
    """The row of a table with a cell that says exactly `cell_text`."""
    cell = page.locator("td", has_text=re.compile(f"^{re.escape(cell_text)}$"))
    return page.locator(f"[data-testid={table}] tbody tr").filter(has=cell)


def close_by_escape(page: Page, opener: Locator, what: str) -> None:
    opener.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_have_count(1)
    # A click inside the dialog keeps it open.
    dialog.locator("h3").click()
    expect(dialog).to_have_count(1)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert opener.evaluate("el => el === document.activeElement"), f"{what}: the focus did not come back"


def close_by_click_outside(page: Page, opener: Locator, what: str) -> None:
    opener.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_have_count(1)
    box = dialog.bounding_box()
    assert box is not None and box["x"] > 10 and box["y"] > 10, what
    page.mouse.click(5, 5)  # on the overlay, beside the dialog
    expect(dialog).to_have_count(0)
    assert opener.evaluate("el => el === document.activeElement"), f"{what}: the focus did not come back"


def test_every_dialog_closes_with_escape_and_a_click_outside(gateway: Gateway, browser: Browser) -> None:
    errors: list[str] = []
    page = admin_page(browser, gateway, DESKTOP, errors)

    def row(table: str, text: str) -> Locator:
        return table_row(page, table, text)

    # Users: make a second user (a submitted dialog still works), so that its role and delete dialogs exist.
    go(page, "users")
    page.get_by_test_id("create-user").click()
    page.locator("[data-testid=modal] input[name=username]").fill("layout-viewer")
    page.locator("[data-testid=modal] input[name=password]").fill("layout-viewer-pass-1")
    page.get_by_test_id("modal-submit").click()
    expect(row("users-table", "layout-viewer")).to_have_count(1)

    # Keys: a key made from the UI; its secret reveal closes with Escape but not with a stray click.
    go(page, "keys")
    page.get_by_test_id("create-key").click()
    page.locator("[data-testid=modal] input[name=name]").fill("layout-key")
    page.get_by_test_id("modal-submit").click()
    reveal = page.get_by_test_id("secret-dialog")
    expect(reveal).to_have_count(1)
    page.mouse.click(5, 5)
    expect(reveal).to_have_count(1)
    page.keyboard.press("Escape")
    expect(reveal).to_have_count(0)
    expect(row("keys-table", "layout-key")).to_have_count(1)

    openers: dict[str, tuple[str, str | None, str]] = {
        "create key": ("keys", None, "create-key"),
        "rename key": ("keys", "layout-key", "Rename"),
        "key limits": ("keys", "layout-key", "Limits"),
        "rotate key": ("keys", "layout-key", "Rotate"),
        "revoke key": ("keys", "layout-key", "Revoke"),
        "add provider": ("providers", None, "add-provider"),
        "edit provider": ("providers", "openai", "Edit"),
        "delete provider": ("providers", "openai", "Delete"),
        "create user": ("users", None, "create-user"),
        "user role": ("users", "layout-viewer", "Role"),
        "user password": ("users", "layout-viewer", "Password"),
        "delete user": ("users", "layout-viewer", "Delete"),
    }
    tables = {"keys": "keys-table", "providers": "providers-table", "users": "users-table"}
    for what, (where, row_text, button) in openers.items():
        go(page, where)
        if row_text is None:
            opener = page.get_by_test_id(button)
        else:
            opener = row(tables[where], row_text).get_by_role("button", name=button, exact=True)
        close_by_escape(page, opener, what)
        close_by_click_outside(page, opener, what)
    # Nothing was changed by a dismissed dialog.
    go(page, "keys")
    expect(row("keys-table", "layout-key")).to_contain_text("active")
    go(page, "users")
    expect(row("users-table", "layout-viewer")).to_have_count(1)
    page.context.close()
    assert errors == []


def test_the_provider_dialect_is_a_choice_of_the_backends_dialects(gateway: Gateway, browser: Browser) -> None:
    errors: list[str] = []
    page = admin_page(browser, gateway, DESKTOP, errors)
    go(page, "providers")
    page.get_by_test_id("add-provider").click()
    dialect = page.locator("[data-testid=modal] select[name=dialect]")
    options = dialect.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["", *DIALECTS]
    kinds = page.locator("[data-testid=modal] select[name=kind] option").evaluate_all("os => os.map(o => o.value)")
    assert kinds == list(KINDS)
    page.keyboard.press("Escape")
    # The edit dialog shows the provider's current dialect.
    table_row(page, "providers-table", "openai").get_by_role("button", name="Edit").click()
    expect(page.locator("[data-testid=modal] select[name=dialect]")).to_have_value("openai")
    page.keyboard.press("Escape")
    page.context.close()
    assert errors == []


def test_testing_a_provider_replaces_the_testing_notice_by_the_result(gateway: Gateway, browser: Browser) -> None:
    errors: list[str] = []
    page = admin_page(browser, gateway, DESKTOP, errors)
    go(page, "providers")
    table_row(page, "providers-table", "openai").get_by_role("button", name="Test", exact=True).click()
    notices = page.get_by_test_id("toast")
    expect(notices).to_have_count(1)
    expect(notices).to_contain_text("openai: OK in")
    expect(notices).to_have_count(1)
    assert "Testing" not in notices.inner_text()
    page.context.close()
    assert errors == []


def test_a_chart_with_no_data_shows_the_one_empty_state(traffic: Gateway, browser: Browser) -> None:
    errors: list[str] = []
    page = admin_page(browser, traffic, DESKTOP, errors)
    go(page, "analytics")
    charts = [f"chart-{n}" for n in ("requests", "cost", "tokens", "latency", "errors")]
    for testid in charts:  # the last hour has traffic: every chart is drawn
        expect(page.get_by_test_id(testid)).to_have_attribute("data-empty", "false")
    page.get_by_test_id("analytics-range").select_option("custom")
    page.locator("input[name=from]").fill("2020-01-01T00:00")
    page.locator("input[name=to]").fill("2020-01-02T00:00")
    page.get_by_test_id("analytics-apply").click()
    for testid in charts:
        chart = page.get_by_test_id(testid)
        expect(chart).to_have_attribute("data-empty", "true")
        expect(chart.get_by_test_id("chart-empty")).to_be_visible()
        expect(chart.get_by_test_id("chart-empty")).to_have_text("No data for this range")
        expect(chart.locator("canvas")).to_have_count(0)
    page.context.close()
    assert errors == []


def test_charts_draw_errors_red_name_the_modelless_series_alike_and_fit_their_axis_labels(
    traffic: Gateway, browser: Browser
) -> None:
    errors: list[str] = []
    page = admin_page(browser, traffic, DESKTOP, errors)

    def marker_color(chart: Locator, label: str) -> str:
        series = chart.locator(".u-legend .u-series", has_text=label)
        expect(series).to_have_count(1)
        return str(series.locator(".u-marker").evaluate("el => getComputedStyle(el).borderTopColor"))

    # Overview: requests per minute in blue, errors in red.
    minute = page.get_by_test_id("overview-chart")
    expect(minute).to_have_attribute("data-empty", "false")
    assert marker_color(minute, "errors") == RED
    assert marker_color(minute, "requests") != RED

    # Analytics grouped by model: the request without a model is "(no model)" in the legend and the top table;
    # the error-rate chart is drawn in red.
    go(page, "analytics")
    page.get_by_test_id("analytics-range").select_option("1h")
    page.get_by_test_id("analytics-group_by").select_option("model")
    requests = page.get_by_test_id("chart-requests")
    expect(requests.locator(".u-legend")).to_contain_text("(no model)")
    expect(requests.locator(".u-legend")).to_contain_text("gpt-4o-mini")
    assert marker_color(requests, "gpt-4o-mini") != RED
    expect(page.get_by_test_id("analytics-top")).to_contain_text("(no model)")
    expect(page.get_by_test_id("analytics-top")).not_to_contain_text("(none)")
    # Every error-rate series is drawn in red or another warm colour, none in a colour the requests chart uses.
    errors_chart = page.get_by_test_id("chart-errors")
    expect(errors_chart.locator(".u-legend")).to_contain_text("(no model)")
    error_colors = {marker_color(errors_chart, label) for label in ("(no model)", "gpt-4o-mini")}
    request_colors = {marker_color(requests, label) for label in ("(no model)", "gpt-4o-mini")}
    assert RED in error_colors and not error_colors & request_colors, (error_colors, request_colors)

    # The cost axis is as wide as its widest label ("$" included).
    cost = page.get_by_test_id("chart-cost")
    expect(cost).to_have_attribute("data-empty", "false")
    page.wait_for_function(
        "() => JSON.parse(document.querySelector('[data-testid=chart-cost]').dataset.yLabels || '[]').length > 0"
    )
    labels = json.loads(cost.get_attribute("data-y-labels") or "[]")
    shown = [str(label) for label in labels if label]
    assert shown and all(label.startswith("$") for label in shown), labels
    assert len(set(shown)) == len(shown), f"ticks that read alike: {labels}"
    needed = page.evaluate(LABEL_WIDTH_JS, labels)
    y_axis = cost.locator(".u-axis").nth(1)
    axis_box = y_axis.bounding_box()
    # uPlot draws a label beside the tick (10 px) and a gap (5 px): all of it must fit in the axis.
    assert axis_box is not None and axis_box["width"] >= needed + 15, (axis_box, needed, labels)

    # By routing target (provider/model): the request that reached no provider is "(no target)"; the top table
    # shows each target's prompt-cache hit ratio as a percent.
    page.get_by_test_id("analytics-group_by").select_option("target")
    expect(requests.locator(".u-legend")).to_contain_text("openai/gpt-4o-mini")
    expect(requests.locator(".u-legend")).to_contain_text("(no target)")
    page.get_by_test_id("analytics-top_by").select_option("target")
    top = page.get_by_test_id("analytics-top")
    target_row = top.locator("tbody tr", has_text="openai/gpt-4o-mini")
    expect(target_row).to_have_count(1)
    headers = [t.strip() for t in top.locator("thead th").all_inner_texts()]
    expect(target_row.locator("td").nth(headers.index("Cache hits"))).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(page.get_by_test_id("analytics-total-cache")).to_contain_text("%")
    page.context.close()
    assert errors == []

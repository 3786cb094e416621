"""Teams and key usage in the dashboard (governance), in the Debian Chromium driven by Playwright.

An admin creates a team with a budget and sees it listed; a key moved into it with a budget of its own shows a
budget bar whose numbers are those of GET /api/keys/{id}/usage (the team's those of /api/teams/{id}/usage); the
key's Limits dialog shows its usage live (fetched every 2 s while it is open, no more once it is closed) and sets
and clears the key's team and expiry; a new key can be created into a team; deleting a team that still has keys
shows the API's refusal. A viewer sees the teams page and its bars without any control that changes something.
Real gateway, fake upstream on loopback. Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.browser.support import STATIC_INDEX, login
from tests.browser.test_costs import expected_usd
from tests.browser.test_dashboard import MUTATING_WORDS
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-governance-browser"
ADMIN_PASSWORD = "admin-pass-governance-browser-1"
VIEWER_PASSWORD = "viewer-pass-governance-browser-1"
KEY_NAME = "test"  # the key Gateway.start makes with the CLI
TEAM = "research"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    with FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream:
        gw = Gateway(
            tmp_path_factory.mktemp("governance-browser"),
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


def new_page(
    browser: Browser, gateway: Gateway, user: str, password: str, errors: list[str], width: int = 1400
) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, gateway.url, user, password)
    return page


def api(page: Page, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The admin API with the page's session (and its CSRF token for a change)."""
    headers = {}
    if method != "GET":
        headers["X-CSRF-Token"] = page.request.get(page.url.split("#")[0] + "api/auth/me").json()["csrf_token"]
    resp = page.request.fetch(page.url.split("#")[0] + path.lstrip("/"), method=method, headers=headers, data=body)
    assert resp.ok, f"{method} {path}: {resp.status} {resp.text()}"
    return resp.json()


def go(page: Page, name: str) -> None:
    """Open a page afresh (loaded again, so that it shows the data of now, even when it is the current one)."""
    page.goto(page.url.split("#")[0] + f"#/{name}")
    page.reload()
    expect(page.locator(f"main[data-rendered={name}]")).to_have_count(1)


def row(page: Page, table: str, first_cell: str) -> Locator:
    """The row of a table with a cell that says exactly `first_cell`."""
    cell = page.locator("td", has_text=re.compile(f"^{re.escape(first_cell)}$"))
    return page.locator(f"[data-testid={table}] tbody tr").filter(has=cell)


def assert_budget_matches(bar: Locator, budget: dict[str, str]) -> None:
    """The bar's amounts are the API's: the exact decimal on hover, the one money format as text."""
    for testid, field in (
        ("budget-spend", "spend_usd"),
        ("budget-limit", "limit_usd"),
        ("budget-remaining", "remaining_usd"),
    ):
        amount = bar.get_by_test_id(testid)
        expect(amount).to_have_attribute("title", f"${budget[field]} (exact)")
        expect(amount).to_have_text(expected_usd(budget[field]))
    if budget["resets_at"]:
        expect(bar.get_by_test_id("budget-resets")).to_have_attribute("data-resets-at", budget["resets_at"])


def chat(gateway: Gateway, text: str) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    gateway.row_for(raw.headers["x-request-id"])


def settled_usage(page: Page, path: str, spend_above: str = "0") -> dict[str, Any]:
    """The usage once the last request's cost has settled (spend above `spend_above`, nothing reserved)."""
    deadline = time.monotonic() + 10
    while True:
        usage: dict[str, Any] = api(page, "GET", path)
        budget = usage["budget"]
        if float(budget["spend_usd"]) > float(spend_above) and float(budget["reserved_usd"]) == 0:
            return usage
        assert time.monotonic() < deadline, f"the spend did not settle: {usage}"
        time.sleep(0.2)


def test_teams_and_key_budgets_show_the_usage_api_numbers_and_a_viewer_gets_no_controls(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    page = new_page(browser, gateway, "admin", ADMIN_PASSWORD, errors)

    # An admin creates a team with a budget: it is listed with its limits and an empty budget bar.
    page.get_by_test_id("nav-teams").click()
    expect(page.locator("main[data-rendered=teams]")).to_have_count(1)
    page.get_by_test_id("create-team").click()
    dialog = page.get_by_test_id("modal")
    dialog.locator("input[name=name]").fill(TEAM)
    dialog.locator("input[name=rpm]").fill("100")
    dialog.locator("input[name=budget_usd]").fill("5")
    dialog.locator("select[name=budget_period]").select_option("day")
    page.get_by_test_id("modal-submit").click()
    expect(dialog).to_have_count(0)
    team_row = row(page, "teams-table", TEAM)
    expect(team_row).to_contain_text("100 req/min, $5.00/day")
    expect(team_row.get_by_test_id("budget-spend")).to_have_text("$0.00")
    team = next(t for t in api(page, "GET", "/api/teams")["data"] if t["name"] == TEAM)

    # The key goes into the team, with a budget and a rate of its own, from its Limits dialog.
    go(page, "keys")
    expect(page.get_by_test_id("limits-note")).to_have_count(0)
    key_row = row(page, "keys-table", KEY_NAME)
    expect(key_row.get_by_test_id("budget-bar")).to_have_count(0)  # no limits yet: nothing to show
    key_row.get_by_role("button", name="Limits", exact=True).click()
    dialog.locator("select[name=team_id]").select_option(label=TEAM)
    dialog.locator("input[name=rpm]").fill("60")
    dialog.locator("input[name=budget_usd]").fill("2")
    dialog.locator("select[name=budget_period]").select_option("day")
    page.get_by_test_id("modal-submit").click()
    expect(dialog).to_have_count(0)
    expect(key_row).to_contain_text(TEAM)
    key = next(k for k in api(page, "GET", "/api/keys")["data"] if k["name"] == KEY_NAME)
    assert key["team"] == {"id": team["id"], "name": TEAM}
    assert (key["limits"]["rpm"], key["limits"]["budget_usd"]) == (60, "2")

    # Traffic with the key: once it has settled, the key's bar shows the usage API's numbers.
    chat(gateway, "governance one")
    usage = settled_usage(page, f"/api/keys/{key['id']}/usage")
    go(page, "keys")
    bar = key_row.get_by_test_id("budget-bar")
    assert_budget_matches(bar, usage["budget"])
    used = api(page, "GET", f"/api/keys/{key['id']}/usage")["requests"]["used"]
    expect(key_row.get_by_test_id("headroom-rpm")).to_have_text(f"{used}/60 rpm")
    page.screenshot(path=shots / "01-keys.png", full_page=True)

    # The team's bar counts the key's spend, as its usage API says.
    go(page, "teams")
    team_usage = settled_usage(page, f"/api/teams/{team['id']}/usage")
    go(page, "teams")
    assert_budget_matches(team_row.get_by_test_id("budget-bar"), team_usage["budget"])
    expect(team_row.get_by_test_id("headroom-rpm")).to_contain_text("/100 rpm")
    headers = [t.strip() for t in page.locator("[data-testid=teams-table] thead th").all_inner_texts()]
    expect(team_row.locator("td").nth(headers.index("Keys"))).to_have_text("1")

    # Deleting the team while the key belongs to it: the API's refusal is shown, the team stays.
    team_row.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("toast")).to_contain_text("still has 1 key(s)")
    expect(team_row).to_have_count(1)

    # The Limits dialog shows the usage live: a new request's cost appears while it is open (2 s polling)...
    go(page, "keys")
    usage_calls: list[float] = []

    def on_request(req: Request) -> None:
        if req.url.endswith(f"/api/keys/{key['id']}/usage"):
            usage_calls.append(time.monotonic())

    page.on("request", on_request)
    key_row.get_by_role("button", name="Limits", exact=True).click()
    live = page.get_by_test_id("usage-live")
    assert_budget_matches(live, usage["budget"])
    opened = time.monotonic()
    chat(gateway, "governance two")
    later = settled_usage(page, f"/api/keys/{key['id']}/usage", spend_above=usage["budget"]["spend_usd"])
    assert_budget_matches(live, later["budget"])
    page.screenshot(path=shots / "02-limits-dialog.png")
    page.wait_for_timeout(max(0, 4500 - (time.monotonic() - opened) * 1000))
    assert len([t for t in usage_calls if t >= opened]) >= 2, usage_calls
    # ...and is no longer fetched once the dialog is closed (the table refreshes its own cells every 10 s at most).
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    closed = time.monotonic()
    page.wait_for_timeout(4500)
    assert len([t for t in usage_calls if t >= closed]) <= 1, usage_calls

    # Expiry and team are set and cleared from the dialog: a past expiry shows "expired" in red.
    key_row.get_by_role("button", name="Limits", exact=True).click()
    dialog.locator("input[name=expires_at]").fill("2020-01-01T00:00")
    page.get_by_test_id("modal-submit").click()
    expect(dialog).to_have_count(0)
    expect(key_row.get_by_test_id("key-expired")).to_have_text("expired")
    expect(key_row.get_by_test_id("key-expired")).to_have_css("color", "rgb(220, 38, 38)")
    assert api(page, "GET", f"/api/keys/{key['id']}/usage")["expired"] is True
    key_row.get_by_role("button", name="Limits", exact=True).click()
    dialog.locator("input[name=expires_at]").fill("")
    dialog.locator("select[name=team_id]").select_option(label="no team")
    page.get_by_test_id("modal-submit").click()
    expect(dialog).to_have_count(0)
    expect(key_row.get_by_test_id("key-expired")).to_have_count(0)
    key = next(k for k in api(page, "GET", "/api/keys")["data"] if k["name"] == KEY_NAME)
    assert (key["team"], key["expires_at"]) == (None, None)
    chat(gateway, "governance three")  # the key works again

    # A key is created right into a team.
    page.get_by_test_id("create-key").click()
    dialog.locator("input[name=name]").fill("born-in-team")
    dialog.locator("select[name=team_id]").select_option(label=TEAM)
    page.get_by_test_id("modal-submit").click()
    page.get_by_test_id("secret-done").click()
    expect(row(page, "keys-table", "born-in-team")).to_contain_text(TEAM)

    # A team without keys is deleted.
    go(page, "teams")
    page.get_by_test_id("create-team").click()
    dialog.locator("input[name=name]").fill("short-lived")
    page.get_by_test_id("modal-submit").click()
    expect(row(page, "teams-table", "short-lived")).to_have_count(1)
    row(page, "teams-table", "short-lived").get_by_role("button", name="Delete", exact=True).click()
    page.get_by_test_id("confirm").click()
    expect(row(page, "teams-table", "short-lived")).to_have_count(0)

    # A viewer sees the teams page and its bars, without any control that changes something.
    api(page, "POST", "/api/users", {"username": "watcher", "password": VIEWER_PASSWORD, "role": "viewer"})
    page.context.close()
    page = new_page(browser, gateway, "watcher", VIEWER_PASSWORD, errors)
    page.get_by_test_id("nav-teams").click()
    expect(page.locator("main[data-rendered=teams]")).to_have_count(1)
    team_row = row(page, "teams-table", TEAM)
    assert_budget_matches(
        team_row.get_by_test_id("budget-bar"), api(page, "GET", f"/api/teams/{team['id']}/usage")["budget"]
    )
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-mutating]").count() == 0
    labels = [t.strip() for t in page.locator("button, a.btn").all_inner_texts()]
    assert not [t for t in labels if MUTATING_WORDS.search(t)], labels
    page.screenshot(path=shots / "03-viewer-teams.png", full_page=True)
    page.context.close()

    # On a phone the teams page is never wider than the window (the table scrolls in its own box).
    page = new_page(browser, gateway, "admin", ADMIN_PASSWORD, errors, width=390)
    go(page, "teams")
    expect(row(page, "teams-table", TEAM).get_by_test_id("budget-bar")).to_have_count(1)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    page.get_by_test_id("create-team").click()
    box = page.get_by_role("dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.screenshot(path=shots / "04-phone-teams.png", full_page=True)
    page.context.close()

    assert errors == []
    assert len(list(shots.glob("*.png"))) == 4

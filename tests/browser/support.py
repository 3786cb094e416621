"""What the browser tests share: the Debian Chromium, the built UI's index, and logging in like a person."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

CHROMIUM = Path("/usr/bin/chromium")
STATIC_INDEX = Path(__file__).resolve().parents[2] / "src" / "gophergate" / "static" / "index.html"


def login(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("whoami")).to_contain_text(username)
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open", timeout=5000)

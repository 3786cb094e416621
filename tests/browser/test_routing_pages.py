"""Routing in the dashboard, in a real browser (Debian Chromium, Playwright): the models page lists the model
groups, the providers page shows each target's state, and the request log shows a retried request once, with an
attempts badge, and its attempts together in the detail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.support import STATIC_INDEX, login
from tests.fakes.openai_compat import Behaviour, FakeOpenAICompat
from tests.support import Gateway

KEY = "sk-upstream-routing-browser"
ADMIN_PASSWORD = "admin-pass-routing-1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeOpenAICompat]]:
    assert STATIC_INDEX.is_file(), "the dashboard UI is not built: run `make ui` (make test builds it)"
    with FakeOpenAICompat("openai", api_key=KEY) as primary, FakeOpenAICompat("openai", api_key=KEY) as second:
        config = f"""
[providers.openai-eu]
base_url = "{second.base_url}"
api_key = "{KEY}"
models = ["gpt-4o-mini"]
registry_provider = "openai"

[model_groups.smart]
strategy = "priority"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "openai-eu/gpt-4o-mini" }}]
"""
        env = {"OPENAI_BASE_URL": primary.base_url, "OPENAI_API_KEY": KEY, "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD}
        gateway = Gateway(tmp_path_factory.mktemp("routing-browser"), env=env, config_toml=config)
        try:
            gateway.start()
            yield gateway, primary
        finally:
            gateway.stop()


def test_groups_targets_and_a_retried_requests_attempts_are_shown(
    setup: tuple[Gateway, FakeOpenAICompat], browser: Browser, tmp_path: Path
) -> None:
    gateway, primary = setup
    primary.script_chat(Behaviour("status", status=503))
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-gophergate-attempts"] == "2"
    request_id = raw.headers["x-request-id"]
    gateway.wait_rows(2, f"request_id = '{request_id}'")

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, gateway.url, "admin", ADMIN_PASSWORD)

    page.get_by_test_id("nav-models").click()
    groups = page.get_by_test_id("groups-table")
    expect(groups).to_contain_text("smart")
    expect(groups).to_contain_text("openai-eu/gpt-4o-mini")

    page.get_by_test_id("nav-providers").click()
    targets = page.get_by_test_id("targets-table")
    expect(targets).to_contain_text("openai/gpt-4o-mini")
    expect(targets).to_contain_text("openai-eu/gpt-4o-mini")
    expect(targets).to_contain_text("open")

    page.get_by_test_id("nav-requests").click()
    rows = page.locator(f"[data-testid=log-table] tr[data-request-id='{request_id}']")
    expect(rows).to_have_count(2, timeout=5000)  # both attempts, until the list shows final attempts only
    page.locator("input[name=final_only]").check()
    page.get_by_test_id("log-search").click()
    expect(rows).to_have_count(1, timeout=5000)
    expect(rows.get_by_test_id("attempts-badge")).to_have_text("\u00d72")  # "times 2"
    rows.click()
    detail = page.get_by_test_id("detail-attempts")
    expect(detail).to_contain_text("#1")
    expect(detail).to_contain_text("overloaded")
    expect(detail).to_contain_text("openai-eu")
    expect(page.get_by_test_id("detail-model-group")).to_have_text("smart")
    page.screenshot(path=tmp_path / "routing-detail.png", full_page=True)
    assert not errors, errors

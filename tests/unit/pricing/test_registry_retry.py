"""A failed registry check: a log line that says what is true (no copy yet vs the saved copy kept) and retries
that back off (5 min, doubled up to the refresh interval, at most 6 h; back to 5 min after a success)."""

from __future__ import annotations

import itertools
import logging
import shutil
from pathlib import Path

import pytest

from gophergate.pricing.registry import Registry
from tests.fakes.registry import FakeTime, Stop
from tests.support import MINI_REGISTRY, free_port

MINUTE = 60.0


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gophergate.pricing.registry" and r.levelno >= 30]


async def test_a_failure_with_no_copy_says_prices_come_from_the_offline_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(f"http://127.0.0.1:{free_port()}/api.json", tmp_path)
    with caplog.at_level(logging.WARNING, logger="gophergate.pricing.registry"):
        assert (await registry.refresh()).outcome == "failed"
    [line] = warnings(caplog)
    assert "no saved copy yet" in line and "bundled offline data (genai-prices)" in line
    assert "keeping" not in line
    assert "next try" not in line  # a one-off refresh (the CLI) does not promise a retry


async def test_a_failure_with_a_copy_says_the_copy_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "api.json"
    shutil.copy(MINI_REGISTRY, source)
    registry = Registry(str(source), tmp_path / "data")
    assert (await registry.refresh()).outcome == "updated"
    assert registry.catalog is not None
    source.unlink()
    with caplog.at_level(logging.WARNING, logger="gophergate.pricing.registry"):
        assert (await registry.refresh()).outcome == "failed"
    [line] = warnings(caplog)
    assert f"keeping the saved copy ({registry.catalog.model_count} models" in line
    assert "offline" not in line


def test_retry_interval_doubles_up_to_the_refresh_interval_and_at_most_six_hours(tmp_path: Path) -> None:
    daily = Registry("http://127.0.0.1:9/api.json", tmp_path, refresh_hours=24)
    seen = []
    for failures in range(1, 10):
        daily.failures = failures
        seen.append(daily.retry_seconds / MINUTE)
    assert seen == [5, 10, 20, 40, 80, 160, 320, 360, 360]
    hourly = Registry("http://127.0.0.1:9/api.json", tmp_path, refresh_hours=1)
    hourly.failures = 5
    assert hourly.retry_seconds == 60 * MINUTE
    hourly.failures = 0
    assert hourly.retry_seconds == 5 * MINUTE


async def test_background_checks_back_off_and_say_when_the_next_try_comes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTime(until=4 * 3600.0)
    registry = Registry(
        str(tmp_path / "missing.json"), tmp_path / "data", refresh_hours=1, clock=fake.clock, sleep=fake.sleep
    )
    tries: list[float] = []
    refresh = registry.refresh

    async def spy(*, force: bool = False) -> object:
        tries.append(fake.now)
        return await refresh(force=force)

    registry.refresh = spy  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="gophergate.pricing.registry"), pytest.raises(Stop):
        await registry.run_forever()
    gaps = [(b - a) / MINUTE for a, b in itertools.pairwise(tries)]
    assert gaps == pytest.approx([5, 10, 20, 40, 60, 60])  # capped at the 1 h refresh interval
    lines = warnings(caplog)
    assert len(lines) == len(tries) == 7
    assert lines[0].endswith("next try in 5 min") and "no saved copy yet" in lines[0]
    assert lines[1].endswith("next try in 10 min (2 failures in a row)")
    assert lines[-1].endswith("next try in 1 h (7 failures in a row)")
    assert registry.status()["failures"] == 7


async def test_a_success_starts_the_back_off_over(tmp_path: Path) -> None:
    source = tmp_path / "api.json"
    registry = Registry(str(source), tmp_path / "data", refresh_hours=24)
    registry.background = True
    for _ in range(3):
        assert (await registry.refresh()).outcome == "failed"
    assert registry.retry_seconds == 20 * MINUTE
    shutil.copy(MINI_REGISTRY, source)
    assert (await registry.refresh()).outcome == "updated"
    assert registry.failures == 0 and registry.status()["last_error"] is None
    assert registry.retry_seconds == 5 * MINUTE
    source.unlink()
    assert (await registry.refresh()).outcome == "failed"
    assert registry.failures == 1 and registry.retry_seconds == 5 * MINUTE

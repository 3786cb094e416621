"""The Runtime wires the live hub: committed rows, registry, price overrides, provider health, shutdown."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from gophergate.core.record import RequestRecord
from gophergate.db.migrate import upgrade
from gophergate.hub.hub import GOING_AWAY, Connection
from gophergate.pricing.catalog import Rates
from gophergate.pricing.overrides import set_override
from gophergate.runtime import Runtime
from gophergate.settings import async_database_url, load_settings
from tests.support import MINI_REGISTRY


@dataclass(frozen=True)
class User:
    id: int
    username: str


class FlakyProvider:
    """Only ``list_models`` matters here; it fails while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False

    async def list_models(self) -> list[str]:
        if self.down:
            raise ConnectionError("upstream said: bad key sk-should-not-leak")
        return ["m1"]

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'data' / 'gophergate.db'}"
    for name, value in {
        "GOPHERGATE_ENCRYPTION_KEY": secrets.token_hex(32),
        "GOPHERGATE_DATA_DIR": str(tmp_path / "data"),
        "GOPHERGATE_DATABASE_URL": url,
        "GOPHERGATE_REGISTRY_URL": str(MINI_REGISTRY),
        "GOPHERGATE_LOG_FLUSH_INTERVAL_MS": "10",
        "GOPHERGATE_PRICE_REFRESH_SECONDS": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "data").mkdir()
    await asyncio.to_thread(upgrade, async_database_url(url))
    rt = await Runtime.start(load_settings(_env_file=None))
    try:
        yield rt
    finally:
        await rt.close()


def _listen(rt: Runtime) -> Connection:
    assert rt.hub is not None
    conn = rt.hub.connect(User(1, "alice"))
    assert conn is not None

    async def handler() -> None:  # what ws.py does when the hub closes a connection
        await conn.closed
        assert rt.hub is not None
        rt.hub.disconnect(conn)

    conn.handler = asyncio.create_task(handler())  # type: ignore[attr-defined]
    return conn


async def _messages(
    conn: Connection, kind: str, within: float = 3.0, events: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Messages of one type (events: only these kinds; the registry's first background fetch also reports)."""
    deadline = time.monotonic() + within
    while True:
        found = [
            m
            for m in map(orjson.loads, conn.queue)
            if m["type"] == kind and (not events or m["data"]["kind"] in events)
        ]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


async def test_committed_log_rows_reach_hub_connections(runtime: Runtime) -> None:
    conn = _listen(runtime)
    runtime.metering.finish(RequestRecord(request_id="req_hub", endpoint="chat.completions", started=0.0), None, None)
    found = await _messages(conn, "request")
    assert [m["data"]["request_id"] for m in found] == ["req_hub"]


async def test_a_registry_copy_loaded_in_a_worker_thread_is_announced(runtime: Runtime) -> None:
    for _ in range(100):  # the first background fetch saves a copy
        if runtime.registry.saved_path.exists():
            break
        await asyncio.sleep(0.05)
    conn = _listen(runtime)
    runtime.registry.saved_path.touch()
    catalog = await asyncio.to_thread(runtime.registry.load_saved)
    assert catalog is not None
    found = await _messages(conn, "event", events=("registry_refreshed",))
    assert found and found[-1]["data"]["detail"]["models"] == catalog.model_count


async def test_a_price_override_change_is_announced_as_config_changed(runtime: Runtime) -> None:
    conn = _listen(runtime)
    await set_override(runtime.engine, "openai", "gpt-4o-mini", rates=Rates(input=Decimal("1"), output=Decimal("2")))
    found = await _messages(conn, "event", events=("config_changed",))
    assert [m["data"]["detail"] for m in found] == [{"what": "price_overrides", "count": 1}]


async def test_provider_down_after_up_and_back_up(runtime: Runtime) -> None:
    flaky = FlakyProvider()
    runtime.routing = replace(runtime.routing, providers={"flaky": flaky})  # type: ignore[dict-item]
    conn = _listen(runtime)
    await runtime.refresh_models()  # first success: no event
    flaky.down = True
    await runtime.refresh_models()  # down
    await runtime.refresh_models()  # still down: no second event
    flaky.down = False
    await runtime.refresh_models()  # back up
    found = await _messages(conn, "event", within=0.1, events=("provider_up", "provider_down"))
    assert [(m["data"]["kind"], m["data"]["detail"]) for m in found] == [
        ("provider_down", {"provider": "flaky", "error": "ConnectionError"}),
        ("provider_up", {"provider": "flaky"}),
    ]
    assert b"sk-should-not-leak" not in "".join(conn.queue).encode()


async def test_a_provider_that_never_answered_is_not_announced_down(runtime: Runtime) -> None:
    flaky = FlakyProvider()
    flaky.down = True
    runtime.routing = replace(runtime.routing, providers={"flaky": flaky})  # type: ignore[dict-item]
    conn = _listen(runtime)
    await runtime.refresh_models()
    assert await _messages(conn, "event", within=0.1, events=("provider_up", "provider_down")) == []


async def test_shutdown_closes_hub_connections_with_1001(runtime: Runtime) -> None:
    conn = _listen(runtime)
    await runtime.close()
    assert conn.closed.result() == GOING_AWAY
    assert runtime.hub is not None and not runtime.hub.connections
    runtime.close = _noop  # type: ignore[method-assign]  # the fixture's close is already done


async def _noop() -> None:
    return None

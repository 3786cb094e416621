from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import POSTGRES_ENV, Gateway, delete_keys, postgres_database, redis_url, unique_prefix

if TYPE_CHECKING:
    from redis.asyncio import Redis


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database test runs on SQLite and on PostgreSQL (the latter when GOPHERGATE_TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'gophergate.db'}"
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with postgres_database() as url:
        yield url


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[type[Gateway]]:
    """Start gateways with ``make_gateway(env=..., ...)``; all are stopped at the end of the test."""
    started: list[Gateway] = []

    class _Factory(Gateway):
        def __init__(self, **kwargs: object) -> None:
            sub = tmp_path / f"gw{len(started)}"
            sub.mkdir()
            super().__init__(sub, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield _Factory
    for gateway in started:
        try:
            gateway.stop(timeout=20)
        except Exception:
            pass


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    """A client of the test Redis (``GOPHERGATE_TEST_REDIS_URL``); the test fails without it."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url(required=True), socket_timeout=5, socket_connect_timeout=5, max_connections=256)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    await delete_keys(redis_client, prefix)

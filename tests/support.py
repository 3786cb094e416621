"""Test support: the real gateway as a subprocess on a loopback port (alone or several as one cluster), database
access for both engines, and the test Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

POSTGRES_ENV = "GOPHERGATE_TEST_POSTGRES_URL"
REDIS_ENV = "GOPHERGATE_TEST_REDIS_URL"
# The project's own small registry snapshot: no test reaches models.dev.
MINI_REGISTRY = Path(__file__).parent / "fixtures" / "models-dev-mini.json"
# Real models.dev data trimmed to what the lookup tests ask for, in the real document's shape
# (tests/fixtures/trim_registry.py writes it from the full snapshot; tests/fixtures/README.md).
TRIMMED_REGISTRY = Path(__file__).parent / "fixtures" / "models-dev-trimmed.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, even when the caller's thread has a running loop."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def query(database_url: str, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from sqlalchemy import text

    from gophergate.db.engine import create_engine
    from gophergate.settings import async_database_url

    async def main() -> list[dict[str, Any]]:
        engine = create_engine(async_database_url(database_url))
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text(sql), params or {})
                return [dict(r._mapping) for r in rows]
        finally:
            await engine.dispose()

    return list(run_async(main))


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import asyncpg

    base = os.environ[POSTGRES_ENV]
    name = "gg_test_" + uuid.uuid4().hex[:12]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_async(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        run_async(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def redis_url(*, required: bool = False) -> str:
    """The test Redis (``GOPHERGATE_TEST_REDIS_URL``). Without it the test is skipped, or fails where ``required``
    (the unit tests of the code that talks to Redis)."""
    import pytest

    url = os.environ.get(REDIS_ENV)
    if not url:
        message = f"this test needs {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0); .ci/run sets it"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return url


def unique_prefix(label: str = "") -> str:
    """A Redis key prefix of the caller's own (``gg-test-<label>-<random>:``), so that tests never share keys."""
    return f"gg-test-{label + '-' if label else ''}{uuid.uuid4().hex[:8]}:"


async def delete_keys(client: Redis, prefix: str) -> int:
    """Delete every key under ``prefix``; how many there were."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    return len(keys)


def delete_redis_prefix(url: str, prefix: str) -> int:
    """``delete_keys`` from sync code, with a client of its own."""
    from redis.asyncio import Redis

    async def main() -> int:
        client = Redis.from_url(url)
        try:
            return await delete_keys(client, prefix)
        finally:
            await client.aclose()

    return int(run_async(main))


class Gateway:
    """``gophergate serve`` in a subprocess, with its own data dir and a client key made by the CLI."""

    def __init__(
        self,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        config_toml: str | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        self.data_dir = tmp_path / "data"
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'gophergate.db'}"
        self.log_path = tmp_path / "gateway.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "GOPHERGATE_ENCRYPTION_KEY": secrets.token_hex(32),
            "GOPHERGATE_DATA_DIR": str(self.data_dir),
            "GOPHERGATE_DATABASE_URL": self.database_url,
            "GOPHERGATE_PORT": str(self.port),
            "GOPHERGATE_LOG_FLUSH_INTERVAL_MS": "50",
            "GOPHERGATE_KEY_REFRESH_SECONDS": "0.2",
            "GOPHERGATE_REGISTRY_URL": str(MINI_REGISTRY),
            "GOPHERGATE_PRICE_REFRESH_SECONDS": "0.2",
        }
        if config_toml is not None:
            path = tmp_path / "gophergate.toml"
            path.write_text(config_toml)
            self.env["GOPHERGATE_CONFIG"] = str(path)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gophergate", *args],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def create_key(self, name: str = "test") -> str:
        return self.cli("keys", "create", "--name", name).stdout.strip().splitlines()[-1]

    def start(self) -> Gateway:
        self.key = self.create_key()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gophergate", "serve"],
            env=self.env,
            cwd=self.tmp_path,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: a hung worker can be killed with its parent
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not become ready:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def rows(self, where: str = "1=1", params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return query(self.database_url, f"SELECT * FROM request_log WHERE {where} ORDER BY id", params)

    def wait_rows(self, count: int, where: str = "1=1", timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        rows = self.rows(where)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.rows(where)
        return rows

    def row_for(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        rows = self.wait_rows(1, f"request_id = '{request_id}'", timeout)
        assert len(rows) == 1, f"expected one log row for {request_id}, got {len(rows)}"
        return rows[0]


@contextmanager
def admin_session(url: str, password: str, username: str = "admin") -> Iterator[Any]:
    """An httpx client signed in to the dashboard API of the gateway at ``url``, with its CSRF header set."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        client.headers["x-csrf-token"] = r.json()["csrf_token"]
        yield client


UNPRICED_MODEL = "house-model"  # served by the custom provider "acme"; in no price catalogue


@contextmanager
def priced_and_unpriced_gateway(
    tmp_path: Path, *, upstream_key: str, custom_key: str, admin_password: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Gateway, Any]]:
    """A started gateway whose OpenAI provider is a strict fake (gpt-4o-mini priced by the registry) and whose custom
    provider "acme" serves ``UNPRICED_MODEL``; yields the gateway and the OpenAI fake."""
    from tests.fakes.openai_compat import FakeOpenAICompat

    with (
        FakeOpenAICompat("openai", api_key=upstream_key) as upstream,
        FakeOpenAICompat("openai", api_key=custom_key, models=[UNPRICED_MODEL]) as custom,
    ):
        config = f"""
[providers.acme]
base_url = "{custom.base_url}"
api_key_env = "ACME_KEY"
models = ["{UNPRICED_MODEL}"]
"""
        gateway = Gateway(
            tmp_path,
            env={
                "OPENAI_API_KEY": upstream_key,
                "OPENAI_BASE_URL": upstream.base_url,
                "ACME_KEY": custom_key,
                "GOPHERGATE_ADMIN_PASSWORD": admin_password,
                **(env or {}),
            },
            config_toml=config,
        )
        try:
            gateway.start()
            yield gateway, upstream
        finally:
            gateway.stop()


@dataclass
class GatewayCluster:
    gateways: list[Gateway]
    database_url: str
    redis_url: str  # "" (and no prefix) where the instances share the database only
    prefix: str


def require_cluster_services(*, redis: bool = True) -> str | None:
    """Skip the test without the shared PostgreSQL (``GOPHERGATE_TEST_POSTGRES_URL``) or, with ``redis``, the test
    Redis; the Redis URL (None without ``redis``)."""
    import pytest

    url = redis_url() if redis else None
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"the cluster tests need {POSTGRES_ENV}")
    return url


@contextmanager
def gateway_cluster(
    root: Path,
    env: dict[str, str],
    names: Sequence[str],
    *,
    instance_names: bool = True,
    redis: bool = True,
    together: bool = False,
) -> Iterator[GatewayCluster]:
    """One started ``Gateway`` per name (its data dir ``root/<name>``, ``GOPHERGATE_INSTANCE_NAME=<name>`` where
    ``instance_names``), all on one fresh PostgreSQL database with ``env``, one encryption key and, with ``redis``,
    the test Redis under a key prefix of their own (deleted afterwards). The first instance migrates the database;
    the others start one after another, or all at once where ``together``. Skipped without the services."""
    url = require_cluster_services(redis=redis) or ""
    prefix = unique_prefix() if url else ""
    shared = {**env, "GOPHERGATE_ENCRYPTION_KEY": secrets.token_hex(32)}  # one cluster, one key
    if url:
        shared |= {"GOPHERGATE_REDIS_URL": url, "GOPHERGATE_REDIS_KEY_PREFIX": prefix}
    with postgres_database() as database_url:
        gateways: list[Gateway] = []
        try:
            for name in names:
                path = root / name
                path.mkdir()
                own = {**shared, "GOPHERGATE_INSTANCE_NAME": name} if instance_names else shared
                gateways.append(Gateway(path, env=own, database_url=database_url))
                if len(gateways) == 1 or not together:
                    gateways[-1].start()
            if together and len(gateways) > 1:
                with ThreadPoolExecutor(len(gateways) - 1) as pool:
                    list(pool.map(Gateway.start, gateways[1:]))
            yield GatewayCluster(gateways, database_url, url, prefix)
        finally:
            for gateway in gateways:
                gateway.stop()
            if url:
                delete_redis_prefix(url, prefix)


def echoed_assistant(message: Any) -> dict[str, Any]:
    """An SDK answer's assistant message as an OpenAI SDK client sends it back: the standard fields only (no
    reasoning_content, no provider extras), so anything else the next turn needs must come from the gateway."""
    return {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls
        ],
    }

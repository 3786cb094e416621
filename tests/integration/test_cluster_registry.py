"""One registry fetch per cluster: gateway processes with data dirs of their own (separate machines) share one Redis
and fetch the registry from a fake models.dev on loopback that counts its requests. Exactly one instance fetches;
the others load the shared copy and price with it; ``gophergate registry refresh`` reaches every instance; the lock
of a holder killed mid-fetch expires and another instance fetches; an unreachable Redis leaves each instance to
fetch on its own, as without Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gophergate.pricing.catalog import Catalog
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.fakes.registry import FakeRegistry
from tests.support import MINI_REGISTRY, Gateway, delete_redis_prefix, free_port, redis_url, unique_prefix

UPSTREAM_KEY = "sk-upstream-registry-cluster"
# gpt-4o-mini at prices no other source has (USD per 1M tokens): a row priced at them was priced by this copy.
INPUT, OUTPUT = Decimal(7), Decimal(13)


def _redis(url: str, work: Callable[[Any], Any]) -> Any:
    import redis.asyncio as redis

    async def run() -> Any:
        client = redis.Redis.from_url(url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def registry_body(input_price: Decimal, output_price: Decimal) -> bytes:
    doc = orjson.loads(MINI_REGISTRY.read_bytes())
    cost = doc["openai"]["models"]["gpt-4o-mini"]["cost"]
    cost.update(input=float(input_price), output=float(output_price))
    cost.pop("cache_read", None)
    return orjson.dumps(doc)


class Cluster:
    def __init__(self, root: Path, source: FakeRegistry, upstream: FakeOpenAICompat, redis_url: str) -> None:
        self.root = root
        self.source = source
        self.prefix = unique_prefix("registry")
        self.env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_REGISTRY_URL": source.url,
            "GOPHERGATE_REDIS_URL": redis_url,
            "GOPHERGATE_REDIS_KEY_PREFIX": self.prefix,
        }
        self.gateways: list[Gateway] = []

    def gateway(self) -> Gateway:
        path = self.root / f"gw{len(self.gateways)}"
        path.mkdir()
        gateway = Gateway(path, env=self.env)  # a data dir (and SQLite database) of its own: another machine
        self.gateways.append(gateway)
        return gateway

    def start(self, count: int) -> list[Gateway]:
        """``count`` instances started at the same moment (they race for the lock)."""
        gateways = [self.gateway() for _ in range(count)]
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(Gateway.start, gateways))
        return gateways

    def stop(self) -> None:
        for gateway in self.gateways:
            try:
                gateway.stop(timeout=20)
            except Exception:
                pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    url = redis_url()
    with (
        FakeRegistry(registry_body(INPUT, OUTPUT)) as source,
        FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as upstream,
    ):
        cluster = Cluster(tmp_path, source, upstream, url)
        try:
            yield cluster
        finally:
            cluster.stop()
            delete_redis_prefix(url, cluster.prefix)


def registry_status(gateway: Gateway) -> dict[str, Any]:
    details: dict[str, Any] = httpx.get(gateway.url + "/readyz", timeout=10).json()["details"]
    return {**details["registry"], "price_source": details["price_source"]}


def wait_registry(gateways: list[Gateway], done: Callable[[dict[str, Any]], bool], seconds: float = 30) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        statuses = [registry_status(g) for g in gateways]
        if all(done(s) for s in statuses):
            return statuses
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)


def priced_chat(gateway: Gateway) -> tuple[Decimal, Decimal, str]:
    """A chat through ``gateway``: the cost it charged, the cost at the test's prices, and the row's price source."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "WORDS 12"}]}
    r = httpx.post(
        gateway.base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {gateway.key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    expected = (usage["prompt_tokens"] * INPUT + usage["completion_tokens"] * OUTPUT) / 10**6
    row = gateway.row_for(r.headers["x-request-id"])
    return Decimal(r.headers["x-gophergate-cost-usd"]), expected, str(row["price_source"])


def test_three_instances_fetch_once_and_all_price_with_that_copy(cluster: Cluster) -> None:
    gateways = cluster.start(3)
    snapshot = Catalog.snapshot_id(cluster.source.body)
    statuses = wait_registry(gateways, lambda s: s["snapshot"] == snapshot)
    assert cluster.source.count == 1
    assert sorted(s["copy"] for s in statuses) == ["cluster copy", "cluster copy", "fetched"]
    assert all(s["cluster"] == "redis" and s["price_source"] == snapshot for s in statuses)
    for gateway in gateways:
        charged, expected, source = priced_chat(gateway)
        assert charged == expected and source == snapshot
        assert (gateway.data_dir / "registry" / "models-dev.json").read_bytes() == cluster.source.body
    time.sleep(1)
    assert cluster.source.count == 1  # nobody checks again before the refresh interval

    # `gophergate registry refresh` (here from a fourth machine) fetches, saves and shares: every instance takes
    # the new copy at its next look at the cluster (every 30 s), none fetches it.
    cluster.source.body, cluster.source.etag = registry_body(INPUT * 2, OUTPUT * 2), '"v2"'
    cli = cluster.gateway().cli("registry", "refresh")
    assert "registry copy shared with the cluster" in cli.stdout + cli.stderr
    assert cluster.source.count == 2
    fresh = Catalog.snapshot_id(cluster.source.body)
    statuses = wait_registry(gateways, lambda s: s["snapshot"] == fresh, seconds=45)
    assert all(s["copy"] == "cluster copy" for s in statuses) and cluster.source.count == 2
    charged, expected, source = priced_chat(gateways[1])
    assert charged == expected * 2 and source == fresh


HOLDER = """
import asyncio, sys
from pathlib import Path
from gophergate.limits.redis import connect
from gophergate.pricing.cluster import RegistryCluster
from gophergate.pricing.registry import Registry

url, redis_url, prefix, data = sys.argv[1:5]
cluster = RegistryCluster(connect(redis_url, max_connections=4), prefix, lock_seconds=float(sys.argv[5]))
asyncio.run(Registry(url, Path(data), cluster=cluster)._cluster_check(True))
"""


def test_the_lock_of_a_holder_killed_mid_fetch_expires_and_another_instance_fetches(cluster: Cluster) -> None:
    lock_seconds = 8.0
    cluster.source.hold()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, cluster.source.url, cluster.env["GOPHERGATE_REDIS_URL"], cluster.prefix,
         str(cluster.root / "holder"), str(lock_seconds)],
    )  # fmt: skip
    try:
        assert cluster.source.held.wait(30), "the holder never fetched"
        holder.send_signal(signal.SIGKILL)  # dies holding the lock, its download unanswered
        assert holder.wait(10) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
    cluster.source.release()
    assert _redis(cluster.env["GOPHERGATE_REDIS_URL"], lambda c: c.exists(cluster.prefix + "registry:lock")) == 1

    gateways = cluster.start(2)  # while the dead holder's lock lasts: they wait for it to expire
    snapshot = Catalog.snapshot_id(cluster.source.body)
    statuses = wait_registry(gateways, lambda s: s["snapshot"] == snapshot)
    assert cluster.source.count == 2  # the dead holder's download, then one instance's once the lock expired
    assert cluster.source.times[1] - cluster.source.times[0] >= lock_seconds - 0.5
    assert sorted(s["copy"] for s in statuses) == ["cluster copy", "fetched"]
    charged, expected, _ = priced_chat(gateways[0])
    assert charged == expected


def test_redis_unreachable_each_instance_fetches_on_its_own(cluster: Cluster) -> None:
    cluster.env["GOPHERGATE_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    gateways = cluster.start(3)
    snapshot = Catalog.snapshot_id(cluster.source.body)
    statuses = wait_registry(gateways, lambda s: s["snapshot"] == snapshot)
    assert cluster.source.count == 3
    assert all(s["copy"] == "fetched" and s["cluster"] == "redis-unavailable" for s in statuses)
    for gateway in gateways:
        charged, expected, _ = priced_chat(gateway)
        assert charged == expected
        warnings = gateway.logs().count("registry: Redis is unreachable")
        assert warnings >= 1 and (warnings == 1 or time.monotonic() - started > 60)

"""One registry fetch per cluster, against a real Redis (``GOPHERGATE_TEST_REDIS_URL``) under a prefix of each
test's own: the lock, the shared copy and its meta, registries that load it instead of fetching, a stale or unusable
copy fetched again by one instance, and Redis unreachable (each instance on its own, a warning a minute)."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from gophergate.limits.redis import connect
from gophergate.pricing import registry as registry_module
from gophergate.pricing.catalog import Catalog
from gophergate.pricing.cluster import RegistryCluster, decompress, source_id
from gophergate.pricing.registry import Registry
from tests.fakes.registry import FakeRegistry, FakeTime, Stop
from tests.support import MINI_REGISTRY, free_port, redis_url
from tests.unit.pricing.test_registry import fewer_models

DAY = 86400.0
# The real models.dev snapshot beside the checkout (../shared/fixtures/README.md), when there.
TRIMMED_REGISTRY = Path(__file__).resolve().parents[2] / "fixtures" / "models-dev-trimmed.json"


def full_size_registry(models: int = 5300) -> bytes:
    """A models.dev document as large as the real one (~5,300 models, megabytes): the trimmed snapshot's real
    entries, each provider's models repeated under new ids until the count is reached."""
    data = orjson.loads(TRIMMED_REGISTRY.read_bytes())
    originals = [(name, dict(provider["models"])) for name, provider in data.items() if provider.get("models")]
    count = sum(len(m) for _, m in originals)
    copy = 0
    while count < models:
        copy += 1
        for name, entries in originals:
            for model_id, entry in entries.items():
                if count >= models:
                    break
                clone_id = f"{model_id}-copy{copy}"
                data[name]["models"][clone_id] = {
                    **entry,
                    "id": clone_id,
                    "name": f"{entry.get('name', model_id)} {copy}",
                }
                count += 1
    return orjson.dumps(data)


@pytest.fixture(autouse=True)
def quick_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """While another instance holds the lock, look again after 50 ms rather than 5 s."""
    monkeypatch.setattr(registry_module, "_WAIT_SECONDS", 0.05)


Make = Callable[..., Registry]


@pytest.fixture
async def make(redis_prefix: str, tmp_path: Path, source: FakeRegistry) -> AsyncIterator[Make]:
    """``make(name)``: a registry of the fake source with a data dir of its own (another machine), sharing the
    test's prefix; closed at the end."""
    made: list[Registry] = []

    def build(name: str, *, url: str | None = None, redis: str | None = None, **kwargs: object) -> Registry:
        cluster = RegistryCluster(
            connect(redis or redis_url(required=True), max_connections=4),
            redis_prefix,
            lock_seconds=float(kwargs.pop("lock_seconds", 60.0)),  # type: ignore[arg-type]
        )
        registry = Registry(url or source.url, tmp_path / name, cluster=cluster, **kwargs)  # type: ignore[arg-type]
        made.append(registry)
        return registry

    yield build
    for registry in made:
        await registry.close()


def dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


# -- the lock --------------------------------------------------------------------------------------------------------


async def test_the_lock_has_one_holder_and_only_its_token_releases_it(redis_prefix: str) -> None:
    one = RegistryCluster(connect(redis_url(required=True), max_connections=4), redis_prefix)
    two = RegistryCluster(connect(redis_url(required=True), max_connections=4), redis_prefix)
    try:
        token = await one.acquire()
        assert token is not None and one.holding
        assert await two.acquire() is None
        await two.release("not-the-token")  # a holder whose lock expired and was taken cannot delete the new one
        assert await two.acquire() is None
        await one.release(token)
        assert not one.holding
        assert await two.acquire() is not None
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_lock_whose_holder_died_expires(redis_prefix: str) -> None:
    dead = RegistryCluster(connect(redis_url(required=True), max_connections=4), redis_prefix, lock_seconds=0.3)
    other = RegistryCluster(connect(redis_url(required=True), max_connections=4), redis_prefix)
    try:
        assert await dead.acquire() is not None  # and never released
        assert await other.acquire() is None
        await asyncio.sleep(0.4)
        assert await other.acquire() is not None
    finally:
        await dead.aclose()
        await other.aclose()


# -- one fetch, the others load ------------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_three_instances_starting_together_fetch_once(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    seen: dict[str, list[Catalog]] = {name: [] for name in ("a", "b", "c")}
    registries = [make(name, on_change=seen[name].append) for name in seen]
    tasks = [asyncio.create_task(r.run_forever()) for r in registries]
    try:
        await wait_for(lambda: all(r.catalog is not None for r in registries))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert source.count == 1
    snapshots = {r.catalog.snapshot for r in registries if r.catalog is not None}
    assert snapshots == {Catalog.snapshot_id(source.body)}
    assert sorted(r.status()["copy"] for r in registries) == ["cluster copy", "cluster copy", "fetched"]
    assert all(len(catalogs) == 1 for catalogs in seen.values())  # on_change, once each
    assert all(r.status()["cluster"] == "redis" and not r.status()["cluster_lock_held"] for r in registries)
    assert await redis_client.exists(redis_prefix + "registry:lock") == 0  # released
    # Each saved the copy to its own data dir, as if fetched there: a restart without Redis has it.
    fetched = next(r for r in registries if r.status()["copy"] == "fetched")
    for registry in registries:
        assert registry.saved_path.read_bytes() == source.body
        alone = Registry(source.url, registry.dir.parent)
        catalog = alone.load_saved()
        assert catalog is not None and catalog.snapshot == Catalog.snapshot_id(source.body)
        assert alone.etag == '"v1"' and alone.fetched_at == fetched.fetched_at
        assert alone.status()["copy"] == "saved" and alone.status()["cluster"] == "off"


async def test_the_shared_copy_is_the_downloaded_document_compressed_with_its_meta(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    one = make("one")
    assert await one._cluster_check(True) is not None
    data = await redis_client.get(redis_prefix + "registry:copy")
    assert data is not None and decompress(data, 1 << 26) == source.body
    meta = {k.decode(): v.decode() for k, v in (await redis_client.hgetall(redis_prefix + "registry:meta")).items()}
    assert meta["snapshot"] == Catalog.snapshot_id(source.body) and meta["etag"] == '"v1"'
    assert float(meta["fetched_at"]) == one.fetched_at and int(meta["models"]) == one.catalog.model_count  # type: ignore[union-attr]
    assert meta["source"] == source_id(source.url) and source.url not in str(meta)
    assert 0 < await redis_client.pttl(redis_prefix + "registry:copy") <= 30 * DAY * 1000


async def test_the_full_models_dev_document_goes_through_redis_within_the_clients_timeouts(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    source.body = full_size_registry()  # as large as the real one: megabytes, over 5,000 models
    assert len(source.body) > 1_000_000
    one = make("one")
    await one._cluster_check(True)
    assert one.catalog is not None and one.catalog.model_count > 5000
    compressed = await redis_client.strlen(redis_prefix + "registry:copy")
    assert compressed < len(source.body) // 5  # about 200 kB compressed
    other = make("other")  # the client of connect(): 0.5 s socket timeouts, no retries
    assert await other.load_cluster_copy()
    assert other.catalog is not None and other.catalog.snapshot == one.catalog.snapshot
    assert other.catalog.lookup("openai", "gpt-4o") is not None and source.count == 1


async def test_at_start_a_newer_cluster_copy_replaces_an_older_saved_one(
    make: Make, source: FakeRegistry, tmp_path: Path
) -> None:
    older = tmp_path / "older.json"
    older.write_bytes(fewer_models(source.body, 20))
    assert (await Registry(str(older), tmp_path / "b").refresh()).outcome == "updated"  # b's saved copy, older

    await make("a")._cluster_check(True)  # a fetched and shared
    assert source.count == 1
    b = make("b")
    assert b.load_saved() is not None and b.catalog is not None and b.catalog.model_count == 20
    assert await b.load_cluster_copy()
    assert b.catalog.snapshot == Catalog.snapshot_id(source.body) and b.status()["copy"] == "cluster copy"
    assert source.count == 1
    assert not await b.load_cluster_copy()  # now as new as the cluster's: nothing to take

    fresh = make("c")
    assert await fresh.load_cluster_copy()  # nothing saved at all
    # A saved copy newer than the cluster's stays.
    newer = make("d")
    assert (await newer.refresh(force=True)).outcome == "updated"
    assert not await newer.load_cluster_copy()
    assert newer.status()["copy"] == "fetched"


async def test_a_stale_shared_copy_is_checked_again_by_one_instance(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    await make("a")._cluster_check(True)
    two_days_ago = time.time() - 2 * DAY
    await redis_client.hset(redis_prefix + "registry:meta", "fetched_at", repr(two_days_ago))
    b = make("b")
    await b._cluster_check(True)
    # b took the stale copy (it had none), then checked it with its validators: 304, and shared the check.
    assert source.count == 2 and source.requests[-1].get("If-None-Match") == '"v1"'
    assert b.status()["copy"] == "fetched" and b.catalog is not None
    meta = await redis_client.hgetall(redis_prefix + "registry:meta")
    assert float(meta[b"fetched_at"]) == b.fetched_at > two_days_ago + DAY
    c = make("c")
    await c._cluster_check(True)
    assert source.count == 2 and c.status()["copy"] == "cluster copy"


async def test_no_fetch_while_another_instance_holds_the_lock(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    await redis_client.set(redis_prefix + "registry:lock", "someone-else", px=500)  # a holder that died mid-fetch
    registry = make("a")
    assert await registry._cluster_check(True) == pytest.approx(0.05)
    assert source.count == 0 and registry.catalog is None
    await asyncio.sleep(0.6)  # its lock expired
    await registry._cluster_check(True)
    assert source.count == 1 and registry.catalog is not None


async def test_the_holder_says_so_while_it_fetches_and_the_others_wait_for_its_copy(
    make: Make, source: FakeRegistry
) -> None:
    holder, waiter = make("holder"), make("waiter")
    source.hold()
    fetching = asyncio.create_task(holder._cluster_check(True))
    await wait_for(source.held.is_set)
    assert holder.status()["cluster_lock_held"] is True
    assert await waiter._cluster_check(True) == pytest.approx(0.05) and waiter.catalog is None
    source.release()
    await fetching
    assert holder.status()["cluster_lock_held"] is False
    await waiter._cluster_check(True)
    assert source.count == 1 and waiter.status()["copy"] == "cluster copy"


async def test_a_failed_fetch_releases_the_lock_and_backs_off(make: Make, source: FakeRegistry) -> None:
    source.status = 503
    one, two = make("one"), make("two")
    pause = await one._cluster_check(True)
    assert one.status()["last_error"] == "HTTP 503" and pause == pytest.approx(one.retry_seconds, abs=1)
    await two._cluster_check(True)  # the lock is free again: the next instance that is due tries
    assert source.count == 2
    assert await one._cluster_check(False) is not None and source.count == 2  # one backs off


async def test_an_unusable_shared_copy_is_fetched_over_and_not_tried_again(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    junk = b'{"openai": {"models": {'
    await redis_client.set(redis_prefix + "registry:copy", zlib.compress(junk))
    meta = {"fetched_at": repr(time.time()), "snapshot": Catalog.snapshot_id(junk), "models": "3"}
    await redis_client.hset(redis_prefix + "registry:meta", mapping={**meta, "source": source_id(source.url)})
    registry = make("a")
    with caplog.at_level(logging.WARNING, logger="gophergate.pricing.registry"):
        await registry._cluster_check(True)
    assert any("is not used" in r.getMessage() for r in caplog.records)
    assert source.count == 1 and registry.status()["copy"] == "fetched"
    shared = await redis_client.hget(redis_prefix + "registry:meta", "snapshot")
    assert shared is not None and shared.decode() == Catalog.snapshot_id(source.body)  # replaced by the good one


async def test_a_copy_of_another_registry_url_is_not_taken(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    await make("a")._cluster_check(True)
    await redis_client.hset(redis_prefix + "registry:meta", "source", source_id("https://elsewhere.example/api.json"))
    b = make("b")
    assert not await b.load_cluster_copy()
    await b._cluster_check(True)
    assert source.count == 2 and b.status()["copy"] == "fetched"


async def test_a_copy_fetched_while_redis_was_away_is_shared_when_it_answers(
    make: Make, source: FakeRegistry, redis_client: Redis, redis_prefix: str
) -> None:
    registry = make("a", redis=dead_redis())
    assert await registry._cluster_check(True) is None  # unreachable: the caller fetches on its own
    assert (await registry.refresh()).outcome == "updated"
    registry.cluster = RegistryCluster(connect(redis_url(required=True), max_connections=4), redis_prefix)
    try:
        assert await registry._cluster_check(False) is not None
        assert await redis_client.exists(redis_prefix + "registry:copy") == 1 and source.count == 1
        assert await make("b").load_cluster_copy() and source.count == 1
    finally:
        await registry.close()


# -- Redis unreachable -----------------------------------------------------------------------------------------------


async def test_redis_unreachable_each_instance_checks_on_its_own_with_a_warning_a_minute(
    make: Make, source: FakeRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    fake = FakeTime(until=2.5 * 3600)
    registries = [
        make(name, redis=dead_redis(), refresh_hours=1, clock=fake.clock, sleep=fake.sleep) for name in ("a", "b")
    ]
    alone = Registry(source.url, tmp_path / "alone", refresh_hours=1, clock=fake.clock, sleep=fake.sleep)
    assert not await registries[0].load_cluster_copy()  # a start is not held up
    fetches = []
    with caplog.at_level(logging.WARNING, logger="gophergate.pricing.registry"):
        for registry in (*registries, alone):
            fake.now, before = 0.0, source.count
            with pytest.raises(Stop):
                await registry.run_forever()
            fetches.append(source.count - before)
    assert fetches[0] == fetches[1] == fetches[2] >= 1  # each instance checks as one without Redis does
    assert all(r.status()["cluster"] == "redis-unavailable" and r.catalog is not None for r in registries)
    assert registries[0].status()["copy"] == "fetched" and registries[0].status()["cluster_error"]
    warned = [r.getMessage() for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    if time.monotonic() - started < 60:
        assert len(warned) == 2  # one per instance, although each looked for Redis every 30 s (300 times)


async def test_status_without_redis_or_with_a_local_file(tmp_path: Path) -> None:
    assert Registry("http://127.0.0.1:9/api.json", tmp_path).status()["cluster"] == "off"
    cluster = RegistryCluster(connect(dead_redis(), max_connections=1), "x:")
    local = Registry(str(MINI_REGISTRY), tmp_path, cluster=cluster)
    assert not local.shares and local.status()["cluster"] == "off (local file)"
    assert not await local.load_cluster_copy()
    await local.close()

"""Registry refresh against a local HTTP server: ETag / 304, corrupt and partial bodies, unreachable source."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from gophergate.pricing.catalog import Catalog
from gophergate.pricing.registry import Registry
from tests.fakes.registry import FakeRegistry
from tests.support import MINI_REGISTRY, free_port


def fewer_models(body: bytes, keep: int) -> bytes:
    doc = orjson.loads(body)
    kept: dict[str, object] = {}
    count = 0
    for pid, provider in doc.items():
        models = dict(list(provider["models"].items())[: max(keep - count, 0)])
        count += len(models)
        if models:
            kept[pid] = {**provider, "models": models}
    return orjson.dumps(kept)


async def test_fetch_saves_a_copy_and_conditional_refresh_gets_304(source: FakeRegistry, tmp_path: Path) -> None:
    seen: list[Catalog] = []
    registry = Registry(source.url, tmp_path, on_change=seen.append)
    result = await registry.refresh()
    assert result.outcome == "updated"
    assert registry.catalog is not None and registry.catalog.lookup("openai", "gpt-4o") is not None
    assert len(seen) == 1
    assert registry.saved_path.read_bytes() == source.body
    again = await registry.refresh()
    assert again.outcome == "not_modified"
    assert source.requests[-1].get("If-None-Match") == '"v1"'
    assert len(seen) == 1

    # A new process loads the saved copy (and its ETag) without any network.
    other = Registry("http://127.0.0.1:9/unreachable", tmp_path)
    catalog = other.load_saved()
    assert catalog is not None and catalog.snapshot == registry.catalog.snapshot
    assert other.etag == '"v1"'


async def test_corrupt_body_never_replaces_the_good_copy(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    assert (await registry.refresh()).outcome == "updated"
    good = registry.catalog
    source.body, source.etag = b'{"openai": {"models": {', '"v2"'
    result = await registry.refresh()
    assert result.outcome == "failed" and "invalid" in result.detail
    assert registry.catalog is good
    assert registry.saved_path.read_bytes() == MINI_REGISTRY.read_bytes()


async def test_truncated_download_is_rejected(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    assert (await registry.refresh()).outcome == "updated"
    good = registry.catalog
    source.etag, source.truncate = '"v2"', True
    result = await registry.refresh()
    assert result.outcome == "failed"
    assert registry.catalog is good


async def test_a_catalogue_with_far_fewer_models_is_taken_for_partial(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    assert (await registry.refresh()).outcome == "updated"
    good = registry.catalog
    assert good is not None
    source.body, source.etag = fewer_models(source.body, good.model_count // 3), '"v2"'
    result = await registry.refresh()
    assert result.outcome == "failed" and "partial" in result.detail
    assert registry.catalog is good


async def test_valid_new_copy_replaces_the_old_one(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    await registry.refresh()
    first = registry.catalog
    assert first is not None
    source.body, source.etag = fewer_models(source.body, first.model_count - 1), '"v2"'
    assert (await registry.refresh()).outcome == "updated"
    assert registry.catalog is not first and registry.catalog is not None
    assert registry.catalog.model_count == first.model_count - 1


async def test_http_error_and_unreachable_keep_the_current_copy(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    await registry.refresh()
    good = registry.catalog
    source.status = 503
    assert (await registry.refresh()).detail == "HTTP 503"
    registry.url = f"http://127.0.0.1:{free_port()}/api.json"
    result = await registry.refresh()
    assert result.outcome == "failed"
    assert registry.catalog is good and registry.last_error == result.detail


async def test_unreachable_with_nothing_saved_leaves_no_catalogue(tmp_path: Path) -> None:
    registry = Registry(f"http://127.0.0.1:{free_port()}/api.json", tmp_path)
    assert registry.load_saved() is None
    assert (await registry.refresh()).outcome == "failed"
    assert registry.catalog is None
    assert registry.status()["source"] == "offline"


async def test_forced_refresh_sends_no_conditional_headers(source: FakeRegistry, tmp_path: Path) -> None:
    registry = Registry(source.url, tmp_path)
    await registry.refresh()
    assert (await registry.refresh(force=True)).outcome == "not_modified"  # same content, re-checked
    assert source.requests[-1] == {}


async def test_local_file_path_source(tmp_path: Path) -> None:
    registry = Registry(str(MINI_REGISTRY), tmp_path)
    assert (await registry.refresh()).outcome == "updated"
    assert registry.catalog is not None and registry.catalog.lookup("xai", "grok-4.3") is not None
    missing = Registry(str(tmp_path / "missing.json"), tmp_path / "other")
    assert (await missing.refresh()).outcome == "failed"


async def test_a_copy_saved_by_another_process_is_noticed(source: FakeRegistry, tmp_path: Path) -> None:
    mine = Registry(source.url, tmp_path)
    await mine.refresh()
    assert not mine._saved_changed()
    theirs = Registry(source.url, tmp_path)
    source.body, source.etag = fewer_models(source.body, 20), '"v3"'
    theirs.catalog = None  # a fresh process: no current copy to compare the size with
    await theirs.refresh()
    later = mine.saved_path.stat().st_mtime + 1
    os.utime(mine.saved_path, (later, later))
    assert mine._saved_changed()
    assert mine.load_saved() is not None and mine.catalog is not None and mine.catalog.model_count == 20

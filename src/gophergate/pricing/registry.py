"""Where the registry comes from: the saved copy in the data dir, refreshed from ``GOPHERGATE_REGISTRY_URL``.

At start the saved copy is loaded at once (no network on the start path); a fresh copy is then fetched in the
background and every ``GOPHERGATE_REGISTRY_REFRESH_HOURS``, with conditional requests (ETag /
Last-Modified). A download that is not a complete, valid catalogue never replaces the good copy; after a failed
check the next one comes 5 minutes later, then 10, 20, ... up to the refresh interval (at most 6 hours), and
the count starts over after a success. The URL may
also be a local file path (or ``file://``), read the same way. ``gophergate registry refresh`` forces a fetch
and saves it; running servers notice the saved copy changed and load it.

With ``GOPHERGATE_REDIS_URL`` (a ``RegistryCluster``, ``cluster.py``) one instance of a cluster fetches for all:
the one that takes the Redis lock when the shared copy is missing or older than the refresh interval fetches,
validates and saves as above, then publishes the document to Redis; the others load that copy when it is newer
than theirs (at start, within a short timeout, and at each 30 s check), save it to their data dir as if they had
fetched it, and fetch nothing. Redis unreachable: each instance checks on its own, as without Redis. A local file
source is read by each instance: there is nothing to share.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import datetime as dt
import gc
import logging
import marshal
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gophergate.pricing.catalog import Catalog, CatalogError
from gophergate.pricing.cluster import (
    BadSharedCopy,
    ClusterUnavailable,
    RegistryCluster,
    SharedMeta,
    decompress,
    source_id,
)

log = logging.getLogger(__name__)

SAVED_NAME = "models-dev.json"
META_NAME = "models-dev.meta.json"
MAX_BYTES = 64 * 1024 * 1024
COMPACT_FORMAT = 2  # bumped whenever the compact catalogue's layout changes
# A new copy with fewer than this share of the current copy's models is taken for a partial download.
MIN_SHARE = 0.5
_RETRY_SECONDS = 300.0  # the first retry after a failed check; doubled after each further failure
_RETRY_CAP_SECONDS = 6 * 3600.0  # ... up to the refresh interval, and never more than this
_CHECK_SECONDS = 30.0
_WAIT_SECONDS = 5.0  # while another instance holds the cluster's lock, its copy is looked for this often

FETCHED, CLUSTER_COPY, SAVED = "fetched", "cluster copy", "saved"  # where the current copy came from


def release_memory() -> None:
    """Return freed memory to the system (after a catalogue swap the old one's objects are garbage)."""
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def parse_in_child(body: bytes, min_models: int = 1) -> bytes:
    """The compact catalogue of a models.dev document, parsed in a child process (see ``compact.py``)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gophergate.pricing.compact", str(min_models)],
            input=body,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CatalogError(f"could not run the registry parser: {exc}") from None
    if proc.returncode == 2:
        raise CatalogError(proc.stderr.decode(errors="replace").strip() or "invalid registry")
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CatalogError(f"the registry parser failed ({proc.returncode}): {tail[0]}")
    return proc.stdout


def _from_blob(blob: bytes, snapshot: str, source: str) -> Catalog:
    _count, models = marshal.loads(blob)
    return Catalog(models, snapshot, source)


@dataclass(slots=True)
class RefreshResult:
    outcome: str  # "updated" | "not_modified" | "failed"
    detail: str = ""


def _is_path(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("", "file")


def _local_path(url: str) -> Path:
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme.lower() == "file" else Path(url)


class Registry:
    """Holds the current catalogue and keeps it fresh. ``on_change`` is called with each newly loaded one."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        refresh_hours: float = 24.0,
        on_change: Callable[[Catalog], None] | None = None,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cluster: RegistryCluster | None = None,
    ) -> None:
        self.url = url
        self.dir = data_dir / "registry"
        self.refresh_seconds = refresh_hours * 3600.0
        self.on_change = on_change
        self.timeout = timeout
        self.catalog: Catalog | None = None
        self.fetched_at: float | None = None  # wall clock of the last successful check (200 or 304)
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.last_error: str | None = None
        self.failures = 0  # failed checks in a row (0 after a success)
        self.background = False  # run_forever is checking (a failure then says when the next try comes)
        self.copy_source: str | None = None  # FETCHED, CLUSTER_COPY or SAVED
        self.cluster = cluster
        self._saved_mtime: float | None = None
        self._rejected: tuple[str, float] | None = None  # a shared copy that could not be used: not tried again
        self._next_fetch = 0.0
        self._clock = clock
        self._sleep = sleep

    @property
    def saved_path(self) -> Path:
        return self.dir / SAVED_NAME

    @property
    def meta_path(self) -> Path:
        return self.dir / META_NAME

    @property
    def is_local(self) -> bool:
        return _is_path(self.url)

    @property
    def shares(self) -> bool:
        """The cluster's copy is used: Redis is configured and the source is a URL (a local file is per machine)."""
        return self.cluster is not None and not _is_path(self.url)

    @property
    def retry_seconds(self) -> float:
        """How long after the last failed check the next one comes: 5 minutes, doubled after each further failure
        in a row, up to the refresh interval (at most 6 hours)."""
        cap = max(min(self.refresh_seconds, _RETRY_CAP_SECONDS), _RETRY_SECONDS)
        return min(_RETRY_SECONDS * 2.0 ** max(self.failures - 1, 0), cap)

    @property
    def age_seconds(self) -> float | None:
        return None if self.fetched_at is None else max(time.time() - self.fetched_at, 0.0)

    # -- the saved copy ---------------------------------------------------------------------------------------
    def _read_meta(self) -> dict[str, Any]:
        try:
            meta = orjson.loads(self.meta_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @property
    def compact_path(self) -> Path:
        return self.dir / f"models-dev.compact-py{sys.version_info[0]}{sys.version_info[1]}.marshal"

    def load_saved(self, *, install: bool = True) -> Catalog | None:
        """Load the saved copy (at start, and when another process saved a newer one): its compact form when that
        is there and matches, else the JSON parsed in a child process (and the compact form saved)."""
        try:
            stat = self.saved_path.stat()
            body = self.saved_path.read_bytes()
        except OSError:
            return None
        snapshot = Catalog.snapshot_id(body)
        catalog = self._load_compact(snapshot)
        if catalog is None:
            try:
                blob = parse_in_child(body)
            except CatalogError as exc:
                log.warning("the saved registry copy %s is unusable (%s); ignoring it", self.saved_path, exc)
                return None
            catalog = _from_blob(blob, snapshot, str(self.saved_path))
            self._write_compact(snapshot, blob)
        del body
        meta = self._read_meta()
        self.etag = meta.get("etag") if isinstance(meta.get("etag"), str) else None
        self.last_modified = meta.get("last_modified") if isinstance(meta.get("last_modified"), str) else None
        fetched = meta.get("fetched_at")
        self.fetched_at = float(fetched) if isinstance(fetched, (int, float)) else stat.st_mtime
        self._saved_mtime = stat.st_mtime
        self.copy_source = SAVED
        if install:
            self._install(catalog)
        return catalog

    def _load_compact(self, snapshot: str) -> Catalog | None:
        try:
            fmt, saved_snapshot, blob = marshal.loads(self.compact_path.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if fmt != COMPACT_FORMAT or saved_snapshot != snapshot:
            return None
        try:
            return _from_blob(blob, snapshot, str(self.saved_path))
        except (ValueError, TypeError):
            return None

    def _write_compact(self, snapshot: str, blob: bytes) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.compact_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(marshal.dumps((COMPACT_FORMAT, snapshot, blob)))
            os.replace(tmp, self.compact_path)
        except OSError as exc:  # only a cache: the JSON copy is what counts
            log.warning("could not save the compact registry copy: %s", exc)

    def _save(self, body: bytes, blob: bytes, snapshot: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.saved_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(body)
        os.replace(tmp, self.saved_path)
        self._saved_mtime = self.saved_path.stat().st_mtime
        self._write_compact(snapshot, blob)
        self._save_meta(snapshot)

    def _save_meta(self, snapshot: str | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "url": self.url if not _is_path(self.url) else "file",
            "etag": self.etag,
            "last_modified": self.last_modified,
            "fetched_at": self.fetched_at,
            "snapshot": snapshot or (self.catalog.snapshot if self.catalog is not None else None),
        }
        tmp = self.meta_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(meta))
        os.replace(tmp, self.meta_path)

    def _install(self, catalog: Catalog) -> None:
        self.catalog = catalog
        release_memory()
        if self.on_change is not None:
            self.on_change(catalog)

    # -- fetching ---------------------------------------------------------------------------------------------
    def _validate(self, body: bytes, source: str) -> tuple[Catalog, bytes]:
        current = self.catalog
        minimum = int(current.model_count * MIN_SHARE) if current is not None else 1
        blob = parse_in_child(body, minimum)
        return _from_blob(blob, Catalog.snapshot_id(body), source), blob

    async def _download(self, force: bool) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Accept": "application/json", "User-Agent": "gophergate-registry"}
        if not force:
            if self.etag:
                headers["If-None-Match"] = self.etag
            if self.last_modified:
                headers["If-Modified-Since"] = self.last_modified
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url, headers=headers) as resp,
        ):
            if resp.status == 304:
                return 304, b"", {}
            if resp.status != 200:
                return resp.status, b"", {}
            if resp.content_length is not None and resp.content_length > MAX_BYTES:
                raise CatalogError(f"the registry is larger than {MAX_BYTES} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise CatalogError(f"the registry is larger than {MAX_BYTES} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            if resp.content_length is not None and len(body) != resp.content_length:
                raise CatalogError("the download ended early")
            return 200, body, {k: v for k, v in resp.headers.items() if k.lower() in ("etag", "last-modified")}

    async def refresh(self, *, force: bool = False) -> RefreshResult:
        """Fetch (conditionally unless ``force``), validate, save and install a new copy."""
        try:
            if _is_path(self.url):
                path = _local_path(self.url)
                body = await asyncio.to_thread(path.read_bytes)
                status, headers = 200, dict[str, str]()
            else:
                status, body, headers = await self._download(force)
        except (OSError, aiohttp.ClientError, TimeoutError, CatalogError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if status == 304:
            self.fetched_at = time.time()
            self._succeeded()
            await asyncio.to_thread(self._save_meta)
            return RefreshResult("not_modified")
        if status != 200:
            return self._failed(f"HTTP {status}")
        try:
            catalog, blob = await asyncio.to_thread(self._validate, body, self.url)
        except CatalogError as exc:
            return self._failed(f"invalid registry: {exc}")
        if self.catalog is not None and catalog.snapshot == self.catalog.snapshot:
            self.fetched_at = time.time()
            self._succeeded()
            await asyncio.to_thread(self._save_meta)
            return RefreshResult("not_modified", "same content")
        lowered = {k.lower(): v for k, v in headers.items()}
        self.etag = lowered.get("etag")
        self.last_modified = lowered.get("last-modified")
        self.fetched_at = time.time()
        self._succeeded()
        self._install(catalog)
        await asyncio.to_thread(self._save, body, blob, catalog.snapshot)
        log.info("registry updated: %d models (%s)", catalog.model_count, catalog.snapshot)
        return RefreshResult("updated", f"{catalog.model_count} models")

    def _succeeded(self) -> None:
        self.copy_source = FETCHED
        if self.failures:
            log.info("registry check succeeded after %d failed %s", self.failures, _checks(self.failures))
        self.failures = 0
        self.last_error = None

    def _failed(self, detail: str) -> RefreshResult:
        self.last_error = detail
        self.failures += 1
        log.warning("%s", self.failure_message(detail))
        return RefreshResult("failed", detail)

    def failure_message(self, detail: str) -> str:
        """What a failed check means for prices, and when the next one comes (``failures`` already counted)."""
        where = "a local file" if _is_path(self.url) else urlsplit(self.url).netloc
        catalog = self.catalog
        if catalog is None:
            kept = "there is no saved copy yet, so prices come from the bundled offline data (genai-prices)"
        else:
            kept = f"keeping the saved copy ({catalog.model_count} models, {catalog.snapshot})"
        message = f"registry refresh from {where} failed: {detail}; {kept}"
        if self.background:
            message += f"; next try in {_duration(self.retry_seconds)}"
            if self.failures > 1:
                message += f" ({self.failures} failures in a row)"
        return message

    def _saved_changed(self) -> bool:
        try:
            mtime = self.saved_path.stat().st_mtime
        except OSError:
            return False
        return self._saved_mtime is None or mtime > self._saved_mtime

    async def run_forever(self) -> None:
        """Background task: a first fetch right away, then every refresh interval (retries sooner on failure);
        picks up copies saved by another process (the CLI, another worker) in between. With a cluster, each check
        looks at the shared copy first and fetches only when it is missing or stale and this process gets the
        lock; Redis unreachable, the check goes on as without Redis."""
        self.background = True
        clock = self._clock
        self._next_fetch = clock()
        first = True
        while True:
            if self._saved_changed():
                # Read in a thread, installed here: the listeners (prices, routes, the hub) live on the event loop.
                catalog = await asyncio.to_thread(self.load_saved, install=False)
                if catalog is not None:
                    self._install(catalog)
            now = clock()
            pause = await self._cluster_check(now >= self._next_fetch) if self.shares else None
            if pause is not None:
                first = False
            elif now >= self._next_fetch:
                age = self.age_seconds
                if not first and age is not None and age < self.refresh_seconds:
                    self._next_fetch = now + self.refresh_seconds - age  # another process checked recently
                else:
                    result = await self.refresh()
                    self._next_fetch = now + (
                        self.refresh_seconds if result.outcome != "failed" else self.retry_seconds
                    )
                first = False
            if pause is None:
                pause = max(self._next_fetch - clock(), 0.05)
            await self._sleep(min(_CHECK_SECONDS, pause))

    # -- one fetch per cluster --------------------------------------------------------------------------------
    async def _cluster_check(self, due: bool) -> float | None:
        """One check against the cluster: load its copy when newer than ours; fetch (under the lock) and publish
        when it is missing or stale and ``due`` (not backing off after a failure of ours). Returns how long to
        wait before the next check, or None when Redis did not answer (the caller checks on its own)."""
        cluster = self.cluster
        assert cluster is not None
        try:
            meta = await self._take_newer()
            if meta is not None:
                return min(self.refresh_seconds - meta.age_seconds, _CHECK_SECONDS)
            age = self.age_seconds
            if self.copy_source == FETCHED and age is not None and age < self.refresh_seconds and await self.publish():
                # Fetched here while Redis was away (or its publish failed): the cluster gets it now.
                return min(self.refresh_seconds - age, _CHECK_SECONDS)
            if not due:
                return max(self._next_fetch - self._clock(), 0.05)
            token = await cluster.acquire()
            if token is None:
                return _WAIT_SECONDS  # another instance is fetching: its copy is looked for again soon
        except ClusterUnavailable:
            return None
        try:
            try:
                if await self._take_newer() is not None:  # published between our look and the lock
                    return _CHECK_SECONDS
            except ClusterUnavailable:
                pass  # Redis went away just now: fetch all the same
            result = await self.refresh()
            if result.outcome != "failed":
                try:
                    await self.publish()
                except ClusterUnavailable:
                    pass  # published by the next check that reaches Redis (the copy is fresh and fetched here)
        finally:
            await cluster.release(token)
        now = self._clock()
        self._next_fetch = now + (self.refresh_seconds if self.last_error is None else self.retry_seconds)
        return max(self._next_fetch - now, 0.05)

    def _usable(self, meta: SharedMeta | None) -> bool:
        return (
            meta is not None
            and meta.source == source_id(self.url)
            and self._rejected != (meta.snapshot, meta.fetched_at)
        )

    async def _take_newer(self) -> SharedMeta | None:
        """Read the cluster's meta; load its copy when it is newer than ours. Returns the meta when the cluster's
        copy is usable and fresh (younger than the refresh interval), else None."""
        cluster = self.cluster
        assert cluster is not None
        meta = await cluster.read_meta()
        if not self._usable(meta):
            return None
        assert meta is not None
        if self.catalog is None or self.fetched_at is None or meta.fetched_at > self.fetched_at:
            if not await self._load_shared():
                return None
            meta = cluster.seen
            assert meta is not None
        return meta if meta.age_seconds < self.refresh_seconds else None

    async def _load_shared(self) -> bool:
        """Install the cluster's copy and save it to the data dir as if fetched here (a restart without Redis
        still has it). The same content as ours: only its check time and validators are taken."""
        cluster = self.cluster
        assert cluster is not None
        shared = await cluster.read_copy()
        if shared is None or not self._usable(shared[0]):
            return False
        meta, data = shared
        current = self.catalog
        try:
            body = await asyncio.to_thread(decompress, data, MAX_BYTES)
            del data
            if Catalog.snapshot_id(body) != meta.snapshot:
                raise BadSharedCopy(f"its content is not snapshot {meta.snapshot}")
            if current is not None and current.snapshot == meta.snapshot:
                catalog, blob = None, b""
            else:
                catalog, blob = await asyncio.to_thread(self._validate, body, self.url)
        except (BadSharedCopy, CatalogError) as exc:
            self._rejected = (meta.snapshot, meta.fetched_at)
            log.warning("the cluster's registry copy (%s, from %s) is not used: %s", meta.snapshot, meta.by, exc)
            return False
        self.etag, self.last_modified, self.fetched_at = meta.etag, meta.last_modified, meta.fetched_at
        self.copy_source = CLUSTER_COPY
        self.failures, self.last_error = 0, None
        if catalog is None:
            await asyncio.to_thread(self._save_meta)
            return True
        try:
            await asyncio.to_thread(self._save, body, blob, catalog.snapshot)
        except OSError as exc:  # served all the same; a restart without Redis starts from the older copy
            log.warning("could not save the cluster's registry copy to %s: %s", self.dir, exc)
        self._install(catalog)
        log.info("registry loaded from the cluster's copy: %d models (%s)", catalog.model_count, catalog.snapshot)
        return True

    async def load_cluster_copy(self) -> bool:
        """At start: take the cluster's copy when there is none saved here or the saved one is older. Two Redis
        reads at most, each bounded by the cluster's timeout (the client's 0.5 s in practice); Redis unreachable,
        the start goes on with the saved copy. True when a copy was taken."""
        if not self.shares:
            return False
        cluster = self.cluster
        assert cluster is not None
        try:
            meta = await cluster.read_meta()
            if not self._usable(meta):
                return False
            assert meta is not None
            if self.catalog is not None and self.fetched_at is not None and meta.fetched_at <= self.fetched_at:
                return False
            return await self._load_shared()
        except ClusterUnavailable:
            return False

    async def publish(self) -> bool:
        """Share the current copy (the saved document) with the cluster; False when Redis is not configured, the
        saved document is not the current copy, or the cluster already has one as new."""
        cluster, catalog, fetched_at = self.cluster, self.catalog, self.fetched_at
        if cluster is None or catalog is None or fetched_at is None or _is_path(self.url):
            return False
        try:
            body = await asyncio.to_thread(self.saved_path.read_bytes)
        except OSError as exc:
            log.warning("the registry copy was not shared with the cluster: %s", exc)
            return False
        if Catalog.snapshot_id(body) != catalog.snapshot:
            return False
        return await cluster.publish(
            body,
            snapshot=catalog.snapshot,
            fetched_at=fetched_at,
            etag=self.etag,
            last_modified=self.last_modified,
            models=catalog.model_count,
            source=source_id(self.url),
        )

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.aclose()

    def status(self) -> dict[str, Any]:
        catalog = self.catalog
        return {
            "source": "models.dev" if catalog is not None else "offline",
            "snapshot": catalog.snapshot if catalog is not None else None,
            "models": catalog.model_count if catalog is not None else 0,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "fetched_at": (
                None
                if self.fetched_at is None
                else dt.datetime.fromtimestamp(self.fetched_at, dt.UTC).isoformat(timespec="seconds")
            ),
            "last_error": self.last_error,
            "failures": self.failures,
            "copy": self.copy_source if catalog is not None else None,
            **self._cluster_status(),
        }

    def _cluster_status(self) -> dict[str, Any]:
        if self.cluster is None:
            return {"cluster": "off"}
        if not self.shares:
            return {"cluster": "off (local file)"}
        return self.cluster.status()


def _checks(n: int) -> str:
    return "check" if n == 1 else "checks"


def _duration(seconds: float) -> str:
    """5 min, 1 h 20 min, 6 h."""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"

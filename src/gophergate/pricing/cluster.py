"""The registry's share of Redis (``GOPHERGATE_REDIS_URL``): one fetch of models.dev per cluster.

Keys (under ``GOPHERGATE_REDIS_KEY_PREFIX``):

- ``registry:lock``: who is fetching. ``SET NX PX`` with a random token; released by a compare-and-delete script,
  so a holder never deletes a lock that expired and was taken by another instance. A holder that dies leaves a
  lock that expires after ``lock_seconds``.
- ``registry:copy``: the last validated models.dev document, zlib-compressed, exactly as it was downloaded.
- ``registry:meta``: a hash describing it: ``snapshot``, ``fetched_at`` (wall clock), ``etag``,
  ``last_modified``, ``models``, ``source`` (a digest of the registry URL: a copy of another URL is not used),
  ``by`` (host and pid of the publisher). Copy and meta are written together by one script, and only when the
  copy is newer than the one there; the other instances poll the meta (one small read per 30 s) rather than
  subscribe, so a lost message or a reconnect needs no handling.

Every call is bounded by the client's short timeouts and ``timeout``; a failure marks Redis unreachable (a warning
at most once a minute) and the registry falls back to fetching on its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import os
import secrets
import socket
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("gophergate.pricing.registry")

LOCK_SECONDS = 300.0  # longer than a download (60 s) and a parse (120 s) together; a dead holder's lock expires
WARN_EVERY = 60.0
KEEP_SECONDS = 30 * 86400.0  # the copy and its meta outlive any refresh interval; gone once unused for a month
_T = TypeVar("_T")

# KEYS: the lock. ARGV: the holder's token. Deletes the lock only while it is still this holder's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: copy, meta. ARGV: compressed body, keep ms, then field/value pairs of the meta (fetched_at first).
# Writes nothing when the copy there was fetched at the same time or later (returns 0).
_PUBLISH = """
local current = redis.call('HGET', KEYS[2], 'fetched_at')
if current and tonumber(current) and tonumber(current) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


class ClusterUnavailable(Exception):
    """Redis did not answer (or answered an error): the caller falls back to fetching on its own."""


class BadSharedCopy(Exception):
    """The shared copy cannot be used (corrupt, too large, not what its meta says)."""


@dataclass(frozen=True, slots=True)
class SharedMeta:
    snapshot: str
    fetched_at: float
    etag: str | None
    last_modified: str | None
    models: int
    source: str
    by: str

    @property
    def age_seconds(self) -> float:
        return max(time.time() - self.fetched_at, 0.0)


def source_id(url: str) -> str:
    """What the meta says the copy was fetched from: a digest, so the URL itself never lands in Redis."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _meta(raw: dict[Any, Any]) -> SharedMeta | None:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    try:
        return SharedMeta(
            snapshot=fields["snapshot"],
            fetched_at=float(fields["fetched_at"]),
            etag=fields.get("etag") or None,
            last_modified=fields.get("last_modified") or None,
            models=int(fields.get("models") or 0),
            source=fields.get("source", ""),
            by=fields.get("by", ""),
        )
    except (KeyError, ValueError):
        return None  # not written by this code: treated as no copy


def decompress(data: bytes, limit: int) -> bytes:
    """The shared copy's document, refused past ``limit`` bytes (never inflated whole before checking)."""
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise BadSharedCopy(f"not a zlib stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise BadSharedCopy(f"larger than {limit} bytes")
    if not inflater.eof:
        raise BadSharedCopy("the compressed copy ends early")
    return body


class RegistryCluster:
    """The lock, the shared copy and its meta in one Redis. ``client`` is a ``redis.asyncio.Redis`` with short
    timeouts (``gophergate.limits.redis.connect``); ``prefix`` is ``GOPHERGATE_REDIS_KEY_PREFIX``."""

    def __init__(self, client: Any, prefix: str, *, lock_seconds: float = LOCK_SECONDS, timeout: float = 2.0) -> None:
        self.client = client
        self.lock_key = prefix + "registry:lock"
        self.copy_key = prefix + "registry:copy"
        self.meta_key = prefix + "registry:meta"
        self.lock_seconds = lock_seconds
        self.timeout = timeout
        self.reachable: bool | None = None  # None: not tried yet
        self.last_error: str | None = None
        self.holding = False  # this process holds the lock (is fetching for the cluster)
        self.seen: SharedMeta | None = None  # the meta last read
        self._release = client.register_script(_RELEASE)
        self._publish = client.register_script(_PUBLISH)
        self._warned = -math.inf
        self._by = f"{socket.gethostname()}:{os.getpid()}"

    # -- every call goes through here -------------------------------------------------------------------------
    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            result = await asyncio.wait_for(call, self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._unreachable(exc)
            raise ClusterUnavailable(str(exc) or type(exc).__name__) from exc
        if self.reachable is False:
            log.info("registry: Redis answers again; the cluster's copy is used again")
        self.reachable = True
        self.last_error = None
        return result

    def _unreachable(self, exc: BaseException) -> None:
        self.reachable = False
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "registry: Redis is unreachable (%s); this instance checks models.dev on its own meanwhile",
                self.last_error,
            )

    # -- the shared copy --------------------------------------------------------------------------------------
    async def read_meta(self) -> SharedMeta | None:
        raw = await self._call(self.client.hgetall(self.meta_key))
        meta = _meta(raw) if raw else None
        self.seen = meta
        return meta

    async def read_copy(self) -> tuple[SharedMeta, bytes] | None:
        """The meta and the compressed copy, read together (one transaction: never a copy with another's meta)."""

        async def both() -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.meta_key)
                pipe.get(self.copy_key)
                return list(await pipe.execute())

        raw, data = await self._call(both())
        meta = _meta(raw) if raw else None
        self.seen = meta
        if meta is None or data is None:
            return None
        return meta, bytes(data)

    async def publish(
        self, body: bytes, *, snapshot: str, fetched_at: float, etag: str | None, last_modified: str | None,
        models: int, source: str,
    ) -> bool:  # fmt: skip
        """Share a validated copy; False when the one there is as new or newer (it stays)."""
        data = await asyncio.to_thread(zlib.compress, body, 6)
        meta = {
            "fetched_at": repr(fetched_at),
            "snapshot": snapshot,
            "etag": etag or "",
            "last_modified": last_modified or "",
            "models": str(models),
            "source": source,
            "by": self._by,
        }
        args: list[Any] = [data, int(KEEP_SECONDS * 1000)]
        for name, value in meta.items():
            args += [name, value]
        done = bool(await self._call(self._publish(keys=[self.copy_key, self.meta_key], args=args)))
        if done:
            self.seen = SharedMeta(snapshot, fetched_at, etag, last_modified, models, source, self._by)
        return done

    # -- the lock ---------------------------------------------------------------------------------------------
    async def acquire(self) -> str | None:
        """A token when this process now holds the lock; None when another holds it."""
        token = secrets.token_hex(16)
        taken = await self._call(self.client.set(self.lock_key, token, nx=True, px=int(self.lock_seconds * 1000)))
        if not taken:
            return None
        self.holding = True
        return token

    async def release(self, token: str) -> None:
        self.holding = False
        try:
            await self._call(self._release(keys=[self.lock_key], args=[token]))
        except ClusterUnavailable:
            pass  # the lock expires on its own

    async def aclose(self) -> None:
        await self.client.aclose()

    def status(self) -> dict[str, Any]:
        seen = self.seen
        return {
            "cluster": "redis" if self.reachable is not False else "redis-unavailable",
            "cluster_lock_held": self.holding,
            "cluster_copy_fetched_at": (
                None
                if seen is None
                else dt.datetime.fromtimestamp(seen.fetched_at, dt.UTC).isoformat(timespec="seconds")
            ),
            "cluster_error": self.last_error,
        }

"""The responses the gateway made itself: /v1/responses translated for a provider without a Responses API.

OpenAI keeps a response (unless ``store: false``) so that the next request can name it in ``previous_response_id``
and carry the conversation on, and so that ``GET`` / ``DELETE /v1/responses/{id}`` find it. A translated response
has no upstream that keeps it, so the gateway does: the response object and the conversation's chat messages up
to and including it, owned by the client key that made it, for ``GOPHERGATE_RESPONSES_TTL_DAYS``.

A response is kept in memory at once (a follow-up can come a millisecond after the answer; the memory is bounded by
the bytes it holds) and queued for the database, where one writer task inserts the queue in batches, off the
request path; another instance finds it there. Reads look in memory first. A queue that the database cannot keep up
with is bounded too: past ``MAX_PENDING`` responses, new ones are kept in memory only (counted, with a warning).

With ``GOPHERGATE_REDIS_URL`` (``cluster/memory.py``) a kept response is also queued for Redis, with the same time to
live, so that another instance finds it at once rather than when the database writer has committed it; a read that
misses the memory asks Redis (within a short timeout) before the database, and a delete removes it there too. A
response larger than ``cluster.memory.MAX_RESPONSE_BYTES`` goes to the database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from cachetools import LRUCache
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import stored_responses

if TYPE_CHECKING:
    from gophergate.cluster.memory import SharedMemories

log = logging.getLogger(__name__)

MEMORY_BYTES = 64 * 1024 * 1024  # the most recent responses of this process, for follow-ups without a database read
MAX_PENDING = 10_000  # responses queued for the database at most
BATCH = 500  # rows per insert
GATHER_SECONDS = 0.005  # the writer waits this long after the first queued row, to write a batch rather than a row
# A follow-up that names a response this instance never saw and the database does not have yet (another instance
# made it a moment ago and its writer has not committed) is looked for again after these pauses.
RECENT_RETRIES = (0.05, 0.1, 0.2)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    client_key_id: int
    response_json: str
    messages_json: str  # the conversation's chat messages up to and including this response
    expires_at: dt.datetime

    @property
    def response(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.response_json)
        return value

    @property
    def messages(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = orjson.loads(self.messages_json)
        return value


def _size(stored: StoredResponse) -> int:
    return len(stored.response_json) + len(stored.messages_json) + 200


def encode(stored: StoredResponse) -> bytes:
    """A stored response as kept in Redis."""
    return orjson.dumps(
        [stored.client_key_id, stored.expires_at.timestamp(), stored.response_json, stored.messages_json]
    )


def decode(data: bytes) -> StoredResponse:
    """What ``encode`` made; raises ``ValueError`` on anything else."""
    value = orjson.loads(data)
    if not (
        isinstance(value, list)
        and len(value) == 4
        and isinstance(value[0], int)
        and isinstance(value[1], int | float)
        and isinstance(value[2], str)
        and isinstance(value[3], str)
    ):
        raise ValueError("not a stored response")
    return StoredResponse(value[0], value[2], value[3], dt.datetime.fromtimestamp(value[1], dt.UTC))


class ResponseStore:
    def __init__(self, engine: AsyncEngine, ttl_days: int, shared: SharedMemories | None = None) -> None:
        self._engine = engine
        self._shared = shared  # with GOPHERGATE_REDIS_URL: the cluster's copy, found by every instance at once
        self._ttl = dt.timedelta(days=ttl_days)
        self._memory: LRUCache[str, StoredResponse] = LRUCache(MEMORY_BYTES, getsizeof=_size)
        self._pending: list[dict[str, Any]] = []
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the batch being inserted now
        self.dropped = 0  # responses kept in memory only: the queue was full

    def keep(self, client_key_id: int, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        """Keep a finished response: in memory now, in the database with the writer's next batch."""
        now = dt.datetime.now(dt.UTC)
        response_id = str(response["id"])
        stored = StoredResponse(
            client_key_id, orjson.dumps(response).decode(), orjson.dumps(messages).decode(), now + self._ttl
        )
        self._memory[response_id] = stored
        if self._shared is not None:
            self._shared.keep_response(response_id, stored, encode, self._ttl.total_seconds(), _size(stored))
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("stored responses: the database falls behind; %d kept in memory only", self.dropped)
            return
        self._pending.append(
            {
                "id": response_id,
                "client_key_id": client_key_id,
                "created_at": now,
                "expires_at": stored.expires_at,
                "response": stored.response_json,
                "messages": stored.messages_json,
            }
        )
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="stored-responses")
        self._queued.set()

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            await asyncio.sleep(GATHER_SECONDS)
            await self._write_pending()

    async def _write_pending(self) -> None:
        self._queued.clear()
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            loop = asyncio.get_running_loop()
            self._writing = loop.create_future()
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(stored_responses), batch)
            except asyncio.CancelledError:
                self._pending[:0] = batch  # not written: the last flush at close writes it
                raise
            except Exception as exc:  # the memory copies still serve this process's follow-ups
                log.warning("could not store %d responses: %s", len(batch), exc)
            finally:
                self._writing.set_result(None)
                self._writing = None

    async def _flush(self) -> None:
        """Everything queued so far is in the database (a delete must not be followed by the row's insert)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
        await self._write_pending()

    async def load(
        self, response_id: str, client_key_id: int | None, *, wait_for_recent: bool = False
    ) -> StoredResponse | None:
        """The stored response, if it exists, has not expired and belongs to the key (another key's is not found).
        ``wait_for_recent``: look again, briefly, for one another instance may have made a moment ago."""
        stored = self._memory.get(response_id)
        if stored is None:
            stored = await self._shared_copy(response_id) or await self._row(response_id)
            for pause in RECENT_RETRIES if wait_for_recent else ():
                if stored is not None:
                    break
                await asyncio.sleep(pause)
                stored = await self._shared_copy(response_id) or await self._row(response_id)
            if stored is None:
                return None
            self._memory[response_id] = stored
        if stored.client_key_id != client_key_id or stored.expires_at <= dt.datetime.now(dt.UTC):
            return None
        return stored

    async def _shared_copy(self, response_id: str) -> StoredResponse | None:
        if self._shared is None:
            return None
        data = await self._shared.load_response(response_id)
        if data is None:
            return None
        try:
            return decode(data)
        except ValueError:
            log.warning("stored responses: an unreadable copy of %s in Redis; reading the database", response_id)
            return None

    async def _row(self, response_id: str) -> StoredResponse | None:
        row = await self._select(response_id)
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
        return StoredResponse(row.client_key_id, row.response, row.messages, expires)

    async def _select(self, response_id: str) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(select(stored_responses).where(stored_responses.c.id == response_id))).first()

    async def delete(self, response_id: str, client_key_id: int | None) -> bool:
        if await self.load(response_id, client_key_id) is None:
            return False
        self._memory.pop(response_id, None)
        if self._shared is not None:
            await self._shared.forget_response(response_id)
        await self._flush()
        async with self._engine.begin() as conn:
            await conn.execute(delete(stored_responses).where(stored_responses.c.id == response_id))
        return True

    async def close(self) -> None:
        """Stop the writer and write what is queued (the runtime closes the store before the engine)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self._flush()

"""The responses the gateway made itself: /v1/responses translated for a provider without a Responses API.

OpenAI keeps a response (unless ``store: false``) so that the next request can name it in ``previous_response_id``
and carry the conversation on, and so that ``GET`` / ``DELETE /v1/responses/{id}`` find it. A translated response
has no upstream that keeps it, so the gateway does: the response object and the conversation's chat messages up
to and including it, owned by the client key that made it, for ``GOPHERGATE_RESPONSES_TTL_DAYS``.

A response is kept in memory at once (a follow-up can come a millisecond after the answer) and written to the
database by a background task, off the request path; another instance finds it there. Reads look in memory first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import stored_responses

log = logging.getLogger(__name__)

MEMORY_ENTRIES = 2048  # the most recent responses of this process, for follow-ups without a database read


@dataclass(frozen=True, slots=True)
class StoredResponse:
    client_key_id: int
    response: dict[str, Any]
    messages: list[dict[str, Any]]  # the conversation's chat messages up to and including this response
    expires_at: dt.datetime


class ResponseStore:
    def __init__(self, engine: AsyncEngine, ttl_days: int) -> None:
        self._engine = engine
        self._ttl = dt.timedelta(days=ttl_days)
        self._memory: LRUCache[str, StoredResponse] = LRUCache(MEMORY_ENTRIES)
        self._writes: set[asyncio.Task[None]] = set()

    def keep(self, client_key_id: int, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        """Keep a finished response: in memory now, in the database soon."""
        now = dt.datetime.now(dt.UTC)
        stored = StoredResponse(client_key_id, response, messages, now + self._ttl)
        response_id = str(response["id"])
        self._memory[response_id] = stored
        task = asyncio.get_running_loop().create_task(self._write(response_id, stored, now))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, response_id: str, stored: StoredResponse, now: dt.datetime) -> None:
        row = {
            "id": response_id,
            "client_key_id": stored.client_key_id,
            "created_at": now,
            "expires_at": stored.expires_at,
            "response": orjson.dumps(stored.response).decode(),
            "messages": orjson.dumps(stored.messages).decode(),
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(stored_responses).values(row))
        except Exception as exc:  # the memory copy still serves this process's follow-ups
            log.warning("could not store response %s: %s", response_id, exc)

    async def load(self, response_id: str, client_key_id: int | None) -> StoredResponse | None:
        """The stored response, if it exists, has not expired and belongs to the key (another key's is not found)."""
        stored = self._memory.get(response_id)
        if stored is None:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(stored_responses).where(stored_responses.c.id == response_id))).first()
            if row is None:
                return None
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
            stored = StoredResponse(row.client_key_id, orjson.loads(row.response), orjson.loads(row.messages), expires)
            self._memory[response_id] = stored
        if stored.client_key_id != client_key_id or stored.expires_at <= dt.datetime.now(dt.UTC):
            return None
        return stored

    async def delete(self, response_id: str, client_key_id: int | None) -> bool:
        if await self.load(response_id, client_key_id) is None:
            return False
        self._memory.pop(response_id, None)
        await self._flush()
        async with self._engine.begin() as conn:
            await conn.execute(delete(stored_responses).where(stored_responses.c.id == response_id))
        return True

    async def _flush(self) -> None:
        """Wait for pending writes (a delete must not be followed by the row's insert)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        await self._flush()

"""Server-side memory of what OpenAI clients cannot carry back to Gemini: thought signatures and call ids.

Gemini 3 rejects a replayed ``functionCall`` part that lost its ``thoughtSignature`` (providers.md §3.5,
§11.15). OpenAI clients never see signatures, so the gateway keeps them keyed by the tool-call id it issued
and re-attaches them when the history comes back. In-process, bounded, with a TTL (like
``providers/reasoning_store.py``), shared through Redis in a cluster (``cluster/memory.py``); a missed entry
(another worker without Redis, a restart, expiry) falls back to the documented validator-skip sentinel in
``translate.py``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import orjson

from gophergate.core.ttl_store import TTLStore


@dataclass(frozen=True, slots=True)
class CallMemory:
    signature: str | None  # the part's thoughtSignature, unchanged
    upstream_id: str | None  # Gemini's own functionCall.id, when it sent one


def _memory_size(memory: CallMemory) -> int:
    return sys.getsizeof(memory.signature) + sys.getsizeof(memory.upstream_id)


class SignatureStore(TTLStore[CallMemory]):
    def __init__(self, *, max_bytes: int = 32 << 20, ttl_seconds: float = 48 * 3600) -> None:
        super().__init__(max_bytes=max_bytes, ttl_seconds=ttl_seconds, size_of=_memory_size)

    def put(self, tool_call_id: str, memory: CallMemory) -> None:
        self.set(tool_call_id, memory)

    def encode(self, value: CallMemory) -> bytes:
        return orjson.dumps([value.signature, value.upstream_id])

    def decode(self, data: bytes) -> CallMemory:
        value = orjson.loads(data)
        if not (
            isinstance(value, list) and len(value) == 2 and all(part is None or isinstance(part, str) for part in value)
        ):
            raise ValueError("a call memory must be [signature, upstream id]")
        return CallMemory(value[0], value[1])

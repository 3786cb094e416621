"""Server-side memory of reasoning that OpenAI clients cannot carry back.

DeepSeek (thinking mode) and Moonshot K3 reject a tool-call turn whose assistant message lost its
``reasoning_content`` (providers.md §5.5, §7.2). OpenAI SDK clients often drop that unknown field when they
echo the assistant message, so the gateway remembers it keyed by the tool-call ids it relayed and puts it
back when the history returns. In-process, bounded, with a TTL; shared through Redis in a cluster
(``cluster/memory.py``).
"""

from __future__ import annotations

import orjson

from gophergate.core.ttl_store import TTLStore


class ReasoningStore(TTLStore[str]):
    def __init__(self, *, max_bytes: int = 64 << 20, ttl_seconds: float = 24 * 3600) -> None:
        super().__init__(max_bytes=max_bytes, ttl_seconds=ttl_seconds)

    def put(self, tool_call_ids: list[str], reasoning: str) -> None:
        if reasoning:
            self.set_many(tool_call_ids, reasoning)

    def encode(self, value: str) -> bytes:
        return orjson.dumps(value)

    def decode(self, data: bytes) -> str:
        value = orjson.loads(data)
        if not isinstance(value, str):
            raise ValueError("reasoning must be a string")
        return value

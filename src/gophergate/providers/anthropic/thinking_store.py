"""Server-side memory of Anthropic thinking blocks that OpenAI clients cannot carry back.

When tools are combined with thinking, the assistant turn that made the tool calls must come back with its
``thinking`` / ``redacted_thinking`` blocks unchanged, signature included (providers.md §4.5, §11 pitfall 15).
The OpenAI wire has no place for them, so the gateway keeps them keyed by the tool-call ids of that turn and
puts them back when the history returns. In-process, bounded, with a TTL (24 h by default); shared through Redis
in a cluster (``cluster/memory.py``).
"""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.core.ttl_store import TTLStore

ThinkingBlocks = tuple[dict[str, Any], ...]


def _blocks_size(blocks: ThinkingBlocks) -> int:
    """What the blocks take, measured as their JSON (thinking text and signatures dominate)."""
    return len(orjson.dumps(blocks))


class ThinkingStore(TTLStore[ThinkingBlocks]):
    def __init__(self, *, max_bytes: int = 64 << 20, ttl_seconds: float = 24 * 3600) -> None:
        super().__init__(max_bytes=max_bytes, ttl_seconds=ttl_seconds, size_of=_blocks_size)

    def put(self, tool_call_ids: list[str], blocks: list[dict[str, Any]]) -> None:
        if blocks and tool_call_ids:
            self.set_many(tool_call_ids, tuple(blocks))

    def encode(self, value: ThinkingBlocks) -> bytes:
        return orjson.dumps(value)  # a tuple is a JSON array; keys keep their order, strings their bytes

    def decode(self, data: bytes) -> ThinkingBlocks:
        value = orjson.loads(data)
        if not isinstance(value, list) or not all(isinstance(block, dict) for block in value):
            raise ValueError("thinking blocks must be an array of objects")
        return tuple(value)

"""Token usage in the gateway's canonical classes, read from each provider's own fields.

Canonical semantics follow OpenAI: ``prompt`` includes cache reads and writes, ``completion`` includes
reasoning. Providers that count differently are normalised here and nowhere else (providers.md §10).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Cost:
    """What a usage cost, in USD, by token class (exact decimals; see ``pricing/cost.py``)."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal

    @property
    def total(self) -> Decimal:
        return self.input + self.cache_read + self.cache_write + self.output + self.reasoning


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class _NotACount(ValueError):
    """A token count that is neither absent nor a count: the usage cannot be trusted, so it counts as missing."""


def _int(value: Any) -> int:
    """A token count: an integer, or an integer sent as a string ("12", as some upstreams do); absent is 0."""
    if value is None:
        return 0
    if type(value) is int:
        if value < 0:
            raise _NotACount(value)
        return value
    if type(value) is str and value.isascii() and value.strip().isdigit():
        return int(value)
    if type(value) is float and value.is_integer() and value >= 0:
        return int(value)
    raise _NotACount(value)


def _reader(read: Callable[[dict[str, Any]], Usage]) -> Callable[[dict[str, Any]], Usage | None]:
    """A reader that answers None (no usage: the estimate runs and the row is marked estimated) when a count is
    not a count, rather than billing it as 0."""

    @functools.wraps(read)
    def run(usage: dict[str, Any]) -> Usage | None:
        try:
            return read(usage)
        except _NotACount:
            return None

    return run


def _details(usage: dict[str, Any], key: str) -> dict[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, dict) else {}


def _openai(usage: dict[str, Any]) -> Usage:
    """OpenAI: prompt includes cached tokens, completion includes reasoning."""
    prompt_details = _details(usage, "prompt_tokens_details")
    completion_details = _details(usage, "completion_tokens_details")
    return Usage(
        prompt=_int(usage.get("prompt_tokens")),
        completion=_int(usage.get("completion_tokens")),
        reasoning=_int(completion_details.get("reasoning_tokens")),
        cache_read=_int(prompt_details.get("cached_tokens")),
        cache_write=_int(prompt_details.get("cache_write_tokens")),
    )


from_openai = _reader(_openai)


@_reader
def from_deepseek(usage: dict[str, Any]) -> Usage:
    """DeepSeek: prompt = cache hit + miss; a miss is not a cache write."""
    out = _openai(usage)
    hit = _int(usage.get("prompt_cache_hit_tokens"))
    if hit:
        out.cache_read = hit
    out.cache_write = 0
    return out


@_reader
def from_xai(usage: dict[str, Any]) -> Usage:
    """xAI reports completion_tokens without the reasoning tokens (docs.x.ai reasoning guide)."""
    out = _openai(usage)
    out.completion += out.reasoning
    return out


@_reader
def from_moonshot(usage: dict[str, Any]) -> Usage:
    """Moonshot mirrors the cached count at the top level (older explicit-cache spelling)."""
    out = _openai(usage)
    if not out.cache_read:
        out.cache_read = _int(usage.get("cached_tokens"))
    return out


@_reader
def from_gemini(usage: dict[str, Any]) -> Usage:
    """Gemini ``usageMetadata``: ``promptTokenCount`` includes cached content, ``candidatesTokenCount`` excludes
    thoughts (providers.md §3.3, §10), so completion = candidates + thoughts and prompt = prompt + tool-use prompt."""
    thoughts = _int(usage.get("thoughtsTokenCount"))
    return Usage(
        prompt=_int(usage.get("promptTokenCount")) + _int(usage.get("toolUsePromptTokenCount")),
        completion=_int(usage.get("candidatesTokenCount")) + thoughts,
        reasoning=thoughts,
        cache_read=_int(usage.get("cachedContentTokenCount")),
    )


@_reader
def from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic: ``input_tokens`` excludes cache reads and cache writes, so prompt is the sum of the three;
    ``output_tokens`` already includes thinking (providers.md §4.3, §10, §11 pitfall 2)."""
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    return Usage(
        prompt=_int(usage.get("input_tokens")) + cache_read + cache_write,
        completion=_int(usage.get("output_tokens")),
        reasoning=_int(_details(usage, "output_tokens_details").get("thinking_tokens")),
        cache_read=cache_read,
        cache_write=cache_write,
    )


USAGE_READERS = {
    "openai": from_openai,
    "deepseek": from_deepseek,
    "xai": from_xai,
    "moonshot": from_moonshot,
    "ollama": from_openai,
}


@_reader
def from_embeddings(usage: dict[str, Any]) -> Usage:
    """Embeddings: ``{prompt_tokens, total_tokens}``; there is no completion (providers.md §2.8)."""
    return Usage(prompt=_int(usage.get("prompt_tokens")))


def _responses(usage: dict[str, Any]) -> Usage:
    """Responses API: ``input_tokens`` includes cached tokens, ``output_tokens`` includes reasoning (§2.9)."""
    input_details = _details(usage, "input_tokens_details")
    output_details = _details(usage, "output_tokens_details")
    return Usage(
        prompt=_int(usage.get("input_tokens")),
        completion=_int(usage.get("output_tokens")),
        reasoning=_int(output_details.get("reasoning_tokens")),
        cache_read=_int(input_details.get("cached_tokens")),
        cache_write=_int(input_details.get("cache_write_tokens")),
    )


from_responses = _reader(_responses)


@_reader
def from_images(usage: dict[str, Any]) -> Usage:
    """gpt-image models: ``input_tokens`` (text + image input) and ``output_tokens`` (the images) (§2.8).

    The same field names as the Responses API; ``input_tokens_details`` splits text and image tokens, which
    the canonical classes do not distinguish.
    """
    return _responses(usage)

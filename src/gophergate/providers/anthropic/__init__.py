"""The native Anthropic Messages API provider (providers.md §4)."""

from gophergate.providers.anthropic.provider import DEFAULT_BASE_URL, AnthropicProvider
from gophergate.providers.anthropic.thinking_store import ThinkingStore
from gophergate.providers.anthropic.translate import DEFAULT_API_VERSION, DEFAULT_MAX_TOKENS

__all__ = ["DEFAULT_API_VERSION", "DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "AnthropicProvider", "ThinkingStore"]

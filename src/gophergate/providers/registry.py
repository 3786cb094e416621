"""Building the configured providers (see ``config.py`` for which ones are configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gophergate.providers.anthropic import AnthropicProvider, ThinkingStore
from gophergate.providers.anthropic.passthrough import MessagesPassthrough
from gophergate.providers.anthropic.translate import DEFAULT_API_VERSION
from gophergate.providers.base import Provider
from gophergate.providers.config import ANTHROPIC_DIALECT, ProviderConfig
from gophergate.providers.gemini import GeminiProvider, SignatureStore
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.provider import OpenAICompatProvider, OpenAIProvider
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.transport import Transport
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES

if TYPE_CHECKING:
    from gophergate.cluster.memory import SharedMemories


def build_providers(
    configs: list[ProviderConfig],
    client: Transport,
    store: ReasoningStore,
    media: Transport | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    memories: SharedMemories | None = None,
) -> dict[str, Provider]:
    """``media`` fetches URLs named in requests (``providers/media.py``); the upstream client when omitted.
    ``max_event_bytes`` caps one event of an upstream stream (``GOPHERGATE_MAX_SSE_EVENT_BYTES``). ``memories``
    (with ``GOPHERGATE_REDIS_URL``) shares each provider's signature or thinking store with the cluster, under the
    provider's name; ``store`` (the OpenAI-compatible family's reasoning) is shared by the caller."""
    providers: dict[str, Provider] = {}
    for cfg in configs:
        if cfg.dialect == "gemini":
            signatures = SignatureStore()
            if memories is not None:
                memories.attach(signatures, f"signatures:{cfg.name}")
            providers[cfg.name] = GeminiProvider(
                name=cfg.name,
                base_url=cfg.base_url,
                api_key=cfg.api_key or "",
                client=client,
                media=media,
                store=signatures,
                extra_headers=dict(cfg.headers),
                static_models=cfg.models,
                max_event_bytes=max_event_bytes,
            )
            continue
        if cfg.dialect == ANTHROPIC_DIALECT:
            thinking = ThinkingStore()
            if memories is not None:
                memories.attach(thinking, f"thinking:{cfg.name}")
            providers[cfg.name] = AnthropicProvider(
                name=cfg.name,
                base_url=cfg.base_url,
                api_key=cfg.api_key or "",
                client=client,
                api_version=cfg.api_version or DEFAULT_API_VERSION,
                thinking_store=thinking,
                extra_headers=dict(cfg.headers),
                static_models=cfg.models,
                max_event_bytes=max_event_bytes,
            )
            continue
        dialect = get_dialect(cfg.dialect)
        cls = OpenAIProvider if dialect.responses_api else OpenAICompatProvider
        provider = providers[cfg.name] = cls(
            name=cfg.name,
            base_url=cfg.base_url,
            api_key=cfg.api_key,
            dialect=dialect,
            client=client,
            reasoning_store=store,
            extra_headers=dict(cfg.headers),
            static_models=cfg.models,
            max_event_bytes=max_event_bytes,
        )
        if cfg.messages_base_url:
            auth = {"x-api-key": cfg.api_key} if cfg.api_key else {}
            provider.messages_api = MessagesPassthrough(
                name=cfg.name,
                base_url=cfg.messages_base_url,
                headers={**auth, "anthropic-version": DEFAULT_API_VERSION, **dict(cfg.headers)},
                client=client,
                secret=cfg.api_key,
                max_event_bytes=max_event_bytes,
            )
    return providers

"""Building the configured providers (see ``config.py`` for which ones are configured)."""

from __future__ import annotations

from gophergate.gateway.reasoning_store import ReasoningStore
from gophergate.providers.base import Provider
from gophergate.providers.config import ProviderConfig
from gophergate.providers.gemini import GeminiProvider, SignatureStore
from gophergate.providers.http_client import UpstreamClient
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.provider import OpenAICompatProvider, OpenAIProvider


def build_providers(
    configs: list[ProviderConfig], client: UpstreamClient, store: ReasoningStore
) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    signatures: SignatureStore | None = None  # one per process, shared by every Gemini call
    for cfg in configs:
        if cfg.dialect == "gemini":
            if signatures is None:
                signatures = SignatureStore()
            providers[cfg.name] = GeminiProvider(
                name=cfg.name,
                base_url=cfg.base_url,
                api_key=cfg.api_key or "",
                client=client,
                store=signatures,
                extra_headers=dict(cfg.headers),
                static_models=cfg.models,
            )
            continue
        dialect = get_dialect(cfg.dialect)
        cls = OpenAIProvider if dialect.responses_api else OpenAICompatProvider
        providers[cfg.name] = cls(
            name=cfg.name,
            base_url=cfg.base_url,
            api_key=cfg.api_key,
            dialect=dialect,
            client=client,
            reasoning_store=store,
            extra_headers=dict(cfg.headers),
            static_models=cfg.models,
        )
    return providers

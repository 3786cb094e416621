"""The OpenAI-compatible providers as data: where they live, how they authenticate, which dialect they speak."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompatSpec:
    name: str
    dialect: str
    default_base_url: str
    key_env: str | None
    base_url_env: str
    key_required: bool = True
    # Path prefix between the SDK-style base URL and the OpenAI paths (Ollama's compat API sits under /v1).
    api_prefix: str = ""
    # Where the provider's Anthropic-compatible Messages API lives, relative to its host (the base URL without a
    # trailing /v1): /v1/messages requests to its models pass through there instead of being translated.
    messages_path: str | None = None


BUILTIN_SPECS: dict[str, CompatSpec] = {
    spec.name: spec
    for spec in (
        CompatSpec("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
        CompatSpec(
            "deepseek",
            "deepseek",
            "https://api.deepseek.com",
            "DEEPSEEK_API_KEY",
            "DEEPSEEK_BASE_URL",
            messages_path="/anthropic",
        ),
        CompatSpec("xai", "xai", "https://api.x.ai/v1", "XAI_API_KEY", "XAI_BASE_URL"),
        CompatSpec(
            "moonshot",
            "moonshot",
            "https://api.moonshot.ai/v1",
            "MOONSHOT_API_KEY",
            "MOONSHOT_BASE_URL",
            messages_path="/anthropic",
        ),
        CompatSpec(
            "ollama",
            "ollama",
            "http://localhost:11434",
            "OLLAMA_API_KEY",
            "OLLAMA_BASE_URL",
            key_required=False,
            api_prefix="/v1",
        ),
    )
}

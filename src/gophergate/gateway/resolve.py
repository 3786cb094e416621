"""Model -> provider resolution, from in-memory tables only.

Order: a ``provider/model`` prefix naming a configured provider; the alias map; models a provider declares
(custom upstreams' ``models``); the name-pattern table. A model that resolves to no configured provider is a
404 ``model_not_found``: never a silent fallback to another provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gophergate.errors import ModelNotFound

# (prefix, provider) in match order; the registry (pricing issue) takes precedence over this table.
NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("deepseek-", "deepseek"),
    ("grok-", "xai"),
    ("kimi-", "moonshot"),
    ("moonshot-", "moonshot"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("models/gemini-", "gemini"),  # Gemini's own spelling of its model ids
)

_MAX_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str  # the id sent upstream


def pattern_provider(model: str) -> str | None:
    lowered = model.lower()
    for prefix, provider in NAME_PATTERNS:
        if lowered.startswith(prefix):
            return provider
    return None


class Resolver:
    def __init__(
        self,
        providers: frozenset[str],
        aliases: Mapping[str, str],
        declared: Mapping[str, str],
    ) -> None:
        self._providers = providers
        self._aliases = dict(aliases)
        self._declared = dict(declared)  # bare model id -> provider
        self._cache: dict[str, Route] = {}

    def resolve(self, requested: str) -> Route:
        route = self._cache.get(requested)
        if route is not None:
            return route
        route = self._resolve(requested, depth=0)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[requested] = route
        return route

    def _resolve(self, requested: str, depth: int) -> Route:
        if "/" in requested:
            prefix, rest = requested.split("/", 1)
            if prefix in self._providers and rest:
                return Route(prefix, rest)
        alias = self._aliases.get(requested)
        if alias is not None and depth < 4:
            return self._resolve(alias, depth + 1)
        provider = self._declared.get(requested)
        if provider is None:
            provider = pattern_provider(requested)
        if provider is None:
            raise ModelNotFound(
                f"The model '{requested}' does not exist or is not served by this gateway.", param="model"
            )
        if provider not in self._providers:
            raise ModelNotFound(
                f"The model '{requested}' belongs to provider '{provider}', which is not configured on this gateway.",
                param="model",
            )
        return Route(provider, requested)

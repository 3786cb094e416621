"""Model -> provider resolution, from in-memory tables only.

Order: a ``provider/model`` prefix naming a configured provider; the alias map; models a provider declares
(custom upstreams' ``models``); the model registry (the configured provider it lists the model under,
canonical providers first); the name-pattern table. A model that resolves to no configured provider is a
404 ``model_not_found``: never a silent fallback to another provider.

Each route carries the model's registry entry and price, so the request path prices without a lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gophergate.core.errors import ModelNotFound
from gophergate.pricing.catalog import LAST_RESORT, PROVIDER_IDS, ModelEntry
from gophergate.pricing.cost import ModelPrice
from gophergate.pricing.pricebook import PriceBook

if TYPE_CHECKING:
    from gophergate.gateway.router import Group

# (prefix, provider) in match order; the registry (pricing issue) takes precedence over this table.
NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("text-embedding-", "openai"),
    ("deepseek-", "deepseek"),
    ("grok-", "xai"),
    ("kimi-", "moonshot"),
    ("moonshot-", "moonshot"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("models/gemini-", "gemini"),  # Gemini's own spelling of its model ids
)

_MAX_CACHE = 4096  # keys are model names of at most 300 characters (validate.py), so this bounds bytes too


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str  # the id sent upstream
    price: ModelPrice | None = None  # None: no known price
    entry: ModelEntry | None = None  # the registry's entry, when it has one
    # A model group (or a plain name under [routing]'s retries/fallbacks): the request is routed over its targets
    # (gateway/router.py); provider and model are then the group's first target's, for what needs one up front.
    group: Group | None = None
    served_by: bytes = b""  # "provider/model", the x-gophergate-served-by value

    def __post_init__(self) -> None:
        if not self.served_by:
            object.__setattr__(self, "served_by", f"{self.provider}/{self.model}".encode())


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
        book: PriceBook | None = None,
        groups: Mapping[str, Group] | None = None,
        plain: Callable[[str], Group] | None = None,
    ) -> None:
        self._providers = providers
        self.groups = dict(groups or {})
        self._plain = plain  # [routing] retries/fallbacks: every plain name is routed as a one-target group
        self._aliases = dict(aliases)
        self._declared = dict(declared)  # bare model id -> provider
        self._cache: dict[str, Route] = {}
        self._targets: dict[str, Route] = {}  # group targets (bounded by the configuration)
        self._windows: dict[int, tuple[Group, int | None]] = {}
        self.book = book or PriceBook(None)
        self._by_registry_id: dict[str, str] = {}
        self._index_registry_ids()

    def _index_registry_ids(self) -> None:
        """models.dev provider id -> the configured gateway provider it stands for."""
        index: dict[str, str] = {}
        for name, registry_id in (*PROVIDER_IDS.items(), *LAST_RESORT.items(), *self.book.registry_providers.items()):
            if name in self._providers:
                index.setdefault(registry_id, name)
        self._by_registry_id = index

    def with_book(self, book: PriceBook) -> Resolver:
        """A resolver for the same providers with another price book (a new registry copy or new overrides):
        routes and prices are looked up afresh."""
        return Resolver(self._providers, self._aliases, self._declared, book, self.groups, self._plain)

    def resolve(self, requested: str) -> Route:
        """A client's model name: a model group first, else one model (routed as a group under [routing]'s
        retries or fallbacks)."""
        route = self._cache.get(requested)
        if route is not None:
            return route
        group = self.groups.get(requested)
        if group is None and self._plain is not None:
            group = self._plain(requested)
        if group is not None:
            first = self._first_target(group)
            route = Route(first.provider, first.model, first.price, first.entry, group, first.served_by)
        else:
            route = self._resolve(requested, depth=0)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[requested] = route
        return route

    def resolve_target(self, name: str) -> Route:
        """A group's target or fallback: a model name resolved as a client's would be, but never to a group."""
        route = self._targets.get(name)
        if route is None:
            route = self._targets[name] = self._resolve(name, depth=0)
        return route

    def smallest_window(self, group: Group) -> int | None:
        """The smallest context window of the group's targets (rules' too) and fallbacks; None when none is
        known. Worked out once per group and resolver."""
        cached = self._windows.get(id(group))
        if cached is not None and cached[0] is group:
            return cached[1]
        windows = []
        for name in (*(t.model for rule in group.rules for t in rule.targets), *group.targets_and_fallbacks):
            try:
                entry = self.resolve_target(name).entry
            except ModelNotFound:
                continue
            if entry is not None and entry.context_window:
                windows.append(entry.context_window)
        window = min(windows, default=None)
        if len(self._windows) >= _MAX_CACHE:
            self._windows.clear()
        self._windows[id(group)] = (group, window)
        return window

    def _first_target(self, group: Group) -> Route:
        """The first target of the group that resolves (404 naming the group when none does)."""
        if group.name is None:  # a plain name: its own error when it is served by no provider
            return self.resolve_target(group.targets[0].model)
        for name in (*(t.model for t in group.targets), *group.fallbacks):
            try:
                return self.resolve_target(name)
            except ModelNotFound:
                continue
        raise ModelNotFound(
            f"None of the targets of the model group '{group.name}' is served by this gateway.", param="model"
        )

    def _resolve(self, requested: str, depth: int) -> Route:
        if "/" in requested:
            prefix, rest = requested.split("/", 1)
            if prefix in self._providers and rest:
                return self._priced(prefix, rest)
        alias = self._aliases.get(requested)
        if alias is not None and depth < 4:
            return self._resolve(alias, depth + 1)
        provider = self._declared.get(requested)
        if provider is None:
            provider = self._registry_provider(requested)
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
        return self._priced(provider, requested)

    def _registry_provider(self, model: str) -> str | None:
        catalog = self.book.catalog
        if catalog is None:
            return None
        for registry_id in catalog.providers_for(model):
            provider = self._by_registry_id.get(registry_id)
            if provider is not None:
                return provider
        return None

    def _priced(self, provider: str, model: str) -> Route:
        priced = self.book.lookup(provider, model)
        return Route(provider, model, priced.price, priced.entry)

from __future__ import annotations

import orjson
import pytest

from gophergate.core.errors import ModelNotFound
from gophergate.gateway.resolve import Resolver, Route
from gophergate.pricing.catalog import Catalog
from gophergate.pricing.pricebook import PriceBook
from tests.support import MINI_REGISTRY

ALL = frozenset({"openai", "deepseek", "xai", "moonshot", "ollama"})


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o", "openai"),
        ("o1-preview", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("deepseek-flash", "deepseek"),
        ("grok-4.3", "xai"),
        ("kimi-k3", "moonshot"),
        ("moonshot-v1-8k", "moonshot"),
    ],
)
def test_name_patterns(model: str, provider: str) -> None:
    assert Resolver(ALL, {}, {}).resolve(model) == Route(provider, model)


def test_prefix_wins_over_pattern_and_strips_only_the_provider() -> None:
    r = Resolver(ALL, {}, {})
    assert r.resolve("ollama/gpt-oss:20b") == Route("ollama", "gpt-oss:20b")
    assert r.resolve("openai/org/model") == Route("openai", "org/model")


def test_prefix_of_unconfigured_provider_is_not_a_route() -> None:
    with pytest.raises(ModelNotFound):
        Resolver(frozenset({"openai"}), {}, {}).resolve("mistral/large")


def test_alias_before_declared_and_patterns() -> None:
    r = Resolver(ALL, {"gpt-4o": "deepseek/deepseek-flash", "chain": "gpt-4o"}, {"house": "ollama"})
    assert r.resolve("gpt-4o") == Route("deepseek", "deepseek-flash")
    assert r.resolve("chain") == Route("deepseek", "deepseek-flash")
    assert r.resolve("house") == Route("ollama", "house")


@pytest.mark.parametrize("model", ["claude-sonnet-4", "gemini-2.5-pro", "gpt-4o"])
def test_known_family_of_unconfigured_provider_is_model_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        Resolver(frozenset({"deepseek"}), {}, {}).resolve(model)
    assert info.value.code == "model_not_found" and info.value.status == 404


def test_unknown_model_never_falls_back() -> None:
    with pytest.raises(ModelNotFound):
        Resolver(ALL, {}, {}).resolve("llama-3-70b")


# -- the registry step --------------------------------------------------------------------------------------


def _book() -> PriceBook:
    body = MINI_REGISTRY.read_bytes()
    return PriceBook(Catalog.from_document(orjson.loads(body), source="mini", body=body))


def test_registry_routes_a_bare_model_to_the_configured_provider_that_lists_it() -> None:
    resolver = Resolver(frozenset({"openai", "moonshot", "ollama"}), {}, {}, _book())
    # gpt-oss:120b matches no name pattern; the registry lists it under ollama-cloud only.
    route = resolver.resolve("gpt-oss:120b")
    assert (route.provider, route.model) == ("ollama", "gpt-oss:120b")
    # kimi-k2.6 is listed by moonshotai (canonical) and resellers: the canonical one is configured.
    assert resolver.resolve("kimi-k2.6").provider == "moonshot"


def test_registry_step_skips_providers_that_are_not_configured() -> None:
    # Only ollama is configured: deepseek-v4-flash is listed by deepseek (not configured) and ollama-cloud.
    resolver = Resolver(frozenset({"ollama"}), {}, {}, _book())
    route = resolver.resolve("deepseek-v4-flash")
    assert route.provider == "ollama"
    # ...and its price is still deepseek's canonical one (ollama-cloud has none).
    assert route.entry is not None and route.entry.provider_id == "deepseek"
    assert route.price is not None


def test_routes_carry_price_and_entry_and_unknown_models_have_none() -> None:
    resolver = Resolver(frozenset({"openai", "moonshot"}), {}, {}, _book())
    route = resolver.resolve("gpt-4o-2024-08-06")
    assert route.entry is not None and route.price is not None
    assert route.price.source.startswith("models.dev:")
    unknown = resolver.resolve("kimi-k3")  # name pattern: moonshot; not in the registry
    assert unknown.provider == "moonshot" and unknown.entry is None and unknown.price is None


def test_resolver_with_a_new_price_book_prices_afresh_and_leaves_the_old_one_unchanged() -> None:
    resolver = Resolver(frozenset({"openai"}), {}, {})
    assert resolver.resolve("gpt-4o").price is None
    priced = resolver.with_book(_book())
    assert priced.resolve("gpt-4o").price is not None
    assert resolver.resolve("gpt-4o").price is None  # a snapshot in use by requests is never changed

"""Registry lookup: deterministic, canonical before resellers, versioned ids fall back to their base."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from gophergate.pricing.catalog import Catalog, CatalogError, model_bases, parse_prices, to_decimal
from tests.support import MINI_REGISTRY, TRIMMED_REGISTRY


def load(path: Path) -> Catalog:
    body = path.read_bytes()
    return Catalog.from_document(orjson.loads(body), source=str(path), body=body)


@pytest.fixture(scope="module")
def mini() -> Catalog:
    return load(MINI_REGISTRY)


@pytest.fixture(scope="module")
def real() -> Catalog:
    return load(TRIMMED_REGISTRY)


def found(catalog: Catalog, provider: str | None, model: str) -> tuple[str, str] | None:
    entry = catalog.lookup(provider, model)
    return None if entry is None else (entry.provider_id, entry.id)


def test_model_bases_strip_version_suffixes_longest_first() -> None:
    assert model_bases("gpt-4o-2024-08-06") == ["gpt-4o-2024-08-06", "gpt-4o"]
    assert model_bases("claude-3-5-sonnet-20241022") == ["claude-3-5-sonnet-20241022", "claude-3-5-sonnet"]
    assert model_bases("claude-3-5-sonnet@20241022") == ["claude-3-5-sonnet@20241022", "claude-3-5-sonnet"]
    assert model_bases("models/gemini-2.5-flash-preview-05-20") == [
        "models/gemini-2.5-flash-preview-05-20",
        "gemini-2.5-flash-preview-05-20",
        "gemini-2.5-flash",
    ]
    assert model_bases("gpt-4o-latest") == ["gpt-4o-latest", "gpt-4o"]
    assert model_bases("qwen3:8b") == ["qwen3:8b", "qwen3"]
    assert model_bases("gemini-1.5-pro-002") == ["gemini-1.5-pro-002", "gemini-1.5-pro"]
    assert model_bases("gpt-4o") == ["gpt-4o"]


def test_exact_id_under_the_resolved_provider_wins(mini: Catalog) -> None:
    assert found(mini, "openai", "gpt-4o-2024-08-06") == ("openai", "gpt-4o-2024-08-06")
    assert found(mini, "anthropic", "claude-3-5-sonnet-20241022") == ("anthropic", "claude-3-5-sonnet-20241022")


def test_versioned_ids_fall_back_to_their_base_entry(mini: Catalog) -> None:
    assert found(mini, "openai", "gpt-4o-2099-01-01") == ("openai", "gpt-4o")
    assert found(mini, "openai", "gpt-4o-mini-latest") == ("openai", "gpt-4o-mini")
    assert found(mini, "anthropic", "claude-sonnet-4-5-20991231") == ("anthropic", "claude-sonnet-4-5")
    assert found(mini, "gemini", "models/gemini-2.5-pro") == ("google", "gemini-2.5-pro")
    assert found(mini, "gemini", "gemini-2.5-flash-preview-05-20") == ("google", "gemini-2.5-flash")
    assert found(mini, "ollama", "gpt-oss:120b") == ("ollama-cloud", "gpt-oss:120b")


def test_canonical_provider_beats_a_reseller_listing_the_same_id(mini: Catalog) -> None:
    # ollama maps to ollama-cloud only as a last resort: deepseek's own entry (with a price) wins.
    assert found(mini, "ollama", "deepseek-v4-flash") == ("deepseek", "deepseek-v4-flash")
    # A custom upstream has no registry mapping: 302ai sorts before deepseek but is a reseller.
    entry = mini.lookup("my-proxy", "deepseek-chat")
    assert entry is not None and entry.provider_id == "deepseek"
    assert entry.prices is not None and entry.prices.base.input == Decimal("0.14")
    assert found(mini, None, "grok-4.3") == ("xai", "grok-4.3")


def test_registry_provider_of_a_custom_upstream_is_searched_first(mini: Catalog) -> None:
    entry = mini.lookup("my-proxy", "deepseek-chat", "302ai")
    assert entry is not None and entry.provider_id == "302ai"


def test_unknown_model_is_none_and_cached(mini: Catalog) -> None:
    assert mini.lookup("openai", "no-such-model-xyz") is None
    assert ("openai", "no-such-model-xyz") in mini._cache
    first = mini.lookup("openai", "gpt-4o")
    assert mini.lookup("openai", "gpt-4o") is first


def test_providers_for_lists_canonical_first(mini: Catalog) -> None:
    assert mini.providers_for("kimi-k2.6") == ("moonshotai", "aihubmix", "ollama-cloud")
    assert mini.providers_for("deepseek-chat") == ("deepseek", "302ai")
    assert mini.providers_for("nothing-here") == ()


def test_entry_carries_limits_modalities_capabilities(mini: Catalog) -> None:
    entry = mini.lookup("openai", "gpt-4o")
    assert entry is not None
    assert (entry.context_window, entry.max_output_tokens) == (128000, 16384)
    assert entry.vision and entry.tool_call and not entry.reasoning
    assert "text" in entry.output_modalities


def test_prices_are_exact_decimals_and_tiers_parsed(mini: Catalog) -> None:
    entry = mini.lookup("openai", "gpt-5.4")
    assert entry is not None and entry.prices is not None
    assert entry.prices.base.cache_read == Decimal("0.25")
    assert [(t.size, t.rates.input) for t in entry.prices.tiers] == [(272000, Decimal("5.0"))]
    assert entry.prices.rates_for(272000).input == Decimal("2.5")
    assert entry.prices.rates_for(272001).input == Decimal("5.0")


def test_entry_without_cost_has_no_price(mini: Catalog) -> None:
    entry = mini.lookup("openai", "gpt-image-1")
    assert entry is not None and entry.prices is None


def test_parse_prices_legacy_context_over_200k_and_alternate_cache_keys() -> None:
    table = parse_prices({"input": 1, "output": 2, "context_over_200k": {"input": 3, "output": 4}})
    assert table is not None and table.rates_for(200_001).output == Decimal(4)
    alt = parse_prices({"input": 0.3, "output": 1.2, "cached_input": 0.03, "cached_write": 0.375})
    assert alt is not None and (alt.base.cache_read, alt.base.cache_write) == (Decimal("0.03"), Decimal("0.375"))
    assert parse_prices({"input": 1}) is None  # no output price: not priced
    assert to_decimal(0.1) == Decimal("0.1") and to_decimal(True) is None and to_decimal("nan") is None


def test_documents_that_are_not_catalogues_are_rejected() -> None:
    for doc in ({}, [], {"x": {"models": {}}}, {"x": "y"}):
        with pytest.raises(CatalogError):
            Catalog.from_document(doc, source="t")


# -- real data: the models.dev snapshot of 2026-07-02 trimmed to these models (45 providers, 210 models) -----


def test_trimmed_snapshot_loads_every_model_it_lists(real: Catalog) -> None:
    doc = orjson.loads(TRIMMED_REGISTRY.read_bytes())
    assert real.model_count == sum(len(provider["models"]) for provider in doc.values()) == 210
    assert sorted(real.models) == sorted(doc) and len(real.models) == 45


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "gpt-4o", ("openai", "gpt-4o")),
        ("openai", "gpt-4o-2024-08-06", ("openai", "gpt-4o-2024-08-06")),
        ("openai", "gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
        ("openai", "o3-2025-04-16", ("openai", "o3")),
        ("anthropic", "claude-3-5-sonnet-20241022", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("anthropic", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5-20250929")),
        ("anthropic", "claude-opus-4-1-20990101", ("anthropic", "claude-opus-4-1")),
        ("gemini", "models/gemini-2.5-pro", ("google", "gemini-2.5-pro")),
        ("gemini", "gemini-2.5-flash-preview-09-25", ("google", "gemini-2.5-flash")),
        ("deepseek", "deepseek-chat", ("deepseek", "deepseek-chat")),
        ("ollama", "deepseek-v4-flash", ("deepseek", "deepseek-v4-flash")),
        ("ollama", "gpt-oss:120b", ("ollama-cloud", "gpt-oss:120b")),
        ("xai", "grok-4.3", ("xai", "grok-4.3")),
        ("moonshot", "kimi-k2.6", ("moonshotai", "kimi-k2.6")),
        ("my-proxy", "kimi-k2.6", ("moonshotai", "kimi-k2.6")),
    ],
)
def test_real_snapshot_lookup_table(real: Catalog, provider: str, model: str, expected: tuple[str, str]) -> None:
    assert found(real, provider, model) == expected


def test_real_snapshot_unknown_model(real: Catalog) -> None:
    assert real.lookup("openai", "definitely-not-a-model") is None


def test_real_snapshot_lists_the_maker_first_and_ollama_cloud_last(real: Catalog) -> None:
    providers = real.providers_for("kimi-k2.6")
    assert len(providers) == 16 and providers[0] == "moonshotai" and providers[-1] == "ollama-cloud"
    assert list(providers[1:-1]) == sorted(providers[1:-1])  # resellers in id order

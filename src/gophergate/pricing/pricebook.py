"""What a (provider, model) costs: overrides first, then the registry snapshot, then the offline source.

A ``PriceBook`` is immutable; when the registry refreshes or overrides change, the runtime builds a new one
and swaps it in (the resolver's route cache is cleared with it). Lookups are cached per (provider, model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gophergate.pricing.catalog import Catalog, ModelEntry, PriceTable, Rates, model_bases
from gophergate.pricing.cost import ModelPrice
from gophergate.pricing.fallback import GenaiPrices
from gophergate.pricing.overrides import PriceOverride

_CACHE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class Priced:
    entry: ModelEntry | None
    price: ModelPrice | None


class PriceBook:
    def __init__(
        self,
        catalog: Catalog | None,
        overrides: Mapping[tuple[str, str], PriceOverride] | None = None,
        *,
        fallback: GenaiPrices | None = None,
        registry_providers: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.overrides = dict(overrides or {})
        self.fallback = fallback
        self.registry_providers = dict(registry_providers or {})  # custom provider -> models.dev provider id
        self._cache: dict[tuple[str | None, str], Priced] = {}

    @property
    def source(self) -> str:
        if self.catalog is not None:
            return self.catalog.snapshot
        return self.fallback.label if self.fallback is not None else "none"

    def entry(self, provider: str | None, model: str) -> ModelEntry | None:
        if self.catalog is None:
            return None
        return self.catalog.lookup(provider, model, self.registry_providers.get(provider or ""))

    def lookup(self, provider: str | None, model: str) -> Priced:
        key = (provider, model)
        found = self._cache.get(key)
        if found is not None:
            return found
        entry = self.entry(provider, model)
        found = Priced(entry, self._price(provider, model, entry))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def price(self, provider: str | None, model: str) -> ModelPrice | None:
        return self.lookup(provider, model).price

    def _override(self, provider: str | None, model: str) -> PriceOverride | None:
        if not self.overrides:
            return None
        for base in model_bases(model):
            for key in ((provider or "", base), ("", base)):
                found = self.overrides.get(key)
                if found is not None:
                    return found
        return None

    def _base_table(self, provider: str | None, model: str, entry: ModelEntry | None) -> tuple[PriceTable | None, str]:
        if self.catalog is not None:
            return (entry.prices if entry is not None else None), self.catalog.snapshot
        if self.fallback is not None:
            return self.fallback.lookup(provider, model), self.fallback.label
        return None, "none"

    def _price(self, provider: str | None, model: str, entry: ModelEntry | None) -> ModelPrice | None:
        table, source = self._base_table(provider, model, entry)
        override = self._override(provider, model)
        if override is None:
            return ModelPrice(table, source) if table is not None else None
        changed = override.rates != Rates()
        if table is None:
            merged = PriceTable(override.rates)
        elif changed:
            # Overridden prices apply at every prompt size: the registry's tiers belong to its own prices.
            merged = PriceTable(table.base.with_overrides(override.rates))
        else:
            merged = table  # a discount alone
        if not merged.complete:
            return None
        label = f"override {override.key}" + (f" over {source}" if table is not None else "")
        return ModelPrice(merged, label, override.discount)

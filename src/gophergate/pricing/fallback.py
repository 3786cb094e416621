"""Offline prices from the ``genai-prices`` package, used only while no models.dev copy has ever been loaded.

The package's own ``calc_price`` costs ~50 us per call; here its data is read once per model and turned into
the gateway's ``PriceTable`` (cached), so requests pay a dict lookup.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from gophergate.pricing.catalog import PriceTable, Rates, Tier, model_bases

log = logging.getLogger(__name__)

# gateway provider -> genai-prices provider id
GENAI_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "gemini": "google",
    "anthropic": "anthropic",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "moonshot": "moonshotai",
}

_CACHE_LIMIT = 4096


def _split(value: Any) -> tuple[Decimal | None, list[tuple[int, Decimal]]]:
    if value is None:
        return None, []
    if isinstance(value, Decimal):
        return value, []
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if isinstance(base, Decimal) and isinstance(tiers, list):
        return base, [(int(t.start), t.price) for t in tiers if isinstance(t.price, Decimal)]
    return None, []


def table_from_model_price(price: Any) -> PriceTable | None:
    fields = {
        "input": getattr(price, "input_mtok", None),
        "output": getattr(price, "output_mtok", None),
        "cache_read": getattr(price, "cache_read_mtok", None),
        "cache_write": getattr(price, "cache_write_mtok", None),
    }
    base: dict[str, Decimal | None] = {}
    tiered: dict[int, dict[str, Decimal]] = {}
    for name, value in fields.items():
        amount, tiers = _split(value)
        base[name] = amount
        for start, tier_price in tiers:
            tiered.setdefault(start, {})[name] = tier_price
    table = PriceTable(
        Rates(base["input"], base["output"], base["cache_read"], base["cache_write"]),
        tuple(Tier(size, Rates(**rates)) for size, rates in sorted(tiered.items())),
    )
    return table if table.complete else None


class GenaiPrices:
    def __init__(self) -> None:
        try:
            self.label = f"genai-prices:{version('genai-prices')}"
        except PackageNotFoundError:  # pragma: no cover - it is a dependency
            self.label = "genai-prices"
        self._snapshot: Any = None
        self._cache: dict[tuple[str | None, str], PriceTable | None] = {}

    def warm(self) -> None:
        """Load the package's data now (~0.15 s), off the request path."""
        self._snap()

    def _snap(self) -> Any:
        if self._snapshot is None:
            from genai_prices import data_snapshot

            self._snapshot = data_snapshot.get_snapshot()
        return self._snapshot

    def lookup(self, provider: str | None, model: str) -> PriceTable | None:
        key = (provider, model)
        if key in self._cache:
            return self._cache[key]
        found = None
        try:
            found = self._lookup(provider, model)
        except Exception as exc:  # the offline source must never break a request
            log.warning("offline price lookup for %s failed: %s", model, exc)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _lookup(self, provider: str | None, model: str) -> PriceTable | None:
        snapshot = self._snap()
        provider_id = GENAI_PROVIDER_IDS.get(provider or "")
        now = dt.datetime.now(dt.UTC)
        for base in model_bases(model):
            try:
                _, info = snapshot.find_provider_model(base, None, provider_id, None)
            except LookupError:
                continue
            return table_from_model_price(info.get_prices(now))
        return None

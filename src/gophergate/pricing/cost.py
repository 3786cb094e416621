"""Cost of one request from canonical usage and a price table: pure, exact (``Decimal``), never negative.

Usage is canonical (``core/usage.py``): ``prompt`` includes cache reads and writes, ``completion``
includes reasoning. Each token is billed once, in exactly one class:

- uncached input = prompt - cache reads - cache writes, at ``input``;
- cache reads at ``cache_read`` (``input`` when the entry has no cache price: the provider did not discount);
- cache writes at ``cache_write`` (``input`` likewise);
- reasoning at ``reasoning`` where the entry has that price, else at ``output``;
- the rest of the completion at ``output``.

A prompt over a tier's size bills the whole request at that tier's prices (the providers' "cliff" model).
A discount multiplies every class.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from gophergate.core.usage import Cost, Usage
from gophergate.pricing.catalog import PriceTable

_ZERO = Decimal(0)


ZERO_COST = Cost(_ZERO, _ZERO, _ZERO, _ZERO, _ZERO)


def _per_million(tokens: int, rate: Decimal) -> Decimal:
    if tokens <= 0 or not rate:
        return _ZERO
    return (rate * tokens).scaleb(-6)


def compute_cost(usage: Usage, table: PriceTable, factor: Decimal | None = None) -> Cost:
    """``factor`` scales every class (a discount of 20% is ``Decimal('0.8')``)."""
    rates = table.rates_for(usage.prompt)
    input_rate = rates.input or _ZERO
    output_rate = rates.output or _ZERO
    cache_read = max(usage.cache_read, 0)
    cache_write = max(usage.cache_write, 0)
    # Providers report cache counts inside the prompt total; a count larger than the prompt is clamped so
    # that nothing is billed twice.
    cache_read = min(cache_read, max(usage.prompt, 0))
    cache_write = min(cache_write, max(usage.prompt - cache_read, 0))
    uncached = max(usage.prompt - cache_read - cache_write, 0)
    reasoning = min(max(usage.reasoning, 0), max(usage.completion, 0))
    visible = max(usage.completion - reasoning, 0)
    cost = Cost(
        input=_per_million(uncached, input_rate),
        cache_read=_per_million(cache_read, rates.cache_read if rates.cache_read is not None else input_rate),
        cache_write=_per_million(cache_write, rates.cache_write if rates.cache_write is not None else input_rate),
        output=_per_million(visible, output_rate),
        reasoning=_per_million(reasoning, rates.reasoning if rates.reasoning is not None else output_rate),
    )
    if factor is None or factor == 1:
        return cost
    return Cost(
        input=cost.input * factor,
        cache_read=cost.cache_read * factor,
        cache_write=cost.cache_write * factor,
        output=cost.output * factor,
        reasoning=cost.reasoning * factor,
    )


@dataclass(frozen=True, slots=True)
class Discount:
    percent: Decimal  # 0 < percent <= 100
    until: dt.datetime  # exclusive, UTC

    def factor_at(self, now: dt.datetime) -> Decimal | None:
        if now >= self.until:
            return None
        return (Decimal(100) - self.percent) / Decimal(100)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price the gateway bills one (provider, model) at, and where it came from (recorded on each row)."""

    table: PriceTable
    source: str  # e.g. "models.dev:ab12cd34ef56", "genai-prices:0.2.3", "override"
    discount: Discount | None = None

    def cost(self, usage: Usage, now: dt.datetime | None = None) -> tuple[Cost, str]:
        """The cost and the source label to record (with the discount when one applied)."""
        factor = None
        if self.discount is not None:
            factor = self.discount.factor_at(now or dt.datetime.now(dt.UTC))
        if factor is not None:
            assert self.discount is not None
            return compute_cost(usage, self.table, factor), f"{self.source}; discount {self.discount.percent}%"
        return compute_cost(usage, self.table), self.source

    def total(self, usage: Usage) -> Decimal:
        return self.cost(usage)[0].total

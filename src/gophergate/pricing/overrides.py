"""Price overrides: per-model prices and time-boxed discounts that win over the registry.

They come from the TOML file (``[prices."provider/model"]``) and from the ``price_overrides`` table (written
by ``gophergate prices set`` and, later, the dashboard). For the same key the table wins over the file. A key
is ``provider/model`` or a bare ``model`` (any provider); the most specific match wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import price_overrides
from gophergate.pricing.catalog import Rates, to_decimal
from gophergate.pricing.cost import Discount
from gophergate.settings import PriceConfig


@dataclass(frozen=True, slots=True)
class PriceOverride:
    provider: str  # "" for any provider
    model: str
    rates: Rates
    discount: Discount | None = None
    origin: str = "config"  # "config" (TOML) or "cli" (the table)

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}" if self.provider else self.model


def split_key(key: str, providers: Iterable[str] = ()) -> tuple[str, str]:
    """``openai/gpt-4o`` -> (openai, gpt-4o); a bare model -> ("", model). Only a known provider name counts as a
    prefix when ``providers`` is given, so model ids with slashes (``meta-llama/x``) stay whole."""
    if "/" in key:
        prefix, rest = key.split("/", 1)
        known = set(providers)
        if rest and (not known or prefix in known):
            return prefix, rest
    return "", key


def until_datetime(value: dt.datetime | dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def from_config(prices: Mapping[str, PriceConfig], providers: Iterable[str] = ()) -> list[PriceOverride]:
    out: list[PriceOverride] = []
    for key, cfg in prices.items():
        provider, model = split_key(key, providers)
        discount = None
        if cfg.discount_percent is not None and cfg.discount_until is not None:
            discount = Discount(cfg.discount_percent, until_datetime(cfg.discount_until))
        rates = Rates(cfg.input, cfg.output, cfg.cache_read, cfg.cache_write, cfg.reasoning)
        out.append(PriceOverride(provider, model, rates, discount, "config"))
    return out


def _row_override(row: Mapping[str, Any]) -> PriceOverride:
    discount = None
    percent = to_decimal(row["discount_percent"])
    until = row["discount_until"]
    if percent is not None and until is not None:
        discount = Discount(percent, until_datetime(until))
    rates = Rates(
        to_decimal(row["input"]),
        to_decimal(row["output"]),
        to_decimal(row["cache_read"]),
        to_decimal(row["cache_write"]),
        to_decimal(row["reasoning"]),
    )
    return PriceOverride(row["provider"] or "", row["model"], rates, discount, "cli")


async def load_overrides(engine: AsyncEngine) -> list[PriceOverride]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(price_overrides).order_by(price_overrides.c.id))).mappings().all()
    return [_row_override(dict(r)) for r in rows]


async def set_override(
    engine: AsyncEngine,
    provider: str,
    model: str,
    *,
    rates: Rates,
    discount_percent: Decimal | None = None,
    discount_until: dt.datetime | None = None,
) -> None:
    """Insert or replace the override for (provider, model)."""
    now = dt.datetime.now(dt.UTC)

    def text(value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    values = {
        "provider": provider,
        "model": model,
        "input": text(rates.input),
        "output": text(rates.output),
        "cache_read": text(rates.cache_read),
        "cache_write": text(rates.cache_write),
        "reasoning": text(rates.reasoning),
        "discount_percent": text(discount_percent),
        "discount_until": discount_until,
        "updated_at": now,
    }
    async with engine.begin() as conn:
        await conn.execute(
            delete(price_overrides).where(price_overrides.c.provider == provider, price_overrides.c.model == model)
        )
        await conn.execute(price_overrides.insert().values(**values))


async def unset_override(engine: AsyncEngine, provider: str, model: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(price_overrides).where(price_overrides.c.provider == provider, price_overrides.c.model == model)
        )
    return bool(result.rowcount)


def merge(config: list[PriceOverride], table: list[PriceOverride]) -> dict[tuple[str, str], PriceOverride]:
    merged = {(o.provider, o.model): o for o in config}
    merged.update({(o.provider, o.model): o for o in table})
    return merged

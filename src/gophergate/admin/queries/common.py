"""Shared JSON helpers of the admin queries: UTC times as ISO strings, USD as exact decimal strings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any


def utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC (SQLite hands back naive UTC datetimes)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return utc(value).isoformat().replace("+00:00", "Z")


def usd(value: Any) -> str | None:
    """An exact decimal string ("0.000123"), never a float and never an exponent."""
    if value is None:
        return None
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if amount == 0:
        return "0"
    return format(amount.normalize(), "f")

"""Putting the cost on a request record, once its tokens are final (at finalize, or after a local estimate)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from gophergate.core.record import RequestRecord
from gophergate.core.usage import Usage

if TYPE_CHECKING:
    from gophergate.core.calls import Priced

_ZERO = Decimal(0)


def record_usage(record: RequestRecord) -> Usage:
    return Usage(
        prompt=record.prompt_tokens,
        completion=record.completion_tokens,
        reasoning=record.reasoning_tokens,
        cache_read=record.cache_read_tokens,
        cache_write=record.cache_write_tokens,
        estimated=record.estimated,
    )


def bill(record: RequestRecord, priced: Priced | None = None) -> None:
    """No tokens: the request cost nothing (an error before any output, a model list). Tokens without a known
    price: cost NULL and ``price_unknown``, never a silent 0. Otherwise the exact cost and its breakdown: the one
    ``priced`` while the call ran (what the client was told) when it was for the same tokens, else computed now."""
    price = record.price
    if record.prompt_tokens <= 0 and record.completion_tokens <= 0:
        record.cost_usd = record.cost_input_usd = record.cost_cache_read_usd = _ZERO
        record.cost_cache_write_usd = record.cost_output_usd = record.cost_reasoning_usd = _ZERO
        record.price_source = price.source if price is not None else None
        record.price_unknown = False
        return
    if price is None:
        record.cost_usd = None
        record.price_unknown = True
        return
    usage = record_usage(record)
    if priced is not None and priced.usage == usage:
        cost, source = priced.cost, priced.source
    else:
        cost, source = price.cost(usage)
    record.cost_input_usd = cost.input
    record.cost_cache_read_usd = cost.cache_read
    record.cost_cache_write_usd = cost.cache_write
    record.cost_output_usd = cost.output
    record.cost_reasoning_usd = cost.reasoning
    record.cost_usd = cost.total
    record.price_source = source
    record.price_unknown = False

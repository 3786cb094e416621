"""The governance limits that teams and client keys share (issue 17): names, storage form, and the one rule that
ties two of them together (a budget has a period). Enforced on /v1 by ``gateway/governance.py``."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

PERIODS: tuple[str, ...] = ("day", "week", "month", "total")
LIMIT_COLUMNS: tuple[str, ...] = (
    "rpm",
    "tpm",
    "max_parallel",
    "budget_usd",
    "budget_period",
    "allowed_models",
    "max_tokens_cap",
)


class LimitError(ValueError):
    """A limit value that cannot be stored; ``field`` names the limit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def money(value: Any) -> str | None:
    return None if value is None else format(Decimal(str(value)), "f")


def models_list(value: Any) -> list[str]:
    if not value:
        return []
    loaded = json.loads(value) if isinstance(value, str) else value
    return [str(p) for p in loaded]


def limits_item(m: Any) -> dict[str, Any]:
    """A row's limits as the API shows them (null = unlimited, ``allowed_models`` [] = every model)."""
    return {
        "rpm": m["rpm"],
        "tpm": m["tpm"],
        "max_parallel": m["max_parallel"],
        "budget_usd": money(m["budget_usd"]),
        "budget_period": m["budget_period"],
        "allowed_models": models_list(m["allowed_models"]),
        "max_tokens_cap": m["max_tokens_cap"],
    }


def stored(values: dict[str, Any]) -> dict[str, Any]:
    """Column values from limit values: decimals as strings, model patterns as JSON text (none = NULL)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif name == "allowed_models":
            value = json.dumps(list(value)) if value else None
        out[name] = value
    return out


def settle_budget(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the budget rule to ``changes`` over ``current`` (a row's values): clearing the budget clears its period;
    a budget needs a period. Raises LimitError naming the field."""
    changes = dict(changes)
    if "budget_usd" in changes and changes["budget_usd"] is None:
        changes["budget_period"] = None
    budget = changes.get("budget_usd", current.get("budget_usd"))
    period = changes.get("budget_period", current.get("budget_period"))
    if period is not None and period not in PERIODS:
        raise LimitError("budget_period", f"must be one of {', '.join(PERIODS)}")
    if budget is not None and period is None:
        raise LimitError("budget_period", "is required with a budget (day, week, month or total)")
    if budget is None and period is not None:
        raise LimitError("budget_usd", "is required with a budget period")
    return changes

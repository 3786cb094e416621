"""The messages the hub sends, encoded once per message (every connection gets the same text).

Shapes are fixed by the dashboard contract: ``{"type": "request" | "metrics" | "event" | "ping", "data": ...}``.
A ``request`` message carries a request log row's metadata only: the columns listed in ``REQUEST_FIELDS``, plus
the client key's name (``client_key_name``, from the in-memory key cache; a name is not a secret). Bodies, error
messages (they may quote upstream text), client key secrets and provider keys are never part of it; the field list
is an allow-list, so a column added to the log later stays out until it is added here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import orjson

from gophergate.core.record import LIST_FIELDS, RequestRecord
from gophergate.core.redact import redact

EventKind = Literal[
    "provider_up",
    "provider_down",
    "config_changed",
    "registry_refreshed",
    "user_logged_in",
    "target_cooled_down",
    "target_recovered",
]
EVENT_KINDS: frozenset[str] = frozenset(
    (
        "provider_up",
        "provider_down",
        "config_changed",
        "registry_refreshed",
        "user_logged_in",
        "target_cooled_down",
        "target_recovered",
    )
)

# The request log item of GET /api/requests without the database id (a batch insert returns none).
REQUEST_FIELDS: tuple[str, ...] = LIST_FIELDS

# An application-level keep-alive: ASGI gives the app no way to send websocket ping frames.
PING = '{"type":"ping"}'


def iso(moment: dt.datetime) -> str:
    """ISO 8601 UTC with a ``Z`` (the contract's time format)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def usd(amount: Decimal | None) -> str | None:
    """Exact decimal text (never a float, never exponent notation)."""
    return None if amount is None else format(amount, "f")


def request_item(record: RequestRecord, key_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The log row's metadata. ``id`` is the database's and the writer's batch insert does not return it: the
    dashboard identifies a row by its ``request_id`` (and opens its detail by it). ``key_names`` maps client key
    ids to names (the key cache's map: no database query); an unknown key's name is None."""
    item: dict[str, Any] = {"id": None}
    for name in REQUEST_FIELDS:
        item[name] = getattr(record, name)
    item["created_at"] = iso(record.created_at)
    item["cost_usd"] = usd(record.cost_usd)
    item["latency_ms"] = round(record.latency_ms, 3)
    if record.ttfb_ms is not None:
        item["ttfb_ms"] = round(record.ttfb_ms, 3)
    key_id = record.client_key_id
    item["client_key_name"] = key_names.get(key_id) if key_names is not None and key_id is not None else None
    return item


def _encode(kind: str, data: Any) -> str:
    return orjson.dumps({"type": kind, "data": data}).decode()


def request_message(record: RequestRecord, key_names: Mapping[int, str] | None = None) -> str:
    return _encode("request", request_item(record, key_names))


def metrics_message(data: dict[str, Any]) -> str:
    return _encode("metrics", data)


def event_message(kind: EventKind, detail: dict[str, Any], instance: str | None = None) -> str:
    """``instance`` names where it happened (the instance's name; a cluster's dashboards see every instance's)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown hub event kind: {kind}")
    data: dict[str, Any] = {"kind": kind, "detail": detail, "ts": now_iso()}
    if instance is not None:
        data["instance"] = instance
    # Details are rare and may one day quote an error: redacted as a net (forms include the JSON-escaped one).
    return redact(_encode("event", data))

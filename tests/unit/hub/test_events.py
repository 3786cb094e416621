from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import orjson
import pytest

from gophergate.core.record import RequestRecord
from gophergate.hub.events import REQUEST_FIELDS, event_message, iso, request_message


def _record() -> RequestRecord:
    return RequestRecord(
        request_id="req_1",
        endpoint="chat.completions",
        started=time.perf_counter(),
        created_at=dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=dt.UTC),
        client_key_id=7,
        provider="openai",
        model="gpt-4o-mini",
        status=502,
        error_type="upstream_error",
        error_message="upstream said: invalid key sk-upstream-secret",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=Decimal("0.00000150"),
        latency_ms=12.34567,
        price_source="models.dev",
    )


def test_request_event_carries_exactly_the_log_item_fields_and_no_error_text() -> None:
    message = orjson.loads(request_message(_record()))
    assert message["type"] == "request"
    data = message["data"]
    assert list(data) == ["id", *REQUEST_FIELDS, "client_key_name"]
    assert "error_message" not in data and "sk-upstream-secret" not in orjson.dumps(message).decode()
    assert data["cost_usd"] == "0.00000150"  # exact decimal text, not a float
    assert data["created_at"] == "2026-11-26T12:00:00.123Z"
    assert data["latency_ms"] == 12.346
    assert data["id"] is None  # the batch insert does not return database ids


def test_request_event_names_its_key_from_the_key_map_and_an_unknown_key_has_no_name() -> None:
    record = _record()
    assert orjson.loads(request_message(record, {7: "billing-service"}))["data"]["client_key_name"] == "billing-service"
    assert orjson.loads(request_message(record, {8: "other"}))["data"]["client_key_name"] is None
    assert orjson.loads(request_message(record))["data"]["client_key_name"] is None
    record.client_key_id = None
    assert orjson.loads(request_message(record, {7: "billing-service"}))["data"]["client_key_name"] is None


def test_iso_converts_other_zones_to_utc_z() -> None:
    moment = dt.datetime(2026, 11, 26, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert iso(moment) == "2026-11-26T12:00:00.000Z"


def test_event_message_shape() -> None:
    message = orjson.loads(event_message("provider_down", {"provider": "openai"}))
    assert message["type"] == "event"
    assert message["data"]["kind"] == "provider_down"
    assert message["data"]["detail"] == {"provider": "openai"}
    assert message["data"]["ts"].endswith("Z")


def test_unknown_event_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        event_message("something_else", {})  # type: ignore[arg-type]

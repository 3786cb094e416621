"""Turning what a call reported (``Meter``) into the request record: tokens, estimates, timings."""

from __future__ import annotations

import time
from typing import Any

from gophergate.pricing.bill import bill
from gophergate.providers.base import Meter
from gophergate.recorder.record import PendingEstimate, RequestRecord
from gophergate.security.redact import REDACTOR


def finalize(record: RequestRecord, meter: Meter | None, messages: Any) -> None:
    """Called once, in the request's ``finally``; cheap: estimates are left to the log writer."""
    now = time.perf_counter()
    record.latency_ms = (now - record.started) * 1000.0
    if meter is not None:
        record.finish_reason = meter.finish_reason
    if record.error_message is not None or record.error_type is not None:
        _redact_texts(record)
    record.overhead_ms = record.latency_ms
    if meter is None:
        bill(record)
        return
    if meter.upstream_started is not None:
        end = meter.upstream_done or now
        record.upstream_ms = (end - meter.upstream_started) * 1000.0
        record.overhead_ms = max(record.latency_ms - record.upstream_ms, 0.0)
    if meter.first_chunk is not None:
        record.ttfb_ms = (meter.first_chunk - record.started) * 1000.0
    usage = meter.usage
    if usage is not None:
        record.prompt_tokens = usage.prompt
        record.completion_tokens = usage.completion
        record.reasoning_tokens = usage.reasoning
        record.cache_read_tokens = usage.cache_read
        record.cache_write_tokens = usage.cache_write
        record.estimated = usage.estimated
    elif meter.upstream_started is not None and (record.status < 400 or meter.output_text or meter.output_events):
        # The upstream was reached and produced (or may have produced) output but reported no usage.
        record.pending_estimate = PendingEstimate(
            messages, meter.output_text, meter.output_events, meter.output_reasoning_field
        )
    if record.pending_estimate is None:
        bill(record)  # else the log writer bills once it has estimated the tokens


def _redact_texts(record: RequestRecord) -> None:
    """A failed request's text columns may quote an upstream (and so the gateway's credentials): they are
    redacted before the row is queued. Successful rows carry no error text and are not scanned."""
    record.error_message = REDACTOR.optional(record.error_message)
    record.error_type = REDACTOR.optional(record.error_type)
    record.finish_reason = REDACTOR.optional(record.finish_reason)
    record.requested_model = REDACTOR.optional(record.requested_model)
    record.model = REDACTOR.optional(record.model)

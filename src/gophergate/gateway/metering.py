"""Turning what a call reported (``Meter``) into the request record: tokens, estimates, timings."""

from __future__ import annotations

import time
from typing import Any

from gophergate.pricing.bill import bill
from gophergate.providers.base import Meter
from gophergate.recorder.record import PendingEstimate, RequestRecord


def finalize(record: RequestRecord, meter: Meter | None, messages: Any) -> None:
    """Called once, in the request's ``finally``; cheap: estimates are left to the log writer."""
    now = time.perf_counter()
    record.latency_ms = (now - record.started) * 1000.0
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
    record.finish_reason = meter.finish_reason
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

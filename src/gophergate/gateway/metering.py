"""The metering step: it owns a request's record from the end of the request until the recorder has it.

``Metering.finish`` is called once per request, in the handler's ``finally``. It sets the timings, the status
fields' text (redacted), the tokens the call reported and the cost, then hands the recorder a finished record;
the recorder only writes and publishes. A request whose upstream reported no usage gets its tokens estimated
first, by the estimating stage here: a task that asks the tokenizer's helper process (``estimator.py``, off the
event loop) and bills the record once the estimate is in. The request's messages and the produced text wait in
that stage's own queue, beside the record; they never enter the log queue.

A cost is computed once: a provider that priced the usage for the client (``usage.cost``, ``call.priced``) left
the breakdown on the call, and the record takes it when its tokens are the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gophergate.core.calls import Meter, Priced
from gophergate.core.record import RequestRecord
from gophergate.core.redact import REDACTOR
from gophergate.gateway.estimator import Estimator
from gophergate.pricing.bill import bill
from gophergate.supervise import supervise
from gophergate.wire.chat_text import texts_from_sse

if TYPE_CHECKING:
    from gophergate.gateway.governance import Governance
    from gophergate.gateway.health import ProviderHealth
    from gophergate.recorder.writer import Recorder
    from gophergate.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

ESTIMATE_TIMEOUT = 10.0  # seconds one estimate may take before its record is logged with what was counted


@dataclass(slots=True)
class PendingEstimate:
    """What a local estimate needs: the request's input and what the call produced."""

    messages: Any  # the request's messages (chat-like)
    texts: list[str]  # produced text, when the provider had it as text
    events: list[bytes]  # the OpenAI SSE bytes a stream relayed, parsed only now
    reasoning_field: str | None = None  # an upstream's own spelling of reasoning in those payloads


def finalize(
    record: RequestRecord, meter: Meter | None, messages: Any, priced: Priced | None = None
) -> PendingEstimate | None:
    """Timings, tokens and cost from what the call reported. Returns what an estimate needs when the upstream was
    reached and produced (or may have produced) output but reported no usage; the record is billed after it."""
    now = time.perf_counter()
    record.latency_ms = (now - record.started) * 1000.0
    if meter is not None:
        record.finish_reason = meter.finish_reason
    if record.error_message is not None or record.error_type is not None:
        _redact_texts(record)
    record.overhead_ms = record.latency_ms
    if meter is None:
        bill(record)
        return None
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
        return PendingEstimate(messages, meter.output_text, meter.output_events, meter.output_reasoning_field)
    bill(record, priced)
    return None


def _redact_texts(record: RequestRecord) -> None:
    """A failed request's text columns may quote an upstream (and so the gateway's credentials): they are
    redacted before the row is queued. Successful rows carry no error text and are not scanned."""
    record.error_message = REDACTOR.optional(record.error_message)
    record.error_type = REDACTOR.optional(record.error_type)
    record.finish_reason = REDACTOR.optional(record.finish_reason)
    record.requested_model = REDACTOR.optional(record.requested_model)
    record.model = REDACTOR.optional(record.model)


async def apply_estimate(record: RequestRecord, pending: PendingEstimate, estimator: Estimator) -> None:
    """Fill in locally estimated tokens for a request whose upstream reported no usage, then bill it."""
    record.estimated = True
    texts = [t for t in pending.texts if isinstance(t, str)]
    produced = "".join(texts + texts_from_sse(pending.events, pending.reasoning_field))
    record.prompt_tokens, record.completion_tokens = await estimator.estimate(pending.messages, produced)
    bill(record)


class Metering:
    """Finishes records and passes them to the recorder; estimates tokens where they must be (see the module)."""

    def __init__(self, recorder: Recorder, health: ProviderHealth | None = None, estimator: Estimator | None = None):
        self._recorder = recorder
        self._health = health
        self._estimator = estimator or Estimator()
        self._estimating: deque[tuple[RequestRecord, PendingEstimate]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.governance: Governance | None = None  # settles each admitted request once it is billed
        self.metrics: Metrics | None = None  # counts each record once it is billed (telemetry/metrics.py)
        self.estimate_failures = 0
        self.restarts = 0  # the estimating task restarted after an exception

    # -- request path ---------------------------------------------------------------------------------------
    def finish(self, record: RequestRecord, meter: Meter | None, messages: Any, priced: Priced | None = None) -> None:
        """Never blocks: the record goes to the recorder now, or to the estimating stage first."""
        pending = finalize(record, meter, messages, priced)
        if record.trace is not None:  # tracing is on: the attempt's span (and the request's, when final) ends
            record.trace.finished(record, meter, messages)
            record.trace = None
        if meter is not None and self._health is not None:  # a provider was called
            self._health.observe(record)
        if pending is None:
            self._submit(record)
            return
        if record.admission is not None and self.governance is not None:
            self.governance.release(record)  # the request is over; its settle waits for the estimate
        estimating = self._estimating
        estimating.append((record, pending))
        if len(estimating) == 1:
            self._wakeup.set()

    def _submit(self, record: RequestRecord) -> None:
        """The record is billed: settle its limits, then hand it to the recorder."""
        if record.admission is not None and self.governance is not None:
            try:
                self.governance.settle(record)
            except Exception:
                log.exception("settling the limits of request %s failed", record.request_id)
        if self.metrics is not None:
            try:
                self.metrics.observe(record)
            except Exception:
                log.exception("counting request %s in the metrics failed", record.request_id)
        self._recorder.submit(record)

    @property
    def saturated(self) -> bool:
        """The log's backlog (estimating and queued) is past its bound: new /v1 requests are refused (503)."""
        return self._recorder.saturated_with(len(self._estimating))

    @property
    def depth(self) -> int:
        """Records not written yet: being estimated, queued, or in the batch being written."""
        return len(self._estimating) + self._recorder.depth

    @property
    def oldest_queued(self) -> dt.datetime | None:
        """Arrival time of the oldest record not yet written (the log's lag), or None when caught up."""
        heads = [self._recorder.oldest_queued, self._estimating[0][0].created_at if self._estimating else None]
        return min((t for t in heads if t is not None), default=None)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def not_ready(self) -> str | None:
        """Why records are not reaching the log (for /readyz), or None while they are."""
        if not self.running:
            return "the log's estimating stage is not running"
        return self._recorder.not_ready

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(
            supervise("estimating stage", self._run, self._restarted), name="gophergate-log-estimates"
        )

    def _restarted(self) -> None:
        self.restarts += 1

    async def close(self, drain_timeout: float = 30.0) -> None:
        """Finish the estimates in hand (each within what is left of ``drain_timeout``) and hand their records to
        the recorder; call before ``Recorder.close``."""
        self._deadline = time.monotonic() + drain_timeout
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        while self._estimating:  # the task never ran (or could not finish): log what was counted
            record, _ = self._estimating.popleft()
            self._unestimated(record)
            self._submit(record)
        await self._estimator.close()

    # -- estimating stage -------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._estimating:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            record, pending = self._estimating[0]
            await self._estimate(record, pending)
            self._estimating.popleft()
            self._submit(record)

    async def _estimate(self, record: RequestRecord, pending: PendingEstimate) -> None:
        """Estimate one record's tokens; any failure only marks that record (estimated, with what was counted)."""
        timeout = ESTIMATE_TIMEOUT
        if self._deadline is not None:
            timeout = min(timeout, max(self._deadline - time.monotonic(), 0.1))
        try:
            await asyncio.wait_for(apply_estimate(record, pending, self._estimator), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.estimate_failures += 1
            log.warning(
                "estimating the tokens of request %s failed (%s); logged as estimated with what was counted",
                record.request_id,
                type(exc).__name__,
            )
            self._unestimated(record)

    @staticmethod
    def _unestimated(record: RequestRecord) -> None:
        record.estimated = True
        try:
            bill(record)
        except Exception:
            log.exception("pricing request %s failed; logged without a cost", record.request_id)

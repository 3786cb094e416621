"""Prometheus metrics (``/metrics``), summed over the worker processes of an instance.

The request path does not call prometheus_client: ``Metrics.observe`` (the metering step's, once per finished
record) adds the record to plain counters keyed by its raw fields, about a microsecond. Once a second, and before
each scrape, ``flush`` folds those counters into prometheus_client's metrics, with bounded label values: a
provider is a configured one or ``other``, a model one the configuration names for that provider (listed by it,
declared in its configuration, or in the model registry under that exact id) or ``other``, ``none`` where the
request never got that far. Client input, key ids and costs are never labels. prometheus_client's own
``inc``/``observe`` for one request's series cost ~11 us, ~17 us once its multiprocess mode writes them to the
mmap'd files (docs/performance.md).

Several workers (``gophergate serve``): the serve command gives the workers one directory for prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: the operator's, emptied at start, else a temporary one), where
every process keeps its values in mmap'd files; whichever worker answers ``/metrics`` sums them. A worker that
exits keeps its counters there (the instance's totals never go back) and loses its gauges (``mark_process_dead``,
called by the main process). prometheus_client's process and garbage-collector collectors read only the process
that answers, so in that mode each worker writes its own figures at the flush and the scrape shows their sums
(CPU seconds of every worker the instance ran, memory and open files of the live ones).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gophergate.core.errors import ErrorClass
from gophergate.core.record import RequestRecord

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# Seconds. A chat answer takes seconds to minutes; the gateway's own share is sub-millisecond.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
TOKEN_TYPES = ("prompt", "completion", "reasoning", "cache_read", "cache_write")
ERROR_CLASSES = frozenset(get_args(ErrorClass))
OTHER = "other"
NONE = "none"

# The same bounds in milliseconds, the unit of the record's timings: the request path only bisects.
_DURATION_MS = tuple(b * 1000.0 for b in DURATION_BUCKETS)
_TTFT_MS = tuple(b * 1000.0 for b in TTFT_BUCKETS)
_OVERHEAD_MS = tuple(b * 1000.0 for b in OVERHEAD_BUCKETS)
_STATUS_CLASSES = {status: f"{status // 100}xx" for status in range(100, 600)}


class Served(Protocol):
    """What the configuration serves (``Runtime.serves``): a provider, or a model of a provider."""

    def serves(self, provider: str, model: str | None = None) -> bool: ...


class LogFigures(Protocol):
    """The request log writer's counters (``recorder/writer.py``)."""

    @property
    def written(self) -> int: ...
    @property
    def failed_batches(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def restarts(self) -> int: ...
    @property
    def price_unknown(self) -> int: ...


class MeteringFigures(Protocol):
    """The metering step's (``gateway/metering.py``): the log's backlog, and whether it makes progress."""

    @property
    def depth(self) -> int: ...
    @property
    def restarts(self) -> int: ...
    @property
    def not_ready(self) -> str | None: ...


class Refusals(Protocol):
    """Governance's count of refused requests by reason (``gateway/governance.py``)."""

    @property
    def refusals(self) -> Mapping[str, int]: ...


class RegistryFigures(Protocol):
    @property
    def age_seconds(self) -> float | None: ...
    @property
    def catalog(self) -> Any: ...


class BusFigures(Protocol):
    """What /metrics reads of the cluster bus (``cluster/bus.py``)."""

    published: int
    dropped: int
    connected: bool


class _Tally:
    """One raw key's requests since the last flush (histogram buckets in the bounds' order, then +Inf)."""

    __slots__ = (
        "attempts",
        "cache_read",
        "cache_write",
        "completion",
        "cost",
        "duration",
        "duration_ms",
        "overhead",
        "overhead_ms",
        "prompt",
        "reasoning",
        "requests",
        "ttft",
        "ttft_ms",
    )

    def __init__(self) -> None:
        self.requests = 0  # final records: the client's requests
        self.attempts = 0  # every record (a routed request has one per attempt)
        self.duration = [0] * (len(_DURATION_MS) + 1)
        self.duration_ms = 0.0
        self.ttft = [0] * (len(_TTFT_MS) + 1)
        self.ttft_ms = 0.0
        self.overhead = [0] * (len(_OVERHEAD_MS) + 1)
        self.overhead_ms = 0.0
        self.prompt = 0
        self.completion = 0
        self.reasoning = 0
        self.cache_read = 0
        self.cache_write = 0
        self.cost = 0.0


# endpoint, provider, model, status, error class, final, stream: what a record is counted under before its labels
# are bounded (at the flush, once per key).
_Key = tuple[str, str | None, str | None, int, str | None, bool, bool]


def _add_observations(child: Any, counts: list[int], total: float) -> None:
    """Add a batch of observations to a prometheus_client histogram child. It has no public call for more than one
    observation; ``_buckets`` (one value per bucket, not cumulative) and ``_sum`` are what ``observe`` updates."""
    for index, count in enumerate(counts):
        if count:
            child._buckets[index].inc(count)
    child._sum.inc(total)


class Metrics:
    """The process's metrics: ``observe`` on the request path, ``flush`` off it, ``render`` for a scrape."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.in_flight = 0  # /v1 requests being served (app.py)
        self.retries = 0  # attempts on the same target after a failure (http/routed.py)
        self.fallbacks = 0  # attempts moved to the next target after a failure (http/routed.py)
        self._tallies: dict[_Key, _Tally] = {}
        self._served: Served | None = None
        self._log: LogFigures | None = None
        self._metering: MeteringFigures | None = None
        self._refusals: Refusals | None = None
        self._registry_figures: RegistryFigures | None = None
        self._seen: dict[str, float] = {}  # the counters read from elsewhere, as last folded in
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir is not None:
            if not getattr(values.ValueClass, "_multiprocess", False):
                # prometheus_client chose its value store when first imported, before the directory was set.
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
            PlatformCollector(registry=self.registry)
            target: CollectorRegistry | None = None  # the collector reads the files; registering would repeat them
        else:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            target = self.registry
        self._build(target)

    def _build(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, mode: Literal["livesum", "livemax", "livemin"]) -> Gauge:
            return Gauge(name, doc, registry=registry, multiprocess_mode=mode)

        self._requests = counter(
            "gophergate_requests_total",
            "Requests answered (a routed request once, whatever its attempts), by status class.",
            ("endpoint", "provider", "model", "status_class"),
        )
        self._duration = Histogram(
            "gophergate_request_duration_seconds",
            "Time from a request's arrival to its end (a routed request: its last attempt's).",
            ("endpoint", "provider", "model"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._ttft = Histogram(
            "gophergate_time_to_first_token_seconds",
            "Streams: time from the request's arrival to its first chunk sent to the client.",
            ("endpoint", "provider", "model"),
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self._overhead = Histogram(
            "gophergate_overhead_seconds",
            "The gateway's own time in a request: its duration less the time spent waiting on the upstream.",
            ("endpoint",),
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self._tokens = counter(
            "gophergate_tokens_total",
            "Tokens of every attempt, as reported by the upstream or estimated.",
            ("provider", "model", "type"),
        )
        self._cost = counter(
            "gophergate_cost_usd_total",
            "Cost of every attempt, in USD (the request log's cost_usd).",
            ("provider", "model"),
        )
        self._errors = counter(
            "gophergate_upstream_errors_total", "Attempts that failed at the upstream, by class.", ("provider", "class")
        )
        self._retries = counter("gophergate_retries_total", "Attempts repeated on the same target after a failure.")
        self._fallbacks = counter("gophergate_fallbacks_total", "Attempts moved to another target after a failure.")
        self._rejections = counter(
            "gophergate_limit_rejections_total", "Requests refused by a key's or team's limits or rules.", ("reason",)
        )
        self._in_flight = gauge("gophergate_requests_in_flight", "/v1 requests being served.", "livesum")
        self._queue = gauge(
            "gophergate_log_queue_depth",
            "Request log rows waiting to be written (being estimated or queued).",
            "livesum",
        )
        self._figures: dict[str, Counter] = {
            "written": counter("gophergate_log_rows_written_total", "Request log rows written."),
            "dropped": counter(
                "gophergate_log_rows_dropped_total",
                "Request log rows not written to the table: refused by the database (dead-letter file) or lost.",
            ),
            "failed_batches": counter(
                "gophergate_log_failed_batches_total", "Log writer batches that failed and were retried."
            ),
            "dead_lettered": counter(
                "gophergate_log_dead_letter_rows_total", "Request log rows refused by the database (dead-letter file)."
            ),
            "restarts": counter(
                "gophergate_log_writer_restarts_total", "Log writer tasks restarted after an unexpected exception."
            ),
            "price_unknown": counter(
                "gophergate_price_unknown_requests_total", "Requests with tokens but no known price (cost NULL)."
            ),
        }
        self._failures = gauge(
            "gophergate_log_consecutive_failures", "Failed log write attempts since the last commit.", "livemax"
        )
        self._ready = gauge(
            "gophergate_log_ready",
            "Whether the request log makes progress in every worker (0: /readyz fails).",
            "livemin",
        )
        self._registry_age = gauge(
            "gophergate_registry_age_seconds",
            "Seconds since the model registry was last checked (NaN: never).",
            "livemax",
        )
        self._registry_models = gauge(
            "gophergate_registry_models", "Models in the loaded registry copy (0: offline prices).", "livemax"
        )
        self._target = registry
        self.bus: BusFigures | None = None  # with GOPHERGATE_REDIS_URL: ``attach_bus``
        self._process: _ProcessFigures | None = None
        if self.multiprocess_dir is not None:
            self._process = _ProcessFigures(registry)

    def attach_bus(self, bus: BusFigures) -> None:
        """The cluster bus's figures (with GOPHERGATE_REDIS_URL only: without it these metrics do not exist)."""
        registry = self._target
        self._bus_published = Counter(
            "gophergate_cluster_messages_published_total",
            "Live hub and change messages handed to Redis.",
            registry=registry,
        )
        self._bus_dropped = Counter(
            "gophergate_cluster_messages_dropped_total",
            "Live hub and change messages dropped: the queue to Redis was full or Redis did not answer.",
            registry=registry,
        )
        self._bus_connected = Gauge(
            "gophergate_cluster_connected",
            "1 while every worker is subscribed to the cluster bus on Redis, 0 while one cannot reach it.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.bus = bus

    def attach(
        self,
        served: Served,
        log_figures: LogFigures,
        metering: MeteringFigures,
        refusals: Refusals,
        registry: RegistryFigures,
    ) -> None:
        """Where the labels are bounded against and the figures read from (the runtime's parts)."""
        self._served = served
        self._log = log_figures
        self._metering = metering
        self._refusals = refusals
        self._registry_figures = registry

    # -- request path ---------------------------------------------------------------------------------------------
    def observe(self, record: RequestRecord) -> None:
        """Count a finished (billed) record: once per record, never raises for a record's values."""
        key = (
            record.endpoint,
            record.provider,
            record.model,
            record.status,
            record.error_class,
            record.final,
            record.stream,
        )
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        tally.attempts += 1
        if record.final:
            tally.requests += 1
            latency = record.latency_ms
            tally.duration[bisect_left(_DURATION_MS, latency)] += 1
            tally.duration_ms += latency
            overhead = record.overhead_ms
            if overhead is not None:
                tally.overhead[bisect_left(_OVERHEAD_MS, overhead)] += 1
                tally.overhead_ms += overhead
            first = record.ttfb_ms
            if first is not None and record.stream:
                tally.ttft[bisect_left(_TTFT_MS, first)] += 1
                tally.ttft_ms += first
        tally.prompt += record.prompt_tokens
        tally.completion += record.completion_tokens
        tally.reasoning += record.reasoning_tokens
        tally.cache_read += record.cache_read_tokens
        tally.cache_write += record.cache_write_tokens
        cost = record.cost_usd
        if cost is not None:
            tally.cost += float(cost)

    def attempted_again(self, same_target: bool) -> None:
        """A routed request's next attempt after a failure: a retry (same target) or a fallback."""
        if same_target:
            self.retries += 1
        else:
            self.fallbacks += 1

    # -- off the request path -------------------------------------------------------------------------------------
    def labels(self, provider: str | None, model: str | None) -> tuple[str, str]:
        """Bounded provider and model label values (see the module)."""
        served = self._served
        if provider is None:
            return NONE, NONE
        try:
            if served is None or not served.serves(provider):
                return OTHER, OTHER
            if model is None:
                return provider, NONE
            return provider, model if served.serves(provider, model) else OTHER
        except Exception:  # a lookup that fails costs the label, never the count
            log.exception("bounding the metric labels of %r failed", provider)
            return OTHER, OTHER

    def flush(self) -> None:
        """Fold the tally and the figures read from the runtime's parts into the prometheus metrics."""
        tallies, self._tallies = self._tallies, {}
        bounded: dict[tuple[str | None, str | None], tuple[str, str]] = {}
        for (endpoint, provider, model, status, error_class, _, _), tally in tallies.items():
            names = bounded.get((provider, model))
            if names is None:
                names = bounded[(provider, model)] = self.labels(provider, model)
            p, m = names
            if tally.requests:
                status_class = _STATUS_CLASSES.get(status, OTHER)
                self._requests.labels(endpoint, p, m, status_class).inc(tally.requests)
                _add_observations(self._duration.labels(endpoint, p, m), tally.duration, tally.duration_ms / 1000.0)
                if any(tally.overhead):
                    _add_observations(self._overhead.labels(endpoint), tally.overhead, tally.overhead_ms / 1000.0)
                if any(tally.ttft):
                    _add_observations(self._ttft.labels(endpoint, p, m), tally.ttft, tally.ttft_ms / 1000.0)
            if error_class is not None:
                kind = error_class if error_class in ERROR_CLASSES else OTHER
                self._errors.labels(p, kind).inc(tally.attempts)
            tokens = (tally.prompt, tally.completion, tally.reasoning, tally.cache_read, tally.cache_write)
            for kind, count in zip(TOKEN_TYPES, tokens, strict=True):
                if count:
                    self._tokens.labels(p, m, kind).inc(count)
            if tally.cost:
                self._cost.labels(p, m).inc(tally.cost)
        self._fold("retries", self.retries, self._retries)
        self._fold("fallbacks", self.fallbacks, self._fallbacks)
        self._in_flight.set(self.in_flight)
        self._read_figures()
        if self._process is not None:
            self._process.sample()

    def _fold(self, name: str, total: float, counter: Counter) -> None:
        """Add what a counter kept elsewhere gained since the last flush."""
        gained = total - self._seen.get(name, 0.0)
        if gained > 0:
            counter.inc(gained)
            self._seen[name] = total

    def _read_figures(self) -> None:
        log_figures, metering, refusals, registry = self._log, self._metering, self._refusals, self._registry_figures
        if log_figures is not None:
            figures = self._figures
            self._fold("written", log_figures.written, figures["written"])
            self._fold("dropped", log_figures.dead_lettered + log_figures.lost, figures["dropped"])
            self._fold("failed_batches", log_figures.failed_batches, figures["failed_batches"])
            self._fold("dead_lettered", log_figures.dead_lettered, figures["dead_lettered"])
            restarts = log_figures.restarts + (metering.restarts if metering is not None else 0)
            self._fold("restarts", restarts, figures["restarts"])
            self._fold("price_unknown", log_figures.price_unknown, figures["price_unknown"])
            self._failures.set(log_figures.consecutive_failures)
        if metering is not None:
            self._queue.set(metering.depth)
            self._ready.set(0 if metering.not_ready else 1)
        if refusals is not None:
            for reason, count in list(refusals.refusals.items()):
                self._fold(f"refused:{reason}", count, self._rejections.labels(reason))
        bus = self.bus
        if bus is not None:
            self._fold("bus_published", bus.published, self._bus_published)
            self._fold("bus_dropped", bus.dropped, self._bus_dropped)
            self._bus_connected.set(1 if bus.connected else 0)
        if registry is not None:
            age = registry.age_seconds
            self._registry_age.set(age if age is not None else float("nan"))
            catalog = registry.catalog
            self._registry_models.set(catalog.model_count if catalog is not None else 0)

    async def run(self) -> None:
        """Flush now (the gauges start at 0: ``gophergate_log_ready`` would read "not ready"), then every
        ``FLUSH_SECONDS`` (a background task of the runtime, started once the log is)."""
        while True:
            try:
                self.flush()
            except Exception:
                log.exception("folding the metrics failed")
            await asyncio.sleep(FLUSH_SECONDS)

    async def render(self) -> bytes:
        """The Prometheus text exposition: this process's tally first, then every process's values (read off the
        event loop: with several workers it reads and merges their files)."""
        self.flush()
        return await asyncio.to_thread(generate_latest, self.registry)


class _ProcessFigures:
    """Multiprocess mode: this worker's process and garbage-collector figures, written where every worker's are
    summed (prometheus_client's collectors would report only the worker that answers the scrape)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        import psutil

        self._process = psutil.Process()
        self._cpu = Counter(
            "process_cpu_seconds_total", "User and system CPU seconds of the workers.", registry=registry
        )
        self._gc_collected = Counter(
            "python_gc_objects_collected_total",
            "Objects collected by the workers' GC.",
            ["generation"],
            registry=registry,
        )
        self._gc_uncollectable = Counter(
            "python_gc_objects_uncollectable_total",
            "Uncollectable objects found by the workers' GC.",
            ["generation"],
            registry=registry,
        )
        self._gc_collections = Counter(
            "python_gc_collections_total",
            "Collections of each generation by the workers' GC.",
            ["generation"],
            registry=registry,
        )
        self._rss = Gauge(
            "process_resident_memory_bytes",
            "Resident memory of the live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._vms = Gauge(
            "process_virtual_memory_bytes",
            "Virtual memory of the live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._fds = Gauge(
            "process_open_fds",
            "Open file descriptors of the live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._max_fds = Gauge(
            "process_max_fds",
            "The smallest open-file limit of the live workers.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._start = Gauge(
            "process_start_time_seconds",
            "Start time of the oldest live worker, in Unix seconds.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._start.set(self._process.create_time())
        self._seen: dict[Any, float] = {}

    def _fold(self, key: Any, total: float, counter: Any) -> None:
        gained = total - self._seen.get(key, 0.0)
        if gained > 0:
            counter.inc(gained)
            self._seen[key] = total

    def sample(self) -> None:
        process = self._process
        with process.oneshot():
            times = process.cpu_times()
            memory = process.memory_info()
            fds = process.num_fds()
        self._fold("cpu", times.user + times.system, self._cpu)
        self._rss.set(memory.rss)
        self._vms.set(memory.vms)
        self._fds.set(fds)
        try:
            import resource

            self._max_fds.set(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        except (ImportError, OSError, ValueError):
            pass
        for generation, stats in enumerate(gc.get_stats()):
            label = str(generation)
            self._fold(("collected", label), stats["collected"], self._gc_collected.labels(label))
            self._fold(("uncollectable", label), stats["uncollectable"], self._gc_uncollectable.labels(label))
            self._fold(("collections", label), stats["collections"], self._gc_collections.labels(label))

"""Bounded queue + one background writer that inserts request records in batched transactions.

The recorder only writes and publishes: it receives finished records (tokens, estimate and cost set by the
metering step, ``gateway/metering.py``). ``submit`` never waits for the database; it first fits every value to its
column (``normalize.py``), so no value a client or an upstream sent can fail an insert.

The writer takes whatever is queued (up to ``batch_size``) at most every ``flush_interval`` and inserts it in one
transaction. A failed insert is retried with backoff and the batch is kept, so a database outage delays rows
but does not lose them. A failure that is not an outage (``is_outage``) and persists is checked with a probe (a
known-good row inserted and rolled back): if the database takes it, the batch is split in halves until the row
that fails alone is found; that row goes to the dead-letter file (``DeadLetters``) and the rows behind it are
written. If the probe fails too, the database is down after all, and the batch waits.

The writer runs under a supervisor that logs and restarts it should it ever end with an exception. ``close``
drains everything still queued before returning (graceful shutdown); if the database is still unreachable when
the drain deadline passes, the remaining rows are spilled to a JSON-lines file in the data dir (or, if that
cannot be written, in the system temp dir; if neither can, ``lost`` counts them and the process exits non-zero).
``replay_spilled`` inserts spilled rows at the next start: exactly once (a process claims a file by renaming it)
and idempotently (a row already in the table is skipped).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.record import COLUMNS, RequestRecord
from gophergate.recorder.normalize import normalize, normalize_row
from gophergate.recorder.rollup import Aggregator, aggregate
from gophergate.recorder.sink import Deltas, Sink, create_sink
from gophergate.supervise import supervise

log = logging.getLogger(__name__)

Values = tuple[Any, ...]


class Recorder:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int,
        batch_size: int,
        flush_interval: float,
        spill_dir: Path | None = None,
        stall_seconds: float = 30.0,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self._spill_dir = spill_dir
        self._fallback_dir = fallback_spill_dir(engine) if engine is not None else None
        self.dead_letters = dead_letters or DeadLetters(spill_dir, self._fallback_dir)
        self._drain_deadline: float | None = None
        self._engine = engine
        self._sink: Sink | None = None
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._stall_seconds = stall_seconds
        self._queue: deque[RequestRecord] = deque()
        self._inflight = 0  # rows of the batch being written (taken off the queue, not committed yet)
        self._wakeup = asyncio.Event()
        self._batch_ready: asyncio.Future[None] | None = None
        self._draining = False  # close() was called: the writer finishes what it has
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed_batches = 0
        self.consecutive_failures = 0  # failed insert attempts since the last commit
        self.last_error: str | None = None  # the exception class of the last failed attempt
        self._spill_lost = 0
        self.spilled = 0
        self.restarts = 0  # the writer restarted after an exception
        # Rows with tokens but no known price (cost NULL), in total and per provider/model (bounded).
        self.price_unknown = 0
        self.price_unknown_models: dict[str, int] = {}
        self.cost_total = Decimal(0)
        # Called with each committed batch (after the transaction), e.g. by the live hub; must not block.
        self.on_committed: Callable[[list[RequestRecord]], None] | None = None
        self.last_commit: float | None = None
        # Monotonic time of the last commit (or dead-lettered row), and of the last wake-up from idle: a queue that
        # has waited past both by more than stall_seconds is a writer not making progress (``not_ready``).
        self._progress_at = time.monotonic()
        self._busy_since = time.monotonic()

    # -- request path ---------------------------------------------------------------------------------------
    def submit(self, record: RequestRecord) -> None:
        """Never blocks and never drops: the bound is enforced at admission (``saturated``), not here."""
        normalize(record)
        queue = self._queue
        queue.append(record)
        if len(queue) == 1:
            self._wakeup.set()
        elif len(queue) >= self._batch_size and self._batch_ready is not None:
            _resolve(self._batch_ready)

    @property
    def saturated(self) -> bool:
        """The backlog is past its bound: new /v1 requests are refused (503) until the writer catches up."""
        return self.saturated_with(0)

    def saturated_with(self, waiting: int) -> bool:
        """``saturated``, counting ``waiting`` records still on their way to the queue (being estimated)."""
        return len(self._queue) + waiting >= self._max_queue

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Rows not written yet: queued, or in the batch being written."""
        return len(self._queue) + self._inflight

    @property
    def oldest_queued(self) -> dt.datetime | None:
        """Arrival time of the oldest record not yet written (the writer's lag), or None when caught up."""
        return self._queue[0].created_at if self._queue else None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def lost(self) -> int:
        """Rows neither written, nor spilled, nor dead-lettered: the shutdown reports them (non-zero exit)."""
        return self._spill_lost + self.dead_letters.lost

    @property
    def dead_lettered(self) -> int:
        return self.dead_letters.count

    @property
    def not_ready(self) -> str | None:
        """Why the log is not making progress (for /readyz), or None while it is."""
        if not self.running:
            return "the log writer is not running"
        if self.consecutive_failures >= FAILING_ATTEMPTS:
            return f"the last {self.consecutive_failures} log writes failed ({self.last_error})"
        if self.depth:
            idle = time.monotonic() - max(self._progress_at, self._busy_since)
            if idle > self._stall_seconds + self._flush_interval:
                return f"{self.depth} log rows queued and nothing written for {idle:.0f} s"
        return None

    def start(self) -> None:
        self._sink = create_sink(self._engine)
        self._task = asyncio.create_task(supervise("writer", self._run, self._restarted), name="gophergate-log-writer")

    def _restarted(self) -> None:
        self.restarts += 1

    async def close(self, drain_timeout: float = 30.0) -> None:
        self._drain_deadline = time.monotonic() + drain_timeout
        self._draining = True
        self._wakeup.set()
        if self._batch_ready is not None:
            _resolve(self._batch_ready)
        if self._task is not None:
            await self._task
        if self._queue:  # the writer never ran (or could not finish): keep the rows anyway
            rest = [r.values() for r in self._queue]
            self._queue.clear()
            await asyncio.to_thread(self._spill, rest)
        if self._sink is not None:
            await self._sink.close()

    # -- writer -----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._draining:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()  # set by the first row after a quiet spell, or by close()
                self._busy_since = time.monotonic()
                continue
            if not self._draining and len(self._queue) < self._batch_size:
                # Let a batch build up for at most flush_interval (a full batch goes at once). Short, frequent
                # batches keep the writer's bursts of work small, which is what the request latency tail feels
                # (1-client p99 about 3x lower at 10 ms than at 250 ms).
                loop = asyncio.get_running_loop()
                self._batch_ready = ready = loop.create_future()
                timer = loop.call_later(self._flush_interval, _resolve, ready)
                await ready
                timer.cancel()
                self._batch_ready = None
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                self._inflight = len(batch)
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # A bug, not a row or the database (both are handled in _write): keep the rows in the
                    # dead-letter file rather than drop them, then let the supervisor log and restart.
                    await self._dead_letter([r.values() for r in batch], exc)
                    raise
                finally:
                    self._inflight = 0

    def _spill(self, rows: list[Values]) -> None:
        if not rows:
            return
        for directory in (self._spill_dir, self._fallback_dir):
            if directory is None:
                continue
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path = _spill_path(directory)
                with path.open("ab") as fh:
                    fh.write(b"".join(_row_json(row) + b"\n" for row in rows))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                log.error("could not save %d request log rows in %s: %s", len(rows), directory, exc)
                continue
            self.spilled += len(rows)
            log.error("database unreachable at shutdown: %d request log rows saved to %s for replay", len(rows), path)
            return
        self._spill_lost += len(rows)
        log.error(
            "database unreachable at shutdown and no spill file could be written: %d request log rows LOST", len(rows)
        )

    async def _encode(
        self, batch: list[RequestRecord], step: int
    ) -> tuple[list[RequestRecord], list[Values], list[Values], Deltas]:
        """Rows for the driver and the batch's rollup deltas, built in slices that yield to the event loop in
        between (no long stalls). A record that cannot be encoded is dead-lettered, not the batch."""
        assert self._sink is not None
        encode = self._sink.encode
        records: list[RequestRecord] = []
        values: list[Values] = []
        rows: list[Values] = []
        rollup = Aggregator()
        for start in range(0, len(batch), step):
            chunk = []
            for record in batch[start : start + step]:
                value = record.values()
                try:
                    row = encode(value)
                except Exception as exc:
                    await self._dead_letter([value], exc)
                    continue
                if record.price_unknown:
                    self._count_unknown(record)
                elif record.cost_usd is not None:
                    self.cost_total += record.cost_usd
                records.append(record)
                values.append(value)
                rows.append(row)
                chunk.append(value)
            rollup.add(chunk)
            await asyncio.sleep(0)
        deltas: Deltas = {}
        for table, delta_rows in rollup.iter_deltas():
            deltas[table] = delta_rows
            await asyncio.sleep(0)
        return records, values, rows, self._sink.encode_deltas(deltas)

    def _count_unknown(self, record: RequestRecord) -> None:
        self.price_unknown += 1
        key = f"{record.provider}/{record.model}"
        if key in self.price_unknown_models or len(self.price_unknown_models) < 100:
            self.price_unknown_models[key] = self.price_unknown_models.get(key, 0) + 1

    async def _write(self, batch: list[RequestRecord]) -> None:
        assert self._sink is not None
        # A short backlog is written at low CPU priority (sink.py): it runs in the gaps between requests, and is
        # encoded on the loop in small slices. A long one (the writer fell behind, e.g. starved at low priority by
        # a busy event loop) and the drain at shutdown are written at normal priority, in big slices, so the log
        # always keeps up.
        pending = len(batch) + len(self._queue)
        background = not self._draining and pending < min(self._batch_size, BACKGROUND_MAX_ROWS)
        records, values, rows, deltas = await self._encode(batch, _SLICE if background else _BACKLOG_SLICE)
        if rows:
            await self._commit(records, values, rows, deltas, background=background, attempts=BATCH_ATTEMPTS)

    def _past_deadline(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() > self._drain_deadline

    async def _commit(
        self,
        records: list[RequestRecord],
        values: list[Values],
        rows: list[Values],
        deltas: Deltas | None,
        *,
        background: bool,
        attempts: int,
    ) -> None:
        """Insert ``rows`` in one transaction: retried while the database is down, split while a row is bad."""
        assert self._sink is not None
        delay = 0.1
        tries = 0
        while True:
            if self._past_deadline() and self.consecutive_failures:
                # Shutting down and the database still fails: keep the rows for the next start, with everything
                # queued behind them (one file, not one per batch).
                rest = [r.values() for r in self._queue]
                self._queue.clear()
                self._spill(values + rest)
                return
            try:
                await self._sink.insert(rows, deltas, background=background)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_batches += 1
                self.consecutive_failures += 1
                self.last_error = type(exc).__name__
                tries += 1
                outage = is_outage(exc)
                if not outage and tries >= attempts:
                    if await self._probe():
                        self.consecutive_failures = 0  # the database takes rows: these are the problem
                        if len(rows) == 1:
                            await self._dead_letter(values, exc)
                            return
                        await self._split(records, values, rows, background)
                        return
                    outage = True  # a known-good row fails too: the database, not the rows
                if self._past_deadline():
                    continue  # spilled at the top of the loop
                log.warning(
                    "writing %d request log rows failed (%s); retrying in %.1fs",
                    len(rows),
                    _error_text(exc),
                    delay,
                    exc_info=not outage,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.consecutive_failures = 0
        self.written += len(rows)
        self.last_commit = time.time()
        self._progress_at = time.monotonic()
        if self.on_committed is not None:
            try:
                self.on_committed(records)
            except Exception:  # a listener must never stop the writer
                log.exception("request log listener failed")

    async def _split(
        self, records: list[RequestRecord], values: list[Values], rows: list[Values], background: bool
    ) -> None:
        """Write each half on its own (once each: the probe just showed that the database takes rows)."""
        assert self._sink is not None
        mid = len(rows) // 2
        for part in (slice(0, mid), slice(mid, None)):
            part_values = values[part]
            deltas = self._sink.encode_deltas(aggregate(part_values))
            await self._commit(records[part], part_values, rows[part], deltas, background=background, attempts=1)

    async def _probe(self) -> bool:
        """Whether the database takes a known-good row (inserted with its rollups, then rolled back)."""
        assert self._sink is not None
        value = probe_values()
        try:
            await self._sink.probe([self._sink.encode(value)], self._sink.encode_deltas(aggregate([value])))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the database refuses a known-good request log row too (%s): waiting", _error_text(exc))
            return False
        return True

    async def _dead_letter(self, values: list[Values], exc: BaseException) -> None:
        error = _error_text(exc)
        for value in values:
            await asyncio.to_thread(self.dead_letters.write, _row_dict(value), error)
        self._progress_at = time.monotonic()


class DeadLetters:
    """The rows the database refused on their own: one JSON line each (``{"row", "error", "at"}``), in
    ``request_log_dead_letter.jsonl`` in the data dir (or the temp-dir fallback), counted and logged."""

    def __init__(self, directory: Path | None, fallback: Path | None = None) -> None:
        self._dirs = [d for d in (directory, fallback) if d is not None]
        self.count = 0
        self.lost = 0

    def write(self, row: dict[str, Any] | str, error: str) -> Path | None:
        """Append one row (a dict by column, or the raw text of an unreadable spill line); never raises."""
        line = orjson.dumps(
            {"row": row, "error": error, "at": dt.datetime.now(dt.UTC).isoformat()}, default=_json_default
        )
        request_id = row.get("request_id") if isinstance(row, dict) else None
        created = row.get("created_at") if isinstance(row, dict) else None
        for directory in self._dirs:
            path = directory / DEAD_LETTER_FILE
            try:
                directory.mkdir(parents=True, exist_ok=True)
                with path.open("ab") as fh:
                    fh.write(line + b"\n")
            except OSError as exc:
                log.error("could not write the request log dead-letter file %s: %s", path, exc)
                continue
            self.count += 1
            log.error(
                "request log row %s (created %s) was refused by the database and saved to %s: %s",
                request_id,
                created,
                path,
                error,
            )
            return path
        self.count += 1
        self.lost += 1
        log.error("request log row %s (created %s) was refused and could not be saved: LOST", request_id, created)
        return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be written now (the rows wait) rather than that a row is bad.

    SQLite's OperationalError is the database (locked, unopenable, read-only, full, no table yet); its other
    errors (IntegrityError, DataError, ProgrammingError, InterfaceError) are about the statement's values.
    On PostgreSQL a lost or refused connection, a timeout or an OS error is the database. Anything else is not
    taken as an outage, but a row is dead-lettered only after a probe row is accepted (``Recorder._probe``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError):
            return True
        if isinstance(current, (OSError, TimeoutError)):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return True
        if type(current).__module__.startswith("asyncpg") and _asyncpg_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _asyncpg_outage(exc: BaseException) -> bool:
    import asyncpg  # type: ignore[import-untyped]

    outage = (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.AdminShutdownError,
        asyncpg.UndefinedTableError,
        asyncpg.ReadOnlySQLTransactionError,
        asyncpg.DiskFullError,
    )
    return isinstance(exc, outage)


def probe_values() -> Values:
    """A row that any working database takes (written only inside a transaction that is rolled back)."""
    record = RequestRecord(request_id="gophergate-probe", endpoint="probe", started=0.0)
    return record.values()


def _error_text(exc: BaseException) -> str:
    """The exception's class and first line, without SQLAlchemy's statement and parameters (they hold row data)."""
    inner = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    name = type(inner.__cause__ or inner).__name__ if isinstance(exc, sa_exc.DBAPIError) else type(inner).__name__
    return f"{name}: {text[:300]}" if text else name


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# Up to this many rows pending, a batch is background work. A lightly loaded gateway has ~10-30 rows per 10 ms
# flush. Past it the writer catches up at normal priority: the bound keeps the backlog, and the memory it holds,
# small (about 2 MB at 64 clients).
BACKGROUND_MAX_ROWS = 256
SPILL_PREFIX = "request_log_spill_"
DEAD_LETTER_FILE = "request_log_dead_letter.jsonl"
CLAIMED = ".claimed-"
# Attempts at a batch failing with a non-outage error before it is probed and split (0.1 + 0.2 s of backoff).
BATCH_ATTEMPTS = 3
# Failed attempts in a row, with nothing committed in between, that make /readyz say not ready.
FAILING_ATTEMPTS = 3
# Longest one record's estimate may take (the helper process answers in ms; a stuck one must not hold the log).
ESTIMATE_TIMEOUT = 10.0
# Rows encoded on the loop between yields to it (~7 us a row): ~0.2 ms for a background batch, bigger for a
# backlog (fewer turns on a saturated loop).
_SLICE = 32
_BACKLOG_SLICE = 256
_ATTEMPT = COLUMNS.index("attempt")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return repr(value)


def _row_dict(value: Values) -> dict[str, Any]:
    return dict(zip(COLUMNS, value, strict=True))


def _row_json(value: Values) -> bytes:
    return orjson.dumps(_row_dict(value), default=_json_default)


def _spill_path(directory: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return directory / f"{SPILL_PREFIX}{stamp}_{os.getpid()}.jsonl"


def fallback_spill_dir(engine: AsyncEngine) -> Path:
    """The second place for spill and dead-letter files, in the system temp dir: one directory per database (named
    by a hash of its URL without the password), so that only a gateway on the same database replays them."""
    url = engine.url.render_as_string(hide_password=True)
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gophergate-spill-{digest}"


# -- replay at start ------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a claim with our own pid found at start was made by an earlier process that had it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_spills(directories: Iterable[Path]) -> list[Path]:
    """Claim every spill file not being replayed by a live process, by renaming it to ``...claimed-<our pid>``.
    The rename is atomic: of processes racing for one file exactly one succeeds; the others see it gone."""
    claimed: list[Path] = []
    for directory in directories:
        try:
            names = sorted(p.name for p in directory.iterdir() if p.name.startswith(SPILL_PREFIX))
        except OSError:
            continue
        for name in names:
            base, sep, owner = name.partition(CLAIMED)
            if not base.endswith(".jsonl"):
                continue
            if sep and (not owner.isdigit() or _pid_alive(int(owner))):
                continue  # being replayed by a live process
            target = directory / f"{base}{CLAIMED}{os.getpid()}"
            try:
                os.rename(directory / name, target)
            except FileNotFoundError:
                continue  # another process claimed it first
            except OSError as exc:
                log.error("cannot claim the request log spill file %s: %s", directory / name, exc)
                continue
            if sep:
                log.warning("reclaimed %s, left by process %s that is gone", base, owner)
            claimed.append(target)
    return claimed


async def replay_spilled(
    engine: AsyncEngine, directory: Path, *, dead_letters: DeadLetters | None = None, fallback: bool = True
) -> int:
    """Insert rows a previous process could not write at shutdown, with their rollups; returns how many were
    inserted. Looks in ``directory`` and the temp-dir fallback. A row already in the table (same request id,
    creation time and attempt) is skipped, so replaying a file twice (a crash mid-replay) adds nothing twice. A
    row the database refuses, or a line that cannot be read, is dead-lettered; if the database goes away, the file
    is handed back for the next start. Never raises for a spill file."""
    dirs = [directory] + ([fallback_spill_dir(engine)] if fallback else [])
    paths = await asyncio.to_thread(claim_spills, dirs)
    if not paths:
        return 0
    dead = dead_letters or DeadLetters(directory, dirs[-1] if fallback else None)
    sink = create_sink(engine)
    total = 0
    try:
        for path in paths:
            try:
                total += await _replay_file(engine, sink, path, dead)
            except Exception:
                log.exception("replaying %s failed; it is left for the next start", path.name)
    finally:
        await sink.close()
    return total


async def _replay_file(engine: AsyncEngine, sink: Sink, path: Path, dead: DeadLetters) -> int:
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        log.error("cannot read the request log spill file %s: %s", path, exc)
        return 0
    inserted = skipped = refused = 0
    exists_sql = _exists_sql(engine)
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            value = tuple(normalize_row(raw)[c] for c in COLUMNS)
            row = sink.encode(value)
        except Exception as exc:
            await asyncio.to_thread(dead.write, line.decode("utf-8", "replace"), f"unreadable spill line: {exc}")
            refused += 1
            continue
        try:
            async with engine.connect() as conn:
                found = (await conn.exec_driver_sql(exists_sql, (row[0], row[1], row[_ATTEMPT]))).first()
            if found is not None:
                skipped += 1
                continue
            await sink.insert([row], sink.encode_deltas(aggregate([value])))
            inserted += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):
                base = path.name.partition(CLAIMED)[0]
                await asyncio.to_thread(os.rename, path, path.with_name(base))
                log.error(
                    "database unavailable while replaying %s (%s): %d rows replayed, the rest left for the next start",
                    base,
                    _error_text(exc),
                    inserted,
                )
                return inserted
            await asyncio.to_thread(dead.write, _row_dict(value), _error_text(exc))
            refused += 1
    await asyncio.to_thread(path.unlink)
    log.warning(
        "replayed %s: %d request log rows inserted, %d already logged, %d dead-lettered",
        path.name.partition(CLAIMED)[0],
        inserted,
        skipped,
        refused,
    )
    return inserted


def _exists_sql(engine: AsyncEngine) -> str:
    """Whether a row is logged: its request id, creation time and attempt (routing writes a row per attempt, all with
    the request's id; they may share a creation time)."""
    mark = ("?", "?", "?") if engine.dialect.paramstyle == "qmark" else ("$1", "$2", "$3")
    return (
        f"SELECT 1 FROM request_log WHERE request_id = {mark[0]} AND created_at = {mark[1]} "
        f"AND attempt = {mark[2]} LIMIT 1"
    )

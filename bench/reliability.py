"""`python -m bench.reliability`: requests answered against request-log rows written, under faults.

Loopback only and bounded (a few thousand requests per scenario, 10,000 for the poison row; a few minutes in all).
Each scenario starts a fresh gateway (its own data dir and database) in front of the bench's fake upstream, sends
requests with their own ``x-request-id`` so that every answer can be matched with its row, injects one fault, and
counts. Faults are real: a signal to the gateway, a trigger in the database that refuses inserts (all of them for a
while, or one request id), a data dir and temp dir that cannot be written, two workers starting on one spill file.
Prints one markdown table (the one in docs/operations.md). SQLite by default; ``--postgres URL`` runs the same
scenarios on a fresh database created (and dropped) on that server.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.client import Connection, Endpoint, request_body
from bench.procs import (
    ManagedProcess,
    create_client_key,
    free_port,
    gateway_env,
    gophergate_executable,
    plan_cpus,
    start_fake_upstream,
    wait_for_healthz,
)

TRIGGER = "gg_bench_reject"
CONCURRENCY = 16


@dataclasses.dataclass
class Outcome:
    scenario: str
    answered: int
    rows: int
    lost: int
    dead_lettered: int
    exit_code: int | None
    note: str


class Database:
    """The scenario's database: SQLite in the work dir, or a fresh PostgreSQL database."""

    def __init__(self, work: Path, postgres: str | None) -> None:
        self.postgres = postgres
        if postgres is None:
            self.url = f"sqlite:///{work / 'db' / 'gophergate.db'}"
            (work / "db").mkdir(parents=True)
        else:
            self.name = "gg_bench_" + uuid.uuid4().hex[:10]
            self.url = postgres.rsplit("/", 1)[0] + "/" + self.name
            _pg(postgres, [f'CREATE DATABASE "{self.name}"'])

    def drop(self) -> None:
        if self.postgres is not None:
            _pg(self.postgres, [f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'])

    def execute(self, statements: list[str]) -> list[tuple[Any, ...]]:
        if self.postgres is None:
            conn = sqlite3.connect(self.url.split("///", 1)[1], timeout=60)
            try:
                rows: list[tuple[Any, ...]] = []
                for sql in statements:
                    rows = conn.execute(sql).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        return _pg(self.url, statements)

    def reject(self, condition: str) -> None:
        """Make the database refuse every request_log insert for which ``condition`` (SQL over NEW) holds."""
        if self.postgres is None:
            self.execute(
                [
                    f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON request_log WHEN {condition} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the bench'); END"
                ]
            )
            return
        self.execute(
            [
                f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by the bench'; END IF; RETURN NEW; END $$",
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON request_log FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()",
            ]
        )

    def accept(self) -> None:
        suffix = "" if self.postgres is None else " ON request_log"
        self.execute([f"DROP TRIGGER IF EXISTS {TRIGGER}{suffix}"])

    def ids(self, prefix: str) -> list[str]:
        return [r[0] for r in self.execute([f"SELECT request_id FROM request_log WHERE request_id LIKE '{prefix}%'"])]


def _pg(url: str, statements: list[str]) -> list[tuple[Any, ...]]:
    import asyncpg  # type: ignore[import-untyped]

    async def main() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            rows: list[tuple[Any, ...]] = []
            for sql in statements:
                rows = [tuple(r) for r in await conn.fetch(sql)]
            return rows
        finally:
            await conn.close()

    return asyncio.run(main())


class Gateway:
    def __init__(self, work: Path, db: Database, upstream_port: int, workers: int = 1, **extra: str) -> None:
        self.work = work
        self.data_dir = work / "data"
        self.tmp_dir = work / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.workers = workers
        self.env = gateway_env(
            upstream_port,
            self.data_dir,
            {"GOPHERGATE_DATABASE_URL": db.url, "TMPDIR": str(self.tmp_dir), **extra},
        )
        self.key = create_client_key(self.env, work)
        self.proc: ManagedProcess | None = None

    def start(self) -> Gateway:
        cmd = [gophergate_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        self.proc = ManagedProcess("gateway", cmd, self.env, self.work / f"gateway-{self.port}.log", cwd=self.work)
        wait_for_healthz(f"http://127.0.0.1:{self.port}/readyz", self.proc)
        return self

    def signal(self, signum: int) -> None:
        """SIGTERM to the serve process (Granian passes it on to its workers); SIGKILL to the process group, as a
        crash of the host or container would (a SIGKILLed main process leaves its workers serving)."""
        assert self.proc is not None
        if signum == signal.SIGKILL:
            os.killpg(self.proc.popen.pid, signum)
        else:
            self.proc.popen.send_signal(signum)

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.popen.wait(timeout_s)

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc is not None else None

    def logs(self) -> str:
        return self.proc.log_path.read_text(errors="replace") if self.proc is not None else ""

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return float("nan")


def load(gateway: Gateway, ids: list[str], stop: threading.Event | None = None) -> dict[str, int]:
    """Send one request per id (``x-request-id``), CONCURRENCY at a time; returns the status of each answered one.
    A thread stops at its first connection error (the gateway went away) or when ``stop`` is set."""
    base = Endpoint.from_url(f"http://127.0.0.1:{gateway.port}/v1", gateway.key)
    body = request_body("gpt-4o-mini", stream=False)
    answered: dict[str, int] = {}

    def worker(mine: list[str]) -> None:
        with Connection(base.host, base.port, timeout_s=30) as conn:
            for request_id in mine:
                if stop is not None and stop.is_set():
                    return
                endpoint = dataclasses.replace(base, headers={**base.headers, "x-request-id": request_id})
                try:
                    conn.send(endpoint.raw_request(body))
                    answered[request_id] = conn.read_response().status
                except Exception:
                    return

    threads = [threading.Thread(target=worker, args=(ids[i::CONCURRENCY],)) for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered


def _in_background(fn: Callable[[], dict[str, int]]) -> tuple[threading.Thread, list[dict[str, int]]]:
    out: list[dict[str, int]] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def _dead_lettered(gateway: Gateway) -> int:
    path = gateway.data_dir / "request_log_dead_letter.jsonl"
    return len(path.read_bytes().splitlines()) if path.is_file() else 0


def _count(answered: dict[str, int], written: list[str]) -> tuple[int, int]:
    rows = set(written)
    return len(rows), sum(1 for request_id in answered if request_id not in rows)


def under_signal(ctx: Context, signum: int) -> Outcome:
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGKILL"
    prefix = f"{name.lower()}-"
    gateway = ctx.gateway(name)
    thread, out = _in_background(lambda: load(gateway, [f"{prefix}{i:06d}" for i in range(200_000)]))
    time.sleep(3.0)
    depth = gateway.metric("gophergate_log_queue_depth")
    gateway.signal(signum)
    code = gateway.wait()
    thread.join()
    answered = out[0]
    rows, lost = _count(answered, ctx.db.ids(prefix))
    if signum == signal.SIGTERM:
        note = "drained at shutdown"
    else:
        note = f"lost = rows queued or in the batch being written at the kill (queue depth just before: {depth:.0f})"
    return Outcome(f"{name} under load ({CONCURRENCY} clients, 3 s)", len(answered), rows, lost, 0, code, note)


def rejecting_for_a_while(ctx: Context) -> Outcome:
    gateway = ctx.gateway("reject")
    stop = threading.Event()
    thread, out = _in_background(lambda: load(gateway, [f"reject-{i:06d}" for i in range(200_000)], stop))
    time.sleep(1.0)
    ctx.db.reject("1 = 1")
    deepest = 0.0
    for _ in range(25):  # 5 s of refusals, under load
        time.sleep(0.2)
        deepest = max(deepest, gateway.metric("gophergate_log_queue_depth"))
    failures = gateway.metric("gophergate_log_failed_batches_total")
    ctx.db.accept()
    time.sleep(1.0)
    stop.set()
    thread.join()
    gateway.signal(signal.SIGTERM)
    code = gateway.wait()
    rows, lost = _count(out[0], ctx.db.ids("reject-"))
    note = (
        f"every insert refused (trigger) for 5 s under load: {failures:.0f} failed attempts, up to {deepest:,.0f} rows "
        "waited, none dead-lettered"
    )
    return Outcome("Database refuses inserts for 5 s", len(out[0]), rows, lost, _dead_lettered(gateway), code, note)


def poison_row(ctx: Context) -> Outcome:
    gateway = ctx.gateway("poison")
    ctx.db.reject("NEW.request_id = 'poison-005000'")
    answered = load(gateway, [f"poison-{i:06d}" for i in range(10_000)])
    gateway.signal(signal.SIGTERM)
    code = gateway.wait()
    written = ctx.db.ids("poison-")
    rows, lost = _count(answered, written)
    others_lost = sum(1 for r in answered if r != "poison-005000" and r not in set(written))
    dead = _dead_lettered(gateway)
    note = f"one request id refused by a trigger; others lost: {others_lost}"
    return Outcome("Poison row among 10,000", len(answered), rows, lost, dead, code, note)


def unwritable_spill(ctx: Context) -> Outcome:
    gateway = ctx.gateway("spill", GOPHERGATE_SHUTDOWN_DRAIN_SECONDS="2")
    ctx.db.reject("1 = 1")
    answered = load(gateway, [f"spill-{i:06d}" for i in range(200)])
    for directory in (gateway.data_dir, gateway.tmp_dir):  # unusable even for root: a file where the dir was
        os.rename(directory, directory.with_name(directory.name + ".moved"))
        directory.write_text("not a directory")
    gateway.signal(signal.SIGTERM)
    code = gateway.wait()
    named = [line for line in gateway.logs().splitlines() if "rows were lost" in line]
    rows, lost = _count(answered, ctx.db.ids("spill-"))
    note = "log: " + (named[-1].split("shutdown failed: ", 1)[-1] if named else "NO LINE NAMING THE LOSS")
    return Outcome("Spill location not writable (data dir and temp dir)", len(answered), rows, lost, 0, code, note)


def two_workers_replay(ctx: Context) -> Outcome:
    gateway = ctx.gateway("replay", GOPHERGATE_SHUTDOWN_DRAIN_SECONDS="1")
    ctx.db.reject("1 = 1")
    answered = load(gateway, [f"replay-{i:06d}" for i in range(300)])
    gateway.signal(signal.SIGTERM)
    first_code = gateway.wait()
    spills = list(gateway.data_dir.glob("request_log_spill_*.jsonl"))
    spilled = sum(len(p.read_bytes().splitlines()) for p in spills)
    ctx.db.accept()
    second = Gateway(gateway.work, ctx.db, ctx.upstream_port, workers=2)
    second.env = gateway.env
    second.start()
    time.sleep(2.0)
    written = ctx.db.ids("replay-")
    code = second.stop()
    duplicates = len(written) - len(set(written))
    _, lost = _count(answered, written)
    note = (
        f"{spilled} rows spilled by the first process (exit {first_code}); "
        f"2 workers started on the file: {duplicates} duplicates"
    )
    return Outcome("Two workers replay one spill", len(answered), len(written), lost, 0, code, note)


class Context:
    def __init__(self, root: Path, postgres: str | None, upstream_port: int) -> None:
        self.root = root
        self.postgres = postgres
        self.upstream_port = upstream_port
        self.db: Database = None  # type: ignore[assignment]
        self.gateways: list[Gateway] = []

    @contextmanager
    def scenario(self, name: str) -> Iterator[None]:
        self.db = Database(self.root / name, self.postgres)
        try:
            yield
        finally:
            for gateway in self.gateways:
                gateway.stop()
            self.gateways.clear()
            self.db.drop()

    def gateway(self, name: str, **extra: str) -> Gateway:
        gateway = Gateway(self.root / name, self.db, self.upstream_port, **extra).start()
        self.gateways.append(gateway)
        return gateway


SCENARIOS: list[tuple[str, Callable[[Context], Outcome]]] = [
    ("sigterm", lambda ctx: under_signal(ctx, signal.SIGTERM)),
    ("sigkill", lambda ctx: under_signal(ctx, signal.SIGKILL)),
    ("reject", rejecting_for_a_while),
    ("poison", poison_row),
    ("spill", unwritable_spill),
    ("replay", two_workers_replay),
]


def table(outcomes: list[tuple[str, Outcome]]) -> str:
    lines = [
        "| Database | Scenario | Requests answered | Rows written | Answered without a row | Dead-lettered "
        "| Exit code | Notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for engine, o in outcomes:
        lines.append(
            f"| {engine} | {o.scenario} | {o.answered:,} | {o.rows:,} | {o.lost:,} | {o.dead_lettered} | "
            f"{o.exit_code} | {o.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="also run on PostgreSQL (a server URL; a database is created per scenario)")
    parser.add_argument("--only", action="append", choices=[name for name, _ in SCENARIOS])
    args = parser.parse_args(argv)
    engines: list[tuple[str, str | None]] = [("SQLite", None)]
    if args.postgres:
        engines.append(("PostgreSQL", args.postgres))
    outcomes: list[tuple[str, Outcome]] = []
    with tempfile.TemporaryDirectory(prefix="gg-reliability-") as root:
        upstream_port = free_port()
        upstream = start_fake_upstream(upstream_port, plan_cpus(False), Path(root) / "upstream.log")
        try:
            for engine, url in engines:
                for name, run in SCENARIOS:
                    if args.only and name not in args.only:
                        continue
                    ctx = Context(Path(root) / engine.lower(), url, upstream_port)
                    started = time.monotonic()
                    with ctx.scenario(name):
                        outcome = run(ctx)
                    print(f"{engine} {name}: {outcome} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
                    outcomes.append((engine, outcome))
        finally:
            upstream.stop()
    print(f"Measured {dt.date.today().isoformat()} with `python -m bench.reliability`:\n")
    print(table(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The request log under faults, with the real gateway process: a stuck writer turns /readyz to 503, a spill that
cannot be written in the data dir goes to the temp dir (and if that fails too the exit code says so), and two
workers replay one spill file once. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from gophergate.db.tables import ROLLUP_KEYS
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.log_faults import WriteLock, accept_sql, execute, record, reject_sql, write_spill
from tests.support import query


def _env(fake: FakeOpenAICompat, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": fake.base_url,
        "GOPHERGATE_DATABASE_URL": database_url,
        **extra,
    }


def _ask(gateway: Any, n: int) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    for i in range(n):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q {i}"}])


def _break(path: Path) -> Path:
    """Make ``path`` unusable as a directory even for root: move it away and put a file in its place."""
    moved = path.with_name(path.name + ".moved")
    os.rename(path, moved)
    path.write_text("not a directory")
    return moved


def _readyz(gateway: Any) -> httpx.Response:
    return httpx.get(gateway.url + "/readyz", timeout=5)


def _wait_status(gateway: Any, status: int, within: float = 8.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        resp = _readyz(gateway)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def test_readyz_503_when_writer_stalls(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        env = _env(fake, database_url, GOPHERGATE_LOG_STALL_SECONDS="0.5")
        gateway = make_gateway(env=env, database_url=database_url).start()
        assert _readyz(gateway).status_code == 200
        with WriteLock(database_url):  # another connection holds the write lock: inserts wait, reads answer
            _ask(gateway, 3)
            stuck = _wait_status(gateway, 503)
            assert stuck.status_code == 503, stuck.text
            body = stuck.json()
            assert body["checks"] == {"database": True, "log_writer": False}
            assert any("nothing written" in reason for reason in body["details"]["not_ready_reasons"])
            assert body["details"]["log_queue_depth"] == 3
        assert _wait_status(gateway, 200).status_code == 200  # the lock is gone: the rows go in, ready again
        assert len(gateway.wait_rows(3)) == 3


def _spill_setup(database_url: str, make_gateway: Any, fake: FakeOpenAICompat, tmp: Path) -> Any:
    tmp.mkdir()
    env = _env(fake, database_url, GOPHERGATE_SHUTDOWN_DRAIN_SECONDS="1", TMPDIR=str(tmp))
    gateway = make_gateway(env=env, database_url=database_url).start()
    execute(database_url, reject_sql(database_url, "1 = 1"))  # every insert refused: rows wait, then spill
    _ask(gateway, 10)
    return gateway


def test_spill_falls_back_to_temp_dir(database_url: str, make_gateway: Any, tmp_path: Path) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        tmp = tmp_path / "tmpdir"
        gateway = _spill_setup(database_url, make_gateway, fake, tmp)
        data = _break(gateway.data_dir)
        assert gateway.stop(signal.SIGTERM) == 0
        # One file, or two when the stop came while the writer was retrying a batch: it saves that batch, then
        # the rows queued behind it.
        spilled = list(tmp.glob("gophergate-spill-*/request_log_spill_*.jsonl"))
        assert 1 <= len(spilled) <= 2, gateway.logs()
        assert sum(len(path.read_bytes().splitlines()) for path in spilled) == 10, gateway.logs()
        saved = re.findall(r"(\d+) request log rows saved to", gateway.logs())
        assert sum(int(n) for n in saved) == 10 and len(saved) == len(spilled)
        gateway.data_dir.unlink()
        os.rename(data, gateway.data_dir)
        execute(database_url, accept_sql(database_url))
        # The next start (another gateway on the same database) finds the file in the temp dir and replays it.
        env = {k: v for k, v in gateway.env.items() if k != "GOPHERGATE_PORT"}
        again = make_gateway(env=env | {"GOPHERGATE_DATA_DIR": str(gateway.data_dir)}, database_url=database_url)
        again.start()
        assert len(again.wait_rows(10)) == 10
        assert not list(tmp.glob("gophergate-spill-*/request_log_spill_*"))


def test_unwritable_spill_exits_nonzero_naming_loss(database_url: str, make_gateway: Any, tmp_path: Path) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        tmp = tmp_path / "tmpdir"
        gateway = _spill_setup(database_url, make_gateway, fake, tmp)
        _break(gateway.data_dir)
        _break(tmp)
        code = gateway.stop(signal.SIGTERM)
        logs = gateway.logs()
        assert code != 0, logs
        assert "10 request log rows LOST" in logs and "10 request log rows were lost" in logs


def test_two_processes_replay_one_spill_without_duplicates(
    database_url: str, make_gateway: Any, tmp_path: Path
) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        env = _env(fake, database_url, GOPHERGATE_WORKERS="2")
        gateway = make_gateway(env=env, database_url=database_url)
        write_spill(
            gateway.data_dir / "request_log_spill_20261201T120000_1.jsonl",
            [record(f"s{i}", model_group="smart" if i % 2 else None) for i in range(300)],
        )
        gateway.start()
        rows = gateway.wait_rows(300)
        time.sleep(1.0)  # the other worker has started too by now (and found nothing to claim)
        rows = gateway.rows()
        assert len(rows) == 300 and len({r["request_id"] for r in rows}) == 300
        for table in ROLLUP_KEYS:
            (total,) = query(database_url, f"SELECT SUM(requests) AS n FROM {table}")
            assert int(total["n"]) == 300, table
        (grouped,) = query(database_url, "SELECT SUM(requests) AS n FROM rollup_day_model WHERE model_group <> ''")
        assert int(grouped["n"]) == 150  # the half that named a model group
        assert gateway.logs().count("300 request log rows inserted") == 1
        assert not list(gateway.data_dir.glob("request_log_spill_*"))


def test_start_never_fails_because_of_a_spill_file(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, database_url), database_url=database_url)
        spill = gateway.data_dir / "request_log_spill_20261201T120000_1.jsonl"
        write_spill(spill, [record("good"), record("odd", finish_reason="f" * 400, model="m" * 1000)])
        with spill.open("ab") as fh:
            fh.write(b'{"request_id": "cut-off", "created_at": "2026-\n')
        gateway.start()  # formerly: exit 3 at every start until the file was deleted by hand
        rows = {r["request_id"]: r for r in gateway.wait_rows(2)}
        assert set(rows) == {"good", "odd"} and len(rows["odd"]["finish_reason"]) == 50
        dead = (gateway.data_dir / "request_log_dead_letter.jsonl").read_bytes().splitlines()
        assert len(dead) == 1 and b"unreadable spill line" in dead[0]
        assert not spill.exists()

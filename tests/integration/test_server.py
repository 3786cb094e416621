"""The built-in server as `gophergate serve` runs it: worker processes, their supervisor, and the stop."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import openai
import psutil

from tests.fakes.openai_compat import FakeOpenAICompat


def _env(fake: FakeOpenAICompat, **extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake.base_url, **extra}


def _workers(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children()


def test_two_workers_serve_one_port_and_a_worker_that_dies_is_replaced(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, GOPHERGATE_WORKERS="2")).start()
        assert gateway.proc is not None
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

        def ask(i: int) -> str:
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{i}"}])
            return answer.choices[0].message.content or ""

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(list(pool.map(ask, range(40))))
        workers = _workers(gateway.proc.pid)
        assert len(workers) == 2
        assert len(gateway.wait_rows(40)) == 40

        workers[0].kill()
        deadline = time.monotonic() + 15
        replaced: list[psutil.Process] = []
        while time.monotonic() < deadline:
            replaced = [w for w in _workers(gateway.proc.pid) if w.pid != workers[0].pid and w.status() != "zombie"]
            if len(replaced) == 2:
                break
            time.sleep(0.1)
        assert len(replaced) == 2, "the dead worker was not replaced"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(list(pool.map(ask, range(20))))
        assert gateway.stop(signal.SIGTERM) == 0
        assert len(gateway.rows()) == 60
        assert not any(w.is_running() and w.status() != "zombie" for w in replaced)


def test_a_request_that_outlives_the_grace_period_is_cut_and_logged_as_a_shutdown(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        env = _env(fake, GOPHERGATE_SHUTDOWN_GRACE_SECONDS="0.5")
        gateway = make_gateway(env=env).start()
        assert gateway.proc is not None
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

        def long_stream() -> str:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "SLOW 300 " + "w " * 30}], stream=True
            )
            text = ""
            try:
                for chunk in stream:
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
            except Exception:  # the stream ends without [DONE]: the SDK may or may not complain
                pass
            return text

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(long_stream)
            time.sleep(1.5)
            started = time.monotonic()
            gateway.proc.send_signal(signal.SIGTERM)
            assert gateway.proc.wait(timeout=20) == 0
            assert time.monotonic() - started < 10
            text = future.result(timeout=10)
        assert 0 < text.count("w") < 30
        rows = gateway.rows()
        assert len(rows) == 1
        assert rows[0]["status"] == 503 and rows[0]["error_type"] == "server_shutdown"
        assert rows[0]["completion_tokens"] > 0


def test_the_app_also_runs_on_uvicorn(make_gateway: Any) -> None:
    """`gophergate.app:factory` is a plain ASGI app: another ASGI server can run it instead of the built-in one."""
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake))
        gateway.cli("migrate")
        key = gateway.create_key()
        log = gateway.log_path.open("ab")
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "gophergate.app:factory", "--port", str(gateway.port)]
        gateway.proc = subprocess.Popen(cmd, env=gateway.env, cwd=gateway.tmp_path, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(gateway.url + "/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert chunks and chunks[-1].choices[0].finish_reason == "stop"
        # uvicorn re-raises the signal once it has shut down gracefully (the lifespan drained the log).
        assert gateway.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert [row["status"] for row in gateway.rows()] == [200, 200]

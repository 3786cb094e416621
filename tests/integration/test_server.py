"""The gateway as `gophergate serve` runs it, on Granian: what the server does with heads, bodies, pipelining and
idle connections; its worker processes and their supervisor; the stop (grace, cut requests, error events);
backpressure; and the app on uvicorn instead."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

KEEPALIVE_S = 2.0  # the module gateway's keep-alive (and so header-read) timeout
BODY_TIMEOUT_S = 1.0
MAX_BODY = 4096


def _env(fake: FakeOpenAICompat, **extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake.base_url, **extra}


def _workers(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        env = _env(
            fake,
            GOPHERGATE_KEEPALIVE_TIMEOUT_SECONDS=str(KEEPALIVE_S),
            GOPHERGATE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_S),
            GOPHERGATE_MAX_BODY_BYTES=str(MAX_BODY),
        )
        gw = Gateway(tmp_path_factory.mktemp("server"), env=env).start()
        try:
            yield gw
        finally:
            gw.stop()


def _connect(gw: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _raw(gw: Gateway, data: bytes) -> bytes:
    """Send ``data`` on a new connection, read until the server closes it."""
    with _connect(gw) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _chat_head(gw: Gateway, extra: str) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {gw.key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _answer(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _openai_error(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


# -- heads ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n", 431),
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ],
    ids=["1-mib-header", "100k-headers", "100-kb-url"],
)
def test_a_head_too_large_is_refused_and_the_connection_closed(
    gateway: Gateway, request_bytes: bytes, status: int
) -> None:
    # Granian's own answer: no body (the old server's was OpenAI-style JSON); the app never sees the request.
    with _connect(gateway) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before it had read everything
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in data.lower()


def test_invalid_http_is_400_and_the_connection_closed(gateway: Gateway) -> None:
    assert _raw(gateway, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_a_head_that_does_not_arrive_in_time_is_closed_at_the_header_read_timeout(gateway: Gateway) -> None:
    with _connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        data = _read_all(sock)
        took = time.monotonic() - started
    assert data == b""  # Granian closes without an answer (the old server answered 408)
    assert KEEPALIVE_S - 0.5 < took < KEEPALIVE_S + 3


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(gateway: Gateway) -> None:
    with _connect(gateway) as sock:
        for _ in range(2):  # kept alive between answers
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert sock.recv(65536) == b""
        took = time.monotonic() - started
    assert KEEPALIVE_S - 0.5 < took < KEEPALIVE_S + 3


def test_pipelined_requests_are_answered_in_order_on_one_connection(gateway: Gateway) -> None:
    with _connect(gateway) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = _read_all(sock)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 401, 200]  # /v1 needs a key: the answers are in the order asked


def test_a_port_in_use_is_one_error_line_and_exit_1(make_gateway: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = make_gateway(env={"GOPHERGATE_PORT": str(port)})
        result = gateway.cli("serve", check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_startup_is_not_retried_and_exits_3(make_gateway: Any) -> None:
    """A worker whose startup fails is not replaced (another would fail the same way): the server exits 3."""
    gateway = make_gateway()
    gateway.cli("migrate")
    with sqlite3.connect(gateway.data_dir / "gophergate.db") as db:
        db.execute("DROP TABLE client_keys")  # the migrations are done; the startup's first read of keys fails
    started = time.monotonic()
    result = gateway.cli("serve", check=False)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("startup failed") >= 1 and "Respawning" not in result.stderr
    assert time.monotonic() - started < 30


# -- bodies -----------------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_declared_or_chunked(gateway: Gateway) -> None:
    big = b'{"x": "' + b"a" * MAX_BODY + b'"}'
    declared = _raw(gateway, _chat_head(gateway, f"Content-Length: {len(big)}\r\nConnection: close\r\n") + big)
    status, _, body = _answer(declared)
    assert status == 413 and "larger than the limit" in _openai_error(body)["message"]
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(big), big)
    sent = _chat_head(gateway, "Transfer-Encoding: chunked\r\nConnection: close\r\n") + chunked
    status, headers, body = _answer(_raw(gateway, sent))
    assert status == 413 and "larger than the limit" in _openai_error(body)["message"]
    row = gateway.row_for(headers["x-request-id"])
    assert row["status"] == 413


def test_a_body_that_never_comes_or_trickles_is_408_at_the_body_deadline(gateway: Gateway) -> None:
    for trickle in (False, True):
        with _connect(gateway) as sock:
            started = time.monotonic()
            sock.sendall(_chat_head(gateway, "Content-Length: 100\r\n"))
            if trickle:
                sock.settimeout(0.25)
                data = b""
                while not data and time.monotonic() - started < 5:
                    sock.sendall(b" ")  # a byte now and then: never a whole body
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                sock.settimeout(10)
                data += _read_all(sock)
            else:
                data = _read_all(sock)
            took = time.monotonic() - started
        status, headers, body = _answer(data)
        assert status == 408, data
        assert _openai_error(body)["message"] == f"The request body did not arrive within {BODY_TIMEOUT_S:g} s."
        assert BODY_TIMEOUT_S - 0.2 < took < BODY_TIMEOUT_S + 3
        assert gateway.row_for(headers["x-request-id"])["status"] == 408


def test_a_body_that_breaks_off_is_400_in_openai_shape(gateway: Gateway) -> None:
    """Fewer bytes than the Content-Length, then the client stops sending (a half-close): the server reports the
    body's end as a disconnect; the app answers 400, never a 500."""
    with _connect(gateway) as sock:
        sock.sendall(_chat_head(gateway, "Content-Length: 100\r\n") + b'{"model": ')
        sock.shutdown(socket.SHUT_WR)
        data = _read_all(sock)
    status, headers, body = _answer(data)
    assert status == 400
    error = _openai_error(body)
    assert error["code"] == "invalid_body" and "broke off" in error["message"]
    row = gateway.row_for(headers["x-request-id"])
    assert row["status"] == 400 and row["error_type"] == "invalid_body"


def test_the_admin_api_holds_a_body_to_the_same_size_deadline_and_framing(gateway: Gateway) -> None:
    """The dashboard's API takes its body under /v1's rules: a framework left to read it would wait for it
    without a deadline, and take one of any size."""

    def head(extra: str) -> bytes:
        login = "POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        return f"{login}{extra}\r\n".encode()

    big = b'{"username": "' + b"a" * MAX_BODY + b'"}'
    status, _, body = _answer(_raw(gateway, head(f"Content-Length: {len(big)}\r\nConnection: close\r\n") + big))
    assert status == 413 and "larger than the limit" in _openai_error(body)["message"]
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(big), big)
    status, _, body = _answer(_raw(gateway, head("Transfer-Encoding: chunked\r\nConnection: close\r\n") + chunked))
    assert status == 413
    with _connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(head("Content-Length: 100\r\n"))
        status, _, body = _answer(_read_all(sock))
        took = time.monotonic() - started
    assert status == 408 and _openai_error(body)["code"] == "request_timeout"
    assert BODY_TIMEOUT_S - 0.2 < took < BODY_TIMEOUT_S + 3
    with _connect(gateway) as sock:
        sock.sendall(head("Content-Length: 100\r\n") + b'{"username": ')
        sock.shutdown(socket.SHUT_WR)
        status, _, body = _answer(_read_all(sock))
    assert status == 400 and _openai_error(body)["code"] == "invalid_body"
    # A whole body still reaches the login (which refuses these credentials).
    login = b'{"username": "nobody", "password": "wrong-password"}'
    status, _, body = _answer(_raw(gateway, head(f"Content-Length: {len(login)}\r\nConnection: close\r\n") + login))
    assert status == 401, body


def test_expect_100_continue_is_answered_before_the_body(gateway: Gateway) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    head = _chat_head(gateway, f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n")
    with _connect(gateway) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        status, _, answer = _answer(_read_all(sock))
    assert status == 200 and b"echo: hi" in answer


# -- workers ----------------------------------------------------------------------------------------------------
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


def test_a_worker_whose_main_process_is_killed_stops_on_its_own(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake)).start()
        assert gateway.proc is not None
        [worker] = _workers(gateway.proc.pid)
        httpx.post(
            gateway.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {gateway.key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ).raise_for_status()
        gateway.proc.kill()
        gateway.proc.wait(10)
        worker.wait(10)  # not its child any more: no exit code to see
        assert len(gateway.rows()) == 1
        logs = gateway.logs()
        assert "the main process is gone; stopping" in logs
        assert "stopping: 0 requests in flight" in logs  # the app's own stop ran: a graceful one


# -- the stop ---------------------------------------------------------------------------------------------------
def _stream(client: openai.OpenAI, content: str) -> tuple[str, Exception | None]:
    """The text a stream delivered, and the error that ended it (None when it ended normally)."""
    text = ""
    try:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}], stream=True
        )
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    except Exception as exc:
        return text, exc
    return text, None


def test_sigterm_lets_requests_finish_within_the_grace_and_cuts_the_rest_with_an_answer(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        # A keep-alive setting over Granian's 30 s header-read timeout (the old default, 65) still starts: said once.
        env = _env(fake, GOPHERGATE_SHUTDOWN_GRACE_SECONDS="2", GOPHERGATE_KEEPALIVE_TIMEOUT_SECONDS="65")
        gateway = make_gateway(env=env).start()
        assert gateway.proc is not None
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

        def buffered(content: str) -> httpx.Response:
            return httpx.post(
                gateway.base_url + "/chat/completions",
                headers={"authorization": f"Bearer {gateway.key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
                timeout=30,
            )

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            quick = pool.submit(buffered, "SLOW 1500 finishes")
            slow = pool.submit(buffered, "SLOW 20000 is cut")
            stream_quick = pool.submit(_stream, client, "SLOW 100 " + "w " * 5)
            stream_slow = pool.submit(_stream, client, "SLOW 300 " + "w " * 60)
            # Connections without a request: an idle keep-alive one, and one whose head is incomplete (it would
            # hold Granian's own drain until its 30 s header-read timeout).
            idle, partial = _connect(gateway), _connect(gateway)
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
            partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(1.0)
            started = time.monotonic()
            gateway.proc.send_signal(signal.SIGTERM)
            assert idle.recv(65536) == b""  # closed at once
            assert time.monotonic() - started < 1
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no new connections once stopping
                httpx.get(gateway.url + "/healthz", timeout=2)
            assert gateway.proc.wait(timeout=20) == 0
            assert time.monotonic() - started < 8
            assert partial.recv(65536) == b""
            idle.close()
            partial.close()
            quick_answer, slow_answer = quick.result(10), slow.result(10)
            (quick_text, quick_error), (cut_text, cut_error) = stream_quick.result(10), stream_slow.result(10)

        assert quick_answer.status_code == 200 and "echo: SLOW 1500" in quick_answer.text
        assert slow_answer.status_code == 503
        assert _openai_error(slow_answer.content)["code"] == "server_shutdown"
        assert quick_error is None and quick_text.count("w") == 5
        # The cut stream's last event is an error, which the SDK raises.
        assert 0 < cut_text.count("w") < 60
        assert isinstance(cut_error, openai.APIError) and "stopped before the response was complete" in str(cut_error)
        rows = {row["request_id"]: row for row in gateway.rows()}
        assert len(rows) == 4
        cut = [row for row in rows.values() if row["error_type"] == "server_shutdown"]
        assert len(cut) == 2 and all(row["status"] == 503 for row in cut)
        assert {row["stream"] for row in cut} == {True, False}
        assert next(row for row in cut if row["stream"])["completion_tokens"] > 0
        assert sorted(row["status"] for row in rows.values()) == [200, 200, 503, 503]
        logs = gateway.logs()
        assert "cutting 2 requests still running after 2 s" in logs
        assert "Traceback" not in logs  # a cut request is not reported as an app failure
        assert logs.count("idle keep-alive connections close after 30 s") == 1


def test_at_most_max_concurrent_requests_are_answered_at_once_by_a_worker(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-x") as fake:
        gateway = make_gateway(env=_env(fake, GOPHERGATE_MAX_CONCURRENT_REQUESTS="1")).start()

        def slow(i: int) -> float:
            httpx.post(
                gateway.base_url + "/chat/completions",
                headers={"authorization": f"Bearer {gateway.key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"SLOW 800 {i}"}]},
                timeout=30,
            ).raise_for_status()
            return time.monotonic()

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            ends = sorted(end - started for end in pool.map(slow, range(3)))
        # One at a time: they end ~0.8 s apart (three at once would all end at ~0.8 s).
        assert ends[2] > 2.2, ends
        assert ends[1] - ends[0] > 0.6 and ends[2] - ends[1] > 0.6, ends


# -- another server ---------------------------------------------------------------------------------------------
def test_the_app_also_runs_on_uvicorn(make_gateway: Any) -> None:
    """`gophergate.app:factory` is a plain ASGI app: another ASGI server can run it instead of Granian."""
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


def test_the_open_file_limit_is_raised_to_the_hard_limit(tmp_path: Path) -> None:
    """`gophergate serve` raises its soft open-file limit (each connection is a file), in a child process so the
    test's own limit is untouched."""
    code = (
        "import resource\n"
        "from gophergate.serve import MAX_OPEN_FILES, raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else hard\n"
        "assert raise_open_file_limit() == target == resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=30)


def _policy(pid: int, tid: int) -> int:
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[38])  # field 41, "policy" (the list starts at field 3)


def test_granians_threads_yield_to_the_event_loop_and_python_threads_do_not(gateway: Gateway) -> None:
    """The worker's threads that are not Python's (Granian's I/O and dispatch) run under SCHED_BATCH, so that
    their wake-ups do not preempt the event loop's thread on a shared core; the event loop's thread and the
    request log's writer threads keep the normal policy."""
    httpx.get(f"{gateway.url}/healthz", timeout=10)  # a request has passed through every thread that carries one
    time.sleep(1.5)  # past the second pass, a second after the start
    (worker,) = _workers(gateway.proc.pid)
    policies = {thread.id: _policy(worker.pid, thread.id) for thread in worker.threads()}
    assert policies[worker.pid] == os.SCHED_OTHER  # the event loop's (the process's main thread)
    assert os.SCHED_BATCH in policies.values()
    assert os.SCHED_OTHER in {p for tid, p in policies.items() if tid != worker.pid}  # Python's own threads

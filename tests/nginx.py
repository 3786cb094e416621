"""A real nginx for the tests that put the gateway behind one: the Debian package (``/usr/sbin/nginx``; ``.ci/run``
installs it), on a free loopback port, with a configuration the test module writes and every path in a directory of
the test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port

NGINX = Path("/usr/sbin/nginx")


@contextmanager
def nginx(directory: Path, config: Callable[[int], str]) -> Iterator[int]:
    """nginx running ``config(port)`` (written to ``directory/nginx.conf``; its pid, logs and temporary paths belong
    in ``directory`` too) on a free loopback ``port``, which is yielded once nginx listens there. Stopped gracefully
    (SIGQUIT: workers finish, then the master exits) afterwards, killed if it takes over 10 s."""
    port = free_port()
    (directory / "nginx.conf").write_text(config(port))
    proc = _start(directory, port)
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _start(directory: Path, port: int) -> subprocess.Popen[bytes]:
    assert NGINX.is_file(), "Debian nginx missing: apt-get install nginx (.ci/run does)"
    log = (directory / "nginx.out").open("ab")
    proc = subprocess.Popen(
        [str(NGINX), "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited early:\n{_logs(directory)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nginx did not listen on {port}:\n{_logs(directory)}")


def _logs(directory: Path) -> str:
    return "\n".join(p.read_text() for p in (directory / "nginx.out", directory / "error.log") if p.exists())

"""What the real-agent tests share (tests/integration/test_claude_code.py, test_codex.py): installing a pinned agent
CLI from npm into the suite's cache, and a trap that keeps the agents off the network.

An npm package is installed once into ``tests/.cache/agents/<name>-<version>/`` (git-ignored), into a staging folder
renamed into place, so a cut install is never taken for a cached one. Without npm, or when the install fails, the
module is skipped with the reason shown; everything else runs in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parent / ".cache" / "agents"


def install_agent(package: str, version: str, folder_name: str, binary: str, version_output: str) -> Path:
    """The launcher ``binary`` of ``package@version``, installed once (skip when that cannot be done).

    ``version_output`` is what ``<binary> --version`` prints: a launcher whose native binary is missing fails here,
    not in the middle of a test."""
    folder = CACHE / f"{folder_name}-{version}"
    launcher = folder / "node_modules" / ".bin" / binary
    if not launcher.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"these tests need npm (Node.js >= 18) to install {package}")
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = CACHE / f"{folder_name}-{version}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        # The agents' native binaries come in optional per-platform packages (@openai/codex-linux-x64,
        # @anthropic-ai/claude-code-linux-x64, ...): --include=optional installs them even where npm is configured
        # to omit optional dependencies.
        command = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--include=optional"]
        try:
            done = subprocess.run([*command, f"{package}@{version}"], capture_output=True, text=True, timeout=480)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"npm install {package}@{version} took more than 8 minutes")
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"npm install {package}@{version} failed:\n{done.stderr[-2000:]}")
        try:
            staging.rename(folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another session installed it meanwhile
    shown = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == version_output, (
        f"{launcher} does not run (is its native binary missing?):\n{shown.stdout}{shown.stderr}"
    )
    return launcher


class EgressTrap:
    """An HTTP proxy on loopback that answers every request 403 and keeps its first line (``CONNECT host:443``):
    the agents run with the proxy variables aimed at it, so whatever they send elsewhere is seen and refused."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._serve, name="egress-trap", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                        head += chunk
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    pass
                self.seen.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not (Linux)
        self._sock.close()
        self._thread.join(5)

"""Start, pin, watch and stop the processes of a benchmark run (fake upstream, gateway)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class CpuPlan:
    """Which CPU the gateway gets and which the load generator, fake upstream and bench client get."""

    gateway: int | None
    load: int | None
    taskset: str | None

    @property
    def pinned(self) -> bool:
        return self.taskset is not None and self.gateway is not None

    def prefix(self, cpu: int | None) -> list[str]:
        if self.taskset is None or cpu is None:
            return []
        return [self.taskset, "-c", str(cpu)]

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned"
        return f"gateway on CPU {self.gateway}; wrk, fake upstream and bench client on CPU {self.load}"


def plan_cpus(pin: bool) -> CpuPlan:
    taskset = shutil.which("taskset")
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = []
    if not pin or taskset is None or len(allowed) < 2:
        return CpuPlan(None, None, None)
    return CpuPlan(allowed[0], allowed[1], taskset)


def pin_self(cpu: int | None) -> None:
    """Move this process (the bench client and the RSS sampler) onto the load generator's CPU."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A child process in its own session, with its output in a log file."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str] | None, log_path: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("wb")
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout_s``), then kill any of its descendants left behind."""
        descendants: list[psutil.Process] = []
        if self.alive():
            with contextlib.suppress(psutil.Error):
                descendants = psutil.Process(self.pid).children(recursive=True)
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        _, left = psutil.wait_procs(descendants, timeout=5)
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()  # psutil checks the pid was not reused
        self._log.close()
        return self.popen.returncode


def wait_for_port(host: str, port: int, proc: ManagedProcess, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchSetupError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchSetupError(f"{proc.name} did not listen on {host}:{port} within {timeout_s:.0f} s")


def wait_for_healthz(url: str, proc: ManagedProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchSetupError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise BenchSetupError(f"{url} did not answer 200 within {timeout_s:.0f} s (last: {last})")


def start_fake_upstream(port: int, plan: CpuPlan, log_path: Path) -> ManagedProcess:
    cmd = [*plan.prefix(plan.load), sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
    proc = ManagedProcess("fake upstream", cmd, None, log_path)
    wait_for_port("127.0.0.1", port, proc)
    return proc


def start_floor_relay(port: int, upstream_port: int, plan: CpuPlan, log_path: Path) -> ManagedProcess:
    """The machine-floor relay (bench/floor_relay.py), on the gateway's CPU."""
    cmd = [
        *plan.prefix(plan.gateway),
        sys.executable,
        "-m",
        "bench.floor_relay",
        "--port",
        str(port),
        "--upstream-port",
        str(upstream_port),
    ]
    proc = ManagedProcess("floor relay", cmd, None, log_path)
    wait_for_port("127.0.0.1", port, proc)
    return proc


def gophergate_executable() -> str:
    beside = Path(sys.executable).parent / "gophergate"
    if beside.exists():
        return str(beside)
    found = shutil.which("gophergate")
    if found is None:
        raise BenchSetupError("the gophergate command is not installed (run `make install`)")
    return found


def _inherited(name: str) -> bool:
    """Whether a variable of ours may reach the gateway: none of its settings or provider keys do."""
    return not (name.startswith("GOPHERGATE_") or name.endswith(("_API_KEY", "_BASE_URL")))


def registry_source() -> str:
    """A local registry copy, so the gateway prices requests as it would with models.dev (nothing is fetched):
    the full snapshot beside the checkout when there is one, else the tests' small copy."""
    root = Path(__file__).resolve().parents[1]
    full = root.parent / "shared" / "fixtures" / "models-dev-api.json"
    return str(full if full.is_file() else root / "tests" / "fixtures" / "models-dev-mini.json")


def gateway_env(upstream_port: int, data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """A hermetic environment: OpenAI pointed at the fake upstream, a fresh key and data dir, a local registry
    copy, nothing else."""
    env = {name: value for name, value in os.environ.items() if _inherited(name)}
    env.update(
        {
            "GOPHERGATE_ENCRYPTION_KEY": secrets.token_hex(32),
            "GOPHERGATE_DATA_DIR": str(data_dir),
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "GOPHERGATE_REGISTRY_URL": registry_source(),
        }
    )
    env.update(extra)
    return env


def create_client_key(env: dict[str, str], cwd: Path) -> str:
    """Run `gophergate keys create` (in ``cwd``, away from the repo's .env) and return the key it prints."""
    cmd = [gophergate_executable(), "keys", "create", "--name", "bench"]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchSetupError(f"`gophergate keys create` exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if lines and lines[-1].startswith("sk-"):
        return lines[-1]
    for line in reversed(lines):  # tolerate a decorated last line such as "key: sk-..."
        for word in line.split():
            if word.startswith("sk-"):
                return word
    raise BenchSetupError(f"`gophergate keys create` printed no sk- key:\n{proc.stdout}\n{proc.stderr}")


def start_gateway(port: int, env: dict[str, str], plan: CpuPlan, log_path: Path, cwd: Path) -> ManagedProcess:
    cmd = [
        *plan.prefix(plan.gateway),
        gophergate_executable(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = ManagedProcess("gateway", cmd, env, log_path, cwd=cwd)
    try:
        wait_for_healthz(f"http://127.0.0.1:{port}/healthz", proc)
    except BenchSetupError:
        proc.stop()
        raise
    return proc


def find_listening_pid(port: int) -> int | None:
    """The pid of the process listening on a local TCP port, when the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None

"""Upstreams behind a forward proxy: real requests from the official SDK, through the gateway and a real tinyproxy
on loopback, to strict fakes (providers/transport.py, providers/proxies.py).

One gateway for the module, with ``HTTP_PROXY`` and ``HTTPS_PROXY`` pointing at tinyproxy and three upstreams:

- openai at ``http://localhost:<port>``: through the proxy (an absolute-form request);
- xai at ``https://localhost:<port>`` (TLS, a certificate the gateway trusts via ``SSL_CERT_FILE``): through the
  proxy's CONNECT tunnel;
- deepseek at ``http://127.0.0.1:<port>``, which ``NO_PROXY`` lists: direct.

It is started with ``GOPHERGATE_UPSTREAM_CLIENT=pyreqwest``, a removed value: the gateway says so in one line and
runs as ``auto``, which is what the proxy tests check.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.fakes.tls import self_signed, server_context
from tests.support import Gateway, free_port

UPSTREAM_KEY = "sk-upstream-test"
TINYPROXY = "/usr/bin/tinyproxy"


def _install_tinyproxy() -> None:
    """Debian's tinyproxy, installed when missing (as .ci/run does)."""
    if Path(TINYPROXY).exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail("tinyproxy is not installed and apt-get is not available to install it")
    subprocess.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy",
        shell=True,
        check=True,
        capture_output=True,
        timeout=300,
    )


@dataclass
class Proxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The request lines tinyproxy relayed (``GET http://...`` or ``CONNECT host:port``), oldest first."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.findall(r"Request \(file descriptor \d+\): (.+)", text)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    _install_tinyproxy()
    tmp = tmp_path_factory.mktemp("tinyproxy")
    port = free_port()
    log = tmp / "tinyproxy.log"
    config = tmp / "tinyproxy.conf"
    config.write_text(
        f'Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nMaxClients 100\nLogFile "{log}"\nLogLevel Info\n'
    )
    process = subprocess.Popen(
        [TINYPROXY, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start:\n{log.read_text() if log.exists() else ''}") from None
                time.sleep(0.05)
        yield Proxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Stack:
    gateway: Gateway
    proxied: FakeOpenAICompat  # openai, plain HTTP through the proxy
    tunnelled: FakeOpenAICompat  # xai, HTTPS through a CONNECT tunnel
    direct: FakeOpenAICompat  # deepseek, listed in NO_PROXY

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0)


@pytest.fixture(scope="module")
def stack(proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("proxy-stack")
    cert, key = self_signed(tmp, names=("localhost",))
    proxied = FakeOpenAICompat(dialect="openai", api_key=UPSTREAM_KEY)
    tunnelled = FakeOpenAICompat(dialect="xai", api_key=UPSTREAM_KEY)
    tunnelled.tls = server_context(cert, key)
    direct = FakeOpenAICompat(dialect="deepseek", api_key=UPSTREAM_KEY)
    fakes = (proxied, tunnelled, direct)
    for fake in fakes:
        fake.start()
    env = {
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": proxied.base_url.replace("127.0.0.1", "localhost"),
        "XAI_API_KEY": UPSTREAM_KEY,
        "XAI_BASE_URL": tunnelled.base_url.replace("127.0.0.1", "localhost"),
        "DEEPSEEK_API_KEY": UPSTREAM_KEY,
        "DEEPSEEK_BASE_URL": direct.base_url,
        "HTTP_PROXY": proxy.url,
        "HTTPS_PROXY": proxy.url,
        "NO_PROXY": "127.0.0.1",
        "SSL_CERT_FILE": str(cert),  # OpenSSL's default verify paths: the gateway trusts the TLS fake
        "GOPHERGATE_UPSTREAM_CLIENT": "pyreqwest",
    }
    gateway = Gateway(tmp, env=env)
    try:
        gateway.start()
        yield Stack(gateway, proxied, tunnelled, direct)
    finally:
        gateway.stop()
        for fake in fakes:
            fake.stop()


def _port(fake: FakeOpenAICompat) -> int:
    assert fake.port is not None
    return fake.port


def _chat_and_stream(stack: Stack, model: str) -> None:
    """A stream, then a plain answer: the last connection used is parked in the gateway's pool (a stream's may
    not be, when the gateway stops reading at its last event)."""
    client = stack.client()
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: one two three"
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello proxy"}])
    assert answer.choices[0].message.content == "echo: hello proxy"


def test_chat_and_stream_reach_a_plain_http_upstream_through_the_proxy(stack: Stack, proxy: Proxy) -> None:
    before = len(stack.proxied.chat_requests)
    _chat_and_stream(stack, "gpt-4o-mini")
    assert len(stack.proxied.chat_requests) == before + 2
    url = f"http://localhost:{_port(stack.proxied)}/v1/chat/completions"
    relayed = [line for line in proxy.requests() if line == f"POST {url} HTTP/1.1"]
    assert len(relayed) >= 2  # tinyproxy saw both: the answer and the stream came through it
    assert all(r.headers.get("via") for r in stack.proxied.chat_requests)  # tinyproxy's Via header, seen upstream


def _gateway_connections_to(stack: Stack, port: int) -> list[object]:
    """The gateway's open TCP connections to 127.0.0.1:``port`` (kept-alive upstream connections stay open)."""
    assert stack.gateway.proc is not None
    root = psutil.Process(stack.gateway.proc.pid)
    found = []
    for process in (root, *root.children(recursive=True)):
        found += [c for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == port]
    return found


def test_chat_and_stream_reach_an_https_upstream_through_a_connect_tunnel(stack: Stack, proxy: Proxy) -> None:
    before = len(stack.tunnelled.chat_requests)
    _chat_and_stream(stack, "grok-4.3")
    assert len(stack.tunnelled.chat_requests) == before + 2
    port = _port(stack.tunnelled)
    assert f"CONNECT localhost:{port} HTTP/1.1" in proxy.requests()
    # Through the tunnel, not beside it: the gateway holds no connection of its own to the upstream's port (a
    # direct one would stay open in its pool), and tinyproxy never saw the requests in the clear.
    assert not _gateway_connections_to(stack, port)
    assert not [line for line in proxy.requests() if "/chat/completions" in line and f":{port}/" in line]


def test_upstream_listed_in_no_proxy_goes_direct(stack: Stack, proxy: Proxy) -> None:
    before = len(stack.direct.chat_requests)
    _chat_and_stream(stack, "deepseek-flash")
    assert len(stack.direct.chat_requests) == before + 2
    assert not [line for line in proxy.requests() if f":{_port(stack.direct)}" in line]  # the proxy saw nothing
    assert not any(r.headers.get("via") for r in stack.direct.requests)
    assert _gateway_connections_to(stack, _port(stack.direct))  # the gateway's own kept-alive connection


def test_removed_upstream_client_value_starts_as_auto_with_one_warning_line(stack: Stack) -> None:
    lines = [line for line in stack.gateway.logs().splitlines() if "GOPHERGATE_UPSTREAM_CLIENT" in line]
    assert len(lines) == 1, lines
    assert "GOPHERGATE_UPSTREAM_CLIENT=pyreqwest was removed; using auto" in lines[0] and "WARNING" in lines[0]
    # auto chose per origin, once each, and said which upstreams go through the proxy (no credentials in the URL)
    routes = [line for line in stack.gateway.logs().splitlines() if "goes through the proxy" in line]
    assert len(routes) == 2, routes

"""The gateway behind a real nginx that terminates TLS: /v1 chat and streams, the dashboard WebSocket, the
``Secure`` session cookie, and the client address the request log, the sessions and the login throttle see.

nginx is the Debian package (``/usr/sbin/nginx``; ``.ci/run`` installs it when missing), started by the module
on a free loopback port with its own configuration, certificate and paths in a temporary directory. The test
clients bind distinct loopback source addresses (127.0.0.2, 127.0.0.3, ...), so that each one is a different
client to nginx while nginx itself always reaches the gateway from 127.0.0.1, a trusted proxy by default.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.nginx import nginx
from tests.support import Gateway, free_port, query

UPSTREAM_KEY = "sk-upstream-proxy-test"
ADMIN_PASSWORD = "proxy-admin-password-1"
MAX_FAILURES = 3


@dataclass(frozen=True)
class Proxy:
    """nginx in front of ``gateway``: ``url`` is https://localhost:<port>, trusted through ``ca_file``."""

    gateway: Gateway
    url: str
    ca_file: Path

    @property
    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, source: str, **kwargs: Any) -> httpx.Client:
        """An HTTPS client to nginx whose connections come from the loopback address ``source``."""
        transport = httpx.HTTPTransport(local_address=source, verify=self.context)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30, **kwargs)

    def openai(self, source: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=self.gateway.key, max_retries=0, http_client=self.client(source)
        )


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a server certificate it signed for localhost and 127.0.0.1: (CA, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gophergate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital signature, certificate and CRL signing
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _nginx_conf(directory: Path, port: int, gateway_port: int, cert: Path, key: Path) -> str:
    return f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    # WebSocket upgrades pass Connection: upgrade on; other requests keep the upstream connection.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{gateway_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream = FakeOpenAICompat("openai", api_key=UPSTREAM_KEY).start()
    gateway = Gateway(
        tmp_path_factory.mktemp("proxy-gateway"),
        env={
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "GOPHERGATE_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
            # GOPHERGATE_TRUSTED_PROXIES is left at its default (127.0.0.1, ::1): nginx connects from 127.0.0.1.
        },
    )
    directory = tmp_path_factory.mktemp("nginx")
    ca_file, cert, key = _write_certificates(directory)
    try:
        gateway.start()
        with nginx(directory, lambda port: _nginx_conf(directory, port, gateway.port, cert, key)) as port:
            yield Proxy(gateway, f"https://localhost:{port}", ca_file)
    finally:
        gateway.stop()
        upstream.stop()


def _direct(gateway: Gateway, source: str) -> httpx.Client:
    """Plain HTTP straight to the gateway (no proxy) from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gateway.url, transport=transport, timeout=30)


def _login(client: httpx.Client, password: str = ADMIN_PASSWORD, **kwargs: Any) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": "admin", "password": password}, **kwargs)


def _session_ip(gateway: Gateway, token: str) -> str:
    """The address the sessions table recorded for the session of a ``gg_session`` cookie value."""
    rows = query(gateway.database_url, "SELECT id, ip FROM sessions")
    (ip,) = [row["ip"] for row in rows if row["id"] == _session_id(token)]
    return str(ip)


def _session_id(token: str) -> str:
    payload = token.split(".", 1)[0]
    return str(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["s"])


def test_chat_and_stream_through_nginx_record_the_real_client(proxy: Proxy) -> None:
    client = proxy.openai("127.0.0.2")
    chat_id, stream_id = f"proxy-chat-{uuid.uuid4().hex[:8]}", f"proxy-stream-{uuid.uuid4().hex[:8]}"
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello through nginx"}],
        extra_headers={"x-request-id": chat_id},
    )
    assert reply.choices[0].message.content
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream through nginx please"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": stream_id},
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert len(pieces) > 1 and "".join(pieces)
    chat, stream = proxy.gateway.row_for(chat_id), proxy.gateway.row_for(stream_id)
    assert (chat["status"], chat["stream"], chat["client_ip"]) == (200, False, "127.0.0.2")
    assert (stream["status"], bool(stream["stream"]), stream["client_ip"]) == (200, True, "127.0.0.2")
    assert stream["completion_tokens"] > 0

    # the admin API returns the address, in the list and in the detail
    with proxy.client("127.0.0.2") as admin:
        login = _login(admin)
        admin.headers["x-csrf-token"] = login.json()["csrf_token"]
        items = admin.get("/api/requests", params={"limit": 50}).json()["data"]
        (item,) = [i for i in items if i["request_id"] == chat_id]
        assert item["client_ip"] == "127.0.0.2"
        assert admin.get(f"/api/requests/{item['id']}").json()["client_ip"] == "127.0.0.2"


def test_a_forwarded_for_the_client_wrote_itself_is_not_believed_through_nginx(proxy: Proxy) -> None:
    """nginx appends the address it saw: the right-most untrusted entry is the client, not what it claimed."""
    request_id = f"proxy-forged-{uuid.uuid4().hex[:8]}"
    client = proxy.openai("127.0.0.9")
    client.models.list(extra_headers={"x-forwarded-for": "198.51.100.77", "x-request-id": request_id})
    assert proxy.gateway.row_for(request_id)["client_ip"] == "127.0.0.9"


def test_login_through_nginx_sets_a_secure_cookie_and_records_the_client(proxy: Proxy) -> None:
    with proxy.client("127.0.0.3") as client:
        response = _login(client)
        assert response.status_code == 200
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("gg_session=")
        assert "secure" in [attribute.strip().lower() for attribute in cookie.split(";")[1:]]
        assert client.get("/api/auth/me").status_code == 200  # the Secure cookie goes back over https
        token = client.cookies["gg_session"]
    assert _session_ip(proxy.gateway, token) == "127.0.0.3"


def test_direct_http_login_sets_no_secure_cookie(proxy: Proxy) -> None:
    with _direct(proxy.gateway, "127.0.0.1") as client:
        response = _login(client)
        assert response.status_code == 200
        assert "secure" not in response.headers["set-cookie"].lower()


def test_the_login_throttle_counts_the_client_behind_nginx_not_nginx(proxy: Proxy) -> None:
    with proxy.client("127.0.0.6") as attacker:
        for _ in range(MAX_FAILURES):
            assert _login(attacker, "wrong-password-1").status_code == 401
        throttled = _login(attacker)
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "login_throttled"
    # another client behind the same nginx (so the same peer, 127.0.0.1) is not locked out
    with proxy.client("127.0.0.7") as other:
        assert _login(other).status_code == 200


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(proxy: Proxy) -> None:
    """127.0.0.5 connects straight to the gateway and claims to be a proxy for someone else, over https."""
    forged = {"x-forwarded-for": "198.51.100.1", "x-forwarded-proto": "https"}
    request_id = f"proxy-untrusted-{uuid.uuid4().hex[:8]}"
    with _direct(proxy.gateway, "127.0.0.5") as client:
        models = client.get(
            "/v1/models", headers={**forged, "x-request-id": request_id, "authorization": f"Bearer {proxy.gateway.key}"}
        )
        assert models.status_code == 200
        assert proxy.gateway.row_for(request_id)["client_ip"] == "127.0.0.5"
        # a different forged address on every try: the throttle still counts 127.0.0.5
        for i in range(MAX_FAILURES):
            headers = {"x-forwarded-for": f"198.51.100.{10 + i}"}
            assert _login(client, "wrong-password-2", headers=headers).status_code == 401
        assert _login(client, headers={"x-forwarded-for": "198.51.100.99"}).status_code == 429
    with _direct(proxy.gateway, "127.0.0.8") as client:
        response = _login(client, headers=forged)
        assert response.status_code == 200
        assert "secure" not in response.headers["set-cookie"].lower()  # the forged proto is ignored too
        assert _session_ip(proxy.gateway, client.cookies["gg_session"]) == "127.0.0.8"


async def test_ws_upgrades_through_nginx_and_streams_request_events(proxy: Proxy) -> None:
    with proxy.client("127.0.0.4") as client:
        assert _login(client).status_code == 200
        cookie = f"gg_session={client.cookies['gg_session']}"
    ws_url = proxy.url.replace("https://", "wss://") + "/ws"
    headers = {"Origin": proxy.url, "Cookie": cookie}
    connector = aiohttp.TCPConnector(ssl=proxy.context, local_addr=("127.0.0.4", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(ws_url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
    ):
        request_id = f"proxy-ws-{uuid.uuid4().hex[:8]}"

        def one_request() -> None:
            proxy.openai("127.0.0.4").chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "seen live"}],
                extra_headers={"x-request-id": request_id},
            )

        await asyncio.to_thread(one_request)
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                data = orjson.loads(msg.data)
                if data["type"] == "request" and data["data"]["request_id"] == request_id:
                    break
        assert data["data"]["client_ip"] == "127.0.0.4"


def test_a_bad_trusted_proxy_setting_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gophergate", "serve"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "GOPHERGATE_DATA_DIR": str(tmp_path / "data"),
            "GOPHERGATE_PORT": str(free_port()),
            "GOPHERGATE_ENCRYPTION_KEY": "ab" * 32,
            "GOPHERGATE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.1/8",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GOPHERGATE_TRUSTED_PROXIES is invalid: '10.0.0.1/8'" in lines[0], lines
    assert not (tmp_path / "data").exists()

"""Configured secrets never leave the gateway (issue 14, defect 3): providers whose keys have unusual shapes,
configured from the environment, the TOML file and the admin API, and a configured header value, are echoed back
by a careless upstream (status line, JSON error body, headers, a stream's error event); none of them reaches the
client's error or stream, the log row, the gateway's log, /api/requests/{id}, the live hub or the admin API."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

ADMIN_PASSWORD = "redaction-admin-password-1"
ENV_KEY = "Zq9!custom-KEY.with/slash+plus="  # OPENAI_API_KEY: no sk- prefix, URL- and Base64-special characters
TOML_KEY = hashlib.sha1(b"acme").hexdigest()  # 40 hex characters
TENANT_HEADER = "Tenant-7c1e/Secret+Value=="  # a configured extra header of the TOML provider
SPACE_KEY = "key with spaces 0123456789"
DB_KEY = "3f1c1d2e-9b7a-4c55-8e0f-2a6b9c1d7e42"  # a UUID, entered through the admin API


@dataclass(frozen=True)
class Case:
    source: str
    model: str
    secrets: tuple[str, ...]


CASES = (
    Case("env", "gpt-4o-mini", (ENV_KEY,)),
    Case("toml", "acme-model", (TOML_KEY, TENANT_HEADER)),
    Case("spaces", "spacey-model", (SPACE_KEY,)),
    Case("database", "db-model", (DB_KEY,)),
)
ALL_SECRETS = tuple(s for case in CASES for s in case.secrets)


def forms(secret: str) -> set[str]:
    """The forms in which a leaked secret would be recognised."""
    return {secret, quote(secret, safe=""), quote_plus(secret), orjson.dumps(secret).decode()[1:-1]}


def assert_clean(*texts: str, secrets: tuple[str, ...] = ALL_SECRETS) -> None:
    for text in texts:
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"{form!r} leaked in: {text[:2000]}"


class Redaction:
    def __init__(self, gateway: Gateway, fakes: dict[str, FakeOpenAICompat], admin: httpx.Client) -> None:
        self.gateway = gateway
        self.fakes = fakes
        self.admin = admin

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0)

    def detail(self, request_id: str) -> tuple[dict[str, Any], str]:
        row = self.gateway.row_for(request_id)
        response = self.admin.get(f"/api/requests/{row['id']}")
        assert response.status_code == 200, response.text
        return row, response.text


@pytest.fixture(scope="module")
def redaction(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redaction]:
    fakes = {
        "env": FakeOpenAICompat("openai", api_key=ENV_KEY),
        "toml": FakeOpenAICompat("openai", api_key=TOML_KEY, models=["acme-model"]),
        "spaces": FakeOpenAICompat("openai", api_key=SPACE_KEY, models=["spacey-model"]),
        "database": FakeOpenAICompat("openai", api_key=DB_KEY, models=["db-model"]),
    }
    for fake in fakes.values():
        fake.start()
    # The first model listing of the TOML provider fails with an answer echoing its secrets: a log line.
    fakes["toml"].fail_next(500, {"error": {"message": f"no such key {TOML_KEY} for tenant {TENANT_HEADER}"}})
    toml = f"""
[providers.acme]
base_url = "{fakes["toml"].base_url}"
api_key = "{TOML_KEY}"
models = ["acme-model"]
headers = {{ "x-tenant-token" = "{TENANT_HEADER}" }}

[providers.spacey]
base_url = "{fakes["spaces"].base_url}"
api_key = "{SPACE_KEY}"
models = ["spacey-model"]
"""
    env = {
        "OPENAI_API_KEY": ENV_KEY,
        "OPENAI_BASE_URL": fakes["env"].base_url,
        "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    gateway = Gateway(tmp_path_factory.mktemp("redaction"), env=env, config_toml=toml)
    admin = httpx.Client(base_url=gateway.url, timeout=30)
    try:
        gateway.start()
        login = admin.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        admin.headers["x-csrf-token"] = login.json()["csrf_token"]
        created = admin.post(
            "/api/providers",
            json={
                "name": "dbco",
                "kind": "custom",
                "base_url": fakes["database"].base_url,
                "api_key": DB_KEY,
                "models": ["db-model"],
            },
        )
        assert created.status_code == 201, created.text
        assert_clean(created.text)
        yield Redaction(gateway, fakes, admin)
    finally:
        admin.close()
        gateway.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.mark.parametrize("status", [400, 401, 500])
@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
def test_custom_provider_key_echoed_in_error_body_is_redacted_everywhere(
    redaction: Redaction, case: Case, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        redaction.client().chat.completions.create(
            model=case.model, messages=[{"role": "user", "content": f"ECHOKEY {status}"}]
        )
    err = info.value
    upstream = redaction.fakes[case.source].last_request
    assert any(s in upstream.headers.get("authorization", "") for s in case.secrets)  # it was really echoed
    assert "[redacted]" in err.message
    response = err.response
    row, detail = redaction.detail(response.headers["x-request-id"])
    assert row["status"] == response.status_code and "[redacted]" in row["error_message"]
    assert_clean(err.message, response.text, repr(err.body), repr(dict(response.headers)), repr(row), detail)


@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
def test_custom_provider_key_echoed_in_a_stream_error_event_is_redacted_everywhere(
    redaction: Redaction, case: Case
) -> None:
    body = {"model": case.model, "stream": True, "messages": [{"role": "user", "content": "ECHOMID"}]}
    headers = {"authorization": f"Bearer {redaction.gateway.key}"}
    with httpx.stream(
        "POST", redaction.gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        raw = response.read().decode()
    assert response.status_code == 200 and '"error"' in raw and "[redacted]" in raw
    row, detail = redaction.detail(response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"] == "upstream_stream_error"
    assert "[redacted]" in row["error_message"]
    assert_clean(raw, repr(row), detail)

    with pytest.raises(openai.APIError) as info:  # the official SDK raises on the error event
        for _ in redaction.client().chat.completions.create(
            model=case.model, messages=[{"role": "user", "content": "ECHOMID"}], stream=True
        ):
            pass
    assert_clean(info.value.message, repr(info.value.body))


def test_request_log_list_and_provider_test_show_no_secret(redaction: Redaction) -> None:
    fake = redaction.fakes["database"]
    fake.fail_next(401, {"error": {"message": f"key {DB_KEY} refused", "code": DB_KEY}})
    tested = redaction.admin.post("/api/providers/dbco/test")
    assert tested.status_code == 200 and tested.json()["ok"] is False
    assert "[redacted]" in tested.json()["error"]
    listed = redaction.admin.get("/api/requests", params={"errors_only": True, "limit": 200})
    assert listed.status_code == 200 and listed.json()["data"]
    providers = redaction.admin.get("/api/providers")
    assert_clean(tested.text, listed.text, providers.text)


async def test_hub_request_event_of_an_echoed_key_error_carries_no_secret(redaction: Redaction) -> None:
    gateway = redaction.gateway
    cookie = f"gg_session={redaction.admin.cookies['gg_session']}"
    headers = {"Origin": gateway.url, "Cookie": cookie}
    async with aiohttp.ClientSession() as session, session.ws_connect(gateway.url + "/ws", headers=headers) as ws:
        body = {"model": "acme-model", "messages": [{"role": "user", "content": "ECHOKEY 404"}]}
        auth = {"Authorization": f"Bearer {gateway.key}"}
        async with session.post(gateway.base_url + "/chat/completions", json=body, headers=auth) as resp:
            assert resp.status == 404
            assert "retry-after" not in resp.headers  # the echoed "hint" is dropped
            request_id = resp.headers["x-request-id"]
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                event = orjson.loads(msg.data)
                assert_clean(msg.data)
                if event["type"] == "request" and event["data"]["request_id"] == request_id:
                    break
    assert event["data"]["error_type"] == "[redacted]"  # the upstream's error code was the key itself


def test_gateway_log_never_shows_a_configured_secret(redaction: Redaction) -> None:
    # Runs after the others in this module: every echo above has been handled by then.
    logs = redaction.gateway.logs()
    assert "listing models of provider acme failed" in logs and "[redacted]" in logs
    assert_clean(logs)

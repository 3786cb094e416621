"""The admin API (/api) against a real gateway subprocess: every endpoint, both roles, the errors, and the
security properties (sessions, CSRF, roles, no secret in any answer or log line)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import gophergate
from gophergate.security.sessions import Claims, SessionManager
from gophergate.settings import decode_encryption_key
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, query

UPSTREAM_KEY = "sk-upstream-test-0001"
CUSTOM_KEY = "sk-custom-upstream-9876"
ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"


class _Client(httpx.Client):
    """A client that a ``with`` block can take after it has sent requests (``login`` does)."""

    def __enter__(self) -> _Client:
        return self


class Dash:
    """The gateway, its fakes, and every /api answer seen (checked for secrets at the end)."""

    def __init__(self, gateway: Gateway, upstream: FakeOpenAICompat, custom: FakeOpenAICompat) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.custom = custom
        self.bodies: list[tuple[str, str, str]] = []  # (method, path, body)
        self.secrets_shown: set[str] = set()  # client key secrets (shown once, in their creation answer)
        self.tokens: set[str] = set()

    def client(self) -> httpx.Client:
        def keep(response: httpx.Response) -> None:
            response.read()
            self.bodies.append((response.request.method, response.request.url.path, response.text))
            cookie = response.cookies.get("gg_session")
            if cookie:
                self.tokens.add(cookie)

        return _Client(base_url=self.gateway.url, timeout=30, event_hooks={"response": [keep]})

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> httpx.Client:
        c = self.client()
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        c.headers["x-csrf-token"] = r.json()["csrf_token"]
        return c

    def v1(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key or self.gateway.key, max_retries=0)


def create_user(gateway: Gateway, username: str, role: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gophergate", "users", "create", "--username", username, "--role", role],
        env=gateway.env,
        cwd=gateway.tmp_path,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    upstream = FakeOpenAICompat("openai", api_key=UPSTREAM_KEY).start()
    custom = FakeOpenAICompat("openai", api_key=CUSTOM_KEY, models=["my-model"]).start()
    tmp: Path = tmp_path_factory.mktemp("admin")
    gateway = Gateway(
        tmp,
        env={
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": upstream.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        },
    )
    try:
        gateway.start()
        assert create_user(gateway, "viewer", "viewer", VIEWER_PASSWORD).returncode == 0
        yield Dash(gateway, upstream, custom)
    finally:
        gateway.stop()
        upstream.stop()
        custom.stop()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


# -- auth ------------------------------------------------------------------------------------------------------


def test_login_sets_a_strict_httponly_session_cookie_and_returns_the_csrf_token(dash: Dash) -> None:
    with dash.client() as c:
        r = c.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        body = r.json()
        assert body["user"] == {"id": body["user"]["id"], "username": "admin", "role": "admin"}
        assert body["csrf_token"] and body["expires_at"].endswith("Z")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("gg_session=")
        for attribute in ("HttpOnly", "Path=/", "SameSite=strict"):
            assert attribute.lower() in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP here; Secure is added over TLS
        me = c.get("/api/auth/me").json()
        assert me["user"]["username"] == "admin" and me["csrf_token"] == body["csrf_token"]


def test_wrong_password_and_unknown_user_are_the_same_401(dash: Dash) -> None:
    with dash.client() as c:
        wrong = c.post("/api/auth/login", json={"username": "admin", "password": "not-the-password"})
        unknown = c.post("/api/auth/login", json={"username": "nobody", "password": "whatever-123"})
        assert wrong.status_code == unknown.status_code == 401
        assert error_of(wrong) == error_of(unknown)
        assert "gg_session" not in wrong.headers.get("set-cookie", "")
        missing = c.post("/api/auth/login", json={"username": "admin"})
        assert missing.status_code == 400 and error_of(missing)["param"] == "password"


def _forge(dash: Dash, claims: Claims) -> str:
    key = decode_encryption_key(dash.gateway.env["GOPHERGATE_ENCRYPTION_KEY"])
    return SessionManager(None, key, idle_seconds=60, max_seconds=60).issue(claims)  # type: ignore[arg-type]


def test_forged_expired_tampered_and_unknown_tokens_are_401(dash: Dash) -> None:
    with dash.login() as c:
        token = c.cookies["gg_session"]
        me = c.get("/api/auth/me").json()["user"]
    payload, signature = token.split(".")
    now = int(time.time())
    other_key = SessionManager(None, b"k" * 32, idle_seconds=60, max_seconds=60)  # type: ignore[arg-type]
    claims = dash_claims = Claims(me["id"], "0" * 32, now, now + 600)
    bad = {
        "no cookie": None,
        "garbage": "not-a-token",
        "tampered signature": f"{payload}.{signature[:-3]}AAA",
        "tampered payload": f"{payload[:-2]}xx.{signature}",
        "signed with another key": other_key.issue(claims),
        "expired (valid signature)": _forge(dash, Claims(me["id"], "f" * 32, now - 7200, now - 3600)),
        "unknown session id (valid signature)": _forge(dash, dash_claims),
    }
    for label, value in bad.items():
        with dash.client() as c:
            if value is not None:
                c.cookies.set("gg_session", value)
            r = c.get("/api/auth/me")
            assert r.status_code == 401, label
            assert error_of(r)["type"] == "authentication_error", label


def test_a_token_for_another_user_id_is_refused(dash: Dash) -> None:
    with dash.login() as c:
        token = c.cookies["gg_session"]
    key = decode_encryption_key(dash.gateway.env["GOPHERGATE_ENCRYPTION_KEY"])
    signer = SessionManager(None, key, idle_seconds=60, max_seconds=60)  # type: ignore[arg-type]
    decoded = signer.decode(token)
    assert decoded is not None
    swapped = signer.issue(Claims(decoded.user_id + 1000, decoded.session_id, decoded.issued_at, decoded.expires_at))
    with dash.client() as c:
        c.cookies.set("gg_session", swapped)
        assert c.get("/api/auth/me").status_code == 401


def test_logout_revokes_the_session_at_once(dash: Dash) -> None:
    c = dash.login()
    token = c.cookies["gg_session"]
    assert c.post("/api/auth/logout").status_code == 204
    with dash.client() as again:
        again.cookies.set("gg_session", token)
        assert again.get("/api/auth/me").status_code == 401
    c.close()


# -- roles and CSRF -----------------------------------------------------------------------------------------

MUTATING: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/users", {"username": "mallory", "password": "password-123", "role": "admin"}),
    ("PATCH", "/api/users/1", {"role": "viewer"}),
    ("DELETE", "/api/users/1", None),
    ("POST", "/api/keys", {"name": "x"}),
    ("PATCH", "/api/keys/1", {"name": "y"}),
    ("POST", "/api/keys/1/revoke", None),
    ("POST", "/api/keys/1/rotate", None),
    ("POST", "/api/teams", {"name": "x"}),
    ("PATCH", "/api/teams/1", {"name": "y"}),
    ("DELETE", "/api/teams/1", None),
    ("POST", "/api/providers", {"name": "evil", "kind": "custom", "base_url": "http://127.0.0.1:9/v1"}),
    ("PATCH", "/api/providers/openai", {"enabled": False}),
    ("DELETE", "/api/providers/openai", None),
    ("POST", "/api/providers/openai/test", None),
    ("PATCH", "/api/models/openai/gpt-4o-mini", {"enabled": False}),
    ("PUT", "/api/models/openai/gpt-4o-mini/price", {"input": "1"}),
    ("DELETE", "/api/models/openai/gpt-4o-mini/price", None),
]


def test_a_viewer_gets_403_on_every_mutating_endpoint(dash: Dash) -> None:
    with dash.login("viewer", VIEWER_PASSWORD) as c:
        for method, path, body in MUTATING:
            r = c.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert error_of(r)["code"] == "forbidden", (method, path)
        for path in ("/api/users", "/api/keys"):  # no keys, no user list for viewers
            assert c.get(path).status_code == 403, path
    with dash.login() as admin:  # and nothing changed
        users = {u["id"]: u for u in admin.get("/api/users").json()["data"]}
        assert "mallory" not in {u["username"] for u in users.values()} and users[1]["role"] == "admin"
        key = {k["id"]: k for k in admin.get("/api/keys").json()["data"]}[1]
        assert key["name"] == "test" and key["revoked_at"] is None
        provider = {p["name"]: p for p in admin.get("/api/providers").json()["data"]}["openai"]
        assert provider["enabled"] and provider["source"] == "env"
        model = _model(admin, "gpt-4o-mini")
        assert model["enabled"] and model["override"] is None


def test_mutations_without_the_csrf_header_are_403(dash: Dash) -> None:
    with dash.login() as c:
        csrf = c.headers.pop("x-csrf-token")
        for method, path, body in MUTATING:
            r = c.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert error_of(r)["code"] == "csrf_failed", (method, path)
        wrong = c.post("/api/keys", json={"name": "x"}, headers={"x-csrf-token": csrf[:-2] + "zz"})
        assert wrong.status_code == 403 and error_of(wrong)["code"] == "csrf_failed"
        assert c.post("/api/auth/logout").status_code == 403  # logout is a state change too
        assert c.get("/api/auth/me").status_code == 200  # reads need no token


def test_mutations_without_a_session_are_401(dash: Dash) -> None:
    with dash.client() as c:
        for method, path, body in MUTATING:
            assert c.request(method, path, json=body).status_code == 401, (method, path)
        for path in ("/api/providers", "/api/models", "/api/system", "/api/users", "/api/keys"):
            assert c.get(path).status_code == 401, path


# -- client keys --------------------------------------------------------------------------------------------


def test_client_key_lifecycle_reaches_v1_at_once(dash: Dash) -> None:
    with dash.login() as c:
        created = c.post(
            "/api/keys",
            json={"name": "team-a", "limits": {"rpm": 60, "budget_usd": "12.50", "budget_period": "day"}},
        )
        assert created.status_code == 201
        body = created.json()
        secret, key = body["secret"], body["key"]
        dash.secrets_shown.add(secret)
        assert secret.startswith("sk-gg-") and key["hint"].endswith(secret[-4:])
        assert key["limits"] == {
            "rpm": 60,
            "tpm": None,
            "max_parallel": None,
            "budget_usd": "12.50",
            "budget_period": "day",
            "allowed_models": [],
            "max_tokens_cap": None,
        }
        assert key["team"] is None and key["expires_at"] is None
        listed = c.get("/api/keys").json()
        assert listed["data"][0]["id"] == key["id"] and secret not in str(listed)
        # usable on /v1 at once
        reply = dash.v1(secret).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "echo: hi"

        renamed = c.patch(f"/api/keys/{key['id']}", json={"name": "team-b", "limits": {"budget_usd": None}})
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "team-b"
        assert renamed.json()["limits"]["budget_usd"] is None and renamed.json()["limits"]["budget_period"] is None
        assert renamed.json()["limits"]["rpm"] == 60

        rotated = c.post(f"/api/keys/{key['id']}/rotate")
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        dash.secrets_shown.add(new_secret)
        new_key = rotated.json()["key"]
        assert new_key["id"] != key["id"] and new_key["name"] == "team-b" and new_key["limits"]["rpm"] == 60
        with pytest.raises(openai.AuthenticationError):
            dash.v1(secret).models.list()
        dash.v1(new_secret).models.list()

        revoked = c.post(f"/api/keys/{new_key['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["key"]["revoked_at"].endswith("Z")
        with pytest.raises(openai.AuthenticationError):
            dash.v1(new_secret).models.list()
        again = c.post(f"/api/keys/{new_key['id']}/rotate")
        assert again.status_code == 409 and error_of(again)["code"] == "key_revoked"


def test_client_key_errors(dash: Dash) -> None:
    with dash.login() as c:
        assert c.patch("/api/keys/999999", json={"name": "x"}).status_code == 404
        assert c.post("/api/keys/999999/revoke").status_code == 404
        assert c.post("/api/keys/999999/rotate").status_code == 404
        bad = c.post("/api/keys", json={"name": "x", "limits": {"budget_usd": "-1", "budget_period": "month"}})
        assert bad.status_code == 400 and error_of(bad)["param"] == "limits.budget_usd"
        assert error_of(c.post("/api/keys", json={"name": ""}))["param"] == "name"
        assert error_of(c.patch("/api/keys/1", json={}))["type"] == "invalid_request_error"
        assert c.get("/api/keys?limit=501").status_code == 400


def test_key_list_pages_with_a_cursor(dash: Dash) -> None:
    with dash.login() as c:
        for i in range(3):
            dash.secrets_shown.add(c.post("/api/keys", json={"name": f"page-{i}"}).json()["secret"])
        first = c.get("/api/keys?limit=2").json()
        assert len(first["data"]) == 2 and first["next_cursor"]
        second = c.get(f"/api/keys?limit=2&cursor={first['next_cursor']}").json()
        ids = [k["id"] for k in first["data"] + second["data"]]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
        bad = c.get("/api/keys?cursor=%%%")
        assert bad.status_code == 400 and error_of(bad)["param"] == "cursor"


# -- users --------------------------------------------------------------------------------------------------


def test_user_management_and_session_revocation(dash: Dash) -> None:
    with dash.login() as admin:
        created = admin.post("/api/users", json={"username": "carol", "password": "carol-pass-1", "role": "viewer"})
        assert created.status_code == 201
        carol = created.json()
        assert set(carol) == {"id", "username", "role", "created_at", "updated_at", "password_changed_at"}
        dup = admin.post("/api/users", json={"username": "carol", "password": "carol-pass-2", "role": "viewer"})
        assert dup.status_code == 409 and error_of(dup)["code"] == "user_exists"
        short = admin.post("/api/users", json={"username": "dave", "password": "short", "role": "viewer"})
        assert short.status_code == 400 and error_of(short)["param"] == "password"
        assert (
            admin.post("/api/users", json={"username": "x", "password": "long-enough", "role": "root"}).status_code
            == 400
        )

        session = dash.login("carol", "carol-pass-1")
        promoted = admin.patch(f"/api/users/{carol['id']}", json={"role": "admin"})
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        assert session.get("/api/keys").status_code == 200  # the new role applies to the live session
        assert admin.patch(f"/api/users/{carol['id']}", json={"password": "carol-pass-2"}).status_code == 200
        assert session.get("/api/auth/me").status_code == 401  # a password change ends the sessions
        session = dash.login("carol", "carol-pass-2")
        assert admin.delete(f"/api/users/{carol['id']}").status_code == 204
        assert session.get("/api/auth/me").status_code == 401  # so does deleting the user
        assert admin.delete(f"/api/users/{carol['id']}").status_code == 404
        assert admin.patch("/api/users/999999", json={"role": "viewer"}).status_code == 404

        me = admin.get("/api/auth/me").json()["user"]
        last = admin.delete(f"/api/users/{me['id']}")
        assert last.status_code == 409 and error_of(last)["code"] == "last_admin"
        demote = admin.patch(f"/api/users/{me['id']}", json={"role": "viewer"})
        assert demote.status_code == 409
        users = admin.get("/api/users").json()
        assert {"admin", "viewer"} <= {u["username"] for u in users["data"]}
        assert "password" not in str(users).replace("password_changed_at", "")


def test_cli_password_change_ends_a_running_servers_sessions_within_a_second(dash: Dash) -> None:
    assert create_user(dash.gateway, "erin", "viewer", "erin-pass-1").returncode == 0
    listed = dash.gateway.cli("users", "list").stdout
    assert "erin" in listed and "viewer" in listed and "$2b$" not in listed
    session = dash.login("erin", "erin-pass-1")
    subprocess.run(
        [sys.executable, "-m", "gophergate", "users", "passwd", "erin"],
        env=dash.gateway.env,
        cwd=dash.gateway.tmp_path,
        input="erin-pass-2\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    time.sleep(1.3)
    assert session.get("/api/auth/me").status_code == 401
    dash.login("erin", "erin-pass-2").close()
    assert dash.gateway.cli("users", "delete", "erin").returncode == 0
    assert dash.gateway.cli("users", "delete", "erin", check=False).returncode == 1
    assert create_user(dash.gateway, "bad", "root", "whatever-123").returncode == 2
    assert create_user(dash.gateway, "viewer", "viewer", "whatever-123").returncode == 1  # exists


# -- providers ----------------------------------------------------------------------------------------------


def test_providers_list_masks_keys_and_hides_them_from_viewers(dash: Dash) -> None:
    with dash.login() as admin:
        items = {p["name"]: p for p in admin.get("/api/providers").json()["data"]}
        openai_item = items["openai"]
        assert openai_item["source"] == "env" and openai_item["kind"] == "openai" and openai_item["enabled"]
        assert openai_item["api_key_masked"] == "sk-...0001"
        assert set(openai_item["health"]) == {"error_rate", "p50_ms", "requests"}
    with dash.login("viewer", VIEWER_PASSWORD) as viewer:
        items = {p["name"]: p for p in viewer.get("/api/providers").json()["data"]}
        assert items["openai"]["api_key_masked"] is None


def test_a_provider_added_from_the_api_serves_v1_without_restart(dash: Dash) -> None:
    with dash.login() as c:
        created = c.post(
            "/api/providers",
            json={
                "name": "acme",
                "kind": "custom",
                "base_url": dash.custom.base_url,
                "api_key": CUSTOM_KEY,
                "models": ["my-model"],
            },
        )
        assert created.status_code == 201, created.text
        item = created.json()
        assert item["source"] == "database" and item["api_key_masked"] == "sk-...9876" and item["served"]
        (row,) = query(dash.gateway.database_url, "SELECT api_key_encrypted FROM provider_configs WHERE name='acme'")
        sealed = bytes(row["api_key_encrypted"])
        assert len(sealed) == 12 + len(CUSTOM_KEY) + 16 and CUSTOM_KEY.encode() not in sealed  # nonce, text, tag
        reply = dash.v1().chat.completions.create(model="my-model", messages=[{"role": "user", "content": "yo"}])
        assert reply.choices[0].message.content == "echo: yo"
        assert dash.custom.requests[-1].headers.get("authorization") == f"Bearer {CUSTOM_KEY}"

        test = c.post("/api/providers/acme/test").json()
        assert test["ok"] is True and test["models"] == 1 and test["latency_ms"] >= 0

        dup = c.post("/api/providers", json={"name": "acme", "kind": "custom", "base_url": dash.custom.base_url})
        assert dup.status_code == 409

        wrong_key = c.patch("/api/providers/acme", json={"api_key": "sk-wrong-key-000000"})
        assert wrong_key.status_code == 200 and wrong_key.json()["api_key_masked"] == "sk-...0000"
        failed = c.post("/api/providers/acme/test").json()
        assert failed["ok"] is False and "sk-wrong" not in failed["error"]

        disabled = c.patch("/api/providers/acme", json={"enabled": False, "api_key": CUSTOM_KEY})
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        with pytest.raises(openai.NotFoundError):
            dash.v1().chat.completions.create(model="my-model", messages=[{"role": "user", "content": "yo"}])
        assert c.patch("/api/providers/acme", json={"enabled": True}).status_code == 200
        dash.v1().chat.completions.create(model="my-model", messages=[{"role": "user", "content": "back"}])

        assert c.delete("/api/providers/acme").status_code == 204
        with pytest.raises(openai.NotFoundError):
            dash.v1().chat.completions.create(model="my-model", messages=[{"role": "user", "content": "yo"}])
        assert c.delete("/api/providers/acme").status_code == 404
        assert c.post("/api/providers/acme/test").status_code == 404


def test_provider_validation_errors(dash: Dash) -> None:
    with dash.login() as c:
        cases = [
            ({"name": "x", "kind": "nope"}, "kind"),
            ({"name": "openai", "kind": "custom", "base_url": "http://127.0.0.1:9"}, "kind"),
            ({"name": "nourl", "kind": "custom"}, "base_url"),
            ({"name": "Bad Name", "kind": "custom", "base_url": "http://x"}, "name"),
            ({"name": "ds", "kind": "custom", "base_url": "http://x", "dialect": "klingon"}, "dialect"),
            ({"name": "deepseek", "kind": "deepseek"}, "api_key"),
        ]
        for body, param in cases:
            r = c.post("/api/providers", json=body)
            assert r.status_code == 400, (body, r.text)
            assert error_of(r)["param"] == param, (body, r.text)
        env_delete = c.delete("/api/providers/openai")
        assert env_delete.status_code == 400 and error_of(env_delete)["code"] == "provider_not_deletable"
        assert c.patch("/api/providers/nope", json={"enabled": False}).status_code == 404


def test_disabling_an_env_provider_and_deleting_the_override_restores_it(dash: Dash) -> None:
    with dash.login() as c:
        off = c.patch("/api/providers/openai", json={"enabled": False})
        assert off.status_code == 200 and off.json()["source"] == "database" and not off.json()["enabled"]
        with pytest.raises(openai.NotFoundError):
            dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert c.delete("/api/providers/openai").status_code == 204
        restored = {p["name"]: p for p in c.get("/api/providers").json()["data"]}["openai"]
        assert restored["source"] == "env" and restored["enabled"]
        dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


# -- models -------------------------------------------------------------------------------------------------


def _model(c: httpx.Client, model_id: str) -> dict[str, Any]:
    cursor: str | None = None
    while True:
        page = c.get("/api/models", params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        for item in page["data"]:
            if item["id"] == model_id:
                return dict(item)
        cursor = page["next_cursor"]
        if cursor is None:
            raise AssertionError(f"{model_id} not listed")


def test_models_view_switches_and_price_overrides(dash: Dash) -> None:
    with dash.login() as c:
        item = _model(c, "gpt-4o-mini")
        assert item["provider"] == "openai" and item["enabled"] and item["registry_id"] == "openai/gpt-4o-mini"
        assert item["pricing"]["input"] is not None and item["override"] is None

        off = c.patch("/api/models/openai/gpt-4o-mini", json={"enabled": False})
        assert off.status_code == 200 and off.json()["enabled"] is False
        with pytest.raises(openai.NotFoundError) as caught:
            dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert "disabled" in str(caught.value) and caught.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):  # the prefixed spelling is the same model
            dash.v1().chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert "gpt-4o-mini" not in {m.id for m in dash.v1().models.list()}
        assert c.patch("/api/models/openai/gpt-4o-mini", json={"enabled": True}).json()["enabled"] is True
        dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

        priced = c.put("/api/models/openai/gpt-4o-mini/price", json={"input": "0.5", "output": "1.25"})
        assert priced.status_code == 200, priced.text
        assert priced.json()["override"]["input"] == "0.5" and priced.json()["override"]["origin"] == "cli"
        listed = {m.id: m for m in dash.v1().models.list()}
        assert str(listed["gpt-4o-mini"].pricing["input"]) == "0.5"  # type: ignore[attr-defined]
        assert c.delete("/api/models/openai/gpt-4o-mini/price").status_code == 204
        assert c.delete("/api/models/openai/gpt-4o-mini/price").status_code == 404
        assert _model(c, "gpt-4o-mini")["override"] is None

        bad = c.put("/api/models/openai/gpt-4o-mini/price", json={"input": "cheap"})
        assert bad.status_code == 400 and error_of(bad)["param"] == "input"
        lonely = c.put("/api/models/openai/gpt-4o-mini/price", json={"discount_percent": "10"})
        assert lonely.status_code == 400
        assert c.put("/api/models/openai/gpt-4o-mini/price", json={}).status_code == 400
        assert c.patch("/api/models/nope/x", json={"enabled": False}).status_code == 404
    with dash.login("viewer", VIEWER_PASSWORD) as viewer:
        assert viewer.get("/api/models").status_code == 200


def test_model_ids_with_slashes_work_in_paths(dash: Dash) -> None:
    with dash.login() as c:
        r = c.patch("/api/models/openai/org/some-model", json={"enabled": False})
        assert r.status_code == 200 and r.json()["model"] == "org/some-model"
        assert c.put("/api/models/openai/org/some-model/price", json={"input": "1"}).status_code == 200
        assert c.delete("/api/models/openai/org/some-model/price").status_code == 204
        assert c.patch("/api/models/openai/org/some-model", json={"enabled": True}).status_code == 200


# -- system, openapi, UI ------------------------------------------------------------------------------------


def test_system_reports_resources_log_registry_and_provider_health(dash: Dash) -> None:
    dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):
        dash.v1().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FAIL 500"}])
    with dash.login("viewer", VIEWER_PASSWORD) as c:
        body = c.get("/api/system").json()
    assert body["version"] and body["uptime_s"] >= 0
    assert {"cpu_percent", "memory", "disk"} <= set(body["host"])
    assert {"total", "used", "percent"} <= set(body["host"]["memory"])
    assert body["process"]["rss_bytes"] > 0
    assert {"queue_depth", "writer_lag_s", "rows_written"} <= set(body["log"])
    assert body["registry"]["models"] > 0
    health = {p["name"]: p for p in body["providers"]}["openai"]
    assert health["requests"] >= 2 and 0 < health["error_rate"] < 1 and health["p50_ms"] > 0


def test_openapi_documents_every_endpoint(dash: Dash) -> None:
    with dash.client() as c:
        spec = c.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/users",
        "/api/users/{user_id}",
        "/api/keys",
        "/api/keys/{key_id}",
        "/api/keys/{key_id}/revoke",
        "/api/keys/{key_id}/rotate",
        "/api/providers",
        "/api/providers/{name}",
        "/api/providers/{name}/test",
        "/api/models",
        "/api/models/{provider}/{model}",
        "/api/models/{provider}/{model}/price",
        "/api/system",
    ):
        assert path in paths, path


def test_ui_root_serves_the_built_dashboard_and_v1_is_untouched(dash: Dash) -> None:
    # `make test` builds the UI first (the "not built" page is pinned in tests/unit/http/test_static.py)
    built = Path(gophergate.__file__).parent / "static" / "index.html"
    with dash.client() as c:
        root = c.get("/")
        assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
        assert root.text == built.read_text()
        assert c.get("/some/dashboard/page").text == root.text  # the SPA fallback
        assert c.get("/api/unknown").status_code == 404 and error_of(c.get("/api/unknown"))["code"] == "not_found"
        assert c.get("/v1/unknown").status_code in (401, 404)
        assert c.get("/healthz").json() == {"status": "ok"}


# -- no secret anywhere (runs last in this module) ---------------------------------------------------------


def test_zz_no_secret_in_any_api_answer_or_log_line(dash: Dash) -> None:
    with dash.login() as c:  # at least one of each secret, even when this test runs alone
        dash.secrets_shown.add(c.post("/api/keys", json={"name": "zz"}).json()["secret"])
        c.get("/api/keys")
        c.get("/api/providers")
        c.get("/api/users")
    password_hashes = [
        row["password_hash"] for row in query(dash.gateway.database_url, "SELECT password_hash FROM users")
    ]
    always_secret = [UPSTREAM_KEY, CUSTOM_KEY, ADMIN_PASSWORD, VIEWER_PASSWORD, "$2b$", *password_hashes, *dash.tokens]
    for method, path, body in dash.bodies:
        for secret in always_secret:
            assert secret not in body, (method, path)
        shows_secret = method == "POST" and (path == "/api/keys" or path.endswith("/rotate"))
        if not shows_secret:
            for secret in dash.secrets_shown:
                assert secret not in body, (method, path)
    logs = dash.gateway.logs()
    for secret in [*always_secret, *dash.secrets_shown, dash.gateway.env["GOPHERGATE_ENCRYPTION_KEY"]]:
        assert secret not in logs
    stored = query(dash.gateway.database_url, "SELECT api_key_encrypted FROM provider_configs")
    for row in stored:
        assert CUSTOM_KEY.encode() not in bytes(row["api_key_encrypted"] or b"")

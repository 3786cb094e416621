"""Dashboard sessions and settings that need a gateway of their own: login throttling, idle expiry, the first
admin, and changes made in one process reaching another one on the same database."""

from __future__ import annotations

import time

import httpx
import openai

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.integration.test_admin_api import create_user
from tests.support import Gateway


def _login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(url + "/api/auth/login", json={"username": username, "password": password}, timeout=30)


def test_repeated_failures_throttle_by_username_and_by_ip_with_retry_after(make_gateway: type[Gateway]) -> None:
    gw = make_gateway(env={"GOPHERGATE_LOGIN_MAX_FAILURES": "3"}).start()
    assert create_user(gw, "frank", "viewer", "frank-pass-1").returncode == 0
    for _ in range(3):
        assert _login(gw.url, "frank", "wrong-password").status_code == 401
    throttled = _login(gw.url, "frank", "frank-pass-1")  # even the right password now waits
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 15 * 60
    assert throttled.json()["error"]["code"] == "login_throttled"
    # the failures came from one IP: other names from it are throttled too
    assert _login(gw.url, "someone-else", "whatever-123").status_code == 429


def test_first_start_without_a_user_or_admin_password_logs_how_to_create_one(make_gateway: type[Gateway]) -> None:
    gw = make_gateway().start()
    assert "gophergate users create --username NAME --role admin" in gw.logs()
    assert _login(gw.url, "admin", "anything-123").status_code == 401


def test_idle_sessions_expire_and_activity_keeps_them_alive(make_gateway: type[Gateway]) -> None:
    gw = make_gateway(env={"GOPHERGATE_ADMIN_PASSWORD": "admin-pass-1", "GOPHERGATE_SESSION_IDLE_MINUTES": "0.04"})
    gw.start()  # idle limit: 2.4 s
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        assert c.post("/api/auth/login", json={"username": "admin", "password": "admin-pass-1"}).status_code == 200
        for _ in range(4):  # 4.8 s of activity, more than the idle limit
            time.sleep(1.2)
            assert c.get("/api/auth/me").status_code == 200
        time.sleep(3.0)
        assert c.get("/api/auth/me").status_code == 401


def test_changes_in_one_process_reach_another_on_the_same_database(make_gateway: type[Gateway]) -> None:
    upstream = FakeOpenAICompat(
        "openai", api_key="sk-other-upstream-1234", models=["shared-model", "other-model"]
    ).start()
    try:
        first = make_gateway(env={"GOPHERGATE_ADMIN_PASSWORD": "admin-pass-1"}).start()
        second = make_gateway(
            database_url=first.database_url,
            env={"GOPHERGATE_ENCRYPTION_KEY": first.env["GOPHERGATE_ENCRYPTION_KEY"]},
        ).start()
        with httpx.Client(base_url=first.url, timeout=30) as a:
            login = a.post("/api/auth/login", json={"username": "admin", "password": "admin-pass-1"})
            a.headers["x-csrf-token"] = login.json()["csrf_token"]
            token = a.cookies["gg_session"]
            with httpx.Client(base_url=second.url, timeout=30, cookies={"gg_session": token}) as b:
                assert b.get("/api/auth/me").status_code == 200  # one session store for every process
                created = a.post(
                    "/api/providers",
                    json={"name": "shared", "kind": "custom", "base_url": upstream.base_url,
                          "api_key": "sk-other-upstream-1234", "models": ["shared-model", "other-model"]},
                )  # fmt: skip
                assert created.status_code == 201
                client = openai.OpenAI(base_url=second.base_url, api_key=second.key, max_retries=0)
                deadline = time.monotonic() + 5
                while True:
                    try:
                        reply = client.chat.completions.create(
                            model="shared-model", messages=[{"role": "user", "content": "hello"}]
                        )
                        break
                    except openai.NotFoundError:
                        assert time.monotonic() < deadline, "the second process never served the new provider"
                        time.sleep(0.1)
                assert reply.choices[0].message.content == "echo: hello"
                assert a.patch("/api/models/shared/other-model", json={"enabled": False}).status_code == 200
                deadline = time.monotonic() + 5
                while True:
                    try:
                        client.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "x"}])
                    except openai.NotFoundError as exc:
                        assert "disabled" in str(exc)
                        break
                    assert time.monotonic() < deadline, "the second process never saw the model switch"
                    time.sleep(0.1)
                assert a.post("/api/auth/logout").status_code == 204
                time.sleep(1.2)
                assert b.get("/api/auth/me").status_code == 401  # revoked there within a second
    finally:
        upstream.stop()

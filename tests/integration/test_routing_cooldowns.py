"""Cooldowns, probes and affinity end to end: one gateway with its state in the process, and three gateway
processes sharing theirs through Redis. Driven by the official openai SDK against strict fakes."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.fakes.openai_compat import Behaviour, FakeOpenAICompat
from tests.support import Gateway, admin_session, postgres_database

KEY = "sk-upstream-test"
MODELS = ["gpt-4o-mini", "gpt-5-mini"]
PASSWORD = "routing-admin-pass-1"
REDIS_ENV = "GOPHERGATE_TEST_REDIS_URL"

CONFIG = """
[routing]
cooldown_after = {after}
cooldown_s = 1.5

[providers.openai-eu]
base_url = "{eu}"
api_key = "{key}"
models = ["gpt-4o-mini", "gpt-5-mini"]
registry_provider = "openai"

[model_groups.cool]
strategy = "priority"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "openai-eu/gpt-4o-mini" }}]

[model_groups.sticky]
strategy = "weighted"
affinity = "session"
targets = [{{ model = "openai/gpt-5-mini" }}, {{ model = "openai-eu/gpt-5-mini" }}]

[model_groups.prefixed]
strategy = "weighted"
affinity = "prefix"
targets = [{{ model = "openai/gpt-5-mini" }}, {{ model = "openai-eu/gpt-5-mini" }}]
"""


def _fakes() -> dict[str, FakeOpenAICompat]:
    fakes = {
        "openai": FakeOpenAICompat("openai", api_key=KEY, models=MODELS),
        "eu": FakeOpenAICompat("openai", api_key=KEY, models=MODELS),
    }
    for fake in fakes.values():
        fake.start()
    return fakes


def _gateway(tmp: Any, fakes: dict[str, FakeOpenAICompat], after: int, **env: str) -> Gateway:
    config = CONFIG.format(eu=fakes["eu"].base_url, key=KEY, after=after)
    base = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fakes["openai"].base_url, "GOPHERGATE_ADMIN_PASSWORD": PASSWORD}
    return Gateway(tmp, env={**base, **env}, config_toml=config)


def _client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)


def _served(gateway: Gateway, model: str = "cool", **kwargs: Any) -> tuple[str, str]:
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": kwargs.pop("text", "hello")}], **kwargs
    )
    return raw.headers["x-gophergate-served-by"], raw.headers["x-gophergate-attempts"]


def _chats(fake: FakeOpenAICompat) -> int:
    return len([r for r in fake.requests if r.path.endswith("/chat/completions")])


class Single:
    def __init__(self, gateway: Gateway, fakes: dict[str, FakeOpenAICompat], admin: Any) -> None:
        self.gateway = gateway
        self.fakes = fakes
        self.admin = admin  # signed in once: a login costs a password hash

    def targets(self) -> dict[str, dict[str, Any]]:
        response = self.admin.get("/api/routing")
        assert response.status_code == 200, response.text
        return {f"{t['provider']}/{t['model']}": t for t in response.json()["targets"]}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Single]:
    fakes = _fakes()
    gateway = _gateway(tmp_path_factory.mktemp("cooldowns"), fakes, after=2)
    try:
        gateway.start()
        with admin_session(gateway.url, PASSWORD) as admin:
            yield Single(gateway, fakes, admin)
    finally:
        gateway.stop()
        for fake in fakes.values():
            fake.stop()


def test_a_failing_target_cools_down_is_skipped_then_probed_and_reopened(single: Single) -> None:
    openai_fake = single.fakes["openai"]
    openai_fake.script_chat(Behaviour("status", status=500), Behaviour("status", status=500))
    assert _served(single.gateway) == ("openai-eu/gpt-4o-mini", "2")
    assert _served(single.gateway) == ("openai-eu/gpt-4o-mini", "2")  # the second failure: cooled down now
    calls = _chats(openai_fake)
    assert single.targets()["openai/gpt-4o-mini"]["state"] == "cooling_down"
    assert _served(single.gateway) == ("openai-eu/gpt-4o-mini", "1")  # skipped without a call
    assert _chats(openai_fake) == calls
    time.sleep(1.6)
    assert _served(single.gateway) == ("openai/gpt-4o-mini", "1")  # the probe succeeds: open again
    assert single.targets()["openai/gpt-4o-mini"]["state"] == "open"
    assert _served(single.gateway) == ("openai/gpt-4o-mini", "1")


async def _event(ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = orjson.loads(msg.data)
            if data["type"] == "event" and data["data"]["kind"] == kind:
                return dict(data["data"])


async def test_the_live_hub_announces_a_cooldown_and_the_recovery(single: Single) -> None:
    headers = {"Origin": single.gateway.url, "Cookie": f"gg_session={single.admin.cookies['gg_session']}"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(single.gateway.url + "/ws", headers=headers) as ws,
    ):
        single.fakes["openai"].script_chat(*[Behaviour("status", status=429)] * 2)
        for _ in range(2):
            await asyncio.to_thread(_served, single.gateway)
        cooled = await _event(ws, "target_cooled_down")
        assert cooled["detail"]["provider"] == "openai" and cooled["detail"]["model"] == "gpt-4o-mini"
        assert 0 < cooled["detail"]["cooldown_s"] <= 1.5
        await asyncio.sleep(1.6)
        assert (await asyncio.to_thread(_served, single.gateway))[0] == "openai/gpt-4o-mini"
        recovered = await _event(ws, "target_recovered")
        assert recovered["detail"] == {"provider": "openai", "model": "gpt-4o-mini"}


def test_a_failed_probe_cools_the_target_again_for_twice_as_long(single: Single) -> None:
    openai_fake = single.fakes["openai"]
    openai_fake.script_chat(*[Behaviour("status", status=503)] * 3)
    _served(single.gateway)
    _served(single.gateway)
    time.sleep(1.6)
    assert _served(single.gateway) == ("openai-eu/gpt-4o-mini", "2")  # the probe failed
    remaining = single.targets()["openai/gpt-4o-mini"]["cooldown_remaining_s"]
    assert 2.5 < remaining <= 3.0
    time.sleep(1.6)
    assert _served(single.gateway) == ("openai-eu/gpt-4o-mini", "1")  # still cooling: 3 s this time
    time.sleep(1.5)
    assert _served(single.gateway) == ("openai/gpt-4o-mini", "1")


def test_when_every_target_cools_down_the_one_ending_first_is_tried(single: Single) -> None:
    single.fakes["openai"].script_chat(*[Behaviour("status", status=500)] * 2)
    single.fakes["eu"].script_chat(*[Behaviour("status", status=500)] * 2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _served(single.gateway)
    targets = single.targets()
    assert {targets[t]["state"] for t in ("openai/gpt-4o-mini", "openai-eu/gpt-4o-mini")} == {"cooling_down"}
    first = min(targets, key=lambda t: targets[t]["cooldown_remaining_s"] if t.endswith("4o-mini") else 99)
    assert _served(single.gateway)[0] == first  # not an outright failure
    time.sleep(1.6)


def test_session_affinity_keeps_a_session_on_one_target_and_moves_it_when_the_target_cools(single: Single) -> None:
    served = {_served(single.gateway, "sticky", user="alice")[0] for _ in range(12)}
    assert len(served) == 1
    (pinned,) = served
    by_header = {
        _client(single.gateway)
        .chat.completions.with_raw_response.create(
            model="sticky",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-gophergate-session": "conversation-7"},
        )
        .headers["x-gophergate-served-by"]
        for _ in range(12)
    }
    assert len(by_header) == 1
    sessions = {_served(single.gateway, "sticky", user=f"user-{n}")[0] for n in range(24)}
    assert sessions == {"openai/gpt-5-mini", "openai-eu/gpt-5-mini"}  # different sessions spread out
    fake = single.fakes["openai" if pinned.startswith("openai/") else "eu"]
    fake.script_chat(Behaviour("status", status=500))
    moved = [_served(single.gateway, "sticky", user="alice")[0] for _ in range(4)]
    assert moved[0] != pinned  # the pinned target failed: the other one answered
    assert set(moved) == {moved[0]}  # and the pin followed the answer


def test_prefix_affinity_pins_by_system_prompt_and_first_message(single: Single) -> None:
    client = _client(single.gateway)

    def ask(system: str, question: str) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="prefixed",
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": "the document"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": question},
            ],
        )
        return raw.headers["x-gophergate-served-by"]

    assert len({ask("You are a lawyer.", f"question {n}") for n in range(10)}) == 1
    assert len({ask(f"System prompt {n}.", "q") for n in range(24)}) == 2


# -- three processes, one Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Gateway], dict[str, FakeOpenAICompat]]]:
    redis_url = os.environ.get(REDIS_ENV)
    if not redis_url:
        pytest.skip(f"Redis tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0); .ci/run sets it")
    fakes = _fakes()
    prefix = f"gg-test-{uuid.uuid4().hex[:8]}:"
    gateways: list[Gateway] = []
    with postgres_database() as database_url:
        try:
            for n in range(3):
                gateway = _gateway(
                    tmp_path_factory.mktemp(f"cluster{n}"),
                    fakes,
                    after=3,
                    GOPHERGATE_REDIS_URL=redis_url,
                    GOPHERGATE_REDIS_KEY_PREFIX=prefix,
                    GOPHERGATE_DATABASE_URL=database_url,
                )
                if gateways:
                    gateway.env["GOPHERGATE_ENCRYPTION_KEY"] = gateways[0].env["GOPHERGATE_ENCRYPTION_KEY"]
                gateway.start()
                if gateways:
                    gateway.key = gateways[0].key  # one client key for the cluster (pins are per client key)
                gateways.append(gateway)
            yield gateways, fakes
        finally:
            for gateway in gateways:
                gateway.stop()
            for fake in fakes.values():
                fake.stop()


def test_cooldowns_are_counted_and_shared_by_three_processes_through_redis(
    cluster: tuple[list[Gateway], dict[str, FakeOpenAICompat]],
) -> None:
    gateways, fakes = cluster
    fakes["openai"].script_chat(*[Behaviour("status", status=500)] * 3)
    for gateway in gateways:  # one failure on each instance: three in the cluster
        assert _served(gateway) == ("openai-eu/gpt-4o-mini", "2")
    time.sleep(0.2)  # the cooldown is published
    calls = _chats(fakes["openai"])
    for gateway in gateways:
        assert _served(gateway) == ("openai-eu/gpt-4o-mini", "1")
    assert _chats(fakes["openai"]) == calls
    time.sleep(1.6)
    assert _served(gateways[1]) == ("openai/gpt-4o-mini", "1")  # one probe, on any instance, reopens it
    time.sleep(0.2)
    for gateway in gateways:
        assert _served(gateway) == ("openai/gpt-4o-mini", "1")


def test_a_session_pin_holds_across_instances(cluster: tuple[list[Gateway], dict[str, FakeOpenAICompat]]) -> None:
    gateways, _ = cluster
    first = _served(gateways[0], "sticky", user="carol")[0]
    time.sleep(0.1)
    assert {_served(g, "sticky", user="carol")[0] for g in gateways for _ in range(4)} == {first}

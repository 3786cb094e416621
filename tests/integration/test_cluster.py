"""Three gateway instances on one PostgreSQL database and one Redis behind a real nginx load balancer (issue 20,
"Tested as a cluster"), driven with the official openai and anthropic SDKs against the strict fakes.

nginx is the Debian package (``/usr/sbin/nginx``; ``.ci/run`` installs it), started by the module on a free
loopback port with its own configuration and paths in a temporary directory: the ``upstream`` block of
docs/operations.md (round robin, ``max_fails=1 fail_timeout=2s``, ``proxy_next_upstream error timeout``, a
short connect timeout, WebSocket upgrade on ``/ws``), plus one line for the test: ``X-Upstream-Addr`` (nginx's
``$upstream_addr``) on every answer says which instance served it. The module's tests share the cluster; the
last one kills two of the three instances.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import anthropic
import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import SKIP_SIGNATURE, FakeGemini
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.nginx import nginx
from tests.support import Gateway, admin_session, echoed_assistant, gateway_cluster, query

NAMES = ("gw-a", "gw-b", "gw-c")
UPSTREAM_KEY = "sk-upstream-cluster-0123456789"
ADMIN_PASSWORD = "cluster-admin-password-1"
SONNET = "claude-sonnet-4-5-20250929"  # thinking with a budget (reasoning_effort)
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
    },
]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class Cluster:
    gateways: list[Gateway]
    url: str  # nginx
    database_url: str
    openai_fake: FakeOpenAICompat
    gemini: FakeGemini
    anthropic: FakeAnthropic

    @property
    def key(self) -> str:
        return self.gateways[0].key

    def openai(self, index: int | None = None) -> openai.OpenAI:
        """The SDK through nginx, or straight to instance ``index``."""
        base = self.url + "/v1" if index is None else self.gateways[index].base_url
        return openai.OpenAI(base_url=base, api_key=self.key, max_retries=0, timeout=30)

    def anthropic_sdk(self, index: int | None = None) -> anthropic.Anthropic:
        base = self.url if index is None else self.gateways[index].url
        return anthropic.Anthropic(base_url=base, api_key=self.key, max_retries=0, timeout=30)

    def served_by(self, headers: Any) -> int:
        """The instance that answered through nginx: the last address of ``$upstream_addr`` (earlier ones were
        tried and failed)."""
        last = headers["x-upstream-addr"].split(",")[-1].strip()
        ports = [g.port for g in self.gateways]
        return ports.index(int(last.rsplit(":", 1)[1]))

    def rows(self, request_ids: list[str]) -> list[dict[str, Any]]:
        if not request_ids:
            return []
        return query(
            self.database_url,
            "SELECT * FROM request_log WHERE request_id = ANY(CAST(:ids AS text[])) ORDER BY id",
            {"ids": request_ids},
        )

    def wait_rows(self, request_ids: list[str], timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(request_ids)
            if len({r["request_id"] for r in rows}) >= len(set(request_ids)) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def _nginx_conf(directory: Path, port: int, gateway_ports: list[int]) -> str:
    """docs/operations.md's cluster configuration on loopback, without TLS, plus ``X-Upstream-Addr`` for the test.
    No ``keepalive`` to the instances: nginx never resends a POST it has sent, and on a kept-alive connection the
    instance closes (it stops, or the connection idled out) a POST can be sent just as it closes (measured here:
    a 502 from the SIGTERM'd instance in one run of three). A fresh connection is refused instead, and retried."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in gateway_ports)
    return f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream gophergate {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 10m;
        add_header X-Upstream-Addr $upstream_addr always;
        location / {{
            proxy_pass http://gophergate;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_connect_timeout 1s;
            proxy_read_timeout 900s;
            proxy_next_upstream error timeout;
        }}
        location = /ws {{
            proxy_pass http://gophergate;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 1s;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    with (
        FakeOpenAICompat("openai", api_key=UPSTREAM_KEY) as openai_fake,
        FakeGemini() as gemini,
        FakeAnthropic(api_key=UPSTREAM_KEY) as anthropic_fake,
    ):
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "GEMINI_API_KEY": gemini.api_key,
            "GEMINI_BASE_URL": gemini.base_url,
            "ANTHROPIC_API_KEY": UPSTREAM_KEY,
            "ANTHROPIC_BASE_URL": anthropic_fake.base_url,
            "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "GOPHERGATE_LOG_FLUSH_INTERVAL_MS": "10",  # the default: the rows a SIGKILL loses are the default's
            "GOPHERGATE_KEY_REFRESH_SECONDS": "0.25",  # the default: revocation is measured as shipped
        }
        # The first instance migrates the empty database; the other two start beside each other.
        with gateway_cluster(root, env, NAMES, together=True) as instances:
            directory = root / "nginx"
            directory.mkdir()
            ports = [g.port for g in instances.gateways]
            with nginx(directory, lambda port: _nginx_conf(directory, port, ports)) as port:
                yield Cluster(
                    instances.gateways,
                    f"http://127.0.0.1:{port}",
                    instances.database_url,
                    openai_fake,
                    gemini,
                    anthropic_fake,
                )


class Answer(NamedTuple):
    request_id: str
    instance: int  # the one nginx chose
    prompt_tokens: int
    completion_tokens: int


def _chat_through(cluster: Cluster, text: str, *, stream: bool = False) -> Answer:
    """One chat through nginx, with the usage the client was told."""
    client = cluster.openai()
    messages: Any = [{"role": "user", "content": text}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        usage = raw.parse().usage
        assert usage is not None
        return Answer(
            raw.headers["x-request-id"], cluster.served_by(raw.headers), usage.prompt_tokens, usage.completion_tokens
        )
    streamed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(streamed.parse())
    usage = chunks[-1].usage
    assert usage is not None and len(chunks) > 2
    return Answer(
        streamed.headers["x-request-id"],
        cluster.served_by(streamed.headers),
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def _mixed_traffic(cluster: Cluster, count: int) -> list[Answer]:
    """``count`` requests through nginx, one after another (round robin spreads them), every third a stream."""
    return [_chat_through(cluster, f"WORDS {3 + n % 5} request {n}", stream=n % 3 == 2) for n in range(count)]


def _login_cookie(url: str) -> str:
    with admin_session(url, ADMIN_PASSWORD) as client:
        return f"gg_session={client.cookies['gg_session']}"


# -- the live hub --------------------------------------------------------------------------------------------------


async def _ws(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """The dashboard's /ws at ``url`` (an instance or nginx) with a session from logging in there."""
    headers = {"Origin": url, "Cookie": _login_cookie(url)}
    return await session.ws_connect(url + "/ws", headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5))


async def test_one_ws_client_sees_every_request_of_the_cluster(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session, await _ws(session, cluster.gateways[0].url) as ws:
        sent = await asyncio.to_thread(_mixed_traffic, cluster, 9)
        assert {a.instance for a in sent} == {0, 1, 2}  # round robin: every instance served some
        missing = {a.request_id for a in sent}
        try:
            async with asyncio.timeout(10):
                while missing:
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    data = orjson.loads(msg.data)
                    if data["type"] == "request":
                        missing.discard(data["data"]["request_id"])
        except TimeoutError:
            pass
    served = sorted(NAMES[a.instance] for a in sent if a.request_id in missing)
    assert not missing, f"/ws on {NAMES[0]} never showed {len(missing)} of 9 requests, served by {served}"


async def test_the_metrics_message_lists_every_instance_by_name(cluster: Cluster) -> None:
    """Through nginx: the documented WebSocket upgrade reaches whichever instance, and it reports all three."""
    names: list[str] = []
    async with aiohttp.ClientSession() as session, await _ws(session, cluster.url) as ws:
        try:
            async with asyncio.timeout(8):  # a metrics message every 2 s; one may predate another's first report
                while names != sorted(NAMES):
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    data = orjson.loads(msg.data)
                    if data["type"] == "metrics":
                        names = sorted(entry["instance"] for entry in data["data"].get("instances", ()))
        except TimeoutError:
            pass
    assert names == sorted(NAMES)


# -- pushed changes ------------------------------------------------------------------------------------------------


def test_a_key_revoked_on_one_instance_is_refused_by_all_three_within_a_second(cluster: Cluster) -> None:
    with admin_session(cluster.gateways[0].url, ADMIN_PASSWORD) as admin:
        created = admin.post("/api/keys", json={"name": "revoke-me"})
        assert created.status_code == 201, created.text
        key_id, secret = created.json()["key"]["id"], created.json()["secret"]
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        clients = [
            httpx.Client(base_url=g.base_url, headers={"authorization": f"Bearer {secret}"}, timeout=10)
            for g in cluster.gateways
        ]
        try:
            deadline = time.monotonic() + 5  # a new key reaches the other instances first (polled or pushed)
            while [c.post("/chat/completions", json=body).status_code for c in clients] != [200, 200, 200]:
                assert time.monotonic() < deadline, "the new key never worked on every instance"
                time.sleep(0.05)
            assert admin.post(f"/api/keys/{key_id}/revoke").status_code == 200
            revoked = time.monotonic()
            refused_after: dict[str, float] = {}
            while len(refused_after) < 3 and time.monotonic() - revoked < 2:
                for index, client in enumerate(clients):
                    if NAMES[index] in refused_after:
                        continue
                    r = client.post("/chat/completions", json=body)
                    if r.status_code == 401:
                        assert r.json()["error"]["code"] == "invalid_api_key"
                        refused_after[NAMES[index]] = time.monotonic() - revoked
        finally:
            for client in clients:
                client.close()
    print(f"\ncluster: revoked key refused after {', '.join(f'{n} {s:.3f} s' for n, s in refused_after.items())}")
    assert sorted(refused_after) == sorted(NAMES), f"still accepted after 2 s by {set(NAMES) - set(refused_after)}"
    assert max(refused_after.values()) <= 1.0, refused_after


# -- conversation memories ------------------------------------------------------------------------------------------


def _gemini_conversation(first: openai.OpenAI, second: openai.OpenAI) -> tuple[Any, Any]:
    model = "gemini-3-pro-preview"  # Gemini 3 checks the signature of every tool-call turn
    messages: list[Any] = [{"role": "user", "content": "call all tools please"}]
    one = first.chat.completions.with_raw_response.create(model=model, messages=messages, tools=TOOLS)
    message = one.parse().choices[0].message
    assert message.tool_calls is not None and len(message.tool_calls) == 2
    messages.append(echoed_assistant(message))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "fine"} for c in message.tool_calls]
    two = second.chat.completions.with_raw_response.create(model=model, messages=messages, tools=TOOLS)
    assert (two.parse().choices[0].message.content or "").startswith("tool result:")
    return one.headers, two.headers


def _anthropic_conversation(first: openai.OpenAI, second: openai.OpenAI) -> tuple[Any, Any]:
    messages: list[Any] = [{"role": "user", "content": "weather and time? call all tools"}]
    kwargs: Any = {"model": SONNET, "tools": TOOLS, "reasoning_effort": "low"}
    one = first.chat.completions.with_raw_response.create(messages=messages, **kwargs)
    message = one.parse().choices[0].message
    assert message.tool_calls is not None and len(message.tool_calls) == 2
    messages.append(echoed_assistant(message))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "fine"} for c in message.tool_calls]
    two = second.chat.completions.with_raw_response.create(messages=messages, **kwargs)
    assert two.parse().choices[0].message.content == "tool result: fine | fine"
    return one.headers, two.headers


def _gemini_got_its_own_signature_back(cluster: Cluster) -> None:
    sent = cluster.gemini.last_request.body["contents"]
    signature = sent[1]["parts"][0].get("thoughtSignature")
    # Without the memory the second instance sends Google's skip sentinel: accepted, but the reasoning is lost.
    assert signature != SKIP_SIGNATURE and signature in cluster.gemini.issued_signatures, signature


def _anthropic_got_its_thinking_back(cluster: Cluster) -> None:
    sent = cluster.anthropic.message_requests[-1].body
    # Without the memory the second instance turns thinking off for the turn (the fake would refuse the turn
    # with thinking on and no thinking block).
    assert sent.get("thinking", {}).get("type") == "enabled", sent.get("thinking")
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use", "tool_use"]


def test_gemini_and_anthropic_tool_conversations_continue_on_another_instance(cluster: Cluster) -> None:
    for a, b in ((0, 1), (2, 0)):
        _gemini_conversation(cluster.openai(a), cluster.openai(b))
        _gemini_got_its_own_signature_back(cluster)
        _anthropic_conversation(cluster.openai(b), cluster.openai(a))
        _anthropic_got_its_thinking_back(cluster)


def test_tool_conversations_through_the_load_balancer_continue_wherever_they_land(cluster: Cluster) -> None:
    one, two = _gemini_conversation(cluster.openai(), cluster.openai())
    assert cluster.served_by(one) != cluster.served_by(two)  # round robin: the turns met different instances
    _gemini_got_its_own_signature_back(cluster)
    one, two = _anthropic_conversation(cluster.openai(), cluster.openai())
    assert cluster.served_by(one) != cluster.served_by(two)
    _anthropic_got_its_thinking_back(cluster)

    # The Messages API in, with the anthropic SDK, translated to Gemini 3: the signature is restored by tool_use id.
    client = cluster.anthropic_sdk()
    question: Any = {"role": "user", "content": "call tool for the weather"}
    first = client.messages.with_raw_response.create(
        model="gemini-3-flash", max_tokens=300, tools=[WEATHER_TOOL], messages=[question]
    )
    answer = first.parse()
    tool_use = next(block for block in answer.content if block.type == "tool_use")
    second = client.messages.with_raw_response.create(
        model="gemini-3-flash",
        max_tokens=300,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in answer.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
        ],
    )
    assert cluster.served_by(first.headers) != cluster.served_by(second.headers)
    assert second.parse().stop_reason == "end_turn"
    _gemini_got_its_own_signature_back(cluster)


# -- metrics -------------------------------------------------------------------------------------------------------


def _figures(gateway: Gateway) -> tuple[float, float, float, float]:
    """An instance's requests, prompt and completion tokens and cost, from its own /metrics."""
    response = httpx.get(gateway.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    figures = {"requests": 0.0, "prompt": 0.0, "completion": 0.0, "cost": 0.0}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "gophergate_requests_total":
                figures["requests"] += sample.value
            elif sample.name == "gophergate_tokens_total" and sample.labels["type"] in ("prompt", "completion"):
                figures[sample.labels["type"]] += sample.value
            elif sample.name == "gophergate_cost_usd_total":
                figures["cost"] += sample.value
    return figures["requests"], figures["prompt"], figures["completion"], figures["cost"]


def test_metrics_summed_over_the_instances_equal_the_traffic_sent(cluster: Cluster) -> None:
    before = [_figures(g) for g in cluster.gateways]
    sent = _mixed_traffic(cluster, 12)
    expected = [
        (
            sum(1 for a in sent if a.instance == i),
            sum(a.prompt_tokens for a in sent if a.instance == i),
            sum(a.completion_tokens for a in sent if a.instance == i),
        )
        for i in range(3)
    ]
    assert all(count == 4 for count, _, _ in expected), expected  # round robin: a third each
    deadline = time.monotonic() + 10  # each worker folds its requests into the figures once a second
    while True:
        after = [_figures(g) for g in cluster.gateways]
        counted = [(int(a[0] - b[0]), int(a[1] - b[1]), int(a[2] - b[2])) for a, b in zip(after, before, strict=True)]
        if counted == expected or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    # Each instance counted what it served (requests, prompt and completion tokens), so the sum is the traffic.
    assert counted == expected, f"per instance (requests, prompt, completion): counted {counted}, sent {expected}"
    rows = cluster.wait_rows([a.request_id for a in sent])
    assert len(rows) == len(sent)
    cost = sum(after[i][3] - before[i][3] for i in range(3))
    assert cost == pytest.approx(float(sum(Decimal(str(r["cost_usd"])) for r in rows)), rel=1e-9) and cost > 0


# -- failure under load ---------------------------------------------------------------------------------------------


@dataclass
class Sent:
    request_id: str
    stream: bool
    started: float
    ended: float
    status: int | None  # None: no answer at all (connection failed)
    complete: bool  # the whole answer arrived (a stream up to [DONE])
    instance: int | None  # from X-Upstream-Addr
    error: str = ""


def _one_loaded_request(client: httpx.Client, cluster: Cluster, worker: int, n: int) -> Sent:
    stream = n % 2 == 1
    request_id = f"load-{worker}-{n}-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "WORDS 6 SLOW 40"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    else:
        body["messages"][0]["content"] = "WORDS 6 SLOW 150"
    headers = {"authorization": f"Bearer {cluster.key}", "x-request-id": request_id}
    started = time.monotonic()
    status: int | None = None
    instance: int | None = None
    try:
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            status = response.status_code
            if "x-upstream-addr" in response.headers:
                instance = cluster.served_by(response.headers)
            text = response.read().decode()
        complete = status == 200 and (text.rstrip().endswith("data: [DONE]") if stream else '"choices"' in text)
        return Sent(request_id, stream, started, time.monotonic(), status, complete, instance)
    except httpx.HTTPError as exc:
        return Sent(request_id, stream, started, time.monotonic(), status, False, instance, repr(exc))


def _kill_instance(gateway: Gateway) -> float:
    """SIGKILL to the instance's whole process group, main process and worker at once (what a container kill or a
    lost machine does; a worker whose main process alone is killed stops gracefully on its own). Returns when its
    port refuses connections: until then the kernel still accepts them for the dying processes."""
    assert gateway.proc is not None
    os.killpg(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", gateway.port)) != 0:
                return time.monotonic()
        time.sleep(0.002)
    raise AssertionError(f"port {gateway.port} still accepts 10 s after SIGKILL")


def test_instances_killed_and_stopped_under_load_cost_only_the_killed_ones_requests_in_flight(
    cluster: Cluster,
) -> None:
    killed, stopped, survivor = 1, 2, 0
    done = threading.Event()
    results: list[Sent] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            n = 0
            while not done.is_set():
                sent = _one_loaded_request(client, cluster, worker, n)
                with lock:
                    results.append(sent)
                n += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    kill_at = time.monotonic()
    gone_at = _kill_instance(cluster.gateways[killed])
    time.sleep(1.5)
    term_at = time.monotonic()
    exit_code = cluster.gateways[stopped].stop(signal.SIGTERM)
    stopped_at = time.monotonic()
    time.sleep(2.0)  # load on the one instance left
    done.set()
    for thread in threads:
        thread.join(timeout=30)
    end = time.monotonic()

    failed = [s for s in results if not s.complete]
    # In flight at the kill: sent to the killed instance before its port closed, not answered before the kill.
    in_flight_at_kill = [s for s in results if s.instance == killed and s.started <= gone_at and s.ended >= kill_at]
    by_instance = {i: [s for s in results if s.complete and s.instance == i] for i in range(3)}
    cluster.wait_rows([s.request_id for s in by_instance[survivor]])  # the stopped and killed ones write no more
    rows = cluster.rows([s.request_id for s in results])
    logged = {r["request_id"] for r in rows}
    lost_killed = [s.request_id for s in by_instance[killed] if s.request_id not in logged]
    lost_stopped = [s.request_id for s in by_instance[stopped] if s.request_id not in logged]
    print(
        f"\ncluster under load: {len(results)} requests in {end - start:.1f} s "
        f"(served {', '.join(f'{NAMES[i]} {len(v)}' for i, v in by_instance.items())}); "
        f"SIGKILL {NAMES[killed]} at {kill_at - start:.2f} s (port closed {1000 * (gone_at - kill_at):.0f} ms later): "
        f"{len(in_flight_at_kill)} in flight, "
        f"{len(failed)} failed; SIGTERM {NAMES[stopped]} at {term_at - start:.2f} s, exit {exit_code} after "
        f"{stopped_at - term_at:.2f} s; rows lost: {NAMES[killed]} {len(lost_killed)} of {len(by_instance[killed])} "
        f"answered with 200, {NAMES[stopped]} {len(lost_stopped)} of {len(by_instance[stopped])}"
    )
    for s in failed:
        print(f"  failed: {s}")

    # Only requests the SIGKILL'd instance was answering may fail; nginx takes every other one elsewhere.
    assert all(s in in_flight_at_kill for s in failed), [s for s in failed if s not in in_flight_at_kill]
    after = [s for s in results if s.started > stopped_at]
    assert len(after) >= 10 and all(s.complete and s.instance == survivor for s in after)
    assert by_instance[killed] and by_instance[stopped]  # each of them served part of the load first
    # The SIGTERM'd instance drained: exit 0, a row for every request it answered.
    assert exit_code == 0
    assert lost_stopped == []
    # Nothing was sent twice: one row per request id.
    assert len(rows) == len(logged)
    # The survivor's rows all arrive.
    assert not [s.request_id for s in by_instance[survivor] if s.request_id not in logged]

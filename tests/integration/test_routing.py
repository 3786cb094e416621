"""Model groups end to end: strict fake upstreams failing on demand, driven by the official openai SDK through one
gateway. Strategies, error classes (retried, fallen back or not), the stream hold-back, no replay after content,
rules, the context window, and one log row per attempt.

Cooldowns are kept high here (``cooldown_after``) so that failures scripted by one test never cool a target for
the next; ``test_routing_cooldowns.py`` has its own gateways for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import Behaviour, FakeOpenAICompat
from tests.support import Gateway, admin_session, free_port

KEY = "sk-upstream-test"
ADMIN_PASSWORD = "routing-admin-pass-2"
MODELS = ["gpt-4o-mini", "gpt-5-mini", "o3-mini"]

CONFIG = """
[routing]
cooldown_after = 1000
max_retry_after_s = 3
stream_idle_timeout_s = 2

[providers.openai-eu]
base_url = "{eu}"
api_key = "{key}"
models = ["gpt-4o-mini", "gpt-5-mini", "o3-mini"]
registry_provider = "openai"

[model_groups.smart]
strategy = "priority"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "openai-eu/gpt-4o-mini" }}]
fallbacks = ["deepseek/deepseek-chat"]
retries = 1
first_token_timeout_s = 1.5

[providers.dead]
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "{key}"
models = ["gpt-4o-mini"]
registry_provider = "openai"

[model_groups.unreachable]
strategy = "priority"
targets = [{{ model = "dead/gpt-4o-mini" }}, {{ model = "openai/gpt-4o-mini" }}]

[model_groups.cross]
strategy = "priority"
targets = [{{ model = "anthropic/claude-3-5-haiku-20241022" }}, {{ model = "openai/gpt-4o-mini" }}]

[model_groups.once]
strategy = "priority"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "openai-eu/gpt-4o-mini" }}]
retry_on = ["rate_limited"]

[model_groups.split]
strategy = "weighted"
targets = [{{ model = "openai/gpt-4o-mini", weight = 3 }}, {{ model = "openai-eu/gpt-4o-mini", weight = 1 }}]

[model_groups.busy]
strategy = "least-busy"
targets = [{{ model = "openai/o3-mini" }}, {{ model = "openai-eu/o3-mini" }}]

[model_groups.fast]
strategy = "latency"
targets = [{{ model = "openai/gpt-5-mini" }}, {{ model = "openai-eu/gpt-5-mini" }}]

[model_groups.cheap]
strategy = "cost"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "deepseek/deepseek-chat" }}]

[model_groups.window]
strategy = "priority"
targets = [{{ model = "openai/gpt-4o-mini" }}, {{ model = "openai-eu/gpt-5-mini" }}]

[[model_groups.auto.rules]]
when = {{ has_images = true }}
targets = [{{ model = "openai/gpt-4o-mini" }}]
[[model_groups.auto.rules]]
when = {{ pattern = "(?i)\\\\btranslate\\\\b" }}
targets = [{{ model = "openai-eu/gpt-4o-mini" }}]
[[model_groups.auto.rules]]
when = {{ min_prompt_tokens = 2000 }}
targets = [{{ model = "openai/gpt-5-mini" }}]
[model_groups.auto]
targets = [{{ model = "deepseek/deepseek-chat" }}]
"""


class Routed:
    def __init__(self, gateway: Gateway, fakes: dict[str, FakeOpenAICompat], anthropic: FakeAnthropic) -> None:
        self.gateway = gateway
        self.fakes = fakes
        self.anthropic = anthropic
        self.client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

    def chats(self, name: str) -> list[Any]:
        return [r for r in self.fakes[name].requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        for fake in self.fakes.values():
            fake.clear()
            fake.delay_ms = 0

    def rows(self, request_id: str, count: int) -> list[dict[str, Any]]:
        rows = self.gateway.wait_rows(count, f"request_id = '{request_id}'")
        assert len(rows) == count, rows
        return sorted(rows, key=lambda r: r["attempt"])


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    fakes = {
        "openai": FakeOpenAICompat("openai", api_key=KEY, models=MODELS),
        "eu": FakeOpenAICompat("openai", api_key=KEY, models=MODELS),
        "deepseek": FakeOpenAICompat("deepseek", api_key=KEY, models=["deepseek-chat"]),
    }
    for fake in fakes.values():
        fake.start()
    anthropic = FakeAnthropic(api_key=KEY).start()
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": anthropic.base_url,
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "DEEPSEEK_API_KEY": KEY,
        "DEEPSEEK_BASE_URL": fakes["deepseek"].base_url,
        "GOPHERGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    config = CONFIG.format(eu=fakes["eu"].base_url, key=KEY, dead_port=free_port())  # nothing listens there
    gateway = Gateway(tmp_path_factory.mktemp("routing"), env=env, config_toml=config)
    try:
        gateway.start()
        yield Routed(gateway, fakes, anthropic)
    finally:
        gateway.stop()
        anthropic.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture
def r(routed: Routed) -> Routed:
    routed.reset()
    return routed


def _ask(r: Routed, model: str, text: str = "hello", **kwargs: Any) -> Any:
    return r.client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


def test_models_list_shows_groups_owned_by_the_gateway(r: Routed) -> None:
    listed = {m.id: m for m in r.client.models.list()}
    for name in ("smart", "split", "busy", "fast", "cheap", "window", "auto", "once", "cross"):
        assert listed[name].owned_by == "gophergate"
    assert r.client.models.retrieve("smart").owned_by == "gophergate"


def test_priority_serves_from_the_first_target_with_routing_headers(r: Routed) -> None:
    raw = _ask(r, "smart")
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-gophergate-attempts"] == "1"
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    assert raw.headers["x-gophergate-model-group"] == "smart"
    assert len(r.chats("openai")) == 1 and not r.chats("eu")
    (row,) = r.rows(raw.headers["x-request-id"], 1)
    assert (row["attempt"], bool(row["final"]), row["model_group"]) == (1, True, "smart")
    assert (row["provider"], row["model"], row["status"]) == ("openai", "gpt-4o-mini", 200)
    assert row["requested_model"] == "smart"


def test_plain_model_names_answer_as_before_with_one_attempt(r: Routed) -> None:
    raw = _ask(r, "openai/gpt-4o-mini")
    assert raw.headers["x-gophergate-attempts"] == "1"
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    assert "x-gophergate-model-group" not in raw.headers
    r.fakes["openai"].script_chat(Behaviour("status", status=503))
    with pytest.raises(openai.InternalServerError) as caught:
        _ask(r, "openai/gpt-4o-mini")
    assert caught.value.status_code == 502  # no retry, no fallback: the upstream's failure is the answer
    assert caught.value.response.headers["x-gophergate-attempts"] == "1"
    assert len(r.chats("openai")) == 2 and not r.chats("eu")


def test_rate_limited_attempt_is_retried_on_the_same_target_and_logged_as_its_own_row(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=429, headers={"retry-after": "0"}))
    raw = _ask(r, "smart")
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-gophergate-attempts"] == "2"
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    assert len(r.chats("openai")) == 2 and not r.chats("eu")
    first, second = r.rows(raw.headers["x-request-id"], 2)
    assert (first["attempt"], bool(first["final"]), first["status"], first["error_class"]) == (
        1,
        False,
        429,
        "rate_limited",
    )
    assert first["prompt_tokens"] == 0 and Decimal(first["cost_usd"] or 0) == 0
    assert (second["attempt"], bool(second["final"]), second["status"]) == (2, True, 200)
    assert second["prompt_tokens"] > 0 and Decimal(second["cost_usd"]) > 0


def test_failing_targets_fall_back_in_order_and_the_client_sees_one_answer(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=500), Behaviour("status", status=500))
    r.fakes["eu"].script_chat(Behaviour("status", status=529), Behaviour("status", status=503))
    started = time.monotonic()
    raw = _ask(r, "smart")
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-gophergate-attempts"] == "5"
    assert raw.headers["x-gophergate-served-by"] == "deepseek/deepseek-chat"
    assert time.monotonic() - started < 3.0  # two backoffs of at most 0.25 s
    rows = r.rows(raw.headers["x-request-id"], 5)
    assert [(row["provider"], row["status"], row["error_class"]) for row in rows] == [
        ("openai", 502, "server_error"),
        ("openai", 502, "server_error"),
        ("openai-eu", 502, "overloaded"),
        ("openai-eu", 502, "overloaded"),
        ("deepseek", 200, None),
    ]
    assert [bool(row["final"]) for row in rows] == [False, False, False, False, True]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried_nor_fall_back(r: Routed, status: int) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=status))
    with pytest.raises(openai.APIStatusError) as caught:
        _ask(r, "smart")
    assert caught.value.response.headers["x-gophergate-attempts"] == "1"
    assert len(r.chats("openai")) == 1 and not r.chats("eu") and not r.chats("deepseek")
    (row,) = r.rows(caught.value.response.headers["x-request-id"], 1)
    assert bool(row["final"]) and row["error_class"] is None


def test_context_length_error_moves_to_the_next_target_without_a_retry(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("context"))
    raw = _ask(r, "smart")
    assert raw.headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert raw.headers["x-gophergate-attempts"] == "2"
    assert len(r.chats("openai")) == 1
    first, _ = r.rows(raw.headers["x-request-id"], 2)
    assert (first["status"], first["error_class"]) == (400, "context_window_exceeded")


def test_retry_after_beyond_the_maximum_moves_on_instead_of_waiting(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=429, headers={"retry-after": "30"}))
    started = time.monotonic()
    raw = _ask(r, "smart")
    assert time.monotonic() - started < 2.0
    assert raw.headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert len(r.chats("openai")) == 1


def test_retry_after_within_the_maximum_is_honoured(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=429, headers={"retry-after": "1"}))
    started = time.monotonic()
    raw = _ask(r, "smart")
    assert time.monotonic() - started >= 1.0
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    assert raw.headers["x-gophergate-attempts"] == "2"


def test_classes_outside_retry_on_are_the_answer(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("status", status=500))
    with pytest.raises(openai.InternalServerError):
        _ask(r, "once")  # retry_on = ["rate_limited"]
    assert not r.chats("eu")
    r.fakes["openai"].script_chat(Behaviour("status", status=429, headers={"retry-after": "0"}))
    raw = _ask(r, "once")
    assert raw.headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"


def test_every_target_failing_gives_a_plain_error_status_not_a_broken_stream(r: Routed) -> None:
    r.fakes["openai"].script_chat(*[Behaviour("status", status=500)] * 2)
    r.fakes["eu"].script_chat(*[Behaviour("early_error")] * 2)
    r.fakes["deepseek"].script_chat(*[Behaviour("status", status=503)] * 2)
    with pytest.raises(openai.APIStatusError) as caught:
        r.client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hello"}], stream=True)
    response = caught.value.response
    assert response.status_code == 502
    assert response.headers["x-gophergate-attempts"] == "6"
    rows = r.rows(response.headers["x-request-id"], 6)
    assert [bool(row["final"]) for row in rows] == [False] * 5 + [True]
    assert rows[-1]["status"] == 502 and rows[-1]["error_class"] == "overloaded"


@pytest.mark.parametrize("stream", [False, True])
def test_an_overloaded_anthropic_target_falls_back_to_openai(r: Routed, stream: bool) -> None:
    r.anthropic.fail_next(529)
    if stream:
        content, _, headers = _stream_text(r, "cross")
    else:
        raw = _ask(r, "cross")
        content, headers = raw.parse().choices[0].message.content, raw.headers
    assert content == "echo: hello"
    assert headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    first, second = r.rows(headers["x-request-id"], 2)
    assert (first["provider"], first["error_class"], first["status"]) == ("anthropic", "overloaded", 503)
    assert (second["provider"], second["status"]) == ("openai", 200)
    r.anthropic.clear()
    raw = _ask(r, "cross")  # the anthropic target answers again: translated from the Messages API
    assert raw.headers["x-gophergate-served-by"] == "anthropic/claude-3-5-haiku-20241022"
    assert raw.parse().choices[0].message.content == "echo: hello"


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_connection_is_classed_connection_and_falls_back(r: Routed, stream: bool) -> None:
    if stream:
        content, _, headers = _stream_text(r, "unreachable")
    else:
        raw = _ask(r, "unreachable")
        content, headers = raw.parse().choices[0].message.content, raw.headers
    assert content == "echo: hello"
    assert headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
    first, _ = r.rows(headers["x-request-id"], 2)
    assert (first["provider"], first["status"], first["error_class"]) == ("dead", 502, "connection")


# -- streams ----------------------------------------------------------------------------------------------------


def _stream_text(r: Routed, model: str, text: str = "hello") -> tuple[str, list[Any], httpx.Headers]:
    with r.client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        chunks = list(response.parse())
        headers = response.headers
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return content, chunks, headers


@pytest.mark.parametrize("failure", ["early_error", "early_cut"])
def test_stream_failing_before_content_fails_over_and_the_client_sees_one_clean_stream(r: Routed, failure: str) -> None:
    r.fakes["openai"].script_chat(Behaviour(failure), Behaviour(failure))
    content, chunks, headers = _stream_text(r, "smart")
    assert content == "echo: hello"
    assert headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert headers["x-gophergate-attempts"] == "3"
    ids = {c.id for c in chunks}
    assert len(ids) == 1  # every chunk from the one completion that succeeded
    assert ids == {r.chats("eu")[0] and chunks[0].id}
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]  # the failed attempts' role chunks never reached the client
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    rows = r.rows(headers["x-request-id"], 3)
    assert [row["status"] for row in rows] == [502, 502, 200]
    assert [row["error_class"] for row in rows[:2]] == (
        ["server_error", "server_error"] if failure == "early_error" else ["connection", "connection"]
    )
    assert all(row["completion_tokens"] == 0 and Decimal(row["cost_usd"] or 0) == 0 for row in rows[:2])


def test_zero_bytes_of_a_failed_attempt_reach_the_client(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("early_error"), Behaviour("early_error"))
    with httpx.stream(
        "POST",
        r.gateway.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {r.gateway.key}"},
        json={"model": "smart", "stream": True, "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    ) as response:
        body = response.read()
    assert response.status_code == 200
    assert b"error" not in body
    assert body.count(b'"role":"assistant"') == 1
    assert body.endswith(b"data: [DONE]\n\n")


def test_first_token_timeout_moves_a_stalled_stream_to_the_next_target(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("stall", seconds=5), Behaviour("hang", seconds=5))
    started = time.monotonic()
    content, _, headers = _stream_text(r, "smart")
    elapsed = time.monotonic() - started
    assert content == "echo: hello"
    assert headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert 3.0 <= elapsed < 4.5  # two first-token timeouts of 1.5 s
    rows = r.rows(headers["x-request-id"], 3)
    assert [(row["status"], row["error_class"]) for row in rows[:2]] == [(504, "timeout"), (504, "timeout")]


def test_no_replay_after_content_the_stream_ends_with_an_error_event(r: Routed) -> None:
    with httpx.stream(
        "POST",
        r.gateway.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {r.gateway.key}"},
        json={"model": "smart", "stream": True, "messages": [{"role": "user", "content": "MIDERROR please"}]},
        timeout=30,
    ) as response:
        body = response.read()
    assert response.status_code == 200
    assert body.index(b'"content":"echo') < body.index(b'"error"')  # content first, then the error event
    assert b"[DONE]" not in body
    assert len(r.chats("openai")) == 1 and not r.chats("eu") and not r.chats("deepseek")
    (row,) = r.rows(response.headers["x-request-id"], 1)
    assert (row["status"], row["error_type"], bool(row["final"])) == (502, "upstream_stream_error", True)


def test_an_idle_stream_ends_with_an_error_event_classed_timeout(r: Routed) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        r.gateway.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {r.gateway.key}"},
        json={"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "SLOW 4000"}]},
        timeout=30,
    ) as response:
        body = response.read()
    assert 1.9 < time.monotonic() - started < 3.9  # stream_idle_timeout_s = 2, not the 4 s the upstream waits
    assert b'"error"' in body and b"timed out" in body
    (row,) = r.rows(response.headers["x-request-id"], 1)
    assert (row["status"], row["error_class"]) == (502, "timeout")


# -- strategies -------------------------------------------------------------------------------------------------


def test_weighted_split_follows_the_weights_over_2000_requests(r: Routed) -> None:
    def worker(count: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                resp = client.post(
                    r.gateway.base_url + "/chat/completions",
                    headers={"authorization": f"Bearer {r.gateway.key}"},
                    json={"model": "split", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert resp.status_code == 200

    threads = [threading.Thread(target=worker, args=(250,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = len(r.chats("openai")), len(r.chats("eu"))
    assert first + second == 2000
    assert abs(first / 2000 - 0.75) < 0.03, (first, second)


def test_least_busy_sends_a_request_to_the_target_with_fewer_in_flight(r: Routed) -> None:
    for fake in ("openai", "eu"):
        r.fakes[fake].delay_ms = 800
    for _ in range(3):
        served: list[str] = []

        def one(served: list[str] = served) -> None:
            served.append(_ask(r, "busy").headers["x-gophergate-served-by"])

        first = threading.Thread(target=one)
        first.start()
        time.sleep(0.3)
        one()
        first.join()
        assert sorted(served) == ["openai-eu/o3-mini", "openai/o3-mini"]


def test_latency_prefers_the_faster_target_and_still_samples_the_other(r: Routed) -> None:
    r.fakes["openai"].delay_ms = 150
    served = [_ask(r, "fast").headers["x-gophergate-served-by"] for _ in range(60)]
    fast = served.count("openai-eu/gpt-5-mini")
    assert fast >= 48, served  # after the first figures, the slow target only gets the exploration share


def test_cost_picks_the_cheapest_target_for_the_request(r: Routed) -> None:
    served = {_ask(r, "cheap").headers["x-gophergate-served-by"] for _ in range(5)}
    assert served == {"deepseek/deepseek-chat"}  # 0.14/0.28 per 1M against gpt-4o-mini's 0.15/0.60


def test_a_target_whose_context_window_is_too_small_is_skipped_without_a_call(r: Routed) -> None:
    raw = _ask(r, "window", max_completion_tokens=128_000)
    assert raw.headers["x-gophergate-served-by"] == "openai-eu/gpt-5-mini"
    assert raw.headers["x-gophergate-attempts"] == "1"
    assert not r.chats("openai")


def test_rules_pick_targets_by_what_the_request_is(r: Routed) -> None:
    assert _ask(r, "auto").headers["x-gophergate-served-by"] == "deepseek/deepseek-chat"
    assert _ask(r, "auto", "please translate this").headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert _ask(r, "auto", "word " * 3000).headers["x-gophergate-served-by"] == "openai/gpt-5-mini"
    image = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    raw = r.client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": image}]
    )
    assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"


def test_a_responses_stream_cut_before_content_fails_over_cleanly(r: Routed) -> None:
    r.fakes["openai"].script_chat(Behaviour("early_cut"), Behaviour("status", status=503))
    with r.client.responses.with_streaming_response.create(model="smart", input="hello", stream=True) as response:
        events = list(response.parse())
        headers = response.headers
    assert headers["x-gophergate-served-by"] == "openai-eu/gpt-4o-mini"
    assert headers["x-gophergate-attempts"] == "3"
    kinds = [e.type for e in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: hello"
    rows = r.rows(headers["x-request-id"], 3)
    assert [(row["status"], row["error_class"]) for row in rows] == [
        (502, "connection"),
        (502, "overloaded"),
        (200, None),
    ]


def test_limits_count_a_request_once_and_its_budget_is_settled_with_every_attempt(r: Routed) -> None:
    created = r.gateway.cli(
        "keys", "create", "--name", "budgeted", "--budget", "5", "--budget-period", "month", "--rpm", "100"
    )
    secret = created.stdout.strip().splitlines()[-1]
    client = openai.OpenAI(base_url=r.gateway.base_url, api_key=secret, max_retries=0)
    r.fakes["openai"].script_chat(Behaviour("status", status=500), Behaviour("status", status=500))
    deadline = time.monotonic() + 5
    while True:  # the key cache picks the new key up within its refresh interval
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": "hello"}], max_tokens=50
            )
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert raw.headers["x-gophergate-attempts"] == "3"
    rows = r.rows(raw.headers["x-request-id"], 3)
    total = sum(Decimal(row["cost_usd"] or 0) for row in rows)
    assert total > 0
    time.sleep(0.3)  # the settle is sent without waiting
    with admin_session(r.gateway.url, ADMIN_PASSWORD) as admin:
        (key,) = [k for k in admin.get("/api/keys").json()["data"] if k["name"] == "budgeted"]
        usage = admin.get(f"/api/keys/{key['id']}/usage").json()
    assert Decimal(usage["budget"]["spend_usd"]) == total
    assert Decimal(usage["budget"]["reserved_usd"]) == 0
    assert usage["requests"]["used"] == 1


def test_routing_defaults_make_plain_model_names_retry_and_fall_back(
    r: Routed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = """
[routing]
retries = 1
fallbacks = ["deepseek/deepseek-chat"]
"""
    env = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": r.fakes["openai"].base_url,
        "DEEPSEEK_API_KEY": KEY,
        "DEEPSEEK_BASE_URL": r.fakes["deepseek"].base_url,
    }
    gateway = Gateway(tmp_path_factory.mktemp("routing-defaults"), env=env, config_toml=config)
    try:
        gateway.start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
        r.fakes["openai"].script_chat(Behaviour("status", status=503))
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert raw.headers["x-gophergate-attempts"] == "2"  # retried on its own target
        assert raw.headers["x-gophergate-served-by"] == "openai/gpt-4o-mini"
        assert "x-gophergate-model-group" not in raw.headers
        r.fakes["openai"].script_chat(*[Behaviour("status", status=503)] * 2)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert raw.headers["x-gophergate-attempts"] == "3"
        assert raw.headers["x-gophergate-served-by"] == "deepseek/deepseek-chat"
        rows = gateway.wait_rows(3, f"request_id = '{raw.headers['x-request-id']}'")
        assert [row["model_group"] for row in rows] == [None, None, None]
        assert [row["requested_model"] for row in rows] == ["gpt-4o-mini"] * 3
    finally:
        gateway.stop()


def test_analytics_show_the_prompt_cache_hit_ratio_per_group_and_per_target(r: Routed) -> None:
    """Cache reads over prompt tokens per model group and per routing target, from the rollups the log writer keeps:
    what shows whether cache affinity keeps a provider's prompt cache warm."""
    sent = [
        _ask(r, "cheap", f"CACHE {n} a long shared system prefix that the provider has cached").headers["x-request-id"]
        for n in (1000, 1000, 6)
    ]
    for request_id in sent:
        (row,) = r.rows(request_id, 1)
        assert (row["model_group"], row["provider"]) == ("cheap", "deepseek") and row["cache_read_tokens"] > 0

    def ratio(rows: list[dict[str, Any]]) -> float | None:
        prompt = sum(row["prompt_tokens"] for row in rows)
        return round(sum(row["cache_read_tokens"] for row in rows) / prompt, 4) if prompt else None

    with admin_session(r.gateway.url, ADMIN_PASSWORD) as admin:
        deadline = time.monotonic() + 10
        while True:  # rows and rollups are committed together; earlier tests' rows may still be on their way
            group_rows = r.gateway.rows("model_group = 'cheap'")
            target_rows = r.gateway.rows("provider = 'deepseek' AND model = 'deepseek-chat'")
            by_group = {
                i["key"]: i for i in admin.get("/api/analytics/top", params={"by": "group", "n": 100}).json()["data"]
            }
            by_target = {
                i["key"]: i for i in admin.get("/api/analytics/top", params={"by": "target", "n": 100}).json()["data"]
            }
            got = (by_group["cheap"]["requests"], by_group["cheap"]["cache_hit_ratio"])
            want = (sum(1 for row in group_rows if row["final"]), ratio(group_rows))
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert got == want and want[1] is not None and want[1] > 0
    assert by_target["deepseek/deepseek-chat"]["cache_hit_ratio"] == ratio(target_rows)
    assert all(by_group), by_group  # keyed by the group's name: plain model names are in none of them

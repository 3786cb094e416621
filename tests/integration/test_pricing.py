"""Billing through the real gateway: exact cost on every row, usage.cost and the cost header, streams,
failures, unknown prices, overrides and discounts (CLI and TOML), the offline price source, /v1/models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway, free_port

KEY = "sk-upstream-test"
# gpt-4o-mini in tests/fixtures/models-dev-mini.json, USD per 1M tokens
MINI = {"input": Decimal("0.15"), "output": Decimal("0.6"), "cache_read": Decimal("0.075")}


def mini_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return (MINI["input"] * (prompt - cached) + MINI["cache_read"] * cached + MINI["output"] * completion) / 10**6


def dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def breakdown_sum(row: dict[str, Any]) -> Decimal:
    names = ("cost_input_usd", "cost_cache_read_usd", "cost_cache_write_usd", "cost_output_usd", "cost_reasoning_usd")
    return sum((Decimal(str(row[n])) for n in names), Decimal(0))


class Env:
    def __init__(self, gateway: Gateway, openai_fake: FakeOpenAICompat, moonshot_fake: FakeOpenAICompat) -> None:
        self.gateway = gateway
        self.openai_fake = openai_fake
        self.moonshot_fake = moonshot_fake
        self.client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with (
        FakeOpenAICompat(dialect="openai", api_key=KEY) as oa,
        FakeOpenAICompat(dialect="moonshot", api_key=KEY) as ms,
    ):
        tmp = tmp_path_factory.mktemp("pricing")
        gateway = Gateway(
            tmp,
            env={
                "OPENAI_API_KEY": KEY,
                "OPENAI_BASE_URL": oa.base_url,
                "MOONSHOT_API_KEY": KEY,
                "MOONSHOT_BASE_URL": ms.base_url,
            },
        )
        gateway.start()
        try:
            yield Env(gateway, oa, ms)
        finally:
            gateway.stop()


def test_non_stream_cost_in_body_header_and_row(env: Env) -> None:
    raw = env.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "WORDS 12"}]
    )
    completion = raw.parse()
    assert completion.usage is not None
    expected = mini_cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert Decimal(raw.headers["x-gophergate-cost-usd"]) == expected
    assert Decimal(str(completion.usage.model_extra["cost"])) == expected
    row = env.gateway.row_for(raw.headers["x-request-id"])
    assert dec(row["cost_usd"]) == expected == breakdown_sum(row)
    assert row["price_unknown"] in (False, 0)
    assert row["price_source"].startswith("models.dev:")


def test_cached_prompt_tokens_are_billed_at_the_cache_price(env: Env) -> None:
    raw = env.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "CACHE 5 please"}]
    )
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 5
    row = env.gateway.row_for(raw.headers["x-request-id"])
    assert dec(row["cost_cache_read_usd"]) == MINI["cache_read"] * 5 / 10**6
    assert dec(row["cost_input_usd"]) == MINI["input"] * (usage.prompt_tokens - 5) / 10**6
    assert dec(row["cost_usd"]) == mini_cost(usage.prompt_tokens, usage.completion_tokens, cached=5)


def test_stream_usage_chunk_carries_the_cost(env: Env) -> None:
    with env.client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "WORDS 20"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        request_id = resp.headers["x-request-id"]
        chunks = list(resp.parse())
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    expected = mini_cost(usage.prompt_tokens, usage.completion_tokens)
    assert Decimal(str(usage.model_extra["cost"])) == expected
    row = env.gateway.row_for(request_id)
    assert dec(row["cost_usd"]) == expected == breakdown_sum(row)


def test_stream_without_usage_request_is_still_billed(env: Env) -> None:
    with env.client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "WORDS 9"}], stream=True
    ) as resp:
        request_id = resp.headers["x-request-id"]
        assert "x-gophergate-cost-usd" not in resp.headers  # not known before the headers go out
        for _ in resp.iter_lines():
            pass
    row = env.gateway.row_for(request_id)
    assert row["completion_tokens"] > 0 and row["estimated"] in (False, 0)
    assert dec(row["cost_usd"]) == mini_cost(row["prompt_tokens"], row["completion_tokens"]) > 0


def test_upstream_error_before_output_costs_zero(env: Env) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        env.client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FAIL 500"}])
    row = env.gateway.row_for(info.value.response.headers["x-request-id"])
    assert row["status"] == 502 and row["error_type"]
    assert dec(row["cost_usd"]) == 0 and row["price_unknown"] in (False, 0)


def test_stream_broken_after_output_bills_the_estimate(env: Env) -> None:
    with env.client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "MIDERROR now"}], stream=True
    ) as resp:
        request_id = resp.headers["x-request-id"]
        for _ in resp.iter_lines():
            pass
    row = env.gateway.row_for(request_id)
    assert row["status"] == 502 and row["estimated"] in (True, 1)
    assert row["completion_tokens"] > 0
    assert dec(row["cost_usd"]) == mini_cost(row["prompt_tokens"], row["completion_tokens"]) > 0


def test_model_without_a_price_is_null_never_zero(env: Env) -> None:
    raw = env.client.chat.completions.with_raw_response.create(
        model="kimi-k3", messages=[{"role": "user", "content": "hello"}]
    )
    completion = raw.parse()
    assert completion.usage is not None and "cost" not in (completion.usage.model_extra or {})
    assert "x-gophergate-cost-usd" not in raw.headers
    row = env.gateway.row_for(raw.headers["x-request-id"])
    assert row["cost_usd"] is None and row["price_unknown"] in (True, 1)
    assert row["prompt_tokens"] > 0
    ready = httpx.get(env.gateway.url + "/readyz").json()
    unknown = ready["details"]["price_unknown"]
    assert unknown["requests"] >= 1 and unknown["models"].get("moonshot/kimi-k3", 0) >= 1
    metrics = httpx.get(env.gateway.url + "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("gophergate_price_unknown_requests_total "))
    assert float(line.split()[1]) >= 1


def test_models_list_carries_registry_limits_capabilities_and_prices(env: Env) -> None:
    models = {m.id: m for m in env.client.models.list()}
    mini = models["gpt-4o-mini"].model_extra or {}
    assert mini["context_window"] == 128000 and mini["max_output_tokens"] == 16384
    assert mini["capabilities"]["tools"] is True and mini["capabilities"]["vision"] is True
    assert "image" in mini["modalities"]["input"]
    assert Decimal(str(mini["pricing"]["input"])) == MINI["input"]
    assert Decimal(str(mini["pricing"]["cache_read"])) == MINI["cache_read"]
    assert (models["kimi-k3"].model_extra or {})["pricing"] is None
    single = env.client.models.retrieve("gpt-4o-mini").model_extra or {}
    assert Decimal(str(single["pricing"]["output"])) == MINI["output"]


def _cost_header(env: Env) -> Decimal:
    raw = env.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "WORDS 3"}]
    )
    return Decimal(raw.headers["x-gophergate-cost-usd"])


def _wait_for_cost(env: Env, wanted: Decimal) -> None:
    deadline = time.monotonic() + 10
    seen = _cost_header(env)
    while seen != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = _cost_header(env)
    assert seen == wanted


def test_cli_overrides_and_discounts_reach_the_running_server(env: Env) -> None:
    gateway = env.gateway
    usage = env.client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "WORDS 3"}]
    ).usage
    assert usage is not None
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    try:
        gateway.cli("prices", "set", "openai/gpt-4o-mini", "--input", "1", "--output", "2")
        overridden = (Decimal(1) * prompt + Decimal(2) * completion) / 10**6
        _wait_for_cost(env, overridden)
        gateway.cli(
            "prices", "set", "openai/gpt-4o-mini", "--input", "1", "--output", "2",
            "--discount", "25", "--until", "2999-01-01",
        )  # fmt: skip
        _wait_for_cost(env, overridden * Decimal("0.75"))
        rows = gateway.wait_rows(1, "price_source LIKE 'override openai/gpt-4o-mini%discount 25%'")
        assert rows
        listing = gateway.cli("prices", "list").stdout
        assert "openai/gpt-4o-mini" in listing and "discount 25%" in listing
        bad = gateway.cli("prices", "set", "openai/gpt-4o-mini", "--input", "-1", check=False)
        assert bad.returncode == 2 and "--input" in bad.stderr
    finally:
        gateway.cli("prices", "unset", "openai/gpt-4o-mini", check=False)
    _wait_for_cost(env, mini_cost(prompt, completion))
    assert gateway.cli("prices", "unset", "openai/gpt-4o-mini", check=False).returncode == 1


def test_registry_cli_show(env: Env) -> None:
    out = env.gateway.cli("registry", "show", "gpt-4o-2024-08-06").stdout
    assert "openai/gpt-4o-2024-08-06" in out and "input 2.5" in out
    assert "unknown" in env.gateway.cli("registry", "show", "moonshot/kimi-k3").stdout


def test_toml_overrides_and_expired_discounts(tmp_path: Path) -> None:
    toml = """
[prices."openai/gpt-4o-mini"]
input = 3
output = 4

[prices."gpt-5-mini"]
discount_percent = 50
discount_until = 2001-01-01
"""
    with FakeOpenAICompat(dialect="openai", api_key=KEY) as oa:
        gateway = Gateway(tmp_path, env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": oa.base_url}, config_toml=toml)
        gateway.start()
        try:
            client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            usage = raw.parse().usage
            assert usage is not None
            assert Decimal(raw.headers["x-gophergate-cost-usd"]) == (
                3 * usage.prompt_tokens + 4 * usage.completion_tokens
            ) / Decimal(10**6)
            row = gateway.row_for(raw.headers["x-request-id"])
            assert row["price_source"].startswith("override openai/gpt-4o-mini over models.dev:")
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
            )
            row = gateway.row_for(raw.headers["x-request-id"])
            assert "discount" not in row["price_source"]  # ended in 2001
        finally:
            gateway.stop()


def test_without_any_registry_copy_prices_come_from_the_offline_source(tmp_path: Path) -> None:
    with FakeOpenAICompat(dialect="openai", api_key=KEY) as oa:
        unreachable = f"http://127.0.0.1:{free_port()}/api.json"
        gateway = Gateway(
            tmp_path,
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": oa.base_url, "GOPHERGATE_REGISTRY_URL": unreachable},
        )
        gateway.start()
        try:
            client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "offline"}]
            )
            assert raw.parse().choices[0].message.content == "echo: offline"
            row = gateway.row_for(raw.headers["x-request-id"])
            assert row["price_source"].startswith("genai-prices:")
            assert dec(row["cost_usd"]) == mini_cost(row["prompt_tokens"], row["completion_tokens"])
            ready = httpx.get(gateway.url + "/readyz").json()
            assert ready["details"]["registry"]["source"] == "offline"
            assert ready["details"]["registry"]["last_error"]
            # The log says what is true: no copy yet, prices from the bundled data, and when it tries again.
            log = gateway.log_path.read_text()
            assert "there is no saved copy yet, so prices come from the bundled offline data" in log
            assert "next try in 5 min" in log and "keeping" not in log
        finally:
            gateway.stop()


def test_cost_is_stored_exactly(database_url: str, make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key=KEY) as oa:
        gateway = make_gateway(
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": oa.base_url}, database_url=database_url
        ).start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "CACHE 3 exactly"}]
        )
        usage = raw.parse().usage
        assert usage is not None
        row = gateway.row_for(raw.headers["x-request-id"])
        expected = mini_cost(usage.prompt_tokens, usage.completion_tokens, cached=3)
        # 3 x 0.075 / 1M = 0.000000225: more digits than a float column keeps exactly in a sum.
        assert Decimal(str(row["cost_usd"])) == expected
        assert Decimal(str(row["cost_cache_read_usd"])) == Decimal("0.000000225")
        assert breakdown_sum(row) == expected


def test_embeddings_are_priced(env: Env) -> None:
    raw = env.client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="price me please")
    usage = raw.parse().usage
    expected = Decimal("0.02") * usage.prompt_tokens / 10**6  # text-embedding-3-small: $0.02 / 1M input
    assert usage.prompt_tokens > 0
    assert Decimal(raw.headers["x-gophergate-cost-usd"]) == expected
    row = env.gateway.row_for(raw.headers["x-request-id"])
    assert row["endpoint"] == "embeddings" and dec(row["cost_usd"]) == expected


def test_responses_api_is_priced_streamed_and_not(env: Env) -> None:
    raw = env.client.responses.with_raw_response.create(model="gpt-4o-mini", input="WORDS 5")
    response = raw.parse()
    assert response.usage is not None
    expected = mini_cost(response.usage.input_tokens, response.usage.output_tokens)
    assert Decimal(raw.headers["x-gophergate-cost-usd"]) == expected
    assert Decimal(str(response.usage.model_extra["cost"])) == expected
    assert dec(env.gateway.row_for(raw.headers["x-request-id"])["cost_usd"]) == expected
    with env.client.responses.with_streaming_response.create(model="gpt-4o-mini", input="WORDS 6", stream=True) as resp:
        request_id = resp.headers["x-request-id"]
        events = list(resp.parse())
    completed = events[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage
    assert usage is not None
    row = env.gateway.row_for(request_id)
    assert dec(row["cost_usd"]) == mini_cost(usage.input_tokens, usage.output_tokens)

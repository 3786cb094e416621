"""Golden cost cases worked out by hand for each provider's usage shape, and the invariants of the formula."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophergate.core.usage import Usage, from_deepseek, from_openai, from_xai
from gophergate.pricing.catalog import Catalog, PriceTable, Rates, Tier
from gophergate.pricing.cost import Discount, ModelPrice, compute_cost
from gophergate.pricing.overrides import PriceOverride
from gophergate.pricing.pricebook import PriceBook
from tests.support import MINI_REGISTRY

D = Decimal


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    body = MINI_REGISTRY.read_bytes()
    return Catalog.from_document(orjson.loads(body), source="mini", body=body)


def table(catalog: Catalog, provider: str, model: str) -> PriceTable:
    entry = catalog.lookup(provider, model)
    assert entry is not None and entry.prices is not None
    return entry.prices


def test_openai_cached_prompt_and_reasoning_are_billed_once(catalog: Catalog) -> None:
    # gpt-4o: input 2.5, cache_read 1.25, output 10 (per 1M). prompt_tokens 1000 includes 400 cached;
    # completion_tokens 200 includes 50 reasoning (no reasoning price: billed as output).
    usage = from_openai(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 50},
        }
    )
    cost = compute_cost(usage, table(catalog, "openai", "gpt-4o"))
    assert cost.input == D("0.0015")  # 600 x 2.5
    assert cost.cache_read == D("0.0005")  # 400 x 1.25
    assert cost.cache_write == 0
    assert cost.output == D("0.0015")  # 150 x 10
    assert cost.reasoning == D("0.0005")  # 50 x 10
    assert cost.total == D("0.004")


def test_anthropic_cache_reads_and_writes_outside_input_tokens(catalog: Catalog) -> None:
    # Anthropic reports input_tokens=100 without cache_read 1000 and cache_creation 500; canonical prompt 1600.
    usage = Usage(prompt=1600, completion=300, cache_read=1000, cache_write=500)
    cost = compute_cost(usage, table(catalog, "anthropic", "claude-sonnet-4-5"))
    assert cost.input == D("0.0003")  # 100 x 3
    assert cost.cache_read == D("0.0003")  # 1000 x 0.3
    assert cost.cache_write == D("0.001875")  # 500 x 3.75
    assert cost.output == D("0.0045")  # 300 x 15
    assert cost.total == D("0.006975")


def test_deepseek_cache_hit_and_miss(catalog: Catalog) -> None:
    usage = from_deepseek(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "prompt_cache_hit_tokens": 800,
            "prompt_cache_miss_tokens": 200,
        }
    )
    cost = compute_cost(usage, table(catalog, "deepseek", "deepseek-chat"))
    assert (cost.input, cost.cache_read, cost.cache_write) == (D("0.000028"), D("0.00000224"), 0)
    assert cost.output == D("0.000028")
    assert cost.total == D("0.00005824")


def test_xai_reasoning_reported_outside_completion(catalog: Catalog) -> None:
    # xAI: completion_tokens 100 excludes reasoning 300 -> canonical completion 400, all at output 2.5.
    usage = from_xai(
        {"prompt_tokens": 50, "completion_tokens": 100, "completion_tokens_details": {"reasoning_tokens": 300}}
    )
    cost = compute_cost(usage, table(catalog, "xai", "grok-4.3"))
    assert cost.output == D("0.00025")  # 100 x 2.5
    assert cost.reasoning == D("0.00075")  # 300 x 2.5
    assert cost.input == D("0.0000625")  # 50 x 1.25
    assert cost.total == D("0.0010625")


def test_gemini_reasoning_and_cached_content(catalog: Catalog) -> None:
    # Gemini: prompt 2000 incl. 1000 cached; candidates 100 + thoughts 400 -> completion 500, reasoning 400.
    usage = Usage(prompt=2000, completion=500, reasoning=400, cache_read=1000)
    cost = compute_cost(usage, table(catalog, "gemini", "gemini-2.5-flash"))
    assert cost.input == D("0.0003")  # 1000 x 0.3
    assert cost.cache_read == D("0.00003")  # 1000 x 0.03
    assert cost.output == D("0.00025")  # 100 x 2.5
    assert cost.reasoning == D("0.001")  # 400 x 2.5
    assert cost.total == D("0.00158")


def test_prompt_over_the_tier_size_bills_the_whole_request_at_tier_prices(catalog: Catalog) -> None:
    prices = table(catalog, "gemini", "gemini-2.5-pro")  # base 1.25/10/0.125; over 200k: 2.5/15/0.25
    at_limit = compute_cost(Usage(prompt=200_000, completion=1000), prices)
    assert at_limit.input == D("0.25") and at_limit.output == D("0.01")
    over = compute_cost(Usage(prompt=250_000, completion=1000, cache_read=50_000), prices)
    assert over.input == D("0.5")  # 200,000 x 2.5
    assert over.cache_read == D("0.0125")  # 50,000 x 0.25
    assert over.output == D("0.015")  # 1,000 x 15
    assert over.total == D("0.5275")


def test_separate_reasoning_price_is_used_when_the_entry_has_one(catalog: Catalog) -> None:
    prices = table(catalog, "alibaba", "qwen-plus")  # input 0.4, output 1.2, reasoning 4
    cost = compute_cost(Usage(prompt=1000, completion=1000, reasoning=600), prices)
    assert (cost.output, cost.reasoning) == (D("0.00048"), D("0.0024"))
    assert cost.total == D("0.00328")


def test_missing_cache_prices_fall_back_to_input() -> None:
    prices = PriceTable(Rates(input=D(2), output=D(4)))
    cost = compute_cost(Usage(prompt=1000, completion=0, cache_read=300, cache_write=200), prices)
    assert (cost.input, cost.cache_read, cost.cache_write) == (D("0.001"), D("0.0006"), D("0.0004"))


def test_cache_counts_larger_than_the_prompt_are_never_billed_twice() -> None:
    prices = PriceTable(Rates(input=D(1), output=D(1), cache_read=D("0.5"), cache_write=D(2)))
    cost = compute_cost(Usage(prompt=100, completion=0, cache_read=80, cache_write=80), prices)
    assert cost.cache_read == D("0.00004") and cost.cache_write == D("0.00004") and cost.input == 0


def test_override_wins_and_is_recorded(catalog: Catalog) -> None:
    override = PriceOverride("openai", "gpt-4o", Rates(input=D(1), output=D(2)))
    book = PriceBook(catalog, {("openai", "gpt-4o"): override})
    price = book.price("openai", "gpt-4o")
    assert price is not None
    assert price.table.base.input == D(1) and price.table.base.cache_read == D("1.25")
    cost, source = price.cost(Usage(prompt=1000, completion=1000))
    assert cost.total == D("0.003")
    assert source.startswith("override openai/gpt-4o over models.dev:")
    # applies to dated ids of the model too, and a bare-model override to any provider
    assert book.price("openai", "gpt-4o-2099-01-01") is not None
    bare = PriceBook(catalog, {("", "gpt-4o-mini"): PriceOverride("", "gpt-4o-mini", Rates(input=D(9), output=D(9)))})
    mini = bare.price("my-proxy", "gpt-4o-mini")
    assert mini is not None and mini.table.base.input == D(9)


def test_override_gives_a_price_to_a_model_the_registry_lacks(catalog: Catalog) -> None:
    book = PriceBook(catalog, {("moonshot", "kimi-k3"): PriceOverride("moonshot", "kimi-k3", Rates(D(1), D(3)))})
    assert book.price("moonshot", "kimi-k3") is not None
    assert PriceBook(catalog).price("moonshot", "kimi-k3") is None
    # an incomplete override (no output price) on an unknown model is still unknown
    half = PriceBook(catalog, {("", "kimi-k3"): PriceOverride("", "kimi-k3", Rates(input=D(1)))})
    assert half.price("moonshot", "kimi-k3") is None


def test_time_boxed_discount() -> None:
    until = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    price = ModelPrice(PriceTable(Rates(input=D(10), output=D(20))), "models.dev:x", Discount(D(25), until))
    usage = Usage(prompt=1000, completion=1000)
    during, source = price.cost(usage, dt.datetime(2029, 12, 31, 23, 59, tzinfo=dt.UTC))
    assert during.total == D("0.0225") and source == "models.dev:x; discount 25%"
    after, source = price.cost(usage, until)
    assert after.total == D("0.03") and source == "models.dev:x"


@given(
    prompt=st.integers(0, 5_000_000),
    completion=st.integers(0, 1_000_000),
    reasoning=st.integers(0, 1_000_000),
    cache_read=st.integers(0, 5_000_000),
    cache_write=st.integers(0, 5_000_000),
    rates=st.lists(
        st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)),
        min_size=5,
        max_size=5,
    ),
    tier=st.one_of(st.none(), st.integers(1, 1_000_000)),
    percent=st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=2, allow_nan=False)),
)
def test_cost_is_never_negative_and_equals_the_sum_of_its_parts(
    prompt: int,
    completion: int,
    reasoning: int,
    cache_read: int,
    cache_write: int,
    rates: list[Decimal | None],
    tier: int | None,
    percent: Decimal | None,
) -> None:
    base = Rates(D(1) if rates[0] is None else rates[0], D(2) if rates[1] is None else rates[1], *rates[2:])
    tiers = (Tier(tier, Rates(input=base.input * 2)),) if tier is not None else ()
    factor = None if percent is None else (D(100) - percent) / D(100)
    usage = Usage(prompt, completion, reasoning, cache_read, cache_write)
    cost = compute_cost(usage, PriceTable(base, tiers), factor)
    parts = (cost.input, cost.cache_read, cost.cache_write, cost.output, cost.reasoning)
    assert all(part >= 0 for part in parts)
    assert cost.total == sum(parts, D(0))
    assert cost.total >= 0


def test_anthropic_usage_reader_feeds_the_cost_without_double_counting(catalog: Catalog) -> None:
    from gophergate.core.usage import from_anthropic

    usage = from_anthropic(
        {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500, "output_tokens": 300}
    )
    assert (usage.prompt, usage.cache_read, usage.cache_write) == (1600, 1000, 500)
    cost = compute_cost(usage, table(catalog, "anthropic", "claude-sonnet-4-5"))
    assert cost.total == D("0.006975")  # the same hand-worked case as above


def test_gemini_usage_reader_feeds_the_cost(catalog: Catalog) -> None:
    from gophergate.core.usage import from_gemini

    usage = from_gemini(
        {
            "promptTokenCount": 2000,
            "cachedContentTokenCount": 1000,
            "candidatesTokenCount": 100,
            "thoughtsTokenCount": 400,
            "totalTokenCount": 2500,
        }
    )
    assert (usage.prompt, usage.completion, usage.reasoning, usage.cache_read) == (2000, 500, 400, 1000)
    assert compute_cost(usage, table(catalog, "gemini", "gemini-2.5-flash")).total == D("0.00158")


def test_a_price_reused_for_other_usages_and_after_its_discount_ends_recomputes() -> None:
    until = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    price = ModelPrice(PriceTable(Rates(input=D(10), output=D(20))), "s", Discount(D(50), until))
    before = dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    small, large = Usage(prompt=100, completion=0), Usage(prompt=1000, completion=0)
    assert price.cost(small, before)[0].total == D("0.0005")
    assert price.cost(large, before)[0].total == D("0.005")
    assert price.cost(small, before)[0].total == D("0.0005")
    assert price.cost(small, until) == (compute_cost(small, price.table), "s")  # the discount has ended

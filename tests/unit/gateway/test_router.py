"""The router's state with an injected clock: cooldowns, probes, failure windows; strategies' orders; rules."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from gophergate.gateway.resolve import Route
from gophergate.gateway.router import (
    MAX_COOLDOWN_S,
    Facts,
    Router,
    compile_group,
    plain_group,
)
from gophergate.settings import ModelGroupConfig, RoutingConfig

A = ("openai", "gpt-4o")
B = ("openai-eu", "gpt-4o")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _router(**defaults: Any) -> tuple[Router, Clock, list[tuple[str, tuple[str, str]]]]:
    clock = Clock()
    events: list[tuple[str, tuple[str, str]]] = []
    router = Router(
        RoutingConfig(**defaults), clock=clock, rng=random.Random(7), on_event=lambda k, t, u: events.append((k, t))
    )
    return router, clock, events


def _fail(router: Router, key: tuple[str, str], times: int = 1, retry_after: float | None = None) -> None:
    for _ in range(times):
        router.failed(key, "server_error", retry_after, True)


def test_a_target_cools_down_after_cooldown_after_failures_within_a_minute() -> None:
    router, clock, events = _router(cooldown_after=3, cooldown_s=30)
    _fail(router, A, 2)
    assert router.available(A)
    _fail(router, A)
    assert not router.available(A)
    assert events == [("target_cooled_down", A)]
    clock.now += 29.9
    assert not router.available(A)
    clock.now += 0.2
    assert router.available(A)


def test_failures_older_than_the_window_do_not_count() -> None:
    router, clock, _ = _router(cooldown_after=3)
    _fail(router, A, 2)
    clock.now += 61
    _fail(router, A)
    assert router.available(A)


def test_failures_outside_retry_on_never_cool_a_target() -> None:
    router, _, _ = _router(cooldown_after=1)
    router.failed(A, "server_error", None, False)
    assert router.available(A)


def test_after_a_cooldown_one_probe_goes_through_and_success_reopens() -> None:
    router, clock, events = _router(cooldown_after=1, cooldown_s=10)
    _fail(router, A)
    clock.now += 10
    assert router.available(A)
    assert router.claim(A) is True  # the probe
    assert not router.available(A)  # the others wait for its answer
    router.succeeded(A, 0.1)
    router.ended(A, True)
    assert router.available(A)
    assert router.claim(A) is False
    assert events == [("target_cooled_down", A), ("target_recovered", A)]


def test_a_failed_probe_cools_again_twice_as_long_capped_at_ten_minutes() -> None:
    router, clock, _ = _router(cooldown_after=1, cooldown_s=30)
    _fail(router, A)
    lengths = []
    for _ in range(8):
        start = router.cooling_ends(A) - clock.now
        lengths.append(round(start))
        clock.now = router.cooling_ends(A)
        assert router.claim(A)
        _fail(router, A)
        router.ended(A, True)
    assert lengths[:5] == [30, 60, 120, 240, 480]
    assert max(lengths) == MAX_COOLDOWN_S


def test_a_probe_that_ends_without_an_outcome_lets_the_next_request_probe() -> None:
    router, clock, _ = _router(cooldown_after=1, cooldown_s=5)
    _fail(router, A)
    clock.now += 5
    assert router.claim(A)
    router.ended(A, True)  # e.g. the client left
    assert router.available(A)
    assert router.claim(A)


def test_retry_after_longer_than_the_cooldown_sets_its_length() -> None:
    router, clock, _ = _router(cooldown_after=1, cooldown_s=30)
    _fail(router, A, retry_after=90)
    assert router.cooling_ends(A) == pytest.approx(clock.now + 90)


def test_re_cooling_extends_a_deadline_never_shortens_it() -> None:
    router, clock, _ = _router(cooldown_after=1, cooldown_s=30)
    _fail(router, A, retry_after=120)
    until = router.cooling_ends(A)
    clock.now += 1
    _fail(router, A)  # a 30 s cooldown from now ends before the current one
    assert router.cooling_ends(A) == until


def _routes(*keys: tuple[str, str], price: Any = None) -> list[tuple[Route, float]]:
    return [(Route(p, m, price), 1.0) for p, m in keys]


def _facts(tokens: int = 10) -> Facts:
    return Facts({}, [{"role": "user", "content": "hi"}], tokens)


def test_weighted_order_draws_the_first_target_by_weight() -> None:
    router, _, _ = _router()
    routes = [(Route(*A), 3.0), (Route(*B), 1.0)]
    firsts = Counter(router.order("weighted", routes, _facts(), 0)[0].provider for _ in range(20_000))
    assert firsts["openai"] / 20_000 == pytest.approx(0.75, abs=0.015)


def test_priority_keeps_the_configured_order() -> None:
    router, _, _ = _router()
    assert [r.provider for r in router.order("priority", _routes(B, A), _facts(), 0)] == ["openai-eu", "openai"]


def test_least_busy_orders_by_requests_in_flight() -> None:
    router, _, _ = _router()
    router.claim(A)
    router.claim(A)
    router.claim(B)
    assert [r.provider for r in router.order("least-busy", _routes(A, B), _facts(), 0)] == ["openai-eu", "openai"]


def test_latency_prefers_the_lower_moving_average_and_explores_a_few_percent() -> None:
    router, _, _ = _router()
    for _ in range(5):
        router.succeeded(A, 0.5)
        router.succeeded(B, 0.1)
    firsts = Counter(router.order("latency", _routes(A, B), _facts(), 0)[0].provider for _ in range(4000))
    assert 0.01 < firsts["openai"] / 4000 < 0.05  # half of the 5% exploration lands on the slow one


def test_latency_moving_average_follows_the_newest_figures() -> None:
    router, _, _ = _router()
    router.succeeded(A, 1.0)
    for _ in range(20):
        router.succeeded(A, 0.1)
    assert router.state(A).ttft == pytest.approx(0.1, abs=0.02)


def test_cost_orders_by_this_requests_price_and_unknown_prices_last() -> None:
    class Price:
        def __init__(self, per_token: str) -> None:
            self.rate = Decimal(per_token)

        def total(self, usage: Any) -> Decimal:
            return self.rate * (usage.prompt + usage.completion)

    router, _, _ = _router()
    routes = [
        (Route("x", "unpriced"), 1.0),
        (Route("y", "dear", Price("2")), 1.0),  # type: ignore[arg-type]
        (Route("z", "cheap", Price("1")), 1.0),  # type: ignore[arg-type]
    ]
    assert [r.model for r in router.order("cost", routes, _facts(), 100)] == ["cheap", "dear", "unpriced"]


def _group(**config: Any) -> Any:
    return compile_group("g", ModelGroupConfig(**{"targets": [{"model": "a/b"}], **config}), RoutingConfig())


def test_rules_match_on_what_the_request_is() -> None:
    group = _group(
        rules=[
            {"when": {"min_prompt_tokens": 100, "has_tools": True}, "targets": [{"model": "big"}]},
            {"when": {"reasoning_effort": ["high"]}, "targets": [{"model": "think"}]},
            {"when": {"pattern": "(?i)^sql:"}, "targets": [{"model": "coder"}]},
            {"when": {"max_prompt_tokens": 5}, "targets": [{"model": "tiny"}]},
        ]
    )
    big, think, coder, tiny = group.rules
    tools = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    assert big.matches(Facts(tools, [], 100)) and not big.matches(Facts(tools, [], 99))
    assert not big.matches(Facts({}, [], 1000))
    assert think.matches(Facts({"reasoning_effort": "high"}, [], 1))
    assert think.matches(Facts({"reasoning": {"effort": "high"}}, [], 1))  # the Responses API's spelling
    assert not think.matches(Facts({"reasoning_effort": "low"}, [], 1))
    assert coder.matches(Facts({}, [{"role": "user", "content": "SQL: select 1"}], 1))
    assert not coder.matches(Facts({}, [{"role": "user", "content": "SQL: x"}, {"role": "user", "content": "no"}], 1))
    assert tiny.matches(Facts({}, [], 5)) and not tiny.matches(Facts({}, [], 6))


def test_a_group_takes_routing_defaults_for_what_it_leaves_unset() -> None:
    defaults = RoutingConfig(retries=2, fallbacks=("x/y",), first_token_timeout_s=7)
    group = compile_group("g", ModelGroupConfig(targets=[{"model": "a/b"}], retries=0), defaults)  # type: ignore[list-item]
    assert (group.retries, group.fallbacks, group.first_token_timeout_s) == (0, ("x/y",), 7)
    plain = plain_group("x/y", defaults)
    assert plain.name is None and plain.fallbacks == () and plain.retries == 2  # never falls back to itself


def test_group_configuration_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="pattern"):
        ModelGroupConfig(targets=[{"model": "a"}], rules=[{"when": {"pattern": "("}, "targets": [{"model": "b"}]}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="strategy"):
        ModelGroupConfig(targets=[{"model": "a"}], strategy="fastest")  # type: ignore[arg-type,list-item]
    with pytest.raises(ValueError, match="targets"):
        ModelGroupConfig(targets=[])
    with pytest.raises(ValueError, match="weight"):
        ModelGroupConfig(targets=[{"model": "a", "weight": 0}])  # type: ignore[list-item]


def test_unserved_group_targets_are_named_once_at_start() -> None:
    from gophergate.gateway.resolve import Resolver
    from gophergate.runtime import unserved_targets

    group = compile_group(
        "smart",
        ModelGroupConfig(targets=[{"model": "openai/gpt-4o"}, {"model": "opanai/gpt-4o"}], fallbacks=["mistral-x"]),  # type: ignore[list-item]
        RoutingConfig(),
    )
    problems = unserved_targets(Resolver(frozenset({"openai"}), {}, {}, groups={"smart": group}))
    assert len(problems) == 2
    assert problems[0].startswith("model group 'smart': 'opanai/gpt-4o' is skipped")
    assert "'mistral-x' is skipped" in problems[1]

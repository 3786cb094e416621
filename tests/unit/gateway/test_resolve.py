from __future__ import annotations

import pytest

from gophergate.errors import ModelNotFound
from gophergate.gateway.resolve import Resolver, Route

ALL = frozenset({"openai", "deepseek", "xai", "moonshot", "ollama"})


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o", "openai"),
        ("o1-preview", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("deepseek-flash", "deepseek"),
        ("grok-4.3", "xai"),
        ("kimi-k3", "moonshot"),
        ("moonshot-v1-8k", "moonshot"),
    ],
)
def test_name_patterns(model: str, provider: str) -> None:
    assert Resolver(ALL, {}, {}).resolve(model) == Route(provider, model)


def test_prefix_wins_over_pattern_and_strips_only_the_provider() -> None:
    r = Resolver(ALL, {}, {})
    assert r.resolve("ollama/gpt-oss:20b") == Route("ollama", "gpt-oss:20b")
    assert r.resolve("openai/org/model") == Route("openai", "org/model")


def test_prefix_of_unconfigured_provider_is_not_a_route() -> None:
    with pytest.raises(ModelNotFound):
        Resolver(frozenset({"openai"}), {}, {}).resolve("mistral/large")


def test_alias_before_declared_and_patterns() -> None:
    r = Resolver(ALL, {"gpt-4o": "deepseek/deepseek-flash", "chain": "gpt-4o"}, {"house": "ollama"})
    assert r.resolve("gpt-4o") == Route("deepseek", "deepseek-flash")
    assert r.resolve("chain") == Route("deepseek", "deepseek-flash")
    assert r.resolve("house") == Route("ollama", "house")


@pytest.mark.parametrize("model", ["claude-sonnet-4", "gemini-2.5-pro", "gpt-4o"])
def test_known_family_of_unconfigured_provider_is_model_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        Resolver(frozenset({"deepseek"}), {}, {}).resolve(model)
    assert info.value.code == "model_not_found" and info.value.status == 404


def test_unknown_model_never_falls_back() -> None:
    with pytest.raises(ModelNotFound):
        Resolver(ALL, {}, {}).resolve("llama-3-70b")

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

UPSTREAM_KEY = "sk-upstream-test"
DIALECTS = ("openai", "deepseek", "xai", "moonshot", "ollama")


class Stack:
    """One gateway in front of one strict fake per OpenAI-compatible provider (shared by a test module)."""

    def __init__(self, gateway: Gateway, fakes: dict[str, FakeOpenAICompat]) -> None:
        self.gateway = gateway
        self.fakes = fakes

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0, **kwargs)  # type: ignore[arg-type]

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.gateway.base_url, api_key=self.gateway.key, max_retries=0)


def provider_env(fakes: dict[str, FakeOpenAICompat]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, fake in fakes.items():
        upper = name.upper()
        env[f"{upper}_BASE_URL"] = fake.base_url
        if name != "ollama":
            env[f"{upper}_API_KEY"] = UPSTREAM_KEY
    return env


@pytest.fixture(scope="module", params=["auto", "aiohttp"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every stack test runs with each upstream client setting."""
    fakes = {name: FakeOpenAICompat(dialect=name, api_key=UPSTREAM_KEY) for name in DIALECTS}
    for fake in fakes.values():
        fake.start()
    tmp: Path = tmp_path_factory.mktemp("stack")
    gateway = Gateway(tmp, env={**provider_env(fakes), "GOPHERGATE_UPSTREAM_CLIENT": request.param})
    try:
        gateway.start()
        yield Stack(gateway, fakes)
    finally:
        gateway.stop()
        for fake in fakes.values():
            fake.stop()

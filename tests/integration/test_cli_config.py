"""The CLI, configuration sources, models listing and health endpoints of a real gateway process."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.integration.conftest import Stack
from tests.support import free_port, query


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GOPHERGATE_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, "-m", "gophergate", "serve"],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("value", [None, "", "abc", "0" * 63, base64.b64encode(b"x" * 31).decode()])
def test_missing_or_malformed_encryption_key_exits_before_binding(tmp_path: Path, value: str | None) -> None:
    port = free_port()
    env = {"GOPHERGATE_PORT": str(port)}
    if value is not None:
        env["GOPHERGATE_ENCRYPTION_KEY"] = value
    result = _serve(tmp_path, env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GOPHERGATE_ENCRYPTION_KEY" in lines[0]
    if value and len(value) >= 8:
        assert value not in lines[0], "the secret itself must not be echoed"
    assert _port_is_free(port)
    assert not (tmp_path / "data").exists(), "nothing may be written before the configuration is valid"


def test_base64_encryption_key_is_accepted(make_gateway: Any) -> None:
    gateway = make_gateway(env={"GOPHERGATE_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode()})
    gateway.start()
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_init_env_writes_a_private_key_file_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    cmd = [sys.executable, "-m", "gophergate", "init-env", "--path", str(env_file)]
    subprocess.run(cmd, check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
    first = env_file.read_text()
    assert first.startswith("GOPHERGATE_ENCRYPTION_KEY=") and len(first.strip().split("=", 1)[1]) == 64
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    subprocess.run(cmd, check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
    assert env_file.read_text() == first


def test_dotenv_file_is_read(make_gateway: Any) -> None:
    gateway = make_gateway()
    key = gateway.env.pop("GOPHERGATE_ENCRYPTION_KEY")
    (gateway.tmp_path / ".env").write_text(f"GOPHERGATE_ENCRYPTION_KEY={key}\n")
    gateway.start()
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_keys_are_stored_only_as_sha256(make_gateway: Any) -> None:
    import hashlib

    gateway = make_gateway()
    key = gateway.create_key("hash-check")
    assert key.startswith("sk-") and len(key) >= 3 + 43
    rows = query(gateway.database_url, "SELECT key_hash, key_hint FROM client_keys")
    assert rows[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    db_bytes = (gateway.data_dir / "gophergate.db").read_bytes()
    assert key.encode() not in db_bytes


def test_toml_config_custom_provider_and_aliases(make_gateway: Any) -> None:
    with FakeOpenAICompat(dialect="openai", api_key="sk-custom", models=["house-model"]) as fake:
        config = f"""
[aliases]
fast = "acme/house-model"
default = "house-model"

[providers.acme]
base_url = "{fake.base_url}"
api_key_env = "ACME_KEY"
models = ["house-model"]
"""
        gateway = make_gateway(env={"ACME_KEY": "sk-custom"}, config_toml=config)
        gateway.start()
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
        for model in ("fast", "default", "house-model", "acme/house-model"):
            completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert completion.choices[0].message.content == "echo: hi"
            assert fake.requests[-1].body["model"] == "house-model"
        ids = {m.id for m in client.models.list()}
        assert {"house-model", "fast", "default"} <= ids
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_config_flag_names_a_missing_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gophergate", "serve", "--config", str(tmp_path / "nope.toml")],
        env={"PATH": os.environ["PATH"], "GOPHERGATE_ENCRYPTION_KEY": secrets.token_hex(32)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "nope.toml" in result.stderr


def test_models_list_and_retrieve(stack: Stack) -> None:
    client = stack.client()
    ids = {m.id: m.owned_by for m in client.models.list()}
    assert ids["gpt-4o-mini"] == "openai"
    assert ids["deepseek-flash"] == "deepseek"
    assert ids["grok-4.3"] == "xai"
    assert ids["kimi-k3"] == "moonshot"
    assert ids["ollama/llama3.2"] == "ollama"
    assert client.models.retrieve("gpt-4o-mini").owned_by == "openai"
    assert client.models.retrieve("ollama/llama3.2").id == "ollama/llama3.2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_models_need_a_key(stack: Stack) -> None:
    assert httpx.get(stack.gateway.base_url + "/models").status_code == 401


def test_health_and_readiness(stack: Stack) -> None:
    assert httpx.get(stack.gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(stack.gateway.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "log_writer": True}


def test_provider_without_key_is_not_offered(make_gateway: Any) -> None:
    gateway = make_gateway(env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    gateway.start()
    assert httpx.get(gateway.url + "/readyz").json()["details"]["providers"] == []
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {gateway.key}"},
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"

"""The real Codex CLI (``codex exec``, headless) through the gateway's /v1/responses to a DeepSeek-style strict fake:
the gateway translates Codex's Responses requests to chat and back, a shell command Codex runs goes back to the model
as a tool result, every request is logged, and nothing leaves the machine.

Codex is installed once from npm into ``tests/.cache/agents/codex-<version>/`` (git-ignored); without npm or the
registry the module is skipped with the reason. Codex runs with a scratch ``HOME``/``CODEX_HOME`` whose config.toml
points its model provider at the gateway and turns off what would phone home, and with the proxy variables aimed at
a local trap that records (and refuses) every connection meant for somewhere else."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents import EgressTrap, install_agent
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

CODEX_VERSION = "0.171.0"  # npm view @openai/codex version (2026-12-07)
UPSTREAM_KEY = "sk-upstream-codex-0123456789"
MODEL = "deepseek-flash"
RUN_TIMEOUT = 60  # seconds for one `codex exec`; a run takes about a second

# The first run downloads Codex (its native binary is ~120 MB compressed) within the first test's setup.
pytestmark = pytest.mark.timeout(600)

# Codex's model provider is the gateway. The rest keeps Codex off the network and its requests predictable, each key
# checked by --strict-config: no update check, analytics, feedback upload or OpenTelemetry export; no web search tool
# (a built-in OpenAI tool the gateway refuses for other providers, docs/front-door.md); `features.plugins` off, or
# Codex syncs its plugin marketplace from github.com, api.github.com and chatgpt.com at start.
CONFIG = """\
model = "{model}"
model_provider = "gophergate"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.gophergate]
name = "GopherGate"
base_url = "{base_url}"
env_key = "GOPHERGATE_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[features]
plugins = false
"""
# --dangerously-bypass-approvals-and-sandbox: no approval prompt and no OS sandbox (Landlock/bubblewrap are not
# there in every container); the commands run are the fake's, in a scratch directory. --skip-git-repo-check: that
# directory is no git repository. --strict-config: a misspelt key above is an error, not a silent default.
FLAGS = ("--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--strict-config")


@dataclass
class CodexRun:
    proc: subprocess.CompletedProcess[str]
    events: list[dict[str, Any]]

    @property
    def items(self) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e.get("type") == "item.completed"]

    @property
    def final_message(self) -> str:
        messages = [i["text"] for i in self.items if i.get("type") == "agent_message"]
        assert messages, f"Codex gave no answer:\n{self.output}"
        return str(messages[-1])

    @property
    def thread_id(self) -> str:
        return str(next(e["thread_id"] for e in self.events if e.get("type") == "thread.started"))

    @property
    def output(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.proc.stdout}\nstderr:\n{self.proc.stderr[-3000:]}"


class CodexStack:
    def __init__(self, codex: Path, gateway: Gateway, deepseek: FakeOpenAICompat, trap: EgressTrap, home: Path):
        self.codex = codex
        self.gateway = gateway
        self.deepseek = deepseek
        self.trap = trap
        self.home = home

    def run(self, key: str, cwd: Path, *args: str) -> CodexRun:
        """``codex exec`` with ``args`` in ``cwd`` and the gateway client key ``key``, its JSONL events parsed."""
        proxy = {name: self.trap.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")}
        no_proxy = {"NO_PROXY": "127.0.0.1,localhost"}
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "CODEX_HOME": str(self.home / ".codex"),
            "GOPHERGATE_KEY": key,
            **proxy,
            **{k.lower(): v for k, v in proxy.items()},
            **no_proxy,
            **{k.lower(): v for k, v in no_proxy.items()},
        }
        proc = subprocess.run(
            [str(self.codex), "exec", *FLAGS, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,  # else exec waits for more prompt on stdin
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return CodexRun(proc, events)

    def rows(self, key_name: str, count: int) -> list[dict[str, Any]]:
        """The log rows of the key named ``key_name``, once there are ``count`` (the log is written in batches)."""
        where = f"client_key_id = (SELECT id FROM client_keys WHERE name = '{key_name}')"
        return self.gateway.wait_rows(count, where)


def install_codex() -> Path:
    """The `codex` launcher of the pinned version, installed into the test cache once (skip when that fails)."""
    return install_agent("@openai/codex", CODEX_VERSION, "codex", "codex", f"codex-cli {CODEX_VERSION}")


@pytest.fixture
def key(stack: CodexStack, request: pytest.FixtureRequest) -> str:
    """A gateway client key of the test's own, named after it: the log rows of its Codex runs are the key's."""
    return stack.gateway.create_key(request.node.name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodexStack]:
    codex = install_codex()
    deepseek = FakeOpenAICompat("deepseek", api_key=UPSTREAM_KEY).start()
    trap = EgressTrap()
    gateway = Gateway(
        tmp_path_factory.mktemp("codex-gateway"),
        env={"DEEPSEEK_BASE_URL": deepseek.base_url, "DEEPSEEK_API_KEY": UPSTREAM_KEY},
    )
    home = tmp_path_factory.mktemp("codex-home")
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(CONFIG.format(model=MODEL, base_url=gateway.base_url))
    try:
        gateway.start()
        yield CodexStack(codex, gateway, deepseek, trap, home)
    finally:
        gateway.stop()
        deepseek.stop()
        trap.close()


def test_codex_runs_a_shell_command_and_the_model_gets_its_output(
    stack: CodexStack, key: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    token = "marker-" + secrets.token_hex(8)
    (tmp_path / "marker.txt").write_text(token + "\n")
    asked = len(stack.deepseek.chat_requests)

    # The fake's trigger: call exec_command (Codex's shell tool) with exactly these arguments.
    run = stack.run(key, tmp_path, "-C", str(tmp_path), 'CALL exec_command {"cmd": "cat marker.txt"}')

    assert run.proc.returncode == 0, run.output
    commands = [i for i in run.items if i.get("type") == "command_execution"]
    assert len(commands) == 1, run.output
    assert "cat marker.txt" in commands[0]["command"] and commands[0]["exit_code"] == 0
    assert token in commands[0]["aggregated_output"]
    assert run.final_message.startswith("tool result: ") and token in run.final_message  # the fake's answer

    chats = stack.deepseek.chat_requests[asked:]
    assert len(chats) == 2, [c.body for c in chats]
    first, second = chats[0].body, chats[1].body
    assert first["stream"] is True and first["messages"][-1]["role"] == "user"
    assert "exec_command" in [t["function"]["name"] for t in first["tools"]]
    *_, assistant, result = second["messages"]
    (call,) = assistant["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "cat marker.txt"}
    assert assistant["reasoning_content"]  # DeepSeek wants its thinking back in a tool loop (the fake checks it)
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"] and token in result["content"]

    rows = stack.rows(request.node.name, 2)
    assert [(r["endpoint"], r["provider"], r["model"], r["status"], r["stream"]) for r in rows] == [
        ("responses", "deepseek", MODEL, 200, True),
    ] * 2, [r["error_message"] for r in rows]
    usage = next(e["usage"] for e in run.events if e.get("type") == "turn.completed")
    assert usage["input_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert stack.trap.seen == []


def test_codex_resumes_a_session_with_its_history(
    stack: CodexStack, key: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = stack.run(key, tmp_path, "-C", str(tmp_path), "remember the word kiwi")
    assert first.proc.returncode == 0, first.output
    assert first.final_message == "echo: remember the word kiwi"
    asked = len(stack.deepseek.chat_requests)

    # Codex stores nothing upstream (store: false): the follow-up carries the whole conversation again.
    again = stack.run(key, tmp_path, "resume", first.thread_id, "WORDS 3")

    assert again.proc.returncode == 0, again.output
    assert again.final_message == "word1 word2 word3"
    (chat,) = stack.deepseek.chat_requests[asked:]
    turns = [(m["role"], m["content"]) for m in chat.body["messages"] if m["role"] in ("user", "assistant")]
    assert ("assistant", "echo: remember the word kiwi") in turns
    assert turns[-1] == ("user", [{"type": "text", "text": "WORDS 3"}])
    assert [r["status"] for r in stack.rows(request.node.name, 2)] == [200, 200]
    assert stack.trap.seen == []


def test_codex_sub_agent_namespace_tools_are_not_refused(
    stack: CodexStack, key: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Codex (0.171.0) declares its sub-agent tools (spawn_agent, send_input, ...) as one Responses tool of type
    `namespace` holding function tools, with sub-agents on as they are by default; the gateway must hand them to a
    chat backend as function tools, not refuse the request."""
    asked = len(stack.deepseek.chat_requests)

    run = stack.run(key, tmp_path, "-C", str(tmp_path), "say hello")

    rows = stack.rows(request.node.name, 1)
    assert [(r["endpoint"], r["status"]) for r in rows] == [("responses", 200)], [r["error_message"] for r in rows]
    assert run.proc.returncode == 0, run.output
    assert run.final_message == "echo: say hello"
    (chat,) = stack.deepseek.chat_requests[asked:]
    assert "spawn_agent" in [t["function"]["name"] for t in chat.body["tools"]]

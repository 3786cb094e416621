"""The real Claude Code CLI (``claude -p``, headless) through the gateway's /v1/messages to backends that are not
Anthropic: an OpenAI fake (the request translated to chat) and the Gemini fake (translated to generateContent).
A tool Claude Code runs (Read, Bash) goes back to the model as a tool result, every request reaches the gateway
with the client key and lands in the request log, and nothing leaves the machine.

Claude Code is installed once from npm into ``tests/.cache/agents/claude-code-<version>/`` (git-ignored; the npm
package carries the native binary in a per-platform optional dependency); without npm or the registry the module is
skipped with the reason. Each run gets a scratch ``HOME`` and working directory, and the proxy variables aimed at a
local trap that records (and refuses) every connection meant for somewhere else."""

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
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.support import Gateway

CLAUDE_CODE_VERSION = "2.1.332"  # npm view @anthropic-ai/claude-code version (2026-12-07)
UPSTREAM_KEY = "sk-upstream-claude-code-0123456789"
RUN_TIMEOUT = 60  # seconds for one `claude -p`; a run takes about a second


@dataclass(frozen=True)
class Backend:
    provider: str
    model: str


OPENAI = Backend("openai", "gpt-5-mini")
GEMINI = Backend("gemini", "gemini-2.5-flash")
BACKENDS = [pytest.param(OPENAI, id="openai"), pytest.param(GEMINI, id="gemini")]

# The first run downloads Claude Code (its native binary is ~400 MB unpacked) within the first test's setup.
pytestmark = pytest.mark.timeout(600)


# -p: one prompt, no TTY. --output-format json: one result object on stdout. --allowedTools: Read of a file in the
# working directory is allowed anyway; Bash asks, and in -p nobody answers, so `echo` is allowed by rule
# (--dangerously-skip-permissions / bypassPermissions are refused when running as root, as CI does).
FLAGS = ("--output-format", "json", "--max-turns", "3", "--allowedTools", "Read", "Bash(echo:*)")


@dataclass
class ClaudeRun:
    proc: subprocess.CompletedProcess[str]

    @property
    def result(self) -> dict[str, Any]:
        """The `--output-format json` result object."""
        try:
            value = json.loads(self.proc.stdout)
        except ValueError:
            value = None
        assert isinstance(value, dict), f"Claude Code printed no JSON result:\n{self.output}"
        return value

    @property
    def output(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.proc.stdout[-3000:]}\nstderr:\n{self.proc.stderr[-3000:]}"


class ClaudeStack:
    def __init__(self, claude: Path, gateway: Gateway, openai: FakeOpenAICompat, gemini: FakeGemini, trap: EgressTrap):
        self.claude = claude
        self.gateway = gateway
        self.openai = openai
        self.gemini = gemini
        self.trap = trap

    def run(
        self,
        workdir: Path,
        prompt: str,
        *,
        model: str,
        auth: dict[str, str],
        env: dict[str, str] | None = None,
    ) -> ClaudeRun:
        """``claude -p prompt`` in ``workdir`` (with a scratch HOME beside it), every model name set to ``model``."""
        home = workdir.parent / "home"
        home.mkdir(exist_ok=True)
        proxy = {name: self.trap.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")}
        no_proxy = {"NO_PROXY": "127.0.0.1,localhost"}
        full_env = {
            "PATH": os.environ.get("PATH", ""),  # the Bash tool runs `echo` from it
            "HOME": str(home),
            # The one that matters: without it Claude Code connects to api.anthropic.com at start (the trap saw
            # `CONNECT api.anthropic.com:443`); the other three are what it implies, spelt out.
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",  # a gateway error shows at once, not after backed-off retries
            "ANTHROPIC_BASE_URL": self.gateway.url,  # the root: the SDK adds /v1/messages
            # The main model, and the small/fast one (background tasks: titles, summaries) under both the name
            # 2.1.332 reads and its older spelling, so that no request asks for a Claude model.
            "ANTHROPIC_MODEL": model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "ANTHROPIC_SMALL_FAST_MODEL": model,
            **auth,
            **proxy,
            **{k.lower(): v for k, v in proxy.items()},
            **no_proxy,
            **{k.lower(): v for k, v in no_proxy.items()},
            **(env or {}),
        }
        proc = subprocess.run(
            [str(self.claude), "-p", prompt, *FLAGS],
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,  # -p appends piped stdin to the prompt
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        return ClaudeRun(proc)

    def rows(self, key_name: str, count: int) -> list[dict[str, Any]]:
        """The log rows of the key named ``key_name``, once there are ``count`` (the log is written in batches)."""
        where = f"client_key_id = (SELECT id FROM client_keys WHERE name = '{key_name}')"
        return self.gateway.wait_rows(count, where)


def install_claude_code() -> Path:
    """The `claude` launcher of the pinned version, installed into the test cache once (skip when that fails)."""
    return install_agent(
        "@anthropic-ai/claude-code",
        CLAUDE_CODE_VERSION,
        "claude-code",
        "claude",
        f"{CLAUDE_CODE_VERSION} (Claude Code)",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClaudeStack]:
    claude = install_claude_code()
    openai = FakeOpenAICompat("openai", api_key=UPSTREAM_KEY).start()
    gemini = FakeGemini().start()
    trap = EgressTrap()
    gateway = Gateway(
        tmp_path_factory.mktemp("claude-code-gateway"),
        env={
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "GEMINI_BASE_URL": gemini.base_url,
            "GEMINI_API_KEY": gemini.api_key,
        },
    )
    try:
        gateway.start()
        yield ClaudeStack(claude, gateway, openai, gemini, trap)
    finally:
        gateway.stop()
        openai.stop()
        gemini.stop()
        trap.close()


@pytest.fixture
def key(stack: ClaudeStack, request: pytest.FixtureRequest) -> str:
    """A gateway client key of the test's own, named after it: the log rows of its Claude Code runs are the key's."""
    return stack.gateway.create_key(request.node.name)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def tool_round_trip(stack: ClaudeStack, backend: Backend, since: int) -> tuple[dict[str, Any], Any]:
    """The tool call the backend's fake made and the result it got back, from its requests after the first
    ``since``: ``({"name", "args"}, result)``; the result is the tool message's text (OpenAI) or the
    functionResponse's ``response`` object (Gemini)."""
    if backend is OPENAI:
        chats = [r.body for r in stack.openai.chat_requests[since:]]
        assert len(chats) == 2, [c["messages"][-1] for c in chats]
        *_, assistant, result = chats[1]["messages"]
        (call,) = assistant["tool_calls"]
        assert result["role"] == "tool" and result["tool_call_id"] == call["id"], result
        return {"name": call["function"]["name"], "args": json.loads(call["function"]["arguments"])}, result["content"]
    generates = [r.body for r in stack.gemini.generate_requests[since:]]
    assert len(generates) == 2, [g["contents"][-1] for g in generates]
    *_, model_turn, last = generates[1]["contents"]
    (call,) = [p["functionCall"] for p in model_turn["parts"] if "functionCall" in p]
    (response,) = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    assert last["role"] == "user" and response["name"] == call["name"], last
    return {"name": call["name"], "args": call["args"]}, response["response"]


def upstream_count(stack: ClaudeStack, backend: Backend) -> int:
    return len(stack.openai.chat_requests if backend is OPENAI else stack.gemini.generate_requests)


def assert_all_through_the_gateway(stack: ClaudeStack, key_name: str, backend: Backend, calls: int) -> None:
    """Claude Code's requests all reached the gateway with the test's key: ``calls`` Messages requests answered
    by the backend, count_tokens (if any) answered, and nothing sent anywhere else."""
    rows = stack.rows(key_name, calls)
    messages = [r for r in rows if r["endpoint"] == "messages"]
    assert [(r["provider"], r["model"], r["status"], r["stream"]) for r in messages] == [
        (backend.provider, backend.model, 200, True)
    ] * calls, [r["error_message"] for r in messages]
    counts = [r for r in rows if r["endpoint"] == "messages.count_tokens"]
    assert all(r["status"] == 200 for r in counts), [r["error_message"] for r in counts]
    assert len(messages) + len(counts) == len(rows), [r["endpoint"] for r in rows]
    assert stack.trap.seen == []


# -- tools ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_var", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_claude_code_reads_a_file_and_the_model_gets_its_content(
    stack: ClaudeStack, key: str, workdir: Path, backend: Backend, auth_var: str, request: pytest.FixtureRequest
) -> None:
    """The key as Claude Code sends it with either variable: `Authorization: Bearer` or `x-api-key`."""
    token = "marker-" + secrets.token_hex(8)
    notes = workdir / "notes.txt"
    notes.write_text(f"the word is {token}\n")
    asked = upstream_count(stack, backend)

    # The fake's trigger: call the tool named Read (Claude Code declares a dozen) with exactly these arguments.
    prompt = "CALL Read " + json.dumps({"file_path": str(notes)})
    run = stack.run(workdir, prompt, model=backend.model, auth={auth_var: key})

    assert run.proc.returncode == 0, run.output
    result = run.result
    assert (result["subtype"], result["is_error"], result["num_turns"]) == ("success", False, 2), run.output
    assert result["result"].startswith("tool result: ") and token in result["result"]  # the fake's answer
    assert result["permission_denials"] == []
    call, output = tool_round_trip(stack, backend, asked)
    assert call == {"name": "Read", "args": {"file_path": str(notes)}}
    assert token in json.dumps(output)  # the file's content went back to the model
    assert_all_through_the_gateway(stack, request.node.name, backend, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_claude_code_runs_an_allowed_bash_command_and_the_model_gets_its_output(
    stack: ClaudeStack, key: str, workdir: Path, backend: Backend, request: pytest.FixtureRequest
) -> None:
    token = "marker-" + secrets.token_hex(8)
    asked = upstream_count(stack, backend)
    command = f"echo {token}-$((6*7))"  # only a shell makes 42 of it

    prompt = "CALL Bash " + json.dumps({"command": command, "description": "Print a marker"})
    run = stack.run(workdir, prompt, model=backend.model, auth={"ANTHROPIC_AUTH_TOKEN": key})

    assert run.proc.returncode == 0, run.output
    result = run.result
    assert (result["is_error"], result["num_turns"]) == (False, 2), run.output
    assert result["result"].startswith("tool result: ") and f"{token}-42" in result["result"]
    call, output = tool_round_trip(stack, backend, asked)
    assert call["name"] == "Bash" and call["args"]["command"] == command
    assert f"{token}-42" in json.dumps(output)
    assert_all_through_the_gateway(stack, request.node.name, backend, 2)


# -- staying on the machine -----------------------------------------------------------------------------------------


def test_the_egress_trap_catches_what_claude_code_sends_to_another_host(
    stack: ClaudeStack, key: str, workdir: Path
) -> None:
    """Claude Code honours the proxy variables: an empty trap in the other tests means nothing left the machine."""
    before = len(stack.trap.seen)

    run = stack.run(
        workdir,
        "hello",
        model=OPENAI.model,
        auth={"ANTHROPIC_AUTH_TOKEN": key},
        env={"ANTHROPIC_BASE_URL": "http://gophergate-trap-check.invalid"},
    )

    assert run.result["is_error"] is True, run.output
    assert stack.trap.seen[before:] == ["POST http://gophergate-trap-check.invalid/v1/messages?beta=true HTTP/1.1"]
    del stack.trap.seen[before:]  # expected here; the other tests check the trap stays empty


# -- gateway regressions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_claude_codes_mid_conversation_system_turns_are_accepted(
    stack: ClaudeStack, key: str, workdir: Path, backend: Backend, request: pytest.FixtureRequest
) -> None:
    """Claude Code as it comes (no capability turned off) puts `{"role": "system", ...}` turns in `messages`
    (Anthropic's mid-conversation system messages); the gateway must take them and tell the backend."""
    token = "marker-" + secrets.token_hex(8)
    notes = workdir / "notes.txt"
    notes.write_text(f"the word is {token}\n")
    asked = upstream_count(stack, backend)

    prompt = "CALL Read " + json.dumps({"file_path": str(notes)})
    run = stack.run(workdir, prompt, model=backend.model, auth={"ANTHROPIC_AUTH_TOKEN": key})

    assert run.proc.returncode == 0, run.output
    assert run.result["is_error"] is False and token in run.result["result"], run.output
    call, output = tool_round_trip(stack, backend, asked)
    assert call["name"] == "Read" and token in json.dumps(output)
    # What Claude Code put in its system turn (its environment) reached the model.
    first = (stack.openai.chat_requests if backend is OPENAI else stack.gemini.generate_requests)[asked].body
    assert f"Primary working directory: {workdir}" in json.dumps(first)
    assert_all_through_the_gateway(stack, request.node.name, backend, 2)


def test_claude_code_on_a_model_without_reasoning_gets_no_reasoning_effort(
    stack: ClaudeStack, key: str, workdir: Path, request: pytest.FixtureRequest
) -> None:
    """Claude Code asks every model it does not know for adaptive thinking (`thinking: {"type": "adaptive"}`,
    `output_config.effort: "high"`); translated for gpt-4o-mini, which does not reason, that must not become a
    `reasoning_effort` OpenAI refuses (400 "Unsupported parameter: 'reasoning_effort' is not supported with this
    model."): the docs suggest gpt-4o-mini as Claude Code's small model."""
    asked = len(stack.openai.chat_requests)

    run = stack.run(
        workdir,
        "hello",
        model="gpt-4o-mini",
        auth={"ANTHROPIC_AUTH_TOKEN": key},
    )

    assert run.proc.returncode == 0, run.output
    assert run.result["is_error"] is False and run.result["result"].endswith("hello"), run.output
    (chat,) = stack.openai.chat_requests[asked:]
    assert "reasoning_effort" not in chat.body
    assert_all_through_the_gateway(stack, request.node.name, Backend("openai", "gpt-4o-mini"), 1)

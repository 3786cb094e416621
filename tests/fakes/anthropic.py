"""A strict fake Anthropic Messages API server (real HTTP on loopback, aiohttp.web in a thread).

Wire formats, error shapes and the validation rules follow the shared providers.md; comments cite its
sections (§). Rules marked [3P] are API behaviour that providers.md does not list but public reports show (the
issue is named); rules marked [MEM] are from the API's documented feature notes and not re-verified here.

The text of the last user message selects scripted behaviour, like tests/fakes/openai_compat.py:

    FAIL <status>    reply with that HTTP error in Anthropic's error shape (429 adds retry-after; 529 is
                     overloaded_error)
    SLOW <ms>        wait that long before answering / between stream events
    CUT              stream: two text deltas, then the connection is dropped (no message_delta/stop)
    MIDERROR         stream: one text delta, then `event: error` (overloaded_error) and the end
    HANGUP           read the whole request, then close the connection without a byte of answer
    BADEVENT         stream: one text delta, then an event whose JSON is cut off, then the rest
    HUGEEVENT <n>    stream: one text delta, then a data line of n MiB without an end
    WORDS <n>        answer with n words
    CACHE <n>        report n prompt tokens as cache reads; CACHEWRITE <n> as cache writes
    REFUSE           stop_reason "refusal" with no text
    call tool        (request has tools) call the first tool, or the one tool_choice names
    call all tools   call every tool, in parallel

Otherwise the answer is "echo: " + the text of the last user message (plus "[images: i, documents: d]" when
it carries media), or "tool result: " + the joined tool results when the last turn is tool results. With
output_config.format json_schema the answer is a JSON object built from the schema. Thinking (when the
request enables it) is "Thinking about: <text>" with a signature the fake remembers and checks on replay.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import string
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import LoopbackServer, hang_up, huge_event

VERSIONS = ("2023-06-01", "2026-10-21")  # §4.1
# model -> (thinking style none|budget|adaptive, rejects temperature+top_p together, max output tokens)
MODELS: dict[str, tuple[str, bool, int]] = {
    "claude-3-5-haiku-20241022": ("none", False, 8192),
    "claude-sonnet-4-5-20250929": ("budget", True, 64000),
    "claude-opus-4-7": ("adaptive", True, 128000),
}
TOP_LEVEL_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
        "top_k", "tools", "tool_choice", "thinking", "output_config", "service_tier", "cache_control", "container",
        "mcp_servers", "context_management", "diagnostics", "inference_geo",
    }
)  # fmt: skip
MID_CONVERSATION_SYSTEM = "mid-conversation-system-2026-04-07"  # the beta Claude Code sends its system turns under
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")  # removed in 2026-10-21 (§4.1)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")  # §4.2
EFFORTS = ("low", "medium", "high", "xhigh", "max")  # §4.2
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_NON_EMPTY = "all messages must have non-empty content except for the optional final assistant message"
_ALNUM = string.ascii_letters + string.digits
_ERROR_TYPES = {  # §4.6
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES = {
    401: "invalid x-api-key",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any
    query: dict[str, str]


class FakeError(Exception):
    def __init__(
        self, status: int, message: str, *, type_: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_ or _ERROR_TYPES.get(status, "api_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.type_, "message": self.message},
            "request_id": "req_" + uuid.uuid4().hex[:24],
        }


def bad(message: str) -> FakeError:
    return FakeError(400, message)


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _example(name: str, schema: Any) -> Any:
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example(name, schema.get("items"))] if isinstance(schema.get("items"), dict) else []
    if kind == "object":
        props = schema.get("properties")
        return {k: _example(k, v) for k, v in props.items()} if isinstance(props, dict) else {}
    return "Paris" if name == "city" else f"test-{name}"


@dataclass
class _Triggers:
    fail: int | None = None
    slow_ms: int = 0
    cut: bool = False
    mid_error: bool = False
    words: int | None = None
    cache: int = 0
    cache_write: int = 0
    refuse: bool = False
    call_tool: bool = False
    call_all: bool = False
    hang_up: bool = False
    bad_event: bool = False
    huge_event: int | None = None

    @classmethod
    def parse(cls, text: str) -> _Triggers:
        def number(word: str) -> int | None:
            m = re.search(rf"\b{word} (\d+)\b", text)
            return int(m.group(1)) if m else None

        lowered = text.lower()
        return cls(
            fail=number("FAIL"),
            slow_ms=number("SLOW") or 0,
            cut=re.search(r"\bCUT\b", text) is not None,
            mid_error=re.search(r"\bMIDERROR\b", text) is not None,
            words=number("WORDS"),
            cache=number("CACHE") or 0,
            cache_write=number("CACHEWRITE") or 0,
            refuse=re.search(r"\bREFUSE\b", text) is not None,
            call_tool="call tool" in lowered or "call all tools" in lowered,
            call_all="call all tools" in lowered,
            hang_up=re.search(r"\bHANGUP\b", text) is not None,
            bad_event=re.search(r"\bBADEVENT\b", text) is not None,
            huge_event=number("HUGEEVENT"),
        )


@dataclass
class _Answer:
    thinking: str | None  # None: no thinking block
    signature: str
    text: str
    tool_uses: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int
    cache_read: int
    cache_write: int
    output_tokens: int
    thinking_tokens: int
    model: str
    message_id: str = field(default_factory=lambda: "msg_" + "".join(random.choices(_ALNUM, k=24)))


def _block_text(blocks: list[dict[str, Any]], kind: str = "text") -> str:
    return " ".join(b["text"] for b in blocks if b.get("type") == kind and isinstance(b.get("text"), str))


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _block_text(content)
    return ""


class FakeAnthropic(LoopbackServer):
    """A strict Anthropic upstream on 127.0.0.1 (ephemeral port), served from a background thread."""

    thread_name = "fake-anthropic"

    def __init__(
        self,
        api_key: str = "sk-ant-upstream-test",
        *,
        page_size: int = 2,
        path_prefix: str = "",
        extra_models: dict[str, tuple[str, bool, int]] | None = None,
    ) -> None:
        self.api_key = api_key
        self.model_specs = {**MODELS, **(extra_models or {})}
        self._betas: frozenset[str] = (
            frozenset()
        )  # the anthropic-beta values of the request being validated  # an Anthropic-compatible endpoint's own models
        # Where the API is mounted: "" for Anthropic itself, "/anthropic" for an Anthropic-compatible endpoint of
        # another provider (DeepSeek's https://api.deepseek.com/anthropic).
        self.path_prefix = path_prefix
        self.models = list(self.model_specs)
        self.page_size = page_size  # GET /v1/models pages are at most this long, to exercise paging (§4.7)
        self.retry_after_seconds = 7
        super().__init__()
        self._requests: list[RecordedRequest] = []
        self._failures: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._signatures: dict[str, str] = {}  # signature -> thinking text it was issued for
        self._issued_ids: list[str] = []
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- test API

    @property
    def base_url(self) -> str:
        """The base URL the official SDK takes: no /v1 (§1, §11.25)."""
        if self.port is None:
            raise RuntimeError("fake not started")
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == self.path_prefix + "/v1/messages"]

    @property
    def count_requests(self) -> list[RecordedRequest]:
        path = self.path_prefix + "/v1/messages/count_tokens"
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    @property
    def issued_tool_use_ids(self) -> list[str]:
        with self._lock:
            return list(self._issued_ids)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with ``status`` (body: dict, str, bytes, or None for the default error)."""
        with self._lock:
            self._failures.append((status, body, dict(headers or {})))

    def validate(self, body: Any, version: str = "2023-06-01") -> None:
        """The request checks of POST /v1/messages without HTTP (raises ``FakeError``), for property tests."""
        self._validate(body, version)

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        record = RecordedRequest(
            request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, parsed,
            dict(request.query),
        )  # fmt: skip
        with self._lock:
            self._requests.append(record)
            scripted = self._failures.popleft() if self._failures else None
        try:
            if scripted is not None:
                status, body, headers = scripted
                if body is None:
                    raise FakeError(status, _MESSAGES.get(status, f"Scripted failure {status}"), headers=headers)
                data = (
                    body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else orjson.dumps(body)
                )
                return web.Response(status=status, body=data, headers={"content-type": "application/json", **headers})
            self._check_auth(request)
            version = self._check_version(request)
            if not request.path.startswith(self.path_prefix + "/"):
                raise FakeError(404, f"Not found: {request.method} {request.path}")
            path = request.path[len(self.path_prefix) :]
            if path in ("/v1/messages", "/v1/messages/count_tokens") and request.method == "POST":
                if parsed is None:
                    raise bad("There was an issue with your request body: not valid JSON")
                self._betas = frozenset(
                    b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()
                )
                if path == "/v1/messages/count_tokens":
                    return self._json(200, self._count_tokens(parsed, version))
                return await self._messages(request, parsed, version)
            if path == "/v1/models" and request.method == "GET":
                return self._json(200, self._model_page(request.query))
            raise FakeError(404, f"Not found: {request.method} {request.path}")
        except FakeError as err:
            return self._json(err.status, err.body(), err.headers)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(payload),
            content_type="application/json",
            headers={"request-id": "req_" + uuid.uuid4().hex[:24], **(headers or {})},
        )

    def _check_auth(self, request: web.Request) -> None:
        # x-api-key or Authorization: Bearer; x-api-key wins when both are sent (§4.1, §11.23).
        key = request.headers.get("x-api-key")
        if key is None:
            auth = request.headers.get("Authorization", "")
            key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if key is None:
            raise FakeError(401, "x-api-key header is required")
        if key != self.api_key:
            raise FakeError(401, "invalid x-api-key")

    def _check_version(self, request: web.Request) -> str:
        version = request.headers.get("anthropic-version")
        if not version:
            raise bad("anthropic-version: header is required")  # §4.1
        if version not in VERSIONS:
            raise bad(f"anthropic-version: invalid version '{version}'")
        return version

    def _model_page(self, query: Any) -> dict[str, Any]:
        limit = min(int(query.get("limit", 20)), self.page_size)
        after = query.get("after_id")
        start = self.models.index(after) + 1 if after in self.models else 0
        page = self.models[start : start + limit]
        data = [
            {"id": m, "type": "model", "display_name": m, "created_at": "2025-01-01T00:00:00Z", "lifecycle": "active"}
            for m in page
        ]
        return {
            "data": data,
            "has_more": start + limit < len(self.models),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    # ----------------------------------------------------------------- validation

    def _validate(self, body: Any, version: str) -> None:
        if not isinstance(body, dict):
            raise bad("body: Input should be an object")
        allowed = TOP_LEVEL_FIELDS - set(SAMPLING_FIELDS) if version >= "2026-10-21" else TOP_LEVEL_FIELDS
        for name in body:
            if name not in allowed:
                raise bad(f"{name}: Extra inputs are not permitted")  # §4.1
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad("model: Field required")
        if model not in self.model_specs:
            raise FakeError(404, f"model: {model}")
        style, no_pair, max_out = self.model_specs[model]
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise bad("max_tokens: Field required")  # §4.2
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise bad("max_tokens: Input should be a valid integer greater than or equal to 1")
        if max_tokens > max_out:
            raise bad(
                f"max_tokens: {max_tokens} > {max_out}, which is the maximum allowed number of output tokens "
                f"for {model}"
            )
        for name, upper in (("temperature", 1.0), ("top_p", 1.0)):
            value = body.get(name)
            if value is not None and (not isinstance(value, int | float) or not 0 <= value <= upper):
                raise bad(f"{name}: Input should be less than or equal to {upper}")
        if no_pair and body.get("temperature") is not None and body.get("top_p") is not None:
            # [3P] Sonnet/Haiku 4.5, Opus 4.1 and later (BerriAI/litellm#15097, cloud-apim/otoroshi-llm-extension#140).
            raise bad("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
        self._validate_system(body.get("system"))
        thinking_on = self._validate_thinking(body, style, max_tokens)
        tool_names = self._validate_tools(body, thinking_on)
        self._validate_output_config(body.get("output_config"), style)
        metadata = body.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict) or any(k != "user_id" for k in metadata):
                raise bad("metadata: only user_id is permitted")
        stops = body.get("stop_sequences")
        if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
            raise bad("stop_sequences: Input should be a valid list of strings")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise bad("stream: Input should be a valid boolean")
        self._validate_messages(body.get("messages"), thinking_on, tool_names)

    def _validate_system(self, system: Any) -> None:
        if system is None or isinstance(system, str):
            return
        if not isinstance(system, list) or not all(
            isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in system
        ):
            raise bad("system: Input should be a valid string or a list of text blocks")

    def _validate_thinking(self, body: dict[str, Any], style: str, max_tokens: int) -> bool:
        thinking = body.get("thinking")
        if thinking is None:
            return False
        if not isinstance(thinking, dict):
            raise bad("thinking: Input should be an object")
        kind = thinking.get("type")
        if kind == "disabled":
            return False
        if style == "none":
            raise bad(f"thinking: '{body['model']}' does not support thinking")
        if kind == "enabled":
            if style != "budget":
                # Some models reject manual budget_tokens (§4.2).
                raise bad("thinking.type: 'enabled' is not supported for this model; use 'adaptive'")
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if budget >= max_tokens:
                raise bad("`max_tokens` must be greater than `thinking.budget_tokens`")  # §4.2
        elif kind == "adaptive":
            if style != "adaptive":
                raise bad("thinking.type: 'adaptive' is not supported for this model")
            if thinking.get("display") not in (None, "summarized", "omitted"):
                raise bad("thinking.adaptive.display: Input should be 'summarized' or 'omitted'")
        else:
            raise bad(f"thinking.type: Input tag '{kind}' found using 'type' does not match any of the expected tags")
        temperature = body.get("temperature")
        if (temperature is not None and temperature != 1) or body.get("top_k") is not None:
            # [MEM] thinking is not compatible with temperature or top_k modifications.
            raise bad("`temperature` may only be set to 1 when thinking is enabled")
        top_p = body.get("top_p")
        if top_p is not None and top_p < 0.95:
            raise bad("`top_p` must be greater than or equal to 0.95 when thinking is enabled")  # [MEM]
        return True

    def _validate_tools(self, body: dict[str, Any], thinking_on: bool) -> set[str]:
        tools = body.get("tools")
        names: set[str] = set()
        if tools is not None:
            if not isinstance(tools, list):
                raise bad("tools: Input should be a valid list")
            for j, tool in enumerate(tools):
                if not isinstance(tool, dict):
                    raise bad(f"tools.{j}: Input should be an object")
                for key in tool:
                    if key not in ("name", "description", "input_schema", "cache_control", "strict", "type"):
                        raise bad(f"tools.{j}.{key}: Extra inputs are not permitted")
                name = tool.get("name")
                if not isinstance(name, str) or not _TOOL_NAME.match(name):
                    raise bad(f"tools.{j}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
                schema = tool.get("input_schema")
                if not isinstance(schema, dict) or schema.get("type") != "object":
                    raise bad(f"tools.{j}.input_schema: JSON schema is invalid - type must be 'object'")
                names.add(name)
        choice = body.get("tool_choice")
        if choice is None:
            return names
        if not tools:
            raise bad("tool_choice: may only be specified while providing tools")
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")  # §4.2
        if kind == "tool" and choice.get("name") not in names:
            raise bad(f"tool_choice.name: tool '{choice.get('name')}' not found in tools")
        if thinking_on and kind in ("any", "tool"):
            raise bad("Thinking may not be enabled when tool_choice forces tool use.")  # [3P] langchain#35544
        return names

    def _validate_output_config(self, config: Any, style: str) -> None:
        if config is None:
            return
        if not isinstance(config, dict):
            raise bad("output_config: Input should be an object")
        for key in config:
            if key not in ("effort", "format"):
                raise bad(f"output_config.{key}: Extra inputs are not permitted")
        effort = config.get("effort")
        if effort is not None:
            if effort not in EFFORTS:
                raise bad(f"output_config.effort: Input should be one of {', '.join(EFFORTS)}")  # §4.2
            if style != "adaptive":
                raise bad("output_config.effort: effort is not supported for this model")
        fmt = config.get("format")
        if fmt is not None and (
            not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)
        ):
            raise bad("output_config.format: expected {type: 'json_schema', schema: {...}}")

    def _validate_messages(self, messages: Any, thinking_on: bool, tool_names: set[str]) -> None:
        if not isinstance(messages, list):
            raise bad("messages: Field required")
        if not messages:
            raise bad("messages: at least one message is required")
        previous_tool_ids: list[str] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise bad(f"messages.{i}: Input should be an object")
            for key in msg:
                if key not in ("role", "content"):
                    raise bad(f"messages.{i}.{key}: Extra inputs are not permitted")
            role = msg.get("role")
            if role == "system" and MID_CONVERSATION_SYSTEM in self._betas and i:
                # A system turn inside the conversation (text blocks only), behind its beta header.
                self._validate_system(msg.get("content"))
                continue
            if role not in ("user", "assistant"):
                # The system prompt is top-level (§4.2, §11.19).
                raise bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            if i == 0 and role != "user":
                raise bad('messages: first message must use the "user" role')
            previous = next((m.get("role") for m in reversed(messages[:i]) if m.get("role") != "system"), None)
            if i and previous == role:
                raise bad(
                    f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                    "roles in a row"
                )
            blocks = self._blocks(msg.get("content"), i, role, last=i == len(messages) - 1)
            if role == "user":
                self._check_tool_results(blocks, i, previous_tool_ids)
                previous_tool_ids = []
            else:
                previous_tool_ids = [b["id"] for b in blocks if b["type"] == "tool_use"]
                if previous_tool_ids and i + 1 < len(messages):
                    answered = {
                        b.get("tool_use_id")
                        for b in self._as_blocks(messages[i + 1].get("content"))
                        if b.get("type") == "tool_result"
                    }
                    missing = [t for t in previous_tool_ids if t not in answered]
                    if missing:
                        raise bad(
                            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                            f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                            "`tool_result` block in the next message."
                        )
        last = messages[-1]
        if thinking_on and last.get("role") == "user" and len(messages) >= 2:
            content = self._as_blocks(last.get("content"))
            if content and content[0].get("type") == "tool_result":
                prev = self._as_blocks(messages[-2].get("content"))
                if not prev or prev[0].get("type") not in ("thinking", "redacted_thinking"):
                    # §4.5: with thinking on, the assistant turn of the current tool loop keeps its thinking.
                    raise bad(
                        f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                        f"but found `{prev[0].get('type') if prev else 'nothing'}`. When `thinking` is enabled, a "
                        "final `assistant` message must start with a thinking block (preceding the lastmost set of "
                        "`tool_use` and `tool_result` blocks). To avoid this requirement, disable `thinking`."
                    )

    @staticmethod
    def _as_blocks(content: Any) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []

    def _blocks(self, content: Any, i: int, role: str, *, last: bool) -> list[dict[str, Any]]:
        if isinstance(content, str):
            if not content and not (last and role == "assistant"):
                raise bad(f"messages.{i}: {_NON_EMPTY}")
            return [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise bad(f"messages.{i}.content: Input should be a valid string or list")
        if not content and not (last and role == "assistant"):
            raise bad(f"messages.{i}: {_NON_EMPTY}")
        for j, block in enumerate(content):
            self._block(block, f"messages.{i}.content.{j}", role)
        return content

    def _block(self, block: Any, where: str, role: str) -> None:
        if not isinstance(block, dict):
            raise bad(f"{where}: Input should be an object")
        kind = block.get("type")
        user_only = ("image", "document", "tool_result")
        if kind in user_only and role != "user":
            raise bad(f"{where}.type: '{kind}' blocks are only allowed in user messages")
        if kind in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
            raise bad(f"{where}.type: '{kind}' blocks are only allowed in assistant messages")
        if kind == "text":
            if not isinstance(block.get("text"), str) or not block["text"]:
                raise bad("messages: text content blocks must be non-empty")
        elif kind == "image":
            self._source(block.get("source"), where, IMAGE_TYPES, ("base64", "url"))
        elif kind == "document":
            self._source(block.get("source"), where, ("application/pdf", "text/plain"), ("base64", "url", "text"))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise bad(f"{where}: tool_use blocks need an id and a name")
            if not isinstance(block.get("input"), dict):
                raise bad(f"{where}.input: Input should be a valid dictionary")
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise bad(f"{where}.tool_use_id: Field required")
            content = block.get("content")
            if isinstance(content, list):
                for k, inner in enumerate(content):
                    if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document"):
                        raise bad(f"{where}.content.{k}: tool_result content must be text, image or document")
                    self._block(inner, f"{where}.content.{k}", "user")
            elif content is not None and not isinstance(content, str):
                raise bad(f"{where}.content: Input should be a valid string or list")
        elif kind == "thinking":
            thinking, signature = block.get("thinking"), block.get("signature")
            with self._lock:
                issued = self._signatures.get(signature) if isinstance(signature, str) else None
            if issued is None or issued != thinking:
                # The block must come back unchanged, signature intact (§4.5).
                raise bad(f"{where}: Invalid `signature` in `thinking` block")
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise bad(f"{where}.data: Field required")
        else:
            raise bad(f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags")

    @staticmethod
    def _source(source: Any, where: str, media_types: tuple[str, ...], kinds: tuple[str, ...]) -> None:
        if not isinstance(source, dict) or source.get("type") not in kinds:
            raise bad(f"{where}.source: Input tag '{(source or {}).get('type')}' does not match the expected tags")
        if source["type"] == "url":
            if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
                raise bad(f"{where}.source.url: must be an http(s) URL")
            return
        if source.get("media_type") not in media_types:
            raise bad(f"{where}.source.media_type: Input should be {', '.join(media_types)}")
        if source["type"] == "base64":
            try:
                base64.b64decode(source.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise bad(f"{where}.source.data: invalid base64 data") from None
            if not source.get("data"):
                raise bad(f"{where}.source.data: must be non-empty")

    @staticmethod
    def _check_tool_results(blocks: list[dict[str, Any]], i: int, previous_tool_ids: list[str]) -> None:
        seen_other = False
        for j, block in enumerate(blocks):
            if block.get("type") != "tool_result":
                seen_other = True
                continue
            if seen_other:
                # Tool results come first in their user turn (§4.5, §11.13).
                raise bad(f"messages.{i}.content.{j}: tool_result blocks must come before any other content")
            if block["tool_use_id"] not in previous_tool_ids:
                raise bad(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )

    # ----------------------------------------------------------------- answers

    async def _messages(self, request: web.Request, body: dict[str, Any], version: str) -> web.StreamResponse:
        self._validate(body, version)
        messages = body["messages"]
        last = self._as_blocks(messages[-1].get("content")) if messages[-1].get("role") == "user" else []
        trig = _Triggers.parse(_block_text(last))
        if trig.hang_up:
            return hang_up(request)
        if trig.fail is not None:
            headers = {"retry-after": str(self.retry_after_seconds)} if trig.fail in (429, 529) else {}
            raise FakeError(trig.fail, _MESSAGES.get(trig.fail, f"Scripted failure {trig.fail}"), headers=headers)
        answer = self._answer(body, last, trig)
        if body.get("stream"):
            return await self._stream(request, answer, trig)
        if trig.slow_ms:
            await asyncio.sleep(trig.slow_ms / 1000)
        return self._json(200, self._message(answer))

    def _count_tokens(self, body: Any, version: str) -> dict[str, Any]:
        """POST /v1/messages/count_tokens: a Messages request without max_tokens (and without stream), counted as
        the answer's input side is."""
        if not isinstance(body, dict):
            raise bad("body: Input should be an object")
        for name in ("max_tokens", "stream", "stop_sequences", "metadata", "temperature", "top_p", "top_k"):
            if name in body:
                raise bad(f"{name}: Extra inputs are not permitted")
        model = body.get("model")
        ceiling = self.model_specs[model][2] if isinstance(model, str) and model in self.model_specs else 1
        self._validate({**body, "max_tokens": ceiling}, version)  # a thinking budget must fit below max_tokens
        return {"input_tokens": self._prompt_tokens(body)}

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        return (
            10
            + _words(str(body.get("system") or ""))
            + sum(_words(_block_text(self._as_blocks(m.get("content")))) for m in body["messages"])
        )

    def _answer(self, body: dict[str, Any], last: list[dict[str, Any]], trig: _Triggers) -> _Answer:
        model = body["model"]
        thinking_cfg = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
        thinking_on = thinking_cfg.get("type") in ("enabled", "adaptive")
        user_text = _block_text(last)
        results = [b for b in last if b.get("type") == "tool_result"]
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        tool_uses: list[dict[str, Any]] = []
        forced = choice.get("type") in ("any", "tool")
        if tools and not results and choice.get("type") != "none" and (trig.call_tool or forced):
            chosen = [t for t in tools if choice.get("type") != "tool" or t["name"] == choice.get("name")]
            if not trig.call_all or choice.get("disable_parallel_tool_use"):
                chosen = chosen[:1]
            for tool in chosen:
                tool_id = "toolu_" + "".join(random.choices(_ALNUM, k=24))
                tool_uses.append(
                    {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": tool["name"],
                        "input": _example("", tool["input_schema"]),
                    }
                )
            with self._lock:
                self._issued_ids.extend(t["id"] for t in tool_uses)
        fmt = (body.get("output_config") or {}).get("format")
        media = [b for b in last if b.get("type") in ("image", "document")]
        stop_reason = "tool_use" if tool_uses else "end_turn"
        if tool_uses:
            text = ""
        elif trig.refuse:
            text, stop_reason = "", "refusal"
        elif results:
            text = "tool result: " + " | ".join(_tool_result_text(b) for b in results)
        elif fmt:
            text = orjson.dumps(_example("", fmt["schema"])).decode()
        elif trig.words is not None:
            text = " ".join(f"word{i}" for i in range(1, trig.words + 1))
        else:
            text = "echo: " + user_text
            if media:
                images = sum(b["type"] == "image" for b in media)
                text += f" [images: {images}, documents: {len(media) - images}]"
        for seq in body.get("stop_sequences") or ():
            if seq in text:
                text, stop_reason = text[: text.index(seq)], "stop_sequence"
        thinking = None
        signature = ""
        if thinking_on:
            thinking = "" if thinking_cfg.get("display") == "omitted" else f"Thinking about: {user_text or 'tools'}"
            signature = "sig_" + "".join(random.choices(_ALNUM, k=40))
            with self._lock:
                self._signatures[signature] = thinking
        thinking_tokens = _words(f"Thinking about: {user_text}") if thinking_on else 0
        text_tokens = _words(text) + 10 * len(tool_uses)
        budget = body["max_tokens"] - thinking_tokens
        if text_tokens > budget and not tool_uses:
            text = "".join(_pieces(text)[: max(budget, 0)]).rstrip()
            text_tokens, stop_reason = _words(text), "max_tokens"
        prompt = self._prompt_tokens(body)
        cache_read = min(trig.cache, prompt)
        cache_write = min(trig.cache_write, prompt - cache_read)
        return _Answer(
            thinking=thinking,
            signature=signature,
            text=text,
            tool_uses=tool_uses,
            stop_reason=stop_reason,
            input_tokens=max(prompt - cache_read - cache_write, 1),
            cache_read=cache_read,
            cache_write=cache_write,
            output_tokens=text_tokens + thinking_tokens,
            thinking_tokens=thinking_tokens,
            model=model,
        )

    def _usage(self, a: _Answer, output_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": a.input_tokens,
            "cache_creation_input_tokens": a.cache_write,
            "cache_read_input_tokens": a.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": a.cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        if a.thinking_tokens and output_tokens == a.output_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": a.thinking_tokens}  # §4.3
        return usage

    def _content(self, a: _Answer) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if a.thinking is not None:
            content.append({"type": "thinking", "thinking": a.thinking, "signature": a.signature})
        if a.text or (not a.tool_uses and a.stop_reason != "refusal"):
            content.append({"type": "text", "text": a.text})
        content.extend(a.tool_uses)
        return content

    def _message(self, a: _Answer) -> dict[str, Any]:
        return {
            "id": a.message_id,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": self._content(a),
            "stop_reason": a.stop_reason,
            "stop_sequence": None,
            "stop_details": {"category": None} if a.stop_reason == "refusal" else None,
            "usage": self._usage(a, a.output_tokens),
        }

    def _events(self, a: _Answer) -> list[tuple[str, dict[str, Any]]]:
        """The stream as (event name, data) pairs in the order of §4.4."""
        start = {**self._message(a), "content": [], "stop_reason": None, "stop_details": None}
        start["usage"] = self._usage(a, 1)
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        events.append(("ping", {"type": "ping"}))
        for index, block in enumerate(self._content(a)):
            kind = block["type"]
            if kind == "thinking":
                initial: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
                deltas.append({"type": "signature_delta", "signature": block["signature"]})  # just before stop
            elif kind == "text":
                initial = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
            else:
                initial = {**block, "input": {}}
                args = orjson.dumps(block["input"]).decode()
                step = max(1, -(-len(args) // 3))
                # The first fragment is often empty (§4.4); the rest split the JSON anywhere.
                deltas = [{"type": "input_json_delta", "partial_json": ""}]
                deltas += [
                    {"type": "input_json_delta", "partial_json": args[s : s + step]} for s in range(0, len(args), step)
                ]
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": initial})
            )
            for n, delta in enumerate(deltas):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
                if n == 1:
                    events.append(("ping", {"type": "ping"}))  # pings can appear anywhere (§4.4)
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        final_usage = self._usage(a, a.output_tokens)  # cumulative, input side included (§4.4)
        final_usage.pop("cache_creation")
        final_usage.pop("service_tier")
        delta = {"stop_reason": a.stop_reason, "stop_sequence": None, "stop_details": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    async def _stream(self, request: web.Request, a: _Answer, trig: _Triggers) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                     "request-id": "req_" + uuid.uuid4().hex[:24]},
        )  # fmt: skip
        await resp.prepare(request)
        text_deltas = 0
        for n, (name, data) in enumerate(self._events(a)):
            if trig.slow_ms and n:
                await asyncio.sleep(trig.slow_ms / 1000)
            await resp.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")
            if name != "content_block_delta" or data["delta"]["type"] != "text_delta":
                continue
            text_deltas += 1
            if trig.bad_event and text_deltas == 1:
                await resp.write(b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": \n\n')
            if trig.huge_event and text_deltas == 1:
                await huge_event(resp, trig.huge_event)
                return resp
            if trig.mid_error and text_deltas == 1:
                error = FakeError(529, "Overloaded").body()
                error.pop("request_id")
                await resp.write(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")  # after HTTP 200 (§4.4)
                await resp.write_eof()
                return resp
            if trig.cut and text_deltas == 2:
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return resp
        await resp.write_eof()
        return resp

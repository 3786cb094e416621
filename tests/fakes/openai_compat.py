"""Strict fake upstream servers for the OpenAI-compatible provider family.

One class, `FakeOpenAICompat`, speaks five dialects of Chat Completions: "openai", "deepseek", "xai",
"moonshot" and "ollama" (Ollama's OpenAI-compatible /v1 API). Wire formats, usage placement, error shapes
and the parameter rules follow the shared providers.md; comments cite its sections (§) or the public
source a quirk was checked against.

The server answers deterministically from the request. The text of the last user message selects
scripted behaviour, so tests can drive it through the gateway without side channels:

    FAIL <status>   reply with that HTTP error in the dialect's error shape (429 adds retry-after)
    SLOW <ms>       wait that long before answering (non-stream) or between chunks (stream); a non-streamed
                    chat or Responses request whose client closes the connection meanwhile is noted in
                    `abandoned` (its raw body) and not answered
    CUT             stream: role chunk and two content chunks, then the connection is dropped
                    (no finish chunk, usage or [DONE]); non-stream: half the body, then dropped
    MIDERROR        stream: one content chunk, then `data: {"error": {...}}`, then end without [DONE]
    HANGUP          read the whole request, then close the connection without a byte of answer
    DROPIDLE        answer as usual (keep-alive), then close the idle connection 0.2 s later
    BADEVENT        stream: one content chunk, then an event whose JSON is cut off, then the rest and [DONE]
    HUGEEVENT <n>   stream: one content chunk, then a data line of n MiB without an end
    HUGEBODY <n>    non-stream: a body of n MiB, chunked; HUGELENGTH <n> the same with its Content-Length
    ECHOKEY <status>  reply with that HTTP error echoing the credentials received (the bearer key raw and
                    URL-encoded, and every request header value) in the status line's reason, every field of
                    the JSON error body, and the `x-echo-key` and `retry-after` headers: a careless upstream
    ECHOMID         stream: like MIDERROR, the error event echoing the credentials in the same way
    WORDS <n>       answer with n words: "word1 word2 ... word<n>"
    CACHE <n>       report n of the prompt tokens as cache hits
    call tool       (request has `tools`, last message is from the user) call the first tool, or the
                    one named by tool_choice
    call all tools  call every tool, in parallel
    CALL <name> [<json object>]  (last message is from the user) call the declared tool of that name with
                    the JSON object as its arguments, or example arguments from its schema; no call when no
                    tool has that name (an agent's tool list is long and its first tool is rarely the one wanted)

Otherwise the answer is "echo: " + the text of the last user message, or "tool result: " + the text
of the last message when that is a tool result.

Beside Chat Completions, the dialects that have them serve (every other dialect answers 404, as the real
upstream does for a path it lacks):

    POST /embeddings          openai, ollama (§2.8, §8.1): deterministic vectors, float or base64
    POST /images/generations  openai, xai, ollama (§2.8, §6.4, §8.1): b64_json (and url on xAI)
    POST /responses           openai (§2.9): body or SSE events, no [DONE]; the triggers above apply to the
                              text of the last user input (FAIL, SLOW, CUT, MIDERROR, WORDS, CACHE). xAI,
                              Moonshot and Ollama have a Responses API too; it is not modelled here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import re
import string
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from tests.fakes.server import LoopbackServer, hang_up, huge_body, huge_event, json_object_at

DIALECTS: tuple[str, ...] = ("openai", "deepseek", "xai", "moonshot", "ollama")

DEFAULT_MODELS: dict[str, list[str]] = {
    "openai": ["gpt-4o-mini", "gpt-5-mini", "o3-mini"],
    "deepseek": ["deepseek-flash"],
    "xai": ["grok-4.3", "grok-3-mini"],
    "moonshot": ["kimi-k3", "kimi-k2.6"],
    "ollama": ["llama3.2", "qwen3:8b"],
}

# Embedding models and their vector sizes (§2.8). ada-002 predates `dimensions` and rejects it.
EMBEDDING_MODELS: dict[str, dict[str, int]] = {
    "openai": {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536},
    "ollama": {"nomic-embed-text": 768, "all-minilm": 384},
}
# Image models and the sizes they take; None where the upstream has no `size` (xAI: aspect_ratio, §6.4).
_GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
IMAGE_MODELS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "openai": {m: _GPT_IMAGE_SIZES for m in ("gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2")},
    "xai": {"grok-imagine-image": None, "grok-imagine-image-quality": None},
    "ollama": {"x/z-image-turbo": ("1024x1024", "768x768", "512x512")},
}
# A 1x1 transparent PNG: what every fake image is.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
RESPONSES_MIN_OUTPUT_TOKENS = 16  # OpenAI rejects a smaller max_output_tokens

# Ollama derives owned_by from the model name's namespace, "library" for plain names (ollama openai.go).
OWNED_BY: dict[str, str] = {
    "openai": "system",
    "deepseek": "deepseek",
    "xai": "xai",
    "moonshot": "moonshot",
    "ollama": "library",
}

TOOL_CALL_ID_CHARS = 40
_ALNUM = string.ascii_letters + string.digits
_OPENAI_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # §2.2
_OLLAMA_EFFORTS = ("high", "medium", "low", "none")  # ollama openai.go FromChatRequest
_MOONSHOT_FIXED_SAMPLING = ("kimi-k3", "kimi-k2.6", "kimi-k2.7-code")  # §7.2
# Ollama accepts only these data URIs; anything else is "invalid image input" (ollama openai.go).
_OLLAMA_IMAGE_PREFIXES = (*(f"data:image/{t};base64," for t in ("jpeg", "jpg", "png", "webp")), "data:;base64,")

# xAI's error `code` is the gRPC status text (§6.3).
_XAI_CODES: dict[int, str] = {
    400: "Client specified an invalid argument",
    401: "Request had invalid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
}
_MOONSHOT_TYPES: dict[int, str] = {  # §7.4
    400: "invalid_request_error",
    401: "invalid_authentication_error",
    403: "exceeded_current_quota_error",
    404: "resource_not_found_error",
    429: "rate_limit_reached_error",
}
_GENERIC_MESSAGES: dict[int, str] = {
    400: "Scripted failure: bad request.",
    401: "Scripted failure: unauthorized.",
    402: "Insufficient Balance",
    403: "Scripted failure: forbidden.",
    404: "Scripted failure: not found.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}


@dataclass(frozen=True)
class Behaviour:
    """One scripted chat answer (``FakeOpenAICompat.script_chat``)."""

    kind: str  # status | context | hang | early_error | early_cut | stall
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON; None when the body is empty or not JSON
    raw_body: bytes
    query: dict[str, str]


class FakeError(Exception):
    """An HTTP error the fake answers with, rendered in the dialect's own error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(dialect: str, err: FakeError) -> dict[str, Any]:
    """The JSON error body `dialect` sends for `err`."""
    status = err.status
    if dialect == "xai":
        # Flat {"code", "error"} body, not OpenAI-shaped (§6.3).
        return {"code": _XAI_CODES.get(status, "Unknown error"), "error": err.message}
    if dialect == "moonshot":
        # No `param` or `code` fields (§7.4).
        return {"error": {"message": err.message, "type": err.type_ or _MOONSHOT_TYPES.get(status, "server_error")}}
    if dialect == "ollama":
        # Type by status only; param and code are always null (ollama openai.go NewError).
        otype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"error": {"message": err.message, "type": otype, "param": None, "code": None}}
    if dialect == "deepseek":
        # DeepSeek repeats "invalid_request_error" as the code of 4xx errors (§5.6).
        dtype = err.type_ or ("authentication_error" if status == 401 else _openai_type(status))
        code = err.code if err.code is not None else ("invalid_request_error" if status < 500 else None)
        return {"error": {"message": err.message, "type": dtype, "param": err.param, "code": code}}
    return {
        "error": {
            "message": err.message,
            "type": err.type_ or _openai_type(status),
            "param": err.param,
            "code": err.code,
        }
    }


def _openai_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _mask_key(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "*" * len(key)


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Split text into stream deltas (about one word each) that concatenate back to `text`."""
    return re.findall(r"\s*\S+\s*", text)


def _text_of(content: Any) -> str:
    """Text of a message's content: the string, or its text parts joined with spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def _new_tool_call_id() -> str:
    return "call_" + "".join(random.choices(_ALNUM, k=TOOL_CALL_ID_CHARS))


def _example_value(name: str, schema: Any) -> Any:
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
        return []
    if kind == "object":
        return {}
    return "Paris" if name == "city" else f"test-{name}"


@dataclass
class _Triggers:
    fail: int | None = None
    slow_ms: int = 0
    cut: bool = False
    mid_error: bool = False
    echo: int | None = None
    echo_mid: bool = False
    words: int | None = None
    cache: int = 0
    call_tool: bool = False
    call_all_tools: bool = False
    call_name: str | None = None  # CALL <name>
    call_arguments: dict[str, Any] | None = None  # CALL <name> <json object>
    hang_up: bool = False
    drop_idle: bool = False
    bad_event: bool = False
    huge_event: int | None = None
    huge_body: int | None = None
    huge_length: int | None = None

    @classmethod
    def parse(cls, text: str) -> _Triggers:
        def number(word: str) -> int | None:
            m = re.search(rf"\b{word} (\d+)\b", text)
            return int(m.group(1)) if m else None

        lowered = text.lower()
        call = re.search(r"\bCALL ([\w.:-]+)", text)
        arguments = json_object_at(text, call.end()) if call else None
        return cls(
            call_name=call.group(1) if call else None,
            call_arguments=arguments,
            fail=number("FAIL"),
            slow_ms=number("SLOW") or 0,
            cut=re.search(r"\bCUT\b", text) is not None,
            mid_error=re.search(r"\bMIDERROR\b", text) is not None,
            echo=number("ECHOKEY"),
            echo_mid=re.search(r"\bECHOMID\b", text) is not None,
            words=number("WORDS"),
            cache=number("CACHE") or 0,
            call_tool="call tool" in lowered or "call all tools" in lowered,
            call_all_tools="call all tools" in lowered,
            hang_up=re.search(r"\bHANGUP\b", text) is not None,
            drop_idle=re.search(r"\bDROPIDLE\b", text) is not None,
            bad_event=re.search(r"\bBADEVENT\b", text) is not None,
            huge_event=number("HUGEEVENT"),
            huge_body=number("HUGEBODY"),
            huge_length=number("HUGELENGTH"),
        )


@dataclass
class _Answer:
    content: str
    reasoning: str  # "" when the model does not reason
    reasoning_visible: bool  # sent as text (reasoning_content / reasoning) or only counted
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    prompt_tokens: int
    text_tokens: int
    reasoning_tokens: int
    cached_tokens: int


@dataclass
class _Chat:
    """A validated chat request."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    triggers: _Triggers
    thinking: bool
    reasoning_visible: bool
    completion_id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))


class FakeOpenAICompat(LoopbackServer):
    """A strict OpenAI-compatible upstream on 127.0.0.1 (ephemeral port), served from a background thread.

    Use as a context manager, or call `.start()` / `.stop()`.
    """

    def __init__(self, dialect: str = "openai", api_key: str = "sk-upstream-test", models: list[str] | None = None):
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
        self.dialect = dialect
        self.api_key = api_key
        self.models: list[str] = list(models) if models is not None else list(DEFAULT_MODELS[dialect])
        self.retry_after_seconds = 1  # sent as retry-after with "FAIL 429"
        super().__init__()
        self.thread_name = f"fake-{dialect}"
        self._requests: list[RecordedRequest] = []
        self._failures: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._chat_script: deque[Behaviour] = deque()
        self.delay_ms = 0  # every chat answer waits this long before its first byte (a slower deployment)
        self._issued_ids: list[str] = []
        self._abandoned: list[bytes] = []
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- test API

    @property
    def base_url(self) -> str:
        """The base URL the provider's official SDK takes (§1): DeepSeek and Ollama without /v1."""
        return self.root_url if self.dialect in ("deepseek", "ollama") else self.root_url + "/v1"

    @property
    def chat_url(self) -> str:
        return self.root_url + "/v1/chat/completions"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in order (rejected ones included)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/chat/completions")]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake has received no request")
            return self._requests[-1]

    @property
    def issued_tool_call_ids(self) -> list[str]:
        """Every tool call id this fake has handed out."""
        with self._lock:
            return list(self._issued_ids)

    @property
    def abandoned(self) -> list[bytes]:
        """Raw bodies of the SLOW requests whose client closed the connection before the answer was sent."""
        with self._lock:
            return list(self._abandoned)

    async def _slow(self, request: web.Request, raw: bytes, ms: int) -> bool:
        """Wait ``ms``, watching the connection: False (the request noted as abandoned) if the client left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ms / 1000
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(remaining, 0.02))
            transport = request.transport
            if transport is None or transport.is_closing():
                with self._lock:
                    self._abandoned.append(raw)
                return False
        return True

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._chat_script.clear()

    def script_chat(self, *behaviours: Behaviour) -> None:
        """The next chat requests (one behaviour each, in order), after they passed validation:

        ``Behaviour("status", status=429, headers={"retry-after": "2"})``  an error answer in the dialect's shape
        ``Behaviour("context")``  400 context_length_exceeded, as OpenAI words it
        ``Behaviour("hang", seconds=5)``  nothing (not even headers) for that long, then the usual answer
        ``Behaviour("early_error")``  stream: the role chunk, then an error event, then the end (no content)
        ``Behaviour("early_cut")``  stream: the role chunk, then the connection is dropped
        ``Behaviour("stall", seconds=5)``  stream: the role chunk, then nothing for that long, then the rest

        Responses requests (POST /responses) take from the same queue: ``status``, and ``early_cut`` (a stream
        cut after its ``response.created`` event).
        """
        with self._lock:
            self._chat_script.extend(behaviours)

    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next request (of any kind) with `status`; queue several calls for several failures.

        `body` may be a dict (sent as JSON), str or bytes; by default the dialect's error body.
        """
        with self._lock:
            self._failures.append((status, body, dict(headers or {})))

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=parsed,
            raw_body=raw,
            query=dict(request.query),
        )
        with self._lock:
            self._requests.append(record)
            scripted = self._failures.popleft() if self._failures else None
        if scripted is not None:
            return self._scripted_failure(*scripted)
        try:
            self._check_auth(request)
            route = self._route(request.path)
            if route == "chat" and request.method == "POST":
                return await self._chat(request, raw)
            if route == "embeddings" and request.method == "POST" and self.dialect in EMBEDDING_MODELS:
                return self._embeddings(raw)
            if route == "images" and request.method == "POST" and self.dialect in IMAGE_MODELS:
                return self._images(raw)
            if route == "responses" and request.method == "POST" and self.dialect == "openai":
                return await self._responses(request, raw)
            if route == "models" and request.method == "GET":
                return self._json(200, {"object": "list", "data": [self._model_object(m) for m in self.models]})
            if route is not None and route.startswith("model:") and request.method == "GET":
                model_id = route[len("model:") :]
                if model_id not in self.models:
                    unknown = self._unknown_model(model_id)
                    raise FakeError(404, unknown.message, code=unknown.code)
                return self._json(200, self._model_object(model_id))
            raise FakeError(404, f"Invalid URL ({request.method} {request.path})")
        except FakeError as err:
            return self._error(err)

    def _route(self, path: str) -> str | None:
        prefixes = ("/v1", "") if self.dialect == "deepseek" else ("/v1",)  # DeepSeek: /v1 optional (§5.1)
        for prefix in prefixes:
            if not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) :]
            if rest == "/chat/completions":
                return "chat"
            if rest == "/models":
                return "models"
            if rest in ("/embeddings", "/responses"):
                return rest[1:]
            if rest == "/images/generations":
                return "images"
            if rest.startswith("/models/") and len(rest) > len("/models/"):
                return "model:" + rest[len("/models/") :]
        return None

    def _check_auth(self, request: web.Request) -> None:
        if self.dialect == "ollama":
            return  # local Ollama accepts and ignores any key (§8.1)
        header = request.headers.get("Authorization", "")
        key = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        if key == self.api_key:
            return
        if self.dialect == "xai":
            # A wrong key is 400, not 401 (§6.3).
            raise FakeError(
                400,
                f"Incorrect API key provided: {_mask_key(key)}. You can obtain an API key from https://console.x.ai.",
            )
        if self.dialect == "moonshot":
            raise FakeError(401, "Invalid Authentication", type_="invalid_authentication_error")
        if self.dialect == "deepseek":
            raise FakeError(401, f"Authentication Fails, Your api key: {_mask_key(key)} is invalid")
        if not key:
            raise FakeError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        raise FakeError(
            401,
            f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def _model_object(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": OWNED_BY[self.dialect]}

    def _unknown_model(self, model: str) -> FakeError:
        if self.dialect == "deepseek":
            # DeepSeek answers 400 "Model Not Exist" (observed in many public issue reports, 2025-2026).
            return FakeError(400, "Model Not Exist")
        if self.dialect == "xai":
            return FakeError(404, f"The model {model} does not exist or your team does not have access to it.")
        if self.dialect == "ollama":
            return FakeError(404, f'model "{model}" not found, try pulling it first')
        return FakeError(
            404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
        )

    # ----------------------------------------------------------------- responses

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"x-request-id": "req_" + uuid.uuid4().hex}
        if self.dialect == "openai":
            headers["openai-processing-ms"] = "1"
        headers.update(extra or {})
        return headers

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, body=orjson.dumps(payload), content_type="application/json", headers=self._headers(headers)
        )

    def _error(self, err: FakeError) -> web.Response:
        return self._json(err.status, error_body(self.dialect, err), err.headers)

    def _scripted_error(self, status: int) -> FakeError:
        message = _GENERIC_MESSAGES.get(status, f"Scripted failure with status {status}.")
        headers: dict[str, str] = {}
        code = None
        if status == 429:
            headers["retry-after"] = str(self.retry_after_seconds)
            code = "rate_limit_exceeded" if self.dialect == "openai" else None
        return FakeError(status, message, code=code, headers=headers)

    def _scripted_failure(self, status: int, body: Any, headers: dict[str, str]) -> web.Response:
        if body is None:
            err = self._scripted_error(status)
            return self._json(status, error_body(self.dialect, err), {**err.headers, **headers})
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            return web.Response(status=status, body=data, headers=self._headers(headers))
        return self._json(status, body, headers)

    # ----------------------------------------------------------------- chat

    async def _chat(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        chat = self._validate(raw)
        trig = chat.triggers
        if trig.hang_up:
            return hang_up(request)
        if trig.drop_idle and request.transport is not None:
            asyncio.get_running_loop().call_later(0.2, request.transport.close)
        if not chat.stream and (trig.huge_body or trig.huge_length):
            return await huge_body(request, trig.huge_body or trig.huge_length or 0, declared=bool(trig.huge_length))
        if trig.echo is not None:
            return self._echo_error(request, trig.echo)
        if trig.fail is not None:
            if trig.slow_ms:
                await asyncio.sleep(trig.slow_ms / 1000)
            raise self._scripted_error(trig.fail)
        with self._lock:
            behaviour = self._chat_script.popleft() if self._chat_script else None
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if behaviour is not None:
            if behaviour.kind == "status":
                err = self._scripted_error(behaviour.status)
                return self._json(behaviour.status, error_body(self.dialect, err), {**err.headers, **behaviour.headers})
            if behaviour.kind == "context":
                raise FakeError(
                    400,
                    "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                    "130000 tokens. Please reduce the length of the messages.",
                    code="context_length_exceeded",
                    param="messages",
                )
            if behaviour.kind == "hang":
                await asyncio.sleep(behaviour.seconds)
        answer = self._answer(chat)
        if chat.stream:
            return await self._stream(request, chat, answer, behaviour)
        payload = orjson.dumps(self._completion(chat, answer))
        if trig.cut:
            return await self._cut_body(request, payload)
        if trig.slow_ms and self.dialect == "deepseek":
            # Under load DeepSeek sends blank lines before the JSON body of non-streaming requests (§5.4).
            resp = web.StreamResponse(status=200, headers=self._headers({"Content-Type": "application/json"}))
            await resp.prepare(request)
            await resp.write(b"\n")
            await asyncio.sleep(trig.slow_ms / 1000)
            await resp.write(b"\n" + payload)
            await resp.write_eof()
            return resp
        if trig.slow_ms and not await self._slow(request, raw, trig.slow_ms):
            return web.Response(status=499)  # nobody is there to read it
        return web.Response(status=200, body=payload, content_type="application/json", headers=self._headers())

    @staticmethod
    def _echoed(request: web.Request) -> tuple[str, str]:
        """(the bearer key received, a text quoting it raw and URL-encoded and every request header value)."""
        header = request.headers.get("Authorization", "")
        key = header[len("Bearer ") :] if header.startswith("Bearer ") else header
        values = "; ".join(f"{name}={value}" for name, value in request.headers.items())
        return key, f"Incorrect API key provided: {key} (url: {quote(key, safe='')}). You sent: {values}"

    def _echo_error(self, request: web.Request, status: int) -> web.Response:
        key, text = self._echoed(request)
        body = {"error": {"message": text, "type": f"bad_key {key}", "param": key, "code": key}}
        headers = self._headers({"x-echo-key": key, "retry-after": key})
        reason = f"Bad key {key}".replace("\r", " ").replace("\n", " ")
        return web.Response(
            status=status, reason=reason, body=orjson.dumps(body), content_type="application/json", headers=headers
        )

    async def _cut_body(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=self._headers({"Content-Type": "application/json"}))
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        self._drop_connection(request)
        return resp

    @staticmethod
    def _drop_connection(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    # ----------------------------------------------------------------- validation

    def _bad(self, message: str, *, param: str | None = None, code: str | None = None) -> FakeError:
        return FakeError(400, message, param=param, code=code)

    def _validate(self, raw: bytes) -> _Chat:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self._bad(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)"
            ) from None
        if not isinstance(body, dict):
            raise self._bad("Invalid request body: expected a JSON object.")
        model = body.get("model")
        if not model:
            raise self._bad("you must provide a model parameter")
        if not isinstance(model, str):
            raise self._bad(
                f"Invalid type for 'model': expected a string, but got {type(model).__name__}.", param="model"
            )
        if "messages" not in body or body["messages"] is None:
            raise self._bad(
                "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
            )
        messages = body["messages"]
        if not isinstance(messages, list):
            raise self._bad("Invalid type for 'messages': expected an array.", param="messages", code="invalid_type")
        if not messages:
            raise self._bad("[] is too short - 'messages'", param="messages", code="empty_array")
        if model not in self.models:
            raise self._unknown_model(model)

        stream = body.get("stream") is True
        stream_options = body.get("stream_options")
        if self.dialect == "openai" and stream_options is not None and not stream:
            raise self._bad(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True

        thinking, visible = self._reasoning_mode(model, body)
        self._validate_params(model, body, thinking)
        self._validate_tools(body)
        self._validate_messages(model, messages, thinking)

        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        triggers = _Triggers.parse(_text_of(last_user.get("content")) if last_user else "")
        return _Chat(
            body=body,
            model=model,
            messages=messages,
            stream=stream,
            include_usage=include_usage,
            triggers=triggers,
            thinking=thinking,
            reasoning_visible=visible,
        )

    def _reasoning_mode(self, model: str, body: dict[str, Any]) -> tuple[bool, bool]:
        """(does this request reason, is the reasoning sent as text)."""
        thinking = body.get("thinking")
        disabled = isinstance(thinking, dict) and thinking.get("type") == "disabled"
        effort = body.get("reasoning_effort")
        if self.dialect == "openai":
            # Chat Completions returns no reasoning text, only a count (§2.6).
            return model.startswith(("o1", "o3", "o4", "gpt-5")) and effort != "none", False
        if self.dialect == "deepseek":
            return not disabled, True  # thinking is on by default (§5.2)
        if self.dialect == "xai":
            # grok-4 family reasons silently; only grok-3-mini returns reasoning_content (§6.2).
            if model.startswith("grok-3-mini"):
                return True, True
            return model.startswith("grok-4") and "non-reasoning" not in model, False
        if self.dialect == "moonshot":
            if model.startswith(("kimi-k3", "kimi-k2.7-code")):
                return True, True  # always think (§7.1)
            return model.startswith("kimi-k2.6") and not disabled, True
        reasoning = body.get("reasoning")
        if isinstance(reasoning, dict) and reasoning.get("effort"):
            effort = reasoning.get("effort")
        return ("think" in model or "qwen3" in model) and effort != "none", True

    def _validate_params(self, model: str, body: dict[str, Any], thinking: bool) -> None:
        def present(name: str) -> bool:
            return body.get(name) is not None

        effort = body.get("reasoning_effort")
        if self.dialect == "openai":
            reasoning_model = model.startswith(("o1", "o3", "o4", "gpt-5"))
            if reasoning_model and present("max_tokens"):
                # §2.2: reasoning models reject max_tokens.
                raise self._bad(
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    param="max_tokens",
                    code="unsupported_parameter",
                )
            if reasoning_model and present("temperature") and body["temperature"] != 1:
                raise self._bad(
                    f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                    "Only the default (1) value is supported.",
                    param="temperature",
                    code="unsupported_value",
                )
            if effort is not None and not reasoning_model:
                raise self._bad(
                    "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                    param="reasoning_effort",
                    code="unsupported_parameter",
                )
            if effort is not None and effort not in _OPENAI_EFFORTS:
                raise self._bad(
                    f"Invalid value: '{effort}'. Supported values are: {', '.join(map(repr, _OPENAI_EFFORTS))}.",
                    param="reasoning_effort",
                    code="invalid_value",
                )
        elif self.dialect == "xai":
            self._validate_xai_params(model, body, thinking)
        elif self.dialect == "moonshot":
            self._validate_moonshot_params(model, body, thinking)
        elif self.dialect == "ollama":
            reasoning = body.get("reasoning")
            value = reasoning.get("effort") if isinstance(reasoning, dict) else None
            value = value or effort
            if value is not None and value not in _OLLAMA_EFFORTS:
                raise self._bad(f'invalid reasoning value: \'{value}\' (must be "high", "medium", "low", or "none")')

    def _validate_xai_params(self, model: str, body: dict[str, Any], thinking: bool) -> None:
        def unsupported(camel: str) -> FakeError:
            # Wording of 2026 reports; older replies said "Argument not supported on this model: <name>".
            return self._bad(f"Model {model} does not support parameter {camel}.")

        # §6.2: penalties and stop are errors on reasoning models; public reports (2025-2026) show the
        # penalties rejected by every grok-4 model, even the -non-reasoning ones, and by grok-3-mini.
        if model.startswith(("grok-4", "grok-3-mini")):
            for name, camel in (("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
                if body.get(name) is not None:
                    raise unsupported(camel)
        if thinking and body.get("stop") is not None:
            raise unsupported("stop")
        effort = body.get("reasoning_effort")
        if effort is None:
            return
        # §6.2: grok-3-mini takes low|high, grok-4.3 (and later 4.x) none|low|medium|high, the rest none.
        if model.startswith("grok-3-mini"):
            allowed: tuple[str, ...] = ("low", "high")
        elif re.match(r"grok-4\.\d", model):
            allowed = ("none", "low", "medium", "high")
        else:
            raise unsupported("reasoningEffort")
        if effort not in allowed:
            raise self._bad(f"Invalid reasoning effort {effort!r} for model {model}; expected one of {allowed}.")

    def _validate_moonshot_params(self, model: str, body: dict[str, Any], thinking: bool) -> None:
        if model.startswith(_MOONSHOT_FIXED_SAMPLING):
            # §7.2: fixed sampling; K2.6 fixes temperature at 0.6 with thinking off (public issue reports).
            fixed = {
                "temperature": 1.0 if thinking else 0.6,
                "top_p": 0.95,
                "n": 1,
                "presence_penalty": 0.0,
                "frequency_penalty": 0.0,
            }
            for name, value in fixed.items():
                sent = body.get(name)
                if sent is not None and sent != value:
                    raise self._bad(f"invalid {name}: only {value:g} is allowed for this model")
        if body.get("tool_choice") == "required" and model.startswith(("kimi-k2.6", "kimi-k2.7-code")):
            raise self._bad("tool_choice 'required' is not supported for this model")  # §7.2; wording not verified

    def _validate_tools(self, body: dict[str, Any]) -> None:
        tools = body.get("tools")
        if tools is None:
            return
        if not isinstance(tools, list):
            raise self._bad("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
                raise self._bad(
                    f"Missing required parameter: 'tools[{i}].function'.",
                    param=f"tools[{i}].function",
                    code="missing_required_parameter",
                )
            if not isinstance(fn.get("name"), str) or not fn["name"]:
                raise self._bad(
                    f"Missing required parameter: 'tools[{i}].function.name'.",
                    param=f"tools[{i}].function.name",
                    code="missing_required_parameter",
                )

    def _validate_messages(self, model: str, messages: list[Any], thinking: bool) -> None:
        roles = ("system", "developer", "user", "assistant", "tool", "function")
        open_ids: list[str] | None = None  # ids of the assistant tool calls the next tool messages answer
        unanswered: list[str] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise self._bad(f"Invalid type for 'messages[{i}]': expected an object.", param=f"messages.[{i}]")
            role = msg.get("role")
            if role not in roles:
                raise self._bad(
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', "
                    "'tool', and 'developer'.",
                    param=f"messages.[{i}].role",
                    code="invalid_value",
                )
            content = msg.get("content")
            tool_calls = msg.get("tool_calls") if role == "assistant" else None
            if content is None and not tool_calls:
                if self.dialect == "ollama":
                    raise self._bad("invalid message content type: <nil>")
                raise self._bad(
                    f"Missing required parameter: 'messages.[{i}].content'.",
                    param=f"messages.[{i}].content",
                    code="missing_required_parameter",
                )
            if content is not None and not isinstance(content, (str, list)):
                raise self._bad(f"Invalid type for 'messages.[{i}].content'.", param=f"messages.[{i}].content")
            if isinstance(content, list):
                self._validate_parts(model, i, content)

            if role == "tool":
                call_id = msg.get("tool_call_id")
                if open_ids is None:
                    raise self._bad(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                        "with 'tool_calls'.",
                        param=f"messages.[{i}].role",
                    )
                if call_id not in open_ids:
                    # Exact match only: this is what pins that the gateway never truncates or rewrites ids.
                    raise self._bad(
                        f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
                        "previous message.",
                        param=f"messages.[{i}].tool_call_id",
                    )
                if call_id in unanswered:
                    unanswered.remove(call_id)
                continue

            if unanswered and self.dialect in ("openai", "deepseek"):
                raise self._bad(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                    f"{', '.join(unanswered)}",
                    param=f"messages.[{i}].role",
                )
            open_ids, unanswered = None, []
            if tool_calls:
                ids = self._validate_tool_calls(i, tool_calls)
                open_ids, unanswered = ids, list(ids)
                self._check_reasoning_replay(model, i, msg, thinking)

    def _validate_parts(self, model: str, index: int, parts: list[Any]) -> None:
        for j, part in enumerate(parts):
            ptype = part.get("type") if isinstance(part, dict) else None
            if not isinstance(part, dict) or ptype not in ("text", "image_url", "input_audio", "file", "refusal"):
                if self.dialect == "ollama":
                    raise self._bad("invalid message format")
                raise self._bad(
                    f"Invalid value: '{ptype}'. Supported values are: 'text', 'image_url', 'input_audio', "
                    "'refusal', and 'file'.",
                    param=f"messages.[{index}].content.[{j}].type",
                    code="invalid_value",
                )
            if ptype == "text" and not isinstance(part.get("text"), str):
                raise self._bad(
                    f"Missing required parameter: 'messages.[{index}].content.[{j}].text'.",
                    param=f"messages.[{index}].content.[{j}].text",
                    code="missing_required_parameter",
                )
            if ptype != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise self._bad("invalid message format" if self.dialect == "ollama" else "Invalid image_url.")
            if self.dialect == "ollama" and not url.startswith(_OLLAMA_IMAGE_PREFIXES):
                raise self._bad("invalid image input")  # data URIs only (§8.1)
            if self.dialect == "moonshot" and model.startswith("kimi-k3") and url.startswith(("http://", "https://")):
                # §7.2: K3 takes base64 data URIs or ms://<file-id>, no public URLs. Wording not verified.
                raise self._bad("invalid image_url: public image urls are not supported by this model")

    def _validate_tool_calls(self, index: int, tool_calls: Any) -> list[str]:
        if not isinstance(tool_calls, list):
            raise self._bad(f"Invalid type for 'messages.[{index}].tool_calls': expected an array.")
        ids: list[str] = []
        for k, call in enumerate(tool_calls):
            where = f"messages.[{index}].tool_calls.[{k}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise self._bad(f"Missing required parameter: '{where}.function'.", param=f"{where}.function")
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                raise self._bad(f"Missing required parameter: '{where}.id'.", param=f"{where}.id")
            arguments = fn.get("arguments")
            if not isinstance(arguments, str):
                # Arguments are a JSON string on the OpenAI wire (§2.5, §11 pitfall 11), never an object.
                raise self._bad(
                    f"Invalid type for '{where}.function.arguments': expected a string, but got "
                    f"{type(arguments).__name__} instead.",
                    param=f"{where}.function.arguments",
                    code="invalid_type",
                )
            if self.dialect == "ollama":
                try:
                    orjson.loads(arguments)
                except orjson.JSONDecodeError:
                    raise self._bad("invalid tool call arguments") from None
            ids.append(call_id)
        return ids

    def _check_reasoning_replay(self, model: str, index: int, msg: dict[str, Any], thinking: bool) -> None:
        if not thinking or isinstance(msg.get("reasoning_content"), str):
            return
        if self.dialect == "deepseek":
            # §5.5: tool-call turns must send reasoning_content back when thinking is on.
            raise self._bad(f"Missing `reasoning_content` field in the assistant message at message index {index}")
        if self.dialect == "moonshot":
            # §7.2 and public reports (continuedev/continue#11600): same rule for thinking Kimi models.
            raise self._bad(
                f"thinking is enabled but reasoning_content is missing in assistant tool call message at index {index}"
            )

    # ----------------------------------------------------------------- answer

    def _answer(self, chat: _Chat) -> _Answer:
        body, messages, trig = chat.body, chat.messages, chat.triggers
        # A system message after the user's turn (Claude Code's mid-conversation system turns) is context for the
        # answer, not the turn being answered: the model still answers the user, as OpenAI's models do.
        last = next((m for m in reversed(messages) if m.get("role") not in ("system", "developer")), messages[-1])
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        user_text = _text_of(last_user.get("content")) if last_user else ""
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in messages) + 10

        tool_calls: list[dict[str, Any]] = []
        tools = body.get("tools") or []
        wanted = trig.call_tool or trig.call_name is not None
        if tools and wanted and last.get("role") == "user" and body.get("tool_choice") != "none":
            chosen = [t["function"] for t in tools]
            choice = body.get("tool_choice")
            if trig.call_name is not None:
                chosen = [f for f in chosen if f["name"] == trig.call_name][:1]
            elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
                chosen = [f for f in chosen if f["name"] == choice["function"].get("name")] or chosen
            if not trig.call_all_tools:
                chosen = chosen[:1]
            for fn in chosen:
                params = fn.get("parameters")
                props = params.get("properties") if isinstance(params, dict) else None
                props = props if isinstance(props, dict) else {}
                args = {name: _example_value(name, schema) for name, schema in props.items()}
                if trig.call_arguments is not None:
                    args = trig.call_arguments
                tool_calls.append(
                    {
                        "id": _new_tool_call_id(),
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": orjson.dumps(args).decode()},
                    }
                )
            with self._lock:
                self._issued_ids.extend(c["id"] for c in tool_calls)

        if tool_calls:
            content = ""
        elif last.get("role") == "tool":
            content = "tool result: " + _text_of(last.get("content"))
        elif trig.words is not None:
            content = " ".join(f"word{i}" for i in range(1, trig.words + 1))
        else:
            content = "echo: " + user_text

        finish = "tool_calls" if tool_calls else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and not tool_calls and _words(content) > limit:
            content = "".join(_pieces(content)[:limit]).rstrip()
            finish = "length"

        reasoning = f"Thinking about: {user_text}" if chat.thinking else ""
        text_tokens = _words(content) if not tool_calls else 10 * len(tool_calls)
        return _Answer(
            content=content,
            reasoning=reasoning,
            reasoning_visible=chat.reasoning_visible and bool(reasoning),
            tool_calls=tool_calls,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            text_tokens=text_tokens,
            reasoning_tokens=_words(reasoning),
            cached_tokens=min(trig.cache, prompt_tokens),
        )

    def _usage(self, a: _Answer) -> dict[str, Any]:
        prompt, text, reasoning, cached = a.prompt_tokens, a.text_tokens, a.reasoning_tokens, a.cached_tokens
        if self.dialect == "xai":
            # completion_tokens EXCLUDES reasoning tokens; total = prompt + completion + reasoning (§6.2).
            return {
                "prompt_tokens": prompt,
                "completion_tokens": text,
                "total_tokens": prompt + text + reasoning,
                "prompt_tokens_details": {
                    "text_tokens": prompt,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                    "cached_tokens": cached,
                },
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
                "num_sources_used": 0,
                "cost_in_usd_ticks": (prompt + text + reasoning) * 1000,
            }
        completion = text + reasoning
        base = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if self.dialect == "ollama":
            return base  # no details at all (§8.1)
        if self.dialect == "moonshot":
            # Cached count both nested and top-level (§7.3).
            return {**base, "cached_tokens": cached, "prompt_tokens_details": {"cached_tokens": cached}}
        if self.dialect == "deepseek":
            usage: dict[str, Any] = {
                **base,
                "prompt_cache_hit_tokens": cached,
                "prompt_cache_miss_tokens": prompt - cached,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
            if reasoning:
                usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
            return usage
        return {
            **base,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion_id(self) -> str:
        if self.dialect in ("deepseek", "xai"):
            return str(uuid.uuid4())
        if self.dialect == "ollama":
            return f"chatcmpl-{random.randint(0, 998)}"
        return "chatcmpl-" + "".join(random.choices(_ALNUM, k=29))

    def _fingerprint(self) -> str:
        return "fp_ollama" if self.dialect == "ollama" else f"fp_fake_{self.dialect}"

    def _completion(self, chat: _Chat, a: _Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": a.content}
        if a.tool_calls:
            message["content"] = "" if self.dialect == "ollama" else None
        if a.reasoning_visible:
            message["reasoning" if self.dialect == "ollama" else "reasoning_content"] = a.reasoning
        if self.dialect in ("openai", "xai"):
            message["refusal"] = None
        if self.dialect == "openai":
            message["annotations"] = []
        if a.tool_calls:
            message["tool_calls"] = a.tool_calls
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": a.finish_reason}
        if self.dialect != "ollama":
            choice["logprobs"] = None
        result: dict[str, Any] = {
            "id": self._completion_id(),
            "object": "chat.completion",
            "created": chat.created,
            "model": chat.model,
            "system_fingerprint": self._fingerprint(),
            "choices": [choice],
            "usage": self._usage(a),
        }
        if self.dialect == "openai":
            result["service_tier"] = "default"
        return result

    # ----------------------------------------------------------------- streaming

    def _chunks(self, chat: _Chat, a: _Answer) -> list[tuple[str, dict[str, Any]]]:
        """The stream as (kind, chunk) pairs; kind is role|reasoning|content|tool|finish|usage."""
        d = self.dialect
        reasoning_field = "reasoning" if d == "ollama" else "reasoning_content"
        # DeepSeek: with include_usage the chunks before the finish chunk carry usage: null (§5.4);
        # OpenAI likewise before its usage chunk (§2.4).
        null_usage = chat.include_usage and d in ("openai", "deepseek")
        stream_options = chat.body.get("stream_options")
        obfuscate = d == "openai" and not (
            isinstance(stream_options, dict) and stream_options.get("include_obfuscation") is False
        )

        def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": chat.completion_id,
                "object": "chat.completion.chunk",
                "created": chat.created,
                "model": chat.model,
                "system_fingerprint": self._fingerprint(),
            }
            if d == "openai":
                out["service_tier"] = "default"
            if delta is None:
                out["choices"] = []
            else:
                if d == "ollama":
                    # Every Ollama delta repeats role and content (ollama openai.go toChunk).
                    delta = {"role": "assistant", "content": "", **delta}
                choice: dict[str, Any] = {"index": 0, "delta": delta}
                if d in ("openai", "deepseek"):
                    choice["logprobs"] = None
                choice["finish_reason"] = finish
                out["choices"] = [choice]
            if null_usage:
                out["usage"] = None
            if obfuscate:
                # Padding string; parsers must ignore it (§2.4).
                out["obfuscation"] = "".join(random.choices(_ALNUM, k=random.randint(1, 12)))
            return out

        events: list[tuple[str, dict[str, Any]]] = []
        if d != "ollama":
            role: dict[str, Any] = {"role": "assistant", "content": None if a.tool_calls else ""}
            if d == "openai":
                role["refusal"] = None
            if d == "deepseek" and a.reasoning_visible:
                role = {"role": "assistant", "content": None, "reasoning_content": ""}
            events.append(("role", chunk(role)))
        if a.reasoning_visible:
            for piece in _pieces(a.reasoning):
                delta: dict[str, Any] = {reasoning_field: piece}
                if d == "deepseek":
                    delta = {"content": None, "reasoning_content": piece}
                events.append(("reasoning", chunk(delta)))
        for piece in _pieces(a.content):
            delta = {"content": piece}
            if d == "deepseek" and chat.thinking:
                delta["reasoning_content"] = None
            events.append(("content", chunk(delta)))
        if a.tool_calls:
            events.extend(("tool", chunk(delta)) for delta in self._tool_call_deltas(a.tool_calls))

        usage = self._usage(a)
        finish_delta: dict[str, Any] = {"content": ""} if d == "deepseek" else {}
        finish = chunk(finish_delta, a.finish_reason)
        if d == "deepseek":
            finish["usage"] = usage  # on the finish chunk, whether or not include_usage was asked (§5.4)
        if d == "moonshot":
            finish["choices"][0]["usage"] = usage  # in choices[0].usage, not top-level (§7.3)
        events.append(("finish", finish))
        if chat.include_usage and d in ("openai", "xai", "ollama"):
            last = chunk(None)
            last["usage"] = usage  # separate choices:[] chunk, only when asked (§2.4, §6.2, §8.1)
            events.append(("usage", last))
        return events

    def _tool_call_deltas(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        whole = [{"index": i, **c} for i, c in enumerate(calls)]
        if self.dialect == "ollama":
            return [{"tool_calls": whole}]  # all calls whole in one delta (§8.1)
        if self.dialect == "xai":
            return [{"tool_calls": [call]} for call in whole]  # each call whole (§6.2, [MEM])
        deltas: list[dict[str, Any]] = []
        for i, call in enumerate(calls):
            fn = call["function"]
            head = {"index": i, "id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
            deltas.append({"tool_calls": [head]})
            args: str = fn["arguments"]
            step = max(1, -(-len(args) // 3))
            for start in range(0, len(args), step):
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": args[start : start + step]}}]})
        return deltas

    async def _stream(
        self, request: web.Request, chat: _Chat, a: _Answer, behaviour: Behaviour | None = None
    ) -> web.StreamResponse:
        chat.completion_id = self._completion_id()
        events = self._chunks(chat, a)
        trig = chat.triggers
        resp = web.StreamResponse(
            status=200,
            headers=self._headers({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}),
        )
        await resp.prepare(request)
        if self.dialect == "deepseek":
            await resp.write(b": keep-alive\n\n")  # SSE comment lines; parsers must skip them (§5.4)
        content_sent = 0
        for n, (kind, event) in enumerate(events):
            if trig.slow_ms and n:
                if self.dialect == "deepseek":
                    await resp.write(b": keep-alive\n\n")
                await asyncio.sleep(trig.slow_ms / 1000)
            await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
            if n == 0 and behaviour is not None and behaviour.kind in ("early_error", "early_cut", "stall"):
                if behaviour.kind == "early_cut":
                    self._drop_connection(request)
                    return resp
                if behaviour.kind == "stall":
                    await asyncio.sleep(behaviour.seconds)
                else:
                    err = FakeError(500, "The server had an error while processing your request. Sorry about that!")
                    inner = error_body("openai" if self.dialect == "xai" else self.dialect, err)["error"]
                    await resp.write(b"data: " + orjson.dumps({"error": inner}) + b"\n\n")
                    await resp.write_eof()
                    return resp
            if kind != "content":
                continue
            content_sent += 1
            if trig.bad_event and content_sent == 1:
                await resp.write(b'data: {"id": "cut-off", "choices": [{"delta": \n\n')
            if trig.huge_event and content_sent == 1:
                await huge_event(resp, trig.huge_event)
                return resp
            if trig.cut and content_sent == 2:
                self._drop_connection(request)
                return resp
            if trig.echo_mid and content_sent == 1:
                key, text = self._echoed(request)
                inner = {"message": text, "type": f"bad_key {key}", "param": key, "code": key}
                await resp.write(b"data: " + orjson.dumps({"error": inner}) + b"\n\n")
                await resp.write_eof()
                return resp
            if trig.mid_error and content_sent == 1:
                # Mid-stream errors arrive as a data payload with an "error" key (§2.4, §11 pitfall 8).
                err = FakeError(500, "The server had an error while processing your request. Sorry about that!")
                inner = error_body("openai" if self.dialect == "xai" else self.dialect, err)["error"]
                await resp.write(b"data: " + orjson.dumps({"error": inner}) + b"\n\n")
                await resp.write_eof()
                return resp
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # ----------------------------------------------------------------- embeddings

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self._bad("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise self._bad("Invalid request body: expected a JSON object.")
        return body

    def _embeddings(self, raw: bytes) -> web.Response:
        body = self._json_body(raw)
        ollama = self.dialect == "ollama"
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self._bad("model is required" if ollama else "you must provide a model parameter", param="model")
        models = EMBEDDING_MODELS[self.dialect]
        if model not in models:
            raise self._unknown_model(model)
        inputs = self._embedding_inputs(body.get("input"))
        encoding = body.get("encoding_format")
        if encoding is not None and encoding not in ("float", "base64"):
            raise self._bad(
                "invalid encoding format"
                if ollama
                else f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        size = models[model]
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if model == "text-embedding-ada-002":
                raise self._bad("This model does not support specifying dimensions.", param="dimensions")
            if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= size:
                raise self._bad(
                    f"Invalid 'dimensions': expected an integer from 1 to {size}.",
                    param="dimensions",
                    code="invalid_value",
                )
            size = dimensions
        data = []
        for index, item in enumerate(inputs):
            vector = self._vector(model, item, size)
            if encoding == "base64":
                # Little-endian float32, base64-encoded: what the openai SDK decodes (it asks for it by default).
                embedding: Any = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(i) if isinstance(i, list) else _words(i) for i in inputs)
        return self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _embedding_inputs(self, value: Any) -> list[Any]:
        """The inputs as a list of strings or token arrays; OpenAI's errors for the rest (§2.8)."""
        if value is None:
            if self.dialect == "ollama":
                raise self._bad("invalid input type")
            raise self._bad("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
            value = [value]
        if not isinstance(value, list) or not value:
            if self.dialect == "ollama":
                raise self._bad("invalid input")
            raise self._bad("[] is too short - 'input'", param="input", code="empty_array")
        for item in value:
            ok = (isinstance(item, str) and item != "") or (
                isinstance(item, list) and item and all(isinstance(t, int) for t in item) and self.dialect == "openai"
            )
            if not ok:
                if self.dialect == "ollama":
                    raise self._bad("invalid input")
                raise self._bad(
                    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
                )
        return list(value)

    @staticmethod
    def _vector(model: str, item: Any, size: int) -> list[float]:
        seed = hashlib.sha256(f"{model}\0{item}".encode()).digest()
        rng = random.Random(seed)
        vector = [rng.uniform(-1.0, 1.0) for _ in range(size)]
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        # Rounded through float32 so that the float and base64 encodings carry the same numbers.
        return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vector]

    # ----------------------------------------------------------------- images

    def _images(self, raw: bytes) -> web.Response:
        body = self._json_body(raw)
        d = self.dialect
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self._bad("you must provide a model parameter", param="model")
        models = IMAGE_MODELS[d]
        if model not in models:
            raise self._unknown_model(model)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise self._bad("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
        n = body.get("n", 1)
        if d == "ollama" and n not in (None, 1):
            raise self._bad("n is not supported")  # experimental endpoint, one image per call (§8.1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            word, bound = ("below minimum", ">= 1") if isinstance(n, int) and n < 1 else ("above maximum", "<= 10")
            raise self._bad(
                f"Invalid 'n': integer {word} value. Expected a value {bound}, but got {n} instead.",
                param="n",
                code=f"integer_{word.replace(' ', '_')}_value",
            )
        fmt = body.get("response_format")
        default_fmt = "url" if d == "xai" else "b64_json"
        if fmt is not None and fmt not in ("url", "b64_json"):
            raise self._bad(
                f"Invalid value: '{fmt}'. Supported values are: 'url' and 'b64_json'.",
                param="response_format",
                code="invalid_value",
            )
        if fmt == "url" and d != "xai":
            # gpt-image models always return b64_json (§2.8); Ollama's endpoint is b64_json only (§8.1).
            raise self._bad(f"response_format 'url' is not supported for model '{model}'.", param="response_format")
        sizes = models[model]
        size = body.get("size")
        if size is not None and sizes is None:
            raise self._bad("Argument not supported: size")  # xAI takes aspect_ratio instead (§6.4)
        if size is not None and sizes is not None and size not in sizes:
            raise self._bad(
                f"Invalid value: '{size}'. Supported values are: {', '.join(repr(s) for s in sizes)}.",
                param="size",
                code="invalid_value",
            )
        trig = _Triggers.parse(prompt)
        if trig.fail is not None:
            raise self._scripted_error(trig.fail)
        fmt = fmt or default_fmt
        items: list[dict[str, Any]] = []
        for _ in range(n):
            if fmt == "url":
                items.append({"url": f"https://imgen.x.ai/xai-imgen/xai-tmp-imgen-{uuid.uuid4()}.jpeg"})
            else:
                items.append({"b64_json": base64.b64encode(PNG_1X1).decode()})
            if d == "xai":
                items[-1]["revised_prompt"] = ""
        result: dict[str, Any] = {"created": int(time.time()), "data": items}
        if d == "openai":
            size = size if size not in (None, "auto") else "1024x1024"
            per_image = 1056 if size == "1024x1024" else 1584
            text_tokens = _words(prompt)
            result.update(
                background="opaque",
                output_format="png",
                quality="medium",
                size=size,
                usage={
                    "input_tokens": text_tokens,
                    "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                    "output_tokens": per_image * n,
                    "total_tokens": text_tokens + per_image * n,
                },
            )
        return self._json(200, result)

    # ----------------------------------------------------------------- responses

    def _responses_request(self, raw: bytes) -> tuple[dict[str, Any], str, _Triggers]:
        body = self._json_body(raw)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise self._bad("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
        for name, hint in (("messages", "input"), ("max_tokens", "max_output_tokens")):
            if name in body:
                # Chat Completions fields are unknown to the Responses API (§2.9).
                raise self._bad(f"Unsupported parameter: '{name}'. Use '{hint}'.", param=name, code="unknown_parameter")
        if model not in self.models:
            raise self._unknown_model(model)
        value = body.get("input")
        if value is None and body.get("previous_response_id") is None:
            raise self._bad("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
        if value is not None and not isinstance(value, (str, list)):
            raise self._bad(
                "Invalid type for 'input': expected a string or an array.", param="input", code="invalid_type"
            )
        if body.get("stream_options") is not None and body.get("stream") is not True:
            raise self._bad(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        limit = body.get("max_output_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < RESPONSES_MIN_OUTPUT_TOKENS):
            raise self._bad(
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                f"{RESPONSES_MIN_OUTPUT_TOKENS}, but got {limit} instead.",
                param="max_output_tokens",
                code="integer_below_min_value",
            )
        text = self._responses_input_text(value)
        return body, text, _Triggers.parse(text)

    @staticmethod
    def _responses_input_text(value: Any) -> str:
        """The text of the last user input: a string, or the last user message item's text parts."""
        if isinstance(value, str):
            return value
        for item in reversed(value or []):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(
                        p["text"]
                        for p in content
                        if isinstance(p, dict) and p.get("type") == "input_text" and isinstance(p.get("text"), str)
                    )
        return ""

    def _response_object(self, body: dict[str, Any], text: str, trig: _Triggers) -> dict[str, Any]:
        """The complete response (status completed or incomplete) for the request."""
        model: str = body["model"]
        reasoning = model.startswith(("o1", "o3", "o4", "gpt-5"))
        content = " ".join(f"word{i}" for i in range(1, trig.words + 1)) if trig.words else "echo: " + text
        reasoning_tokens = _words(text) + 2 if reasoning else 0
        limit = body.get("max_output_tokens")
        status, incomplete = "completed", None
        if isinstance(limit, int) and _words(content) + reasoning_tokens > limit:
            content = "".join(_pieces(content)[: max(limit - reasoning_tokens, 0)]).rstrip()
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        input_tokens = _words(text) + _words(str(body.get("instructions") or "")) + 10
        output: list[dict[str, Any]] = []
        if reasoning:
            output.append({"id": "rs_" + uuid.uuid4().hex, "type": "reasoning", "summary": []})
        output.append(
            {
                "id": "msg_" + uuid.uuid4().hex,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}],
            }
        )
        output_tokens = _words(content) + reasoning_tokens
        return {
            "id": "resp_" + uuid.uuid4().hex,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": limit,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "store": body.get("store", True),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": min(trig.cache, input_tokens)},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                "total_tokens": input_tokens + output_tokens,
            },
            "metadata": {},
        }

    async def _responses(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        body, text, trig = self._responses_request(raw)
        if trig.fail is not None:
            raise self._scripted_error(trig.fail)
        final = self._response_object(body, text, trig)
        with self._lock:
            behaviour = self._chat_script.popleft() if self._chat_script else None
        if behaviour is not None and behaviour.kind == "status":
            err = self._scripted_error(behaviour.status)
            return self._json(behaviour.status, error_body(self.dialect, err), {**err.headers, **behaviour.headers})
        if body.get("stream") is True:
            return await self._responses_stream(request, final, trig, behaviour)
        if trig.slow_ms and not await self._slow(request, raw, trig.slow_ms):
            return web.Response(status=499)  # nobody is there to read it
        payload = orjson.dumps(final)
        if trig.cut:
            return await self._cut_body(request, payload)
        return web.Response(status=200, body=payload, content_type="application/json", headers=self._headers())

    @staticmethod
    def _responses_events(final: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream of `final` in the API's order (§2.9); sequence numbers are added when sending."""
        start = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": start},
            {"type": "response.in_progress", "response": start},
        ]
        for index, item in enumerate(final["output"]):
            if item["type"] != "message":
                events.append({"type": "response.output_item.added", "output_index": index, "item": item})
                events.append({"type": "response.output_item.done", "output_index": index, "item": item})
                continue
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": index}
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "status": "in_progress", "content": []},
                }
            )
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append({"type": "response.content_part.added", **where, "content_index": 0, "part": empty})
            for piece in _pieces(part["text"]):
                events.append(
                    {"type": "response.output_text.delta", **where, "content_index": 0, "delta": piece, "logprobs": []}
                )
            events.append(
                {"type": "response.output_text.done", **where, "content_index": 0, "text": part["text"], "logprobs": []}
            )
            events.append({"type": "response.content_part.done", **where, "content_index": 0, "part": part})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        events.append({"type": terminal, "response": final})
        return events

    async def _responses_stream(
        self, request: web.Request, final: dict[str, Any], trig: _Triggers, behaviour: Behaviour | None = None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers=self._headers({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}),
        )
        await resp.prepare(request)
        deltas = 0
        for seq, event in enumerate(self._responses_events(final)):
            if trig.slow_ms and seq:
                await asyncio.sleep(trig.slow_ms / 1000)
            event = {**event, "sequence_number": seq}
            await resp.write(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
            if seq == 0 and behaviour is not None and behaviour.kind == "early_cut":  # after response.created
                self._drop_connection(request)
                return resp
            if event["type"] != "response.output_text.delta":
                continue
            deltas += 1
            if trig.cut and deltas == 2:
                self._drop_connection(request)
                return resp
            if trig.mid_error and deltas == 1:
                # The live API nests the error under "error" (unlike its reference, which shows the fields
                # flat); openai-dotnet#881, Effect-TS/effect#7262.
                message = _GENERIC_MESSAGES[500]
                inner = {"type": "server_error", "code": "server_error", "param": None, "message": message}
                error = {"type": "error", "error": inner, "sequence_number": seq + 1}
                await resp.write(b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
                await resp.write_eof()
                return resp
        await resp.write_eof()  # no [DONE]: the terminal event ends the stream (§2.9)
        return resp

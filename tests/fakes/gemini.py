"""A strict fake of the Gemini Developer API (generativelanguage), for the native Gemini provider.

Real HTTP on 127.0.0.1 (aiohttp.web in a background thread, like ``openai_compat.py``). Wire formats, error
shapes and the rejection rules follow the shared providers.md; comments cite its sections (§).

Endpoints: ``POST /{v1|v1beta}/models/{m}:generateContent``, ``:streamGenerateContent`` (SSE only with
``alt=sse``, otherwise one JSON array, §3.4), ``:batchEmbedContents``; ``GET /{ver}/models`` (paged).

The text of the last user text part selects scripted behaviour:

    FAIL <status>   reply with that HTTP error in Gemini's shape (429 carries a RetryInfo retryDelay)
    SLOW <ms>       wait that long before answering / between stream events
    CUT             stream: two text events, then the connection is dropped; non-stream: half the body
    MIDERROR        stream: one text event, then ``data: {"error": ...}``
    RAWERROR        stream: one text event, then the error as raw pretty-printed JSON outside SSE (§3.6)
    NOFINISH        stream: text events, then a clean close without any finishReason
    USAGEONLY       stream: the finishReason chunk, then a last chunk holding only usageMetadata
    LFONLY          stream framed with LF (the default is CRLF, as Gemini sends, §3.4)
    BLOCK           the prompt is blocked: HTTP 200, no candidates, promptFeedback.blockReason (§3.3)
    SAFETY          the answer ends with finishReason SAFETY and no text
    LIMIT           the answer ends with finishReason MAX_TOKENS
    WORDS <n>       answer with n words
    CACHE <n>       report n prompt tokens as cached (cachedContentTokenCount)
    call tool       (tools declared) call the first tool, or the one allowed by toolConfig
    call all tools  call every tool, in parallel (one signature, on the first call, §3.5)
    CALL <name> [<json object>]  call the declared function of that name with the JSON object as its args, or
                    example args from its schema; no call when none has that name (an agent declares many)

Otherwise the answer is "echo: " + that text (with "[mime N bytes]" per inline part), or "tool result: ..."
when the last turn holds function responses. Thinking models (2.5, 3) count thought tokens and return thought
parts when ``includeThoughts`` is set; image models answer ``responseModalities`` IMAGE with a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import LoopbackServer, json_object_at

DEFAULT_MODELS = [
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-3-flash",
    "gemini-3-pro-preview",
    "gemini-3.1-flash-image",
    "gemini-embedding-001",
]
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's documented sentinel (thought-signatures FAQ)
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

_TOP_LEVEL = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "cachedContent", "generationConfig"}
)
_GENERATION_CONFIG = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "imageConfig",
        "thinkingConfig",
        "responseLogprobs",
        "logprobs",
        "mediaResolution",
    }
)
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_PART_FIELDS = frozenset({*_PART_DATA, "thought", "thoughtSignature"})
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED")
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH")
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
THOUGHT_TOKENS = 12


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any
    query: dict[str, str]


class FakeError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def error_body(err: FakeError) -> dict[str, Any]:
    """Gemini's error shape (§3.6)."""
    body: dict[str, Any] = {"code": err.status, "message": err.message, "status": _STATUS.get(err.status, "UNKNOWN")}
    if err.details:
        body["details"] = err.details
    return {"error": body}


def _bad(message: str) -> FakeError:
    return FakeError(400, message)


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _is_thinking(model: str) -> bool:
    return model.startswith(("gemini-2.5", "gemini-3")) and "image" not in model


def _example(name: str, schema: Any) -> Any:
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {k: _example(k, v) for k, v in props.items()}
    return {"integer": 1, "number": 1.5, "boolean": True, "array": []}.get(
        kind, "Paris" if name == "city" else f"test-{name}"
    )


@dataclass
class _Triggers:
    fail: int | None = None
    slow_ms: int = 0
    words: int | None = None
    cache: int = 0
    flags: frozenset[str] = frozenset()
    call_tool: bool = False
    call_all: bool = False
    call_name: str | None = None  # CALL <name>
    call_args: dict[str, Any] | None = None  # CALL <name> <json object>

    @classmethod
    def parse(cls, text: str) -> _Triggers:
        def number(word: str) -> int | None:
            m = re.search(rf"\b{word} (\d+)\b", text)
            return int(m.group(1)) if m else None

        names = ("CUT", "MIDERROR", "RAWERROR", "NOFINISH", "USAGEONLY", "LFONLY", "BLOCK", "SAFETY", "LIMIT")
        lowered = text.lower()
        call = re.search(r"\bCALL ([\w.:-]+)", text)
        return cls(
            call_name=call.group(1) if call else None,
            call_args=json_object_at(text, call.end()) if call else None,
            fail=number("FAIL"),
            slow_ms=number("SLOW") or 0,
            words=number("WORDS"),
            cache=number("CACHE") or 0,
            flags=frozenset(n for n in names if re.search(rf"\b{n}\b", text)),
            call_tool="call tool" in lowered or "call all tools" in lowered,
            call_all="call all tools" in lowered,
        )


def _called(body: dict[str, Any], declared: dict[str, Any], trig: _Triggers) -> list[str]:
    """The names of the declared functions the triggers call."""
    if not declared or not (trig.call_tool or trig.call_name is not None):
        return []
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    names: list[str] = fcc.get("allowedFunctionNames") or list(declared)
    if trig.call_name is not None:
        names = [n for n in names if n == trig.call_name]
    return names if trig.call_all else names[:1]


@dataclass
class _Answer:
    thoughts: str
    text: str
    calls: list[dict[str, Any]]  # parts with functionCall (and thoughtSignature on the first)
    images: list[bytes]
    finish: str | None
    blocked: str | None
    prompt_tokens: int
    cached: int
    thought_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


class FakeGemini(LoopbackServer):
    """A strict Gemini upstream on 127.0.0.1; use as a context manager or ``start()`` / ``stop()``."""

    thread_name = "fake-gemini"

    def __init__(self, api_key: str = "AIza-fake-gemini-key-000000000000", models: list[str] | None = None) -> None:
        self.api_key = api_key
        self.models = list(models) if models is not None else list(DEFAULT_MODELS)
        self.page_size = 3  # models per page at most, so listings are paged
        self.embedding_usage = False  # batchEmbedContents reports usageMetadata
        super().__init__()
        self.issued_signatures: set[str] = set()
        # Google accepts its documented sentinel on a replayed call; False makes the fake refuse it, so a test can
        # tell the real signature came back (e.g. from another gateway instance) from the gateway's fallback.
        self.accepts_skip_signature = True
        self._requests: list[RecordedRequest] = []
        self._failures: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()

    # -- test API -------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What GEMINI_BASE_URL takes: the host, without the API version (§3.1)."""
        if self.port is None:
            raise RuntimeError("fake not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def generate_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "Generate" in r.path or "generate" in r.path]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with ``status`` (Gemini's error body by default)."""
        with self._lock:
            self._failures.append((status, body, dict(headers or {})))

    # -- dispatch -------------------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                    dict(request.query),
                )
            )
            scripted = self._failures.popleft() if self._failures else None
        if scripted is not None:
            status, payload, headers = scripted
            err = FakeError(status, _MESSAGES.get(status, f"Scripted failure {status}."))
            data = orjson.dumps(error_body(err) if payload is None else payload)
            return web.Response(status=status, body=data, content_type="application/json", headers=headers)
        try:
            self._check_auth(request)
            m = re.fullmatch(r"/(v1|v1beta|v1alpha)/(.+)", request.path)
            if m is None:
                raise FakeError(404, f"The requested URL {request.path} was not found on this server.")
            rest = m.group(2)
            if rest == "models" and request.method == "GET":
                return self._list_models(request, m.group(1))
            action = re.fullmatch(r"models/([^:/]+):(\w+)", rest)
            if action is None or request.method != "POST":
                raise FakeError(404, f"The requested URL {request.path} was not found on this server.")
            model, method = action.groups()
            if model not in self.models:
                raise FakeError(
                    404,
                    f"models/{model} is not found for API version {m.group(1)}, or is not supported for {method}. "
                    "Call ListModels to see the list of available models and their supported methods.",
                )
            if raw and body is None:
                raise _bad("Invalid JSON payload received. Unexpected token.")
            if method == "batchEmbedContents":
                return self._embed(model, body)
            if method == "generateContent":
                return await self._generate(request, model, body, stream=False)
            if method == "streamGenerateContent":
                return await self._generate(request, model, body, stream=True)
            if method == "countTokens":
                return self._count_tokens(model, body)
            raise FakeError(404, f"The requested URL {request.path} was not found on this server.")
        except FakeError as err:
            return web.Response(status=err.status, body=orjson.dumps(error_body(err)), content_type="application/json")

    def _check_auth(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise FakeError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API "
                "Key or other form of API consumer identity to call this API.",
            )
        if key != self.api_key:
            # A bad key is 400 INVALID_ARGUMENT with reason API_KEY_INVALID, not 401 (§3.6).
            raise FakeError(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": "API key not valid. Please pass a valid API key.",
                    },
                ],
            )

    def _list_models(self, request: web.Request, version: str) -> web.Response:
        size = min(int(request.query.get("pageSize", "50")), self.page_size)
        start = int(request.query.get("pageToken") or 0)
        page = self.models[start : start + size]
        models = [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]
                if "embedding" in m
                else ["generateContent", "countTokens"],
            }
            for m in page
        ]
        out: dict[str, Any] = {"models": models}
        if start + size < len(self.models):
            out["nextPageToken"] = str(start + size)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    # -- embeddings -----------------------------------------------------------------------------------------------

    def _embed(self, model: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or set(body) != {"requests"} or not isinstance(body["requests"], list):
            raise _bad("Invalid JSON payload received. Expected exactly one field: requests.")
        embeddings = []
        tokens = 0
        for i, req in enumerate(body["requests"]):
            if not isinstance(req, dict) or req.get("model") != f"models/{model}":
                raise _bad(f"requests[{i}].model: every request must name the model of the URL (models/{model}).")
            unknown = set(req) - {"model", "content", "taskType", "title", "outputDimensionality"}
            if unknown:
                raise _bad(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'requests[{i}]'.")
            parts = (req.get("content") or {}).get("parts")
            if not isinstance(parts, list) or not parts or not all(isinstance(p.get("text"), str) for p in parts):
                raise _bad(f"requests[{i}].content must have text parts.")
            text = " ".join(p["text"] for p in parts)
            tokens += _words(text)
            dims = req.get("outputDimensionality") or 8
            embeddings.append({"values": [round((len(text) + k) / 100, 4) for k in range(dims)]})
        out: dict[str, Any] = {"embeddings": embeddings}
        if self.embedding_usage:
            out["usageMetadata"] = {"promptTokenCount": tokens, "totalTokenCount": tokens}
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    # -- validation -----------------------------------------------------------------------------------------------

    def _validate(self, model: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise _bad("Invalid JSON payload received. Expected an object.")
        for name in body:
            if name not in _TOP_LEVEL:
                raise _bad(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _bad("* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(contents):
            self._validate_content(content, f"contents[{i}]", roles=True)
        system = body.get("systemInstruction")
        if system is not None:
            self._validate_content(system, "system_instruction", roles=False)
        declared = self._validate_tools(body.get("tools"), body.get("toolConfig"))
        self._validate_turns(model, contents, declared)
        self._validate_config(model, body.get("generationConfig"))

    def _validate_content(self, content: Any, where: str, *, roles: bool) -> None:
        if not isinstance(content, dict):
            raise _bad(f"Invalid value at '{where}': expected an object.")
        unknown = set(content) - {"role", "parts"}
        if unknown:
            raise _bad(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at '{where}'.")
        if roles and content.get("role") not in ("user", "model"):
            # Only user and model (§3.2); "function", "assistant", "system" are rejected.
            raise _bad(f"Please use a valid role: user, model. (got {content.get('role')!r} at {where})")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _bad(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            self._validate_part(part, f"{where}.parts[{j}]")

    def _validate_part(self, part: Any, where: str) -> None:
        if not isinstance(part, dict):
            raise _bad(f"Invalid value at '{where}'.")
        unknown = set(part) - _PART_FIELDS
        if unknown:
            raise _bad(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at '{where}'.")
        present = [k for k in _PART_DATA if k in part]
        if len(present) != 1:
            raise _bad(
                f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
            )
        if "text" in part and (not isinstance(part["text"], str) or not part["text"]):
            raise _bad(
                f"* GenerateContentRequest.{where}: Unable to submit request because it has an empty text parameter."
            )
        inline = part.get("inlineData")
        if inline is not None:
            if not isinstance(inline, dict) or set(inline) - {"mimeType", "data"} or not inline.get("mimeType"):
                raise _bad(f"* GenerateContentRequest.{where}.inline_data.mime_type: mime_type is required.")
            try:
                base64.b64decode(inline.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise _bad(
                    f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
                ) from None
        call = part.get("functionCall")
        if call is not None and (not isinstance(call, dict) or not isinstance(call.get("args", {}), dict)):
            raise _bad(f"Invalid value at '{where}.function_call.args' (type.googleapis.com/google.protobuf.Struct).")
        response = part.get("functionResponse")
        if response is not None:
            if not isinstance(response, dict) or not response.get("name"):
                raise _bad(f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty.")
            if not isinstance(response.get("response"), dict):
                # response must be an object (§3.5, §11.11).
                raise _bad(
                    f"Invalid value at '{where}.function_response.response' "
                    f"(type.googleapis.com/google.protobuf.Struct), {orjson.dumps(response.get('response')).decode()}"
                )

    def _validate_tools(self, tools: Any, config: Any) -> dict[str, Any]:
        declared: dict[str, Any] = {}
        for i, tool in enumerate(tools or ()):
            if not isinstance(tool, dict) or set(tool) - {"functionDeclarations", "googleSearch", "codeExecution"}:
                raise _bad(f"Invalid JSON payload received. Unknown name at 'tools[{i}]'.")
            for k, decl in enumerate(tool.get("functionDeclarations") or ()):
                where = f"tools[{i}].function_declarations[{k}]"
                if not isinstance(decl, dict) or not decl.get("name"):
                    raise _bad(f"* GenerateContentRequest.{where}.name: Name cannot be empty.")
                unknown = set(decl) - {"name", "description", "parameters", "parametersJsonSchema", "response"}
                if unknown:
                    raise _bad(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at '{where}'.")
                if "parameters" in decl and "parametersJsonSchema" in decl:
                    raise _bad(f"{where}: parameters and parameters_json_schema cannot both be set.")
                declared[decl["name"]] = decl.get("parametersJsonSchema", decl.get("parameters"))
        if config is not None:
            fcc = config.get("functionCallingConfig") if isinstance(config, dict) else None
            if not isinstance(fcc, dict) or fcc.get("mode", "AUTO") not in _MODES:
                raise _bad("Invalid value at 'tool_config.function_calling_config.mode'.")
            names = fcc.get("allowedFunctionNames")
            if names is not None and fcc.get("mode") not in ("ANY", "VALIDATED"):
                raise _bad("allowed_function_names is only allowed when mode is ANY or VALIDATED.")
            for name in names or ():
                if name not in declared:
                    raise _bad(f"allowed_function_names: {name} is not a declared function.")
        return declared

    def _validate_turns(self, model: str, contents: list[dict[str, Any]], declared: dict[str, Any]) -> None:
        def calls_of(content: dict[str, Any]) -> list[dict[str, Any]]:
            return [p for p in content["parts"] if "functionCall" in p]

        def responses_of(content: dict[str, Any]) -> list[dict[str, Any]]:
            return [p for p in content["parts"] if "functionResponse" in p]

        for i, content in enumerate(contents):
            responses = responses_of(content)
            if not responses:
                continue
            previous = contents[i - 1] if i else None
            calls = calls_of(previous) if previous is not None and previous["role"] == "model" else []
            if content["role"] != "user" or not calls:
                raise _bad(
                    "Please ensure that function response turn comes immediately after a function call turn. "
                    f"(contents[{i}])"
                )
            if len(responses) != len(calls):
                raise _bad(
                    "Please ensure that the number of function response parts is equal to the number of function "
                    f"call parts of the function call turn. (contents[{i}])"
                )
            if sorted(r["functionResponse"]["name"] for r in responses) != sorted(
                c["functionCall"]["name"] for c in calls
            ):
                raise _bad(f"Function response names do not match the function calls of contents[{i - 1}].")
        if not model.startswith("gemini-3") or "image" in model:
            return
        # Gemini 3: every step of the current turn (since the last user text) must replay the signature on its
        # first functionCall part, unchanged (§3.5); Google's sentinel is accepted for history built elsewhere.
        start = 0
        for i, content in enumerate(contents):
            if content["role"] == "user" and not responses_of(content):
                start = i
        for i in range(start, len(contents)):
            calls = calls_of(contents[i]) if contents[i]["role"] == "model" else []
            if not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            name = calls[0]["functionCall"].get("name")
            if signature is None:
                raise _bad(f"Function call `{name}` in the `{i}.` content block is missing a `thought_signature`.")
            if signature == SKIP_SIGNATURE and not self.accepts_skip_signature:
                raise _bad(f"Thought signature is not valid (contents[{i}]): the skip sentinel is refused here.")
            if signature != SKIP_SIGNATURE and signature not in self.issued_signatures:
                raise _bad(f"Thought signature is not valid (contents[{i}]).")

    def _validate_config(self, model: str, config: Any) -> None:
        if config is None:
            return
        if not isinstance(config, dict):
            raise _bad("Invalid value at 'generation_config'.")
        for name in config:
            if name not in _GENERATION_CONFIG:
                raise _bad(f"Invalid JSON payload received. Unknown name \"{name}\" at 'generation_config'.")
        if "responseJsonSchema" in config and config.get("responseMimeType") != "application/json":
            raise _bad("response_json_schema requires response_mime_type application/json.")
        thinking = config.get("thinkingConfig")
        if thinking is None:
            return
        if not _is_thinking(model):
            raise _bad("Thinking is not supported for this model.")
        if set(thinking) - {"includeThoughts", "thinkingBudget", "thinkingLevel"}:
            raise _bad("Invalid JSON payload received. Unknown name at 'generation_config.thinking_config'.")
        if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
            raise _bad("You can only set only one of thinking budget and thinking level.")
        if "thinkingLevel" in thinking and (
            not model.startswith("gemini-3") or thinking["thinkingLevel"] not in _LEVELS
        ):
            raise _bad("Thinking level is not supported for this model.")
        if thinking.get("thinkingBudget") == 0 and "pro" in model:
            raise _bad("Budget 0 is invalid. This model only works in thinking mode.")

    # -- answers --------------------------------------------------------------------------------------------------

    def _answer(self, model: str, body: dict[str, Any], trig: _Triggers, user_text: str) -> _Answer:
        contents = body["contents"]
        config = body.get("generationConfig") or {}
        thinking = config.get("thinkingConfig") or {}
        thinks = _is_thinking(model) and thinking.get("thinkingBudget") != 0
        prompt = sum(
            _words(p.get("text", "")) + (10 if "inlineData" in p else 0) + (5 if "functionResponse" in p else 0)
            for c in [*contents, body.get("systemInstruction") or {"parts": []}]
            for p in c["parts"]
        )
        answer = _Answer(
            thoughts=f"Thinking about: {user_text}" if thinks and thinking.get("includeThoughts") else "",
            text="",
            calls=[],
            images=[],
            finish="STOP",
            blocked=None,
            prompt_tokens=max(prompt, 1),
            cached=min(trig.cache, prompt),
            thought_tokens=THOUGHT_TOKENS if thinks else 0,
        )
        if "BLOCK" in trig.flags:
            answer.blocked = "SAFETY"
            answer.thought_tokens = 0
            answer.finish = None
            return answer
        if "SAFETY" in trig.flags:
            answer.finish = "SAFETY"
            return answer
        last = contents[-1]
        declared = self._validate_tools(body.get("tools"), body.get("toolConfig"))
        if last["role"] == "user" and any("functionResponse" in p for p in last["parts"]):
            results = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
            answer.text = "tool result: " + ", ".join(
                f"{r['name']}={orjson.dumps(r['response']).decode()}" for r in results
            )
        elif chosen := _called(body, declared, trig):
            signature = base64.b64encode(secrets.token_bytes(24)).decode() if thinks else None
            for k, name in enumerate(chosen):
                args = _example(name, declared[name]) if declared[name] else {}
                if trig.call_name is not None and trig.call_args is not None:
                    args = trig.call_args
                part: dict[str, Any] = {"functionCall": {"name": name, "args": args if isinstance(args, dict) else {}}}
                if model.startswith("gemini-3"):
                    part["functionCall"]["id"] = "fc_" + secrets.token_hex(6)
                if k == 0 and signature is not None:
                    part["thoughtSignature"] = signature  # only the first parallel call carries one (§3.5)
                    self.issued_signatures.add(signature)
                answer.calls.append(part)
        elif "IMAGE" in (config.get("responseModalities") or ()) and "image" in model:
            answer.text = "Here is your image."
            answer.images.append(PNG_1X1)
        elif config.get("responseMimeType") == "application/json":
            schema = config.get("responseJsonSchema")
            value = _example("value", schema) if schema else {"echo": user_text}
            answer.text = orjson.dumps(value).decode()
        elif trig.words is not None:
            answer.text = " ".join(f"word{i}" for i in range(1, trig.words + 1))
        else:
            inline = [p["inlineData"] for c in contents[-1:] for p in c["parts"] if "inlineData" in p]
            notes = "".join(f" [{d['mimeType']} {len(base64.b64decode(d['data']))} bytes]" for d in inline)
            answer.text = "echo: " + user_text + notes
        if "LIMIT" in trig.flags:
            answer.finish = "MAX_TOKENS"
        return answer

    def _usage(self, a: _Answer, candidates: int | None = None) -> dict[str, Any]:
        cand = _words(a.text) + 3 * len(a.calls) + 100 * len(a.images) if candidates is None else candidates
        usage: dict[str, Any] = {"promptTokenCount": a.prompt_tokens}
        if cand:
            usage["candidatesTokenCount"] = cand
        if a.thought_tokens:
            usage["thoughtsTokenCount"] = a.thought_tokens
        if a.cached:
            usage["cachedContentTokenCount"] = a.cached
        usage["totalTokenCount"] = a.prompt_tokens + cand + a.thought_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": a.prompt_tokens}]
        return usage

    def _response(
        self, model: str, a: _Answer, parts: list[dict[str, Any]], finish: str | None, usage: Any
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if a.blocked:
            out["promptFeedback"] = {"blockReason": a.blocked, "safetyRatings": []}
        else:
            candidate: dict[str, Any] = {"index": 0}
            if parts or finish:
                candidate["content"] = {"parts": parts or [{"text": ""}], "role": "model"}
            if finish:
                candidate["finishReason"] = finish
            out["candidates"] = [candidate]
        if usage is not None:
            out["usageMetadata"] = usage
        out["modelVersion"] = model
        out["responseId"] = secrets.token_urlsafe(12)
        return out

    def _parts(self, a: _Answer) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if a.thoughts:
            parts.append({"text": a.thoughts, "thought": True})
        if a.text:
            parts.append({"text": a.text})
        parts.extend(a.calls)
        parts.extend(
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(img).decode()}} for img in a.images
        )
        return parts

    def _count_tokens(self, model: str, body: Any) -> web.Response:
        """models.countTokens: ``contents`` or a whole ``generateContentRequest`` (which must name its model), not
        both; counted as generateContent counts the prompt."""
        if not isinstance(body, dict) or set(body) - {"contents", "generateContentRequest"}:
            unknown = sorted(set(body) - {"contents", "generateContentRequest"}) if isinstance(body, dict) else []
            raise _bad(
                f'Invalid JSON payload received. Unknown name "{unknown[0] if unknown else ""}": Cannot find field.'
            )
        if ("contents" in body) == ("generateContentRequest" in body):
            raise _bad("Exactly one of contents or generateContentRequest must be set.")
        request = body.get("generateContentRequest") or {"contents": body["contents"]}
        if "generateContentRequest" in body and request.get("model") != f"models/{model}":
            raise _bad("generateContentRequest.model is required and must name the model of the request.")
        inner = {k: v for k, v in request.items() if k != "model"}
        self._validate(model, inner)
        prompt = sum(
            _words(p.get("text", "")) + (10 if "inlineData" in p else 0) + (5 if "functionResponse" in p else 0)
            for c in [*inner["contents"], inner.get("systemInstruction") or {"parts": []}]
            for p in c["parts"]
        )
        return web.json_response({"totalTokens": max(prompt, 1), "promptTokensDetails": []})

    async def _generate(self, request: web.Request, model: str, body: Any, *, stream: bool) -> web.StreamResponse:
        self._validate(model, body)
        user_text = ""
        for content in reversed(body["contents"]):
            texts = [p["text"] for p in content["parts"] if "text" in p]
            if content["role"] == "user" and texts:
                user_text = " ".join(texts)
                break
        trig = _Triggers.parse(user_text)
        if trig.fail is not None:
            details = []
            if trig.fail == 429:
                details = [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
                ]
            raise FakeError(trig.fail, _MESSAGES.get(trig.fail, f"Scripted failure {trig.fail}."), details)
        if trig.slow_ms and not stream:
            await asyncio.sleep(trig.slow_ms / 1000)
        answer = self._answer(model, body, trig, user_text)
        if stream:
            return await self._stream(request, model, answer, trig)
        payload = orjson.dumps(self._response(model, answer, self._parts(answer), answer.finish, self._usage(answer)))
        if "CUT" in trig.flags:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            if request.transport is not None:
                request.transport.abort()
            return resp
        return web.Response(body=payload, content_type="application/json")

    async def _stream(self, request: web.Request, model: str, a: _Answer, trig: _Triggers) -> web.StreamResponse:
        sse = request.query.get("alt") == "sse"
        crlf = "LFONLY" not in trig.flags
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream" if sse else "application/json"}
        )
        await resp.prepare(request)
        events: list[dict[str, Any]] = []
        if a.blocked:
            events.append(
                self._response(
                    model, a, [], None, {"promptTokenCount": a.prompt_tokens, "totalTokenCount": a.prompt_tokens}
                )
            )
        else:
            if a.thoughts:
                events.append(
                    self._response(model, a, [{"text": a.thoughts, "thought": True}], None, self._usage(a, 0))
                )
            sent = 0
            for piece in _pieces(a.text):
                sent += _words(piece)
                events.append(self._response(model, a, [{"text": piece}], None, self._usage(a, sent)))
            if a.calls:
                events.append(self._response(model, a, list(a.calls), None, self._usage(a, sent + 3 * len(a.calls))))
            if a.images:
                image_parts = self._parts(_Answer("", "", [], a.images, None, None, 0, 0, 0))
                events.append(self._response(model, a, image_parts, None, self._usage(a)))
            if "USAGEONLY" in trig.flags:
                # The finish chunk carries an earlier running total; only the last chunk has the final one.
                events.append(self._response(model, a, [], a.finish, self._usage(a, max(sent - 1, 0))))
                last = {"usageMetadata": self._usage(a), "modelVersion": model, "responseId": "r"}
                events.append(last)
            elif "NOFINISH" not in trig.flags:
                events.append(self._response(model, a, [], a.finish, self._usage(a)))
        if not sse:
            # Without alt=sse the endpoint streams one JSON array, which an SSE parser silently ignores (§3.4).
            await resp.write(orjson.dumps(events))
            await resp.write_eof()
            return resp
        end = b"\r\n\r\n" if crlf else b"\n\n"
        for n, event in enumerate(events):
            if trig.slow_ms and n:
                await asyncio.sleep(trig.slow_ms / 1000)
            await resp.write(b"data: " + orjson.dumps(event) + end)
            if n == 1 and "CUT" in trig.flags:
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if n == 0 and "MIDERROR" in trig.flags:
                err = error_body(FakeError(500, _MESSAGES[500]))
                await resp.write(b"data: " + orjson.dumps(err) + end)
                await resp.write_eof()
                return resp
            if n == 0 and "RAWERROR" in trig.flags:
                err = error_body(FakeError(503, _MESSAGES[503]))
                await resp.write(orjson.dumps(err, option=orjson.OPT_INDENT_2).replace(b"\n", b"\r\n") + b"\r\n")
                await resp.write_eof()
                return resp
        await resp.write_eof()
        return resp

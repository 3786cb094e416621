"""Chat Completions -> Gemini ``generateContent`` requests and Gemini responses -> ``chat.completion`` bodies.

Pure functions (the signature store is an in-memory dict). Facts and section numbers are from providers.md:

- system/developer messages -> ``systemInstruction``; roles -> ``user``/``model``; consecutive same-role turns
  merged (§3.2, §11.19);
- images and files -> ``inlineData`` (data URIs split into ``mimeType`` + ``data``; http(s) URLs are fetched by
  the provider beforehand and handed in as ``fetched``) (§3.2, §11.21);
- ``tools`` -> ``functionDeclarations`` with full JSON Schema in ``parametersJsonSchema``; ``tool_choice`` ->
  ``functionCallingConfig`` (``required`` -> ANY, a named tool -> ANY + ``allowedFunctionNames``) (§3.2, §11.20);
- assistant ``tool_calls`` -> ``functionCall`` parts with ``args`` objects; tool results -> ``functionResponse``
  parts (``response`` must be an object) in one user turn right after the model turn that called them
  (§3.5, §11.11, §11.14); the thought signature of each call is re-attached from the store (§3.5, §11.15);
- ``reasoning_effort`` -> ``thinkingLevel`` for Gemini 3, ``thinkingBudget`` for 2.5 (§3.2).

Nothing else from the client's body is forwarded: Gemini rejects unknown fields.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gophergate.core.errors import InvalidRequest
from gophergate.core.usage import Usage, from_gemini
from gophergate.providers.gemini.signatures import CallMemory, SignatureStore

log = logging.getLogger(__name__)

# Google's documented sentinel for replayed function calls whose signature is unknown (history built elsewhere,
# or the store lost it: another worker, a restart, expiry). Real signatures are never replaced by it.
SKIP_SIGNATURE = "skip_thought_signature_validator"

CostFn = Callable[[Usage], "orjson.Fragment | None"]


def new_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "a").replace("_", "b")


def bare_model(model: str) -> str:
    return model.removeprefix("models/")


def model_path(model: str) -> str:
    """The path segment of a model: ids may be given as ``x`` or ``models/x``."""
    return model if model.startswith("models/") else "models/" + model


def is_gemini3(model: str) -> bool:
    return bare_model(model).lower().startswith("gemini-3")


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


# -- inline data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """An http(s) URL in the request that the provider must fetch and inline (``param`` names the part)."""

    url: str
    param: str


@dataclass(frozen=True, slots=True)
class InlineData:
    mime_type: str
    data: str  # base64


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def remote_files(body: Mapping[str, Any]) -> list[RemoteFile]:
    """Every http(s) image URL of the request, in order (duplicates included, each with its own part name)."""
    found: list[RemoteFile] = []
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = _image_url(part, f"messages[{i}].content[{j}]")
                if is_remote(url):
                    found.append(RemoteFile(url, f"messages[{i}].content[{j}].image_url.url"))
    return found


def _image_url(part: dict[str, Any], param: str) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"{param}.image_url.url", f"'{param}.image_url.url' must be a non-empty string.")
    return url


def parse_data_uri(uri: str, param: str) -> InlineData:
    header, sep, data = uri[5:].partition(",")
    fields = header.split(";")
    mime = fields[0].strip().lower()
    if not sep or "base64" not in fields[1:] or not mime or not data:
        raise _bad(param, f"'{param}' must be a base64 data URI (data:<mime type>;base64,<data>) or an http(s) URL.")
    return InlineData(mime, data)


# -- requests ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Turn:
    role: str
    parts: list[dict[str, Any]]
    # Function responses answering this model turn's calls: emitted as the user turn right after it.
    responses: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Call:
    turn: _Turn
    name: str
    memory: CallMemory | None


def to_gemini(
    body: Mapping[str, Any],
    model: str,
    store: SignatureStore | None,
    fetched: Mapping[str, InlineData] | None = None,
) -> dict[str, Any]:
    """The ``generateContent`` request body for a (validated) Chat Completions request."""
    fetched = fetched or {}
    messages = body.get("messages")
    system: list[dict[str, Any]] = []
    turns: list[_Turn] = []
    calls: dict[str, _Call] = {}
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}]", f"'messages[{i}]' must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), f"messages[{i}].content", only_text=True))
        elif role == "user":
            parts = _user_parts(message.get("content"), f"messages[{i}].content", fetched)
            if parts:
                turns.append(_Turn("user", parts))
        elif role == "assistant":
            turn = _Turn("model", _text_parts(message.get("content"), f"messages[{i}].content", only_text=False))
            _add_calls(turn, message.get("tool_calls"), f"messages[{i}].tool_calls", store, calls)
            if turn.parts:
                turns.append(turn)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            call = calls.get(call_id) if isinstance(call_id, str) else None
            if call is None:
                raise _bad(
                    f"messages[{i}].tool_call_id",
                    f"'messages[{i}].tool_call_id' ({call_id!r}) matches no tool call of an earlier assistant message.",
                )
            response: dict[str, Any] = {"name": call.name, "response": _tool_result(message.get("content"))}
            if call.memory is not None and call.memory.upstream_id:
                response["id"] = call.memory.upstream_id
            call.turn.responses.append({"functionResponse": response})
        elif role == "function":  # deprecated OpenAI function results: name given, no id
            name = message.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"messages[{i}].name", f"'messages[{i}].name' is required for a function message.")
            result = {"functionResponse": {"name": name, "response": _tool_result(message.get("content"))}}
            turns.append(_Turn("user", [result]))
        else:
            raise _bad(f"messages[{i}].role", f"'messages[{i}].role' {role!r} is not supported.")

    contents = _merge(turns, model)
    if not contents:
        raise _bad("messages", "'messages' must contain at least one user or assistant message with content.")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config and tools:  # a tool choice without tools constrains nothing
        out["toolConfig"] = tool_config
    config = generation_config(body, model)
    if config:
        out["generationConfig"] = config
    return out


def _merge(turns: list[_Turn], model: str) -> list[dict[str, Any]]:
    flat: list[tuple[str, list[dict[str, Any]]]] = []
    for turn in turns:
        flat.append((turn.role, turn.parts))
        if turn.responses:
            flat.append(("user", turn.responses))
    contents: list[dict[str, Any]] = []
    for role, parts in flat:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})
    if is_gemini3(model):
        for content in contents:
            if content["role"] != "model":
                continue
            first = next((p for p in content["parts"] if "functionCall" in p), None)
            if first is not None and "thoughtSignature" not in first:
                first["thoughtSignature"] = SKIP_SIGNATURE
    return contents


def _text_parts(content: Any, param: str, *, only_text: bool) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(param, f"'{param}' must be a string or an array of parts.")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part, dict) and isinstance(part.get("text"), str):
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "refusal" and not only_text and isinstance(part, dict) and isinstance(part.get("refusal"), str):
            parts.append({"text": part["refusal"]})
        else:
            raise _bad(f"{param}[{j}]", f"'{param}[{j}]' must be a text part here.")
    return parts


def _user_parts(content: Any, param: str, fetched: Mapping[str, InlineData]) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, param, only_text=True)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict):
            raise _bad(where, f"'{where}' must be an object.")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{where}.text", f"'{where}.text' must be a string.")
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            url = _image_url(part, where)
            if is_remote(url):
                found = fetched.get(url)
                if found is None:
                    raise _bad(f"{where}.image_url.url", f"'{where}.image_url.url' could not be fetched.")
            else:
                if not url.startswith("data:"):
                    raise _bad(f"{where}.image_url.url", f"'{where}.image_url.url' must be a data URI or http(s) URL.")
                found = parse_data_uri(url, f"{where}.image_url.url")
            parts.append({"inlineData": {"mimeType": found.mime_type, "data": found.data}})
        elif kind == "file":
            parts.append(_file_part(part.get("file"), f"{where}.file"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            fmt = audio.get("format") if isinstance(audio, dict) else None
            if not isinstance(data, str) or not data or fmt not in ("wav", "mp3"):
                raise _bad(f"{where}.input_audio", f"'{where}.input_audio' needs base64 'data' and format wav or mp3.")
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": data}})
        else:
            raise _bad(f"{where}.type", f"'{where}.type' {kind!r} is not supported by Gemini.")
    return parts


_EXTENSION_TYPES = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}


def _file_part(file: Any, param: str) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise _bad(param, f"'{param}' must be an object.")
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        if file.get("file_id"):
            raise _bad(f"{param}.file_id", f"'{param}.file_id' is not supported for Gemini; send 'file_data'.")
        raise _bad(f"{param}.file_data", f"'{param}.file_data' is required.")
    if data.startswith("data:"):
        found = parse_data_uri(data, f"{param}.file_data")
        return {"inlineData": {"mimeType": found.mime_type, "data": found.data}}
    filename = file.get("filename")
    ext = filename.rsplit(".", 1)[-1].lower() if isinstance(filename, str) and "." in filename else ""
    mime = _EXTENSION_TYPES.get(ext)
    if mime is None:
        raise _bad(f"{param}.file_data", f"'{param}.file_data' must be a data URI (data:<mime type>;base64,...).")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _add_calls(turn: _Turn, tool_calls: Any, param: str, store: SignatureStore | None, calls: dict[str, _Call]) -> None:
    if tool_calls is None:
        return
    if not isinstance(tool_calls, list):
        raise _bad(param, f"'{param}' must be an array.")
    for k, tool_call in enumerate(tool_calls):
        where = f"{param}[{k}]"
        fn = tool_call.get("function") if isinstance(tool_call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _bad(f"{where}.function.name", f"'{where}.function.name' is required.")
        args = _arguments(fn.get("arguments"), f"{where}.function.arguments")
        call_id = tool_call.get("id") if isinstance(tool_call, dict) else None
        memory = store.get(call_id) if store is not None and isinstance(call_id, str) else None
        function_call: dict[str, Any] = {"name": fn["name"], "args": args}
        if memory is not None and memory.upstream_id:
            function_call["id"] = memory.upstream_id
        part: dict[str, Any] = {"functionCall": function_call}
        if memory is not None and memory.signature:
            part["thoughtSignature"] = memory.signature
        turn.parts.append(part)
        if isinstance(call_id, str):
            calls[call_id] = _Call(turn, fn["name"], memory)


def _arguments(raw: Any, param: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise _bad(param, f"'{param}' must be a JSON string.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(param, f"'{param}' is not valid JSON: {exc.msg}.") from None
    if not isinstance(value, dict):
        raise _bad(param, f"'{param}' must encode a JSON object (Gemini function arguments are objects).")
    return value


def _tool_result(content: Any) -> dict[str, Any]:
    """Gemini's ``functionResponse.response`` must be an object (§3.5): objects pass, the rest is wrapped."""
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(content, str):
        stripped = content.strip()
        if stripped.startswith("{"):
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                return value
        return {"result": content}
    if isinstance(content, dict):
        return content
    return {"result": content}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not tools:
        return []
    if not isinstance(tools, list):
        raise _bad("tools", "'tools' must be an array.")
    declarations: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad(f"tools[{i}].type", f"'tools[{i}]': only function tools are supported by Gemini.")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"tools[{i}].function.name", f"'tools[{i}].function.name' is required.")
        declaration: dict[str, Any] = {"name": name}
        if isinstance(fn.get("description"), str):
            declaration["description"] = fn["description"]
        if fn.get("parameters") is not None:
            declaration["parametersJsonSchema"] = fn["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = _MODES.get(choice)
        if mode is None:
            raise _bad("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a named function.")
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice.function.name", "'tool_choice.function.name' is required.")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        tools = allowed.get("tools") if isinstance(allowed, dict) else None
        functions = [t.get("function") for t in tools or () if isinstance(t, dict)]
        names = [f["name"] for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]
        if not names:
            raise _bad("tool_choice.allowed_tools.tools", "'tool_choice.allowed_tools.tools' names no function.")
        # VALIDATED: calls limited to the allowed names, or a text answer (what OpenAI's "auto" allows).
        mode = "ANY" if isinstance(allowed, dict) and allowed.get("mode") == "required" else "VALIDATED"
        return {"functionCallingConfig": {"mode": mode, "allowedFunctionNames": names}}
    raise _bad("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a named function.")


# Gemini 3 takes a level (§3.2). OpenAI's "none" has no Gemini 3 equivalent (thinking cannot be turned off):
# the lowest level is used and no thoughts are asked for.
_LEVELS = {
    "none": "MINIMAL",
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "XHIGH",
    "max": "XHIGH",
}
# Gemini 2.5 takes a token budget; Pro cannot turn thinking off (minimum 128) and allows 32768, Flash 24576.
_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}


def _thinking(effort: Any, model: str) -> dict[str, Any]:
    if effort not in _LEVELS:
        raise _bad("reasoning_effort", f"'reasoning_effort' must be one of {', '.join(_LEVELS)}.")
    include = effort != "none"
    if is_gemini3(model):
        return {"thinkingLevel": _LEVELS[effort], "includeThoughts": include}
    pro = "pro" in bare_model(model).lower()
    if effort == "none":
        return {"thinkingBudget": 128 if pro else 0}
    budget = min(_BUDGETS[effort], 32768 if pro else 24576)
    return {"thinkingBudget": budget, "includeThoughts": True}


def generation_config(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),  # not an OpenAI field: what /v1/messages translates Anthropic's top_k to
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = body.get(source)
        if value is not None:
            config[target] = value
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    elif stop is not None:
        raise _bad("stop", "'stop' must be a string or an array of strings.")
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise _bad("response_format.json_schema.schema", "'response_format.json_schema.schema' is required.")
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = schema
        elif kind != "text":
            raise _bad("response_format.type", "'response_format.type' must be text, json_object or json_schema.")
    elif fmt is not None:
        raise _bad("response_format", "'response_format' must be an object.")
    effort = body.get("reasoning_effort")
    if effort is not None:
        config["thinkingConfig"] = _thinking(effort, model)
    return config


# -- responses --------------------------------------------------------------------------------------------------

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# No OpenAI equivalent; "stop" plus a log line (§9). MISSING_THOUGHT_SIGNATURE means a gateway bug.
_ANOMALIES = frozenset(
    {
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MISSING_THOUGHT_SIGNATURE",
        "MALFORMED_RESPONSE",
    }
)


def finish_reason(reason: str | None, called_tools: bool) -> str:
    """Gemini ``finishReason`` -> OpenAI ``finish_reason`` (§9). Gemini says STOP for function calls (§11.12)."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER:
        return "content_filter"
    if reason in _ANOMALIES:
        log.warning("gemini finished with %s", reason)
    return "tool_calls" if called_tools else "stop"


def usage_json(usage: Usage, cost: CostFn | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }
    if cost is not None:
        value = cost(usage)
        if value is not None:
            out["cost"] = value
    return out


def tool_call(part: dict[str, Any], store: SignatureStore | None) -> dict[str, Any] | None:
    """An OpenAI tool call for a ``functionCall`` part, with a fresh id; its signature is remembered."""
    fn = part.get("functionCall")
    if not isinstance(fn, dict):
        return None
    call_id = new_call_id()
    signature = part.get("thoughtSignature")
    upstream_id = fn.get("id")
    if store is not None:
        store.put(
            call_id,
            CallMemory(
                signature if isinstance(signature, str) else None,
                upstream_id if isinstance(upstream_id, str) else None,
            ),
        )
    args = fn.get("args")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": str(fn.get("name") or ""), "arguments": orjson.dumps(args or {}).decode()},
    }


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]
    usage: Usage | None
    finish_reason: str | None
    text: str  # what was produced, for an estimate when no usage arrived


def block_message(feedback: Any) -> str | None:
    """The refusal text of a prompt Gemini blocked (HTTP 200, no candidates, ``promptFeedback.blockReason``)."""
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not reason:
        return None
    return f"The prompt was blocked by Gemini (blockReason: {reason})."


def from_gemini_response(
    data: dict[str, Any],
    *,
    model: str,
    store: SignatureStore | None,
    cost: CostFn | None = None,
    created: int = 0,
) -> Completion | None:
    """The ``chat.completion`` body for a Gemini response; None when it has neither candidates nor a block."""
    candidates = data.get("candidates")
    choices: list[dict[str, Any]] = []
    texts: list[str] = []
    finish: str | None = None
    if isinstance(candidates, list) and candidates:
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                continue
            choice, produced = _choice(candidate, position, store)
            texts.extend(produced)
            finish = finish or choice["finish_reason"]
            choices.append(choice)
    else:
        refusal = block_message(data.get("promptFeedback"))
        if refusal is None:
            return None
        message = {"role": "assistant", "content": "", "refusal": refusal}
        choices.append({"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None})
        finish = "content_filter"
    metadata = data.get("usageMetadata")
    usage = from_gemini(metadata) if isinstance(metadata, dict) else None
    body: dict[str, Any] = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage_json(usage, cost)
    return Completion(body, usage, finish, "".join(texts))


def _choice(candidate: dict[str, Any], position: int, store: SignatureStore | None) -> tuple[dict[str, Any], list[str]]:
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    parts = candidate.get("content", {}).get("parts") if isinstance(candidate.get("content"), dict) else None
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            call = tool_call(part, store)
            if call is not None:
                calls.append(call)
        elif isinstance(part.get("text"), str):
            (reasoning if part.get("thought") is True else content).append(part["text"])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(content) if content or not calls else None,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    index = candidate.get("index")
    choice = {
        "index": index if isinstance(index, int) else position,
        "message": message,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
        "logprobs": None,
    }
    produced = reasoning + content + [c["function"]["name"] + c["function"]["arguments"] for c in calls]
    return choice, produced

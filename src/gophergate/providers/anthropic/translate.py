"""OpenAI Chat Completions <-> Anthropic Messages, request and non-streaming response; pure functions.

Request rules (providers.md section in brackets):

- ``system`` / ``developer`` messages -> the top-level ``system`` string [§4.2, §11.19];
- consecutive same-role turns are merged (the API rejects them); ``tool`` messages become ``tool_result``
  blocks of a user turn, placed first in that turn [§4.5, §11.13]; assistant ``tool_calls`` become
  ``tool_use`` blocks (``arguments`` parsed; invalid JSON is a 400 naming the field) [§11.11];
- thinking blocks of earlier tool-call turns are re-inserted from the thinking store [§4.5, §11.15];
- images: data URI -> base64 source, http(s) URL -> url source; ``file`` parts with a data URI -> document
  blocks (PDF, or plain text) [§4.2, §11.21];
- ``max_tokens`` is always sent: the client's ``max_completion_tokens`` / ``max_tokens``, else the model's
  output limit from the registry, else ``DEFAULT_MAX_TOKENS`` [§4.2, §11.18];
- ``stop`` -> ``stop_sequences``; ``user`` / ``safety_identifier`` -> ``metadata.user_id``; ``tools`` ->
  ``input_schema``; ``tool_choice`` required -> any, a named function -> tool, ``parallel_tool_calls: false``
  -> ``disable_parallel_tool_use`` [§4.2, §11.20];
- ``reasoning_effort`` -> ``thinking`` with ``budget_tokens`` on models with manual thinking budgets, or
  adaptive thinking with ``output_config.effort`` on newer models [§4.2];
- sampling: ``temperature`` / ``top_p`` / ``top_k`` are dropped for API version 2026-10-21 and later (400
  even at defaults) [§4.1] and whenever thinking is on; when both ``temperature`` and ``top_p`` are given,
  only ``temperature`` is kept (Sonnet/Haiku 4.5, Opus 4.1 and later reject the pair: "`temperature` and
  `top_p` cannot both be specified for this model", reported in BerriAI/litellm#15097 and others) [3P];
- ``response_format`` json_schema -> ``output_config.format`` (structured outputs) [§4.2]; json_object has no
  Anthropic equivalent and becomes a system instruction;
- ``n`` > 1 is a 400 (one answer per request). OpenAI-only fields (penalties, seed, logprobs, logit_bias,
  store, service_tier, ...) are dropped: the Messages API rejects unknown top-level fields.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gophergate.core.errors import InvalidRequest, unsupported_value
from gophergate.core.usage import Usage, from_anthropic

DEFAULT_MAX_TOKENS = 4096
DEFAULT_API_VERSION = "2023-06-01"
# From this API version on, temperature/top_p/top_k are rejected with 400 even at default values (§4.1).
SAMPLING_REMOVED_VERSION = "2026-10-21"
UNKNOWN_MODEL_OUTPUT_CAP = 32_000
MIN_THINKING_BUDGET = 1024  # budget_tokens >= 1024 and < max_tokens (§4.2)

# reasoning_effort -> budget_tokens for models with manual thinking budgets.
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
# reasoning_effort -> output_config.effort (low|medium|high|xhigh|max, §4.2) for adaptive-thinking models.
ADAPTIVE_EFFORTS: dict[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
_EFFORT_VALUES = ("none", *THINKING_BUDGETS)

# Models without extended thinking, and models that take a manual budget (thinking.type "enabled"). Every
# other claude model is treated as current: adaptive thinking steered by output_config.effort (§4.2).
_NO_THINKING = ("claude-3-5", "claude-3-opus", "claude-3-sonnet", "claude-3-haiku", "claude-2", "claude-instant")
_BUDGET_THINKING = (
    "claude-3-7",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2",
    "claude-opus-4-0",
    "claude-opus-4-2",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-5",
)

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URI = re.compile(r"data:([^;,]*)((?:;[^;,]*)*?);base64,(.*)", re.DOTALL)

# Looks up the thinking blocks stored for a tool-call id (the provider passes ThinkingStore.get).
ThinkingLookup = Callable[[str], tuple[dict[str, Any], ...] | None]


def thinking_style(model: str) -> str:
    """``none``, ``budget`` or ``adaptive``: how (and whether) the model takes a thinking request."""
    base = model.rsplit("/", 1)[-1].lower()
    if base.startswith(_NO_THINKING):
        return "none"
    if base.startswith(_BUDGET_THINKING) or base in ("claude-sonnet-4", "claude-opus-4"):
        return "budget"
    return "adaptive"


def _bad(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


# -- requests -------------------------------------------------------------------------------------------------


def to_anthropic(
    body: dict[str, Any],
    model: str,
    *,
    stream: bool,
    max_output_tokens: int | None = None,
    api_version: str = DEFAULT_API_VERSION,
    lookup: ThinkingLookup | None = None,
) -> dict[str, Any]:
    """The Messages API request for a Chat Completions body (``body`` is not modified)."""
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise unsupported_value(
            "n", "'n' greater than 1 is not supported by Anthropic models; send one request per answer."
        )

    system, turns = _convert_messages(body.get("messages"), lookup)
    out: dict[str, Any] = {"model": model}

    client_max = _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens"))
    max_tokens = client_max or max_output_tokens or DEFAULT_MAX_TOKENS
    out["max_tokens"] = max_tokens

    output_config: dict[str, Any] = {}
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise _bad("response_format.json_schema.schema", "'response_format.json_schema.schema' is required.")
            output_config["format"] = {"type": "json_schema", "schema": schema}
        elif kind == "json_object":
            system.append(JSON_OBJECT_INSTRUCTION)
        elif kind not in (None, "text"):
            raise _bad("response_format.type", "'response_format.type' must be text, json_object or json_schema.")

    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = turns

    tools, tool_choice = _convert_tools(body)
    if tools:
        out["tools"] = tools
        if tool_choice is not None:
            out["tool_choice"] = tool_choice

    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    sequences = [s for s in sequences if isinstance(s, str) and s.strip()]
    if sequences:
        out["stop_sequences"] = sequences

    thinking_on = _apply_reasoning(body, model, out, output_config, client_max, max_output_tokens)
    if output_config:
        out["output_config"] = output_config

    if api_version < SAMPLING_REMOVED_VERSION and not thinking_on:
        temperature = _number(body.get("temperature"))
        top_p = _number(body.get("top_p"))
        top_k = _positive_int(body.get("top_k"))
        if temperature is not None:
            # Anthropic's range is 0..1, OpenAI's 0..2: clamp rather than fail a request that was valid.
            out["temperature"] = min(temperature, 1.0)
        elif top_p is not None:
            out["top_p"] = top_p
        if top_k is not None:
            out["top_k"] = top_k

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


def _apply_reasoning(
    body: dict[str, Any],
    model: str,
    out: dict[str, Any],
    output_config: dict[str, Any],
    client_max: int | None,
    max_output_tokens: int | None,
) -> bool:
    """Set ``thinking`` (and ``output_config.effort``) from ``reasoning_effort``; True when thinking is on."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return False
    if effort not in _EFFORT_VALUES:
        raise _bad("reasoning_effort", f"'reasoning_effort' must be one of {', '.join(_EFFORT_VALUES)}.")
    style = thinking_style(model)
    if effort == "none" or style == "none":
        return False
    choice = out.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        # "Thinking may not be enabled when tool_choice forces tool use" (Anthropic's extended-thinking docs,
        # feature compatibility; reported in langchain-ai/langchain#35544 and others) [3P]; the forced tool wins.
        return False
    if not _tool_loop_has_thinking(out["messages"]):
        # A tool loop whose assistant turn lost its thinking block (e.g. the store expired) would be a 400
        # with thinking on (§4.5); providers.md's fallback is to turn thinking off for that request.
        return False
    if style == "adaptive":
        out["thinking"] = {"type": "adaptive", "display": "summarized"}
        output_config["effort"] = ADAPTIVE_EFFORTS[effort]
        return True
    budget = THINKING_BUDGETS[effort]
    if client_max is None:
        wanted = max(out["max_tokens"], budget + DEFAULT_MAX_TOKENS)
        # Without the registry's limit for the model, stay within the smallest output limit of the models that
        # take a budget (Claude Opus 4 / 4.1: 32,000), or the API rejects max_tokens.
        out["max_tokens"] = min(wanted, max_output_tokens or UNKNOWN_MODEL_OUTPUT_CAP)
    budget = min(budget, out["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        return False  # the client's max_tokens leaves no room for the minimum budget
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return True


def _tool_loop_has_thinking(turns: list[dict[str, Any]]) -> bool:
    """False when the request ends in tool results answering an assistant turn without a thinking block."""
    if len(turns) < 2 or turns[-1]["role"] != "user":
        return True
    content = turns[-1]["content"]
    if not (content and isinstance(content, list) and content[0].get("type") == "tool_result"):
        return True
    previous = turns[-2]["content"]
    return bool(previous) and isinstance(previous, list) and previous[0]["type"] in ("thinking", "redacted_thinking")


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _convert_messages(messages: Any, lookup: ThinkingLookup | None) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}]", f"'messages[{i}]' must be an object.")
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"), where)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
            turn_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, where, lookup)
            turn_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message, where)]
            turn_role = "user"
        else:
            raise unsupported_value(
                f"{where}.role", f"Role '{role}' is not supported by Anthropic models; use tools and tool messages."
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)  # consecutive same-role turns are rejected: merge them
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:
        # tool_result blocks first in a user turn, thinking blocks first in an assistant turn (§4.5).
        first = "tool_result" if turn["role"] == "user" else "thinking"
        content = turn["content"]
        if len(content) > 1:
            content.sort(key=lambda b: 0 if b["type"] in (first, "redacted_thinking") else 1)
    return system, turns


def _plain_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _bad(f"{where}.content[{j}]", f"'{where}.content[{j}]' must be a text part.")
        texts.append(part["text"])
    return "\n".join(t for t in texts if t)


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        block = _content_part(part, f"{where}.content[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _content_part(part: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise _bad(where, f"'{where}' must be an object.")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text", f"'{where}.text' must be a string.")
        return _text_block(text) if text else None  # empty text blocks are rejected upstream
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise _bad(f"{where}.image_url.url", f"'{where}.image_url.url' must be a string.")
        return {"type": "image", "source": _image_source(url, f"{where}.image_url.url")}
    if kind == "file":
        return _document(part.get("file"), f"{where}.file")
    if kind == "input_audio":
        raise unsupported_value(where, "Audio input is not supported by Anthropic models.")
    raise _bad(f"{where}.type", f"Unsupported content part type {kind!r} in '{where}'.")


def _image_source(url: str, where: str) -> dict[str, Any]:
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    match = _DATA_URI.fullmatch(url)
    if match is None:
        raise _bad(where, f"'{where}' must be an http(s) URL or a base64 data URI (data:image/png;base64,...).")
    media_type = match.group(1).lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    if media_type not in _IMAGE_TYPES:
        raise unsupported_value(
            where, f"Image type {media_type or 'unknown'!r} is not supported; use jpeg, png, gif or webp."
        )
    return {"type": "base64", "media_type": media_type, "data": match.group(3)}


def _document(file: Any, where: str) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise _bad(where, f"'{where}' must be an object.")
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        if file.get("file_id") is not None:
            raise unsupported_value(
                f"{where}.file_id", "Uploaded file ids are not supported; send 'file_data' instead."
            )
        raise _bad(f"{where}.file_data", f"'{where}.file_data' is required.")
    match = _DATA_URI.fullmatch(data)
    if match is None:
        if data.startswith("data:"):
            raise _bad(f"{where}.file_data", f"'{where}.file_data' must be a base64 data URI.")
        media_type, payload = "application/pdf", data  # bare base64, as some clients send it
    else:
        media_type, payload = match.group(1).lower(), match.group(3)
    if media_type == "application/pdf":
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": payload},
        }
    elif media_type == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _bad(f"{where}.file_data", f"'{where}.file_data' is not valid base64 UTF-8 text.") from None
        block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    else:
        raise unsupported_value(
            f"{where}.file_data", f"File type {media_type!r} is not supported; use application/pdf."
        )
    filename = file.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _assistant_blocks(message: dict[str, Any], where: str, lookup: ThinkingLookup | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append(_text_block(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise _bad(f"{where}.content[{j}]", f"'{where}.content[{j}]' must be an object.")
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if part.get("type") not in ("text", "refusal") or not isinstance(text, str):
                raise _bad(f"{where}.content[{j}]", f"'{where}.content[{j}]' must be a text or refusal part.")
            if text:
                blocks.append(_text_block(text))
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls", f"'{where}.tool_calls' must be an array.")
    thinking: tuple[dict[str, Any], ...] | None = None
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
        if thinking is None and lookup is not None:
            thinking = lookup(call["id"])
    if thinking:
        blocks[:0] = [dict(b) for b in thinking]
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise _bad(where, f"'{where}' must be an object.")
    if call.get("type", "function") != "function":
        raise unsupported_value(f"{where}.type", "Only function tool calls are supported by Anthropic models.")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.id", f"'{where}.id' must be a non-empty string.")
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad(f"{where}.function.name", f"'{where}.function.name' must be a string.")
    arguments = fn.get("arguments")
    if arguments is None or arguments == "":
        parsed: Any = {}
    elif isinstance(arguments, str):
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise _bad(f"{where}.function.arguments", f"'{where}.function.arguments' is not valid JSON.") from None
    else:
        raise _bad(f"{where}.function.arguments", f"'{where}.function.arguments' must be a JSON string.")
    if not isinstance(parsed, dict):
        raise _bad(f"{where}.function.arguments", f"'{where}.function.arguments' must encode a JSON object.")
    return {"type": "tool_use", "id": call_id, "name": fn["name"], "input": parsed}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif isinstance(content, list):
        parts = [b for j, p in enumerate(content) if (b := _content_part(p, f"{where}.content[{j}]")) is not None]
        if parts:
            block["content"] = parts
    return block


def _convert_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    raw_tools = body.get("tools")
    if not raw_tools:
        return [], None
    tools: list[dict[str, Any]] = []
    for j, tool in enumerate(raw_tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise unsupported_value(f"{where}.type", "Only function tools are supported by Anthropic models.")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _bad(f"{where}.function.name", f"'{where}.function.name' must be a non-empty string.")
        schema = fn.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise _bad(f"{where}.function.parameters", f"'{where}.function.parameters' must be a JSON Schema object.")
        out: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str) and fn["description"]:
            out["description"] = fn["description"]
        out["input_schema"] = schema
        if fn.get("strict") is True:
            out["strict"] = True
        tools.append(out)

    choice: dict[str, Any] | None = None
    raw_choice = body.get("tool_choice")
    if raw_choice in ("auto", "none"):
        choice = {"type": raw_choice}
    elif raw_choice == "required":
        choice = {"type": "any"}
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "function":
        fn = raw_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice.function.name", "'tool_choice.function.name' must be a non-empty string.")
        choice = {"type": "tool", "name": name}
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "allowed_tools":
        allowed = raw_choice.get("allowed_tools")
        allowed = allowed if isinstance(allowed, dict) else {}
        names = {
            t["function"]["name"]
            for t in allowed.get("tools") or ()
            if isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
        }
        tools = [t for t in tools if t["name"] in names] if names else tools
        choice = {"type": "any" if allowed.get("mode") == "required" else "auto"}
    elif raw_choice is not None:
        raise _bad("tool_choice", "'tool_choice' must be none, auto, required or a function choice.")
    if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return tools, choice


# -- responses ------------------------------------------------------------------------------------------------

# Anthropic stop_reason -> OpenAI finish_reason (providers.md §9). pause_turn only happens with server tools,
# which the gateway never sends: it ends the turn like end_turn.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls and stop_reason in (None, "tool_use", "end_turn"):
        return "tool_calls"
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_object(usage: Usage) -> dict[str, Any]:
    """OpenAI ``usage`` for a canonical usage (prompt includes cache reads and writes)."""
    return {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read, "cache_write_tokens": usage.cache_write},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


@dataclass(slots=True)
class Completion:
    """A translated non-streaming answer and what metering and the thinking store need from it."""

    body: dict[str, Any]
    usage: Usage | None
    finish_reason: str
    text: str
    tool_call_ids: list[str] = field(default_factory=list)
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)


def from_anthropic_message(data: dict[str, Any], *, model: str, created: int | None = None) -> Completion:
    """The OpenAI ``chat.completion`` body for a Messages API response."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking_blocks: list[dict[str, Any]] = []
    for block in data.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),  # relayed byte for byte
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason(data.get("stop_reason"), bool(calls))
    usage_raw = data.get("usage")
    usage = from_anthropic(usage_raw) if isinstance(usage_raw, dict) else None
    body: dict[str, Any] = {
        "id": data.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": data.get("model") or model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage_object(usage)
    return Completion(
        body=body,
        usage=usage,
        finish_reason=finish,
        text="".join(reasoning) + "".join(texts),
        tool_call_ids=[c["id"] for c in calls if isinstance(c["id"], str)],
        thinking_blocks=thinking_blocks if calls else [],
    )

"""Anthropic Messages in, OpenAI chat behind: the inbound ``/v1/messages`` translators; pure, no I/O.

When a model's backend does not speak Messages, the client's request becomes the gateway's call form (an OpenAI
Chat Completions body, ``messages_to_chat``), and the chat answer goes back as a Message (``chat_to_message``) or
as a Messages event stream (``MessagesStream``). Wire formats: providers.md §4 (Messages) and §2 (chat).

Decisions:

- ``tool_result`` blocks become ``tool`` messages placed before the rest of their user turn: chat wants them
  right after the assistant's ``tool_calls``. A tool message carries text only, so images of a result follow in
  a user message; ``is_error`` becomes an "Error: " prefix (chat has no error flag).
- ``thinking`` in history -> ``reasoning_content`` (the provider decides whether to send it upstream);
  signatures and ``redacted_thinking`` mean something to Anthropic only and are dropped.
- Server tools (web search, bash, computer use, ...) run on Anthropic's side: a 400, never silently dropped.
- ``output_config.format`` (structured output) -> ``response_format`` json_schema: dropping it would return prose
  to a client that parses JSON.
- Answers: reasoning -> a ``thinking`` block without a signature (there is none to give); tool calls with
  ``finish_reason`` stop -> ``stop_reason`` tool_use, as agent loops run tools only on tool_use.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from gophergate.core.errors import InvalidRequest, invalid_value, unsupported_value
from gophergate.core.usage import Usage, from_openai
from gophergate.wire.sse import EventTooLarge, SSEDecoder

# thinking.budget_tokens -> reasoning_effort: the upper bound of each effort's budget.
_BUDGET_EFFORTS = ((2048, "low"), (8192, "medium"))
# output_config.effort (low|medium|high|xhigh|max, §4.2) -> reasoning_effort that every chat backend knows.
_ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


# -- requests -------------------------------------------------------------------------------------------------


def check_messages(data: dict[str, Any]) -> tuple[str, bool]:
    """``(model, stream)`` of a Messages request checked enough to route it; InvalidRequest names the field."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_value("model", "'model' is required and must be a non-empty string.")
    if _positive_int(data.get("max_tokens")) is None:
        raise invalid_value("max_tokens", "'max_tokens' is required and must be a positive integer.")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_value("messages", "'messages' is required and must be a non-empty array.")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid_value(where, f"'{where}' must be an object.")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid_value(f"{where}.role", f"'{where}.role' must be user, assistant or system.")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise invalid_value(
                f"{where}.content", f"'{where}.content' must be a string or an array of content blocks."
            )
        if role == "system":  # text blocks only, as in the top-level `system`
            _system_text(content, f"{where}.content")
            continue
        for j, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise invalid_value(
                    f"{where}.content[{j}]", f"'{where}.content[{j}]' must be a block with a string 'type'."
                )
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_value("stream", "'stream' must be a boolean.")
    _system_text(data.get("system"))
    return model, bool(stream)


def messages_to_chat(data: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request body (the gateway's call form) for a Messages request (``data`` is not modified)."""
    model, stream = check_messages(data)
    chat: list[dict[str, Any]] = []
    system = _system_text(data.get("system"))
    if system:
        chat.append({"role": "system", "content": system})
    for i, message in enumerate(data["messages"]):
        if message["role"] == "user":
            chat.extend(_user_turn(message["content"], f"messages[{i}]"))
        elif message["role"] == "system":
            # A mid-conversation system turn (Claude Code sends them; beta mid-conversation-system-2026-04-07):
            # chat takes a system message anywhere, and the Gemini translator folds it into systemInstruction.
            chat.append({"role": "system", "content": _system_text(message["content"], f"messages[{i}].content")})
        else:
            chat.append(_assistant_turn(message["content"], f"messages[{i}]"))

    out: dict[str, Any] = {"model": model, "messages": chat, "max_tokens": data["max_tokens"]}
    tools = _tools(data.get("tools"))
    choice, serial = _tool_choice(data.get("tool_choice"))
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
        if serial:
            out["parallel_tool_calls"] = False
    stop = data.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise invalid_value("stop_sequences", "'stop_sequences' must be an array of strings.")
        if stop:
            out["stop"] = stop
    for name in ("temperature", "top_p", "top_k"):
        if data.get(name) is not None:
            out[name] = data[name]
    output_config = data.get("output_config")
    if output_config is not None and not isinstance(output_config, dict):
        raise invalid_value("output_config", "'output_config' must be an object.")
    output_config = output_config or {}
    effort = _reasoning_effort(data.get("thinking"), output_config.get("effort"))
    if effort is not None:
        out["reasoning_effort"] = effort
    response_format = _response_format(output_config.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        out["user"] = metadata["user_id"]
    if data.get("stream") is not None:
        out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


def _system_text(system: Any, where: str = "system") -> str | None:
    if system is None or isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise invalid_value(where, f"'{where}' must be a string or an array of text blocks.")
    texts: list[str] = []
    for k, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid_value(f"{where}[{k}]", f"'{where}[{k}]' must be a text block.")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid_value(f"{at}.text", f"'{at}.text' must be a string.")
    return text


def _not_here(at: str, kind: str, role: str) -> InvalidRequest:
    return invalid_value(f"{at}.type", f"Content block type {kind!r} is not supported in {role} turns ('{at}.type').")


def _user_turn(content: str | list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """The chat messages of one user turn: its tool results first, then the images of those results, then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    result_media: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "tool_result":
            message, media = _tool_result(block, at)
            results.append(message)
            result_media.extend(media)
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            parts.append(_document(block, at))
        else:
            raise _not_here(at, kind, "user")
    out = results
    if result_media:
        out.append({"role": "user", "content": result_media})
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _source(block: dict[str, Any], at: str) -> tuple[Any, dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid_value(f"{at}.source", f"'{at}.source' must be an object.")
    return source.get("type"), source


def _base64(source: dict[str, Any], at: str) -> tuple[str, str]:
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or not media_type:
        raise invalid_value(f"{at}.source.media_type", f"'{at}.source.media_type' must be a non-empty string.")
    if not isinstance(data, str) or not data:
        raise invalid_value(f"{at}.source.data", f"'{at}.source.data' must be a non-empty base64 string.")
    return media_type.lower(), data


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind, source = _source(block, at)
    if kind == "base64":
        media_type, data = _base64(source, at)
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        given = source.get("url")
        if not isinstance(given, str) or not given:
            raise invalid_value(f"{at}.source.url", f"'{at}.source.url' must be a non-empty string.")
        url = given
    else:
        raise unsupported_value(f"{at}.source.type", f"Image source type {kind!r} is not supported; use base64 or url.")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind, source = _source(block, at)
    if kind == "base64":
        media_type, data = _base64(source, at)
        if media_type != "application/pdf":
            raise unsupported_value(f"{at}.source.media_type", "Base64 documents must be application/pdf.")
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}}
    if kind == "text":
        text = source.get("data")
        if not isinstance(text, str):
            raise invalid_value(f"{at}.source.data", f"'{at}.source.data' must be a string.")
        return {"type": "text", "text": text}
    if kind == "url":
        raise unsupported_value(
            f"{at}.source.type",
            "Documents by URL are only available when the model is served by Anthropic; send the PDF as base64.",
        )
    raise unsupported_value(f"{at}.source.type", f"Document source type {kind!r} is not supported; use base64 or text.")


def _tool_result(block: dict[str, Any], at: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The tool message for a ``tool_result`` block, and the image/PDF parts a tool message cannot carry."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_value(f"{at}.tool_use_id", f"'{at}.tool_use_id' must be a non-empty string.")
    content = block.get("content")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            inner = f"{at}.content[{k}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_text(part, inner))
            elif kind == "image":
                media.append(_image(part, inner))
            elif kind == "document":
                converted = _document(part, inner)
                if converted["type"] == "text":
                    texts.append(converted["text"])
                else:
                    media.append(converted)
            else:
                raise invalid_value(f"{inner}.type", f"'{inner}' must be a text, image or document block.")
    elif content is not None:
        raise invalid_value(f"{at}.content", f"'{at}.content' must be a string or an array of content blocks.")
    text = "\n".join(texts)
    if block.get("is_error") is True and not text.startswith("Error:"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, media


def _assistant_turn(content: str | list[dict[str, Any]], where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind == "thinking":
            thinking = block.get("thinking")
            if not isinstance(thinking, str):
                raise invalid_value(f"{at}.thinking", f"'{at}.thinking' must be a string.")
            if thinking:
                thoughts.append(thinking)
        elif kind != "redacted_thinking":
            raise _not_here(at, kind, "assistant")
    # chat wants content or tool_calls on an assistant message: None only beside tool calls.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None if calls else ""}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "\n".join(thoughts)
    return message


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_value(f"{at}.id", f"'{at}.id' must be a non-empty string.")
    if not isinstance(name, str) or not name:
        raise invalid_value(f"{at}.name", f"'{at}.name' must be a non-empty string.")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise invalid_value(f"{at}.input", f"'{at}.input' must be an object.")
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": call_id, "type": "function", "function": function}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid_value("tools", "'tools' must be an array.")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_value(where, f"'{where}' must be an object.")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise unsupported_value(
                f"{where}.type",
                f"Tool type {kind!r} is only available when the model is served by Anthropic; "
                "define a custom tool with an 'input_schema' instead.",
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise invalid_value(f"{where}.name", f"'{where}.name' must be a non-empty string.")
        if not isinstance(schema, dict):
            raise invalid_value(f"{where}.input_schema", f"'{where}.input_schema' must be a JSON Schema object.")
        function: dict[str, Any] = {"name": name}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> tuple[str | dict[str, Any] | None, bool]:
    """The chat ``tool_choice`` and whether parallel tool calls are off."""
    if choice is None:
        return None, False
    if not isinstance(choice, dict):
        raise invalid_value("tool_choice", "'tool_choice' must be an object with a 'type'.")
    kind = choice.get("type")
    value: str | dict[str, Any]
    if kind in ("auto", "none"):
        value = kind
    elif kind == "any":
        value = "required"
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_value("tool_choice.name", "'tool_choice.name' must be a non-empty string.")
        value = {"type": "function", "function": {"name": name}}
    else:
        raise invalid_value("tool_choice.type", "'tool_choice.type' must be auto, any, tool or none.")
    return value, choice.get("disable_parallel_tool_use") is True


def _reasoning_effort(thinking: Any, effort: Any) -> str | None:
    if effort is not None and effort not in _ADAPTIVE_EFFORTS:
        raise invalid_value(
            "output_config.effort", f"'output_config.effort' must be one of {', '.join(_ADAPTIVE_EFFORTS)}."
        )
    if thinking is None:
        return None
    if not isinstance(thinking, dict):
        raise invalid_value("thinking", "'thinking' must be an object with a 'type'.")
    kind = thinking.get("type")
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return _ADAPTIVE_EFFORTS[effort] if effort is not None else "medium"
    if kind == "enabled":
        budget = _positive_int(thinking.get("budget_tokens"))
        if budget is None:
            raise invalid_value("thinking.budget_tokens", "'thinking.budget_tokens' must be a positive integer.")
        return next((name for limit, name in _BUDGET_EFFORTS if budget <= limit), "high")
    raise invalid_value("thinking.type", "'thinking.type' must be enabled, adaptive or disabled.")


def _response_format(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise invalid_value("output_config.format.type", "'output_config.format.type' must be json_schema.")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise invalid_value(
            "output_config.format.schema", "'output_config.format.schema' must be a JSON Schema object."
        )
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# -- answers --------------------------------------------------------------------------------------------------


def usage_block(usage: Usage) -> dict[str, int]:
    """Anthropic usage for a canonical one: ``input_tokens`` excludes cache reads and writes (§4.3, §10)."""
    return {
        "input_tokens": max(usage.prompt - usage.cache_read - usage.cache_write, 0),
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.completion,
    }


def _stop_reason(finish: Any, has_tool_calls: bool) -> str:
    if has_tool_calls and finish in (None, "stop"):
        return "tool_use"  # some OpenAI-compatible backends end a tool-call turn with "stop"
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def _reasoning(fields: dict[str, Any]) -> str:
    """Reasoning text: ``reasoning_content`` (DeepSeek, Kimi, the gateway's providers) or ``reasoning`` (others);
    some backends send both with the same text, so only the first is read."""
    for name in ("reasoning_content", "reasoning"):
        value = fields.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _answer_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(content, str) and content:
        return content
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def _tool_input(arguments: Any) -> dict[str, Any]:
    """Parsed tool arguments; arguments that are not a JSON object are kept whole rather than lost."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"arguments": arguments}


def chat_to_message(completion: dict[str, Any], model: str, message_id: str) -> dict[str, Any]:
    """The Anthropic Message for an OpenAI ``chat.completion`` body; ``model`` is the name the client asked for."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    if reasoning := _reasoning(message):
        content.append({"type": "thinking", "thinking": reasoning})
    if text := _answer_text(message):
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, name = call.get("id"), function.get("name")
        content.append(
            {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else _tool_id(),
                "name": name if isinstance(name, str) else "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    raw_usage = completion.get("usage")
    usage = from_openai(raw_usage) if isinstance(raw_usage, dict) else None
    has_calls = any(block["type"] == "tool_use" for block in content)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(choice.get("finish_reason"), has_calls),
        "stop_sequence": None,
        "usage": usage_block(usage or Usage()),
    }


# -- streams --------------------------------------------------------------------------------------------------


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


def error_event(error_type: str, message: str) -> bytes:
    """A Messages ``error`` event: after HTTP 200 this is how a stream fails (§4.4); the SDKs raise on it."""
    return _event("error", {"error": {"type": error_type, "message": message}})


def ping_event() -> bytes:
    """A keep-alive the SDKs skip; spelled as Anthropic sends it."""
    return b'event: ping\ndata: {"type": "ping"}\n\n'


class MessagesStream:
    """OpenAI chat SSE bytes in -> Anthropic Messages SSE bytes out; ``feed`` takes any split of the stream.

    Blocks are numbered in order of appearance and only the last one is ever open: a block of another kind (or
    another tool call) closes it. The end (``content_block_stop``, ``message_delta``, ``message_stop``) waits
    after the finish reason for the usage chunk that may follow it, and is sent once.
    """

    __slots__ = (
        "_decoder",
        "_done",
        "_finish",
        "_id",
        "_model",
        "_next",
        "_open",
        "_started",
        "_tools",
        "_usage",
        "error",
    )

    def __init__(self, model: str, message_id: str) -> None:
        self._model = model
        self._id = message_id
        self._decoder = SSEDecoder()
        self._started = False
        self._done = False  # message_stop or an error was sent: nothing more is read
        self._next = 0  # index of the next block
        self._open: str | int | None = None  # the open block: "thinking", "text" or a chat tool-call index
        self._tools: dict[int, int] = {}  # chat tool-call index -> block index
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.error: str | None = None

    @property
    def started(self) -> bool:
        """``message_start`` has been sent."""
        return self._started

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        try:
            events = self._decoder.feed(data)
        except EventTooLarge as exc:
            self._fail(str(exc), out)
            return b"".join(out)
        for event in events:
            self._chunk(event.data, out)
            if self._done:
                break
        return b"".join(out)

    def end(self) -> bytes:
        """The upstream finished: a last event without its blank line still counts; the message ends if a finish
        reason came (without one the provider has already sent an error event)."""
        if self._done:
            return b""
        out: list[bytes] = []
        for event in self._decoder.flush():
            self._chunk(event.data, out)
            if self._done:
                break
        if not self._done and self._finish is not None:
            self._complete(out)
        self._done = True
        return b"".join(out)

    def _fail(self, message: str, out: list[bytes]) -> None:
        self.error = message
        out.append(error_event("api_error", message))
        self._done = True

    def _chunk(self, payload: bytes, out: list[bytes]) -> None:
        if payload == b"[DONE]":
            if self._finish is not None:
                self._complete(out)
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail("The upstream sent a malformed stream event.", out)
            return
        if not isinstance(chunk, dict):
            return
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            self._fail(message if isinstance(message, str) and message else "The upstream reported an error.", out)
            return
        finished = self._finish is not None
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = from_openai(usage) or self._usage
        if not self._started:
            self._started = True
            message = {
                "id": self._id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage_block(self._usage or Usage()),
            }
            out.append(_event("message_start", {"message": message}))
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish
        if finished and isinstance(usage, dict):
            self._complete(out)  # the usage chunk after the finish reason (stream_options.include_usage)

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        if reasoning := _reasoning(delta):
            index = self._start("thinking", {"type": "thinking", "thinking": ""}, out)
            out.append(_block_delta(index, {"type": "thinking_delta", "thinking": reasoning}))
        if text := _answer_text(delta):
            index = self._start("text", {"type": "text", "text": ""}, out)
            out.append(_block_delta(index, {"type": "text_delta", "text": text}))
        calls = delta.get("tool_calls")
        for j, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict):
                continue
            key = call.get("index")
            key = key if isinstance(key, int) else j
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            if key in self._tools:
                index = self._tools[key]
            else:
                call_id, name = call.get("id"), function.get("name")
                block = {
                    "type": "tool_use",
                    "id": call_id if isinstance(call_id, str) and call_id else _tool_id(),
                    "name": name if isinstance(name, str) else "",
                    "input": {},
                }
                index = self._tools[key] = self._start(key, block, out)
            # A piece for a call whose block was closed (calls interleaved, which OpenAI does not do) still goes
            # to that call's block: a late piece beats a lost one.
            piece = function.get("arguments")
            if isinstance(piece, str) and piece:
                out.append(_block_delta(index, {"type": "input_json_delta", "partial_json": piece}))

    def _start(self, key: str | int, block: dict[str, Any], out: list[bytes]) -> int:
        """The index of the open block for ``key``, closing the open one and starting a block when it differs."""
        if self._open != key:
            self._close(out)
            out.append(_event("content_block_start", {"index": self._next, "content_block": block}))
            self._open = key
            self._next += 1
        return self._next - 1

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_event("content_block_stop", {"index": self._next - 1}))
            self._open = None

    def _complete(self, out: list[bytes]) -> None:
        self._close(out)
        delta = {"stop_reason": _stop_reason(self._finish, bool(self._tools)), "stop_sequence": None}
        out.append(_event("message_delta", {"delta": delta, "usage": usage_block(self._usage or Usage())}))
        out.append(_event("message_stop", {}))
        self._done = True


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"index": index, "delta": delta})
